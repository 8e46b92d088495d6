//! State of the microstructure view's multiscale mode: the multiscale run (issue 5 §3) as the
//! app knows it from runner events, its latest structures (from the runner's latest-wins
//! slot), and what the panel edits (scenario, checkpoint interval, layout). Nothing here
//! computes; the panels edit this resource and send runner commands through it.

use std::sync::Arc;

use bevy::prelude::*;

use osteolab::multiscale::Checkpoint;
use osteolab::remodel::scenario::Scenario;
use osteolab::runner::multiscale::DEFAULT_MULTISCALE_TRIANGLES;
use osteolab::runner::{
    JobId, MicroSlot, MultiscaleCommand, MultiscaleEvent, MultiscaleInfo, MultiscaleSnapshot,
    StartMultiscale,
};

use super::bridge::Sim;

/// The scenario the multiscale mode offers first.
pub const DEFAULT_MULTISCALE_SCENARIO: &str = "spaceflight-215";

/// Default days between checkpoints (as `osteolab run`).
pub const DEFAULT_CHECKPOINT_DAYS: u32 = 30;

/// What the micro view shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MicroMode {
    /// The real and the generated structure side by side, with micro-FE solves.
    Compare,
    /// The multiscale run: one structure through loss and recovery.
    Multiscale,
}

/// How the structures of the run are laid out in the 3-D view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Day 0, the least-bone checkpoint and the latest one (each once: while the structure
    /// is still losing bone the latest one is the least-bone one).
    SideBySide,
    /// Only the latest checkpoint, large.
    Latest,
}

/// What the app believes the run is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum MsStatus {
    Idle,
    /// Waiting for the start-up structures before starting (`--multiscale-on-start`).
    Waiting,
    Preparing(String),
    Running,
    Finished,
    Cancelled,
    Failed,
}

/// One macroscale day of the run: the day and the BV/TV target its BMD change gives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TargetPoint {
    pub day: u32,
    pub bmd_trabecular_pct: f64,
    pub target_bv_tv: f64,
}

/// The adaptation in progress.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptProgress {
    pub day: u32,
    pub moves: usize,
    pub fe_solves: usize,
    pub bv_tv: f64,
}

#[derive(Resource)]
pub struct MultiscaleState {
    /// The micro view's mode.
    pub mode: MicroMode,
    // The run, from events.
    /// The run the app waits for or shows (the id of the last Start sent).
    pub run: Option<JobId>,
    pub info: Option<Arc<MultiscaleInfo>>,
    pub status: MsStatus,
    pub checkpoints: Vec<Checkpoint>,
    /// Every macroscale day received (index = day − 1).
    pub days: Vec<TargetPoint>,
    pub adapting: Option<AdaptProgress>,
    pub message: Option<String>,
    /// The latest structures (set by the bridge from the runner's slot).
    pub snapshot: Option<Arc<MultiscaleSnapshot>>,
    pub(crate) seen_generation: u64,
    // Editing.
    pub scenario_name: String,
    pub checkpoint_every_days: u32,
    pub layout: Layout,
    // Scripted runs.
    pub on_start: bool,
    pub start_sent: bool,
}

impl Default for MultiscaleState {
    fn default() -> Self {
        Self {
            mode: MicroMode::Compare,
            run: None,
            info: None,
            status: MsStatus::Idle,
            checkpoints: Vec::new(),
            days: Vec::new(),
            adapting: None,
            message: None,
            snapshot: None,
            seen_generation: 0,
            scenario_name: DEFAULT_MULTISCALE_SCENARIO.into(),
            checkpoint_every_days: DEFAULT_CHECKPOINT_DAYS,
            layout: Layout::SideBySide,
            on_start: false,
            start_sent: false,
        }
    }
}

