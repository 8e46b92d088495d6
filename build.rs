//! Gives binaries and test binaries that link libtorch (feature `torch`) a RUNPATH to the
//! libtorch they were built against, so they run without LD_LIBRARY_PATH. torch-sys's own
//! rpath flag reaches only its own targets (see shared/notes/tch-libtorch.md).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
    }
}
