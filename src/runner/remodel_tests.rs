//! The remodeling protocol of the runner on a small built-in vertebra (24 × 18 × 12 mm,
//! about 4 k elements) and scenarios of a few days: event order, pause / step / resume,
//! scenario replacement from the next day versus restart, cancellation, failures, and
//! micro-FE jobs interleaved with a run.

use std::time::{Duration, Instant};

use super::test_support::{phase, spawn};
use super::*;
use crate::remodel::scenario::Scenario;
use crate::remodel::simulation::RemodelConfig;
use crate::remodel::vertebra::VertebraParams;

const TIMEOUT: Duration = Duration::from_secs(300);

fn small_vertebra() -> VertebraSource {
    VertebraSource::Builtin(VertebraParams::small())
}

/// 2 habitual days, 3 days at a tenth of the load, 2 habitual days.
fn short_scenario() -> Scenario {
    Scenario {
        name: "short".into(),
        description: "test".into(),
        phases: vec![
            phase("before", 2, 1.0, 1.0),
            phase("unloaded", 3, 0.1, 0.05),
            phase("after", 2, 1.0, 1.0),
        ],
    }
}

fn start(scenario: Scenario, start_paused: bool) -> Command {
    Command::Remodel(RemodelCommand::Start(Box::new(StartRemodel {
        vertebra: small_vertebra(),
        scenario,
        config: RemodelConfig::default(),
        start_paused,
    })))
}

/// Remodel events (others dropped) until one matches `last`, inclusive.
fn remodel_until(runner: &Runner, last: impl Fn(&RemodelEvent) -> bool) -> Vec<RemodelEvent> {
    let start = Instant::now();
    let mut out = Vec::new();
    loop {
        assert!(start.elapsed() < TIMEOUT, "timed out; so far: {out:?}");
        if let Some(Event::Remodel(e)) = runner.recv_timeout(Duration::from_millis(200)) {
            let done = last(&e);
            out.push(e);
            if done {
                return out;
            }
        }
    }
}

fn days_of(events: &[RemodelEvent], run: JobId) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            RemodelEvent::Day { run: r, record } if *r == run => Some(record.day),
            _ => None,
        })
        .collect()
}

#[test]
fn remodel_run_streams_started_then_every_day_in_order_then_finished() {
    let runner = spawn();
    let run = runner.send(start(short_scenario(), false)).unwrap();
    let events = remodel_until(&runner, |e| {
        matches!(
            e,
            RemodelEvent::Finished { .. } | RemodelEvent::Failed { .. }
        )
    });
    assert!(events.iter().all(|e| e.run() == Some(run)), "{events:?}");
    let started = events
        .iter()
        .position(|e| matches!(e, RemodelEvent::Started(_)))
        .expect("Started");
    // Set-up messages come first, then Started, then days 0..=7 consecutively, Finished last.
    assert!(
        events[..started]
            .iter()
            .all(|e| matches!(e, RemodelEvent::Preparing { .. }))
    );
    let RemodelEvent::Started(info) = &events[started] else {
        unreachable!()
    };
    assert_eq!(info.total_days, 7);
    assert_eq!(info.phase_starts, vec![0, 2, 5]);
    assert_eq!(info.phase_names, vec!["before", "unloaded", "after"]);
    assert!(info.label.contains("not patient data"));
    assert_eq!(info.region_counts.iter().sum::<usize>(), info.element_count);
    assert!(
        info.region_counts.iter().all(|&c| c > 0),
        "{:?}",
        info.region_counts
    );
    assert_eq!(
        info.geometry.sampler.vertex_count(),
        info.geometry.surface.positions.len()
    );
    assert_eq!(days_of(&events, run), (0..=7).collect::<Vec<_>>());
    assert!(matches!(
        events.last(),
        Some(RemodelEvent::Finished { day: 7, .. })
    ));
    // The phase of each record follows the scenario.
    let phases: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            RemodelEvent::Day { record, .. } if record.day > 0 => Some(record.phase.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        phases,
        [
            "before", "before", "unloaded", "unloaded", "unloaded", "after", "after"
        ]
    );
    // Every day's field is in the history, one value per element; day 0 is all zero.
    let history = runner.field_history();
    for day in 0..=7 {
        let f = history.field_at(run, day).expect("stored field");
        assert_eq!(f.day, day);
        assert_eq!(f.centi_percent.len(), info.element_count);
    }
    assert!(
        history
            .field_at(run, 0)
            .unwrap()
            .centi_percent
            .iter()
            .all(|&v| v == 0)
    );
    // Once finished, resuming is refused and the run stays loaded.
    runner.remodel(RemodelCommand::Resume).unwrap();
    let events = remodel_until(&runner, |e| matches!(e, RemodelEvent::Rejected { .. }));
    assert!(matches!(
        events.last(),
        Some(RemodelEvent::Rejected { message, .. }) if message.contains("finished")
    ));
    runner.shutdown(Duration::from_secs(30)).unwrap();
}

