//! Frame pacing while the remodeling run (or the multiscale or fracture run) computes on a
//! software rasteriser.
//!
//! Mesa's lavapipe renders on the same two cores the simulation needs: left alone, the
//! window takes about 50 ms of CPU per frame, the simulation thread (at background
//! priority) gets the leftovers and streams only about 10 simulated days per second. While
//! the run computes on a software adapter, frames are therefore paced to at most
//! [`SOFTWARE_FPS_WHILE_COMPUTING`] per second (the main thread sleeps out the rest of the
//! frame interval); input and the recolouring stay responsive at that rate, and the freed
//! CPU goes to the simulation. GPU adapters are not paced. `OSTEOLAB_MAX_FPS` overrides the
//! cap (0 = no cap).

use std::time::{Duration, Instant};

use bevy::prelude::*;

use super::multiscale::MultiscaleState;
use super::remodel::RemodelState;
use super::scene::{RenderQuality, SceneState};

/// Frame-rate cap while the run computes on a software rasteriser.
pub const SOFTWARE_FPS_WHILE_COMPUTING: f32 = 12.0;

/// Frame-rate cap while only the fracture run computes on a software rasteriser: its curve
/// points arrive every second or so, and each frame taken from the two cores slows the curve.
pub const SOFTWARE_FPS_WHILE_FRACTURING: f32 = 4.0;

pub struct PacingPlugin;

impl Plugin for PacingPlugin {
    fn build(&self, app: &mut App) {
        let cap = std::env::var("OSTEOLAB_MAX_FPS")
            .ok()
            .and_then(|v| v.parse::<f32>().ok())
            // 0 (or less) turns the cap off; a positive cap is at least 0.1 fps.
            .filter(|v| v.is_finite())
            .map(|v| if v > 0.0 { v.max(0.1) } else { 0.0 });
        app.insert_resource(FramePacing {
            override_fps: cap,
            last: None,
        })
        .add_systems(Last, pace_frames);
    }
}

#[derive(Resource)]
struct FramePacing {
    /// `OSTEOLAB_MAX_FPS`, if set.
    override_fps: Option<f32>,
    last: Option<Instant>,
}

fn pace_frames(
    mut pacing: ResMut<FramePacing>,
    scene: Res<SceneState>,
    remodel: Res<RemodelState>,
    multiscale: Res<MultiscaleState>,
    fracture: Res<super::fracture::FractureState>,
) {
    let software = matches!(scene.quality, RenderQuality::Software { .. });
    let streaming = remodel.is_computing() || multiscale.is_computing();
    let cap = match pacing.override_fps {
        Some(fps) => fps,
        None if software && streaming => SOFTWARE_FPS_WHILE_COMPUTING,
        None if software => SOFTWARE_FPS_WHILE_FRACTURING,
        None => 0.0,
    };
    let now = Instant::now();
    if (streaming || fracture.is_computing())
        && cap > 0.0
        && let Some(last) = pacing.last
    {
        let interval = Duration::from_secs_f32(1.0 / cap);
        let elapsed = now - last;
        if elapsed < interval {
            std::thread::sleep(interval - elapsed);
        }
    }
    pacing.last = Some(Instant::now());
}
