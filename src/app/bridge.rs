//! The bridge between the simulation runner and the ECS: the runner lives in a resource; each
//! frame its events are drained (under a small time budget) into [`UiState`] (micro-FE) and
//! [`RemodelState`] (the remodeling run), and the latest micro snapshot, if newer, is handed
//! to the scene. The vertebra view reads the per-day fields from the runner's history itself.
//!
//! The microstructure view holds two structures side by side (see [`MicroSlot`]): when it is
//! first shown (at launch with `--view micro`) the generated slot receives a ReconGAN cube
//! from the built-in generator (seed 0, the card's mean BV/TV) and the real slot the
//! micro-CT sample at the generator's voxel size, when the sample is present (otherwise the
//! slot says where it was looked for). Opening on the vertebra defers them, so that the
//! remodeling run is not held up at launch by the micro jobs (some 10 s on two cores).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::window::RequestRedraw;
use bevy::winit::{EventLoopProxyWrapper, WinitUserEvent};

use osteolab::fe::{BoundaryCondition, Material};
use osteolab::gan::GeneratorCard;
use osteolab::morph::Morphometry;
use osteolab::remodel::scenario::Scenario;
use osteolab::runner::VertebraSource;
use osteolab::runner::{
    Command, Event, FeSummary, JobId, JobKind, JobReport, LoadVolumeParams, MicroSlot, ModelInfo,
    Outcome, PerSlot, ReconGanParams, Runner, RunnerOptions, SolveRequest,
};
use osteolab::synthetic::SyntheticParams;
use osteolab::volume::segment::{SegmentParams, Threshold};

use super::multiscale::{MicroMode, MsStatus, MultiscaleState};
use super::multiscale_panel::start_run;
use super::remodel::{self, DEFAULT_SCENARIO, RemodelState};
use super::scene::{RenderQuality, SceneState, ViewKind};

/// The simulation runner, owned by the app.
#[derive(Resource)]
pub struct Sim {
    pub runner: Runner,
    /// Generation of the last snapshot handed to the scene.
    seen_generation: u64,
}

/// Threshold choice in the panel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdMode {
    Otsu,
    Value,
}

/// A job in progress, as the panel shows it.
#[derive(Clone, Debug)]
pub struct Busy {
    pub job: JobId,
    pub kind: JobKind,
    pub since: Instant,
}

/// What the panel knows of one held microstructure.
#[derive(Clone, Debug, Default)]
pub struct SlotState {
    pub model: Option<Arc<ModelInfo>>,
    /// Morphometry of `model` (`Err` with the reason when undefined).
    pub morphometry: Option<Result<Morphometry, String>>,
    /// The last solve of `model`.
    pub fe: Option<FeSummary>,
    /// Why the slot is empty, said plainly (e.g. where the micro-CT sample was looked for).
    pub note: Option<String>,
}

impl SlotState {
    /// A new model replaces the old one's morphometry and solution, unless it is the same
    /// model (its morphometry event arrives before its `Finished`).
    fn set_model(&mut self, model: Arc<ModelInfo>) {
        if !self.model.as_ref().is_some_and(|m| Arc::ptr_eq(m, &model)) {
            self.morphometry = None;
            self.fe = None;
        }
        self.model = Some(model);
        self.note = None;
    }
}

/// Everything the side panel edits or shows.
#[derive(Resource)]
pub struct UiState {
    // Inputs.
    pub young_modulus_mpa: f64,
    pub poisson_ratio: f64,
    pub bc: BoundaryCondition,
    pub strain: f64,
    /// Solver tolerance as a power of ten.
    pub tolerance_exponent: i32,
    pub threshold_mode: ThresholdMode,
    pub threshold_value: f64,
    pub smoothing_sigma_voxels: f64,
    pub synthetic_bv_tv: f64,
    /// Seed of the next ReconGAN cube.
    pub recongan_seed: u64,
    /// Target BV/TV of the next ReconGAN cube (the card's mean by default).
    pub recongan_bv_tv: f64,
    /// The built-in generator's card (`Err`: why it could not be read).
    pub card: Result<GeneratorCard, String>,
    // Status.
    pub busy: Option<Busy>,
    pub stage: String,
    pub status: String,
    pub error: Option<String>,
    /// (iteration, log10 relative residual) of the current or last solve.
    pub residuals: Vec<[f64; 2]>,
    /// The real and the generated microstructure.
    pub slots: PerSlot<SlotState>,
    /// Pending "Open volume…" dialog (runs on its own thread).
    pub file_dialog: Option<Mutex<Receiver<Option<PathBuf>>>>,
    /// Smoothed frame time, ms.
    pub frame_ms: f32,
    // Scripted runs.
    pub solve_on_start: bool,
    /// Set once the start-up microstructures were requested (when the microstructure view
    /// is first shown).
    pub startup_sent: bool,
    /// Jobs a scripted run waits for: the start-up loads and, with `solve_on_start`, the
    /// solves of each structure that arrived.
    pub awaited: HashSet<JobId>,
    pub autosolve_sent: PerSlot<bool>,
    /// Set when a solve finished (completed, cancelled or failed) since start.
    pub solves_finished: u32,
    pub solve_failed: bool,
}

