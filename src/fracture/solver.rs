//! Quasi-static, displacement-controlled loading to failure.
//!
//! **Loading.** The bottom face (z = 0) is fully fixed; the top face is a rigid plate whose
//! displacement w along z is prescribed, free to slide in x and y (`axial-clamped` of
//! [`crate::fe::bc`]; the platens of a compression test). The load is the reaction of the top
//! plate, the sum of the z nodal forces of the top face.
//!
//! **Nonlinear solve: secant (fixed-point) iteration on the damage field.** For an
//! increment to w_{n+1}, starting from the damage of the converged state n:
//! 1. solve the linear problem with the secant stiffness (1 − d) C of every compartment
//!    (the element modulus scale of a [`crate::fe::ReusableAxialProblem`]), PCG
//!    warm-started from the last displacement field;
//! 2. from each element's mean strain, update κ = max(κ_n, η(ε)) and G(d) = d(κ);
//! 3. repeat until no compartment's damage changes by more than `damage_tolerance`,
//!    max |G(d) − d| ≤ tol.
//!
//! With `aitken` the next trial damage is d + ω (G(d) − d), ω from Aitken's Δ² rule on two
//! successive residuals (Irons & Tuck 1969; see `aitken_relaxation`), kept between the damage
//! of state n and the cap; without it, d ← G(d). Either way the converged state is G(d) of the
//! last solve. Where the residual grows instead of shrinking (a snap-through: the fixed point
//! of this displacement repels), the relaxation is pushed along the cascade instead
//! (`aitken_relaxation`).
//!
//! **Linear solves.** One operator and one multigrid hierarchy serve the whole run: each solve
//! updates the element moduli of the operator, and the hierarchy is rebuilt only when some
//! element's modulus has drifted from the one it was built for by more than
//! `preconditioner_max_drift` (as |ln(E/E_built)|). CG with the older hierarchy converges to
//! the same solution (it is a fixed SPD preconditioner), in a few more iterations; rebuilding
//! it for every solve cost more than those iterations (BENCHMARKS.md, "Fracture").
//!
//! The secant iteration needs no tangent and always works with a symmetric positive definite
//! operator (d ≤ d_max < 1), which the multigrid-preconditioned CG requires. When it does
//! not converge within `max_iterations` (four times that once it has run into a
//! snap-through, which a smaller step does not remove), the increment is halved (up to
//! `max_cuts` times) and retried from state n; after an increment that converged in at most
//! half the allowed iterations the step doubles, up to the base step. An increment that still
//! fails at the smallest step is accepted and counted as unconverged.
//!
//! **Steps.** One elastic solve gives the initial stiffness and the displacement w₀ at which
//! the first element reaches damage onset; the curve up to w₀ is linear and is sampled at
//! `elastic_points` points without further solves. Beyond it, steps of
//! `step_fraction_of_onset · w₀`.
//!
//! **End point.** The run stops after the peak once the load has fallen to
//! `end_load_fraction` of the peak (default 70 %), or at `max_displacement_factor · w₀`, or
//! after `max_increments`, or when a linear solve fails even at the smallest step
//! ([`EndPoint::SolverFailure`], reported). The end-point energy is integrated to the exact crossing of
//! `end_load_fraction · peak` (linear interpolation between increments).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::FractureError;
use super::model::FractureModel;
use crate::fe::{
    AxialLoad, BoundaryCondition, FeError, Material, ReusableAxialProblem, SolveControl,
    SolverParams,
};

/// The direction of loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadDirection {
    Compression,
    Tension,
}

