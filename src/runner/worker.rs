//! The simulation thread: owns the current microstructure and the remodeling run, runs one
//! micro-FE job at a time and steps the remodeling run one day at a time in between (see
//! [`remodel`]).

mod remodel;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};

use super::remodel::FieldHistory;
use super::{
    CancelState, Command, Envelope, Event, FeSummary, JobId, JobKind, JobReport, LatestSlot,
    LoadVolumeParams, ModelInfo, ModelSource, Outcome, SED_FIELD, Snapshot, SolveRequest, Waker,
};
use crate::fe::{self, AxialLoad, FeError, SolveControl, SolverParams, SolverProgress};
use crate::mesh::{self, ExtractParams, SurfaceMesh};
use crate::synthetic::{self, SyntheticParams};
use crate::volume::{self, BoneMask};

/// Sends events to the consumer and wakes it.
pub(crate) struct Emitter {
    tx: SyncSender<Event>,
    waker: Option<Waker>,
    dropped_progress: Arc<AtomicU64>,
    disconnected: AtomicBool,
}

impl Emitter {
    pub(crate) fn new(
        tx: SyncSender<Event>,
        waker: Option<Waker>,
        dropped_progress: Arc<AtomicU64>,
    ) -> Self {
        Self {
            tx,
            waker,
            dropped_progress,
            disconnected: AtomicBool::new(false),
        }
    }

    fn wake(&self) {
        if let Some(w) = &self.waker {
            w();
        }
    }

    /// Lossless send (blocks while the channel is full; fails only once the receiver is gone).
    fn send(&self, event: Event) {
        if self.tx.send(event).is_err() {
            self.disconnected.store(true, Ordering::Relaxed);
        }
        self.wake();
    }

    /// Best-effort send: a full channel drops the event and counts it.
    fn send_progress(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => self.wake(),
            Err(TrySendError::Full(_)) => {
                self.dropped_progress.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.disconnected.store(true, Ordering::Relaxed);
            }
        }
    }

    fn is_disconnected(&self) -> bool {
        self.disconnected.load(Ordering::Relaxed)
    }
}

/// The microstructure the runner currently holds.
struct Current {
    info: Arc<ModelInfo>,
    mask: Arc<BoneMask>,
    /// The uncoloured live-view mesh.
    mesh: Arc<SurfaceMesh>,
    mesh_step: usize,
}

/// Why a job stopped early.
enum Stop {
    Cancelled(Option<usize>),
    Failed(String),
}

pub(crate) struct Worker {
    commands: Receiver<Envelope>,
    emitter: Emitter,
    snapshots: LatestSlot<Snapshot>,
    cancel: Arc<CancelState>,
    pool: rayon::ThreadPool,
    max_live_triangles: usize,
    current: Option<Current>,
    /// Cancellation of the remodeling run (independent of the micro-FE jobs).
    remodel_cancel: Arc<CancelState>,
    history: FieldHistory,
    remodel: Option<remodel::RemodelRun>,
}

/// The shared state a [`Worker`] is built with.
pub(crate) struct WorkerParts {
    pub(crate) commands: Receiver<Envelope>,
    pub(crate) emitter: Emitter,
    pub(crate) snapshots: LatestSlot<Snapshot>,
    pub(crate) cancel: Arc<CancelState>,
    pub(crate) remodel_cancel: Arc<CancelState>,
    pub(crate) history: FieldHistory,
    pub(crate) pool: rayon::ThreadPool,
    pub(crate) max_live_triangles: usize,
}

impl Worker {
    pub(crate) fn new(parts: WorkerParts) -> Self {
        Self {
            commands: parts.commands,
            emitter: parts.emitter,
            snapshots: parts.snapshots,
            cancel: parts.cancel,
            pool: parts.pool,
            max_live_triangles: parts.max_live_triangles,
            current: None,
            remodel_cancel: parts.remodel_cancel,
            history: parts.history,
            remodel: None,
        }
    }

    /// The thread's main loop until `Shutdown`, a dropped handle, or a dropped event
    /// receiver. While a remodeling run has days to step, commands are polled between days;
    /// otherwise the thread sleeps until the next command.
    pub(crate) fn run(mut self) {
        loop {
            let envelope = if self.remodel_wants_step() {
                match self.commands.try_recv() {
                    Ok(e) => Some(e),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => break,
                }
            } else {
                match self.commands.recv() {
                    Ok(e) => Some(e),
                    Err(_) => break,
                }
            };
            match envelope {
                None => self.remodel_step(),
                Some(Envelope { job, command }) => match command {
                    // Cancellation already took effect through the shared flag.
                    Command::Cancel => {}
                    Command::Shutdown => break,
                    Command::Remodel(c) => self.remodel_command(job, c),
                    job_command => self.run_micro_job(job, job_command),
                },
            }
            if self.emitter.is_disconnected() {
                break;
            }
        }
    }