impl Default for UiState {
    fn default() -> Self {
        let req = SolveRequest::default();
        let card = osteolab::gan::builtin::builtin_card().map_err(|e| e.to_string());
        Self {
            young_modulus_mpa: req.material.young_modulus_mpa,
            poisson_ratio: req.material.poisson_ratio,
            bc: req.bc,
            strain: req.strain,
            tolerance_exponent: req.tolerance.log10().round() as i32,
            threshold_mode: ThresholdMode::Otsu,
            threshold_value: 100.0,
            smoothing_sigma_voxels: SegmentParams::default().sigma_voxels,
            synthetic_bv_tv: SyntheticParams::default().bv_tv,
            recongan_seed: 0,
            recongan_bv_tv: card.as_ref().map_or(0.2, |c| c.bv_tv_mean),
            card,
            busy: None,
            stage: String::new(),
            status: "starting…".into(),
            error: None,
            residuals: Vec::new(),
            slots: PerSlot::default(),
            file_dialog: None,
            frame_ms: 0.0,
            solve_on_start: false,
            startup_sent: false,
            awaited: HashSet::new(),
            autosolve_sent: PerSlot::default(),
            solves_finished: 0,
            solve_failed: false,
        }
    }
}

impl UiState {
    pub fn solve_request(&self) -> SolveRequest {
        SolveRequest {
            material: Material {
                young_modulus_mpa: self.young_modulus_mpa,
                poisson_ratio: self.poisson_ratio,
            },
            bc: self.bc,
            strain: self.strain,
            tolerance: 10f64.powi(self.tolerance_exponent),
            ..SolveRequest::default()
        }
    }

    pub fn segment_params(&self) -> SegmentParams {
        SegmentParams {
            threshold: match self.threshold_mode {
                ThresholdMode::Otsu => Threshold::Otsu,
                ThresholdMode::Value => Threshold::Value(self.threshold_value),
            },
            sigma_voxels: self.smoothing_sigma_voxels,
            ..SegmentParams::default()
        }
    }

    pub fn synthetic_params(&self) -> SyntheticParams {
        SyntheticParams {
            bv_tv: self.synthetic_bv_tv,
            ..SyntheticParams::default()
        }
    }

    pub fn recongan_params(&self) -> ReconGanParams {
        ReconGanParams {
            seed: self.recongan_seed,
            bv_tv: self.recongan_bv_tv,
        }
    }

