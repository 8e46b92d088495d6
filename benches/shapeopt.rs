//! One adaptation of a trabecular cube to the flight-like target (−9.8 % BV/TV, design §1) by
//! the SED-driven level-set shape optimisation (issue 5 §4: 64³ ≤ 5 s, 128³ ≤ 60 s).
//!
//! - 64³: the shared micro-CT sample downsampled ×2 (39 µm), Otsu after σ = 1 smoothing,
//!   largest component, centred 64³ crop;
//! - 128³: a centred 128³ crop of the sample at its own 19.5 µm, segmented the same way.
//!
//! Each is timed with and without the per-move morphometry (start and end are always
//! measured). Without the sample (`$OSTEOLAB_DATA` or `../shared/data`) the benches say so and
//! time the 64³ synthetic structure instead. Run:
//! `cargo bench --bench shapeopt --no-default-features`.

use osteolab::sample_data::{centred_cube, microct_sample};
use osteolab::shapeopt::{AdaptControl, AdaptParams, adapt};
use osteolab::synthetic::{SyntheticParams, synthetic_trabecular};
use osteolab::volume::BoneMask;

fn main() {
    divan::main();
}

/// The flight-like change of trabecular BV/TV (−9.8 %, Vemparala et al. 2025).
const FLIGHT_RATIO: f64 = 0.902;

fn microct_cube(downsample: usize, edge: usize) -> Option<BoneMask> {
    let path = microct_sample()?;
    Some(centred_cube(&path, downsample, edge).unwrap())
}

fn cube(edge: usize) -> BoneMask {
    let from_data = if edge == 64 {
        microct_cube(2, 64)
    } else {
        microct_cube(1, edge)
    };
    from_data.unwrap_or_else(|| {
        synthetic_trabecular(&SyntheticParams {
            size_voxels: edge,
            ..Default::default()
        })
        .unwrap()
    })
}

#[divan::bench(args = [64, 128], sample_count = 1, sample_size = 1)]
fn adapt_flight_target(bencher: divan::Bencher, edge: usize) {
    let mask = cube(edge);
    let target = FLIGHT_RATIO * mask.bv_tv();
    let params = AdaptParams {
        step_morphometry: false,
        ..Default::default()
    };
    bencher.bench_local(|| {
        let a = adapt(&mask, target, &params, &AdaptControl::default()).unwrap();
        eprintln!(
            "{edge}³: BV/TV {:.4} -> {:.4}, {} FE solves, E_app {:.1} -> {:.1} MPa, {:.2} s",
            a.bv_tv_start, a.bv_tv_end, a.fe_solves, a.e_app_start_mpa, a.e_app_end_mpa, a.seconds
        );
        a
    });
}

#[divan::bench(args = [64, 128], sample_count = 1, sample_size = 1)]
fn adapt_flight_target_with_step_morphometry(bencher: divan::Bencher, edge: usize) {
    let mask = cube(edge);
    let target = FLIGHT_RATIO * mask.bv_tv();
    bencher.bench_local(|| {
        adapt(
            &mask,
            target,
            &AdaptParams::default(),
            &AdaptControl::default(),
        )
        .unwrap()
    });
}