    /// Runs one micro-FE job to completion, with its Started and Finished events.
    fn run_micro_job(&mut self, job: JobId, command: Command) {
        let kind = match &command {
            Command::LoadVolume(_) => JobKind::LoadVolume,
            Command::GenerateSynthetic(_) => JobKind::GenerateSynthetic,
            Command::Solve(_) => JobKind::Solve,
            Command::Cancel | Command::Shutdown | Command::Remodel(_) => return,
        };
        self.emitter.send(Event::Started { job, kind });
        let outcome = if self.cancel.begin_job(job) {
            Outcome::Cancelled { iteration: None }
        } else {
            // A panic in a job must not take the thread (and the app) down with it.
            let result = catch_unwind(AssertUnwindSafe(|| self.run_job(job, command)));
            match result {
                Ok(Ok(report)) => Outcome::Completed(report),
                Ok(Err(Stop::Cancelled(iteration))) => Outcome::Cancelled { iteration },
                Ok(Err(Stop::Failed(message))) => Outcome::Failed(message),
                Err(panic) => Outcome::Failed(format!(
                    "internal error in {}: {}",
                    kind.label(),
                    panic_message(&panic)
                )),
            }
        };
        self.emitter.send(Event::Finished { job, kind, outcome });
    }

    fn run_job(&mut self, job: JobId, command: Command) -> Result<JobReport, Stop> {
        match command {
            Command::LoadVolume(params) => self.load_volume(job, params),
            Command::GenerateSynthetic(params) => self.generate_synthetic(job, params),
            Command::Solve(request) => self.solve(job, request),
            Command::Cancel | Command::Shutdown | Command::Remodel(_) => {
                Err(Stop::Failed("not a micro-FE job".into()))
            }
        }
    }

    fn stage(&self, job: JobId, message: impl Into<String>) {
        self.emitter.send(Event::Stage {
            job,
            message: message.into(),
        });
    }

    fn check_cancel(&self, job: JobId) -> Result<(), Stop> {
        if self.cancel.is_cancelled(job) {
            Err(Stop::Cancelled(None))
        } else {
            Ok(())
        }
    }

    fn load_volume(&mut self, job: JobId, params: LoadVolumeParams) -> Result<JobReport, Stop> {
        let path = params.path.clone();
        self.stage(job, format!("reading {}", path.display()));
        let volume = volume::load_volume(&path).map_err(|e| failed_naming(&path, &e))?;
        self.check_cancel(job)?;
        self.stage(job, "segmenting");
        let segment_params = params.segment;
        let (mask, threshold) = self
            .pool
            .install(|| volume::segment::segment_with_threshold(&volume, &segment_params))
            .map_err(|e| failed_naming(&path, &e))?;
        drop(volume);
        self.check_cancel(job)?;
        if mask.count() == 0 {
            return Err(Stop::Failed(format!(
                "{}: segmentation left no bone voxels; lower the threshold",
                path.display()
            )));
        }
        let label = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let info = ModelInfo {
            label,
            source: ModelSource::File {
                path,
                segment: segment_params,
            },
            grid: mask.grid,
            bone_voxels: mask.count(),
            bv_tv: mask.bv_tv(),
            threshold: Some(threshold),
        };
        self.install_model(job, info, mask)
    }

    fn generate_synthetic(
        &mut self,
        job: JobId,
        params: SyntheticParams,
    ) -> Result<JobReport, Stop> {
        self.stage(job, "generating synthetic trabecular structure");
        let mask = self
            .pool
            .install(|| synthetic::synthetic_trabecular(&params))
            .map_err(|e| Stop::Failed(format!("synthetic structure: {e}")))?;
        self.check_cancel(job)?;
        let d = mask.dims();
        let info = ModelInfo {
            label: format!(
                "synthetic trabecular, {}×{}×{} voxels, BV/TV {:.3}",
                d.nx,
                d.ny,
                d.nz,
                mask.bv_tv()
            ),
            source: ModelSource::Synthetic(params),
            grid: mask.grid,
            bone_voxels: mask.count(),
            bv_tv: mask.bv_tv(),
            threshold: None,
        };
        self.install_model(job, info, mask)
    }

    /// Meshes a new microstructure, publishes it and makes it current.
    fn install_model(
        &mut self,
        job: JobId,
        info: ModelInfo,
        mask: BoneMask,
    ) -> Result<JobReport, Stop> {
        self.stage(job, "extracting surface");
        let max = self.max_live_triangles;
        let (mesh, mesh_step) = self.pool.install(|| live_mesh(&mask, max));
        self.check_cancel(job)?;
        let info = Arc::new(info);
        let mesh = Arc::new(mesh);
        self.snapshots.publish(Arc::new(Snapshot {
            model: Arc::clone(&info),
            mesh: Arc::clone(&mesh),
            mesh_step,
            fe: None,
        }));
        self.emitter.wake();
        self.current = Some(Current {
            info: Arc::clone(&info),
            mask: Arc::new(mask),
            mesh,
            mesh_step,
        });
        Ok(JobReport::Model(info))
    }

