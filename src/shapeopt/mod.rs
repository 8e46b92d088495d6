//! Microscale adaptation of a trabecular structure to a BV/TV target (design §1.3, §2 "Shape
//! optimisation"): level-set shape optimisation of the bone surface driven by the micro-FE
//! strain energy density.
//!
//! The method, after Osher & Sethian (1988) for the level set, Allaire, Jouve & Toader (2004,
//! J Comput Phys 194:363) for level-set shape optimisation under a volume constraint, and
//! Huiskes et al. (2000, Nature 405:704) / Adachi et al. (2001, J Biomech Eng 123:403) for
//! SED-driven surface remodeling:
//!
//! 1. φ = signed distance of the bone surface on the voxel grid ([`levelset`]).
//! 2. Micro-FE of the structure under the load case (axial compression by default).
//! 3. Stimulus s ∈ [−1, 1] from the element SED, smoothed and extended into a narrow band
//!    around the surface ([`velocity`]).
//! 4. Move: φ ← φ + λ − gain·s (one-sided: resorption only towards a smaller target,
//!    formation only towards a larger one), with the Lagrange multiplier λ set so that the
//!    bone count `{φ < 0}` hits this move's volume target exactly; bone cut off from the main
//!    6-connected component is removed and its volume regrown on the main one
//!    ([`levelset::move_to_count`]).
//! 5. Every `reinit_every_moves` moves φ is rebuilt as the exact signed distance of the mask.
//! 6. FE re-solved, warm-started from the previous displacements mapped by grid node
//!    ([`warm`]); back to 3 until the target is met.
//!
//! Step planning. The uniform part of the motion, λ, is limited to `max_shift_voxels` per move
//! (the volume a move may change is about `max_shift_voxels` × the number of surface voxels)
//! and the stimulus part to `gain_voxels`, so that with the defaults (½ + ½) no point of the
//! surface moves more than one voxel per move (the CFL condition of an explicit level-set
//! update). The path from the start to the target is split into the fewest moves this allows,
//! at least `min_moves`, and at most `max_fe_solves − 1` (the first solve is of the start
//! structure); when the budget is too small for the limit, the moves grow instead, so the
//! target is always reached within the budget. Each move's volume target is the remaining
//! change divided by the moves left, so the last lands on the target to the voxel.
//!
//! Two modes.
//!
//! - Plain mechanical adaptation ([`adapt`]): every move is chosen by the SED stimulus alone.
//!   A loss resorbs the least-loaded surfaces, a gain forms on the most-loaded ones. This is
//!   the right model for one adaptation from a structure taken as homeostatic, but it is not
//!   reversible: down and back up, resorption has thinned and perforated the least-loaded
//!   trabeculae while formation thickened the most-loaded ones, so the structure ends aligned
//!   with the load (measured on the 64³ micro-CT cube, −10 % and back: DA 0.053 → 0.160,
//!   E_app +75 %).
//! - Coupled remodeling towards a reference ([`adapt_with_reference`]): the reference is the
//!   homeostatic structure the bone started from (in the multiscale run, the pre-flight
//!   structure at every checkpoint). Resorption and formation are coupled in space through the
//!   basic multicellular unit (BMU): formation takes place in the resorption cavities that the
//!   same BMUs dug (Parfitt 1994, J Cell Biochem 55:273; Frost 1964, "The laws of bone
//!   structure"). So in a gain, formation first refills the voxels that are bone in the
//!   reference and marrow now, the most mechanically stimulated and nearest the surface first
//!   (the same ψ order as a plain move), and only after all of them are refilled does it add
//!   bone elsewhere by the SED stimulus ([`levelset::move_to_count_refilling`]). A loss is the
//!   plain mechanical one. A structure adapted down and back up to the reference volume in
//!   this mode returns to the reference: every voxel the loss removed is a cavity of the
//!   reference, and the recovery refills exactly that many.

pub mod levelset;
pub mod velocity;
pub mod warm;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::fe::{
    AxialLoad, AxialSolution, BoundaryCondition, FeError, Material, SolveControl, SolverParams,
    solve_axial,
};
use crate::morph::{MorphError, MorphParams, Morphometry, morphometry};
use crate::volume::BoneMask;

pub use levelset::{
    dice, island_voxels, move_to_count, move_to_count_refilling, signed_distance,
    surface_voxel_count,
};
pub use velocity::surface_stimulus;