impl MsStatus {
    pub fn label(&self) -> String {
        match self {
            MsStatus::Idle => "not started".into(),
            MsStatus::Waiting => "waiting for the structures".into(),
            MsStatus::Preparing(m) => format!("preparing: {m}"),
            MsStatus::Running => "running".into(),
            MsStatus::Finished => "finished".into(),
            MsStatus::Cancelled => "cancelled".into(),
            MsStatus::Failed => "failed".into(),
        }
    }
}

impl MultiscaleState {
    pub fn is_computing(&self) -> bool {
        matches!(self.status, MsStatus::Running | MsStatus::Preparing(_))
    }

    /// The last macroscale day received.
    pub fn latest_day(&self) -> u32 {
        self.days.last().map_or(0, |d| d.day)
    }

    /// Starts a run of the chosen scenario on the structure of `slot`; `max_triangles`
    /// bounds each live surface.
    pub fn start(&mut self, sim: &Sim, slot: MicroSlot, max_triangles: usize) {
        let Some(scenario) = Scenario::builtin(&self.scenario_name) else {
            self.message = Some(format!("unknown scenario `{}`", self.scenario_name));
            return;
        };
        let start = StartMultiscale {
            max_triangles,
            ..StartMultiscale::new(scenario, self.checkpoint_every_days.max(1), slot)
        };
        match sim
            .runner
            .multiscale(MultiscaleCommand::Start(Box::new(start)))
        {
            Ok(run) => {
                self.run = Some(run);
                self.info = None;
                self.status = MsStatus::Preparing("starting".into());
                self.checkpoints.clear();
                self.days.clear();
                self.adapting = None;
                self.message = None;
            }
            Err(e) => self.message = Some(e.to_string()),
        }
    }

    pub fn cancel(&mut self, sim: &Sim) {
        if let Err(e) = sim.runner.multiscale(MultiscaleCommand::Cancel) {
            self.message = Some(e.to_string());
        }
    }

    /// Applies an event of the runner (events of older runs are ignored).
    pub fn apply(&mut self, event: MultiscaleEvent) {
        if self.run != Some(event.run()) {
            return;
        }
        match event {
            MultiscaleEvent::Preparing { message, .. } => {
                self.status = MsStatus::Preparing(message);
            }
            MultiscaleEvent::Started(info) => {
                self.info = Some(info);
                self.status = MsStatus::Running;
            }
            MultiscaleEvent::Day {
                day,
                bmd_trabecular_pct,
                target_bv_tv,
                ..
            } => self.days.push(TargetPoint {
                day,
                bmd_trabecular_pct,
                target_bv_tv,
            }),
            MultiscaleEvent::Step {
                day,
                moves,
                fe_solves,
                bv_tv,
                ..
            } => {
                self.adapting = Some(AdaptProgress {
                    day,
                    moves,
                    fe_solves,
                    bv_tv,
                })
            }
            MultiscaleEvent::Checkpoint { checkpoint, .. } => {
                self.adapting = None;
                self.checkpoints.push(checkpoint);
            }
            MultiscaleEvent::Finished { .. } => {
                self.status = MsStatus::Finished;
                self.adapting = None;
            }
            MultiscaleEvent::Cancelled { day, .. } => {
                self.status = MsStatus::Cancelled;
                self.adapting = None;
                self.message = Some(format!("cancelled at day {day}"));
            }
            MultiscaleEvent::Failed { message, .. } => {
                self.status = MsStatus::Failed;
                self.adapting = None;
                self.message = Some(message);
            }
        }
    }

    /// The live surface budget for a render path: a software rasteriser draws about 10 k
    /// triangles per millisecond, and up to three structures with their resorbed bone are
    /// shown at once.
    pub fn triangle_budget(software: bool) -> usize {
        if software {
            24_000
        } else {
            DEFAULT_MULTISCALE_TRIANGLES * 3
        }
    }

    /// The name of the phase a day belongs to.
    pub fn phase_at(&self, day: u32) -> Option<&str> {
        let info = self.info.as_ref()?;
        let i = info.phase_starts.iter().rposition(|&s| s < day.max(1))?;
        info.phase_names.get(i).map(String::as_str)
    }
}