    /// A scripted run has nothing left to wait for.
    pub fn startup_settled(&self) -> bool {
        self.startup_sent && self.awaited.is_empty()
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Started { job, kind } => {
                self.busy = Some(Busy {
                    job,
                    kind,
                    since: Instant::now(),
                });
                self.stage = format!("{}…", kind.label());
                self.error = None;
                if kind == JobKind::Solve {
                    self.residuals.clear();
                }
            }
            Event::Stage { message, .. } => self.stage = message,
            Event::Morphometry {
                slot,
                model,
                result,
                ..
            } => {
                let state = self.slots.get_mut(slot);
                state.set_model(model);
                state.morphometry = Some(result);
            }
            // Handled by RemodelState and MultiscaleState.
            Event::Remodel(_) | Event::Multiscale(_) | Event::Fracture(_) => {}
            Event::SolverProgress {
                iteration,
                relative_residual,
                ..
            } => {
                if relative_residual > 0.0 && relative_residual.is_finite() {
                    self.residuals
                        .push([iteration as f64, relative_residual.log10()]);
                }
            }
            Event::Finished { job, kind, outcome } => {
                self.awaited.remove(&job);
                if self.busy.as_ref().is_some_and(|b| b.job == job) {
                    self.busy = None;
                    self.stage.clear();
                }
                if kind == JobKind::Solve {
                    self.solves_finished += 1;
                }
                match outcome {
                    Outcome::Completed(JobReport::Model(info)) => {
                        self.status = format!("loaded {}", info.label);
                        self.slots.get_mut(info.slot).set_model(info);
                        self.residuals.clear();
                    }
                    Outcome::Completed(JobReport::Solve(summary)) => {
                        self.status = format!(
                            "{} solved in {} iterations, {:.1} s",
                            summary.slot.label(),
                            summary.iterations,
                            summary.seconds
                        );
                        self.slots.get_mut(summary.slot).fe = Some(summary);
                    }
                    Outcome::Cancelled { iteration } => {
                        self.status = match iteration {
                            Some(i) => format!("{} cancelled at iteration {i}", kind.label()),
                            None => format!("{} cancelled", kind.label()),
                        };
                    }
                    Outcome::Failed(message) => {
                        if kind == JobKind::Solve {
                            self.solve_failed = true;
                        }
                        self.status = format!("{} failed", kind.label());
                        self.error = Some(message);
                    }
                }
            }
        }
    }

    /// Sends a command, reporting a stopped runner in the panel instead of panicking.
    pub fn send(&mut self, sim: &Sim, command: Command) -> Option<JobId> {
        match sim.runner.send(command) {
            Ok(job) => Some(job),
            Err(e) => {
                self.error = Some(e.to_string());
                None
            }
        }
    }

    /// Loads a volume file into the real slot, whole, with the panel's segmentation.
    pub fn load_volume(&mut self, sim: &Sim, path: PathBuf) {
        let params = LoadVolumeParams::new(path, self.segment_params());
        self.send(sim, Command::LoadVolume(params));
    }

    /// Generates a ReconGAN cube into the generated slot with the panel's seed and BV/TV.
    pub fn generate_recongan(&mut self, sim: &Sim) -> Option<JobId> {
        let params = self.recongan_params();
        self.send(sim, Command::GenerateReconGan(params))
    }

    /// Loads the micro-CT sample into the real slot as a sub-volume directly comparable with
    /// the generated cubes (the generator's voxel edge and cube size); when the sample is
    /// absent the slot says where it was looked for, and nothing else is substituted.
    pub fn load_microct_sample(&mut self, sim: &Sim) -> Option<JobId> {
        let card = match &self.card {
            Ok(card) => card.clone(),
            Err(e) => {
                self.slots.real.note = Some(format!("no generator card to match: {e}"));
                return None;
            }
        };
        match osteolab::sample_data::locate_microct_sample() {
            Ok(path) => {
                let params = LoadVolumeParams::comparable_with(
                    path,
                    card.voxel_size_mm,
                    card.architecture.size,
                );
                self.send(sim, Command::LoadVolume(params))
            }
            Err(looked_at) => {
                self.slots.real.note = Some(format!(
                    "micro-CT not found at {}; load a volume",
                    looked_at.display()
                ));
                None
            }
        }
    }

    /// Solves the structure of `slot` with the panel's material and load.
    pub fn solve(&mut self, sim: &Sim, slot: MicroSlot) -> Option<JobId> {
        let request = self.solve_request();
        self.send(sim, Command::Solve { slot, request })
    }

    /// The start-up structures: the ReconGAN cube (generated slot) and the micro-CT sample
    /// (real slot); a scripted run waits for both.
    fn start_microstructures(&mut self, sim: &Sim) {
        let jobs = [self.generate_recongan(sim), self.load_microct_sample(sim)];
        self.awaited.extend(jobs.into_iter().flatten());
        self.startup_sent = true;
    }
}

pub struct BridgePlugin {
    pub solve_on_start: bool,
    /// Start the default scenario running at launch (otherwise it waits at day 0).
    pub remodel_on_start: bool,
    /// Open the micro view's multiscale mode and start its run once the start-up
    /// structures are there.
    pub multiscale_on_start: bool,
}

