//! Where the shared micro-CT sample lives. It is never copied into the repository: tests,
//! benchmarks and the app find it at `$OSTEOLAB_DATA` or at `../shared/data` beside the
//! checkout, and say plainly when it is absent.

use std::path::PathBuf;

/// Path of the sample's sidecar inside the data folder.
pub const MICROCT_SAMPLE: &str = "microct/lhdl-3155-D4-gray200.json";

/// Where the 200³ human trabecular sample (19.5 µm, uint8) is looked for:
/// `$OSTEOLAB_DATA/microct/…` when the variable is set, otherwise `../shared/data/microct/…`
/// beside the checkout this binary was built from.
pub fn microct_sample_path() -> PathBuf {
    let base = std::env::var_os("OSTEOLAB_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    base.join(MICROCT_SAMPLE)
}

/// The sample's sidecar if it is present; otherwise the place it was looked for (`Err`).
pub fn locate_microct_sample() -> Result<PathBuf, PathBuf> {
    let path = microct_sample_path();
    if path.is_file() { Ok(path) } else { Err(path) }
}

/// The sidecar of the sample, if it is present (for tests and benchmarks).
/// Prints a "skipped" line naming the place it looked when it is not.
pub fn microct_sample() -> Option<PathBuf> {
    match locate_microct_sample() {
        Ok(path) => Some(path),
        Err(path) => {
            println!("skipped: micro-CT data not found at {}", path.display());
            None
        }
    }
}
