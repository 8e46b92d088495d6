//! `osteolab fracture`: compression to failure with continuum damage (issue 6 §5), of the
//! built-in vertebra at states of the `spaceflight-215` run, or of a micro-CT cube.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use osteolab::fracture::calibration::{
    PUBLISHED_ENERGY_POST_MJ, PUBLISHED_ENERGY_PRE_MJ, PUBLISHED_PEAK_POST_N, PUBLISHED_PEAK_PRE_N,
    fit_pre_flight,
};
use osteolab::fracture::micro::{TissueParams, apparent_measures, micro_model, micro_run_params};
use osteolab::fracture::output::{write_curves_csv, write_curves_png, write_damage_vtk};
use osteolab::fracture::vertebra::{
    DUCTILITY, FlightState, MicrostructureFactor, TrabecularStrengthBasis, VertebraFractureParams,
    macroscale_states, vertebra_model,
};
use osteolab::fracture::{
    CurvePoint, FractureControl, FractureModel, FractureParams, FractureResult, run_to_failure,
};
use osteolab::multiscale::store::RunFolder;
use osteolab::remodel::scenario::Scenario;
use osteolab::remodel::simulation::RemodelConfig;
use osteolab::remodel::vertebra::{Vertebra, VertebraParams};

use crate::cli::{VolumeInput, load_mask};

#[derive(Args, Debug)]
pub struct FractureArgs {
    /// States of the built-in vertebra in the spaceflight-215 run (or the --run's scenario):
    /// pre, post (end of the microgravity phase, day 229) and/or recovered (end of the run),
    /// comma-separated.
    #[arg(long, value_name = "pre|post|recovered", value_delimiter = ',',
          required_unless_present_any = ["volume", "calibrate"], conflicts_with = "volume")]
    pub state: Vec<String>,
    /// The output folder of a multiscale run (`osteolab run SCENARIO --out DIR`): the states
    /// are taken in its scenario, and the trabecular stiffness and strength of each follow the
    /// apparent modulus of its adapted microstructure relative to day 0. Without it the
    /// scenario is spaceflight-215 and the microstructure is not coupled.
    #[arg(long, value_name = "DIR", conflicts_with = "volume")]
    pub run: Option<PathBuf>,
    /// A trabecular micro-CT cube (sidecar `.json`, NIfTI, DICOM or image folder) to compress
    /// with tissue-level damage instead of the vertebra.
    #[arg(long, value_name = "FILE")]
    pub volume: Option<PathBuf>,
    /// Global threshold for --volume (default: Otsu; binary volumes are taken as segmented).
    #[arg(long, value_name = "T", requires = "volume")]
    pub threshold: Option<f64>,
    /// Largest tissue damage of --volume (residual stiffness 1 − D; default 0.999).
    #[arg(long, value_name = "D", requires = "volume")]
    pub tissue_max_damage: Option<f64>,
    /// Nonlinear step as a fraction of the displacement at damage onset.
    #[arg(long, default_value_t = FractureParams::default().step_fraction_of_onset, value_name = "F")]
    pub step: f64,
    /// End point: stop after the peak when the load has fallen to this fraction of it.
    #[arg(long, default_value_t = 0.7, value_name = "F")]
    pub end_fraction: f64,
    /// Directory for curves.csv, curves.png and damage VTK files.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Curve points whose damage field is written as VTK with --out: `peak`, `end` or point
    /// indices, comma-separated.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "peak,end"
    )]
    pub vtk_at: Vec<String>,
    /// Override the fitted multiplier of the element moduli (vertebra only).
    #[arg(long, value_name = "M")]
    pub modulus_scale: Option<f64>,
    /// Override the fitted multiplier of the yield strains (vertebra only).
    #[arg(long, value_name = "S")]
    pub yield_strain_scale: Option<f64>,
    /// Override the multiplier of the fracture energies (vertebra only; default: the fixed
    /// ductility times the yield-strain scale squared).
    #[arg(long, value_name = "G")]
    pub fracture_energy_scale: Option<f64>,
    /// Exponent of the trabecular strength–density relation σ ∝ ρ^B (vertebra only; default
    /// 1.80, Mosekilde et al. 1987; 1.56, the modulus exponent, makes the trabecular yield
    /// strains independent of density).
    #[arg(long, value_name = "B")]
    pub trabecular_strength_exponent: Option<f64>,
    /// Multiply the cortical yield strains (1.0 % compression, 0.8 % tension, before the
    /// fitted scale) by R, and the cortical fracture energy by R², which keeps the shell's
    /// softening ductility (vertebra only).
    #[arg(long, value_name = "R")]
    pub cortical_yield_strain_scale: Option<f64>,
    /// What the trabecular strength follows between states: `modulus` (σ ∝ E^(B/1.56) with E
    /// including the microstructure factor of --run) or `density` (σ ∝ ρ^B at the BMD; the
    /// microstructure factor changes the stiffness only).
    #[arg(long, value_name = "BASIS", default_value = "modulus", value_parser = parse_strength_basis)]
    pub trabecular_strength_basis: TrabecularStrengthBasis,
    /// Secant iteration converged when no damage changes by more than this.
    #[arg(long, default_value_t = FractureParams::default().damage_tolerance, value_name = "D")]
    pub damage_tolerance: f64,
    /// Secant iterations of an increment before it is cut (default 25 for the vertebra, 60 for
    /// --volume, where struts snap through).
    #[arg(long, value_name = "N")]
    pub max_iterations: Option<usize>,
    /// Stop after this many nonlinear increments (for profiling a part of the curve).
    #[arg(long, default_value_t = FractureParams::default().max_increments, value_name = "N")]
    pub max_increments: usize,
    /// Plain fixed-point secant iteration, without Aitken relaxation.
    #[arg(long)]
    pub no_aitken: bool,
    /// Start each increment from the damage of the extrapolated strain field instead of the
    /// last converged damage.
    #[arg(long)]
    pub extrapolate: bool,
    /// Rebuild the multigrid preconditioner once an element modulus has drifted from it by more
    /// than this |ln(E/E_built)| (0: before every solve, inf: never).
    #[arg(long, default_value_t = FractureParams::default().preconditioner_max_drift, value_name = "X")]
    pub preconditioner_max_drift: f64,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Re-fit the modulus and yield-strain scales to the published pre-flight peak load and
    /// energy to the peak and print them (two full runs: the start and a check).
    #[arg(long, conflicts_with_all = ["state", "volume", "out"])]
    pub calibrate: bool,
}

