//! How close the structure at the end of a run is to the original (issue 5 §2): after a loss
//! and a recovery back to the baseline BV/TV, BV/TV within 0.5 points, Dice ≥ 0.8, and
//! morphometry and apparent modulus within 5 %.

use serde::Serialize;

use super::Checkpoint;

/// The bounds a recovered structure is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RecoveryBounds {
    /// Largest |BV/TV difference| in percentage points.
    pub bv_tv_points: f64,
    /// Smallest Dice coefficient against the original.
    pub min_dice: f64,
    /// Largest |relative change| of each morphometric index and of E_app (%).
    pub relative_pct: f64,
}

impl Default for RecoveryBounds {
    fn default() -> Self {
        Self {
            bv_tv_points: 0.5,
            min_dice: 0.8,
            relative_pct: 5.0,
        }
    }
}

/// One index, original against the end of the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IndexChange {
    pub name: &'static str,
    pub original: f64,
    pub end: f64,
    pub change_pct: f64,
}

/// The last checkpoint against the original (checkpoint 0).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecoveryMetrics {
    /// Day of the last checkpoint.
    pub day: u32,
    /// The checkpoint with the least bone (the end of the loss).
    pub lowest_day: u32,
    pub lowest_bv_tv: f64,
    pub bv_tv_original: f64,
    pub bv_tv_end: f64,
    /// BV/TV end − original, in percentage points.
    pub bv_tv_difference_points: f64,
    pub dice_vs_original: f64,
    /// Tb.Th, Tb.Sp, Tb.N, Conn.D, SMI, DA and E_app.
    pub indices: Vec<IndexChange>,
    pub bounds: RecoveryBounds,
    /// The bounds that are not met, in words (empty when all are).
    pub failed: Vec<String>,
    pub within_bounds: bool,
}

/// Compares the last of `checkpoints` with the first (the original). `checkpoints` must not
/// be empty.
pub fn recovery_metrics(checkpoints: &[Checkpoint], bounds: &RecoveryBounds) -> RecoveryMetrics {
    let first = &checkpoints[0];
    let last = checkpoints.last().expect("checkpoint 0 is always present");
    let lowest = checkpoints
        .iter()
        .min_by(|a, b| a.bv_tv.total_cmp(&b.bv_tv))
        .expect("checkpoint 0 is always present");
    let (m0, m1) = (&first.morphometry, &last.morphometry);
    let change = |name, original: f64, end: f64| IndexChange {
        name,
        original,
        end,
        change_pct: if original != 0.0 {
            100.0 * (end / original - 1.0)
        } else {
            0.0
        },
    };
    let indices = vec![
        change("Tb.Th", m0.tb_th_mm, m1.tb_th_mm),
        change("Tb.Sp", m0.tb_sp_mm, m1.tb_sp_mm),
        change("Tb.N", m0.tb_n_per_mm, m1.tb_n_per_mm),
        change("Conn.D", m0.conn_d_per_mm3, m1.conn_d_per_mm3),
        change("SMI", m0.smi, m1.smi),
        change("DA", m0.da, m1.da),
        change("E_app", first.e_app_mpa, last.e_app_mpa),
    ];
    let difference_points = 100.0 * (last.bv_tv - first.bv_tv);
    let mut failed = Vec::new();
    if difference_points.abs() > bounds.bv_tv_points {
        failed.push(format!(
            "BV/TV differs by {difference_points:+.2} points (bound ±{})",
            bounds.bv_tv_points
        ));
    }
    if last.dice_vs_original < bounds.min_dice {
        failed.push(format!(
            "Dice {:.3} < {}",
            last.dice_vs_original, bounds.min_dice
        ));
    }
    for c in &indices {
        if c.change_pct.is_nan() || c.change_pct.abs() > bounds.relative_pct {
            failed.push(format!(
                "{} changed by {:+.1} % (bound ±{} %)",
                c.name, c.change_pct, bounds.relative_pct
            ));
        }
    }
    RecoveryMetrics {
        day: last.day,
        lowest_day: lowest.day,
        lowest_bv_tv: lowest.bv_tv,
        bv_tv_original: first.bv_tv,
        bv_tv_end: last.bv_tv,
        bv_tv_difference_points: difference_points,
        dice_vs_original: last.dice_vs_original,
        indices,
        bounds: *bounds,
        within_bounds: failed.is_empty(),
        failed,
    }
}
