//! `osteolab gan`: ReconGAN training (feature `torch`) and generation (pure Rust).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use osteolab::gan::Generator;
use osteolab::volume::{Volume, VoxelData, save_volume};

#[derive(Subcommand, Debug)]
pub enum GanCommand {
    /// Generate trabecular cubes from trained generator weights (no libtorch needed).
    Generate(GenerateArgs),
    /// Train ReconGAN on segmented micro-CT (needs the `torch` feature).
    Train(TrainArgs),
    /// Validate generated cubes against real sub-volumes: morphometry, S2(r), L(r), micro-FE
    /// modulus and a copy search; prints a JSON report and writes figures.
    Validate(ValidateArgs),
    /// Choose how generated fields become masks (smoothing σ, cavity fill) by morphometry
    /// against the training data; prints a JSON report, `--write` stores it in the card.
    Calibrate(CalibrateArgs),
    /// Replace the batch norms' running averages in a weights file by the statistics of the
    /// final weights over many generated cubes ("standing statistics"); writes new weights
    /// and card.
    StandingStats(StandingStatsArgs),
}

#[derive(Args, Debug)]
pub struct StandingStatsArgs {
    /// Generator weights (NAME.safetensors with its card NAME.json beside it).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Output weights (.safetensors; its card is written beside it). May be the input.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Generated cubes the statistics are taken over (2 MB of memory each at 64³).
    #[arg(long, default_value_t = osteolab::gan::standing::DEFAULT_COUNT)]
    pub count: usize,
    /// Latent seed of those cubes; keep it apart from the seeds used to validate.
    #[arg(long, default_value_t = osteolab::gan::standing::DEFAULT_SEED)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Generator weights (NAME.safetensors with its card NAME.json beside it).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    #[command(flatten)]
    pub training: TrainingDataArgs,
    /// Candidate smoothing σ of the generated fields, voxels, comma-separated (default
    /// 0.3, 0.35, …, 0.6, 0.7, 0.8, 1.0, 1.5).
    #[arg(long, value_delimiter = ',', value_name = "SIGMAS")]
    pub mask_sigmas: Vec<f64>,
    /// Only try masks without the cavity fill.
    #[arg(long)]
    pub no_fill: bool,
    /// Generated cubes per candidate.
    #[arg(long, default_value_t = 16)]
    pub count: usize,
    /// Real training sub-cubes.
    #[arg(long, default_value_t = 16)]
    pub real_count: usize,
    /// Seed of the latents and of the real sub-cubes; keep it apart from `gan validate`'s.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// BV/TV of the thresholded cubes (default: the training data's mean).
    #[arg(long, value_name = "X")]
    pub bv_tv: Option<f64>,
    /// Store the best settings and the report's summary in the weights' card.
    #[arg(long)]
    pub write: bool,
}

