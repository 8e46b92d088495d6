//! The desktop app (feature `gui`): a Bevy window with two views, talking to the simulation
//! only through `osteolab::runner`:
//!
//! - **Vertebra** (the default): the macroscale vertebral body coloured by the % BMD change of
//!   the displayed day, cut by a draggable sagittal clip plane whose cap shows the interior;
//!   a timeline (play / pause / step / scrub, BMD plots with phase bands) and a scenario
//!   editor. The run streams day by day from the simulation thread.
//!   Its fracture mode ([`fracture`], [`fracture_scene`], [`fracture_panel`]) breaks the
//!   vertebra at the pre-flight, end-of-flight and recovered states: the load–displacement
//!   curves grow live, and the damage field of the chosen curve point colours the section.
//! - **Microstructure**: two trabecular cubes side by side, the real micro-CT sample and a
//!   ReconGAN cube (the default source), their morphometry and micro-FE solves (SED colouring);
//!   or, in its multiscale mode ([`multiscale`], [`multiscale_scene`], [`multiscale_panel`]),
//!   one of them through the loss and recovery of a multiscale run, checkpoint by checkpoint,
//!   coloured by change against day 0, with its BV/TV timeline.
//!
//! Plugins and modules: [`bridge`] (runner resource, events → state resources, snapshots →
//! scene), [`remodel`] (the vertebra view's state), [`scene`] (camera, materials, micro
//! surface; picks a cheap path on software rasterisers), [`vertebra`] (the vertebra section
//! mesh and its recolouring), [`camera`] (orbit camera, one per view), [`ui`],
//! [`micro_panel`], [`vertebra_panel`] and [`timeline`] (egui panels), [`capture`] (scripted screenshots,
//! frame times, days/s).

mod bridge;
mod camera;
mod capture;
mod colormap;
mod fracture;
mod fracture_panel;
mod fracture_scene;
mod micro_panel;
mod multiscale;
mod multiscale_panel;
mod multiscale_scene;
mod pacing;
mod remodel;
mod scene;
mod timeline;
mod ui;
mod vertebra;
mod vertebra_panel;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bevy::prelude::*;
use bevy::window::{PresentMode, WindowResolution};
use bevy::winit::WinitSettings;
use bevy_egui::{EguiPlugin, EguiPrimaryContextPass};

pub use scene::ViewKind;

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
    /// Start the built-in scenario (spaceflight-215) on the built-in vertebra at launch
    /// instead of waiting at day 0.
    pub remodel_on_start: bool,
    /// Open the microstructure view's multiscale mode and start the multiscale run
    /// (spaceflight-215, a checkpoint every 30 days or `OSTEOLAB_MULTISCALE_EVERY_DAYS`) on
    /// the start-up structure (the micro-CT sample when present, else the ReconGAN cube).
    pub multiscale_on_start: bool,
    /// Open the vertebra view's fracture mode and start the fracture run (the spaceflight-215
    /// states of the built-in vertebra; `OSTEOLAB_FRACTURE_STEP` and
    /// `OSTEOLAB_FRACTURE_STATES` set the step and the states).
    pub fracture_on_start: bool,
    /// The view to open; `None` = the vertebra, or the microstructure when only
    /// `solve_on_start` asks for something.
    pub view: Option<ViewKind>,
}

/// Runs the app until the window closes (or the scripted screenshot is written).
pub fn run(options: AppOptions) -> anyhow::Result<()> {
    let solve_on_start = options.solve_on_start
        || std::env::var("OSTEOLAB_AUTOSOLVE").is_ok_and(|v| v == "1" || v == "true");
    let scripted = options.screenshot.is_some();
    let micro = !options.fracture_on_start
        && (options.multiscale_on_start || (solve_on_start && !options.remodel_on_start));
    let view = options.view.unwrap_or(if micro {
        ViewKind::Micro
    } else {
        ViewKind::Vertebra
    });
    let stats = capture::SharedFrameStats(Arc::new(Mutex::new(capture::FrameStats::default())));

    let mut app = App::new();
    app.add_plugins(DefaultPlugins.set(WindowPlugin {
        primary_window: Some(Window {
            title: "osteolab: vertebral bone remodeling and trabecular micro-FE".into(),
            resolution: WindowResolution::new(1440, 860),
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
    .insert_resource(view)
    .add_plugins(EguiPlugin::default())
    .add_plugins(scene::ScenePlugin)
    .add_plugins(bridge::BridgePlugin {
        solve_on_start,
        remodel_on_start: options.remodel_on_start,
        multiscale_on_start: options.multiscale_on_start,
    })
    .add_plugins(multiscale_scene::MultiscaleScenePlugin)
    .add_plugins(fracture::FracturePlugin {
        on_start: options.fracture_on_start,
    })
    .add_plugins(fracture_scene::FractureScenePlugin)
    .add_plugins(vertebra::VertebraPlugin)
    .add_plugins(pacing::PacingPlugin)
    .add_plugins(capture::CapturePlugin {
        request: options.screenshot.map(|path| {
            capture::CaptureRequest {
                path,
                frames: options.frames.max(1),
                solve_on_start,
                remodel_on_start: options.remodel_on_start,
                multiscale_on_start: options.multiscale_on_start,
                fracture_on_start: options.fracture_on_start,
                remodel_day: None,
                multiscale_checkpoints: capture::MULTISCALE_CAPTURE_CHECKPOINTS,
            }
            .with_waits_from_env()
        }),
        stats: stats.clone(),
    })
    .add_systems(
        Update,
        (camera::switch_view_camera, camera::orbit_camera).chain(),
    )
    .add_systems(EguiPrimaryContextPass, ui::panels_ui);

    let exit = app.run();
    if let Ok(s) = stats.0.lock() {
        eprintln!("{}", s.summary());
    }
    match exit {
        AppExit::Success => Ok(()),
        AppExit::Error(code) => anyhow::bail!("the app exited with an error (code {code})"),
    }
}