impl Plugin for BridgePlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(UiState {
            solve_on_start: self.solve_on_start,
            ..UiState::default()
        })
        .insert_resource(RemodelState {
            remodel_on_start: self.remodel_on_start,
            ..RemodelState::default()
        })
        .insert_resource(MultiscaleState {
            on_start: self.multiscale_on_start,
            mode: if self.multiscale_on_start {
                MicroMode::Multiscale
            } else {
                MicroMode::Compare
            },
            status: if self.multiscale_on_start {
                MsStatus::Waiting
            } else {
                MsStatus::Idle
            },
            checkpoint_every_days: std::env::var("OSTEOLAB_MULTISCALE_EVERY_DAYS")
                .ok()
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|&d| d > 0)
                .unwrap_or(super::multiscale::DEFAULT_CHECKPOINT_DAYS),
            ..MultiscaleState::default()
        })
        .add_systems(
            Update,
            (
                start_runner,
                pump_runner,
                poll_file_dialog,
                remodel::poll_remodel_dialog,
                remodel::tick_replay,
            )
                .chain()
                .in_set(BridgeSet),
        );
    }
}

/// The bridge systems (runner start, event pump, dialogs); scene updates run after them.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct BridgeSet;

/// Live-view triangle budget on a software rasteriser (Mesa llvmpipe draws roughly 10 k
/// triangles per millisecond on two cores; see `/work/shared/notes` and the figures in the
/// report): small enough for 20 frames/s while a solve shares the CPU.
const SOFTWARE_LIVE_TRIANGLES: usize = 20_000;
/// Live-view triangle budget on a hardware GPU.
const GPU_LIVE_TRIANGLES: usize = 400_000;

