//! Compression to failure with continuum damage (issue 6 §7). Run:
//! `cargo bench --bench fracture --no-default-features`.
//!
//! The full curve of the built-in L3 vertebra (32 134 elements) is timed end to end with
//! `/usr/bin/time -v osteolab fracture --state pre` (see BENCHMARKS.md); here the parts: one
//! secant-stiffness solve of the built-in vertebra, and the whole curve of the small built-in
//! vertebra (about 3 800 elements).

use osteolab::fe::{AxialLoad, BoundaryCondition, Material, SolveControl, SolverParams};
use osteolab::fracture::vertebra::{VertebraFractureParams, vertebra_model};
use osteolab::fracture::{FractureControl, FractureParams, run_to_failure};
use osteolab::remodel::density::DensityRelations;
use osteolab::remodel::vertebra::{Vertebra, VertebraParams};

fn main() {
    divan::main();
}

/// The whole load–displacement curve of the small built-in vertebra, to the 70 % load drop.
#[divan::bench(sample_count = 3)]
fn small_vertebra_full_curve(bencher: divan::Bencher) {
    let d = DensityRelations::default();
    let v = Vertebra::builtin(&VertebraParams::small(), &d).unwrap();
    let model = vertebra_model(
        &v,
        &v.initial_volume_fraction,
        &d,
        &VertebraFractureParams::default(),
        1.0,
        "small",
    )
    .unwrap();
    let params = FractureParams {
        damage_record_every: 0,
        ..Default::default()
    };
    bencher.bench_local(|| run_to_failure(&model, &params, &FractureControl::default()).unwrap());
}

/// One linear solve of the built-in vertebra with its undamaged element moduli, from zero
/// (the driver's solves are warm-started and cheaper).
#[divan::bench(sample_count = 5)]
fn builtin_vertebra_one_secant_solve(bencher: divan::Bencher) {
    let d = DensityRelations::default();
    let v = Vertebra::builtin(&VertebraParams::default(), &d).unwrap();
    let model = vertebra_model(
        &v,
        &v.initial_volume_fraction,
        &d,
        &VertebraFractureParams::default(),
        1.0,
        "builtin",
    )
    .unwrap();
    let e_ref = model
        .materials
        .iter()
        .map(|m| m.modulus_mpa())
        .fold(0.0, f64::max);
    let mut scale = vec![0.0f32; model.mask.voxels.len()];
    for (e, &i) in model.element_voxel.iter().enumerate() {
        scale[i] = (model.materials[e].modulus_mpa() / e_ref) as f32;
    }
    let material = Material {
        young_modulus_mpa: e_ref,
        poisson_ratio: model.poisson_ratio,
    };
    let params = SolverParams {
        tolerance: 1e-6,
        ..Default::default()
    };
    bencher.bench_local(|| {
        osteolab::fe::solve_axial_heterogeneous(
            &model.mask,
            Some(&scale),
            &material,
            &AxialLoad {
                bc: BoundaryCondition::AxialClamped,
                strain: -1e-3,
            },
            &params,
            &SolveControl::default(),
        )
        .unwrap()
    });
}