/// Settings of the loading and of the nonlinear solve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FractureParams {
    pub direction: LoadDirection,
    /// Boundary conditions (default `axial-clamped`: fixed bottom, sliding rigid top plate).
    pub bc: BoundaryCondition,
    /// Nonlinear step as a fraction of the onset displacement w₀. The default, 0.02, gives the
    /// built-in vertebra more than 100 increments; with 0.03–0.05 it took 97–99, most of the
    /// post-peak ones being cut steps whatever the base step.
    pub step_fraction_of_onset: f64,
    /// Points of the linear branch up to w₀ (no solves needed).
    pub elastic_points: usize,
    /// Stop after this many nonlinear increments.
    pub max_increments: usize,
    /// Stop after the peak once the load falls to this fraction of the peak.
    pub end_load_fraction: f64,
    /// Stop at this multiple of w₀.
    pub max_displacement_factor: f64,
    /// Secant iteration converged when no damage changes by more than this.
    pub damage_tolerance: f64,
    pub max_iterations: usize,
    /// Halvings of a failing increment before it is accepted unconverged.
    pub max_cuts: u32,
    /// Relative residual of every linear solve.
    pub solver_tolerance: f64,
    /// Keep the damage field every this many increments (and always at the peak and the end);
    /// 0 keeps only those two.
    pub damage_record_every: usize,
    /// Start each increment from the damage of the strain field extrapolated linearly from the
    /// last two converged states (and the displacement field likewise), instead of from the
    /// damage and displacements of the last state. Off by default: on the built-in vertebra it
    /// saved no solves and moved the energy to the peak by −1.4 % (BENCHMARKS.md).
    pub extrapolate: bool,
    /// Accelerate the secant iteration by Aitken's dynamic relaxation (see the module
    /// documentation); false gives the plain fixed-point iteration.
    pub aitken: bool,
    /// Rebuild the multigrid preconditioner before a solve once some element's secant modulus
    /// differs from the one it was built for by more than this factor, as |ln(E/E_built)|;
    /// 0 rebuilds it for every solve, infinity never.
    pub preconditioner_max_drift: f64,
}

/// Default of [`FractureParams::preconditioner_max_drift`].
pub const DEFAULT_PRECONDITIONER_MAX_DRIFT: f64 = 2.0;

impl Default for FractureParams {
    fn default() -> Self {
        Self {
            direction: LoadDirection::Compression,
            bc: BoundaryCondition::AxialClamped,
            step_fraction_of_onset: 0.02,
            elastic_points: 10,
            max_increments: 1000,
            end_load_fraction: 0.7,
            max_displacement_factor: 200.0,
            damage_tolerance: 2e-3,
            max_iterations: 25,
            max_cuts: 4,
            solver_tolerance: 1e-6,
            damage_record_every: 1,
            extrapolate: false,
            aitken: true,
            preconditioner_max_drift: DEFAULT_PRECONDITIONER_MAX_DRIFT,
        }
    }
}

