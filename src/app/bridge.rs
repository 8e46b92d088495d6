//! The bridge between the simulation runner and the ECS: the runner lives in a resource; each
//! frame its events are drained (under a small time budget) into [`UiState`] (micro-FE) and
//! [`RemodelState`] (the remodeling run), and the latest micro snapshot, if newer, is handed
//! to the scene. The vertebra view reads the per-day fields from the runner's history itself.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::window::RequestRedraw;
use bevy::winit::{EventLoopProxyWrapper, WinitUserEvent};

use osteolab::fe::{BoundaryCondition, Material};
use osteolab::remodel::scenario::Scenario;
use osteolab::runner::VertebraSource;
use osteolab::runner::{
    Command, Event, FeSummary, JobId, JobKind, JobReport, LoadVolumeParams, ModelInfo, Outcome,
    Runner, RunnerOptions, SolveRequest,
};
use osteolab::synthetic::SyntheticParams;
use osteolab::volume::segment::{SegmentParams, Threshold};

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
    // Status.
    pub busy: Option<Busy>,
    pub stage: String,
    pub status: String,
    pub error: Option<String>,
    /// (iteration, log10 relative residual) of the current or last solve.
    pub residuals: Vec<[f64; 2]>,
    pub model: Option<Arc<ModelInfo>>,
    pub fe: Option<FeSummary>,
    /// Pending "Open volume…" dialog (runs on its own thread).
    pub file_dialog: Option<Mutex<Receiver<Option<PathBuf>>>>,
    /// Smoothed frame time, ms.
    pub frame_ms: f32,
    // Scripted runs.
    pub solve_on_start: bool,
    pub autosolve_sent: bool,
    /// Set when a solve finished (completed, cancelled or failed) since start.
    pub solves_finished: u32,
    pub solve_failed: bool,
}

impl Default for UiState {
    fn default() -> Self {
        let req = SolveRequest::default();
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
            busy: None,
            stage: String::new(),
            status: "starting…".into(),
            error: None,
            residuals: Vec::new(),
            model: None,
            fe: None,
            file_dialog: None,
            frame_ms: 0.0,
            solve_on_start: false,
            autosolve_sent: false,
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
            // Handled by RemodelState.
            Event::Remodel(_) => {}
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
                        self.model = Some(info);
                        self.fe = None;
                        self.residuals.clear();
                    }
                    Outcome::Completed(JobReport::Solve(summary)) => {
                        self.status = format!(
                            "solved in {} iterations, {:.1} s",
                            summary.iterations, summary.seconds
                        );
                        self.fe = Some(summary);
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
    pub fn send(&mut self, sim: &Sim, command: Command) {
        if let Err(e) = sim.runner.send(command) {
            self.error = Some(e.to_string());
        }
    }

    pub fn load_volume(&mut self, sim: &Sim, path: PathBuf) {
        let params = LoadVolumeParams {
            path,
            segment: self.segment_params(),
        };
        self.send(sim, Command::LoadVolume(params));
    }
}

pub struct BridgePlugin {
    pub solve_on_start: bool,
    /// Start the default scenario running at launch (otherwise it waits at day 0).
    pub remodel_on_start: bool,
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
            // --remodel-on-start) and the built-in synthetic microstructure; the model of the
            // view shown first is built first.
            let params = ui.synthetic_params();
            let scenario =
                Scenario::builtin(DEFAULT_SCENARIO).unwrap_or_else(|| remodel.draft.clone());
            let paused = !remodel.remodel_on_start;
            let vertebra = VertebraSource::Builtin(remodel.vertebra_params);
            if *view == ViewKind::Micro {
                ui.send(&sim, Command::GenerateSynthetic(params));
                remodel.start(&sim, vertebra, scenario, paused);
            } else {
                remodel.start(&sim, vertebra, scenario, paused);
                ui.send(&sim, Command::GenerateSynthetic(params));
            }
            remodel.launch_sent = true;
            commands.insert_resource(sim);
        }
        Err(e) => ui.error = Some(format!("could not start the simulation thread: {e}")),
    }
}

fn pump_runner(
    sim: Option<ResMut<Sim>>,
    mut ui: ResMut<UiState>,
    mut remodel: ResMut<RemodelState>,
    mut scene: ResMut<SceneState>,
    mut redraw: MessageWriter<RequestRedraw>,
) {
    let Some(mut sim) = sim else {
        return;
    };
    for event in sim.runner.drain(1024, Duration::from_millis(3)) {
        match event {
            Event::Remodel(e) => remodel.apply(e),
            other => ui.apply(other),
        }
    }
    let mut seen = sim.seen_generation;
    if let Some(snapshot) = sim.runner.latest_snapshot(&mut seen) {
        let new_model = scene
            .shown
            .as_ref()
            .is_none_or(|s| !Arc::ptr_eq(&s.model, &snapshot.model));
        scene.reframe |= new_model;
        scene.shown = Some(snapshot);
        scene.dirty = true;
    }
    sim.seen_generation = seen;

    if ui.solve_on_start && !ui.autosolve_sent && ui.model.is_some() && ui.busy.is_none() {
        ui.autosolve_sent = true;
        let request = ui.solve_request();
        ui.send(&sim, Command::Solve(request));
    }
    // Animate (spinner, live residual plot, the vertebra recolouring) while something runs;
    // idle otherwise.
    if ui.busy.is_some() || scene.dirty || remodel.is_computing() || remodel.replay.is_some() {
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
