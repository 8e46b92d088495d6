//! The headless subcommands (design §4). Each prints a human summary, or with `--json` one
//! JSON object on stdout. Progress goes to stderr.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use osteolab::fe::{
    self, AxialLoad, BoundaryCondition, Material, MultigridParams, Preconditioner, SolveControl,
    SolverParams, SolverProgress,
};
use osteolab::mesh::{self, ExtractParams};
use osteolab::morph::{self, MorphParams};
use osteolab::volume::segment::{
    self as seg, SegmentParams, Threshold, downsample_volume, largest_component,
};
use osteolab::volume::{BoneMask, Volume, load_volume, save_volume};

/// How a grey-value volume becomes a bone mask.
#[derive(Args, Debug, Clone)]
pub struct VolumeInput {
    /// Volume: a `.json` sidecar, `.nii[.gz]`, or a folder of DICOM or PNG/TIFF slices.
    pub volume: PathBuf,
    /// Global threshold (bone = value >= T). Default: Otsu on the smoothed volume; volumes
    /// holding only two values are taken as already segmented (bone = the higher value).
    #[arg(long, value_name = "T")]
    pub threshold: Option<f64>,
    /// Choose the global threshold that gives this BV/TV instead (e.g. 0.25).
    #[arg(long, value_name = "X", conflicts_with = "threshold")]
    pub target_bv_tv: Option<f64>,
    /// Gaussian smoothing before thresholding, sigma in voxels (grey volumes only).
    #[arg(long, default_value_t = 1.0, value_name = "VOXELS")]
    pub sigma: f64,
    /// Downsample the grey values by this integer factor (block mean) first.
    #[arg(long, default_value_t = 1, value_name = "F")]
    pub downsample: usize,
    /// Keep every bone component instead of only the largest 6-connected one.
    #[arg(long)]
    pub keep_all_components: bool,
}

