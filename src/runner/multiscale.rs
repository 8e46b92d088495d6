//! The multiscale run on the simulation thread (issue 5 §3): the macroscale remodeling of the
//! vertebra drives the shape optimisation of one of the held microstructures, checkpoint by
//! checkpoint (see [`crate::multiscale`]).
//!
//! A job goes through these events, all lossless except [`MultiscaleEvent::Step`], in this
//! order: [`MultiscaleEvent::Preparing`] (building the vertebra, solving day 0 of the
//! macroscale, solving and measuring the original structure), [`MultiscaleEvent::Started`]
//! (the scenario, the checkpoint days, the original's record) and the
//! [`MultiscaleEvent::Checkpoint`] of day 0, then for every macroscale day
//! a [`MultiscaleEvent::Day`] and, while a checkpoint's structure is adapted,
//! [`MultiscaleEvent::Step`] (best effort: one per surface move), and at each checkpoint a
//! [`MultiscaleEvent::Checkpoint`], sent after the snapshot that shows it was published; at
//! most one end: [`MultiscaleEvent::Finished`], [`MultiscaleEvent::Cancelled`] or
//! [`MultiscaleEvent::Failed`].
//!
//! The structures go out through their own latest-wins slot ([`MultiscaleSnapshot`], read with
//! [`super::Runner::latest_multiscale`]): the original (day 0), the checkpoint with the least
//! bone so far (the end of the flight once the recovery has begun) and the latest checkpoint,
//! each with its mask, its record and its live-view surfaces coloured by change against the
//! original ([`CHANGE_FIELD`] on the bone surface, and a second surface of the bone resorbed
//! since day 0). The simulation never waits for the screen.
//!
//! The worker advances the run one checkpoint at a time and reads the command channel in
//! between, so micro-FE jobs sent meanwhile run between two checkpoints. Cancellation
//! ([`MultiscaleCommand::Cancel`], or a new [`MultiscaleCommand::Start`]) takes effect at once
//! through its own flag, which the macroscale checks between days and the micro-FE inside its
//! solves; it is independent of the micro-FE cancel and of the remodeling run's.

use std::sync::Arc;

use super::{JobId, MicroSlot};
use crate::mesh::SurfaceMesh;
use crate::multiscale::Checkpoint;
use crate::remodel::scenario::Scenario;
use crate::remodel::simulation::RemodelConfig;
use crate::remodel::vertebra::VertebraParams;
use crate::volume::BoneMask;

/// Name of the per-vertex field of a [`StructureView`]'s bone surface: the fraction of bone
/// formed since day 0 around the vertex (1 = new bone, 0 = bone of the original).
pub const CHANGE_FIELD: &str = crate::multiscale::FORMED_FIELD;

/// Default upper bound on the triangle count of each live-view surface of a multiscale
/// structure (bone and resorbed surfaces separately).
pub const DEFAULT_MULTISCALE_TRIANGLES: usize = 60_000;

/// Everything a multiscale job needs.
#[derive(Clone, Debug, PartialEq)]
pub struct StartMultiscale {
    pub scenario: Scenario,
    /// A checkpoint every this many days (phase ends and the last day are always checkpoints).
    pub checkpoint_every_days: u32,
    /// The held microstructure that is the original (day 0) structure; it is copied, so the
    /// slot can be replaced while the run goes on.
    pub slot: MicroSlot,
    /// BMD → BV/TV mapping, as [`crate::multiscale::parse_mapping`] reads it (`equal`,
    /// `proportional:R`).
    pub mapping: String,
    /// The built-in vertebra the macroscale runs on.
    pub vertebra: VertebraParams,
    pub config: RemodelConfig,
    /// Coupled BMU remodeling towards the original (see [`crate::multiscale`]); `false` for the
    /// plain mechanical adaptation.
    pub coupled: bool,
    /// Upper bound on the triangles of each live-view surface (the extraction step is raised
    /// until the surface fits).
    pub max_triangles: usize,
}

impl StartMultiscale {
    /// The defaults of `osteolab run`: equal percentages, coupled remodeling, the built-in
    /// vertebra, on the structure of `slot`.
    pub fn new(scenario: Scenario, checkpoint_every_days: u32, slot: MicroSlot) -> Self {
        Self {
            scenario,
            checkpoint_every_days,
            slot,
            mapping: "equal".into(),
            vertebra: VertebraParams::default(),
            config: RemodelConfig::default(),
            coupled: true,
            max_triangles: DEFAULT_MULTISCALE_TRIANGLES,
        }
    }
}