/// The training micro-CT and how it is segmented, shared by `gan train`, `gan validate` and
/// `gan calibrate` so that all three see the same masks.
#[derive(Args, Debug)]
pub struct TrainingDataArgs {
    /// Training volumes (grey micro-CT or segmented), each a sidecar, NIfTI, DICOM or stack.
    #[arg(long = "data", value_name = "VOLUME", required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Downsample the grey values by this integer factor first (block mean); for `validate`
    /// and `calibrate` the result must be at the generator's voxel size.
    #[arg(long, default_value_t = 1)]
    pub downsample: usize,
    /// Segmentation: global threshold (default Otsu on the smoothed volume).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Gaussian smoothing of the training data before thresholding, sigma in voxels.
    #[arg(long, default_value_t = 1.0)]
    pub sigma: f64,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Generator weights (NAME.safetensors with its card NAME.json beside it).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Bone volume fraction of the thresholded cubes (default: the training data's mean).
    #[arg(long, value_name = "X")]
    pub bv_tv: Option<f64>,
    /// Output directory for NAME_SEED_INDEX.json/.raw sidecar volumes (uint8 0/255).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long)]
    pub json: bool,
    /// Also write each cube's raw generator output (float32, tanh in (−1, 1), before
    /// smoothing and threshold) as NAME_field.json/.raw, and report its percentiles.
    #[arg(long)]
    pub field: bool,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Generator weights (NAME.safetensors with its card NAME.json beside it).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    #[command(flatten)]
    pub training: TrainingDataArgs,
    /// Generated cubes (the targets need at least 64).
    #[arg(long, default_value_t = 64)]
    pub count: usize,
    /// Real sub-cubes (the targets need at least 64).
    #[arg(long, default_value_t = 64)]
    pub real_count: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// BV/TV of the thresholded generated cubes (default: the training data's mean).
    #[arg(long, value_name = "X")]
    pub bv_tv: Option<f64>,
    /// Largest lag of S2(r) and L(r), in voxels.
    #[arg(long, default_value_t = 32)]
    pub max_r: usize,
    /// Offset grid of the copy search, in voxels (1 = every offset).
    #[arg(long, default_value_t = 1)]
    pub dice_stride: usize,
    /// Skip the micro-FE (the modulus target is then not evaluated).
    #[arg(long)]
    pub no_fe: bool,
    /// Output directory for validation.json, s2.png and lineal-path.png.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub training: TrainingDataArgs,
    /// Output directory: checkpoint/, generator.safetensors and generator.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Edge of the training cubes and of the generated ones (voxels; power of two).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[arg(long, default_value_t = 64)]
    pub latent_dim: usize,
    /// Channels of the generator's last hidden layer (they double towards the latent).
    #[arg(long, default_value_t = 16)]
    pub base_channels: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Continue from OUT/checkpoint when it exists.
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Start the generator from these exported weights (same architecture); the
    /// discriminator starts from scratch unless --init-discriminator is given. Ignored when
    /// --resume finds a checkpoint.
    #[arg(long, value_name = "FILE")]
    pub init_generator: Option<PathBuf>,
    /// Start the discriminator from a checkpoint's `discriminator.safetensors`; one saved
    /// without --minibatch-std is widened for it (the new channel starts at zero weight).
    /// Ignored when --resume finds a checkpoint.
    #[arg(long, value_name = "FILE")]
    pub init_discriminator: Option<PathBuf>,
    /// Steps in which only the discriminator learns (for --init-generator).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub discriminator_warmup: usize,
    /// Factor on the last layer of the --init-generator weights (saturates a faint output).
    #[arg(long, default_value_t = 1.0, value_name = "K")]
    pub init_output_gain: f64,
    /// Adam's learning rate, for both networks.
    #[arg(long, default_value_t = 2e-4, value_name = "LR")]
    pub learning_rate: f64,
    /// Weight of the slice-fraction loss (0 = off; see `gan::train`).
    #[arg(long, default_value_t = 0.0, value_name = "LAMBDA")]
    pub slice_loss_weight: f64,
    /// Weight of the intercept-share loss (0 = off; see `gan::train`).
    #[arg(long, default_value_t = 0.0, value_name = "LAMBDA")]
    pub intercept_loss_weight: f64,
    /// The discriminator judges real and generated cubes through a differentiable copy of
    /// the mask (Gaussian, then a steep tanh; see `gan::train`).
    #[arg(long)]
    pub discriminator_sees_mask: bool,
    /// Gaussian σ (voxels) of that copy of the mask, for --intercept-loss-weight and
    /// --discriminator-sees-mask (the card's mask σ).
    #[arg(long, default_value_t = osteolab::gan::arch::SHIPPED_MASK_SIGMA_VOXELS, value_name = "SIGMA")]
    pub mask_like_sigma: f64,
    /// Generated cubes the exported generator's batch-norm statistics are taken over
    /// (standing statistics; 0 = export the running averages of training).
    #[arg(long, default_value_t = osteolab::gan::standing::DEFAULT_COUNT, value_name = "N")]
    pub standing_statistics_count: usize,
    /// The discriminator's last layer also sees how much the cubes of each batch differ from
    /// each other (minibatch standard deviation; see `gan::train`).
    #[arg(long)]
    pub minibatch_std: bool,
    /// With --batch-norm-discriminator: real and generated cubes through the discriminator
    /// as two batches, as before (its batch norms then hide the field's amplitude from it;
    /// see `gan::train`).
    #[arg(long)]
    pub separate_discriminator_batches: bool,
    /// Batch norm in the discriminator, as before 2026-11-25, instead of spectral
    /// normalisation (Miyato et al. 2018; see `gan::train`).
    #[arg(long)]
    pub batch_norm_discriminator: bool,
    /// Do not mirror training cubes along z (the earlier training; see `gan::train`).
    #[arg(long)]
    pub no_z_flip: bool,
}

pub fn gan(command: &GanCommand) -> Result<()> {
    match command {
        GanCommand::Generate(a) => generate(a),
        GanCommand::Train(a) => train(a),
        GanCommand::Validate(a) => validate(a),
        GanCommand::Calibrate(a) => calibrate(a),
        GanCommand::StandingStats(a) => standing_stats(a),
    }
}

fn generate(args: &GenerateArgs) -> Result<()> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let t0 = Instant::now();
    let generator = Generator::load(&args.weights)?;
    let arch = generator.arch();
    let card = generator.card();
    let bv_tv = args.bv_tv.unwrap_or(card.bv_tv_mean);
    if !(bv_tv.is_finite() && bv_tv > 0.0 && bv_tv < 1.0) {
        bail!("--bv-tv must lie in (0, 1), got {bv_tv}");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut written = Vec::new();
    let mut timings = Vec::new();
    let mut field_values = Vec::new();
    for index in 0..args.count {
        let t = Instant::now();
        let field = generator.generate(args.seed, index);
        let mask = generator.field_to_mask(&field, bv_tv)?;
        timings.push(t.elapsed().as_secs_f64());
        let name = format!("recongan_seed{}_{index:03}", args.seed);
        let path = args.out.join(format!("{name}.json"));
        save_volume(&mask.to_volume(), &path)?;
        if args.field {
            field_values.extend_from_slice(&field);
            let volume = Volume {
                grid: mask.grid,
                data: VoxelData::F32(field),
            };
            save_volume(&volume, &args.out.join(format!("{name}_field.json")))?;
        }
        let achieved = mask.bv_tv();
        written.push((path, achieved));
    }
    // Percentiles of the raw output over all cubes (nearest rank).
    field_values.sort_unstable_by(f32::total_cmp);
    let field_percentiles = (!field_values.is_empty()).then(|| {
        let at =
            |q: f64| field_values[((q / 100.0) * (field_values.len() - 1) as f64).round() as usize];
        json!({"p1": at(1.0), "p10": at(10.0), "p50": at(50.0), "p90": at(90.0), "p99": at(99.0)})
    });
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&json!({
                "weights": args.weights.display().to_string(),
                "size": arch.size,
                "voxel_size_mm": card.voxel_size_mm,
                "bv_tv_target": bv_tv,
                "cubes": written.iter().map(|(p, b)| json!({"path": p.display().to_string(), "bv_tv": b})).collect::<Vec<_>>(),
                "field_percentiles": field_percentiles,
                "seconds_per_cube": timings.iter().sum::<f64>() / timings.len() as f64,
                "seconds": t0.elapsed().as_secs_f64(),
            }))?
        );
    } else {
        for (p, b) in &written {
            println!("wrote {} (BV/TV {b:.3})", p.display());
        }
        if let Some(f) = &field_percentiles {
            println!("raw generator output, percentiles 1/10/50/90/99: {f}");
        }
        println!(
            "{} cube(s) of {}³ at {} mm in {:.2} s",
            written.len(),
            arch.size,
            card.voxel_size_mm,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(not(feature = "torch"))]
fn train(_: &TrainArgs) -> Result<()> {
    bail!(
        "training needs libtorch: this osteolab was built without the `torch` feature; \
         run `. tests/torch-env.sh && cargo run --release --features torch -- gan train ...`"
    )
}

#[cfg(feature = "torch")]
fn train(args: &TrainArgs) -> Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    use osteolab::gan::arch::GeneratorArch;
    use osteolab::gan::train::{
        DiscriminatorNorm, Initialisation, TrainParams, TrainingData, train,
    };
    use std::io::IsTerminal;

    let masks = args.training.load_masks()?;
    let description = args
        .training
        .data
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let data = TrainingData::from_masks(
        masks,
        args.size,
        format!("{description} (downsampled x{})", args.training.downsample),
    )?;
    let params = TrainParams {
        arch: GeneratorArch {
            latent_dim: args.latent_dim,
            base_channels: args.base_channels,
            size: args.size,
        },
        batch_size: args.batch,
        steps: args.steps,
        checkpoint_every: args.checkpoint_every,
        seed: args.seed,
        joint_discriminator_batch: !args.separate_discriminator_batches,
        slice_loss_weight: args.slice_loss_weight,
        intercept_loss_weight: args.intercept_loss_weight,
        mask_like_sigma_voxels: args.mask_like_sigma,
        discriminator_sees_mask: args.discriminator_sees_mask,
        standing_statistics_count: args.standing_statistics_count,
        minibatch_std: args.minibatch_std,
        discriminator_warmup_steps: args.discriminator_warmup,
        init_output_gain: args.init_output_gain,
        learning_rate: args.learning_rate,
        discriminator_norm: if args.batch_norm_discriminator {
            DiscriminatorNorm::Batch
        } else {
            DiscriminatorNorm::Spectral
        },
        flip_z: !args.no_z_flip,
        ..Default::default()
    };
    /// Steps between progress lines when stderr is not a terminal.
    const LOG_EVERY_STEPS: usize = 50;
    let log_lines = !std::io::stderr().is_terminal();
    let pb = ProgressBar::new(args.steps as u64);
    pb.set_style(
        ProgressStyle::with_template("{bar:40} step {pos}/{len} {msg}").expect("valid template"),
    );
    let outcome = train(
        &data,
        &params,
        &args.out,
        args.resume,
        Initialisation {
            generator: args.init_generator.as_deref(),
            discriminator: args.init_discriminator.as_deref(),
        },
        None,
        |p| {
            let intercepts = p
                .loss_intercepts
                .map(|l| format!(" · intercepts {l:.5}"))
                .unwrap_or_default();
            let message = format!(
                "epoch {:.2} · D {:.3} · G {:.3} · slices {:.5}{intercepts} · {:.1} samples/s · ETA {:.0} s",
                p.epoch, p.loss_d, p.loss_g, p.loss_slices, p.samples_per_second, p.eta_seconds
            );
            if log_lines {
                // The bar draws nothing when stderr is not a terminal (a batch job's log).
                if p.step % LOG_EVERY_STEPS == 0 || p.step == p.steps {
                    eprintln!("step {}/{} · {message}", p.step, p.steps);
                }
            } else {
                pb.set_position(p.step as u64);
                pb.set_message(message);
            }
        },
    )?;
    pb.finish_and_clear();
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

/// Runs `run` with a progress bar fed by its [`ValidationControl`] (`message` names what the
/// count is of at each stage); the bar is cleared when it returns. When stderr is not a
/// terminal (a batch job's log), where the bar is hidden, a plain line is printed instead
/// at the start of each stage and at every further tenth of it.
fn with_validation_progress<T>(
    message: fn(osteolab::gan::validate::ValidationStage) -> &'static str,
    run: impl FnOnce(&osteolab::gan::validate::ValidationControl) -> T,
) -> T {
    use indicatif::{ProgressBar, ProgressStyle};
    use osteolab::gan::validate::{ValidationControl, ValidationProgress, ValidationStage};
    use std::io::IsTerminal;

    let log_lines = !std::io::stderr().is_terminal();
    let start = Instant::now();
    // The stage and tenth of the last logged line: reports come from several threads, and
    // a late one must not log a tenth again.
    let last_logged = std::sync::Mutex::new(None::<(ValidationStage, usize)>);
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed_precise}]")
            .expect("valid template"),
    );
    let progress = |p: &ValidationProgress| {
        pb.set_length(p.total as u64);
        pb.set_position(p.done as u64);
        pb.set_message(message(p.stage));
        if log_lines && p.total > 0 {
            let tenth = p.done * 10 / p.total;
            let mut last = last_logged.lock().unwrap_or_else(|e| e.into_inner());
            let new = match *last {
                Some((stage, logged)) => stage != p.stage || tenth > logged,
                None => true,
            };
            if new {
                *last = Some((p.stage, tenth));
                eprintln!(
                    "{}/{} {} [{:.0} s]",
                    p.done,
                    p.total,
                    message(p.stage),
                    start.elapsed().as_secs_f64()
                );
            }
        }
    };
    let result = run(&ValidationControl {
        cancel: None,
        progress: Some(&progress),
    });
    pb.finish_and_clear();
    result
}

