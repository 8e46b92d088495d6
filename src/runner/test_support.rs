//! What the runner's protocol tests share: a runner on two solver threads and short scenarios.

use super::{Runner, RunnerOptions};
use crate::remodel::scenario::{LoadScale, Phase, Scenario};

/// A runner with two solver threads (the machine's cores).
pub fn spawn() -> Runner {
    Runner::spawn(RunnerOptions {
        solver_threads: Some(2),
        ..RunnerOptions::default()
    })
    .expect("runner starts")
}

/// A phase of `days` at the given load scales (PTH 1).
pub fn phase(name: &str, days: u32, axial: f64, flexion: f64) -> Phase {
    Phase {
        name: name.into(),
        days,
        load_scale: LoadScale { axial, flexion },
        pth_scale: 1.0,
    }
}

/// `before` habitual days (phase `preflight`), `unloaded` days at a tenth of the axial and a
/// twentieth of the flexion load (`microgravity`), `after` habitual days (`recovery`).
pub fn short_flight(before: u32, unloaded: u32, after: u32) -> Scenario {
    Scenario {
        name: "short-flight".into(),
        description: "test".into(),
        phases: vec![
            phase("preflight", before, 1.0, 1.0),
            phase("microgravity", unloaded, 0.1, 0.05),
            phase("recovery", after, 1.0, 1.0),
        ],
    }
}
