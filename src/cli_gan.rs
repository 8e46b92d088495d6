//! `osteolab gan`: ReconGAN training (feature `torch`) and generation (pure Rust).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use osteolab::gan::{Generator, to_mask};
use osteolab::volume::save_volume;

#[derive(Subcommand, Debug)]
pub enum GanCommand {
    /// Generate trabecular cubes from trained generator weights (no libtorch needed).
    Generate(GenerateArgs),
    /// Train ReconGAN on segmented micro-CT (needs the `torch` feature).
    Train(TrainArgs),
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
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training volumes (grey micro-CT or segmented), each a sidecar, NIfTI, DICOM or stack.
    #[arg(long = "data", value_name = "VOLUME", required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Output directory: checkpoint/, generator.safetensors and generator.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Downsample the grey values by this integer factor first (block mean).
    #[arg(long, default_value_t = 1)]
    pub downsample: usize,
    /// Segmentation: global threshold (default Otsu on the smoothed volume).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Gaussian smoothing before thresholding, sigma in voxels.
    #[arg(long, default_value_t = 1.0)]
    pub sigma: f64,
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
}

pub fn gan(command: &GanCommand) -> Result<()> {
    match command {
        GanCommand::Generate(a) => generate(a),
        GanCommand::Train(a) => train(a),
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
    for index in 0..args.count {
        let t = Instant::now();
        let field = generator.generate(args.seed, index);
        let mask = to_mask(&field, arch.size, card.voxel_size_mm, bv_tv)?;
        timings.push(t.elapsed().as_secs_f64());
        let path = args
            .out
            .join(format!("recongan_seed{}_{index:03}.json", args.seed));
        save_volume(&mask.to_volume(), &path)?;
        let achieved = mask.bv_tv();
        written.push((path, achieved));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&json!({
                "weights": args.weights.display().to_string(),
                "size": arch.size,
                "voxel_size_mm": card.voxel_size_mm,
                "bv_tv_target": bv_tv,
                "cubes": written.iter().map(|(p, b)| json!({"path": p.display().to_string(), "bv_tv": b})).collect::<Vec<_>>(),
                "seconds_per_cube": timings.iter().sum::<f64>() / timings.len() as f64,
                "seconds": t0.elapsed().as_secs_f64(),
            }))?
        );
    } else {
        for (p, b) in &written {
            println!("wrote {} (BV/TV {b:.3})", p.display());
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
    use osteolab::gan::train::{TrainParams, TrainingData, train};

    let mut masks = Vec::new();
    for path in &args.data {
        let input = crate::cli::VolumeInput {
            volume: path.clone(),
            threshold: args.threshold,
            target_bv_tv: None,
            sigma: args.sigma,
            downsample: args.downsample,
            keep_all_components: false,
        };
        masks.push(crate::cli::load_mask(&input)?);
    }
    let description = args
        .data
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let data = TrainingData::from_masks(
        masks,
        args.size,
        format!("{description} (downsampled x{})", args.downsample),
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
        ..Default::default()
    };
    let pb = ProgressBar::new(args.steps as u64);
    pb.set_style(
        ProgressStyle::with_template("{bar:40} step {pos}/{len} {msg}").expect("valid template"),
    );
    let outcome = train(&data, &params, &args.out, args.resume, None, |p| {
        pb.set_position(p.step as u64);
        pb.set_message(format!(
            "epoch {:.2} · D {:.3} · G {:.3} · {:.1} samples/s · ETA {:.0} s",
            p.epoch, p.loss_d, p.loss_g, p.samples_per_second, p.eta_seconds
        ));
    })?;
    pb.finish_and_clear();
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}