fn validate(args: &ValidateArgs) -> Result<()> {
    use osteolab::gan::validate::{ValidationParams, ValidationStage, validate as run_validation};

    let generator = Generator::load(&args.weights)?;
    let masks = args.training.load_masks()?;
    let params = ValidationParams {
        generated_count: args.count,
        real_count: args.real_count,
        seed: args.seed,
        bv_tv: args.bv_tv,
        max_r_voxels: args.max_r,
        fe: !args.no_fe,
        dice_stride_voxels: args.dice_stride,
    };
    let report = with_validation_progress(
        |stage| match stage {
            ValidationStage::Cubes => "cubes measured (morphometry, S2, L, micro-FE)",
            ValidationStage::Dice => "cubes searched for copies",
        },
        |control| run_validation(&generator, &masks, &params, control),
    );
    let report = report.with_context(|| format!("validating {}", args.weights.display()))?;
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("validation.json");
        osteolab::atomic::write_bytes_atomic(&path, format!("{text}\n").as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        write_validation_figures(&report, dir)?;
    }
    println!("{text}");
    if report.pass {
        eprintln!("ReconGAN validation: all targets met");
    } else {
        eprintln!("ReconGAN validation: targets not met");
        for f in &report.failed {
            eprintln!("  failed: {f}");
        }
        for f in &report.not_evaluated {
            eprintln!("  not evaluated: {f}");
        }
    }
    Ok(())
}

