//! `osteolab run`: the multiscale run (issue 5 §2): the macroscale remodeling of the built-in
//! vertebra drives the shape optimisation of a trabecular structure at checkpoints
//! (`osteolab::multiscale`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use osteolab::multiscale::report::write_report;
use osteolab::multiscale::store::{RunFolder, record_of};
use osteolab::multiscale::{
    BvTvMapping, Checkpoint, MultiscaleParams, MultiscaleRun, RecoveryBounds, RunControl,
    parse_mapping,
};
use osteolab::remodel::scenario::Scenario;
use osteolab::remodel::simulation::{DayRecord, RemodelConfig, Simulation};
use osteolab::remodel::vertebra::{Vertebra, VertebraParams};
use osteolab::sample_data::{centred_cube, locate_microct_sample};
use osteolab::volume::BoneMask;

use crate::cli::{VolumeInput, load_mask};
use crate::cli_adapt::centred_crop;

/// Edge (voxels) and downsampling of the default structure cut from the micro-CT sample: a
/// 64³ cube at 39 µm (2.5 mm), as in the app's real slot and the shape optimisation tests.
const SAMPLE_EDGE: usize = 64;
const SAMPLE_DOWNSAMPLE: usize = 2;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A built-in scenario (spaceflight-215, spaceflight-215-recovery, bed-rest-90,
    /// earth-baseline) or a TOML file. Not needed with --resume.
    #[arg(value_name = "SCENARIO", required_unless_present = "resume")]
    pub scenario: Option<String>,
    /// Folder for run.json, checkpoints.csv, series.csv, the structure and its surface mesh
    /// at every checkpoint (micro/), report.md and its plots.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run stored in --out from its last checkpoint.
    #[arg(long, requires = "out")]
    pub resume: bool,
    /// Print one JSON object (checkpoints and recovery metrics) instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// The trabecular structure: a volume (`.json` sidecar, `.nii[.gz]`, DICOM or slice
    /// folder). Default: the centred 64³ cube of the shared micro-CT sample at 39 µm when it
    /// is found, otherwise the built-in ReconGAN cube (seed 0).
    #[arg(long, value_name = "VOLUME", conflicts_with = "resume")]
    pub micro: Option<PathBuf>,
    /// With --micro: downsample the grey values by this factor first.
    #[arg(long, default_value_t = 1, value_name = "F", requires = "micro")]
    pub downsample: usize,
    /// With --micro: crop a centred cube of this edge (voxels) after segmentation.
    #[arg(long, value_name = "VOXELS", requires = "micro")]
    pub crop: Option<usize>,
    /// Days between checkpoints (phase ends are always checkpoints).
    #[arg(
        long,
        default_value_t = 30,
        value_name = "DAYS",
        conflicts_with = "resume"
    )]
    pub checkpoint_every: u32,
    /// BMD → BV/TV mapping: `equal` (equal percentages) or `proportional:R`.
    #[arg(
        long,
        default_value = "equal",
        value_name = "MAPPING",
        conflicts_with = "resume"
    )]
    pub mapping: String,
    /// Plain mechanical adaptation at every checkpoint instead of formation coupled to the
    /// original's resorption cavities.
    #[arg(long, conflicts_with = "resume")]
    pub plain: bool,
}

/// The structure to start from and its description.
fn original_structure(args: &RunArgs) -> Result<(BoneMask, String)> {
    if let Some(path) = &args.micro {
        let mut mask = load_mask(&VolumeInput {
            volume: path.clone(),
            threshold: None,
            target_bv_tv: None,
            sigma: 1.0,
            downsample: args.downsample,
            keep_all_components: false,
        })?;
        let mut what = path.display().to_string();
        if let Some(edge) = args.crop {
            mask = centred_crop(&mask, edge)?;
            what += &format!(", centred {edge}³");
        }
        return Ok((mask, what));
    }
    match locate_microct_sample() {
        Ok(path) => {
            let mask = centred_cube(&path, SAMPLE_DOWNSAMPLE, SAMPLE_EDGE)?;
            Ok((
                mask,
                format!(
                    "micro-CT sample {}, downsampled ×{SAMPLE_DOWNSAMPLE}, Otsu, centred {SAMPLE_EDGE}³",
                    path.display()
                ),
            ))
        }
        Err(looked_at) => {
            let generator = osteolab::gan::builtin::builtin()?;
            let bv_tv = generator.card().bv_tv_mean;
            let mask = generator.generate_mask(0, 0, bv_tv)?;
            Ok((
                mask,
                format!(
                    "built-in ReconGAN cube, seed 0, BV/TV {bv_tv:.4} (no micro-CT sample at {})",
                    looked_at.display()
                ),
            ))
        }
    }
}

fn simulation(scenario: Scenario) -> Result<Simulation> {
    let config = RemodelConfig::default();
    let vertebra = Vertebra::builtin(&VertebraParams::default(), &config.density)?;
    Ok(Simulation::new(config, vertebra, scenario, None)?)
}

fn checkpoint_line(c: &Checkpoint) -> String {
    let m = &c.morphometry;
    format!(
        "day {:>4} {:<13} BMD {:+6.2} %  BV/TV {:.4} (target {:.4})  Tb.Th {:.3}  Tb.Sp {:.3}  Conn.D {:5.2}  SMI {:.2}  DA {:.3}  E_app {:6.1} MPa  Dice {:.3}  {} FE",
        c.day,
        c.phase,
        c.bmd_trabecular_pct,
        c.bv_tv,
        c.target_bv_tv,
        m.tb_th_mm,
        m.tb_sp_mm,
        m.conn_d_per_mm3,
        m.smi,
        m.da,
        c.e_app_mpa,
        c.dice_vs_original,
        c.fe_solves
    )
}

