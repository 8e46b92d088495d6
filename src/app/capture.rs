//! Scripted runs (`--screenshot PATH --frames N`), frame-time statistics and the rate at
//! which simulated days reach the app.
//!
//! The screenshot is taken once at least N frames were rendered *and* the scene is ready:
//! - microstructure view: the start-up structures (the ReconGAN cube and, when the data is
//!   present, the micro-CT sample) have arrived and are on screen for a few frames; with
//!   `solve_on_start`, both have been solved and their SED-coloured meshes are shown;
//! - vertebra view: the vertebra has been on screen for a few frames. A run started with
//!   `--remodel-on-start` keeps going: the capture shows the day reached at that frame, or,
//!   with `OSTEOLAB_CAPTURE_DAY=D`, waits until day D is the one shown (or the run ended)
//!   and has been on screen for a few frames, so the picture does not depend on how fast
//!   the machine is.
//! - fracture mode (`--fracture-on-start`): the fracture run has ended (every curve done, or
//!   cancelled or failed) and the damage field of the last finished curve at its peak is on
//!   screen;
//! - multiscale mode (`--multiscale-on-start`): [`MULTISCALE_CAPTURE_CHECKPOINTS`] checkpoints
//!   (or `OSTEOLAB_CAPTURE_CHECKPOINTS`) are done and their structures on screen, or the run
//!   ended; the run keeps going.
//!
//! The PNG is written atomically; the app exits after the write. Frame times (overall, while
//! a micro-FE job ran, while the remodeling computed) and the days/s of the remodeling
//! stream are printed to stderr at exit.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};
use bevy::window::RequestRedraw;

use super::bridge::UiState;
use super::fracture::{FractureState, FractureStatus};
use super::fracture_scene::FractureView;
use super::multiscale::{MsStatus, MultiscaleState};
use super::multiscale_scene::MultiscaleView;
use super::remodel::{RemodelState, RunStatus};
use super::scene::{SceneState, ViewKind};
use super::vertebra::VertebraView;

/// Frames the shown mesh must have been on screen before a capture (pipeline compilation on a
/// software adapter takes a few frames).
const SETTLE_FRAMES: u32 = 8;
/// Checkpoints after day 0 a scripted multiscale capture waits for: with the default 30-day
/// interval of spaceflight-215, day 270, a month into the recovery, so that day 0, the end of
/// the flight and the recovering structure show side by side.
pub const MULTISCALE_CAPTURE_CHECKPOINTS: usize = 11;
/// Give up waiting for a scripted solve after this long (the capture is taken anyway).
const MAX_WAIT: Duration = Duration::from_secs(900);

const SAVE_PENDING: u8 = 0;
const SAVE_OK: u8 = 1;
const SAVE_FAILED: u8 = 2;

/// Frame-time statistics, shared with `app::run` so they can be printed after the event loop
/// exits.
#[derive(Debug, Default)]
pub struct FrameStats {
    pub frames: u64,
    pub total: Duration,
    pub busy_frames: u64,
    pub busy_total: Duration,
    /// Frames (and their time) while the remodeling run was computing.
    pub remodel_frames: u64,
    pub remodel_total: Duration,
    /// How fast simulated days reached the app (see `remodel::StreamStats::summary`).
    pub remodel_stream: Option<String>,
    last: Option<Instant>,
}

impl FrameStats {
    pub fn summary(&self) -> String {
        let avg = |n: u64, t: Duration| {
            if n == 0 {
                "n/a".to_string()
            } else {
                let ms = t.as_secs_f64() * 1000.0 / n as f64;
                format!("{ms:.1} ms ({:.1} fps)", 1000.0 / ms)
            }
        };
        let mut s = format!(
            "osteolab: {} frames after start-up, average frame time {}; while a job ran: {} frames, {}; while the remodeling ran: {} frames, {}",
            self.frames,
            avg(self.frames, self.total),
            self.busy_frames,
            avg(self.busy_frames, self.busy_total),
            self.remodel_frames,
            avg(self.remodel_frames, self.remodel_total)
        );
        if let Some(stream) = &self.remodel_stream {
            s.push('\n');
            s.push_str(stream);
        }
        s
    }
}

#[derive(Resource, Clone)]
pub struct SharedFrameStats(pub Arc<Mutex<FrameStats>>);