fn calibrate(args: &CalibrateArgs) -> Result<()> {
    use osteolab::gan::arch::card_path_for;
    use osteolab::gan::calibrate::{CalibrationParams, calibrate_mask};

    let generator = Generator::load(&args.weights)?;
    let masks = args.training.load_masks()?;
    let defaults = CalibrationParams::default();
    let params = CalibrationParams {
        generated_count: args.count,
        real_count: args.real_count,
        seed: args.seed,
        bv_tv: args.bv_tv,
        sigmas_voxels: if args.mask_sigmas.is_empty() {
            defaults.sigmas_voxels
        } else {
            args.mask_sigmas.clone()
        },
        fill_enclosed_marrow: if args.no_fill {
            vec![false]
        } else {
            vec![false, true]
        },
    };
    let report = with_validation_progress(
        |_| "cubes measured",
        |control| calibrate_mask(&generator, &masks, &params, control),
    );
    let report = report.with_context(|| format!("calibrating {}", args.weights.display()))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!("σ (voxels)  fill  RMS rel. diff  Tb.Th   Tb.Sp   Tb.N    Conn.D  DA      SMI");
    for c in &report.candidates {
        let m = &c.morphometry;
        eprintln!(
            "{:>10}  {:>4}  {:>13.4}  {:+.3}  {:+.3}  {:+.3}  {:+.3}  {:+.3}  {:+.3}",
            c.options.sigma_voxels,
            if c.options.fill_enclosed_marrow {
                "yes"
            } else {
                "no"
            },
            c.score,
            m.tb_th_mm.relative_difference,
            m.tb_sp_mm.relative_difference,
            m.tb_n_per_mm.relative_difference,
            m.conn_d_per_mm3.relative_difference,
            m.da.relative_difference,
            m.smi.relative_difference,
        );
    }
    eprintln!(
        "best: σ = {} voxels, cavity fill {} (RMS relative difference {:.4})",
        report.best.sigma_voxels,
        if report.best.fill_enclosed_marrow {
            "on"
        } else {
            "off"
        },
        report.best_score
    );
    if args.write {
        let path = card_path_for(&args.weights);
        let mut card = generator.card().clone();
        card.set_mask_options(report.best);
        let best = report
            .candidates
            .iter()
            .find(|c| c.options == report.best)
            .expect("the best is a candidate");
        card.mask_calibration = Some(json!({
            "command": "osteolab gan calibrate",
            "params": report.params,
            "data": args.training.data.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "downsample": args.training.downsample,
            "bv_tv_target": report.bv_tv_target,
            "best": report.best,
            "rms_relative_difference": report.best_score,
            "relative_differences": best.morphometry.entries().iter()
                .map(|(n, c)| ((*n).to_string(), json!(c.relative_difference)))
                .collect::<serde_json::Map<_, _>>(),
        }));
        card.save(&path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn standing_stats(args: &StandingStatsArgs) -> Result<()> {
    use osteolab::gan::standing::write_with_standing_statistics;

    let t0 = Instant::now();
    let report = write_with_standing_statistics(&args.weights, &args.out, args.seed, args.count)
        .with_context(|| format!("standing statistics of {}", args.weights.display()))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "weights": report.weights,
            "card": report.card,
            "seed": args.seed,
            "count": args.count,
            "changes_per_batch_norm": report.changes,
            "seconds": t0.elapsed().as_secs_f64(),
        }))?
    );
    eprintln!(
        "wrote {} and {}; the card's validation and mask calibration records were dropped: \
         re-run `gan calibrate` and `gan validate` on the new weights",
        report.weights.display(),
        report.card.display()
    );
    Ok(())
}