/// Commands for the multiscale job (sent as [`super::Command::Multiscale`]).
#[derive(Clone, Debug, PartialEq)]
pub enum MultiscaleCommand {
    /// Starts a job; cancels (at once) and replaces any job in progress.
    Start(Box<StartMultiscale>),
    /// Ends the job; takes effect at once, also inside an FE solve.
    Cancel,
}

/// The set-up of a started job.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiscaleInfo {
    /// The job these belong to (the sequence number of its Start command).
    pub run: JobId,
    pub scenario: Scenario,
    pub total_days: u32,
    /// First day of each phase, and its name.
    pub phase_starts: Vec<u32>,
    pub phase_names: Vec<String>,
    /// Days of the checkpoints after day 0.
    pub schedule: Vec<u32>,
    pub slot: MicroSlot,
    /// The original structure, in words (the slot's label).
    pub structure: String,
    pub mapping: String,
    pub coupled: bool,
    /// The original structure's record (checkpoint 0).
    pub original: Checkpoint,
    /// Seconds spent setting up (vertebra, day 0 of the macroscale, the original's solve).
    pub setup_seconds: f64,
}

/// Events of the multiscale job (sent as [`super::Event::Multiscale`]).
#[derive(Clone, Debug, PartialEq)]
pub enum MultiscaleEvent {
    /// Set-up progress ("building the vertebra", "solving day 0", …).
    Preparing { run: JobId, message: String },
    /// The job is set up; checkpoint 0 (the original) is in `info` and in the snapshot, and
    /// its [`MultiscaleEvent::Checkpoint`] follows.
    Started(Arc<MultiscaleInfo>),
    /// One macroscale day, with the BV/TV target its trabecular BMD change gives.
    Day {
        run: JobId,
        day: u32,
        phase: String,
        bmd_trabecular_pct: f64,
        target_bv_tv: f64,
    },
    /// One surface move of the adaptation at checkpoint `day` (best effort).
    Step {
        run: JobId,
        day: u32,
        moves: usize,
        fe_solves: usize,
        bv_tv: f64,
    },
    /// A checkpoint is done; its structure is in the snapshot.
    Checkpoint { run: JobId, checkpoint: Checkpoint },
    /// Every checkpoint is done.
    Finished { run: JobId, day: u32 },
    /// Cancelled after `day` macroscale days.
    Cancelled { run: JobId, day: u32 },
    /// The job failed; the message says why.
    Failed { run: JobId, message: String },
}

impl MultiscaleEvent {
    /// The job an event belongs to.
    pub fn run(&self) -> JobId {
        match self {
            MultiscaleEvent::Started(info) => info.run,
            MultiscaleEvent::Preparing { run, .. }
            | MultiscaleEvent::Day { run, .. }
            | MultiscaleEvent::Step { run, .. }
            | MultiscaleEvent::Checkpoint { run, .. }
            | MultiscaleEvent::Finished { run, .. }
            | MultiscaleEvent::Cancelled { run, .. }
            | MultiscaleEvent::Failed { run, .. } => *run,
        }
    }
}

/// One structure of a multiscale run as the screen needs it.
#[derive(Clone, Debug)]
pub struct StructureView {
    pub checkpoint: Checkpoint,
    pub mask: Arc<BoneMask>,
    /// Bone surface (world mm) with the per-vertex [`CHANGE_FIELD`].
    pub surface: Arc<SurfaceMesh>,
    /// Surface of the bone resorbed since day 0 (bone in the original, marrow now); empty
    /// when nothing was resorbed.
    pub removed: Arc<SurfaceMesh>,
    /// Voxel step the surfaces were extracted with (1 = full resolution).
    pub mesh_step: usize,
}

impl StructureView {
    /// The per-vertex formed fraction of the bone surface.
    pub fn formed(&self) -> Option<&[f32]> {
        self.surface.scalar(CHANGE_FIELD)
    }
}

/// The latest-wins state of the multiscale job: the three structures shown side by side. A
/// structure that did not change keeps the same `Arc`.
#[derive(Clone, Debug)]
pub struct MultiscaleSnapshot {
    pub run: JobId,
    /// Day 0.
    pub original: Arc<StructureView>,
    /// The checkpoint with the least bone so far (the original until bone is lost).
    pub lowest: Arc<StructureView>,
    /// The latest checkpoint.
    pub latest: Arc<StructureView>,
}
