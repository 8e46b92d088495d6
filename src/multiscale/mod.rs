//! The multiscale run (design §1.2–1.3, issue 5 §2): the macroscale remodeling of the
//! vertebra drives the shape optimisation of a trabecular microstructure.
//!
//! The macroscale [`Simulation`] (Pivonka–Scheiner cell model with the Scheiner 2013
//! mechanical feedback, after Vemparala et al. 2025) steps day by day through the scenario. At
//! each checkpoint ([`checkpoint_days`]: every `checkpoint_every_days` days, every phase end and
//! the last day) the % change of the mean trabecular BMD since day 0 becomes a % change of the
//! microstructure's BV/TV through a [`BvTvMapping`] (equal percentages by default), and the
//! structure of the previous checkpoint is adapted to that target by the level-set shape
//! optimisation of [`crate::shapeopt`].
//!
//! The adaptation is the coupled one ([`crate::shapeopt::adapt_with_reference`]) with the
//! pre-flight structure as the homeostatic reference: resorption in flight removes the least
//! loaded surfaces, and formation in recovery first refills the cavities it dug (the BMU
//! coupling of Parfitt 1994), so that a structure that returns to its BV/TV also returns to its
//! architecture. `coupled = false` gives the plain mechanical adaptation at every checkpoint.
//!
//! **Loading of the microstructure.** The chosen load case of [`AdaptParams::load`] (axial
//! compression along z, the vertebra's superior–inferior axis, by default). The element-wise
//! macroscale strain state is not used: the micro-FE's kinematic uniform boundary conditions
//! give no single strain-energy field to drive the surface (see [`crate::fe::solve_kubc`]).
//!
//! **Recovery.** [`RecoveryMetrics`] compares the last checkpoint with the original structure:
//! BV/TV difference, Dice, morphometry and apparent modulus.

pub mod mapping;
pub mod recovery;
pub mod report;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::morph::Morphometry;
use crate::remodel::scenario::Scenario;
use crate::remodel::simulation::{DayRecord, RemodelError, Simulation};
use crate::shapeopt::{
    AdaptControl, AdaptParams, KnownState, ShapeOptError, StepReport, adapt, adapt_with_reference,
    dice,
};
use crate::volume::BoneMask;

pub use mapping::{BvTvMapping, EqualPercentage, Proportional, parse_mapping};
pub use recovery::{RecoveryBounds, RecoveryMetrics, recovery_metrics};

/// Errors of the multiscale run.
#[derive(Debug, thiserror::Error)]
pub enum MultiscaleError {
    #[error("multiscale run: invalid parameter: {0}")]
    InvalidParameter(String),
    #[error("multiscale run: macroscale: {0}")]
    Macroscale(#[from] RemodelError),
    #[error("multiscale run: checkpoint at day {day}: {source}")]
    Adapt {
        day: u32,
        #[source]
        source: ShapeOptError,
    },
    #[error("multiscale run cancelled at day {day}")]
    Cancelled { day: u32 },
    #[error("multiscale run: cannot resume: {0}")]
    Resume(String),
}

/// Settings of the coupling.
#[derive(Clone, Debug)]
pub struct MultiscaleParams {
    /// A checkpoint every this many days (phase ends and the last day are always checkpoints).
    pub checkpoint_every_days: u32,
    /// The shape optimisation at each checkpoint.
    pub adapt: AdaptParams,
    /// Coupled BMU remodeling towards the original structure (see the module docs).
    pub coupled: bool,
}

impl Default for MultiscaleParams {
    fn default() -> Self {
        Self {
            checkpoint_every_days: 30,
            adapt: AdaptParams {
                // Start and end of every checkpoint are measured; the moves in between need not be.
                step_morphometry: false,
                ..AdaptParams::default()
            },
            coupled: true,
        }
    }
}

impl MultiscaleParams {
    pub fn validate(&self) -> Result<(), MultiscaleError> {
        if self.checkpoint_every_days == 0 {
            return Err(MultiscaleError::InvalidParameter(
                "checkpoint_every_days must be at least 1".into(),
            ));
        }
        self.adapt
            .validate()
            .map_err(|e| MultiscaleError::InvalidParameter(e.to_string()))
    }
}

/// The checkpoint days of `scenario`: every `every` days, each phase end and the last day, in
/// increasing order, without day 0 (the original structure).
pub fn checkpoint_days(scenario: &Scenario, every: u32) -> Vec<u32> {
    let total = scenario.total_days();
    let mut days: Vec<u32> = (1..=total / every.max(1))
        .map(|k| k * every.max(1))
        .collect();
    let mut end = 0;
    for p in &scenario.phases {
        end += p.days;
        days.push(end);
    }
    days.retain(|&d| d > 0 && d <= total);
    days.sort_unstable();
    days.dedup();
    days
}

/// The state of the microstructure at one checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// 0 for the original structure at day 0.
    pub index: usize,
    pub day: u32,
    pub phase: String,
    /// Macroscale mean trabecular BMD change since day 0 (%).
    pub bmd_trabecular_pct: f64,
    /// Macroscale whole-vertebra BMD change since day 0 (%).
    pub bmd_whole_pct: f64,
    /// The BV/TV target: original × (1 + mapping(BMD %)/100).
    pub target_bv_tv: f64,
    /// The BV/TV reached.
    pub bv_tv: f64,
    /// BV/TV change against the original (%).
    pub bv_tv_change_pct: f64,
    /// FE solves of this checkpoint's adaptation (0 when the target needed no move).
    pub fe_solves: usize,
    /// Surface moves of this checkpoint's adaptation.
    pub moves: usize,
    /// Bone voxels outside the main component (0 by construction).
    pub islands: usize,
    pub dice_vs_original: f64,
    /// Voxels that are bone in the original and marrow now.
    pub removed_voxels: usize,
    /// Voxels that are marrow in the original and bone now.
    pub added_voxels: usize,
    /// Apparent modulus under the adaptation's load case (MPa).
    pub e_app_mpa: f64,
    pub morphometry: Morphometry,
    /// Wall time of this checkpoint's adaptation (s).
    pub seconds: f64,
}

