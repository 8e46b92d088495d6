//! The simulation thread: commands in, events and snapshots out, a cancel token.
//!
//! One long-lived thread owns the simulation state: two microstructures side by side (the
//! [`MicroSlot::Real`] one, a loaded volume such as the micro-CT sample, and the
//! [`MicroSlot::Generated`] one, a ReconGAN cube or the synthetic test structure), each with its
//! live-view surface mesh, its morphometry and its last FE solution. Consumers (the app, the command line, tests) talk to it
//! only through a [`Runner`] handle:
//!
//! - **Commands in** over an unbounded channel ([`Command`]): tiny messages that never block.
//! - **Events out** over a bounded channel ([`Event`]): [`Event::SolverProgress`] is best effort
//!   (`try_send`; when the consumer lags, progress points are dropped and counted, see
//!   [`Runner::dropped_progress`]); [`Event::Started`], [`Event::Stage`] and [`Event::Finished`]
//!   are lossless.
//! - **Big data out** through a latest-wins slot ([`LatestSlot`] of [`Snapshot`]): per
//!   microstructure, the surface mesh with per-vertex scalar fields and the FE summary. The consumer clones the `Arc` only when the
//!   generation changed; the simulation never waits for the screen.
//! - **Waker**: an optional closure, called after every event or snapshot, that the app uses to
//!   wake a reactive (idle) window.
//! - **Cancellation**: [`Runner::cancel`] (or [`Command::Cancel`]) cancels the running job and
//!   every job queued before it, through an `AtomicBool` that the FE solver checks each
//!   iteration. It takes effect at once, without waiting for the worker to read the command.
//! - **Shutdown**: [`Runner::shutdown`] cancels, sends [`Command::Shutdown`], drops the event
//!   receiver (so the worker can never block on a full channel) and joins with a timeout.
//!
//! - **Remodeling** ([`remodel`]): a macroscale run is steered over the same command channel
//!   ([`Command::Remodel`]) and reports over the same event channel ([`Event::Remodel`]); the
//!   thread steps it one day at a time between micro-FE jobs. The element field of every day
//!   goes to a shared, memory-bounded [`FieldHistory`] ([`Runner::field_history`]) for
//!   scrubbing; the view geometry ([`section`]) is built once per model on this thread.
//! - **Multiscale** ([`multiscale`]): the macroscale run driving the shape optimisation of a
//!   held microstructure, one checkpoint at a time ([`Command::Multiscale`],
//!   [`Event::Multiscale`]); its structures go out through their own latest-wins slot
//!   ([`Runner::latest_multiscale`]) and it has its own cancel flag.
//! - **Fracture** ([`fracture`]): the vertebra at the flight states (and a held trabecular
//!   cube) compressed to failure one after another ([`Command::Fracture`],
//!   [`Event::Fracture`]); curve points stream best effort, each finished curve and its damage
//!   fields go out behind an `Arc`; it has its own cancel flag.
//!
//! The pattern follows Bevy's `external_source_external_thread` example and rerun's
//! "one channel in, one channel out, drained each frame under a budget" design.

pub mod fracture;
mod micro_slot;
pub mod multiscale;
pub mod remodel;
pub mod section;
mod slot;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::fe::{BoundaryCondition, Material};
use crate::mesh::SurfaceMesh;
use crate::morph::Morphometry;
use crate::synthetic::SyntheticParams;
use crate::volume::Grid;
use crate::volume::segment::SegmentParams;

pub use fracture::{
    FractureCommand, FractureEvent, FractureInfo, FractureSummary, Specimen, SpecimenResult,
    StartFracture,
};
pub use micro_slot::{MicroSlot, PerSlot};
pub use multiscale::{
    MultiscaleCommand, MultiscaleEvent, MultiscaleInfo, MultiscaleSnapshot, StartMultiscale,
    StructureView,
};
pub use remodel::{
    DayField, FieldHistory, RemodelCommand, RemodelEvent, RemodelInfo, StartRemodel, VertebraSource,
};
pub use slot::LatestSlot;

/// Name of the per-vertex scalar field carrying the strain energy density (MPa = mJ/mm³) on the
/// surface mesh of a [`Snapshot`] after a solve.
pub const SED_FIELD: &str = "sed_mpa";

/// Default upper bound on the triangle count of the live-view surface mesh. Software renderers
/// (Mesa lavapipe) draw about 10 k triangles per millisecond, so 150 k keeps the view
/// interactive; larger structures are meshed on a coarser `step`.
pub const DEFAULT_MAX_LIVE_TRIANGLES: usize = 150_000;

