//! The fracture protocol of the runner on the small built-in vertebra (24 × 18 × 12 mm)
//! through a flight of a few days, with the coarse step: streamed curve points, summaries
//! equal to a direct `run_to_failure` of the same models, damage fields in the vertebra's
//! element order, the trabecular core on the synthetic structure, and cancellation inside a
//! curve.

use std::time::{Duration, Instant};

use super::fracture::{COARSE_STEP_FRACTION, FINE_STEP_FRACTION, SharedResult};
use super::test_support::{short_flight, spawn};
use super::*;
use crate::fracture::micro::TissueParams;
use crate::fracture::vertebra::{FlightState, macroscale_states, vertebra_model};
use crate::fracture::{FractureControl, run_to_failure};
use crate::remodel::vertebra::{Vertebra, VertebraParams};

const TIMEOUT: Duration = Duration::from_secs(900);

/// Relative tolerance between the runner's summary and a direct run: both are the same
/// deterministic computation, so only the summation order of a different thread pool may
/// move the last digits.
const SUMMARY_RTOL: f64 = 1e-6;

fn small_start(states: Vec<FlightState>, step: f64) -> StartFracture {
    StartFracture {
        states,
        vertebra: VertebraParams::small(),
        ..StartFracture::new(short_flight(2, 6, 2), step)
    }
}

fn is_end(e: &FractureEvent) -> bool {
    matches!(
        e,
        FractureEvent::Finished { .. }
            | FractureEvent::Cancelled { .. }
            | FractureEvent::Failed { .. }
    )
}

/// Fracture events of `run` (others dropped) until `stop` matches one, inclusive.
fn fracture_until(
    runner: &Runner,
    run: JobId,
    stop: impl Fn(&FractureEvent) -> bool,
) -> Vec<FractureEvent> {
    let start = Instant::now();
    let mut out = Vec::new();
    loop {
        assert!(
            start.elapsed() < TIMEOUT,
            "timed out; so far: {} events",
            out.len()
        );
        if let Some(Event::Fracture(e)) = runner.recv_timeout(Duration::from_millis(200))
            && e.run() == run
        {
            let done = stop(&e);
            out.push(e);
            if done {
                return out;
            }
        }
    }
}

/// Starts `start`, waits for its end, checks that it finished, and returns its events and
/// the job's description.
fn run_to_the_end(
    runner: &Runner,
    start: StartFracture,
) -> (Vec<FractureEvent>, Arc<super::fracture::FractureInfo>) {
    let run = runner
        .fracture(FractureCommand::Start(Box::new(start)))
        .unwrap();
    let events = fracture_until(runner, run, is_end);
    assert!(
        matches!(events.last(), Some(FractureEvent::Finished { .. })),
        "{:?}",
        events.last()
    );
    let info = events
        .iter()
        .find_map(|e| match e {
            FractureEvent::Started(info) => Some(info.clone()),
            _ => None,
        })
        .expect("a Started event");
    (events, info)
}

fn done(events: &[FractureEvent]) -> Vec<(usize, SharedResult)> {
    events
        .iter()
        .filter_map(|e| match e {
            FractureEvent::SpecimenDone { index, result, .. } => Some((*index, result.clone())),
            _ => None,
        })
        .collect()
}

fn assert_close(what: &str, got: f64, want: f64) {
    let tol = SUMMARY_RTOL * want.abs().max(1e-12);
    assert!(
        (got - want).abs() <= tol,
        "{what}: runner {got}, direct run {want} (tolerance {tol})"
    );
}

#[test]
fn fracture_job_streams_points_and_matches_a_direct_run_of_the_same_states() {
    let runner = spawn();
    let states = vec![FlightState::Pre, FlightState::Post];
    let start = small_start(states.clone(), COARSE_STEP_FRACTION);
    let (events, info) = run_to_the_end(&runner, start.clone());
    let specimens: Vec<Specimen> = info.specimens.iter().map(|s| s.specimen).collect();
    assert_eq!(
        specimens,
        vec![
            Specimen::State(FlightState::Pre),
            Specimen::State(FlightState::Post)
        ]
    );
    assert!(!info.coupled);
    assert_eq!(
        info.specimens[1].day, 8,
        "post = end of the microgravity phase"
    );

    // The direct computation of the same two curves.
    let density = start.config.density;
    let vertebra = Vertebra::builtin(&start.vertebra, &density).unwrap();
    let (vertebra, macro_states) = macroscale_states(
        start.config,
        vertebra,
        start.scenario.clone(),
        &states,
        None,
        |_, _| {},
    )
    .unwrap();
    let results = done(&events);
    assert_eq!(results.len(), 2);
    for ((index, got), st) in results.iter().zip(&macro_states) {
        let model = vertebra_model(
            &vertebra,
            &st.volume_fraction,
            &density,
            &start.material,
            st.microstructure.value,
            "direct",
        )
        .unwrap();
        let want = run_to_failure(&model, &start.params, &FractureControl::default()).unwrap();
        let s = &got.summary;
        assert_eq!(s.points, want.curve.len(), "state {index}: curve length");
        assert_eq!(s.increments, want.increments);
        assert_eq!(s.end_point, want.end_point);
        assert_close(
            "stiffness kN/mm",
            s.stiffness_kn_per_mm,
            want.stiffness_n_per_mm / 1e3,
        );
        assert_close("peak kN", s.peak_load_kn, want.peak_load_n / 1e3);
        assert_close(
            "displacement at peak",
            s.displacement_at_peak_mm,
            want.displacement_at_peak_mm,
        );
        assert_close(
            "energy to peak J",
            s.energy_to_peak_j,
            want.energy_to_peak_mj / 1e3,
        );
        assert_close(
            "energy to end J",
            s.energy_to_end_j,
            want.energy_to_end_mj / 1e3,
        );
        assert_eq!(got.curve.len(), want.curve.len());
        assert_eq!(got.peak_index, want.peak_index());

        // Damage fields: one value per vertebra element; the permutation keeps the maximum.
        assert_eq!(got.damage.len(), want.damage.len());
        for (g, w) in got.damage.iter().zip(&want.damage) {
            assert_eq!(g.point, w.point);
            assert_eq!(g.damage.len(), vertebra.element_count());
            let max = |v: &[f32]| v.iter().copied().fold(0.0f32, f32::max);
            assert_eq!(max(&g.damage), max(&w.damage));
            // Element k of the model sits on voxel element_voxel[k]; the view field puts its
            // damage on the vertebra element of that voxel.
            for (k, &voxel) in want.element_voxel.iter().enumerate().step_by(97) {
                let e = vertebra.voxel.iter().position(|&v| v == voxel).unwrap();
                assert_eq!(g.damage[e], w.damage[k]);
            }
        }
    }

    // Streamed points (best effort) are points of the finished curves, in order.
    for (index, result) in &results {
        let streamed: Vec<&crate::fracture::CurvePoint> = events
            .iter()
            .filter_map(|e| match e {
                FractureEvent::Point {
                    index: i, point, ..
                } if i == index => Some(point),
                _ => None,
            })
            .collect();
        assert!(!streamed.is_empty(), "specimen {index}: no point streamed");
        let mut at = 0;
        for p in streamed {
            let found = result.curve[at..].iter().position(|c| c == p);
            at += found.expect("every streamed point is on the final curve, in order") + 1;
        }
    }
    runner.shutdown(Duration::from_secs(30)).unwrap();
}

