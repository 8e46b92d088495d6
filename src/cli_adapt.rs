//! `osteolab adapt`: adapts a trabecular structure to a BV/TV target by SED-driven level-set
//! shape optimisation (issue 5 §1; the method is documented in `osteolab::shapeopt`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args};
use serde_json::json;

use osteolab::atomic::write_bytes_atomic;
use osteolab::fe::{AxialLoad, BoundaryCondition, Material, SolverParams};
use osteolab::shapeopt::{AdaptControl, AdaptParams, StepReport, adapt, adapt_with_reference};
use osteolab::volume::save_volume;
use osteolab::volume::segment::{VoxelBox, crop_mask, largest_component};
use osteolab::volume::{BoneMask, Dims};

use crate::cli::{VolumeInput, load_mask};

#[derive(Args, Debug)]
pub struct AdaptArgs {
    /// Volume: a `.json` sidecar, `.nii[.gz]`, or a folder of DICOM or PNG/TIFF slices.
    pub volume: PathBuf,
    /// The BV/TV to reach (between 50 % and 150 % of the start value), e.g. 0.2.
    #[arg(long, value_name = "X")]
    pub target_bv_tv: f64,
    /// Homeostatic reference structure (e.g. the pre-flight volume this one was adapted from),
    /// read as it is (no --downsample or --crop; --threshold and --sigma apply to a grey one)
    /// and on the grid of the structure, e.g. the `start.json` that `--out` writes. With it,
    /// formation
    /// first refills the reference's resorption cavities (coupled BMU remodeling, Parfitt
    /// 1994), so an adaptation down and back up returns to the reference; without it, the
    /// adaptation is purely mechanical (see `osteolab::shapeopt`).
    #[arg(long, value_name = "VOLUME")]
    pub reference: Option<PathBuf>,
    /// Folder for the adapted mask (`adapted.json` + raw, uint8 0/255), the structure it was
    /// adapted from (`start.json`, after segmentation and crop: the reference for a later
    /// recovery) and `report.json`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Global threshold (bone = value >= T). Default: Otsu on the smoothed volume; volumes
    /// holding only two values are taken as already segmented.
    #[arg(long, value_name = "T")]
    pub threshold: Option<f64>,
    /// Gaussian smoothing before thresholding, sigma in voxels (grey volumes only).
    #[arg(long, default_value_t = 1.0, value_name = "VOXELS")]
    pub sigma: f64,
    /// Downsample the grey values by this integer factor (block mean) first.
    #[arg(long, default_value_t = 1, value_name = "F")]
    pub downsample: usize,
    /// Crop a centred cube of this edge (voxels) after segmentation (then keep its largest
    /// component).
    #[arg(long, value_name = "VOXELS")]
    pub crop: Option<usize>,
    /// Boundary condition of the load case: axial-free, axial-clamped or axial-confined.
    #[arg(long, default_value = "axial-free", value_parser = parse_axial_bc)]
    pub bc: BoundaryCondition,
    /// Axial strain of the load case (negative = compression).
    #[arg(long, default_value_t = -1e-3, allow_hyphen_values = true)]
    pub strain: f64,
    /// Tissue Young's modulus (MPa).
    #[arg(long, default_value_t = 10_000.0)]
    pub e_mpa: f64,
    /// Tissue Poisson ratio.
    #[arg(long, default_value_t = 0.3)]
    pub nu: f64,
    /// Relative residual of the FE solves.
    #[arg(long, default_value_t = 1e-5)]
    pub tol: f64,
    /// Most FE solves, the start structure's included.
    #[arg(long, default_value_t = 15)]
    pub max_fe_solves: usize,
    /// Stimulus gain: the SED-driven part of the surface speed spans ±G voxels per move.
    #[arg(long, default_value_t = 0.5, value_name = "G")]
    pub gain_voxels: f64,
    /// Full morphometry after every move (start and end are always measured).
    #[arg(long, action = ArgAction::Set, default_value_t = true, value_name = "BOOL")]
    pub step_morphometry: bool,
}

fn parse_axial_bc(s: &str) -> std::result::Result<BoundaryCondition, String> {
    match BoundaryCondition::parse(s) {
        Some(BoundaryCondition::Kubc) | None => Err(format!(
            "`{s}` is not an axial boundary condition (axial-free, axial-clamped, axial-confined)"
        )),
        Some(bc) => Ok(bc),
    }
}

/// The centred `edge`³ crop of `mask`, largest component kept.
pub fn centred_crop(mask: &BoneMask, edge: usize) -> Result<BoneMask> {
    let d = mask.dims();
    if edge == 0 || edge > d.nx || edge > d.ny || edge > d.nz {
        bail!(
            "--crop {edge} does not fit the segmented volume of {:?} voxels",
            d.as_array()
        );
    }
    let region = VoxelBox {
        min: [(d.nx - edge) / 2, (d.ny - edge) / 2, (d.nz - edge) / 2],
        dims: Dims::new(edge, edge, edge),
    };
    Ok(largest_component(&crop_mask(mask, &region)?))
}

