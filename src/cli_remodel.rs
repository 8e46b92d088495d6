//! `osteolab remodel`: the macroscale remodeling run from the command line (design §4,
//! issue 3 §6).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use osteolab::remodel::calibration::{TRABECULAR_ENDPOINT_PCT, WHOLE_ENDPOINT_PCT};
use osteolab::remodel::ct::{CtParams, HuCalibration, vertebra_from_ct_file};
use osteolab::remodel::output::{write_bmd_plot, write_density_vtk, write_series_csv};
use osteolab::remodel::scenario::Scenario;
use osteolab::remodel::simulation::{RemodelConfig, Simulation};
use osteolab::remodel::vertebra::{Vertebra, VertebraParams};
use osteolab::remodel::{calibration, vertebra::Region};
use osteolab::volume::Dims;
use osteolab::volume::segment::VoxelBox;

#[derive(Args, Debug)]
pub struct RemodelArgs {
    /// A built-in scenario (earth-baseline, spaceflight-215, bed-rest-90,
    /// spaceflight-215-recovery) or a TOML file.
    #[arg(
        long,
        value_name = "NAME_OR_FILE",
        required_unless_present = "calibrate"
    )]
    pub scenario: Option<String>,
    /// A CT volume of the lumbar spine (DICOM folder or NIfTI, in HU) instead of the built-in
    /// vertebral body; needs --box.
    #[arg(long, value_name = "FILE")]
    pub vertebra: Option<PathBuf>,
    /// Box isolating one vertebral body in the CT, in voxels: x0,y0,z0,x1,y1,z1 (upper corner
    /// exclusive; z from the inferior to the superior endplate).
    #[arg(long, value_name = "X0,Y0,Z0,X1,Y1,Z1", requires = "vertebra")]
    pub r#box: Option<String>,
    /// Phantom calibration: BMD [mg/cm³] = slope · HU + intercept.
    #[arg(
        long,
        default_value_t = 0.8,
        value_name = "MG_PER_HU",
        requires = "vertebra"
    )]
    pub hu_slope: f64,
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "MG_CM3",
        requires = "vertebra"
    )]
    pub hu_intercept: f64,
    /// Directory for series.csv, bmd.png and VTK density fields at the phase ends.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print one JSON object (series and endpoints) instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Re-fit the two calibrated parameters to the published spaceflight endpoints and print
    /// them (takes about 20 s).
    #[arg(long, conflicts_with_all = ["scenario", "vertebra", "out"])]
    pub calibrate: bool,
}

fn parse_box(s: &str) -> Result<VoxelBox> {
    let v: Vec<usize> = s
        .split(',')
        .map(|t| t.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--box `{s}`: expected six non-negative integers"))?;
    if v.len() != 6 {
        bail!(
            "--box `{s}`: expected six integers x0,y0,z0,x1,y1,z1, got {}",
            v.len()
        );
    }
    if v[3] <= v[0] || v[4] <= v[1] || v[5] <= v[2] {
        bail!("--box `{s}`: the upper corner must exceed the lower corner on every axis");
    }
    Ok(VoxelBox {
        min: [v[0], v[1], v[2]],
        dims: Dims::new(v[3] - v[0], v[4] - v[1], v[5] - v[2]),
    })
}

fn progress_bar(total: u64, json: bool) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{bar:40} day {pos}/{len} [{elapsed_precise}] {msg}")
            .expect("valid template"),
    );
    if json {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    pb
}

