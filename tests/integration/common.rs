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

/// Runs osteolab with `args`, asserts success (showing stderr otherwise), and parses the one
/// JSON object it prints.
pub fn run_json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "osteolab {}: stderr: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}
