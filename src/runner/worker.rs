//! The simulation thread: owns the two microstructures (real and generated, see
//! [`MicroSlot`]) and the remodeling run, runs one micro-FE job at a time and steps the
//! remodeling run one day at a time in between (see [`remodel`]).

mod fracture;
mod multiscale;
mod remodel;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};

use super::multiscale::MultiscaleSnapshot;
use super::remodel::FieldHistory;
use super::{
    CancelState, Command, Envelope, Event, FeSummary, JobId, JobKind, JobReport, LatestSlot,
    LoadVolumeParams, MicroSlot, ModelInfo, ModelSource, Outcome, PerSlot, ReconGanParams,
    SED_FIELD, SlotSnapshot, Snapshot, SolveRequest, Waker,
};
use crate::fe::{self, AxialLoad, FeError, SolveControl, SolverParams, SolverProgress};
use crate::gan::{self, Generator};
use crate::mesh::{self, ExtractParams, SurfaceMesh};
use crate::morph::{self, MorphParams, Morphometry};
use crate::synthetic::{self, SyntheticParams};
use crate::volume::segment::{VoxelBox, downsample_volume, largest_component};
use crate::volume::{self, BoneMask, Dims};

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

/// A microstructure the runner holds (one per [`MicroSlot`]).
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
    /// The two held microstructures.
    current: PerSlot<Option<Current>>,
    /// What the last snapshot showed of each slot (the coloured mesh after a solve).
    shown: PerSlot<Option<Arc<SlotSnapshot>>>,
    /// The built-in ReconGAN generator, built on first use.
    generator: Option<Arc<Generator>>,
    /// Cancellation of the remodeling run (independent of the micro-FE jobs).
    remodel_cancel: Arc<CancelState>,
    history: FieldHistory,
    remodel: Option<remodel::RemodelRun>,
    /// Cancellation of the multiscale run (independent of the others).
    multiscale_cancel: Arc<CancelState>,
    multiscale_snapshots: LatestSlot<MultiscaleSnapshot>,
    multiscale: Option<multiscale::MultiscaleJob>,
    /// Cancellation of the fracture run (independent of the others).
    fracture_cancel: Arc<CancelState>,
    fracture: Option<fracture::FractureJob>,
}