#[test]
fn cancelling_a_fracture_job_stops_it_inside_the_first_curve() {
    let runner = spawn();
    let start = small_start(FlightState::ALL.to_vec(), FINE_STEP_FRACTION);
    let run = runner
        .fracture(FractureCommand::Start(Box::new(start)))
        .unwrap();
    // Wait for the first nonlinear point of the first curve (iterations > 0), then cancel.
    fracture_until(&runner, run, |e| {
        matches!(e, FractureEvent::Point { point, .. } if point.iterations > 0) || is_end(e)
    });
    runner.fracture(FractureCommand::Cancel).unwrap();
    let events = fracture_until(&runner, run, is_end);
    assert!(
        matches!(
            events.last(),
            Some(FractureEvent::Cancelled { index: Some(0), .. })
        ),
        "the run stops inside the first curve: {:?}",
        events.last()
    );
    assert!(
        done(&events).is_empty(),
        "no curve finished after the cancel"
    );
    runner.shutdown(Duration::from_secs(30)).unwrap();
}

#[test]
fn trabecular_core_damage_is_drawn_per_surface_vertex() {
    let runner = spawn();
    let job = runner
        .send(Command::GenerateSynthetic(
            crate::synthetic::SyntheticParams {
                size_voxels: 20,
                voxel_size_mm: 0.04,
                bv_tv: 0.3,
                wavelength_mm: 0.4,
                ..crate::synthetic::SyntheticParams::default()
            },
        ))
        .unwrap();
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < TIMEOUT, "the structure never arrived");
        if let Some(Event::Finished {
            job: j, outcome, ..
        }) = runner.recv_timeout(Duration::from_millis(200))
            && j == job
        {
            assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
            break;
        }
    }
    // The first increments past the onset of damage suffice to colour the surface, and keep
    // the test short (the whole curve of this cube takes minutes).
    let base = small_start(Vec::new(), COARSE_STEP_FRACTION);
    let start = StartFracture {
        core: Some(MicroSlot::Generated),
        params: crate::fracture::FractureParams {
            max_increments: 12,
            ..base.params
        },
        ..base
    };
    let (events, info) = run_to_the_end(&runner, start);
    let core = info.core.as_ref().expect("the core's view");
    let vertices = core.surface.positions.len();
    assert!(vertices > 0);
    let results = done(&events);
    assert_eq!(results.len(), 1);
    let r = &results[0].1;
    assert_eq!(r.specimen, Specimen::Core);
    let apparent = r.apparent.expect("apparent measures of the core");
    assert!(apparent.apparent_strength_mpa > 0.0 && apparent.strain_at_peak > 0.0);
    let last = r.damage.last().expect("a damage field at the end");
    assert_eq!(last.damage.len(), vertices);
    // Tissue damage is capped; past the onset some surface is damaged.
    let cap = TissueParams::default().damage.max_damage as f32;
    assert!(last.damage.iter().all(|&d| (0.0..=cap + 1e-6).contains(&d)));
    assert!(last.damage.iter().any(|&d| d > 0.0));
    runner.shutdown(Duration::from_secs(30)).unwrap();
}

#[test]
fn a_core_without_a_structure_fails_with_a_clear_message() {
    let runner = spawn();
    let start = StartFracture {
        core: Some(MicroSlot::Real),
        ..small_start(Vec::new(), COARSE_STEP_FRACTION)
    };
    let run = runner
        .fracture(FractureCommand::Start(Box::new(start)))
        .unwrap();
    let events = fracture_until(&runner, run, is_end);
    match events.last() {
        Some(FractureEvent::Failed { message, .. }) => {
            assert!(message.contains("no microstructure"), "{message}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    runner.shutdown(Duration::from_secs(30)).unwrap();
}