fn spinner(json: bool) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("valid template"),
    );
    if json {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    } else {
        pb.enable_steady_tick(std::time::Duration::from_millis(150));
    }
    pb
}

/// The vertebral parameters: the fitted defaults with the command-line overrides. A yield-strain
/// scale given without a fracture-energy scale keeps the ductility (G_f scale = q · s²).
fn vertebra_params(args: &FractureArgs) -> VertebraFractureParams {
    let defaults = VertebraFractureParams::default();
    let s = args
        .yield_strain_scale
        .unwrap_or(defaults.yield_strain_scale);
    VertebraFractureParams {
        modulus_scale: args.modulus_scale.unwrap_or(defaults.modulus_scale),
        yield_strain_scale: s,
        fracture_energy_scale: args.fracture_energy_scale.unwrap_or(DUCTILITY * s * s),
        trabecular_strength_exponent: args
            .trabecular_strength_exponent
            .unwrap_or(defaults.trabecular_strength_exponent),
        trabecular_strength_basis: args.trabecular_strength_basis,
        cortical: args
            .cortical_yield_strain_scale
            .map_or(defaults.cortical, |r| {
                defaults.cortical.with_yield_strains_scaled(r)
            }),
        ..defaults
    }
}

fn parse_strength_basis(s: &str) -> Result<TrabecularStrengthBasis, String> {
    TrabecularStrengthBasis::parse(s)
        .ok_or_else(|| format!("expected modulus or density, got `{s}`"))
}