/// A spinner on stderr for work that may take over a second (hidden when not a terminal).
fn spinner(message: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("valid template"),
    );
    pb.set_message(message.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// True when the volume holds at most two distinct values (a segmented volume).
fn is_binary(volume: &Volume) -> Option<f64> {
    let (lo, hi) = volume.value_range()?;
    if lo == hi {
        return Some(hi);
    }
    let n = volume.data.len();
    let all_two = (0..n).all(|i| {
        let v = volume.data.get_f64(i);
        v == lo || v == hi
    });
    all_two.then_some(hi)
}

/// Loads and segments a volume as the command line asks.
pub fn load_mask(input: &VolumeInput) -> Result<BoneMask> {
    let pb = spinner(&format!("reading {}", input.volume.display()));
    let mut volume = load_volume(&input.volume)?;
    if input.downsample > 1 {
        pb.set_message(format!("downsampling ×{}", input.downsample));
        volume = downsample_volume(&volume, input.downsample)?;
    }
    pb.set_message("segmenting");
    let keep_largest_component = !input.keep_all_components;
    let mask = if let Some(hi) = is_binary(&volume).filter(|_| input.threshold.is_none()) {
        let m = seg::threshold(&volume, hi);
        if keep_largest_component {
            largest_component(&m)
        } else {
            m
        }
    } else {
        let threshold = match (input.threshold, input.target_bv_tv) {
            (Some(t), _) => Threshold::Value(t),
            (None, Some(x)) => Threshold::BvTv(x),
            (None, None) => Threshold::Otsu,
        };
        seg::segment(
            &volume,
            &SegmentParams {
                sigma_voxels: input.sigma,
                threshold,
                keep_largest_component,
            },
        )?
    };
    pb.finish_and_clear();
    if mask.count() == 0 {
        bail!(
            "{}: segmentation left no bone voxels (try another --threshold)",
            input.volume.display()
        );
    }
    Ok(mask)
}

#[derive(Args, Debug)]
pub struct FeArgs {
    #[command(flatten)]
    pub input: VolumeInput,
    /// Boundary conditions: axial-free, axial-clamped, axial-confined or kubc.
    #[arg(long, value_parser = parse_bc)]
    pub bc: BoundaryCondition,
    /// Applied axial strain (top-face displacement / height; negative = compression).
    #[arg(long, default_value_t = -0.01, allow_negative_numbers = true)]
    pub strain: f64,
    /// Tissue Young's modulus (MPa).
    #[arg(long, default_value_t = 10_000.0)]
    pub e_mpa: f64,
    /// Tissue Poisson's ratio.
    #[arg(long, default_value_t = 0.3)]
    pub nu: f64,
    /// Relative residual at which CG stops.
    #[arg(long, default_value_t = 1e-8)]
    pub tol: f64,
    /// Preconditioner: multigrid (default) or jacobi.
    #[arg(long, default_value = "multigrid", value_parser = ["multigrid", "jacobi"])]
    pub preconditioner: String,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
}

fn parse_bc(s: &str) -> std::result::Result<BoundaryCondition, String> {
    BoundaryCondition::parse(s).ok_or_else(|| {
        format!(
            "unknown boundary condition `{s}` (axial-free, axial-clamped, axial-confined, kubc)"
        )
    })
}

pub fn fe(args: &FeArgs) -> Result<()> {
    let mask = load_mask(&args.input)?;
    let material = Material {
        young_modulus_mpa: args.e_mpa,
        poisson_ratio: args.nu,
    };
    let params = SolverParams {
        tolerance: args.tol,
        preconditioner: if args.preconditioner == "jacobi" {
            Preconditioner::Jacobi
        } else {
            Preconditioner::Multigrid(MultigridParams::default())
        },
        ..Default::default()
    };
    let pb = spinner("solving");
    let report = |p: &SolverProgress| {
        pb.set_message(format!(
            "CG iteration {}, relative residual {:.2e}",
            p.iteration, p.relative_residual
        ))
    };
    let control = SolveControl {
        progress: Some(&report),
        ..Default::default()
    };
    let out = if args.bc == BoundaryCondition::Kubc {
        let sol = fe::solve_kubc(&mask, &material, &params, &control);
        pb.finish_and_clear();
        let sol = sol.with_context(|| format!("micro-FE of {}", args.input.volume.display()))?;
        let c = nalgebra::Matrix6::from_fn(|i, j| sol.stiffness_mpa[i][j]);
        let e_z = c
            .try_inverse()
            .map(|s| 1.0 / s[(2, 2)])
            .context("the apparent stiffness matrix is singular")?;
        json!({
            "bc": args.bc.name(),
            "dofs": sol.dofs,
            "elements": sol.elements,
            "iterations": sol.iterations.iter().sum::<usize>(),
            "iterations_per_case": sol.iterations,
            "residual": sol.relative_residuals.iter().cloned().fold(0.0, f64::max),
            "reaction_force_n": null,
            "e_app_mpa": e_z,
            "strain_energy_mj": null,
            "stiffness_mpa": sol.stiffness_mpa,
            "bv_tv": mask.bv_tv(),
            "seconds": sol.seconds,
        })
    } else {
        let load = AxialLoad {
            bc: args.bc,
            strain: args.strain,
        };
        let sol = fe::solve_axial(&mask, &material, &load, &params, &control);
        pb.finish_and_clear();
        let sol = sol.with_context(|| format!("micro-FE of {}", args.input.volume.display()))?;
        json!({
            "bc": args.bc.name(),
            "dofs": sol.dofs,
            "elements": sol.elements,
            "removed_elements": sol.removed_elements,
            "iterations": sol.iterations,
            "residual": sol.relative_residual,
            "reaction_force_n": sol.reaction_force_n,
            "e_app_mpa": sol.e_app_mpa,
            "strain_energy_mj": sol.strain_energy_mj,
            "bv_tv": mask.bv_tv(),
            "multigrid_levels": sol.levels,
            "solver_memory_bytes": sol.solver_memory_bytes,
            "setup_seconds": sol.setup_seconds,
            "solve_seconds": sol.solve_seconds,
            "seconds": sol.seconds,
        })
    };
    if args.json {
        println!("{out}");
    } else {
        let g = |k: &str| out[k].clone();
        println!("micro-FE of {} ({})", args.input.volume.display(), args.bc);
        println!(
            "  {} DOFs, {} elements, BV/TV {:.4}",
            g("dofs"),
            g("elements"),
            mask.bv_tv()
        );
        println!(
            "  {} CG iterations, relative residual {:.2e}",
            g("iterations"),
            out["residual"].as_f64().unwrap_or(f64::NAN)
        );
        if let Some(f) = out["reaction_force_n"].as_f64() {
            println!("  reaction force {f:.6} N");
            println!(
                "  strain energy {:.6e} mJ",
                out["strain_energy_mj"].as_f64().unwrap_or(f64::NAN)
            );
        }
        println!(
            "  apparent modulus {:.3} MPa",
            out["e_app_mpa"].as_f64().unwrap_or(f64::NAN)
        );
        if let Some(c) = out.get("stiffness_mpa") {
            println!("  apparent stiffness (MPa, Voigt xx yy zz yz xz xy):");
            for row in c.as_array().into_iter().flatten() {
                let cells: Vec<String> = row
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| format!("{:10.1}", v.as_f64().unwrap_or(f64::NAN)))
                    .collect();
                println!("    {}", cells.join(" "));
            }
        }
        println!("  {:.3} s", out["seconds"].as_f64().unwrap_or(f64::NAN));
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct MorphArgs {
    #[command(flatten)]
    pub input: VolumeInput,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
}

pub fn morph(args: &MorphArgs) -> Result<()> {
    let mask = load_mask(&args.input)?;
    let pb = spinner("morphometry");
    let m = morph::morphometry(&mask, &MorphParams::default());
    pb.finish_and_clear();
    let m = m.with_context(|| format!("morphometry of {}", args.input.volume.display()))?;
    if args.json {
        println!("{}", serde_json::to_string(&m)?);
    } else {
        println!("morphometry of {}", args.input.volume.display());
        println!("  BV/TV   {:.4}", m.bv_tv);
        println!("  BS/BV   {:.3} /mm", m.bs_bv_per_mm);
        println!("  Tb.Th   {:.4} ± {:.4} mm", m.tb_th_mm, m.tb_th_sd_mm);
        println!("  Tb.Sp   {:.4} ± {:.4} mm", m.tb_sp_mm, m.tb_sp_sd_mm);
        println!("  Tb.N    {:.3} /mm", m.tb_n_per_mm);
        println!("  Conn.D  {:.3} /mm³", m.conn_d_per_mm3);
        println!("  DA      {:.3}", m.da);
        println!("  SMI     {:.3}", m.smi);
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct MeshArgs {
    #[command(flatten)]
    pub input: VolumeInput,
    /// Output file: .stl, .ply, .obj or .vtk (PLY and VTK carry the scalar fields).
    #[arg(long)]
    pub out: PathBuf,
    /// Coarsening step (1 = full resolution).
    #[arg(long, default_value_t = 1)]
    pub step: usize,
    /// Gaussian smoothing of the surface, sigma in voxels (0 = binary marching cubes).
    #[arg(long, default_value_t = 0.0)]
    pub smooth: f64,
    /// Solve axial-clamped compression (ε = −1 %, E = 10 GPa, ν = 0.3) and attach the strain
    /// energy density (`sed_mpa`) to the vertices.
    #[arg(long)]
    pub with_sed: bool,
}

pub fn mesh(args: &MeshArgs) -> Result<()> {
    let mask = load_mask(&args.input)?;
    let pb = spinner("extracting the surface");
    let mut surface = mesh::extract_surface(
        &mask,
        &ExtractParams {
            smoothing_sigma_voxels: args.smooth,
            step: args.step.max(1),
            ..Default::default()
        },
    );
    if args.with_sed {
        pb.set_message("solving micro-FE for the SED field");
        let sol = fe::solve_axial(
            &mask,
            &Material::default(),
            &AxialLoad {
                bc: BoundaryCondition::AxialClamped,
                strain: -0.01,
            },
            &SolverParams::default(),
            &SolveControl::default(),
        )
        .with_context(|| format!("micro-FE of {}", args.input.volume.display()))?;
        let values = mesh::sample_voxel_field(&surface, &mask.grid, &mask, &sol.sed_mpa, "sed_mpa");
        surface.scalars.push(("sed_mpa".into(), values));
    }
    pb.set_message(format!("writing {}", args.out.display()));
    mesh::write_mesh(&surface, &args.out)?;
    pb.finish_and_clear();
    println!(
        "wrote {} ({} vertices, {} triangles)",
        args.out.display(),
        surface.vertex_count(),
        surface.triangle_count()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct SegmentArgs {
    #[command(flatten)]
    pub input: VolumeInput,
    /// Output `.json` sidecar (with `.raw` beside it), `.nii` or `.nii.gz`.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn segment(args: &SegmentArgs) -> Result<()> {
    let mask = load_mask(&args.input)?;
    save_volume(&mask.to_volume(), &args.out)?;
    let d = mask.dims();
    println!(
        "wrote {} ({}×{}×{}, BV/TV {:.4})",
        args.out.display(),
        d.nx,
        d.ny,
        d.nz,
        mask.bv_tv()
    );
    Ok(())
}