/// The target may lie between these fractions of the start BV/TV (issue 5 §1).
pub const TARGET_RATIO_RANGE: (f64, f64) = (0.5, 1.5);

/// Errors of the adaptation.
#[derive(Debug, thiserror::Error)]
pub enum ShapeOptError {
    #[error("shape optimisation: invalid parameter: {0}")]
    InvalidParameter(String),
    #[error(
        "shape optimisation: target BV/TV {target:.4} is {ratio_percent:.1} % of the start value {start:.4}; it must lie between {min_percent:.0} % and {max_percent:.0} % of it"
    )]
    TargetOutOfRange {
        target: f64,
        start: f64,
        ratio_percent: f64,
        min_percent: f64,
        max_percent: f64,
    },
    #[error("shape optimisation: the start structure is unusable: {0}")]
    BadStart(String),
    #[error("shape optimisation: the reference structure is unusable: {0}")]
    BadReference(String),
    #[error("shape optimisation: micro-FE failed at move {moves}: {source}")]
    Fe {
        moves: usize,
        #[source]
        source: FeError,
    },
    #[error("shape optimisation: morphometry failed at move {moves}: {source}")]
    Morph {
        moves: usize,
        #[source]
        source: MorphError,
    },
    #[error("shape optimisation cancelled after {moves} moves")]
    Cancelled { moves: usize },
}

/// Parameters of [`adapt`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptParams {
    /// Tissue material of the micro-FE.
    pub material: Material,
    /// The load case (an axial condition; `kubc` has no single SED field and is refused).
    pub load: AxialLoad,
    /// Iterative solver settings. The stimulus needs far less than the default 1e-8: on the
    /// 64³ micro-CT cube, 1e-4, 1e-5 and 1e-6 move exactly the same voxels (Dice to the start
    /// 0.94855 for each), and E_app differs from its 1e-6 value by 2e-4 relative at 1e-4 and
    /// by 1e-5 at 1e-5. 1e-5 costs about a quarter fewer CG iterations than 1e-6.
    pub solver: SolverParams,
    /// Most FE solves, the first (start structure) included; at least 2.
    pub max_fe_solves: usize,
    /// Fewest surface moves for a change of volume, so the FE guides the path even for small
    /// changes; at least 1.
    pub min_moves: usize,
    /// Largest uniform surface shift λ per move, in voxels (see the module docs).
    pub max_shift_voxels: f64,
    /// Stimulus gain: the normal speed's stimulus part `gain·s` spans ±gain voxels per move.
    pub gain_voxels: f64,
    /// Gaussian σ (voxels) of the stimulus smoothing; 0 for none.
    pub smoothing_sigma_voxels: f64,
    /// Half-width (voxels) of the band around the surface where the stimulus is defined.
    pub band_voxels: f64,
    /// Rebuild φ as the exact signed distance of the mask every this many moves (0 = never).
    pub reinit_every_moves: usize,
    /// Compute the full morphometry after every move (it costs about as much as a 64³ FE
    /// solve); start and end are always computed.
    pub step_morphometry: bool,
    pub morph: MorphParams,
}

impl Default for AdaptParams {
    fn default() -> Self {
        Self {
            material: Material::default(),
            load: AxialLoad {
                bc: BoundaryCondition::AxialFree,
                strain: -1e-3,
            },
            solver: SolverParams {
                tolerance: 1e-5,
                ..Default::default()
            },
            max_fe_solves: 15,
            min_moves: 2,
            max_shift_voxels: 0.5,
            gain_voxels: 0.5,
            smoothing_sigma_voxels: 1.0,
            band_voxels: 2.0,
            reinit_every_moves: 3,
            step_morphometry: true,
            morph: MorphParams::default(),
        }
    }
}

