//! The micro-FE solver against an independent solver, ParOSol (parosol-py 0.1.26, the
//! multigrid voxel solver of Flaig & Arbenz 2011), on a real micro-CT sub-volume.
//!
//! Set-up: the 200³ human trabecular sample (19.5 µm), central 48³ sub-volume, Gaussian
//! σ = 1 voxel, threshold for BV/TV 0.25, largest component; E = 10 GPa, ν = 0.3, ε = −1 %;
//! `axial-clamped`, `axial-confined` and `axial-free`; both solvers to a relative residual of
//! 1e-10. Tolerance: 1e-5 relative in reaction force (issue 2 §4). ParOSol stores prescribed
//! displacements as f32 (≈ 2e-8 relative), well inside it.
//!
//! Needs the data (`$OSTEOLAB_DATA` or `../shared/data`) and ParOSol's Python
//! (`$OSTEOLAB_PAROSOL_PYTHON`, set up by `tests/run.sh`); says so and skips when either is
//! absent.

use std::process::Command;

use osteolab::fe::{AxialLoad, BoundaryCondition, Material, SolveControl, SolverParams};
use osteolab::volume::segment::{SegmentParams, Threshold, VoxelBox, crop_volume, segment};
use osteolab::volume::{Dims, load_volume};

#[test]
fn fe_against_parosol_on_micro_ct() {
    let Some(sample) = osteolab::sample_data::microct_sample() else {
        return;
    };
    let Some(python) = std::env::var_os("OSTEOLAB_PAROSOL_PYTHON") else {
        eprintln!("skipped: $OSTEOLAB_PAROSOL_PYTHON not set (tests/run.sh installs ParOSol)");
        return;
    };
    let vol = load_volume(&sample).unwrap();
    let n = 48;
    let vol = crop_volume(
        &vol,
        &VoxelBox {
            min: [76, 76, 76],
            dims: Dims::new(n, n, n),
        },
    )
    .unwrap();
    let mask = segment(
        &vol,
        &SegmentParams {
            sigma_voxels: 1.0,
            threshold: Threshold::BvTv(0.25),
            keep_largest_component: true,
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("mask.raw");
    let bytes: Vec<u8> = mask.voxels.iter().map(|&b| b as u8).collect();
    std::fs::write(&raw, bytes).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/parosol_solve.py");
    let h = mask.grid.voxel_size_mm[0];
    for bc in [
        BoundaryCondition::AxialClamped,
        BoundaryCondition::AxialConfined,
        BoundaryCondition::AxialFree,
    ] {
        let ours = osteolab::fe::solve_axial(
            &mask,
            &Material::default(),
            &AxialLoad { bc, strain: -0.01 },
            &SolverParams {
                tolerance: 1e-10,
                ..Default::default()
            },
            &SolveControl::default(),
        )
        .unwrap();
        assert_eq!(
            ours.removed_elements, 0,
            "the structure spans bottom to top"
        );
        let out = Command::new(&python)
            .arg(script)
            .arg(&raw)
            .args([n.to_string(), n.to_string(), n.to_string()])
            .arg(h.to_string())
            .args(["10000", "0.3", bc.name(), "-0.01", "1e-10"])
            .output()
            .expect("run ParOSol");
        assert!(
            out.status.success(),
            "ParOSol failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let theirs = v["reaction_force_n"].as_f64().unwrap();
        assert_eq!(v["dofs"].as_u64().unwrap() as usize, ours.dofs);
        let rel = (ours.reaction_force_n - theirs).abs() / theirs.abs();
        eprintln!(
            "{bc}: osteolab {:.9} N, ParOSol {theirs:.9} N, relative difference {rel:.2e}",
            ours.reaction_force_n
        );
        assert!(rel < 1e-5, "{bc}: relative difference {rel:.2e}");
    }
}
