//! `osteolab`: with no subcommand, opens the app on the built-in vertebra and microstructure; with a
//! subcommand, runs headless (design §4). Errors are reported here, once, as one line.

#[cfg(feature = "gui")]
mod app;
mod cli;
mod cli_adapt;
mod cli_fracture;
mod cli_gan;
mod cli_remodel;
mod cli_run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Multiscale simulation of vertebral bone loss and recovery.
#[derive(Parser, Debug)]
#[command(name = "osteolab", version, about, long_about = None)]
struct Args {
    /// Render N frames (see --frames), save a screenshot of the window to PATH, then exit.
    #[arg(long, value_name = "PATH", global = false)]
    screenshot: Option<PathBuf>,
    /// Frames to render before the screenshot.
    #[arg(long, default_value_t = 120)]
    frames: u32,
    /// Start a micro-FE solve on the built-in structure as soon as the app opens.
    #[arg(long)]
    solve_on_start: bool,
    /// Start the spaceflight-215 scenario on the built-in vertebra as soon as the app opens.
    #[arg(long)]
    remodel_on_start: bool,
    /// Open the microstructure view's multiscale mode and start the multiscale run
    /// (spaceflight-215) on the start-up structure as soon as it is loaded.
    #[arg(long)]
    multiscale_on_start: bool,
    /// Open the vertebra view's fracture mode and break the built-in vertebra at the
    /// spaceflight-215 states as soon as the app opens (`OSTEOLAB_FRACTURE_STEP` sets the step,
    /// e.g. 0.1; `OSTEOLAB_FRACTURE_STATES` the states, e.g. `pre,post`).
    #[arg(long)]
    fracture_on_start: bool,
    /// The view the app opens on (default: vertebra; micro with only --solve-on-start).
    #[arg(long, value_enum, value_name = "VIEW")]
    view: Option<ViewArg>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The app's views (`--view`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ViewArg {
    /// The macroscale vertebra and its remodeling run.
    Vertebra,
    /// The trabecular microstructure and its micro-FE solve.
    Micro,
}

/// The app's start-up flags.
#[derive(Debug)]
#[cfg_attr(not(feature = "gui"), allow(dead_code))]
struct AppFlags {
    screenshot: Option<PathBuf>,
    frames: u32,
    solve_on_start: bool,
    remodel_on_start: bool,
    multiscale_on_start: bool,
    fracture_on_start: bool,
    view: Option<ViewArg>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Micro-FE of a segmented volume: apparent modulus, reaction force, strain energy.
    Fe(cli::FeArgs),
    /// Trabecular morphometry (BV/TV, BS/BV, Tb.Th, Tb.Sp, Tb.N, Conn.D, DA, SMI).
    Morph(cli::MorphArgs),
    /// Surface mesh of a segmented volume, written as STL, PLY, OBJ or VTK.
    Mesh(cli::MeshArgs),
    /// Segment a volume and write the bone mask as a uint8 sidecar volume (0 / 255).
    Segment(cli::SegmentArgs),
    /// Macroscale remodeling of a vertebra under a loading scenario: BMD over days.
    Remodel(cli_remodel::RemodelArgs),
    /// Compression to failure with continuum damage: the built-in vertebra before and after
    /// spaceflight, or a trabecular cube.
    Fracture(cli_fracture::FractureArgs),
    /// ReconGAN: generate trabecular cubes from trained weights, or train (feature torch).
    #[command(subcommand)]
    Gan(cli_gan::GanCommand),
    /// Adapt a trabecular structure to a BV/TV target (SED-driven level-set shape optimisation).
    Adapt(cli_adapt::AdaptArgs),
    /// The multiscale run: the vertebra's remodeling drives a trabecular microstructure
    /// through checkpoints (loss in flight, recovery after).
    Run(cli_run::RunArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Some(Command::Fe(a)) => cli::fe(&a),
        Some(Command::Morph(a)) => cli::morph(&a),
        Some(Command::Mesh(a)) => cli::mesh(&a),
        Some(Command::Segment(a)) => cli::segment(&a),
        Some(Command::Remodel(a)) => cli_remodel::remodel(&a),
        Some(Command::Fracture(a)) => cli_fracture::fracture(&a),
        Some(Command::Gan(c)) => cli_gan::gan(&c),
        Some(Command::Adapt(a)) => cli_adapt::adapt_cmd(&a),
        Some(Command::Run(a)) => cli_run::run_cmd(&a),
        None => open_app(AppFlags {
            screenshot: args.screenshot,
            frames: args.frames,
            solve_on_start: args.solve_on_start,
            remodel_on_start: args.remodel_on_start,
            multiscale_on_start: args.multiscale_on_start,
            fracture_on_start: args.fracture_on_start,
            view: args.view,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("osteolab: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "gui")]
fn open_app(flags: AppFlags) -> anyhow::Result<()> {
    app::run(app::AppOptions {
        screenshot: flags.screenshot,
        frames: flags.frames,
        solve_on_start: flags.solve_on_start,
        remodel_on_start: flags.remodel_on_start,
        multiscale_on_start: flags.multiscale_on_start,
        fracture_on_start: flags.fracture_on_start,
        view: flags.view.map(|v| match v {
            ViewArg::Vertebra => app::ViewKind::Vertebra,
            ViewArg::Micro => app::ViewKind::Micro,
        }),
    })
}

#[cfg(not(feature = "gui"))]
fn open_app(_: AppFlags) -> anyhow::Result<()> {
    anyhow::bail!(
        "this osteolab was built without the `gui` feature; use a subcommand (see --help)"
    )
}