impl FractureParams {
    pub fn validate(&self) -> Result<(), FractureError> {
        let positive = [
            ("step_fraction_of_onset", self.step_fraction_of_onset),
            ("max_displacement_factor", self.max_displacement_factor),
            ("damage_tolerance", self.damage_tolerance),
            ("solver_tolerance", self.solver_tolerance),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(FractureError::InvalidParameter(format!(
                    "{name} must be positive and finite, got {v}"
                )));
            }
        }
        if self.preconditioner_max_drift.is_nan() || self.preconditioner_max_drift < 0.0 {
            return Err(FractureError::InvalidParameter(format!(
                "preconditioner_max_drift must be non-negative, got {}",
                self.preconditioner_max_drift
            )));
        }
        if !(self.end_load_fraction > 0.0 && self.end_load_fraction < 1.0) {
            return Err(FractureError::InvalidParameter(format!(
                "end_load_fraction must lie in (0, 1), got {}",
                self.end_load_fraction
            )));
        }
        if self.max_iterations == 0 || self.max_increments == 0 {
            return Err(FractureError::InvalidParameter(
                "max_iterations and max_increments must be at least 1".into(),
            ));
        }
        if self.bc == BoundaryCondition::Kubc {
            return Err(FractureError::InvalidParameter(
                "kubc is not a loading by plates; use axial-clamped, axial-confined or axial-free"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// One point of the load–displacement curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CurvePoint {
    /// Plate displacement magnitude (mm).
    pub displacement_mm: f64,
    /// Plate load magnitude (N), positive in the loading direction.
    pub load_n: f64,
    /// Secant iterations (0 on the linear branch).
    pub iterations: usize,
    /// CG iterations of those solves.
    pub cg_iterations: usize,
    /// False when the secant iteration did not converge even at the smallest step.
    pub converged: bool,
    /// Elements with any damage.
    pub damaged_elements: usize,
    /// Largest element damage (1 − secant/initial modulus).
    pub max_damage: f64,
    /// Elastic energy stored at this point, ½ uᵀ K_secant u (mJ).
    pub strain_energy_mj: f64,
    /// Energy dissipated by damage so far, Σ ∫ Y ḋ dV with Y = ½ ε:C₀:ε (mJ; Y averaged
    /// over the start and end of each increment).
    pub dissipated_energy_mj: f64,
}

/// A kept damage field.
#[derive(Clone, Debug)]
pub struct DamageSnapshot {
    /// Index into [`FractureResult::curve`].
    pub point: usize,
    pub displacement_mm: f64,
    /// Element damage, 1 − secant/initial modulus, in element order.
    pub damage: Vec<f32>,
}

/// Why the run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum EndPoint {
    /// The post-peak load fell to `fraction` of the peak.
    LoadDrop { fraction: f64 },
    /// The displacement limit was reached before the load drop.
    MaxDisplacement,
    /// The increment limit was reached before the load drop.
    MaxIncrements,
    /// A linear solve failed (CG did not converge) even at the smallest step; the curve ends
    /// at the last converged increment.
    SolverFailure,
}

/// Result of a run to failure.
#[derive(Clone, Debug)]
pub struct FractureResult {
    pub curve: Vec<CurvePoint>,
    /// Initial (linear-elastic) stiffness F/w (N/mm).
    pub stiffness_n_per_mm: f64,
    /// Displacement at the onset of damage w₀ (mm).
    pub onset_displacement_mm: f64,
    pub peak_load_n: f64,
    pub displacement_at_peak_mm: f64,
    /// ∫F dw from 0 to the peak (mJ).
    pub energy_to_peak_mj: f64,
    /// ∫F dw from 0 to the end point (mJ).
    pub energy_to_end_mj: f64,
    /// Displacement of the end point (mm).
    pub end_displacement_mm: f64,
    pub end_point: EndPoint,
    /// Damage fields kept (see [`FractureParams::damage_record_every`]), including the peak and
    /// the end.
    pub damage: Vec<DamageSnapshot>,
    /// Grid index of each element.
    pub element_voxel: Vec<usize>,
    pub linear_solves: usize,
    pub cg_iterations: usize,
    /// Multigrid hierarchies built (the first one included).
    pub preconditioner_builds: usize,
    /// Nonlinear increments solved (cut and retried increments count once).
    pub increments: usize,
    pub unconverged_increments: usize,
    pub seconds: f64,
}

impl FractureResult {
    /// Index of the peak in [`FractureResult::curve`].
    pub fn peak_index(&self) -> usize {
        peak_index(&self.curve)
    }
}

fn peak_index(curve: &[CurvePoint]) -> usize {
    curve
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bf), (i, p)| {
            if p.load_n > bf {
                (i, p.load_n)
            } else {
                (bi, bf)
            }
        })
        .0
}

/// Trapezoidal ∫F dw over the curve up to displacement `w_end` (mJ).
pub fn work_to_mj(curve: &[CurvePoint], w_end: f64) -> f64 {
    let mut w = 0.0;
    let mut prev = (0.0, 0.0);
    for p in curve {
        let (w1, f1) = (p.displacement_mm, p.load_n);
        if w1 >= w_end {
            if w_end > prev.0 {
                let t = (w_end - prev.0) / (w1 - prev.0);
                let f_end = prev.1 + t * (f1 - prev.1);
                w += 0.5 * (prev.1 + f_end) * (w_end - prev.0);
            }
            return w;
        }
        w += 0.5 * (prev.1 + f1) * (w1 - prev.0);
        prev = (w1, f1);
    }
    w
}

/// Cancellation and progress for [`run_to_failure`].
#[derive(Clone, Copy, Default)]
pub struct FractureControl<'a> {
    pub cancel: Option<&'a AtomicBool>,
    /// Called after every curve point.
    pub progress: Option<&'a (dyn Fn(&CurvePoint) + Sync)>,
}

/// Per-state working data.
struct State {
    kappa: Vec<[f64; 2]>,
    damage: Vec<[f64; 2]>,
    u: Vec<f64>,
    /// Element mean strains.
    strain: Vec<[f64; 6]>,
}

struct Solved {
    load_n: f64,
    u: Vec<f64>,
    strain: Vec<[f64; 6]>,
    strain_energy_mj: f64,
    cg_iterations: usize,
}

/// Smallest and largest Aitken relaxation factor.
const RELAXATION_RANGE: (f64, f64) = (0.1, 4.0);