/// Voxels removed from and added to `original` in `now`.
pub fn change_counts(original: &BoneMask, now: &BoneMask) -> (usize, usize) {
    original
        .voxels
        .iter()
        .zip(&now.voxels)
        .fold((0, 0), |(r, a), (&o, &n)| match (o, n) {
            (true, false) => (r + 1, a),
            (false, true) => (r, a + 1),
            _ => (r, a),
        })
}

/// Name of the vertex field of the surfaces of adapted structures that marks formed bone.
pub const FORMED_FIELD: &str = "formed";

/// Per voxel of `now`: 1 where it is bone formed since `original` (marrow there), else 0; the
/// vertex field [`FORMED_FIELD`] of the stored and displayed surfaces.
pub fn formed_field(original: &BoneMask, now: &BoneMask) -> Vec<f32> {
    now.voxels
        .iter()
        .zip(&original.voxels)
        .map(|(&n, &o)| if n && !o { 1.0 } else { 0.0 })
        .collect()
}

/// Cancellation and progress of [`MultiscaleRun::advance`].
#[derive(Clone, Copy, Default)]
pub struct RunControl<'a> {
    pub cancel: Option<&'a AtomicBool>,
    /// Called after every macroscale day.
    pub on_day: Option<&'a (dyn Fn(&DayRecord) + Sync)>,
    /// Called with every step of a checkpoint's adaptation.
    pub on_step: Option<&'a (dyn Fn(&StepReport) + Sync)>,
}

/// A multiscale run: the macroscale simulation, the original structure and the structure at
/// the last checkpoint.
pub struct MultiscaleRun {
    sim: Simulation,
    mapping: Arc<dyn BvTvMapping>,
    params: MultiscaleParams,
    original: BoneMask,
    current: BoneMask,
    current_state: KnownState,
    schedule: Vec<u32>,
    /// Index into `schedule` of the next checkpoint.
    next: usize,
    checkpoints: Vec<Checkpoint>,
}