#[test]
fn remodel_pause_step_resume() {
    let runner = spawn();
    let run = runner.send(start(short_scenario(), true)).unwrap();
    let events = remodel_until(&runner, |e| matches!(e, RemodelEvent::Paused { .. }));
    assert_eq!(days_of(&events, run), vec![0]);
    assert!(matches!(
        events.last(),
        Some(RemodelEvent::Paused { day: 0, .. })
    ));
    // Paused: nothing more arrives.
    assert!(
        runner.recv_timeout(Duration::from_millis(300)).is_none(),
        "events while paused"
    );

    runner.remodel(RemodelCommand::Step { days: 2 }).unwrap();
    let events = remodel_until(&runner, |e| matches!(e, RemodelEvent::Paused { .. }));
    assert!(matches!(
        events.first(),
        Some(RemodelEvent::Resumed { day: 0, .. })
    ));
    assert_eq!(days_of(&events, run), vec![1, 2]);
    assert!(matches!(
        events.last(),
        Some(RemodelEvent::Paused { day: 2, .. })
    ));

    runner.remodel(RemodelCommand::Resume).unwrap();
    let events = remodel_until(&runner, |e| matches!(e, RemodelEvent::Finished { .. }));
    assert!(matches!(
        events.first(),
        Some(RemodelEvent::Resumed { day: 2, .. })
    ));
    assert_eq!(days_of(&events, run), vec![3, 4, 5, 6, 7]);
    runner.shutdown(Duration::from_secs(30)).unwrap();
}

#[test]
fn replace_scenario_applies_from_next_day_or_restarts() {
    let runner = spawn();
    let run = runner.send(start(short_scenario(), true)).unwrap();
    remodel_until(&runner, |e| matches!(e, RemodelEvent::Paused { .. }));
    runner.remodel(RemodelCommand::Step { days: 3 }).unwrap();
    remodel_until(&runner, |e| matches!(e, RemodelEvent::Paused { .. }));

    // Too short for the 3 days already simulated: refused, the run goes on.
    let too_short = Scenario {
        phases: vec![phase("only", 2, 1.0, 1.0)],
        ..short_scenario()
    };
    runner
        .remodel(RemodelCommand::ReplaceScenario {
            scenario: too_short,
            restart: false,
        })
        .unwrap();
    let events = remodel_until(&runner, |e| matches!(e, RemodelEvent::Rejected { .. }));
    assert!(matches!(
        events.last(),
        Some(RemodelEvent::Rejected { run: Some(r), message }) if *r == run && message.contains("already simulated")
    ));

    // Changing the loads of a day already simulated (day 2 was unloaded): refused.
    let rewrites_history = Scenario {
        name: "changed".into(),
        description: String::new(),
        phases: vec![phase("first", 3, 1.0, 1.0), phase("zero-g", 5, 0.0, 0.0)],
    };
    runner
        .remodel(RemodelCommand::ReplaceScenario {
            scenario: rewrites_history,
            restart: false,
        })
        .unwrap();
    let events = remodel_until(&runner, |e| matches!(e, RemodelEvent::Rejected { .. }));
    assert!(matches!(
        events.last(),
        Some(RemodelEvent::Rejected { message, .. }) if message.contains("restart instead")
    ));

    // From the next day: the simulated days keep their loads, day 4 belongs to the new
    // scenario's last phase.
    let new = Scenario {
        name: "changed".into(),
        description: String::new(),
        phases: vec![
            phase("before", 2, 1.0, 1.0),
            phase("unloaded", 1, 0.1, 0.05),
            phase("zero-g", 5, 0.0, 0.0),
        ],
    };
    runner
        .remodel(RemodelCommand::ReplaceScenario {
            scenario: new.clone(),
            restart: false,
        })
        .unwrap();
    let events = remodel_until(&runner, |e| {
        matches!(e, RemodelEvent::ScenarioReplaced { .. })
    });
    let Some(RemodelEvent::ScenarioReplaced {
        run: r,
        from_day,
        info,
    }) = events.last()
    else {
        unreachable!()
    };
    assert_eq!((*r, *from_day, info.total_days), (run, 3, 8));
    assert_eq!(info.phase_starts, vec![0, 2, 3]);
    runner.remodel(RemodelCommand::Step { days: 1 }).unwrap();
    let events = remodel_until(&runner, |e| matches!(e, RemodelEvent::Paused { .. }));
    let record = events
        .iter()
        .find_map(|e| match e {
            RemodelEvent::Day { record, .. } => Some(record.clone()),
            _ => None,
        })
        .expect("day 4");
    assert_eq!((record.day, record.phase.as_str()), (4, "zero-g"));
    // The earlier days keep their fields.
    assert_eq!(runner.field_history().field_at(run, 2).unwrap().day, 2);

    // Restart: a new run from day 0 on the same model, running to the end.
    let restarted = runner
        .remodel(RemodelCommand::ReplaceScenario {
            scenario: new,
            restart: true,
        })
        .unwrap();
    let events = remodel_until(
        &runner,
        |e| matches!(e, RemodelEvent::Finished { run, .. } if *run == restarted),
    );
    let info = events
        .iter()
        .find_map(|e| match e {
            RemodelEvent::Started(info) => Some(info.clone()),
            _ => None,
        })
        .expect("Started for the restart");
    assert_eq!((info.run, info.total_days), (restarted, 8));
    assert_eq!(days_of(&events, restarted), (0..=8).collect::<Vec<_>>());
    assert!(days_of(&events, run).is_empty());
    // The history now belongs to the new run.
    assert!(runner.field_history().field_at(run, 2).is_none());
    assert_eq!(
        runner.field_history().field_at(restarted, 8).unwrap().day,
        8
    );
    runner.shutdown(Duration::from_secs(30)).unwrap();
}