fn step_line(s: &StepReport) -> String {
    let mut line = format!(
        "move {:>2}: BV/TV {:.4} (step target {:.4}), λ {:+.3} voxels, islands removed {}, cavity voxels refilled {}, E_app {:.1} MPa, {} FE solves ({} CG iterations)",
        s.moves,
        s.bv_tv,
        s.step_target_bv_tv,
        s.lambda_voxels,
        s.islands_removed,
        s.refilled_voxels,
        s.e_app_mpa,
        s.fe_solves,
        s.fe_iterations
    );
    if let Some(m) = s.morphometry {
        line += &format!(
            "\n          Tb.Th {:.4} mm, Tb.Sp {:.4} mm, Tb.N {:.3}/mm, Conn.D {:.2}/mm³, SMI {:.3}, DA {:.3}",
            m.tb_th_mm, m.tb_sp_mm, m.tb_n_per_mm, m.conn_d_per_mm3, m.smi, m.da
        );
    }
    line
}

pub fn adapt_cmd(args: &AdaptArgs) -> Result<()> {
    let input = VolumeInput {
        volume: args.volume.clone(),
        threshold: args.threshold,
        target_bv_tv: None,
        sigma: args.sigma,
        downsample: args.downsample,
        keep_all_components: false,
    };
    let mut mask = load_mask(&input)?;
    if let Some(edge) = args.crop {
        mask = centred_crop(&mask, edge)?;
    }
    let reference = match &args.reference {
        Some(path) => {
            let r = load_mask(&VolumeInput {
                volume: path.clone(),
                downsample: 1,
                ..input.clone()
            })
            .with_context(|| format!("reading the reference {}", path.display()))?;
            Some(r)
        }
        None => None,
    };
    let params = AdaptParams {
        material: Material {
            young_modulus_mpa: args.e_mpa,
            poisson_ratio: args.nu,
        },
        load: AxialLoad {
            bc: args.bc,
            strain: args.strain,
        },
        solver: SolverParams {
            tolerance: args.tol,
            ..Default::default()
        },
        max_fe_solves: args.max_fe_solves,
        gain_voxels: args.gain_voxels,
        step_morphometry: args.step_morphometry,
        ..Default::default()
    };
    let progress = |s: &StepReport| eprintln!("{}", step_line(s));
    let control = AdaptControl {
        cancel: None,
        progress: Some(&progress),
        known_start: None,
    };
    let a = match &reference {
        Some(r) => adapt_with_reference(&mask, r, args.target_bv_tv, &params, &control),
        None => adapt(&mask, args.target_bv_tv, &params, &control),
    }
    .with_context(|| format!("adapting {}", args.volume.display()))?;
    let mut report = json!({
        "volume": args.volume.display().to_string(),
        "dims": mask.dims().as_array(),
        "voxel_size_mm": mask.grid.voxel_size_mm,
        "bc": args.bc.name(),
        "strain": args.strain,
        "target_bv_tv": a.target_bv_tv,
        "bv_tv_start": a.bv_tv_start,
        "bv_tv_end": a.bv_tv_end,
        "fe_solves": a.fe_solves,
        "islands": a.islands,
        "dice_vs_start": a.dice_vs_start,
        "reference": args.reference.as_ref().map(|p| p.display().to_string()),
        "dice_vs_reference": a.dice_vs_reference,
        "e_app_start_mpa": a.e_app_start_mpa,
        "e_app_end_mpa": a.e_app_end_mpa,
        "morphometry_start": a.morphometry_start,
        "morphometry_end": a.morphometry_end,
        "steps": a.steps,
        "seconds": a.seconds,
        "adapted_volume": null,
        "start_volume": null,
    });
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the output folder {}", dir.display()))?;
        let volume_path = dir.join("adapted.json");
        save_volume(&a.mask.to_volume(), &volume_path)
            .with_context(|| format!("writing {}", volume_path.display()))?;
        report["adapted_volume"] = json!(volume_path.display().to_string());
        let start_path = dir.join("start.json");
        save_volume(&mask.to_volume(), &start_path)
            .with_context(|| format!("writing {}", start_path.display()))?;
        report["start_volume"] = json!(start_path.display().to_string());
        let report_path = dir.join("report.json");
        let text = serde_json::to_string_pretty(&report)?;
        write_bytes_atomic(&report_path, text.as_bytes())
            .with_context(|| format!("writing {}", report_path.display()))?;
    }
    if args.json {
        println!("{report}");
    } else {
        let ms = &a.morphometry_start;
        let me = &a.morphometry_end;
        println!(
            "adapted {} ({:?} voxels at {:.4} mm) to BV/TV {:.4}",
            args.volume.display(),
            mask.dims().as_array(),
            mask.grid.voxel_size_mm[0],
            a.target_bv_tv
        );
        println!(
            "  BV/TV {:.4} -> {:.4} in {} FE solves, {} island voxels, Dice vs start {:.3}",
            a.bv_tv_start, a.bv_tv_end, a.fe_solves, a.islands, a.dice_vs_start
        );
        if let Some(d) = a.dice_vs_reference {
            println!("  Dice vs reference {d:.3}");
        }
        println!(
            "  E_app {:.1} -> {:.1} MPa; Tb.Th {:.4} -> {:.4} mm, Tb.Sp {:.4} -> {:.4} mm, Conn.D {:.2} -> {:.2} /mm³, SMI {:.3} -> {:.3}, DA {:.3} -> {:.3}",
            a.e_app_start_mpa,
            a.e_app_end_mpa,
            ms.tb_th_mm,
            me.tb_th_mm,
            ms.tb_sp_mm,
            me.tb_sp_mm,
            ms.conn_d_per_mm3,
            me.conn_d_per_mm3,
            ms.smi,
            me.smi,
            ms.da,
            me.da
        );
        if let Some(p) = report["adapted_volume"].as_str() {
            println!("  wrote {p}");
        }
        println!("  {:.2} s", a.seconds);
    }
    Ok(())
}
