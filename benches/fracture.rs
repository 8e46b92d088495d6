//! Compression to failure with continuum damage (issue 6 §7). Run:
//! `cargo bench --bench fracture --no-default-features`.
//!
//! The full curve of the built-in L3 vertebra (32 134 elements) is timed end to end with
//! `/usr/bin/time -v osteolab fracture --state pre` (see BENCHMARKS.md); here the parts: one
//! secant-stiffness solve of the built-in vertebra with a fresh multigrid hierarchy and with a
//! kept one (as the driver does), and the whole curve of the small built-in vertebra (about
//! 3 800 elements).

use osteolab::fe::{
    AxialLoad, BoundaryCondition, Material, ReusableAxialProblem, SolveControl, SolverParams,
};
use osteolab::fracture::FractureModel;
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

/// The built-in vertebra's model, its grid-indexed element moduli relative to the stiffest
/// one, and that material.
fn builtin_secant_problem() -> (FractureModel, Vec<f32>, Material) {
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
    (model, scale, material)
}

const LOAD: AxialLoad = AxialLoad {
    bc: BoundaryCondition::AxialClamped,
    strain: -1e-3,
};

/// One linear solve of the built-in vertebra with its undamaged element moduli, from zero,
/// building the model and multigrid hierarchy (what every solve of the first version did).
#[divan::bench(sample_count = 5)]
fn builtin_vertebra_one_secant_solve(bencher: divan::Bencher) {
    let (model, scale, material) = builtin_secant_problem();
    let params = SolverParams {
        tolerance: 1e-6,
        ..Default::default()
    };
    bencher.bench_local(|| {
        osteolab::fe::solve_axial_heterogeneous(
            &model.mask,
            Some(&scale),
            &material,
            &LOAD,
            &params,
            &SolveControl::default(),
        )
        .unwrap()
    });
}

/// The same solve on a [`ReusableAxialProblem`] whose hierarchy is kept from an earlier
/// build; the moduli are halved in a tenth of the elements, so the hierarchy is stale.
#[divan::bench(sample_count = 5)]
fn builtin_vertebra_one_secant_solve_with_kept_preconditioner(bencher: divan::Bencher) {
    let (model, scale, material) = builtin_secant_problem();
    let params = SolverParams {
        tolerance: 1e-6,
        ..Default::default()
    };
    let mut problem = ReusableAxialProblem::new(
        &model.mask,
        Some(&scale),
        &material,
        BoundaryCondition::AxialClamped,
        &params,
    )
    .unwrap();
    let mut damaged = scale.clone();
    for &v in model.element_voxel.iter().step_by(10) {
        damaged[v] *= 0.5;
    }
    problem.update_scale(&damaged).unwrap();
    bencher.bench_local(|| {
        problem
            .solve(&LOAD, &params, &SolveControl::default())
            .unwrap()
    });
}