#[test]
fn cancel_ends_the_run_and_micro_fe_jobs_run_between_days() {
    let runner = spawn();
    let long = Scenario {
        phases: vec![phase("unloaded", 30_000, 0.1, 0.05)],
        ..short_scenario()
    };
    let run = runner.send(start(long, false)).unwrap();
    remodel_until(
        &runner,
        |e| matches!(e, RemodelEvent::Day { record, .. } if record.day >= 3),
    );

    // A micro-FE job sent while the run steps completes, and days keep coming after it.
    let generate = runner
        .send(Command::GenerateSynthetic(
            crate::synthetic::SyntheticParams {
                size_voxels: 24,
                voxel_size_mm: 0.04,
                bv_tv: 0.3,
                wavelength_mm: 0.4,
                ..Default::default()
            },
        ))
        .unwrap();
    let start = Instant::now();
    let mut micro_done = false;
    let mut days_after_micro = 0;
    while days_after_micro < 3 {
        assert!(start.elapsed() < TIMEOUT);
        match runner.recv_timeout(Duration::from_millis(200)) {
            Some(Event::Finished { job, outcome, .. }) if job == generate => {
                assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
                micro_done = true;
            }
            Some(Event::Remodel(RemodelEvent::Day { .. })) if micro_done => days_after_micro += 1,
            _ => {}
        }
    }

    runner.remodel(RemodelCommand::Cancel).unwrap();
    let events = remodel_until(&runner, |e| matches!(e, RemodelEvent::Cancelled { .. }));
    let Some(RemodelEvent::Cancelled { run: r, day }) = events.last() else {
        unreachable!()
    };
    assert_eq!(*r, run);
    assert!(*day > 3 && *day < 30_000, "cancelled at day {day}");
    // Nothing more for this run except the refusal to resume.
    runner.remodel(RemodelCommand::Resume).unwrap();
    let events = remodel_until(&runner, |e| matches!(e, RemodelEvent::Rejected { .. }));
    assert_eq!(days_of(&events, run), Vec::<u32>::new());
    runner.shutdown(Duration::from_secs(30)).unwrap();
}

#[test]
fn bad_scenario_or_vertebra_fails_the_start_with_a_message() {
    let runner = spawn();
    let mut bad = short_scenario();
    bad.phases[1].days = 0;
    let run = runner.send(start(bad, false)).unwrap();
    let events = remodel_until(&runner, |e| {
        matches!(e, RemodelEvent::Failed { .. } | RemodelEvent::Started(_))
    });
    assert!(matches!(
        events.last(),
        Some(RemodelEvent::Failed { run: r, message }) if *r == run && message.contains("unloaded")
    ));
    let bad_vertebra = Command::Remodel(RemodelCommand::Start(Box::new(StartRemodel {
        vertebra: VertebraSource::Builtin(VertebraParams {
            width_mm: f64::NAN,
            ..VertebraParams::default()
        }),
        scenario: short_scenario(),
        config: RemodelConfig::default(),
        start_paused: false,
    })));
    runner.send(bad_vertebra).unwrap();
    let events = remodel_until(&runner, |e| matches!(e, RemodelEvent::Failed { .. }));
    assert!(matches!(
        events.last(),
        Some(RemodelEvent::Failed { message, .. }) if message.contains("width_mm")
    ));
    // Commands without a run are refused, not fatal.
    runner.remodel(RemodelCommand::Step { days: 1 }).unwrap();
    let events = remodel_until(&runner, |e| matches!(e, RemodelEvent::Rejected { .. }));
    assert!(matches!(
        events.last(),
        Some(RemodelEvent::Rejected { run: None, .. })
    ));
    runner.shutdown(Duration::from_secs(30)).unwrap();
}