/// Largest relaxation factor while the iteration runs away from a repelling fixed point (see
/// [`aitken_relaxation`]).
const CASCADE_RELAXATION_MAX: f64 = 64.0;

/// Once an increment's iteration has run away from a repelling fixed point (a snap-through),
/// it may take this many times `max_iterations` before the step is cut: a smaller step does
/// not remove a snap-through, and on the 64³ micro-CT core three quarters of the solves went
/// into attempts that were cut after `max_iterations` and repeated at half the step.
const CASCADE_ITERATION_FACTOR: usize = 4;

/// The relaxation factor of the next iterate, and whether the fixed point repelled the
/// iteration (the residual grew along itself).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Relaxation {
    pub factor: f64,
    pub repelling: bool,
}

/// Aitken's dynamic relaxation factor (Irons & Tuck 1969, Int J Numer Meth Eng 1:275; in the
/// vector form of Küttler & Wall 2008, Comput Mech 43:61): ω_k = −ω_{k−1} r_{k−1}·(r_k −
/// r_{k−1}) / ‖r_k − r_{k−1}‖², from the fixed-point residuals r = G(d) − d of two successive
/// iterations, limited to [`RELAXATION_RANGE`].
///
/// A negative Aitken factor means the residual grew along itself (r_k ≈ λ r_{k−1} with
/// λ > 1): the fixed point of this displacement repels the iteration, which happens when a
/// strut or a band of elements snaps through under displacement control. Relaxing towards that
/// unstable state (the factor clamped to its lower bound) made the iteration crawl without ever
/// converging (a 64³ micro-CT core took 60 iterations per increment at ω = 0.1 and accepted
/// them unconverged). Instead the iteration is pushed along the cascade to the stable state
/// beyond it: ω starts at the plain step, 1, and doubles while the residual keeps growing, up
/// to [`CASCADE_RELAXATION_MAX`] (the plain step alone moved the damage by 3e-3 per iteration,
/// λ ≈ 1.01). The trial damage stays between the converged state's and the cap, and an
/// overshoot shows as a residual of the other sign, where Aitken's factor is positive again.
pub(crate) fn aitken_relaxation(
    previous_factor: f64,
    previous: &[[f64; 2]],
    current: &[[f64; 2]],
) -> Relaxation {
    // Sequential sums, so the factor does not depend on the thread count.
    let (num, den) = previous
        .iter()
        .zip(current)
        .fold((0.0, 0.0), |(num, den), (p, c)| {
            let d = [c[0] - p[0], c[1] - p[1]];
            (
                num + p[0] * d[0] + p[1] * d[1],
                den + d[0] * d[0] + d[1] * d[1],
            )
        });
    if !(den > 0.0 && num.is_finite()) {
        return Relaxation {
            factor: previous_factor,
            repelling: false,
        };
    }
    let factor = -previous_factor * num / den;
    if factor <= 0.0 {
        return Relaxation {
            factor: (2.0 * previous_factor).clamp(1.0, CASCADE_RELAXATION_MAX),
            repelling: true,
        };
    }
    Relaxation {
        factor: factor.clamp(RELAXATION_RANGE.0, RELAXATION_RANGE.1),
        repelling: false,
    }
}

