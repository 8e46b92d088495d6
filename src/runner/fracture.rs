//! The fracture job on the simulation thread (issue 6 §6): the built-in vertebra compressed to
//! failure at the pre-flight, end-of-flight and recovered states of a macroscale run, and
//! optionally a held trabecular cube (see [`crate::fracture`]).
//!
//! A job goes through these events, all lossless except [`FractureEvent::Point`], in this
//! order: [`FractureEvent::Preparing`] (the macroscale run to the state days, building the
//! models), [`FractureEvent::Started`] (the specimens in run order, the vertebra's view
//! geometry, the trabecular factor used and where it came from), then for each specimen in
//! turn [`FractureEvent::Point`] after every point of its load–displacement curve (best
//! effort: the curve grows live) and [`FractureEvent::SpecimenDone`] with its summary, the
//! whole curve and its damage fields behind an `Arc` (the simulation never waits for the
//! screen); at most one end: [`FractureEvent::Finished`], [`FractureEvent::Cancelled`] or
//! [`FractureEvent::Failed`].
//!
//! The worker runs one specimen per step and reads the command channel in between, so
//! micro-FE jobs and remodeling days sent meanwhile run between two curves. Cancellation
//! ([`FractureCommand::Cancel`], or a new [`FractureCommand::Start`]) takes effect at once
//! through the job's own flag, which the macroscale checks between days and the fracture
//! solver in every iteration ([`crate::fracture::FractureControl::cancel`]).

use std::sync::Arc;

use super::{JobId, MicroSlot};
use crate::fracture::vertebra::{FlightState, MicrostructureFactor, VertebraFractureParams};
use crate::fracture::{CurvePoint, DamageSnapshot, EndPoint, FractureParams, FractureResult};
use crate::mesh::SurfaceMesh;
use crate::multiscale::Checkpoint;
use crate::remodel::scenario::Scenario;
use crate::remodel::simulation::RemodelConfig;
use crate::remodel::vertebra::VertebraParams;
use crate::runner::section::VertebraGeometry;

/// The default scenario of the fracture states (issue 6 §2).
pub const FRACTURE_SCENARIO: &str = "spaceflight-215";

/// Fine step of the nonlinear solve (a fraction of the onset displacement): the
/// [`FractureParams`] default, more than 100 increments per curve.
pub const FINE_STEP_FRACTION: f64 = 0.02;

/// Coarse step: a few times fewer increments, a coarser curve.
pub const COARSE_STEP_FRACTION: f64 = 0.1;

/// What is broken: the vertebra at a flight state, or the trabecular cube.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Specimen {
    State(FlightState),
    /// The trabecular cube taken from a micro slot.
    Core,
}

impl Specimen {
    pub fn label(self) -> &'static str {
        match self {
            Specimen::State(FlightState::Pre) => "pre-flight",
            Specimen::State(FlightState::Post) => "post-flight",
            Specimen::State(FlightState::Recovered) => "recovered",
            Specimen::Core => "trabecular core",
        }
    }
}

/// The multiscale run whose adapted microstructure sets the trabecular factor of each state:
/// its checkpoint records, and a name for the messages.
#[derive(Clone, Debug, PartialEq)]
pub struct MicroCoupling {
    pub origin: String,
    pub checkpoints: Vec<Checkpoint>,
}

/// Everything a fracture job needs.
#[derive(Clone, Debug, PartialEq)]
pub struct StartFracture {
    /// The states to break, in this order (duplicates are ignored).
    pub states: Vec<FlightState>,
    /// The macroscale scenario the states are taken from.
    pub scenario: Scenario,
    /// The built-in vertebra.
    pub vertebra: VertebraParams,
    pub config: RemodelConfig,
    /// The vertebral fracture material (the calibrated defaults).
    pub material: VertebraFractureParams,
    /// Loading and nonlinear solve; [`StartFracture::new`] sets its step.
    pub params: FractureParams,
    /// Also break the trabecular cube held in this slot (after the states).
    pub core: Option<MicroSlot>,
    /// The multiscale run whose checkpoints set the trabecular factors; without it, or
    /// when it has no checkpoint at some state's day, the states are not coupled
    /// ([`MicrostructureFactor::not_coupled`]).
    pub coupling: Option<MicroCoupling>,
    /// Upper bound on the triangles of the views (vertebra surface, core surface).
    pub max_triangles: usize,
}

impl StartFracture {
    /// The three states of `spaceflight-215` on the built-in vertebra with the calibrated
    /// material and the default loading, at `step_fraction_of_onset`.
    pub fn new(scenario: Scenario, step_fraction_of_onset: f64) -> Self {
        Self {
            states: FlightState::ALL.to_vec(),
            scenario,
            vertebra: VertebraParams::default(),
            config: RemodelConfig::default(),
            material: VertebraFractureParams::default(),
            params: FractureParams {
                step_fraction_of_onset,
                ..FractureParams::default()
            },
            core: None,
            coupling: None,
            max_triangles: super::DEFAULT_MAX_LIVE_TRIANGLES,
        }
    }
}

/// Commands for the fracture job (sent as [`super::Command::Fracture`]).
#[derive(Clone, Debug, PartialEq)]
pub enum FractureCommand {
    /// Starts a job; cancels (at once) and replaces any job in progress.
    Start(Box<StartFracture>),
    /// Ends the job; takes effect at once, also inside a solve.
    Cancel,
}

/// One specimen of a started job.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecimenInfo {
    pub specimen: Specimen,
    /// Macroscale day of the state (0 for the core).
    pub day: u32,
    pub phase: String,
    /// Macroscale BMD changes since day 0 (%), for the states.
    pub bmd_trabecular_pct: f64,
    pub bmd_whole_pct: f64,
    /// Trabecular factor (1 for the core) and where it came from.
    pub microstructure: MicrostructureFactor,
    pub elements: usize,
    /// What the model is, in words.
    pub description: String,
}