/// Sequence number of a command; a job is identified by the number of the command that
/// started it.
pub type JobId = u64;

/// A closure called (from the simulation thread) whenever an event or snapshot is published.
pub type Waker = Box<dyn Fn() + Send + Sync>;

/// What to load and how to segment it (into the [`MicroSlot::Real`] slot).
#[derive(Clone, Debug, PartialEq)]
pub struct LoadVolumeParams {
    /// Path of the volume (`.json` sidecar, NIfTI, DICOM folder, image stack).
    pub path: PathBuf,
    /// Segmentation: threshold (Otsu or a value) and Gaussian smoothing.
    pub segment: SegmentParams,
    /// Downsample the grey values (block mean) to this voxel edge before segmenting; it must
    /// be an integer multiple (within 1 %) of the file's isotropic voxel edge. `None` keeps
    /// the file's resolution.
    pub voxel_size_mm: Option<f64>,
    /// Keep only the centred cube of this edge (voxels, after downsampling) and, within it,
    /// the largest 6-connected bone component. `None` keeps the whole volume.
    pub centre_cube_voxels: Option<usize>,
}

impl LoadVolumeParams {
    /// The whole volume at its own resolution.
    pub fn new(path: PathBuf, segment: SegmentParams) -> Self {
        Self {
            path,
            segment,
            voxel_size_mm: None,
            centre_cube_voxels: None,
        }
    }

    /// A sub-volume directly comparable with the cubes of a generator trained on it: grey
    /// values downsampled to the generator's voxel edge, Otsu threshold after σ = 1 voxel
    /// Gaussian smoothing, largest component, the centred cube of the generator's edge.
    pub fn comparable_with(path: PathBuf, voxel_size_mm: f64, cube_voxels: usize) -> Self {
        Self {
            path,
            segment: SegmentParams::default(),
            voxel_size_mm: Some(voxel_size_mm),
            centre_cube_voxels: Some(cube_voxels),
        }
    }
}

/// What to generate with the built-in ReconGAN generator (into the [`MicroSlot::Generated`]
/// slot; see [`crate::gan::builtin`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReconGanParams {
    /// Seed of the latent vector ([`crate::gan::latent_for`]`(seed, 0, latent_dim)`).
    pub seed: u64,
    /// Target bone volume fraction of the thresholded cube, in (0, 1]; the generator card's
    /// mean is the natural default.
    pub bv_tv: f64,
}

/// An axial compression/tension test of the loaded microstructure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SolveRequest {
    /// Tissue material (isotropic linear elastic).
    pub material: Material,
    /// Boundary condition along z.
    pub bc: BoundaryCondition,
    /// Applied apparent strain along z (negative = compression).
    pub strain: f64,
    /// Relative residual at which PCG stops.
    pub tolerance: f64,
    /// Iteration cap of the solver.
    pub max_iterations: usize,
}

impl Default for SolveRequest {
    fn default() -> Self {
        Self {
            material: Material {
                young_modulus_mpa: 10_000.0,
                poisson_ratio: 0.3,
            },
            bc: BoundaryCondition::AxialFree,
            strain: -0.01,
            tolerance: 1e-6,
            max_iterations: 20_000,
        }
    }
}

/// Commands accepted by the simulation thread.
#[derive(Clone, Debug)]
pub enum Command {
    /// Read a volume from disk, segment it, mesh it, measure it; replaces the
    /// [`MicroSlot::Real`] microstructure.
    LoadVolume(LoadVolumeParams),
    /// Generate a cube with the built-in ReconGAN generator, mesh it, measure it; replaces the
    /// [`MicroSlot::Generated`] microstructure.
    GenerateReconGan(ReconGanParams),
    /// Generate the procedural synthetic test structure (see [`crate::synthetic`]); replaces
    /// the [`MicroSlot::Generated`] microstructure.
    GenerateSynthetic(SyntheticParams),
    /// Solve an axial test on the microstructure of `slot` and recolour its mesh by SED.
    Solve {
        slot: MicroSlot,
        request: SolveRequest,
    },
    /// Cancel the running micro-FE job and every one queued before this command (the
    /// remodeling run has its own [`RemodelCommand::Cancel`]).
    Cancel,
    /// Steer the remodeling run (see [`remodel`]).
    Remodel(RemodelCommand),
    /// Start or cancel the multiscale run (see [`multiscale`]).
    Multiscale(MultiscaleCommand),
    /// Start or cancel the fracture run (see [`fracture`]).
    Fracture(FractureCommand),
    /// Stop the thread (after cancelling whatever runs).
    Shutdown,
}