impl MultiscaleRun {
    /// Sets the run up at day 0: the original structure is solved and measured (checkpoint 0).
    /// `sim` must be at day 0.
    pub fn new(
        sim: Simulation,
        original: BoneMask,
        mapping: Arc<dyn BvTvMapping>,
        params: MultiscaleParams,
        cancel: Option<&AtomicBool>,
    ) -> Result<Self, MultiscaleError> {
        params.validate()?;
        if sim.day() != 0 {
            return Err(MultiscaleError::InvalidParameter(format!(
                "the macroscale simulation must start at day 0, not {}",
                sim.day()
            )));
        }
        let t0 = Instant::now();
        let state = Self::measure(&original, &params, cancel, 0)?;
        let c0 = Checkpoint {
            index: 0,
            day: 0,
            phase: sim
                .scenario
                .phases
                .first()
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            bmd_trabecular_pct: 0.0,
            bmd_whole_pct: 0.0,
            target_bv_tv: original.bv_tv(),
            bv_tv: original.bv_tv(),
            bv_tv_change_pct: 0.0,
            fe_solves: 1,
            moves: 0,
            islands: crate::shapeopt::island_voxels(&original),
            dice_vs_original: 1.0,
            removed_voxels: 0,
            added_voxels: 0,
            e_app_mpa: state.solution.e_app_mpa,
            morphometry: state.morphometry,
            seconds: t0.elapsed().as_secs_f64(),
        };
        let schedule = checkpoint_days(&sim.scenario, params.checkpoint_every_days);
        Ok(Self {
            sim,
            mapping,
            params,
            current: original.clone(),
            original,
            current_state: state,
            schedule,
            next: 0,
            checkpoints: vec![c0],
        })
    }

    /// Continues a run from its last stored checkpoint: `sim` (at day 0) is replayed to that
    /// day, and the trabecular BMD change it gives at every stored checkpoint must match the
    /// stored one (the macroscale model is deterministic); `current` is the structure stored
    /// at the last checkpoint, which is solved once to restart the shape optimisation.
    pub fn resume(
        sim: Simulation,
        original: BoneMask,
        current: BoneMask,
        checkpoints: Vec<Checkpoint>,
        mapping: Arc<dyn BvTvMapping>,
        params: MultiscaleParams,
        control: &RunControl,
    ) -> Result<Self, MultiscaleError> {
        params.validate()?;
        let bad = |m: String| Err(MultiscaleError::Resume(m));
        let Some(last) = checkpoints.last().cloned() else {
            return bad("no checkpoint is stored".into());
        };
        if current.dims() != original.dims() {
            return bad(format!(
                "the last structure has {:?} voxels, the original {:?}",
                current.dims().as_array(),
                original.dims().as_array()
            ));
        }
        if (current.bv_tv() - last.bv_tv).abs() > 1e-12
            || (original.bv_tv() - checkpoints[0].bv_tv).abs() > 1e-12
        {
            return bad(format!(
                "the stored volumes do not match the record (BV/TV {:.6} and {:.6} against {:.6} and {:.6})",
                original.bv_tv(),
                current.bv_tv(),
                checkpoints[0].bv_tv,
                last.bv_tv
            ));
        }
        let schedule = checkpoint_days(&sim.scenario, params.checkpoint_every_days);
        let done: Vec<u32> = checkpoints[1..].iter().map(|c| c.day).collect();
        if schedule.len() < done.len() || schedule[..done.len()] != done[..] {
            return bad(format!(
                "the stored checkpoint days {done:?} are not those of this scenario and interval"
            ));
        }
        let mut run = Self {
            current_state: Self::measure(&current, &params, control.cancel, last.day)?,
            sim,
            mapping,
            params,
            original,
            current,
            schedule,
            next: done.len(),
            checkpoints,
        };
        let stored: Vec<(u32, f64)> = run.checkpoints[1..]
            .iter()
            .map(|c| (c.day, c.bmd_trabecular_pct))
            .collect();
        let mut expect = stored.iter().peekable();
        while run.sim.day() < last.day {
            let record = run.step_macro(control)?;
            if let Some(&&(day, pct)) = expect.peek()
                && day == record.day
            {
                if (pct - record.bmd_trabecular_pct).abs() > 1e-9 {
                    return bad(format!(
                        "day {day}: the macroscale replay gives a trabecular BMD change of {:.9} %, the stored run {pct:.9} % (was the model or the scenario changed?)",
                        record.bmd_trabecular_pct
                    ));
                }
                expect.next();
            }
        }
        Ok(run)
    }

    fn measure(
        mask: &BoneMask,
        params: &MultiscaleParams,
        cancel: Option<&AtomicBool>,
        day: u32,
    ) -> Result<KnownState, MultiscaleError> {
        // An adaptation to the structure's own BV/TV makes no move: one solve and the
        // morphometry, through the same code path as every checkpoint.
        let control = AdaptControl {
            cancel,
            ..Default::default()
        };
        let a = adapt(mask, mask.bv_tv(), &params.adapt, &control)
            .map_err(|source| Self::adapt_error(day, source))?;
        Ok(a.end_state)
    }