#[derive(Resource, Clone)]
pub struct CaptureRequest {
    pub path: PathBuf,
    pub frames: u32,
    pub solve_on_start: bool,
    /// The remodeling run was started at launch: wait until it is set up (the capture then
    /// shows whatever day it reached at that frame).
    pub remodel_on_start: bool,
    /// The multiscale run was started at launch: wait for its checkpoints.
    pub multiscale_on_start: bool,
    /// The fracture run was started at launch: wait for its end and the damage on screen.
    pub fracture_on_start: bool,
    /// With `remodel_on_start`, wait until this remodeling day is shown
    /// (`OSTEOLAB_CAPTURE_DAY`).
    pub remodel_day: Option<u32>,
    /// With `multiscale_on_start`, the checkpoints to wait for (`OSTEOLAB_CAPTURE_CHECKPOINTS`,
    /// default [`MULTISCALE_CAPTURE_CHECKPOINTS`]).
    pub multiscale_checkpoints: usize,
}

impl CaptureRequest {
    /// Reads the awaited remodeling day and multiscale checkpoints from the environment
    /// (`OSTEOLAB_CAPTURE_DAY`, `OSTEOLAB_CAPTURE_CHECKPOINTS`), once, at start-up.
    pub fn with_waits_from_env(self) -> Self {
        fn parsed<T: std::str::FromStr>(name: &str) -> Option<T> {
            std::env::var(name).ok().and_then(|v| v.parse().ok())
        }
        Self {
            remodel_day: parsed("OSTEOLAB_CAPTURE_DAY"),
            multiscale_checkpoints: parsed("OSTEOLAB_CAPTURE_CHECKPOINTS")
                .unwrap_or(MULTISCALE_CAPTURE_CHECKPOINTS),
            ..self
        }
    }
}

#[derive(Resource)]
struct CaptureState {
    started: Instant,
    frames: u32,
    /// Frame at which the awaited remodeling day (`OSTEOLAB_CAPTURE_DAY`) was first shown.
    day_shown_at: Option<u32>,
    requested: bool,
    saved: Arc<AtomicU8>,
}

pub struct CapturePlugin {
    pub request: Option<CaptureRequest>,
    pub stats: SharedFrameStats,
}

impl Plugin for CapturePlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(self.stats.clone())
            .add_systems(Last, record_frame_time);
        if let Some(req) = &self.request {
            app.insert_resource(req.clone())
                .insert_resource(CaptureState {
                    started: Instant::now(),
                    frames: 0,
                    day_shown_at: None,
                    requested: false,
                    saved: Arc::new(AtomicU8::new(SAVE_PENDING)),
                })
                .add_systems(Update, drive_capture);
        }
    }
}

/// Records frame intervals once the first model has been on screen for a few frames, so the
/// start-up (window creation, shader compilation, first mesh upload) does not skew the figures.
fn record_frame_time(
    stats: Res<SharedFrameStats>,
    mut ui: ResMut<UiState>,
    scene: Res<SceneState>,
    remodel: Res<RemodelState>,
    vertebra: Res<VertebraView>,
    mut warm: Local<bool>,
) {
    let now = Instant::now();
    *warm |= (scene.shown.is_some() && scene.frames_since_shown >= SETTLE_FRAMES)
        || vertebra.frames_with_mesh >= SETTLE_FRAMES;
    let Ok(mut s) = stats.0.lock() else {
        return;
    };
    if remodel.stats.days > 0 {
        s.remodel_stream = Some(remodel.stats.summary());
    }
    if !*warm {
        s.last = Some(now);
        return;
    }
    if let Some(last) = s.last {
        let dt = now - last;
        s.frames += 1;
        s.total += dt;
        if ui.busy.is_some() {
            s.busy_frames += 1;
            s.busy_total += dt;
        }
        if remodel.status == RunStatus::Running {
            s.remodel_frames += 1;
            s.remodel_total += dt;
        }
        let ms = dt.as_secs_f32() * 1000.0;
        ui.frame_ms = if ui.frame_ms == 0.0 {
            ms
        } else {
            0.9 * ui.frame_ms + 0.1 * ms
        };
    }
    s.last = Some(now);
}

