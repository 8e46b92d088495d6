//! The multiscale protocol of the runner on a small synthetic structure (24³ voxels of 40 µm)
//! driven by the small built-in vertebra through scenarios of a few weeks: event order,
//! checkpoints in order with their targets, the change-coloured structures of the snapshot,
//! cancellation, and a start without a structure.

use std::time::{Duration, Instant};

use super::test_support::{short_flight, spawn};
use super::*;
use crate::multiscale::Checkpoint;
use crate::remodel::scenario::Scenario;
use crate::remodel::vertebra::VertebraParams;

const TIMEOUT: Duration = Duration::from_secs(600);

/// 3 habitual days, `unloaded` days at a tenth of the load, `after` habitual days.
fn flight(unloaded: u32, after: u32) -> Scenario {
    short_flight(3, unloaded, after)
}

/// Generates the synthetic test structure into the generated slot and waits for it.
fn load_structure(runner: &Runner) {
    let job = runner
        .send(Command::GenerateSynthetic(SyntheticParams {
            size_voxels: 24,
            voxel_size_mm: 0.04,
            bv_tv: 0.3,
            wavelength_mm: 0.4,
            ..SyntheticParams::default()
        }))
        .unwrap();
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < TIMEOUT, "the structure never arrived");
        if let Some(Event::Finished {
            job: j, outcome, ..
        }) = runner.recv_timeout(Duration::from_millis(200))
            && j == job
        {
            assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
            return;
        }
    }
}

/// A job on the generated slot with the small vertebra. The BMD change of a few weeks is a
/// fraction of a percent, so BV/TV follows ten times the BMD percentage, enough for the
/// 24³ structure to lose and regain voxels at every checkpoint.
fn start(scenario: Scenario, every_days: u32) -> Command {
    Command::Multiscale(MultiscaleCommand::Start(Box::new(StartMultiscale {
        mapping: "proportional:10".into(),
        vertebra: VertebraParams::small(),
        ..StartMultiscale::new(scenario, every_days, MicroSlot::Generated)
    })))
}

fn is_end(e: &MultiscaleEvent) -> bool {
    matches!(
        e,
        MultiscaleEvent::Finished { .. }
            | MultiscaleEvent::Cancelled { .. }
            | MultiscaleEvent::Failed { .. }
    )
}

/// Multiscale events (others dropped) until `stop` matches one, inclusive.
fn multiscale_until(
    runner: &Runner,
    stop: impl Fn(&MultiscaleEvent) -> bool,
) -> Vec<MultiscaleEvent> {
    let start = Instant::now();
    let mut out = Vec::new();
    loop {
        assert!(start.elapsed() < TIMEOUT, "timed out; so far: {out:?}");
        if let Some(Event::Multiscale(e)) = runner.recv_timeout(Duration::from_millis(200)) {
            let done = stop(&e);
            out.push(e);
            if done {
                return out;
            }
        }
    }
}

fn checkpoints(events: &[MultiscaleEvent]) -> Vec<&Checkpoint> {
    events
        .iter()
        .filter_map(|e| match e {
            MultiscaleEvent::Checkpoint { checkpoint, .. } => Some(checkpoint),
            _ => None,
        })
        .collect()
}

