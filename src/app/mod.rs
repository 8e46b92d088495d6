//! The desktop app (feature `gui`): a Bevy window with the trabecular surface, an orbit camera
//! and an egui side panel, talking to the simulation only through `osteolab::runner`.
//!
//! Plugins: [`bridge`] (runner resource, events → panel state, snapshots → scene), [`scene`]
//! (camera, materials, surface mesh; picks a cheap path on software rasterisers), [`camera`]
//! (orbit camera), [`ui`] (side panel), [`capture`] (scripted screenshots, frame times).

mod bridge;
mod camera;
mod capture;
mod colormap;
mod scene;
mod ui;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bevy::prelude::*;
use bevy::window::{PresentMode, WindowResolution};
use bevy::winit::WinitSettings;
use bevy_egui::{EguiPlugin, EguiPrimaryContextPass};

/// How the app is started (from the command line).
#[derive(Clone, Debug, Default)]
pub struct AppOptions {
    /// Render, save a screenshot of the window to this PNG, and exit.
    pub screenshot: Option<PathBuf>,
    /// Minimum number of frames rendered before the screenshot.
    pub frames: u32,
    /// Start an axial solve as soon as the microstructure is loaded (the screenshot then shows
    /// the SED-coloured result). Also enabled by the environment variable
    /// `OSTEOLAB_AUTOSOLVE=1`.
    pub solve_on_start: bool,
}

/// Runs the app until the window closes (or the scripted screenshot is written).
pub fn run(options: AppOptions) -> anyhow::Result<()> {
    let solve_on_start = options.solve_on_start
        || std::env::var("OSTEOLAB_AUTOSOLVE").is_ok_and(|v| v == "1" || v == "true");
    let scripted = options.screenshot.is_some();
    let stats = capture::SharedFrameStats(Arc::new(Mutex::new(capture::FrameStats::default())));

    let mut app = App::new();
    app.add_plugins(DefaultPlugins.set(WindowPlugin {
        primary_window: Some(Window {
            title: "osteolab: trabecular bone micro-FE".into(),
            resolution: WindowResolution::new(1280, 768),
            // No vsync: under a software rasteriser vsync only adds latency.
            present_mode: if scripted {
                PresentMode::AutoNoVsync
            } else {
                PresentMode::AutoVsync
            },
            ..default()
        }),
        ..default()
    }))
    // Idle app costs nothing: redraw on input, on runner wake-ups, and continuously while a
    // job runs (see bridge::pump_runner). Scripted runs render continuously.
    .insert_resource(if scripted {
        WinitSettings::game()
    } else {
        WinitSettings::desktop_app()
    })
    .add_plugins(EguiPlugin::default())
    .add_plugins(scene::ScenePlugin)
    .add_plugins(bridge::BridgePlugin { solve_on_start })
    .add_plugins(capture::CapturePlugin {
        request: options.screenshot.map(|path| capture::CaptureRequest {
            path,
            frames: options.frames.max(1),
            solve_on_start,
        }),
        stats: stats.clone(),
    })
    .add_systems(Update, camera::orbit_camera)
    .add_systems(EguiPrimaryContextPass, ui::side_panel_ui);

    let exit = app.run();
    if let Ok(s) = stats.0.lock() {
        eprintln!("{}", s.summary());
    }
    match exit {
        AppExit::Success => Ok(()),
        AppExit::Error(code) => anyhow::bail!("the app exited with an error (code {code})"),
    }
}