#[allow(clippy::too_many_arguments)]
fn drive_capture(
    mut commands: Commands,
    request: Res<CaptureRequest>,
    mut state: ResMut<CaptureState>,
    ui: Res<UiState>,
    scene: Res<SceneState>,
    remodel: Res<RemodelState>,
    vertebra: Res<VertebraView>,
    view: Res<ViewKind>,
    mut exit: MessageWriter<AppExit>,
    mut redraw: MessageWriter<RequestRedraw>,
    (multiscale, ms_view): (Res<MultiscaleState>, Res<MultiscaleView>),
    (fracture, fr_view): (Res<FractureState>, Res<FractureView>),
) {
    state.frames = state.frames.saturating_add(1);
    redraw.write(RequestRedraw);
    match state.saved.load(Ordering::Acquire) {
        SAVE_OK => {
            let failed = (request.solve_on_start && (ui.solve_failed || ui.solves_finished == 0))
                || (request.remodel_on_start && remodel.status == RunStatus::Failed)
                || (request.multiscale_on_start && multiscale.status == MsStatus::Failed)
                || (request.fracture_on_start
                    && matches!(fracture.status, FractureStatus::Failed(_)));
            exit.write(if failed {
                AppExit::error()
            } else {
                AppExit::Success
            });
            return;
        }
        SAVE_FAILED => {
            exit.write(AppExit::error());
            return;
        }
        _ => {}
    }
    if state.requested {
        return;
    }
    let ready = match *view {
        ViewKind::Vertebra if request.fracture_on_start => {
            // The selected specimen's damage field is the one on screen, settled.
            let shown = fr_view.shown_specimen == Some(fracture.selected)
                && fr_view.field_point.is_some()
                && fr_view.frames_since_shown >= SETTLE_FRAMES;
            (fracture.status.is_ended() && shown)
                || matches!(
                    fracture.status,
                    FractureStatus::Failed(_) | FractureStatus::Cancelled
                )
        }
        ViewKind::Micro if request.multiscale_on_start => {
            let wanted = request.multiscale_checkpoints;
            let ended = matches!(
                multiscale.status,
                MsStatus::Finished | MsStatus::Cancelled | MsStatus::Failed
            );
            let done = multiscale.checkpoints.len().saturating_sub(1);
            // The structures of the last checkpoint received are on screen.
            let on_screen = ms_view.shown.iter().any(|s| {
                multiscale
                    .checkpoints
                    .last()
                    .is_some_and(|c| s.checkpoint.index == c.index)
            }) && ms_view.frames_since_shown >= SETTLE_FRAMES;
            (done >= wanted && on_screen) || ended
        }
        ViewKind::Micro => {
            let shown =
                scene.shown.is_some() && !scene.dirty && scene.frames_since_shown >= SETTLE_FRAMES;
            // The awaited jobs include the scripted solves (see bridge::pump_runner).
            shown && ui.startup_settled() && ui.busy.is_none()
        }
        // The vertebra on screen (the run keeps going: the capture shows this frame's day,
        // or waits for the day asked for).
        ViewKind::Vertebra => {
            let ended = matches!(remodel.status, RunStatus::Finished | RunStatus::Cancelled);
            let day_settled = match request.remodel_day {
                Some(day) if request.remodel_on_start => {
                    if state.day_shown_at.is_none() && (remodel.shown_day >= day || ended) {
                        state.day_shown_at = Some(state.frames);
                    }
                    state
                        .day_shown_at
                        .is_some_and(|f| state.frames >= f + SETTLE_FRAMES)
                }
                _ => true,
            };
            (vertebra.frames_with_mesh >= SETTLE_FRAMES && remodel.info.is_some() && day_settled)
                || remodel.status == RunStatus::Failed
        }
    };
    let timed_out = state.started.elapsed() > MAX_WAIT;
    if (state.frames >= request.frames && ready) || timed_out {
        if timed_out {
            error!("capture: scene not ready after {MAX_WAIT:?}; capturing anyway");
        }
        state.requested = true;
        if *view == ViewKind::Vertebra && remodel.info.is_some() {
            info!("capture: remodeling day {} shown", remodel.shown_day);
        }
        let path = request.path.clone();
        let saved = Arc::clone(&state.saved);
        commands.spawn(Screenshot::primary_window()).observe(
            move |captured: On<ScreenshotCaptured>| {
                let ok = match save_png(&captured.image, &path) {
                    Ok(()) => {
                        info!("screenshot saved to {}", path.display());
                        true
                    }
                    Err(e) => {
                        error!("cannot save screenshot to {}: {e}", path.display());
                        false
                    }
                };
                saved.store(if ok { SAVE_OK } else { SAVE_FAILED }, Ordering::Release);
            },
        );
    }
}

/// Encodes the captured frame as RGB PNG and writes it atomically.
fn save_png(image: &Image, path: &std::path::Path) -> Result<(), String> {
    let rgb = image
        .clone()
        .try_into_dynamic()
        .map_err(|e| format!("unsupported screenshot format: {e}"))?
        .to_rgb8();
    let (w, h) = rgb.dimensions();
    let raw = rgb.into_raw();
    let buffer = image::RgbImage::from_raw(w, h, raw)
        .ok_or_else(|| "screenshot buffer has the wrong size".to_string())?;
    let mut png = std::io::Cursor::new(Vec::new());
    buffer
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    osteolab::atomic::write_bytes_atomic(path, png.get_ref()).map_err(|e| e.to_string())
}