    fn adapt_error(day: u32, source: ShapeOptError) -> MultiscaleError {
        match source {
            ShapeOptError::Cancelled { .. } => MultiscaleError::Cancelled { day },
            source => MultiscaleError::Adapt { day, source },
        }
    }

    fn step_macro(&mut self, control: &RunControl) -> Result<DayRecord, MultiscaleError> {
        if control.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(MultiscaleError::Cancelled {
                day: self.sim.day(),
            });
        }
        let day = self.sim.day();
        let record = self.sim.step_day(control.cancel).map_err(|e| match e {
            RemodelError::Cancelled { .. } => MultiscaleError::Cancelled { day },
            e => MultiscaleError::Macroscale(e),
        })?;
        if let Some(f) = control.on_day {
            f(record);
        }
        Ok(record.clone())
    }

    /// Steps the macroscale to the next checkpoint and adapts the structure to it. Returns
    /// `None` when the run is finished.
    pub fn advance(
        &mut self,
        control: &RunControl,
    ) -> Result<Option<&Checkpoint>, MultiscaleError> {
        let Some(&day) = self.schedule.get(self.next) else {
            return Ok(None);
        };
        let mut record = None;
        while self.sim.day() < day {
            record = Some(self.step_macro(control)?);
        }
        let record = record.expect("checkpoint days lie after the current day");
        let t0 = Instant::now();
        let original_bv_tv = self.original.bv_tv();
        let change_pct = self.mapping.bv_tv_change_pct(record.bmd_trabecular_pct);
        let target = original_bv_tv * (1.0 + change_pct / 100.0);
        let adapt_control = AdaptControl {
            cancel: control.cancel,
            progress: control.on_step,
            known_start: Some(&self.current_state),
        };
        let result = if self.params.coupled {
            adapt_with_reference(
                &self.current,
                &self.original,
                target,
                &self.params.adapt,
                &adapt_control,
            )
        } else {
            adapt(&self.current, target, &self.params.adapt, &adapt_control)
        }
        .map_err(|source| Self::adapt_error(day, source))?;
        let (removed, added) = change_counts(&self.original, &result.mask);
        let checkpoint = Checkpoint {
            index: self.checkpoints.len(),
            day,
            phase: record.phase.clone(),
            bmd_trabecular_pct: record.bmd_trabecular_pct,
            bmd_whole_pct: record.bmd_whole_pct,
            target_bv_tv: target,
            bv_tv: result.bv_tv_end,
            bv_tv_change_pct: 100.0 * (result.bv_tv_end / original_bv_tv - 1.0),
            fe_solves: result.fe_solves,
            moves: result.steps.len() - 1,
            islands: result.islands,
            dice_vs_original: dice(&self.original, &result.mask),
            removed_voxels: removed,
            added_voxels: added,
            e_app_mpa: result.e_app_end_mpa,
            morphometry: result.morphometry_end,
            seconds: t0.elapsed().as_secs_f64(),
        };
        self.current = result.mask;
        self.current_state = result.end_state;
        self.checkpoints.push(checkpoint);
        self.next += 1;
        Ok(self.checkpoints.last())
    }

    pub fn is_finished(&self) -> bool {
        self.next >= self.schedule.len()
    }

    /// Checkpoint days still to come, and all of them.
    pub fn schedule(&self) -> &[u32] {
        &self.schedule
    }

    pub fn checkpoints(&self) -> &[Checkpoint] {
        &self.checkpoints
    }

    pub fn original(&self) -> &BoneMask {
        &self.original
    }

    /// The structure at the last checkpoint.
    pub fn current(&self) -> &BoneMask {
        &self.current
    }

    pub fn simulation(&self) -> &Simulation {
        &self.sim
    }

    pub fn mapping(&self) -> &dyn BvTvMapping {
        self.mapping.as_ref()
    }

    pub fn params(&self) -> &MultiscaleParams {
        &self.params
    }

    /// The last checkpoint against the original (see [`recovery_metrics`]).
    pub fn recovery(&self, bounds: &RecoveryBounds) -> RecoveryMetrics {
        recovery_metrics(&self.checkpoints, bounds)
    }
}

#[cfg(test)]
mod tests;