/// `s2.png` (mean and z-axis curves) and `lineal-path.png` (bone and marrow): real solid,
/// generated dashed, lags in mm.
fn write_validation_figures(
    report: &osteolab::gan::validate::ValidationReport,
    dir: &std::path::Path,
) -> Result<()> {
    use osteolab::gan::validate::CurveComparison;
    use osteolab::plot::{LineChart, Series};

    let points = |c: &CurveComparison, y: &[f64]| -> Vec<(f64, f64)> {
        c.r_mm.iter().copied().zip(y.iter().copied()).collect()
    };
    let pair = |c: &CurveComparison, name: &str, color: [u8; 3], axis_z: bool| {
        let (real, generated) = if axis_z {
            (&c.real_axes.z, &c.generated_axes.z)
        } else {
            (&c.real, &c.generated)
        };
        [
            Series::new(format!("real, {name}"), color, points(c, real)),
            Series::new(format!("generated, {name}"), color, points(c, generated)).dashed(),
        ]
    };
    let (n_gen, n_real) = (report.params.generated_count, report.params.real_count);
    let s2 = &report.s2;
    let mut series = pair(s2, "mean of x, y, z", [31, 119, 180], false).to_vec();
    series.extend(pair(s2, "along z (load axis)", [214, 39, 40], true));
    let chart = LineChart {
        title: format!(
            "Two-point correlation S2(r): {n_real} real, {n_gen} generated cubes (RMS diff {:.4})",
            s2.rms_difference
        ),
        x_label: "r (mm)".into(),
        y_label: "S2(r)".into(),
        series,
        bands: Vec::new(),
        zero_line: false,
    };
    let path = dir.join("s2.png");
    chart
        .write_png(&path, 1000, 600)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let lp = &report.lineal_path;
    let mut series = pair(&lp.bone, "bone", [31, 119, 180], false).to_vec();
    series.extend(pair(&lp.marrow, "marrow", [255, 127, 14], false));
    let chart = LineChart {
        title: format!("Lineal-path function L(r): {n_real} real, {n_gen} generated cubes"),
        x_label: "r (mm)".into(),
        y_label: "L(r)".into(),
        series,
        bands: Vec::new(),
        zero_line: false,
    };
    let path = dir.join("lineal-path.png");
    chart
        .write_png(&path, 1000, 600)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

impl TrainingDataArgs {
    /// Segments the training volumes as `gan train` does (largest component kept), so `gan
    /// validate` and `gan calibrate` compare against exactly the cubes the generator learned
    /// from.
    fn load_masks(&self) -> Result<Vec<osteolab::volume::BoneMask>> {
        self.data
            .iter()
            .map(|path| {
                crate::cli::load_mask(&crate::cli::VolumeInput {
                    volume: path.clone(),
                    threshold: self.threshold,
                    target_bv_tv: None,
                    sigma: self.sigma,
                    downsample: self.downsample,
                    keep_all_components: false,
                })
            })
            .collect()
    }
}