/// The kind of a job, echoed in its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    LoadVolume,
    GenerateReconGan,
    GenerateSynthetic,
    Solve,
}

impl JobKind {
    pub fn label(self) -> &'static str {
        match self {
            JobKind::LoadVolume => "load volume",
            JobKind::GenerateReconGan => "generate ReconGAN",
            JobKind::GenerateSynthetic => "generate synthetic",
            JobKind::Solve => "solve",
        }
    }
}

/// Where a microstructure came from.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// The built-in procedural test structure.
    Synthetic(SyntheticParams),
    /// The built-in ReconGAN generator.
    ReconGan(ReconGanParams),
    /// A volume file, resampled and segmented as given.
    File(LoadVolumeParams),
}

/// Description of a held microstructure.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// Which of the two held microstructures this is.
    pub slot: MicroSlot,
    /// Human-readable label, e.g. "ReconGAN seed 0, 64³, BV/TV 0.208" or the file name.
    pub label: String,
    pub source: ModelSource,
    pub grid: Grid,
    pub bone_voxels: usize,
    pub bv_tv: f64,
    /// Grey-value threshold the segmentation used (files only).
    pub threshold: Option<f64>,
}

impl ModelInfo {
    pub fn is_synthetic(&self) -> bool {
        matches!(self.source, ModelSource::Synthetic(_))
    }

    /// The ReconGAN seed, for a generated cube.
    pub fn recongan_seed(&self) -> Option<u64> {
        match &self.source {
            ModelSource::ReconGan(p) => Some(p.seed),
            _ => None,
        }
    }
}

/// Results of an axial solve, without the per-voxel fields.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FeSummary {
    /// The microstructure that was solved.
    pub slot: MicroSlot,
    pub request: SolveRequest,
    pub dofs: usize,
    pub elements: usize,
    pub iterations: usize,
    pub relative_residual: f64,
    pub reaction_force_n: f64,
    pub e_app_mpa: f64,
    pub strain_energy_mj: f64,
    pub seconds: f64,
    /// Minimum and maximum strain energy density over bone voxels, MPa.
    pub sed_range_mpa: [f32; 2],
    /// Minimum and maximum of the per-vertex SED on the surface mesh, MPa.
    pub surface_sed_range_mpa: [f32; 2],
}

/// The big, latest-wins state published by the simulation thread: what each slot holds.
/// A slot whose microstructure did not change keeps the same `Arc`, so consumers can tell
/// which one to redraw with [`Arc::ptr_eq`].
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub slots: PerSlot<Option<Arc<SlotSnapshot>>>,
}

impl Snapshot {
    /// What `slot` holds, if anything.
    pub fn get(&self, slot: MicroSlot) -> Option<&Arc<SlotSnapshot>> {
        self.slots.get(slot).as_ref()
    }
}

/// One held microstructure as the screen needs it.
#[derive(Clone, Debug)]
pub struct SlotSnapshot {
    pub model: Arc<ModelInfo>,
    /// Live-view surface in world coordinates (mm); after a solve it carries the
    /// [`SED_FIELD`] per-vertex scalar.
    pub mesh: Arc<SurfaceMesh>,
    /// Voxel step the live mesh was extracted with (1 = full resolution).
    pub mesh_step: usize,
    /// The last solve on this microstructure, if any.
    pub fe: Option<FeSummary>,
}