#[test]
fn multiscale_run_publishes_every_checkpoint_in_order_with_change_coloured_structures() {
    let runner = spawn();
    load_structure(&runner);
    let scenario = flight(24, 16);
    let run = runner.send(start(scenario, 8)).unwrap();
    let events = multiscale_until(&runner, is_end);
    assert!(events.iter().all(|e| e.run() == run), "{events:?}");
    assert!(
        matches!(
            events.last(),
            Some(MultiscaleEvent::Finished { day: 43, .. })
        ),
        "{:?}",
        events.last()
    );
    // Preparing messages, then Started, then checkpoint 0, then days and checkpoints.
    let started = events
        .iter()
        .position(|e| matches!(e, MultiscaleEvent::Started(_)))
        .expect("Started");
    assert!(
        events[..started]
            .iter()
            .all(|e| matches!(e, MultiscaleEvent::Preparing { .. }))
    );
    let MultiscaleEvent::Started(info) = &events[started] else {
        unreachable!()
    };
    assert_eq!(info.total_days, 43);
    assert_eq!(info.schedule, vec![3, 8, 16, 24, 27, 32, 40, 43]);
    assert_eq!(info.slot, MicroSlot::Generated);
    assert_eq!(info.mapping, "proportional:10");
    assert!(info.structure.contains("synthetic"), "{}", info.structure);

    // Every checkpoint in order, one per scheduled day after the original.
    let cps = checkpoints(&events);
    let days: Vec<u32> = cps.iter().map(|c| c.day).collect();
    let mut expected = vec![0];
    expected.extend(&info.schedule);
    assert_eq!(days, expected);
    assert!(cps.iter().enumerate().all(|(i, c)| c.index == i));
    assert_eq!(*cps[0], info.original);

    // Every macroscale day once, in order; each checkpoint's target is its day's.
    let day_events: Vec<(u32, f64)> = events
        .iter()
        .filter_map(|e| match e {
            MultiscaleEvent::Day {
                day, target_bv_tv, ..
            } => Some((*day, *target_bv_tv)),
            _ => None,
        })
        .collect();
    assert_eq!(
        day_events.iter().map(|d| d.0).collect::<Vec<_>>(),
        (1..=43).collect::<Vec<_>>()
    );
    for c in &cps[1..] {
        let (_, target) = day_events[c.day as usize - 1];
        assert!(
            (target - c.target_bv_tv).abs() < 1e-12,
            "day {}: {target} vs {}",
            c.day,
            c.target_bv_tv
        );
        // The tolerance on a reached target: ±0.25 percentage points.
        assert!((c.bv_tv - c.target_bv_tv).abs() <= 0.0025, "{c:?}");
    }
    // The flight loses bone (the structure changes), the recovery regains some.
    let lowest = cps
        .iter()
        .min_by(|a, b| a.bv_tv.total_cmp(&b.bv_tv))
        .unwrap();
    assert!(lowest.bv_tv < cps[0].bv_tv, "no bone was lost: {cps:?}");
    assert!(lowest.removed_voxels > 0);
    assert!(cps.last().unwrap().bv_tv > lowest.bv_tv, "{cps:?}");

    // The snapshot: day 0, the least-bone checkpoint and the last one.
    let mut seen = 0;
    let snap = runner.latest_multiscale(&mut seen).expect("a snapshot");
    assert_eq!(snap.run, run);
    assert_eq!(snap.original.checkpoint, *cps[0]);
    assert_eq!(snap.lowest.checkpoint, **lowest);
    assert_eq!(snap.latest.checkpoint, **cps.last().unwrap());
    for view in [&snap.original, &snap.lowest, &snap.latest] {
        let c = &view.checkpoint;
        assert!((view.mask.bv_tv() - c.bv_tv).abs() < 1e-12, "day {}", c.day);
        let formed = view.formed().expect("the change field");
        assert_eq!(formed.len(), view.surface.vertex_count());
        assert!(formed.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(!view.surface.is_empty(), "day {}", c.day);
        if c.removed_voxels == 0 {
            assert!(view.removed.is_empty(), "day {}", c.day);
        }
    }
    // The original has no change; the lowest structure shows its resorbed bone.
    assert!(snap.original.formed().unwrap().iter().all(|&v| v == 0.0));
    assert!(!snap.lowest.removed.is_empty());
    assert!(snap.lowest.removed.is_watertight());
    // Bone formed since day 0 (the recovery refills cavities) shows on the last surface.
    if cps.last().unwrap().added_voxels > 0 {
        assert!(snap.latest.formed().unwrap().iter().any(|&v| v > 0.0));
    }
}

#[test]
fn multiscale_cancel_stops_the_run_within_one_checkpoint_and_the_runner_goes_on() {
    let runner = spawn();
    load_structure(&runner);
    let scenario = flight(300, 100);
    let run = runner.send(start(scenario, 5)).unwrap();
    let before = multiscale_until(&runner, |e| {
        is_end(e)
            || matches!(e, MultiscaleEvent::Checkpoint { checkpoint, .. } if checkpoint.index == 1)
    });
    assert!(!is_end(before.last().unwrap()), "{:?}", before.last());
    runner.multiscale(MultiscaleCommand::Cancel).unwrap();
    let after = multiscale_until(&runner, is_end);
    let Some(MultiscaleEvent::Cancelled { run: r, day }) = after.last() else {
        panic!("not cancelled: {:?}", after.last());
    };
    assert_eq!(*r, run);
    // At most the checkpoint already computed when the cancel was sent arrives after it.
    let late = checkpoints(&after);
    assert!(late.len() <= 1, "{late:?}");
    assert!(*day < 403, "day {day}");

    // The thread still serves micro-FE jobs, and the cancelled run sends nothing more (the
    // worker handles the Cancel command before the solve, so a second end would come first).
    let solve = runner
        .send(Command::Solve {
            slot: MicroSlot::Generated,
            request: SolveRequest::default(),
        })
        .unwrap();
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < TIMEOUT, "the solve never finished");
        match runner.recv_timeout(Duration::from_millis(200)) {
            Some(Event::Finished { job, outcome, .. }) if job == solve => {
                assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
                break;
            }
            Some(Event::Multiscale(e)) => panic!("after the end: {e:?}"),
            _ => {}
        }
    }
}

#[test]
fn multiscale_start_without_a_structure_fails_naming_the_empty_slot() {
    let runner = spawn();
    let run = runner
        .multiscale(MultiscaleCommand::Start(Box::new(StartMultiscale::new(
            flight(5, 5),
            5,
            MicroSlot::Real,
        ))))
        .unwrap();
    let events = multiscale_until(&runner, is_end);
    match events.last() {
        Some(MultiscaleEvent::Failed { run: r, message }) => {
            assert_eq!(*r, run);
            assert!(message.contains("real slot"), "{message}");
        }
        other => panic!("not failed: {other:?}"),
    }
    let mut seen = 0;
    assert!(runner.latest_multiscale(&mut seen).is_none());
}