fn run_params(args: &FractureArgs) -> FractureParams {
    FractureParams {
        step_fraction_of_onset: args.step,
        end_load_fraction: args.end_fraction,
        damage_tolerance: args.damage_tolerance,
        max_increments: args.max_increments,
        max_iterations: args
            .max_iterations
            .unwrap_or(FractureParams::default().max_iterations),
        aitken: !args.no_aitken,
        extrapolate: args.extrapolate,
        preconditioner_max_drift: args.preconditioner_max_drift,
        ..Default::default()
    }
}

fn run_with_progress(
    model: &FractureModel,
    params: &FractureParams,
    pb: &ProgressBar,
    label: &str,
) -> Result<FractureResult> {
    let label = label.to_string();
    // With OSTEOLAB_LOG_PROGRESS set, every curve point is also a line on stderr (for logs).
    let log_lines = std::env::var_os("OSTEOLAB_LOG_PROGRESS").is_some();
    let progress = |p: &CurvePoint| {
        let msg = format!(
            "{label}: w {:.5} mm, load {:.5} kN, {} damaged elements, {} iterations{}",
            p.displacement_mm,
            p.load_n / 1000.0,
            p.damaged_elements,
            p.iterations,
            if p.converged { "" } else { " (not converged)" }
        );
        if log_lines {
            eprintln!("{msg}");
        }
        pb.set_message(msg);
    };
    let control = FractureControl {
        cancel: None,
        progress: Some(&progress),
    };
    Ok(run_to_failure(model, params, &control)?)
}

fn result_json(r: &FractureResult) -> Value {
    json!({
        "curve": {
            "displacement_mm": r.curve.iter().map(|p| p.displacement_mm).collect::<Vec<_>>(),
            "load_kn": r.curve.iter().map(|p| p.load_n / 1000.0).collect::<Vec<_>>(),
        },
        "stiffness_kn_per_mm": r.stiffness_n_per_mm / 1000.0,
        "peak_load_kn": r.peak_load_n / 1000.0,
        "displacement_at_peak_mm": r.displacement_at_peak_mm,
        "energy_to_peak_j": r.energy_to_peak_mj / 1000.0,
        "energy_to_end_j": r.energy_to_end_mj / 1000.0,
        "end_displacement_mm": r.end_displacement_mm,
        "end_point": r.end_point,
        "onset_displacement_mm": r.onset_displacement_mm,
        "points": r.curve.len(),
        "increments": r.increments,
        "unconverged_increments": r.unconverged_increments,
        "linear_solves": r.linear_solves,
        "cg_iterations": r.cg_iterations,
        "preconditioner_builds": r.preconditioner_builds,
        "seconds": r.seconds,
    })
}

/// Curve points whose damage to write: indices of kept snapshots.
fn vtk_points(r: &FractureResult, wanted: &[String]) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for w in wanted {
        let point = match w.trim() {
            "peak" => r.peak_index(),
            "end" => r.curve.len() - 1,
            s => s
                .parse::<usize>()
                .with_context(|| format!("--vtk-at `{s}`: expected peak, end or a point index"))?,
        };
        match r.damage.iter().position(|d| d.point == point) {
            Some(i) => out.push(i),
            None => bail!(
                "--vtk-at {point}: no damage field kept there (curve has {} points; the \
                 nonlinear ones start at {})",
                r.curve.len(),
                r.curve.iter().position(|p| p.iterations > 0).unwrap_or(0)
            ),
        }
    }
    out.dedup();
    Ok(out)
}

fn write_outputs(
    dir: &Path,
    runs: &[(String, FractureModel, FractureResult)],
    title: &str,
    vtk_at: &[String],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    let labelled: Vec<(&str, &FractureResult)> =
        runs.iter().map(|(l, _, r)| (l.as_str(), r)).collect();
    let mut written = Vec::new();
    let csv = dir.join("curves.csv");
    write_curves_csv(&csv, &labelled)?;
    written.push(csv);
    let png = dir.join("curves.png");
    write_curves_png(&png, &labelled, title)?;
    written.push(png);
    for (label, model, r) in runs {
        for i in vtk_points(r, vtk_at)? {
            let snap = &r.damage[i];
            let path = dir.join(format!("damage_{label}_point{:04}.vtk", snap.point));
            write_damage_vtk(
                &path,
                &model.mask.grid,
                &r.element_voxel,
                &snap.damage,
                &format!(
                    "osteolab fracture {label}: damage at w = {:.5} mm",
                    snap.displacement_mm
                ),
            )?;
            written.push(path);
        }
    }
    Ok(written)
}