impl SlotSnapshot {
    /// The per-vertex scalar field called `name`, if present.
    pub fn field(&self, name: &str) -> Option<&[f32]> {
        self.mesh
            .scalars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// What a completed job produced (the big data is in the snapshot slot).
#[derive(Clone, Debug, PartialEq)]
pub enum JobReport {
    /// A microstructure was loaded or generated.
    Model(Arc<ModelInfo>),
    /// A solve finished.
    Solve(FeSummary),
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Completed(JobReport),
    /// Cancelled; for solves, the iteration at which the solver stopped.
    Cancelled {
        iteration: Option<usize>,
    },
    /// Failed; the message names the file or parameter at fault.
    Failed(String),
}

/// Events emitted by the simulation thread.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Started {
        job: JobId,
        kind: JobKind,
    },
    /// A human-readable stage within a job ("reading …", "segmenting", "meshing").
    Stage {
        job: JobId,
        message: String,
    },
    /// One PCG iteration (best effort: may be dropped when the consumer lags).
    SolverProgress {
        job: JobId,
        iteration: usize,
        relative_residual: f64,
    },
    /// The morphometry ([`crate::morph::morphometry`], default parameters) of a microstructure
    /// a load or generation job has just built; sent (losslessly) before that job's
    /// `Finished`. A structure the indices are undefined for (e.g. no marrow) gives `Err`
    /// with the reason; the job still completes.
    Morphometry {
        job: JobId,
        slot: MicroSlot,
        model: Arc<ModelInfo>,
        result: Result<Morphometry, String>,
    },
    Finished {
        job: JobId,
        kind: JobKind,
        outcome: Outcome,
    },
    /// An event of the remodeling run (all lossless).
    Remodel(RemodelEvent),
    /// An event of the multiscale run (see [`multiscale`] for which are lossless).
    Multiscale(MultiscaleEvent),
    /// An event of the fracture run (see [`fracture`] for which are lossless).
    Fracture(FractureEvent),
}

/// Construction options of a [`Runner`].
pub struct RunnerOptions {
    /// Called after every event and snapshot (e.g. wakes the winit event loop).
    pub waker: Option<Waker>,
    /// Threads of the runner-owned rayon pool used by solves and meshing (`None` = one per
    /// core). The app leaves a core to the renderer.
    pub solver_threads: Option<usize>,
    /// Run the simulation threads at a lower scheduling priority (nice 10 on Linux), so an
    /// interactive window stays fluid while a solve uses the CPU; the solve only slows down
    /// when the screen actually needs the time.
    pub background_priority: bool,
    /// Capacity of the bounded event channel.
    pub event_capacity: usize,
    /// Upper bound on the live-view mesh triangle count (the extraction step is raised until
    /// the mesh fits); also bounds the vertebra surface of remodeling runs.
    pub max_live_triangles: usize,
    /// Memory budget of the per-day remodeling fields (see [`FieldHistory`]).
    pub field_history_bytes: usize,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            waker: None,
            solver_threads: None,
            background_priority: false,
            event_capacity: 1024,
            max_live_triangles: DEFAULT_MAX_LIVE_TRIANGLES,
            field_history_bytes: remodel::DEFAULT_FIELD_HISTORY_BYTES,
        }
    }
}

impl std::fmt::Debug for RunnerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerOptions")
            .field("waker", &self.waker.is_some())
            .field("solver_threads", &self.solver_threads)
            .field("background_priority", &self.background_priority)
            .field("event_capacity", &self.event_capacity)
            .field("max_live_triangles", &self.max_live_triangles)
            .field("field_history_bytes", &self.field_history_bytes)
            .finish()
    }
}

/// Errors of the runner handle itself (job failures travel as [`Outcome::Failed`]).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("could not start the simulation thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("could not build the solver thread pool: {0}")]
    ThreadPool(String),
    #[error("the simulation thread has stopped")]
    Stopped,
    #[error("the simulation thread did not stop within {0:?}")]
    ShutdownTimeout(Duration),
    #[error("the simulation thread panicked")]
    Panicked,
}

/// State shared between the handle and the worker for cancellation.
#[derive(Debug, Default)]
pub(crate) struct CancelState {
    /// Checked by long loops (the FE solver) of the running job.
    pub(crate) flag: AtomicBool,
    /// Every job with an id ≤ this value is cancelled.
    pub(crate) cancelled_through: AtomicU64,
}

impl CancelState {
    /// Called by the worker before a job starts: clears the flag, then reports whether the job
    /// was already cancelled. The order (clear, then check) means a cancel that races with the
    /// start is never lost: either the check sees `cancelled_through`, or the flag is set after
    /// it was cleared.
    pub(crate) fn begin_job(&self, job: JobId) -> bool {
        self.flag.store(false, Ordering::SeqCst);
        self.cancelled_through.load(Ordering::SeqCst) >= job
    }

    /// Whether the job should stop now.
    pub(crate) fn is_cancelled(&self, job: JobId) -> bool {
        self.flag.load(Ordering::SeqCst) || self.cancelled_through.load(Ordering::SeqCst) >= job
    }

    fn cancel_through(&self, job: JobId) {
        self.cancelled_through.fetch_max(job, Ordering::SeqCst);
        self.flag.store(true, Ordering::SeqCst);
    }
}