/// The trabecular cube's view: its bone surface, which the cube's damage fields colour.
#[derive(Clone, Debug)]
pub struct CoreView {
    /// Bone surface (world mm).
    pub surface: Arc<SurfaceMesh>,
    /// Voxel step the surface was extracted with.
    pub mesh_step: usize,
    /// The slot's label.
    pub label: String,
    /// Bone volume fraction of the cube.
    pub bv_tv: f64,
}

impl PartialEq for CoreView {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.surface, &other.surface) && self.label == other.label
    }
}

/// The set-up of a started job.
#[derive(Clone, Debug)]
pub struct FractureInfo {
    /// The job these belong to (the sequence number of its Start command).
    pub run: JobId,
    pub scenario: String,
    pub step_fraction_of_onset: f64,
    /// End point: the post-peak load fraction.
    pub end_load_fraction: f64,
    /// The specimens, in run order.
    pub specimens: Vec<SpecimenInfo>,
    /// View geometry of the vertebra (the damage fields of the states are in its element
    /// order).
    pub geometry: Arc<VertebraGeometry>,
    /// The trabecular cube, when one is broken.
    pub core: Option<CoreView>,
    /// Whether the states' trabecular factors come from a multiscale run.
    pub coupled: bool,
    /// Seconds of the macroscale run and the set-up.
    pub setup_seconds: f64,
}

impl PartialEq for FractureInfo {
    fn eq(&self, other: &Self) -> bool {
        self.run == other.run
            && self.specimens == other.specimens
            && Arc::ptr_eq(&self.geometry, &other.geometry)
            && self.core == other.core
    }
}

/// The measures of one curve, in the units of the panel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FractureSummary {
    pub stiffness_kn_per_mm: f64,
    pub peak_load_kn: f64,
    pub displacement_at_peak_mm: f64,
    pub energy_to_peak_j: f64,
    pub energy_to_end_j: f64,
    pub end_displacement_mm: f64,
    pub end_point: EndPoint,
    /// Nonlinear increments solved.
    pub increments: usize,
    pub unconverged_increments: usize,
    /// Curve points (linear branch included).
    pub points: usize,
    pub seconds: f64,
}

impl FractureSummary {
    pub fn of(result: &FractureResult) -> Self {
        Self {
            stiffness_kn_per_mm: result.stiffness_n_per_mm / 1000.0,
            peak_load_kn: result.peak_load_n / 1000.0,
            displacement_at_peak_mm: result.displacement_at_peak_mm,
            energy_to_peak_j: result.energy_to_peak_mj / 1000.0,
            energy_to_end_j: result.energy_to_end_mj / 1000.0,
            end_displacement_mm: result.end_displacement_mm,
            end_point: result.end_point,
            increments: result.increments,
            unconverged_increments: result.unconverged_increments,
            points: result.curve.len(),
            seconds: result.seconds,
        }
    }
}

/// A finished specimen: its curve and damage fields. For the vertebra states the damage of
/// every snapshot is in the element order of the vertebra (as
/// [`VertebraGeometry`]'s sampler takes it); for the core it is per vertex of
/// [`CoreView::surface`].
#[derive(Clone, Debug)]
pub struct SpecimenResult {
    pub specimen: Specimen,
    pub summary: FractureSummary,
    pub curve: Vec<CurvePoint>,
    pub peak_index: usize,
    pub damage: Vec<DamageSnapshot>,
    /// Apparent strength (MPa) and strain at the peak, for the core.
    pub apparent: Option<crate::fracture::micro::ApparentMeasures>,
}

impl SpecimenResult {
    /// The kept damage field nearest to curve point `point` (at or before it when possible).
    pub fn damage_at(&self, point: usize) -> Option<&DamageSnapshot> {
        self.damage
            .iter()
            .rev()
            .find(|s| s.point <= point)
            .or_else(|| self.damage.first())
    }
}

/// Events of the fracture job (sent as [`super::Event::Fracture`]).
#[derive(Clone, Debug, PartialEq)]
pub enum FractureEvent {
    /// Set-up progress ("macroscale run: day 120/315", …).
    Preparing { run: JobId, message: String },
    /// The job is set up.
    Started(Arc<FractureInfo>),
    /// A point of the curve of specimen `index` (best effort).
    Point {
        run: JobId,
        index: usize,
        point: CurvePoint,
    },
    /// Specimen `index` is done.
    SpecimenDone {
        run: JobId,
        index: usize,
        result: SharedResult,
    },
    /// Every specimen is done.
    Finished { run: JobId, seconds: f64 },
    /// Cancelled during specimen `index` (`None`: during the set-up).
    Cancelled { run: JobId, index: Option<usize> },
    /// The job failed; the message says why.
    Failed { run: JobId, message: String },
}

/// A specimen's result behind an `Arc` (compared by identity).
#[derive(Clone, Debug)]
pub struct SharedResult(pub Arc<SpecimenResult>);

impl PartialEq for SharedResult {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for SharedResult {
    type Target = SpecimenResult;
    fn deref(&self) -> &SpecimenResult {
        &self.0
    }
}

impl FractureEvent {
    /// The job an event belongs to.
    pub fn run(&self) -> JobId {
        match self {
            FractureEvent::Started(info) => info.run,
            FractureEvent::Preparing { run, .. }
            | FractureEvent::Point { run, .. }
            | FractureEvent::SpecimenDone { run, .. }
            | FractureEvent::Finished { run, .. }
            | FractureEvent::Cancelled { run, .. }
            | FractureEvent::Failed { run, .. } => *run,
        }
    }
}