    fn solve(&mut self, job: JobId, request: SolveRequest) -> Result<JobReport, Stop> {
        let Some(current) = self.current.as_ref() else {
            return Err(Stop::Failed(
                "no microstructure loaded: open a volume or generate the synthetic one first"
                    .into(),
            ));
        };
        self.stage(
            job,
            format!(
                "solving {} on {} ({} bone voxels)",
                bc_label(request.bc),
                current.info.label,
                current.info.bone_voxels
            ),
        );
        let emitter = &self.emitter;
        let progress = move |p: &SolverProgress| {
            emitter.send_progress(Event::SolverProgress {
                job,
                iteration: p.iteration,
                relative_residual: p.relative_residual,
            });
        };
        let control = SolveControl {
            cancel: Some(&self.cancel.flag),
            progress: Some(&progress),
            warm_start: None,
        };
        let params = SolverParams {
            tolerance: request.tolerance,
            max_iterations: request.max_iterations,
            ..SolverParams::default()
        };
        let load = AxialLoad {
            bc: request.bc,
            strain: request.strain,
        };
        let mask = Arc::clone(&current.mask);
        let result = self
            .pool
            .install(|| fe::solve_axial(&mask, &request.material, &load, &params, &control));
        let solution = match result {
            Ok(s) => s,
            Err(FeError::Cancelled { iterations }) => {
                return Err(Stop::Cancelled(Some(iterations)));
            }
            Err(e) => return Err(Stop::Failed(format!("solve failed: {e}"))),
        };

        self.stage(job, "colouring the surface by strain energy density");
        let base = Arc::clone(&current.mesh);
        let sed = &solution.sed_mpa;
        let vertex_sed = self
            .pool
            .install(|| mesh::try_sample_voxel_field(&base, &mask.grid, &mask, sed, SED_FIELD))
            .map_err(|e| Stop::Failed(format!("colouring the surface by SED: {e}")))?;
        let sed_range_mpa = range_over_mask(sed, &mask);
        let surface_sed_range_mpa = range(&vertex_sed);
        let mut coloured = (*base).clone();
        coloured.scalars.retain(|(name, _)| name != SED_FIELD);
        coloured.scalars.push((SED_FIELD.to_string(), vertex_sed));

        let summary = FeSummary {
            request,
            dofs: solution.dofs,
            elements: solution.elements,
            iterations: solution.iterations,
            relative_residual: solution.relative_residual,
            reaction_force_n: solution.reaction_force_n,
            e_app_mpa: solution.e_app_mpa,
            strain_energy_mj: solution.strain_energy_mj,
            seconds: solution.seconds,
            sed_range_mpa,
            surface_sed_range_mpa,
        };
        self.snapshots.publish(Arc::new(Snapshot {
            model: Arc::clone(&current.info),
            mesh: Arc::new(coloured),
            mesh_step: current.mesh_step,
            fe: Some(summary),
        }));
        self.emitter.wake();
        Ok(JobReport::Solve(summary))
    }
}

fn bc_label(bc: fe::BoundaryCondition) -> &'static str {
    match bc {
        fe::BoundaryCondition::AxialFree => "axial-free",
        fe::BoundaryCondition::AxialClamped => "axial-clamped",
        fe::BoundaryCondition::AxialConfined => "axial-confined",
        fe::BoundaryCondition::Kubc => "kubc",
    }
}

/// A failure message that names the file, whether or not the underlying error already does.
fn failed_naming(path: &Path, error: &dyn std::fmt::Display) -> Stop {
    let message = error.to_string();
    let shown = path.display().to_string();
    if message.contains(&shown) {
        Stop::Failed(message)
    } else {
        Stop::Failed(format!("{shown}: {message}"))
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Gaussian smoothing (voxels) of the bone indicator before contouring the live-view mesh:
/// enough to hide the voxel staircase, small against a trabecular thickness of 5–10 voxels.
const LIVE_SMOOTHING_SIGMA_VOXELS: f64 = 0.6;

/// Extracts the live-view surface with the smallest `step` whose mesh has at most
/// `max_triangles` triangles.
fn live_mesh(mask: &BoneMask, max_triangles: usize) -> (SurfaceMesh, usize) {
    let params = ExtractParams {
        smoothing_sigma_voxels: LIVE_SMOOTHING_SIGMA_VOXELS,
        ..ExtractParams::default()
    };
    mesh::extract_surface_within(mask, &params, max_triangles)
}

fn range(values: &[f32]) -> [f32; 2] {
    let mut lo = f32::INFINITY;
    let mut hi = f32::NEG_INFINITY;
    for &v in values.iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo <= hi { [lo, hi] } else { [0.0, 0.0] }
}

fn range_over_mask(values: &[f32], mask: &BoneMask) -> [f32; 2] {
    let mut lo = f32::INFINITY;
    let mut hi = f32::NEG_INFINITY;
    for (&v, _) in values
        .iter()
        .zip(&mask.voxels)
        .filter(|(v, b)| **b && v.is_finite())
    {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo <= hi { [lo, hi] } else { [0.0, 0.0] }
}