pub fn remodel(args: &RemodelArgs) -> Result<()> {
    let config = RemodelConfig::default();
    if args.calibrate {
        return calibrate(&config, args.json);
    }
    let name = args.scenario.as_deref().unwrap_or_default();
    let scenario = Scenario::resolve(name)?;
    let vertebra = match &args.vertebra {
        None => Vertebra::builtin(&VertebraParams::default(), &config.density)?,
        Some(path) => {
            let Some(b) = &args.r#box else {
                bail!(
                    "{}: --box is needed to isolate one vertebral body in the CT",
                    path.display()
                );
            };
            let mut params = CtParams::new(parse_box(b)?);
            params.calibration = HuCalibration {
                slope_mg_per_hu: args.hu_slope,
                intercept_mg_cm3: args.hu_intercept,
            };
            vertebra_from_ct_file(path, &params, &config.density)?
        }
    };
    let t0 = Instant::now();
    let pb = progress_bar(scenario.total_days() as u64, args.json);
    pb.set_message("habitual FE solve");
    let elements = vertebra.element_count();
    let regions = vertebra.region_counts();
    let source = vertebra.source.clone();
    let mut sim = Simulation::new(config, vertebra, scenario.clone(), None)?;
    // Density fields at the start and at each phase end, for VTK output.
    let mut phase_ends: Vec<u32> = Vec::new();
    let mut end = 0;
    for p in &scenario.phases {
        end += p.days;
        phase_ends.push(end);
    }
    let mut fields = vec![(
        0u32,
        "start".to_string(),
        sim.bmd_mg_cm3(),
        sim.bmd_change_pct(),
    )];
    while !sim.is_finished() {
        let record = sim.step_day(None)?.clone();
        pb.set_position(record.day as u64);
        pb.set_message(format!(
            "{}: trabecular {:+.2} %, whole {:+.2} %",
            record.phase, record.bmd_trabecular_pct, record.bmd_whole_pct
        ));
        if args.out.is_some() && phase_ends.contains(&record.day) {
            fields.push((
                record.day,
                record.phase.clone(),
                sim.bmd_mg_cm3(),
                sim.bmd_change_pct(),
            ));
        }
    }
    pb.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    let endpoints = sim.endpoints();
    let mut written = Vec::new();
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
        let csv = dir.join("series.csv");
        write_series_csv(&csv, sim.series())?;
        written.push(csv);
        let png = dir.join("bmd.png");
        write_bmd_plot(&png, &scenario, sim.series())?;
        written.push(png);
        for (day, phase, bmd, change) in &fields {
            let safe: String = phase
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let path = dir.join(format!("density_day{day:04}_{safe}.vtk"));
            write_density_vtk(
                &path,
                &sim.vertebra,
                bmd,
                change,
                &format!("osteolab {} day {day} ({phase})", scenario.name),
            )?;
            written.push(path);
        }
    }
    if args.json {
        let out = json!({
            "scenario": scenario.name,
            "vertebra": {
                "source": source,
                "elements": elements,
                "regions": Region::ALL.iter().zip(regions).map(|(r, n)| (r.name(), n)).collect::<std::collections::BTreeMap<_, _>>(),
            },
            "law": sim.law().name(),
            "days": sim.day(),
            "fe_solves": sim.fe_solves(),
            "seconds": seconds,
            "series": sim.series(),
            "endpoints": endpoints,
            "files": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!(
            "{}: {} days on {} ({elements} elements), {} FE solves, {seconds:.1} s",
            scenario.name,
            sim.day(),
            source,
            sim.fe_solves()
        );
        println!(
            "{:<16} {:>5} {:>12} {:>10} {:>10} {:>8} {:>9}",
            "phase end", "day", "trabecular%", "cortical%", "endplate%", "whole%", "BV/TV"
        );
        for r in &endpoints {
            println!(
                "{:<16} {:>5} {:>12.2} {:>10.2} {:>10.2} {:>8.2} {:>9.4}",
                r.phase,
                r.day,
                r.bmd_trabecular_pct,
                r.bmd_cortical_pct,
                r.bmd_endplate_pct,
                r.bmd_whole_pct,
                r.bv_tv_trabecular
            );
        }
        for p in &written {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}

fn calibrate(config: &RemodelConfig, json: bool) -> Result<()> {
    let t0 = Instant::now();
    let c = calibration::fit_spaceflight_endpoints(
        config,
        &VertebraParams::default(),
        None,
        |c| {
            if !json {
                eprintln!(
                    "round: kappa {:.1} pM/day, shell {:.3} mm -> trabecular {:+.3} %, whole {:+.3} %",
                    c.kappa_disuse_pm_per_day, c.shell_thickness_mm, c.trabecular_pct, c.whole_pct
                );
            }
        },
    )?;
    if json {
        println!("{}", serde_json::to_string(&c)?);
    } else {
        println!(
            "fitted in {:.1} s ({} runs): kappa_disuse = {:.1} pM/day, shell thickness = {:.3} mm (endplates {:.3} mm)",
            t0.elapsed().as_secs_f64(),
            c.evaluations,
            c.kappa_disuse_pm_per_day,
            c.shell_thickness_mm,
            c.endplate_thickness_mm
        );
        println!(
            "day 215 of flight: trabecular {:+.2} % (target {TRABECULAR_ENDPOINT_PCT}), whole {:+.2} % (target {WHOLE_ENDPOINT_PCT})",
            c.trabecular_pct, c.whole_pct
        );
    }
    Ok(())
}