pub fn run_cmd(args: &RunArgs) -> Result<()> {
    let t0 = Instant::now();
    let folder = args.out.as_ref().map(RunFolder::new);
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{bar:40} day {pos}/{len} [{elapsed_precise}] {msg}")
            .expect("valid template"),
    );
    if args.json {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let on_day = |r: &DayRecord| pb.set_position(r.day as u64);
    let control = RunControl {
        cancel: None,
        on_day: Some(&on_day),
        on_step: None,
    };

    let (mut run, microstructure, scenario) = if args.resume {
        let folder = folder.as_ref().expect("clap: --resume requires --out");
        let (record, original, current) = folder
            .load_for_resume()
            .context("reading the run to resume")?;
        let scenario = Scenario::from_toml_str(&record.scenario_toml, "run.json")?;
        if let Some(name) = &args.scenario {
            let given = Scenario::resolve(name)?;
            if given.to_toml_string() != record.scenario_toml {
                bail!(
                    "{}: the stored run is of scenario `{}`, which differs from `{name}`",
                    folder.record_path().display(),
                    record.scenario_name
                );
            }
        }
        let mapping: Arc<dyn BvTvMapping> =
            parse_mapping(&record.mapping).map_err(anyhow::Error::msg)?;
        let params = MultiscaleParams {
            checkpoint_every_days: record.checkpoint_every_days,
            coupled: record.coupled,
            ..Default::default()
        };
        pb.set_length(scenario.total_days() as u64);
        pb.set_message(format!(
            "replaying the macroscale to day {}",
            record.checkpoints.last().expect("day 0 is checked").day
        ));
        let run = MultiscaleRun::resume(
            simulation(scenario.clone())?,
            original,
            current,
            record.checkpoints,
            mapping,
            params,
            &control,
        )?;
        (run, record.microstructure, scenario)
    } else {
        let name = args
            .scenario
            .as_deref()
            .expect("clap: SCENARIO or --resume");
        let scenario = Scenario::resolve(name)?;
        if let Some(f) = &folder
            && f.has_record()
        {
            bail!(
                "{} already holds a run; pass --resume to continue it, or choose another folder",
                f.dir.display()
            );
        }
        let mapping = parse_mapping(&args.mapping).map_err(anyhow::Error::msg)?;
        let params = MultiscaleParams {
            checkpoint_every_days: args.checkpoint_every,
            coupled: !args.plain,
            ..Default::default()
        };
        let (original, microstructure) = original_structure(args)?;
        pb.set_length(scenario.total_days() as u64);
        pb.set_message("solving the original structure");
        let run = MultiscaleRun::new(
            simulation(scenario.clone())?,
            original,
            mapping,
            params,
            None,
        )?;
        if let Some(f) = &folder {
            f.save_checkpoint(&run, &microstructure)?;
        }
        (run, microstructure, scenario)
    };
    if !args.json {
        pb.suspend(|| {
            eprintln!("{microstructure}");
            for c in run.checkpoints() {
                eprintln!("{}", checkpoint_line(c));
            }
        });
    }
    loop {
        pb.set_message("macroscale");
        let Some(c) = run.advance(&control)? else {
            break;
        };
        if !args.json {
            let line = checkpoint_line(c);
            pb.suspend(|| eprintln!("{line}"));
        }
        if let Some(f) = &folder {
            f.save_checkpoint(&run, &microstructure)?;
        }
    }
    pb.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    let recovery = run.recovery(&RecoveryBounds::default());
    let record = record_of(&run, &microstructure);
    let mut files = Vec::new();
    if let Some(f) = &folder {
        files = write_report(
            &f.dir,
            &scenario,
            &record,
            run.simulation().series(),
            &recovery,
            seconds,
        )?;
        f.write_record(
            &record,
            Some(run.simulation().series()),
            Some(json!({ "recovery": recovery })),
        )?;
    }
    let fe_solves: usize = run.checkpoints().iter().map(|c| c.fe_solves).sum();
    if args.json {
        let out = json!({
            "scenario": scenario.name,
            "microstructure": microstructure,
            "mapping": record.mapping,
            "checkpoint_every_days": record.checkpoint_every_days,
            "coupled": record.coupled,
            "dims": record.dims,
            "voxel_size_mm": record.voxel_size_mm,
            "checkpoints": record.checkpoints,
            "recovery": recovery,
            "fe_solves": fe_solves,
            "seconds": seconds,
            "files": files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        let r = &recovery;
        println!(
            "{}: {} checkpoints, {fe_solves} micro-FE solves, {seconds:.1} s",
            scenario.name,
            run.checkpoints().len()
        );
        println!(
            "lowest BV/TV {:.4} at day {}; end (day {}) against day 0: BV/TV {:.4} vs {:.4} ({:+.2} points), Dice {:.3}",
            r.lowest_bv_tv,
            r.lowest_day,
            r.day,
            r.bv_tv_end,
            r.bv_tv_original,
            r.bv_tv_difference_points,
            r.dice_vs_original
        );
        let changes: Vec<String> = r
            .indices
            .iter()
            .map(|c| format!("{} {:+.1} %", c.name, c.change_pct))
            .collect();
        println!("  {}", changes.join(", "));
        if r.within_bounds {
            println!("  recovery bounds met");
        } else {
            println!("  recovery bounds not met: {}", r.failed.join("; "));
        }
        if let Some(f) = &folder {
            println!("wrote {}", f.dir.display());
        }
    }
    Ok(())
}