/// Starts the runner once the render path is known (the live mesh budget depends on it), with
/// a waker that nudges the winit event loop (the app redraws reactively, so without it a
/// finished solve would only show at the next input event). `OSTEOLAB_LIVE_TRIANGLES`
/// overrides the budget.
#[allow(clippy::too_many_arguments)]
fn start_runner(
    mut commands: Commands,
    proxy: Option<Res<EventLoopProxyWrapper>>,
    sim: Option<Res<Sim>>,
    scene: Res<SceneState>,
    mut ui: ResMut<UiState>,
    mut remodel: ResMut<RemodelState>,
    view: Res<ViewKind>,
    mut started: Local<bool>,
) {
    if *started || sim.is_some() {
        return;
    }
    let budget = match scene.quality {
        RenderQuality::Pending => return,
        RenderQuality::Software { .. } => SOFTWARE_LIVE_TRIANGLES,
        RenderQuality::Gpu { .. } => GPU_LIVE_TRIANGLES,
    };
    *started = true;
    let budget = std::env::var("OSTEOLAB_LIVE_TRIANGLES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(budget);
    let waker: Option<osteolab::runner::Waker> = proxy.map(|p| {
        let proxy = (**p).clone();
        Box::new(move || {
            // Fails only once the event loop has exited, when nobody needs waking.
            let _ = proxy.send_event(WinitUserEvent::WakeUp);
        }) as osteolab::runner::Waker
    });
    // Every core, at background priority: frames win whenever they need the CPU (Mesa's
    // software rasteriser is CPU-bound too), the simulation takes the rest; while the
    // remodeling runs on a software adapter, frames are paced (see `pacing`) so that the
    // rest is enough for well over 20 simulated days per second. On two cores this streams
    // about 35 days/s against 26 with one solver thread. `OSTEOLAB_SOLVER_THREADS` overrides.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let solver_threads = std::env::var("OSTEOLAB_SOLVER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(cores)
        .max(1);
    let options = RunnerOptions {
        waker,
        solver_threads: Some(solver_threads),
        background_priority: true,
        max_live_triangles: budget,
        ..RunnerOptions::default()
    };
    match Runner::spawn(options) {
        Ok(runner) => {
            let sim = Sim {
                runner,
                seen_generation: 0,
            };
            // The app opens on the built-in vertebra (its day 0, or running with
            // --remodel-on-start); the two microstructures (ReconGAN and the micro-CT sample)
            // are built first when the app opens on them, otherwise when their view is first
            // shown (see pump_runner).
            let scenario =
                Scenario::builtin(DEFAULT_SCENARIO).unwrap_or_else(|| remodel.draft.clone());
            let paused = !remodel.remodel_on_start;
            let vertebra = VertebraSource::Builtin(remodel.vertebra_params);
            if *view == ViewKind::Micro {
                ui.start_microstructures(&sim);
            }
            remodel.start(&sim, vertebra, scenario, paused);
            remodel.launch_sent = true;
            commands.insert_resource(sim);
        }
        Err(e) => ui.error = Some(format!("could not start the simulation thread: {e}")),
    }
}

#[allow(clippy::too_many_arguments)]
fn pump_runner(
    sim: Option<ResMut<Sim>>,
    view: Res<ViewKind>,
    mut ui: ResMut<UiState>,
    mut remodel: ResMut<RemodelState>,
    mut scene: ResMut<SceneState>,
    mut redraw: MessageWriter<RequestRedraw>,
    mut multiscale: ResMut<MultiscaleState>,
    mut fracture: ResMut<super::fracture::FractureState>,
) {
    let Some(mut sim) = sim else {
        return;
    };
    if *view == ViewKind::Micro && !ui.startup_sent {
        ui.start_microstructures(&sim);
    }
    for event in sim.runner.drain(1024, Duration::from_millis(3)) {
        match event {
            Event::Remodel(e) => remodel.apply(e),
            Event::Multiscale(e) => multiscale.apply(e),
            Event::Fracture(e) => fracture.apply(e),
            other => ui.apply(other),
        }
    }
    let mut seen = sim.seen_generation;
    if let Some(snapshot) = sim.runner.latest_snapshot(&mut seen) {
        // Reframe when a slot holds a different structure (not after a solve's recolouring).
        let new_model = MicroSlot::ALL.iter().any(|&slot| {
            let before = scene.shown.as_ref().and_then(|s| s.get(slot));
            match (before, snapshot.get(slot)) {
                (Some(a), Some(b)) => !Arc::ptr_eq(&a.model, &b.model),
                (None, None) => false,
                _ => true,
            }
        });
        scene.reframe |= new_model;
        scene.shown = Some(snapshot);
        scene.dirty = true;
    }
    sim.seen_generation = seen;
    let mut seen = multiscale.seen_generation;
    if let Some(snapshot) = sim.runner.latest_multiscale(&mut seen) {
        multiscale.snapshot = Some(snapshot);
    }
    multiscale.seen_generation = seen;
    // Scripted multiscale run: once the start-up structures are in (the real one when the
    // micro-CT sample is present, else the generated one).
    if multiscale.on_start && !multiscale.start_sent && ui.startup_settled() {
        multiscale.start_sent = true;
        if !start_run(&sim, &mut multiscale, &ui, &scene.quality) {
            multiscale.status = MsStatus::Failed;
        }
    }

    // Scripted solves: each structure once, as soon as it is there (jobs queue in order).
    if ui.solve_on_start {
        for slot in MicroSlot::ALL {
            if !*ui.autosolve_sent.get(slot) && ui.slots.get(slot).model.is_some() {
                *ui.autosolve_sent.get_mut(slot) = true;
                if let Some(job) = ui.solve(&sim, slot) {
                    ui.awaited.insert(job);
                }
            }
        }
    }
    // Animate (spinner, live residual plot, the vertebra recolouring) while something runs;
    // idle otherwise.
    if ui.busy.is_some()
        || scene.dirty
        || remodel.is_computing()
        || remodel.replay.is_some()
        || multiscale.is_computing()
    {
        redraw.write(RequestRedraw);
    }
}

fn poll_file_dialog(sim: Option<Res<Sim>>, mut ui: ResMut<UiState>) {
    let picked = match &ui.file_dialog {
        Some(rx) => match rx.lock().map(|rx| rx.try_recv()) {
            Ok(Ok(picked)) => Some(picked),
            Ok(Err(std::sync::mpsc::TryRecvError::Empty)) => return,
            _ => Some(None),
        },
        None => return,
    };
    ui.file_dialog = None;
    if let (Some(Some(path)), Some(sim)) = (picked, sim) {
        ui.load_volume(&sim, path);
    }
}

/// Opens the native file dialog on its own thread (never blocking the frame); the choice
/// arrives through a channel polled each frame. Needs an XDG desktop portal on Linux; without
/// one the dialog reports nothing and the panel says so.
pub fn open_file_dialog(ui: &mut UiState, pick_folder: bool) {
    if ui.file_dialog.is_some() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("osteolab-file-dialog".into())
        .spawn(move || {
            let dialog = rfd::FileDialog::new().set_title("Open micro-CT volume");
            let picked = if pick_folder {
                dialog.pick_folder()
            } else {
                dialog
                    .add_filter(
                        "volumes",
                        &["json", "nii", "gz", "raw", "dcm", "tif", "tiff"],
                    )
                    .add_filter("all files", &["*"])
                    .pick_file()
            };
            let _ = tx.send(picked);
        });
    match spawned {
        Ok(_) => ui.file_dialog = Some(Mutex::new(rx)),
        Err(e) => ui.error = Some(format!("could not open the file dialog: {e}")),
    }
}