/// The shared state a [`Worker`] is built with.
pub(crate) struct WorkerParts {
    pub(crate) commands: Receiver<Envelope>,
    pub(crate) emitter: Emitter,
    pub(crate) snapshots: LatestSlot<Snapshot>,
    pub(crate) cancel: Arc<CancelState>,
    pub(crate) remodel_cancel: Arc<CancelState>,
    pub(crate) multiscale_cancel: Arc<CancelState>,
    pub(crate) multiscale_snapshots: LatestSlot<MultiscaleSnapshot>,
    pub(crate) fracture_cancel: Arc<CancelState>,
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
            current: PerSlot::default(),
            shown: PerSlot::default(),
            generator: None,
            remodel_cancel: parts.remodel_cancel,
            history: parts.history,
            remodel: None,
            multiscale_cancel: parts.multiscale_cancel,
            multiscale_snapshots: parts.multiscale_snapshots,
            multiscale: None,
            fracture_cancel: parts.fracture_cancel,
            fracture: None,
        }
    }

    /// The thread's main loop until `Shutdown`, a dropped handle, or a dropped event
    /// receiver. While a remodeling run has days to step or a multiscale run checkpoints to
    /// compute, commands are polled between days and checkpoints; otherwise the thread sleeps
    /// until the next command.
    pub(crate) fn run(mut self) {
        loop {
            let envelope = if self.remodel_wants_step()
                || self.multiscale_wants_step()
                || self.fracture_wants_step()
            {
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
                None => {
                    if self.remodel_wants_step() {
                        self.remodel_step();
                    }
                    if self.multiscale_wants_step() && !self.emitter.is_disconnected() {
                        self.multiscale_step();
                    }
                    if self.fracture_wants_step() && !self.emitter.is_disconnected() {
                        self.fracture_step();
                    }
                }
                Some(Envelope { job, command }) => match command {
                    // Cancellation already took effect through the shared flag.
                    Command::Cancel => {}
                    Command::Shutdown => break,
                    Command::Remodel(c) => self.remodel_command(job, c),
                    Command::Multiscale(c) => self.multiscale_command(job, c),
                    Command::Fracture(c) => self.fracture_command(job, c),
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
            Command::GenerateReconGan(_) => JobKind::GenerateReconGan,
            Command::GenerateSynthetic(_) => JobKind::GenerateSynthetic,
            Command::Solve { .. } => JobKind::Solve,
            Command::Cancel
            | Command::Shutdown
            | Command::Remodel(_)
            | Command::Multiscale(_)
            | Command::Fracture(_) => {
                return;
            }
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
            Command::GenerateReconGan(params) => self.generate_recongan(job, params),
            Command::GenerateSynthetic(params) => self.generate_synthetic(job, params),
            Command::Solve { slot, request } => self.solve(job, slot, request),
            Command::Cancel
            | Command::Shutdown
            | Command::Remodel(_)
            | Command::Multiscale(_)
            | Command::Fracture(_) => Err(Stop::Failed("not a micro-FE job".into())),
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
        let mut volume = volume::load_volume(&path).map_err(|e| failed_naming(&path, &e))?;
        self.check_cancel(job)?;
        if let Some(target_mm) = params.voxel_size_mm {
            let factor = downsample_factor(volume.grid.voxel_size_mm, target_mm)
                .map_err(|m| Stop::Failed(format!("{}: {m}", path.display())))?;
            if factor > 1 {
                self.stage(job, format!("downsampling ×{factor} to {target_mm} mm"));
                volume = self
                    .pool
                    .install(|| downsample_volume(&volume, factor))
                    .map_err(|e| failed_naming(&path, &e))?;
                self.check_cancel(job)?;
            }
        }
        self.stage(job, "segmenting");
        let segment_params = params.segment;
        let (mut mask, threshold) = self
            .pool
            .install(|| volume::segment::segment_with_threshold(&volume, &segment_params))
            .map_err(|e| failed_naming(&path, &e))?;
        drop(volume);
        self.check_cancel(job)?;
        if let Some(edge) = params.centre_cube_voxels {
            let region = centred_cube(mask.dims(), edge).ok_or_else(|| {
                let d = mask.dims();
                Stop::Failed(format!(
                    "{}: a centred {edge}³ cube does not fit in the {}×{}×{} volume",
                    path.display(),
                    d.nx,
                    d.ny,
                    d.nz
                ))
            })?;
            let cropped =
                volume::segment::crop_mask(&mask, &region).map_err(|e| failed_naming(&path, &e))?;
            mask = largest_component(&cropped);
        }
        if mask.count() == 0 {
            return Err(Stop::Failed(format!(
                "{}: segmentation left no bone voxels; lower the threshold",
                path.display()
            )));
        }
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let d = mask.dims();
        let label = match params.centre_cube_voxels {
            Some(edge) => format!(
                "{file}, centred {edge}³ at {} mm",
                fmt_mm(mask.grid.voxel_size_mm[0])
            ),
            None if params.voxel_size_mm.is_some() => format!(
                "{file}, {}×{}×{} at {} mm",
                d.nx,
                d.ny,
                d.nz,
                fmt_mm(mask.grid.voxel_size_mm[0])
            ),
            None => file,
        };
        let info = ModelInfo {
            slot: MicroSlot::Real,
            label,
            source: ModelSource::File(params),
            grid: mask.grid,
            bone_voxels: mask.count(),
            bv_tv: mask.bv_tv(),
            threshold: Some(threshold),
        };
        self.install_model(job, info, mask)
    }

    fn generate_recongan(&mut self, job: JobId, params: ReconGanParams) -> Result<JobReport, Stop> {
        if !(params.bv_tv > 0.0 && params.bv_tv <= 1.0) {
            return Err(Stop::Failed(format!(
                "ReconGAN: BV/TV must be in (0, 1], got {}",
                params.bv_tv
            )));
        }
        let generator = match &self.generator {
            Some(g) => Arc::clone(g),
            None => {
                self.stage(job, "loading the built-in ReconGAN generator");
                let g = Arc::new(
                    self.pool
                        .install(gan::builtin::builtin)
                        .map_err(|e| Stop::Failed(format!("ReconGAN: {e}")))?,
                );
                self.generator = Some(Arc::clone(&g));
                g
            }
        };
        self.check_cancel(job)?;
        let card = generator.card();
        let size = card.architecture.size;
        let voxel_size_mm = card.voxel_size_mm;
        self.stage(
            job,
            format!("generating a {size}³ cube, seed {}", params.seed),
        );
        let field = self.pool.install(|| generator.generate(params.seed, 0));
        self.check_cancel(job)?;
        self.stage(
            job,
            format!(
                "smoothing (σ = {} voxel), thresholding to BV/TV {:.3}, keeping the largest component",
                card.mask_sigma(),
                params.bv_tv
            ),
        );
        let mask = self
            .pool
            .install(|| generator.field_to_mask(&field, params.bv_tv))
            .map_err(|e| Stop::Failed(format!("ReconGAN: {e}")))?;
        drop(field);
        self.check_cancel(job)?;
        let info = ModelInfo {
            slot: MicroSlot::Generated,
            label: format!(
                "ReconGAN seed {}, {size}³ at {} mm, BV/TV {:.3}",
                params.seed,
                fmt_mm(voxel_size_mm),
                mask.bv_tv()
            ),
            source: ModelSource::ReconGan(params),
            grid: mask.grid,
            bone_voxels: mask.count(),
            bv_tv: mask.bv_tv(),
            threshold: None,
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
            slot: MicroSlot::Generated,
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

    /// Meshes and measures a new microstructure, makes it the one of its slot and publishes
    /// it, then reports its morphometry. Nothing changes when the job is cancelled first.
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
        self.stage(job, "morphometry");
        let morphometry: Result<Morphometry, String> = self
            .pool
            .install(|| morph::morphometry(&mask, &MorphParams::default()))
            .map_err(|e| e.to_string());
        self.check_cancel(job)?;
        let slot = info.slot;
        let info = Arc::new(info);
        let mesh = Arc::new(mesh);
        *self.current.get_mut(slot) = Some(Current {
            info: Arc::clone(&info),
            mask: Arc::new(mask),
            mesh: Arc::clone(&mesh),
            mesh_step,
        });
        self.publish(
            slot,
            SlotSnapshot {
                model: Arc::clone(&info),
                mesh,
                mesh_step,
                fe: None,
            },
        );
        self.emitter.send(Event::Morphometry {
            job,
            slot,
            model: Arc::clone(&info),
            result: morphometry,
        });
        Ok(JobReport::Model(info))
    }

    /// Replaces what `slot` shows and publishes both slots.
    fn publish(&mut self, slot: MicroSlot, shown: SlotSnapshot) {
        *self.shown.get_mut(slot) = Some(Arc::new(shown));
        self.snapshots.publish(Arc::new(Snapshot {
            slots: self.shown.clone(),
        }));
        self.emitter.wake();
    }

    fn solve(
        &mut self,
        job: JobId,
        slot: MicroSlot,
        request: SolveRequest,
    ) -> Result<JobReport, Stop> {
        let Some(current) = self.current.get(slot).as_ref() else {
            return Err(Stop::Failed(format!(
                "no microstructure in the {} slot: {} first",
                slot.label(),
                match slot {
                    MicroSlot::Real => "load a volume",
                    MicroSlot::Generated => "generate one",
                }
            )));
        };
        self.stage(
            job,
            format!(
                "solving {} on the {} {} ({} bone voxels)",
                bc_label(request.bc),
                slot.label(),
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
            slot,
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
        let shown = SlotSnapshot {
            model: Arc::clone(&current.info),
            mesh: Arc::new(coloured),
            mesh_step: current.mesh_step,
            fe: Some(summary),
        };
        self.publish(slot, shown);
        Ok(JobReport::Solve(summary))
    }
}

/// The integer factor that takes an isotropic voxel edge `from_mm` to `to_mm` (within 1 %).
fn downsample_factor(from_mm: [f64; 3], to_mm: f64) -> Result<usize, String> {
    let edge = from_mm[0];
    if from_mm.iter().any(|v| (v - edge).abs() > 1e-6 * edge) {
        return Err(format!(
            "resampling needs isotropic voxels, the file has {from_mm:?} mm"
        ));
    }
    if !(to_mm.is_finite() && to_mm > 0.0 && edge > 0.0) {
        return Err(format!("cannot resample {edge} mm voxels to {to_mm} mm"));
    }
    let ratio = to_mm / edge;
    let factor = ratio.round();
    if factor < 1.0 || (ratio - factor).abs() > 0.01 * ratio {
        return Err(format!(
            "{to_mm} mm is not an integer multiple of the file's {edge} mm voxels"
        ));
    }
    Ok(factor as usize)
}

/// The centred cube of edge `edge` inside `dims`, if it fits.
fn centred_cube(dims: Dims, edge: usize) -> Option<VoxelBox> {
    let d = dims.as_array();
    if edge == 0 || d.iter().any(|&n| n < edge) {
        return None;
    }
    Some(VoxelBox {
        min: d.map(|n| (n - edge) / 2),
        dims: Dims::new(edge, edge, edge),
    })
}

/// A voxel edge in mm, without trailing zeros (0.039, 0.0195).
fn fmt_mm(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
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