/// Runs `model` to failure under `params` (see the module documentation).
pub fn run_to_failure(
    model: &FractureModel,
    params: &FractureParams,
    control: &FractureControl,
) -> Result<FractureResult, FractureError> {
    params.validate()?;
    let t0 = Instant::now();
    let n = model.element_count();
    let grid_len = model.mask.voxels.len();
    let e_ref = model
        .materials
        .iter()
        .map(|m| m.modulus_mpa())
        .fold(0.0, f64::max);
    let material = Material {
        young_modulus_mpa: e_ref,
        poisson_ratio: model.poisson_ratio,
    };
    material
        .validate()
        .map_err(FractureError::InvalidParameter)?;
    let unit_material = Material {
        young_modulus_mpa: 1.0,
        poisson_ratio: model.poisson_ratio,
    };
    let c1 = unit_material.elasticity_matrix();
    let mut element_of_voxel = vec![u32::MAX; grid_len];
    for (e, &v) in model.element_voxel.iter().enumerate() {
        element_of_voxel[v] = e as u32;
    }
    let height = model.height_mm();
    let sign = match params.direction {
        LoadDirection::Compression => -1.0,
        LoadDirection::Tension => 1.0,
    };
    let solver = SolverParams {
        tolerance: params.solver_tolerance,
        max_iterations: 4000,
        ..Default::default()
    };
    let mut linear_solves = 0usize;
    let mut total_cg = 0usize;

    let secant_scale = |damage: &[[f64; 2]]| -> Vec<f32> {
        let mut scale = vec![0.0f32; grid_len];
        for (e, &v) in model.element_voxel.iter().enumerate() {
            scale[v] = (model.materials[e].secant_modulus_mpa(damage[e]) / e_ref) as f32;
        }
        scale
    };
    let zero = vec![[0.0f64; 2]; n];
    let map_fe = |e: FeError| match e {
        FeError::Cancelled { .. } => FractureError::Cancelled,
        e => FractureError::Fe(e),
    };
    // One operator and multigrid hierarchy for the whole run; the secant moduli change the
    // operator, the hierarchy is rebuilt only when they have drifted far from it.
    let mut problem = ReusableAxialProblem::new(
        &model.mask,
        Some(&secant_scale(&zero)),
        &material,
        params.bc,
        &solver,
    )
    .map_err(map_fe)?;
    if problem.removed_elements() > 0 {
        return Err(FractureError::InvalidParameter(format!(
            "{} elements carry no load (not connected to both plates); remove them first",
            problem.removed_elements()
        )));
    }

    // Solves at plate displacement magnitude w with compartment damages `damage`.
    let mut solve =
        |w: f64, damage: &[[f64; 2]], warm: Option<&[f64]>| -> Result<Solved, FractureError> {
            problem
                .update_scale(&secant_scale(damage))
                .map_err(map_fe)?;
            if problem.scale_drift() > params.preconditioner_max_drift {
                problem.rebuild_preconditioner();
            }
            let load = AxialLoad {
                bc: params.bc,
                strain: sign * w / height,
            };
            let attempt = |problem: &mut ReusableAxialProblem, warm: Option<&[f64]>| {
                problem.solve(
                    &load,
                    &solver,
                    &SolveControl {
                        cancel: control.cancel,
                        progress: None,
                        warm_start: warm,
                    },
                )
            };
            // A warm start far from the new solution (after a large damage change) can stall
            // the single-precision preconditioned CG; one retry from zero with a fresh
            // preconditioner.
            let sol = match attempt(&mut problem, warm) {
                Err(FeError::NotConverged { .. }) if warm.is_some() => {
                    problem.rebuild_preconditioner();
                    attempt(&mut problem, None)
                }
                other => other,
            }
            .map_err(map_fe)?;
            linear_solves += 1;
            total_cg += sol.iterations;
            let mut strain = vec![[0.0f64; 6]; n];
            for (k, &v) in sol.element_fields.voxel.iter().enumerate() {
                let e = element_of_voxel[v] as usize;
                strain[e] = sol.element_fields.strain[k].map(|s| s as f64);
            }
            Ok(Solved {
                load_n: sign * sol.reaction_force_n,
                u: sol.displacements_mm,
                strain,
                strain_energy_mj: sol.strain_energy_mj,
                cg_iterations: sol.iterations,
            })
        };

    // Elastic solve at a unit displacement: stiffness and onset.
    let w_unit = 1e-3 * height;
    let elastic = solve(w_unit, &zero, None)?;
    let stiffness = elastic.load_n / w_unit;
    let eta_max = (0..n)
        .into_par_iter()
        .map(|e| {
            model.materials[e]
                .parts
                .iter()
                .flatten()
                .map(|c| c.law.equivalent_strain(&elastic.strain[e]))
                .fold(0.0, f64::max)
        })
        .reduce(|| 0.0, f64::max);
    if !(stiffness.is_finite() && stiffness > 0.0 && eta_max > 0.0) {
        return Err(FractureError::InvalidParameter(format!(
            "the structure has no axial stiffness (F/w = {stiffness} N/mm)"
        )));
    }
    let w0 = w_unit / eta_max;
    let mut curve = vec![CurvePoint {
        displacement_mm: 0.0,
        load_n: 0.0,
        iterations: 0,
        cg_iterations: 0,
        converged: true,
        damaged_elements: 0,
        max_damage: 0.0,
        strain_energy_mj: 0.0,
        dissipated_energy_mj: 0.0,
    }];
    let energy_unit = elastic.strain_energy_mj;
    let report = |p: &CurvePoint| {
        if let Some(f) = control.progress {
            f(p)
        }
    };
    report(&curve[0]);
    let elastic_points = params.elastic_points.max(1);
    for k in 1..=elastic_points {
        // Just below the onset, so the first nonlinear step starts undamaged.
        let w = w0 * k as f64 / elastic_points as f64 * (1.0 - 1e-9);
        let r = w / w_unit;
        let p = CurvePoint {
            displacement_mm: w,
            load_n: stiffness * w,
            iterations: 0,
            cg_iterations: if k == 1 { elastic.cg_iterations } else { 0 },
            converged: true,
            damaged_elements: 0,
            max_damage: 0.0,
            strain_energy_mj: energy_unit * r * r,
            dissipated_energy_mj: 0.0,
        };
        report(&p);
        curve.push(p);
    }
    let r0 = w0 / w_unit;
    let mut state = State {
        kappa: vec![[0.0; 2]; n],
        damage: zero.clone(),
        u: elastic.u.iter().map(|v| v * r0).collect(),
        strain: elastic.strain.iter().map(|e| e.map(|v| v * r0)).collect(),
    };
    let element_damage = |damage: &[[f64; 2]]| -> Vec<f32> {
        (0..n)
            .map(|e| {
                let m = &model.materials[e];
                (1.0 - m.secant_modulus_mpa(damage[e]) / m.modulus_mpa()) as f32
            })
            .collect()
    };
    // Kept damage fields, each flagged when it is a regular (every-n) keep.
    let mut snapshots: Vec<(DamageSnapshot, bool)> = Vec::new();
    let base_step = params.step_fraction_of_onset * w0;
    let mut step = base_step;
    let mut w = w0;
    // The converged state before `state` (its displacement, displacements and strains), for
    // the predictor; the unloaded state before the first increment.
    let mut previous: (f64, Vec<f64>, Vec<[f64; 6]>) =
        (0.0, vec![0.0; state.u.len()], vec![[0.0; 6]; n]);
    let mut dissipated = 0.0;
    let mut increments = 0usize;
    let mut unconverged = 0usize;
    // The highest load so far and its point: the end of the linear branch to start with, so a
    // curve that snaps down at its first nonlinear increment ends there.
    let mut peak = (curve[curve.len() - 1].load_n, curve.len() - 1);
    let end_point;
    let volume = model.mask.grid.voxel_volume_mm3();
    loop {
        if increments >= params.max_increments {
            end_point = EndPoint::MaxIncrements;
            break;
        }
        if w >= params.max_displacement_factor * w0 {
            end_point = EndPoint::MaxDisplacement;
            break;
        }
        let mut cuts = 0u32;
        let mut solver_failed = false;
        let (w_new, solved, kappa, damage, iterations, cg, converged) = 'increment: loop {
            let w_try = w + step;
            // `trial` is the damage the next solve uses; `kappa`/`damage` the update from the
            // latest solve.
            let (mut trial, mut warm) = if params.extrapolate && w > previous.0 {
                let ratio = (w_try - w) / (w - previous.0);
                let trial: Vec<[f64; 2]> = (0..n)
                    .into_par_iter()
                    .map(|e| {
                        let now = &state.strain[e];
                        let before = &previous.2[e];
                        let eps: [f64; 6] =
                            std::array::from_fn(|i| now[i] + ratio * (now[i] - before[i]));
                        let mut d = [0.0; 2];
                        for (c, part) in model.materials[e].parts.iter().enumerate() {
                            if let Some(part) = part {
                                let k = state.kappa[e][c].max(part.law.equivalent_strain(&eps));
                                d[c] = part.law.damage(k).max(state.damage[e][c]);
                            }
                        }
                        d
                    })
                    .collect();
                let warm: Vec<f64> = state
                    .u
                    .iter()
                    .zip(&previous.1)
                    .map(|(&a, &b)| a + ratio * (a - b))
                    .collect();
                (trial, warm)
            } else {
                (state.damage.clone(), state.u.clone())
            };
            let mut damage = state.damage.clone();
            let mut kappa = state.kappa.clone();
            let mut iterations = 0;
            let mut cg = 0;
            let mut converged = false;
            let mut last: Option<Solved> = None;
            let mut relaxation = 1.0;
            let mut last_residual: Option<Vec<[f64; 2]>> = None;
            // Raised once the iteration runs away from a repelling fixed point.
            let mut budget = params.max_iterations;
            while iterations < budget {
                let s = match solve(w_try, &trial, Some(&warm)) {
                    Ok(s) => s,
                    Err(FractureError::Fe(
                        FeError::NotConverged { .. } | FeError::Breakdown { .. },
                    )) => {
                        // Treated as a failed increment: cut, or end the curve here.
                        last = None;
                        break;
                    }
                    Err(e) => return Err(e),
                };
                iterations += 1;
                cg += s.cg_iterations;
                let updated: Vec<([f64; 2], [f64; 2])> = (0..n)
                    .into_par_iter()
                    .map(|e| {
                        let mut k = state.kappa[e];
                        let mut d = [0.0; 2];
                        for (c, part) in model.materials[e].parts.iter().enumerate() {
                            if let Some(part) = part {
                                k[c] = k[c].max(part.law.equivalent_strain(&s.strain[e]));
                                d[c] = part.law.damage(k[c]);
                            }
                        }
                        (k, d)
                    })
                    .collect();
                for (e, (k, d)) in updated.into_iter().enumerate() {
                    kappa[e] = k;
                    damage[e] = d;
                }
                // Fixed-point residual G(d) − d of this iteration.
                let residual: Vec<[f64; 2]> = damage
                    .iter()
                    .zip(&trial)
                    .map(|(g, d)| [g[0] - d[0], g[1] - d[1]])
                    .collect();
                let change = residual
                    .iter()
                    .map(|r| r[0].abs().max(r[1].abs()))
                    .fold(0.0, f64::max);
                warm.clone_from(&s.u);
                last = Some(s);
                if change <= params.damage_tolerance {
                    converged = true;
                    break;
                }
                if params.aitken
                    && let Some(previous) = &last_residual
                {
                    let step = aitken_relaxation(relaxation, previous, &residual);
                    relaxation = step.factor;
                    if step.repelling {
                        budget = CASCADE_ITERATION_FACTOR * params.max_iterations;
                    }
                }
                // d ← d + ω (G(d) − d), kept between the damage of the converged state and
                // the cap.
                trial = (0..n)
                    .into_par_iter()
                    .map(|e| {
                        let mut d = [0.0; 2];
                        for (c, part) in model.materials[e].parts.iter().enumerate() {
                            if let Some(part) = part {
                                d[c] = (trial[e][c] + relaxation * residual[e][c])
                                    .clamp(state.damage[e][c], part.law.max_damage);
                            }
                        }
                        d
                    })
                    .collect();
                last_residual = Some(residual);
            }
            match last {
                Some(s) if converged || cuts >= params.max_cuts => {
                    break 'increment (w_try, s, kappa, damage, iterations, cg, converged);
                }
                None if cuts >= params.max_cuts => {
                    solver_failed = true;
                    break 'increment (
                        w_try,
                        Solved {
                            load_n: 0.0,
                            u: Vec::new(),
                            strain: Vec::new(),
                            strain_energy_mj: 0.0,
                            cg_iterations: 0,
                        },
                        kappa,
                        damage,
                        iterations,
                        cg,
                        false,
                    );
                }
                _ => {}
            }
            cuts += 1;
            step *= 0.5;
        };
        if solver_failed {
            end_point = EndPoint::SolverFailure;
            break;
        }
        increments += 1;
        if !converged {
            unconverged += 1;
        }
        // Dissipation of this increment: Y = ½ E_c ε:C₁:ε, the mean of its values at the
        // start and the end of the increment (trapezoidal rule in d). Across a snap-through
        // (the damage jumps at one displacement) it is not a quadrature of the jump's path and
        // overestimates it; on stable paths it balances the plate's work to about 2 %.
        let energy_density = |eps: &[f64; 6]| {
            let mut y = 0.0;
            for i in 0..6 {
                for j in 0..6 {
                    y += eps[i] * c1[i][j] * eps[j];
                }
            }
            0.5 * y
        };
        let d_dissipated: f64 = (0..n)
            .into_par_iter()
            .map(|e| {
                let y1 =
                    0.5 * (energy_density(&solved.strain[e]) + energy_density(&state.strain[e]));
                model.materials[e]
                    .parts
                    .iter()
                    .enumerate()
                    .filter_map(|(c, p)| {
                        p.map(|p| {
                            p.share
                                * p.law.young_modulus_mpa
                                * y1
                                * (damage[e][c] - state.damage[e][c]).max(0.0)
                        })
                    })
                    .sum::<f64>()
                    * volume
            })
            .sum();
        dissipated += d_dissipated;
        let elem_d = element_damage(&damage);
        let point = CurvePoint {
            displacement_mm: w_new,
            load_n: solved.load_n,
            iterations,
            cg_iterations: cg,
            converged,
            damaged_elements: elem_d.iter().filter(|&&d| d > 0.0).count(),
            max_damage: elem_d.iter().cloned().fold(0.0f32, f32::max) as f64,
            strain_energy_mj: solved.strain_energy_mj,
            dissipated_energy_mj: dissipated,
        };
        report(&point);
        curve.push(point);
        let index = curve.len() - 1;
        if point.load_n > peak.0 {
            peak = (point.load_n, index);
        }
        let keep =
            params.damage_record_every > 0 && increments.is_multiple_of(params.damage_record_every);
        let is_peak = peak.1 == index;
        if keep || is_peak {
            snapshots.push((
                DamageSnapshot {
                    point: index,
                    displacement_mm: w_new,
                    damage: elem_d,
                },
                keep,
            ));
        }
        let old = std::mem::replace(
            &mut state,
            State {
                kappa,
                damage,
                u: solved.u,
                strain: solved.strain,
            },
        );
        previous = (w, old.u, old.strain);
        w = w_new;
        if converged && iterations <= params.max_iterations / 2 {
            step = (step * 2.0).min(base_step);
        }
        if index > peak.1 && point.load_n <= params.end_load_fraction * peak.0 {
            end_point = EndPoint::LoadDrop {
                fraction: params.end_load_fraction,
            };
            break;
        }
    }
    // Keep only the regular snapshots, the latest peak and the end.
    let last_index = curve.len() - 1;
    let mut snapshots: Vec<DamageSnapshot> = snapshots
        .into_iter()
        .filter(|(s, regular)| *regular || s.point == peak.1 || s.point == last_index)
        .map(|(s, _)| s)
        .collect();
    if snapshots.last().is_none_or(|s| s.point != last_index) {
        snapshots.push(DamageSnapshot {
            point: last_index,
            displacement_mm: w,
            damage: element_damage(&state.damage),
        });
    }
    let pi = peak_index(&curve);
    let peak_point = curve[pi];
    // A peak on the linear branch (a curve that snaps down at its first nonlinear increment)
    // has no kept field: it is undamaged.
    if !snapshots.iter().any(|s| s.point == pi) {
        let at = snapshots.partition_point(|s| s.point < pi);
        snapshots.insert(
            at,
            DamageSnapshot {
                point: pi,
                displacement_mm: peak_point.displacement_mm,
                damage: vec![0.0; n],
            },
        );
    }
    let end_displacement = match end_point {
        EndPoint::LoadDrop { fraction } => {
            let target = fraction * peak_point.load_n;
            let a = curve[last_index - 1];
            let b = curve[last_index];
            if (a.load_n - b.load_n).abs() > 0.0 {
                let t = ((a.load_n - target) / (a.load_n - b.load_n)).clamp(0.0, 1.0);
                a.displacement_mm + t * (b.displacement_mm - a.displacement_mm)
            } else {
                b.displacement_mm
            }
        }
        _ => curve[last_index].displacement_mm,
    };
    Ok(FractureResult {
        stiffness_n_per_mm: stiffness,
        onset_displacement_mm: w0,
        peak_load_n: peak_point.load_n,
        displacement_at_peak_mm: peak_point.displacement_mm,
        energy_to_peak_mj: work_to_mj(&curve, peak_point.displacement_mm),
        energy_to_end_mj: work_to_mj(&curve, end_displacement),
        end_displacement_mm: end_displacement,
        end_point,
        damage: snapshots,
        element_voxel: model.element_voxel.clone(),
        linear_solves,
        cg_iterations: total_cg,
        preconditioner_builds: problem.preconditioner_builds(),
        increments,
        unconverged_increments: unconverged,
        seconds: t0.elapsed().as_secs_f64(),
        curve,
    })
}