impl AdaptParams {
    pub fn validate(&self) -> Result<(), ShapeOptError> {
        let bad = |m: String| Err(ShapeOptError::InvalidParameter(m));
        if self.load.bc == BoundaryCondition::Kubc {
            return bad("the load case must be axial (kubc gives no single SED field)".into());
        }
        if !(self.load.strain.is_finite() && self.load.strain != 0.0) {
            return bad(format!(
                "load strain must be finite and non-zero, got {}",
                self.load.strain
            ));
        }
        if self.max_fe_solves < 2 {
            return bad(format!(
                "max_fe_solves must be at least 2 (the start and one move), got {}",
                self.max_fe_solves
            ));
        }
        if self.min_moves < 1 || self.min_moves > self.max_fe_solves - 1 {
            return bad(format!(
                "min_moves must be between 1 and max_fe_solves - 1 = {}, got {}",
                self.max_fe_solves - 1,
                self.min_moves
            ));
        }
        let positive = [
            ("max_shift_voxels", self.max_shift_voxels),
            ("band_voxels", self.band_voxels),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{name} must be positive and finite, got {v}"));
            }
        }
        let non_negative = [
            ("gain_voxels", self.gain_voxels),
            ("smoothing_sigma_voxels", self.smoothing_sigma_voxels),
        ];
        for (name, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} must be finite and >= 0, got {v}"));
            }
        }
        Ok(())
    }
}

/// Cancellation and progress for [`adapt`].
#[derive(Clone, Copy, Default)]
pub struct AdaptControl<'a> {
    /// Checked before every move and inside every FE solve.
    pub cancel: Option<&'a AtomicBool>,
    /// Called with each step's report (the start state first, then after every move).
    pub progress: Option<&'a (dyn Fn(&StepReport) + Sync)>,
    /// The start structure's FE solution and morphometry, when the caller has them already
    /// (the [`Adaptation::end_state`] of the adaptation that produced this structure, with
    /// the same parameters): the first solve and the start morphometry are then skipped.
    pub known_start: Option<&'a KnownState>,
}

/// A structure's FE solution under the adaptation's load case and its morphometry.
#[derive(Clone, Debug)]
pub struct KnownState {
    pub solution: AxialSolution,
    pub morphometry: Morphometry,
}

/// The state after one move (move 0 = the start structure).
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub moves: usize,
    /// BV/TV after the move.
    pub bv_tv: f64,
    /// This move's BV/TV target (voxel count / total).
    pub step_target_bv_tv: f64,
    /// The Lagrange multiplier λ (voxels; positive = uniform resorption), 0 for the start.
    pub lambda_voxels: f64,
    /// Bone voxels cut off by the move and removed (their volume was regrown).
    pub islands_removed: usize,
    /// Voxels of the reference's resorption cavities refilled by this move (0 without a
    /// reference; see [`adapt_with_reference`]).
    pub refilled_voxels: usize,
    /// Apparent modulus of the structure after the move (MPa).
    pub e_app_mpa: f64,
    /// FE solves so far, this step's included.
    pub fe_solves: usize,
    /// CG iterations of this step's solve.
    pub fe_iterations: usize,
    pub fe_seconds: f64,
    /// Full morphometry, when `step_morphometry` (always for the start and the end).
    pub morphometry: Option<Morphometry>,
    /// Wall time since the adaptation started (s).
    pub seconds: f64,
}

/// The result of [`adapt`].
#[derive(Clone, Debug)]
pub struct Adaptation {
    pub mask: BoneMask,
    pub steps: Vec<StepReport>,
    pub target_bv_tv: f64,
    pub bv_tv_start: f64,
    pub bv_tv_end: f64,
    /// FE solves made (the start's solve is not counted when it was known).
    pub fe_solves: usize,
    /// Bone voxels outside the main 6-connected component at the end (0 by construction).
    pub islands: usize,
    pub dice_vs_start: f64,
    /// Dice of the result against the reference structure, in [`adapt_with_reference`].
    pub dice_vs_reference: Option<f64>,
    pub e_app_start_mpa: f64,
    pub e_app_end_mpa: f64,
    pub morphometry_start: Morphometry,
    pub morphometry_end: Morphometry,
    /// The end structure's solution and morphometry, to start a later adaptation from.
    pub end_state: KnownState,
    pub seconds: f64,
}

/// Adapts `mask` to `target_bv_tv` by SED-driven level-set moves: the plain mechanical mode
/// (see the module docs).
pub fn adapt(
    mask: &BoneMask,
    target_bv_tv: f64,
    params: &AdaptParams,
    control: &AdaptControl,
) -> Result<Adaptation, ShapeOptError> {
    adapt_inner(mask, None, target_bv_tv, params, control)
}

