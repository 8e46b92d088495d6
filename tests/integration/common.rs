//! Shared helpers: fixtures, the data folder, running the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use osteolab::synthetic::{SyntheticParams, synthetic_trabecular};
use osteolab::volume::save_volume;

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_osteolab"))
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run osteolab")
}

/// The shared micro-CT data folder, if present (`$OSTEOLAB_DATA` or `../shared/data`).
pub fn data_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("OSTEOLAB_DATA").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("microct/lhdl-3155-D4-gray200.json").is_file())
}

/// Writes a small synthetic trabecular cube (uint8, 0/255) as a sidecar volume.
pub fn synthetic_fixture(dir: &Path, size: usize) -> PathBuf {
    let mask = synthetic_trabecular(&SyntheticParams {
        size_voxels: size,
        ..Default::default()
    })
    .expect("synthetic structure");
    let path = dir.join("synthetic.json");
    save_volume(&mask.to_volume(), &path).expect("write fixture");
    path
}