/// A command with its sequence number.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub(crate) job: JobId,
    pub(crate) command: Command,
}

/// Handle to the simulation thread. `Sync`, so it can live in a shared resource.
pub struct Runner {
    commands: Sender<Envelope>,
    events: Mutex<Option<Receiver<Event>>>,
    snapshots: LatestSlot<Snapshot>,
    cancel: Arc<CancelState>,
    remodel_cancel: Arc<CancelState>,
    multiscale_cancel: Arc<CancelState>,
    multiscale_snapshots: LatestSlot<MultiscaleSnapshot>,
    fracture_cancel: Arc<CancelState>,
    history: FieldHistory,
    next_job: AtomicU64,
    dropped_progress: Arc<AtomicU64>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("next_job", &self.next_job)
            .field("snapshot_generation", &self.snapshots.generation())
            .finish_non_exhaustive()
    }
}

/// Lowers the calling thread's scheduling priority (best effort; Linux only).
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority with PRIO_PROCESS and who = 0 changes only the calling thread on
        // Linux (threads are tasks with their own nice value); failure leaves it unchanged.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, 10);
        }
    }
}

impl Runner {
    /// Starts the simulation thread.
    pub fn spawn(options: RunnerOptions) -> Result<Self, RunnerError> {
        let (command_tx, command_rx) = mpsc::channel();
        let (event_tx, event_rx) = mpsc::sync_channel(options.event_capacity.max(1));
        let snapshots = LatestSlot::new();
        let cancel = Arc::new(CancelState::default());
        let dropped_progress = Arc::new(AtomicU64::new(0));
        let pool = {
            let mut builder =
                rayon::ThreadPoolBuilder::new().thread_name(|i| format!("osteolab-solver-{i}"));
            if let Some(n) = options.solver_threads {
                builder = builder.num_threads(n.max(1));
            }
            if options.background_priority {
                builder = builder.start_handler(|_| lower_thread_priority());
            }
            builder
                .build()
                .map_err(|e| RunnerError::ThreadPool(e.to_string()))?
        };
        let remodel_cancel = Arc::new(CancelState::default());
        let multiscale_cancel = Arc::new(CancelState::default());
        let multiscale_snapshots = LatestSlot::new();
        let fracture_cancel = Arc::new(CancelState::default());
        let history = FieldHistory::new(options.field_history_bytes);
        let worker = worker::Worker::new(worker::WorkerParts {
            commands: command_rx,
            emitter: worker::Emitter::new(event_tx, options.waker, Arc::clone(&dropped_progress)),
            snapshots: snapshots.clone(),
            cancel: Arc::clone(&cancel),
            remodel_cancel: Arc::clone(&remodel_cancel),
            multiscale_cancel: Arc::clone(&multiscale_cancel),
            multiscale_snapshots: multiscale_snapshots.clone(),
            fracture_cancel: Arc::clone(&fracture_cancel),
            history: history.clone(),
            pool,
            max_live_triangles: options.max_live_triangles.max(12),
        });
        let background = options.background_priority;
        let thread = std::thread::Builder::new()
            .name("osteolab-runner".into())
            .spawn(move || {
                if background {
                    lower_thread_priority();
                }
                worker.run()
            })
            .map_err(RunnerError::Spawn)?;
        Ok(Self {
            commands: command_tx,
            events: Mutex::new(Some(event_rx)),
            snapshots,
            cancel,
            remodel_cancel,
            multiscale_cancel,
            multiscale_snapshots,
            fracture_cancel,
            history,
            next_job: AtomicU64::new(1),
            dropped_progress,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Sends a command and returns its sequence number (the job id for jobs, the run id for
    /// [`RemodelCommand::Start`] and restarts). [`Command::Cancel`] and
    /// [`RemodelCommand::Cancel`] take effect immediately (see [`Runner::cancel`]);
    /// [`RemodelCommand::Start`] cancels the run before it at once too.
    pub fn send(&self, command: Command) -> Result<JobId, RunnerError> {
        let job = self.next_job.fetch_add(1, Ordering::SeqCst);
        match &command {
            Command::Cancel => self.cancel.cancel_through(job),
            Command::Shutdown => {
                self.cancel.cancel_through(job);
                self.remodel_cancel.cancel_through(job);
                self.multiscale_cancel.cancel_through(job);
                self.fracture_cancel.cancel_through(job);
            }
            Command::Remodel(RemodelCommand::Cancel) => self.remodel_cancel.cancel_through(job),
            Command::Remodel(RemodelCommand::Start(_)) => {
                self.remodel_cancel.cancel_through(job - 1)
            }
            Command::Multiscale(MultiscaleCommand::Cancel) => {
                self.multiscale_cancel.cancel_through(job)
            }
            Command::Multiscale(MultiscaleCommand::Start(_)) => {
                self.multiscale_cancel.cancel_through(job - 1)
            }
            Command::Fracture(FractureCommand::Cancel) => self.fracture_cancel.cancel_through(job),
            Command::Fracture(FractureCommand::Start(_)) => {
                self.fracture_cancel.cancel_through(job - 1)
            }
            _ => {}
        }
        self.commands
            .send(Envelope { job, command })
            .map_err(|_| RunnerError::Stopped)?;
        Ok(job)
    }

    /// Cancels the running micro-FE job and every one queued before this call (the
    /// remodeling run is cancelled with [`RemodelCommand::Cancel`]).
    pub fn cancel(&self) -> Result<JobId, RunnerError> {
        self.send(Command::Cancel)
    }

    /// The next event, if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        let guard = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        // Empty or disconnected (the thread stopped): nothing to hand out.
        guard.as_ref()?.try_recv().ok()
    }

    /// Waits up to `timeout` for the next event (`None` on timeout or when the thread stopped).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        let guard = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        guard.as_ref()?.recv_timeout(timeout).ok()
    }

    /// Drains waiting events, at most `max_events` of them or until `budget` has elapsed.
    pub fn drain(&self, max_events: usize, budget: Duration) -> Vec<Event> {
        let start = Instant::now();
        let mut out = Vec::new();
        let guard = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(rx) = guard.as_ref() else {
            return out;
        };
        while out.len() < max_events && start.elapsed() < budget {
            match rx.try_recv() {
                Ok(e) => out.push(e),
                Err(_) => break,
            }
        }
        out
    }

    /// The latest snapshot if it is newer than generation `seen` (updated in place).
    pub fn latest_snapshot(&self, seen: &mut u64) -> Option<Arc<Snapshot>> {
        self.snapshots.latest_if_newer(seen)
    }

    /// A clone of the snapshot slot (for readers on other threads).
    pub fn snapshots(&self) -> LatestSlot<Snapshot> {
        self.snapshots.clone()
    }

    /// Sends a remodeling command (shorthand for `send(Command::Remodel(command))`).
    pub fn remodel(&self, command: RemodelCommand) -> Result<JobId, RunnerError> {
        self.send(Command::Remodel(command))
    }

    /// Sends a multiscale command (shorthand for `send(Command::Multiscale(command))`).
    pub fn multiscale(&self, command: MultiscaleCommand) -> Result<JobId, RunnerError> {
        self.send(Command::Multiscale(command))
    }

    /// Sends a fracture command (shorthand for `send(Command::Fracture(command))`).
    pub fn fracture(&self, command: FractureCommand) -> Result<JobId, RunnerError> {
        self.send(Command::Fracture(command))
    }

    /// The latest structures of the multiscale run if newer than generation `seen` (updated
    /// in place).
    pub fn latest_multiscale(&self, seen: &mut u64) -> Option<Arc<MultiscaleSnapshot>> {
        self.multiscale_snapshots.latest_if_newer(seen)
    }

    /// The per-day element fields of the current remodeling run (shared; clone freely).
    pub fn field_history(&self) -> &FieldHistory {
        &self.history
    }

    /// Number of [`Event::SolverProgress`] events dropped because the channel was full.
    pub fn dropped_progress(&self) -> u64 {
        self.dropped_progress.load(Ordering::Relaxed)
    }

    /// Whether the simulation thread is still running.
    pub fn is_running(&self) -> bool {
        let guard = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        guard.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the thread: cancels the running job, sends [`Command::Shutdown`], drops the event
    /// receiver and joins within `timeout`. Idempotent. On timeout the thread is detached.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), RunnerError> {
        let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Ok(());
        };
        // Either may fail if the thread already stopped; joining below reports how it ended.
        let _ = self.send(Command::Shutdown);
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let deadline = Instant::now() + timeout;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                return Err(RunnerError::ShutdownTimeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        thread.join().map_err(|_| RunnerError::Panicked)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.shutdown(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod micro_tests;

#[cfg(test)]
mod remodel_tests;

#[cfg(test)]
mod multiscale_tests;

#[cfg(test)]
mod fracture_tests;