/// Adapts `mask` to `target_bv_tv` with formation coupled to the resorption cavities of the
/// homeostatic `reference` structure (Parfitt 1994; see the module docs). `reference` must be
/// on the grid of `mask`; `mask` may be the reference itself or a structure adapted from it.
pub fn adapt_with_reference(
    mask: &BoneMask,
    reference: &BoneMask,
    target_bv_tv: f64,
    params: &AdaptParams,
    control: &AdaptControl,
) -> Result<Adaptation, ShapeOptError> {
    if reference.dims() != mask.dims()
        || reference.grid.voxel_size_mm != mask.grid.voxel_size_mm
        || reference.voxels.len() != mask.voxels.len()
    {
        return Err(ShapeOptError::BadReference(format!(
            "its grid ({:?} voxels of {:?} mm) differs from the structure's ({:?} voxels of {:?} mm)",
            reference.dims().as_array(),
            reference.grid.voxel_size_mm,
            mask.dims().as_array(),
            mask.grid.voxel_size_mm
        )));
    }
    if reference.count() == 0 {
        return Err(ShapeOptError::BadReference("it holds no bone".into()));
    }
    adapt_inner(mask, Some(reference), target_bv_tv, params, control)
}

fn adapt_inner(
    mask: &BoneMask,
    reference: Option<&BoneMask>,
    target_bv_tv: f64,
    params: &AdaptParams,
    control: &AdaptControl,
) -> Result<Adaptation, ShapeOptError> {
    let t0 = Instant::now();
    params.validate()?;
    let dims = mask.dims();
    if dims.checked_len() != Some(mask.voxels.len()) || dims.is_empty() {
        return Err(ShapeOptError::BadStart(format!(
            "{} voxels for dims {:?}",
            mask.voxels.len(),
            dims.as_array()
        )));
    }
    let total = mask.voxels.len();
    let start_count = mask.count();
    if start_count == 0 || start_count == total {
        return Err(ShapeOptError::BadStart(
            "it must hold both bone and marrow".into(),
        ));
    }
    let bv_tv_start = mask.bv_tv();
    if !(target_bv_tv.is_finite() && target_bv_tv > 0.0 && target_bv_tv < 1.0) {
        return Err(ShapeOptError::InvalidParameter(format!(
            "target BV/TV must be a number in (0, 1), got {target_bv_tv}"
        )));
    }
    let ratio = target_bv_tv / bv_tv_start;
    if !(TARGET_RATIO_RANGE.0..=TARGET_RATIO_RANGE.1).contains(&ratio) {
        return Err(ShapeOptError::TargetOutOfRange {
            target: target_bv_tv,
            start: bv_tv_start,
            ratio_percent: 100.0 * ratio,
            min_percent: 100.0 * TARGET_RATIO_RANGE.0,
            max_percent: 100.0 * TARGET_RATIO_RANGE.1,
        });
    }
    let target_count = ((target_bv_tv * total as f64).round() as usize).clamp(1, total - 1);
    let cancelled = || control.cancel.is_some_and(|c| c.load(Ordering::Relaxed));
    let morph_at = |m: &BoneMask, moves: usize| {
        morphometry(m, &params.morph).map_err(|source| ShapeOptError::Morph { moves, source })
    };
    let node_dims = [dims.nx + 1, dims.ny + 1, dims.nz + 1];

    let mut current = mask.clone();
    let mut phi = signed_distance(&current);
    let mut fe_solves = 0;
    let solve = |m: &BoneMask, warm: Option<&[f64]>, moves: usize| {
        let fe_control = SolveControl {
            cancel: control.cancel,
            progress: None,
            warm_start: warm,
        };
        solve_axial(
            m,
            &params.material,
            &params.load,
            &params.solver,
            &fe_control,
        )
        .map_err(|source| match source {
            FeError::Cancelled { .. } => ShapeOptError::Cancelled { moves },
            source => ShapeOptError::Fe { moves, source },
        })
    };
    let report = |r: &StepReport| {
        if let Some(f) = control.progress {
            f(r)
        }
    };

    let (mut sol, morphometry_start) = match control.known_start {
        Some(known) => {
            let s = &known.solution;
            if s.bc != params.load.bc || s.elements + s.removed_elements != start_count {
                return Err(ShapeOptError::BadStart(format!(
                    "the known start solution ({} elements under {:?}) is not of this structure ({start_count} bone voxels under {:?})",
                    s.elements + s.removed_elements,
                    s.bc,
                    params.load.bc
                )));
            }
            (known.solution.clone(), known.morphometry)
        }
        None => {
            // The morphometry does not need the solution: measure while the solver runs (its
            // phases that do not keep both cores busy leave room for it).
            let (sol, morph) = rayon::join(|| solve(&current, None, 0), || morph_at(&current, 0));
            fe_solves += 1;
            (sol?, morph?)
        }
    };
    let mut nodes = warm::fe_node_grid_indices(&current, params.load.bc);
    let mut steps = vec![StepReport {
        moves: 0,
        bv_tv: bv_tv_start,
        step_target_bv_tv: bv_tv_start,
        lambda_voxels: 0.0,
        islands_removed: 0,
        refilled_voxels: 0,
        e_app_mpa: sol.e_app_mpa,
        fe_solves,
        fe_iterations: sol.iterations,
        fe_seconds: sol.seconds,
        morphometry: Some(morphometry_start),
        seconds: t0.elapsed().as_secs_f64(),
    }];
    report(&steps[0]);
    let e_app_start_mpa = sol.e_app_mpa;

    let max_moves = params.max_fe_solves - 1;
    let mut moves = 0;
    while moves < max_moves && current.count() != target_count {
        if cancelled() {
            return Err(ShapeOptError::Cancelled { moves });
        }
        let count = current.count() as i64;
        let remaining = target_count as i64 - count;
        let surface = surface_voxel_count(&current).max(1) as f64;
        let needed = ((remaining.unsigned_abs() as f64) / (params.max_shift_voxels * surface))
            .ceil()
            .max(1.0) as usize;
        let planned = needed
            .max(params.min_moves.saturating_sub(moves))
            .min(max_moves - moves);
        let step_count = (count + (remaining as f64 / planned as f64).round() as i64) as usize;
        let stimulus = surface_stimulus(
            &current,
            &sol.sed_mpa,
            &phi,
            params.smoothing_sigma_voxels,
            params.band_voxels,
        );
        let outcome = move_to_count_refilling(
            &current,
            &phi,
            &stimulus,
            params.gain_voxels,
            step_count,
            reference,
        );
        moves += 1;
        current = outcome.mask;
        phi = outcome.phi;
        if params.reinit_every_moves > 0 && moves.is_multiple_of(params.reinit_every_moves) {
            phi = signed_distance(&current);
        }
        let new_nodes = warm::fe_node_grid_indices(&current, params.load.bc);
        let u0 = warm::transfer_displacements(
            &sol.displacements_mm,
            &nodes,
            &new_nodes,
            node_dims,
            mask.grid.voxel_size_mm[2],
            params.load.strain,
        );
        let last =
            moves == max_moves || current.count() == target_count && moves >= params.min_moves;
        // As for the start: the morphometry of the new structure is measured while it is
        // solved.
        let (solved, morph) = rayon::join(
            || solve(&current, Some(&u0), moves),
            || {
                (params.step_morphometry || last)
                    .then(|| morph_at(&current, moves))
                    .transpose()
            },
        );
        sol = solved?;
        let morph = morph?;
        fe_solves += 1;
        nodes = new_nodes;
        steps.push(StepReport {
            moves,
            bv_tv: current.bv_tv(),
            step_target_bv_tv: step_count as f64 / total as f64,
            lambda_voxels: outcome.lambda_voxels,
            islands_removed: outcome.islands_removed,
            refilled_voxels: outcome.refilled,
            e_app_mpa: sol.e_app_mpa,
            fe_solves,
            fe_iterations: sol.iterations,
            fe_seconds: sol.seconds,
            morphometry: morph,
            seconds: t0.elapsed().as_secs_f64(),
        });
        report(steps.last().expect("just pushed"));
    }
    let morphometry_end = match steps.last().and_then(|s| s.morphometry) {
        Some(m) => m,
        None => morph_at(&current, moves)?,
    };
    Ok(Adaptation {
        target_bv_tv,
        bv_tv_start,
        bv_tv_end: current.bv_tv(),
        fe_solves,
        islands: island_voxels(&current),
        dice_vs_start: dice(mask, &current),
        dice_vs_reference: reference.map(|r| dice(r, &current)),
        e_app_start_mpa,
        e_app_end_mpa: sol.e_app_mpa,
        morphometry_start,
        morphometry_end,
        end_state: KnownState {
            solution: sol,
            morphometry: morphometry_end,
        },
        steps,
        mask: current,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests;