pub fn fracture(args: &FractureArgs) -> Result<()> {
    if args.calibrate {
        return calibrate(args);
    }
    if let Some(volume) = &args.volume {
        return micro(args, volume);
    }
    let mut states = Vec::new();
    for s in &args.state {
        let st = FlightState::parse(s.trim())
            .with_context(|| format!("--state `{s}`: expected pre, post or recovered"))?;
        if !states.contains(&st) {
            states.push(st);
        }
    }
    let t0 = Instant::now();
    let config = RemodelConfig::default();
    let record = match &args.run {
        Some(dir) => {
            let folder = RunFolder::new(dir);
            let record = folder
                .read_record()
                .with_context(|| format!("reading the multiscale run in {}", dir.display()))?;
            Some((folder.record_path().display().to_string(), record))
        }
        None => None,
    };
    let scenario = match &record {
        Some((origin, r)) => Scenario::from_toml_str(&r.scenario_toml, origin)?,
        None => Scenario::resolve("spaceflight-215")?,
    };
    let vertebra = Vertebra::builtin(&VertebraParams::default(), &config.density)?;
    let pb = spinner(args.json);
    pb.set_message(format!("macroscale run ({})", scenario.name));
    let (vertebra, mut macro_states) =
        macroscale_states(config, vertebra, scenario, &states, None, |day, last| {
            pb.set_message(format!("macroscale run: day {day}/{last}"));
        })?;
    if let Some((origin, r)) = &record {
        for st in &mut macro_states {
            st.microstructure = MicrostructureFactor::from_run(r, st.day, &config.density, origin)?;
        }
    }
    let macro_seconds = t0.elapsed().as_secs_f64();
    let fparams = vertebra_params(args);
    let params = run_params(args);
    let mut runs = Vec::new();
    for st in &macro_states {
        let model = vertebra_model(
            &vertebra,
            &st.volume_fraction,
            &config.density,
            &fparams,
            st.microstructure.value,
            &format!("built-in L3, {} (day {})", st.state.name(), st.day),
        )?;
        let r = run_with_progress(&model, &params, &pb, st.state.name())?;
        runs.push((st.state.name().to_string(), model, r));
    }
    pb.finish_and_clear();
    let written = match &args.out {
        Some(dir) => write_outputs(
            dir,
            &runs,
            "built-in L3 vertebra, spaceflight-215: compression to failure",
            &args.vtk_at,
        )?,
        None => Vec::new(),
    };
    let pre = runs.iter().position(|(l, _, _)| l == "pre");
    let change = |i: usize| -> Option<Value> {
        let p = &runs[pre?].2;
        let r = &runs[i].2;
        Some(json!({
            "peak_load_pct": 100.0 * (r.peak_load_n / p.peak_load_n - 1.0),
            "energy_to_end_pct": 100.0 * (r.energy_to_end_mj / p.energy_to_end_mj - 1.0),
            "energy_to_peak_pct": 100.0 * (r.energy_to_peak_mj / p.energy_to_peak_mj - 1.0),
            "stiffness_pct": 100.0 * (r.stiffness_n_per_mm / p.stiffness_n_per_mm - 1.0),
        }))
    };
    let state_json: Vec<Value> = runs
        .iter()
        .zip(&macro_states)
        .enumerate()
        .map(|(i, ((_, model, r), st))| {
            let mut v = result_json(r);
            let o = v.as_object_mut().expect("object");
            o.insert("state".into(), json!(st.state.name()));
            o.insert("day".into(), json!(st.day));
            o.insert("phase".into(), json!(st.phase));
            o.insert("bmd_trabecular_pct".into(), json!(st.bmd_trabecular_pct));
            o.insert("bmd_whole_pct".into(), json!(st.bmd_whole_pct));
            o.insert("microstructure_factor".into(), json!(st.microstructure));
            o.insert("elements".into(), json!(model.element_count()));
            if let Some(c) = change(i) {
                o.insert("change_vs_pre".into(), c);
            }
            v
        })
        .collect();
    let common = json!({
        "energy_definition": format!(
            "energy_to_peak_j = integral of F dw from 0 to the peak load; it is the one \
             calibrated to the published 0.243 J. energy_to_end_j = integral of F dw from 0 to \
             the end point, where the post-peak load first falls to {:.0} % of the peak",
            100.0 * args.end_fraction),
        "published": {
            "pre": {"peak_load_kn": PUBLISHED_PEAK_PRE_N / 1000.0, "energy_j": PUBLISHED_ENERGY_PRE_MJ / 1000.0},
            "post": {"peak_load_kn": PUBLISHED_PEAK_POST_N / 1000.0, "energy_j": PUBLISHED_ENERGY_POST_MJ / 1000.0},
        },
        "parameters": fparams,
        "solver": {
            "step_fraction_of_onset": params.step_fraction_of_onset,
            "damage_tolerance": params.damage_tolerance,
            "aitken": params.aitken,
            "extrapolate": params.extrapolate,
            "preconditioner_max_drift": params.preconditioner_max_drift,
            "max_increments": params.max_increments,
        },
        "macroscale_seconds": macro_seconds,
        "seconds": t0.elapsed().as_secs_f64(),
        "files": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    if args.json {
        let mut out = if state_json.len() == 1 {
            state_json[0].clone()
        } else {
            json!({ "states": state_json })
        };
        let o = out.as_object_mut().expect("object");
        for (k, v) in common.as_object().expect("object") {
            o.insert(k.clone(), v.clone());
        }
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!(
            "{:<10} {:>5} {:>12} {:>10} {:>12} {:>12} {:>12} {:>8}",
            "state", "day", "stiff kN/mm", "peak kN", "w_peak mm", "E_peak J", "E_end J", "points"
        );
        for ((label, _, r), st) in runs.iter().zip(&macro_states) {
            println!(
                "{:<10} {:>5} {:>12.2} {:>10.3} {:>12.4} {:>12.4} {:>12.4} {:>8}",
                label,
                st.day,
                r.stiffness_n_per_mm / 1000.0,
                r.peak_load_n / 1000.0,
                r.displacement_at_peak_mm,
                r.energy_to_peak_mj / 1000.0,
                r.energy_to_end_mj / 1000.0,
                r.curve.len()
            );
        }
        for (i, (label, _, _)) in runs.iter().enumerate() {
            if let Some(c) = change(i).filter(|_| label != "pre") {
                println!(
                    "{label} vs pre: peak {:+.2} % (published -7.1 % post-flight), energy to peak {:+.2} % (published -10.3 %), energy to end {:+.2} %",
                    c["peak_load_pct"].as_f64().unwrap_or(f64::NAN),
                    c["energy_to_peak_pct"].as_f64().unwrap_or(f64::NAN),
                    c["energy_to_end_pct"].as_f64().unwrap_or(f64::NAN)
                );
            }
        }
        for st in &macro_states {
            println!(
                "{}: trabecular factor {:.4} ({})",
                st.state.name(),
                st.microstructure.value,
                st.microstructure.source
            );
        }
        for p in &written {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}

fn micro(args: &FractureArgs, volume: &Path) -> Result<()> {
    let mask = load_mask(&VolumeInput {
        volume: volume.to_path_buf(),
        threshold: args.threshold,
        target_bv_tv: None,
        sigma: 1.0,
        downsample: 1,
        keep_all_components: false,
    })?;
    let mut tissue = TissueParams::default();
    if let Some(d) = args.tissue_max_damage {
        tissue.damage.max_damage = d;
    }
    let model = micro_model(&mask, &tissue)
        .with_context(|| format!("{}: cannot build the fracture model", volume.display()))?;
    let pb = spinner(args.json);
    let mut params = run_params(args);
    if args.max_iterations.is_none() {
        params = micro_run_params(&params);
    }
    let r = run_with_progress(&model, &params, &pb, "cube")?;
    pb.finish_and_clear();
    let m = apparent_measures(&model, &r);
    let runs = vec![("cube".to_string(), model, r)];
    let written = match &args.out {
        Some(dir) => write_outputs(
            dir,
            &runs,
            &format!("{}: compression to failure", volume.display()),
            &args.vtk_at,
        )?,
        None => Vec::new(),
    };
    let (_, model, r) = &runs[0];
    if args.json {
        let mut v = result_json(r);
        let o = v.as_object_mut().expect("object");
        o.insert("volume".into(), json!(volume.display().to_string()));
        o.insert("elements".into(), json!(model.element_count()));
        o.insert("bv_tv".into(), json!(model.mask.bv_tv()));
        o.insert(
            "apparent_strength_mpa".into(),
            json!(m.apparent_strength_mpa),
        );
        o.insert("strain_at_peak".into(), json!(m.strain_at_peak));
        o.insert("apparent_modulus_mpa".into(), json!(m.apparent_modulus_mpa));
        o.insert(
            "offset_yield_strength_mpa".into(),
            json!(m.offset_yield_strength_mpa),
        );
        o.insert("offset_yield_strain".into(), json!(m.offset_yield_strain));
        o.insert(
            "files".into(),
            json!(
                written
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
            ),
        );
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!("{} ({} elements)", model.description, model.element_count());
        println!(
            "apparent modulus {:.1} MPa, strength {:.3} MPa at strain {:.4}; peak {:.1} N; energy to end {:.4} mJ; {} points in {:.1} s",
            m.apparent_modulus_mpa,
            m.apparent_strength_mpa,
            m.strain_at_peak,
            r.peak_load_n,
            r.energy_to_end_mj,
            r.curve.len(),
            r.seconds
        );
        match (m.offset_yield_strength_mpa, m.offset_yield_strain) {
            (Some(s), Some(e)) => println!("0.2 % offset yield: {s:.3} MPa at strain {e:.4}"),
            _ => println!("0.2 % offset yield: not reached"),
        }
        for p in &written {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}

fn calibrate(args: &FractureArgs) -> Result<()> {
    let t0 = Instant::now();
    let config = RemodelConfig::default();
    let vertebra = Vertebra::builtin(&VertebraParams::default(), &config.density)?;
    let json = args.json;
    let start = vertebra_params(args);
    let c = fit_pre_flight(
        &vertebra,
        &config.density,
        &start,
        &run_params(args),
        &FractureControl::default(),
        |r| {
            if !json {
                eprintln!(
                    "run: modulus scale {:.4}, yield-strain scale {:.4}, fracture-energy scale {:.4} -> stiffness {:.2} kN/mm, peak {:.4} kN, energy to peak {:.4} J, to end {:.4} J",
                    r.modulus_scale,
                    r.yield_strain_scale,
                    r.fracture_energy_scale,
                    r.stiffness_n_per_mm / 1000.0,
                    r.peak_load_n / 1000.0,
                    r.energy_to_peak_mj / 1000.0,
                    r.energy_to_end_mj / 1000.0
                );
            }
        },
    )?;
    if json {
        println!("{}", serde_json::to_string(&c)?);
    } else {
        let check = c.rounds.last().context("the fit made no run")?;
        println!(
            "fitted in {:.0} s ({} runs): modulus_scale = {:.5}, yield_strain_scale = {:.5}, fracture_energy_scale = {:.5} -> peak {:.4} kN (published {:.3}), energy to peak {:.4} J (published {:.3})",
            t0.elapsed().as_secs_f64(),
            c.rounds.len(),
            c.modulus_scale,
            c.yield_strain_scale,
            c.fracture_energy_scale,
            check.peak_load_n / 1000.0,
            PUBLISHED_PEAK_PRE_N / 1000.0,
            check.energy_to_peak_mj / 1000.0,
            PUBLISHED_ENERGY_PRE_MJ / 1000.0
        );
    }
    Ok(())
}
