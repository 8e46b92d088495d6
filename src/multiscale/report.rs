//! `report.md` of a multiscale run, with its plots: BMD against days (the macroscale), BV/TV
//! target and reached against days, and the drift of the morphometry and of the apparent
//! modulus against the original.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::store::{RunRecord, StoreError};
use super::{Checkpoint, RecoveryMetrics};
use crate::atomic::write_bytes_atomic;
use crate::plot::{LineChart, Series};
use crate::remodel::output::{OutputError, phase_bands, write_bmd_plot};
use crate::remodel::scenario::Scenario;
use crate::remodel::simulation::DayRecord;

fn plot_error(path: &Path, source: crate::plot::PlotError) -> StoreError {
    StoreError::Output(OutputError::Plot {
        path: path.to_path_buf(),
        source,
    })
}

/// BV/TV target and reached at every checkpoint.
pub fn write_bv_tv_plot(
    path: &Path,
    scenario: &Scenario,
    checkpoints: &[Checkpoint],
) -> Result<(), StoreError> {
    let pts = |f: fn(&Checkpoint) -> f64| -> Vec<(f64, f64)> {
        checkpoints.iter().map(|c| (c.day as f64, f(c))).collect()
    };
    LineChart {
        title: format!("{}: trabecular BV/TV of the microstructure", scenario.name),
        x_label: "time (day)".into(),
        y_label: "BV/TV".into(),
        series: vec![
            // The target is drawn last, dashed, so it shows where the two coincide.
            Series::new("reached", [31, 119, 180], pts(|c| c.bv_tv)),
            Series::new("target (from BMD)", [40, 40, 40], pts(|c| c.target_bv_tv)).dashed(),
        ],
        bands: phase_bands(scenario),
        zero_line: false,
    }
    .write_png(path, 1100, 650)
    .map_err(|e| plot_error(path, e))
}

/// % change against the original of Tb.Th, Tb.Sp, Tb.N, Conn.D, SMI, DA and E_app.
pub fn write_morphometry_plot(
    path: &Path,
    scenario: &Scenario,
    checkpoints: &[Checkpoint],
) -> Result<(), StoreError> {
    let first = &checkpoints[0];
    let drift = |f: fn(&Checkpoint) -> f64| -> Vec<(f64, f64)> {
        let base = f(first);
        checkpoints
            .iter()
            .map(|c| {
                let pct = if base != 0.0 {
                    100.0 * (f(c) / base - 1.0)
                } else {
                    0.0
                };
                (c.day as f64, pct)
            })
            .collect()
    };
    LineChart {
        title: format!("{}: microstructure against day 0", scenario.name),
        x_label: "time (day)".into(),
        y_label: "change (%)".into(),
        series: vec![
            Series::new("BV/TV", [31, 119, 180], drift(|c| c.bv_tv)),
            Series::new("Tb.Th", [255, 127, 14], drift(|c| c.morphometry.tb_th_mm)),
            Series::new("Tb.Sp", [44, 160, 44], drift(|c| c.morphometry.tb_sp_mm)),
            Series::new("Tb.N", [214, 39, 40], drift(|c| c.morphometry.tb_n_per_mm)),
            Series::new(
                "Conn.D",
                [148, 103, 189],
                drift(|c| c.morphometry.conn_d_per_mm3),
            ),
            Series::new("SMI", [140, 86, 75], drift(|c| c.morphometry.smi)).dashed(),
            Series::new("DA", [227, 119, 194], drift(|c| c.morphometry.da)).dashed(),
            Series::new("E_app", [0, 0, 0], drift(|c| c.e_app_mpa)),
        ],
        bands: phase_bands(scenario),
        zero_line: true,
    }
    .write_png(path, 1100, 650)
    .map_err(|e| plot_error(path, e))
}

