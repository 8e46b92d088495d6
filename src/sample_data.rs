//! Where the shared micro-CT sample lives. It is never copied into the repository: tests and
//! benchmarks find it at `$OSTEOLAB_DATA` or at `../shared/data` beside the checkout, and say
//! plainly when it is absent.

use std::path::PathBuf;

/// The sidecar of the 200³ human trabecular sample (19.5 µm, uint8), if it is present.
/// Prints a "skipped" line naming the place it looked when it is not.
pub fn microct_sample() -> Option<PathBuf> {
    let base = std::env::var_os("OSTEOLAB_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let path = base.join("microct/lhdl-3155-D4-gray200.json");
    if path.is_file() {
        Some(path)
    } else {
        println!("skipped: micro-CT data not found at {}", path.display());
        None
    }
}
