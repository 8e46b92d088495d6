//! Macroscale remodeling on the built-in L3 vertebral body (32 134 elements): one simulated
//! day of the remodeling law over every element, and one FE solve of the two endplate load
//! cases. Run: `cargo bench --bench remodel --no-default-features`.
//!
//! The whole `spaceflight-215` scenario is timed end to end by
//! `/usr/bin/time -v osteolab remodel --scenario spaceflight-215` (see BENCHMARKS.md).

use osteolab::fe::{Material, PlateLoad, SolveControl, SolverParams, solve_plate_loads};
use osteolab::remodel::density::DensityRelations;
use osteolab::remodel::law::{Environment, LawParams, PivonkaScheinerLaw, RemodelingLaw};
use osteolab::remodel::vertebra::{Vertebra, VertebraParams};
use osteolab::volume::BoneMask;
use rayon::prelude::*;

fn main() {
    divan::main();
}

fn vertebra() -> Vertebra {
    Vertebra::builtin(&VertebraParams::default(), &DensityRelations::default()).unwrap()
}

/// One day of the Pivonka–Scheiner law on every element, in disuse (ψ = 0.01, the flight
/// phase, where the step-size control works hardest) and at the habitual steady state.
#[divan::bench(args = [0.01, 1.0], sample_count = 10)]
fn law_one_day_all_elements(bencher: divan::Bencher, stimulus_ratio: f64) {
    let v = vertebra();
    let law = PivonkaScheinerLaw::new(LawParams::default()).unwrap();
    let env = Environment::default();
    let start: Vec<_> = v
        .initial_volume_fraction
        .iter()
        .map(|&f| law.homeostatic_state(f))
        .collect();
    // Start from a state 30 days into the phase, not from the steady state.
    let mut warm = start.clone();
    warm.par_iter_mut().for_each(|s| {
        law.advance(s, stimulus_ratio, &env, 30.0).unwrap();
    });
    bencher
        .with_inputs(|| warm.clone())
        .bench_local_values(|mut states| {
            states.par_iter_mut().for_each(|s| {
                law.advance(s, stimulus_ratio, &env, 1.0).unwrap();
            });
            states
        });
}

/// The FE solve of the habitual axial and flexion load cases (two unit solves), from zero.
#[divan::bench(sample_count = 5)]
fn fe_endplate_loads_from_zero(bencher: divan::Bencher) {
    let v = vertebra();
    let d = DensityRelations::default();
    let dims = v.grid.dims;
    let mut occupied = vec![false; dims.len()];
    let mut scale = vec![0.0f32; dims.len()];
    let moduli: Vec<f64> = (0..v.element_count())
        .map(|e| v.element_modulus_mpa(e, v.initial_volume_fraction[e], &d))
        .collect();
    let e_ref = moduli.iter().cloned().fold(0.0, f64::max);
    for (e, &i) in v.voxel.iter().enumerate() {
        occupied[i] = true;
        scale[i] = (moduli[e] / e_ref) as f32;
    }
    let mask = BoneMask::new(v.grid, occupied).unwrap();
    let material = Material {
        young_modulus_mpa: e_ref,
        poisson_ratio: 0.3,
    };
    let params = SolverParams {
        tolerance: 1e-6,
        ..Default::default()
    };
    let loads = [
        PlateLoad {
            force_n: 800.0,
            moment_nmm: 0.0,
        },
        PlateLoad {
            force_n: 0.0,
            moment_nmm: 7500.0,
        },
    ];
    bencher.bench_local(|| {
        solve_plate_loads(
            &mask,
            Some(&scale),
            &material,
            &loads,
            &params,
            &SolveControl::default(),
            None,
        )
        .unwrap()
    });
}