/// Writes `bmd.png`, `bv_tv.png`, `morphometry.png` and `report.md` into `dir`; returns the
/// paths written.
pub fn write_report(
    dir: &Path,
    scenario: &Scenario,
    record: &RunRecord,
    series: &[DayRecord],
    recovery: &RecoveryMetrics,
    seconds: f64,
) -> Result<Vec<PathBuf>, StoreError> {
    let bmd = dir.join("bmd.png");
    write_bmd_plot(&bmd, scenario, series)?;
    let bv_tv = dir.join("bv_tv.png");
    write_bv_tv_plot(&bv_tv, scenario, &record.checkpoints)?;
    let morph = dir.join("morphometry.png");
    write_morphometry_plot(&morph, scenario, &record.checkpoints)?;

    let mut md = String::new();
    let _ = writeln!(md, "# Multiscale run: {}\n", scenario.name);
    let _ = writeln!(
        md,
        "- Microstructure: {} ({}×{}×{} voxels of {} mm).",
        record.microstructure,
        record.dims[0],
        record.dims[1],
        record.dims[2],
        record.voxel_size_mm[0]
    );
    let _ = writeln!(
        md,
        "- BMD → BV/TV mapping: `{}`; a checkpoint every {} days and at every phase end; {} adaptation.",
        record.mapping,
        record.checkpoint_every_days,
        if record.coupled {
            "coupled (BMU refill of the original's cavities)"
        } else {
            "plain mechanical"
        }
    );
    let fe: usize = record.checkpoints.iter().map(|c| c.fe_solves).sum();
    let _ = writeln!(
        md,
        "- {} checkpoints, {fe} micro-FE solves; {seconds:.0} s in this session.\n",
        record.checkpoints.len()
    );
    let _ = writeln!(md, "## BMD (macroscale)\n\n![BMD](bmd.png)\n");
    let _ = writeln!(
        md,
        "## BV/TV of the microstructure\n\n![BV/TV](bv_tv.png)\n"
    );
    let _ = writeln!(
        md,
        "## Morphometry and apparent modulus against day 0\n\n![morphometry](morphometry.png)\n"
    );
    let _ = writeln!(md, "## Checkpoints\n");
    let _ = writeln!(
        md,
        "| day | phase | trab. BMD % | target BV/TV | BV/TV | Tb.Th mm | Tb.Sp mm | Tb.N /mm | Conn.D /mm³ | SMI | DA | E_app MPa | Dice vs day 0 | FE solves |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for c in &record.checkpoints {
        let m = &c.morphometry;
        let _ = writeln!(
            md,
            "| {} | {} | {:+.2} | {:.4} | {:.4} | {:.4} | {:.4} | {:.3} | {:.2} | {:.3} | {:.3} | {:.1} | {:.3} | {} |",
            c.day,
            c.phase,
            c.bmd_trabecular_pct,
            c.target_bv_tv,
            c.bv_tv,
            m.tb_th_mm,
            m.tb_sp_mm,
            m.tb_n_per_mm,
            m.conn_d_per_mm3,
            m.smi,
            m.da,
            c.e_app_mpa,
            c.dice_vs_original,
            c.fe_solves
        );
    }
    let r = recovery;
    let _ = writeln!(md, "\n## End of the run against day 0 (recovery)\n");
    let _ = writeln!(
        md,
        "Lowest BV/TV {:.4} at day {}; at day {} BV/TV {:.4} against {:.4} ({:+.2} points), Dice {:.3}.\n",
        r.lowest_bv_tv,
        r.lowest_day,
        r.day,
        r.bv_tv_end,
        r.bv_tv_original,
        r.bv_tv_difference_points,
        r.dice_vs_original
    );
    let _ = writeln!(md, "| index | day 0 | end | change % |\n|---|---|---|---|");
    for c in &r.indices {
        let _ = writeln!(
            md,
            "| {} | {:.4} | {:.4} | {:+.2} |",
            c.name, c.original, c.end, c.change_pct
        );
    }
    let _ = writeln!(
        md,
        "\nBounds: BV/TV within ±{} points, Dice ≥ {}, every index within ±{} %: {}.",
        r.bounds.bv_tv_points,
        r.bounds.min_dice,
        r.bounds.relative_pct,
        if r.within_bounds {
            "all met".to_string()
        } else {
            format!("not met ({})", r.failed.join("; "))
        }
    );
    if !record.finished {
        let _ = writeln!(
            md,
            "\nThe run is not finished: {} of {} checkpoints are done.",
            record.checkpoints.len() - 1,
            record.schedule.len()
        );
    }
    let report = dir.join("report.md");
    write_bytes_atomic(&report, md.as_bytes()).map_err(|source| StoreError::Io {
        path: report.clone(),
        source,
    })?;
    Ok(vec![bmd, bv_tv, morph, report])
}
