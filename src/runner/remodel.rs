//! Macroscale remodeling runs on the simulation thread: their commands, events and the
//! per-day element fields kept for scrubbing.
//!
//! A run goes through these events, all lossless and in this order:
//! [`RemodelEvent::Preparing`] (building the model, first FE solve), [`RemodelEvent::Started`]
//! (the model, its view geometry and the scenario), [`RemodelEvent::Day`] for day 0 and then
//! for every simulated day, interleaved with [`RemodelEvent::Paused`] /
//! [`RemodelEvent::Resumed`] / [`RemodelEvent::ScenarioReplaced`] / [`RemodelEvent::Rejected`]
//! as commands arrive, and at most one end: [`RemodelEvent::Finished`] (the last day of the
//! scenario is computed; the run stays loaded and can be extended by a longer scenario),
//! [`RemodelEvent::Cancelled`] or [`RemodelEvent::Failed`].
//!
//! Runs are identified by the sequence number of the command that started them
//! ([`RemodelCommand::Start`], or [`RemodelCommand::ReplaceScenario`] with `restart`); events
//! of an older run can be told apart and ignored.
//!
//! The worker steps one day at a time and reads the command channel between days, so pause,
//! step, scenario changes and cancellation apply at the next day boundary, and micro-FE jobs
//! sent meanwhile run between two days (the remodeling waits, the micro-FE is never starved).
//! Cancellation also interrupts an FE solve in progress (set-up or re-solve) through its own
//! flag, independent of the micro-FE cancel.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use super::JobId;
use super::section::VertebraGeometry;
use crate::remodel::ct::CtParams;
use crate::remodel::scenario::Scenario;
use crate::remodel::simulation::{DayRecord, RemodelConfig};
use crate::remodel::vertebra::{Region, VertebraParams};
use crate::volume::Grid;

/// Default memory budget of the per-day field history (256 MiB): about 4000 days of the
/// built-in vertebra (32 k elements × 2 bytes) at every day.
pub const DEFAULT_FIELD_HISTORY_BYTES: usize = 256 << 20;

/// Where the vertebra of a run comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum VertebraSource {
    /// The built-in parametric L3 vertebral body (not patient data).
    Builtin(VertebraParams),
    /// A CT volume (DICOM folder, NIfTI or sidecar), cropped to a box and calibrated.
    Ct { path: PathBuf, params: CtParams },
}

impl VertebraSource {
    /// A short label for the model, e.g. "built-in parametric L3 (not patient data)".
    pub fn label(&self) -> String {
        match self {
            VertebraSource::Builtin(_) => "built-in parametric L3 (not patient data)".into(),
            VertebraSource::Ct { path, .. } => format!(
                "CT: {}",
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.display().to_string())
            ),
        }
    }
}

/// Everything a run needs.
#[derive(Clone, Debug, PartialEq)]
pub struct StartRemodel {
    pub vertebra: VertebraSource,
    pub scenario: Scenario,
    pub config: RemodelConfig,
    /// Build the model and solve day 0, then wait for [`RemodelCommand::Resume`] or
    /// [`RemodelCommand::Step`] instead of running at once.
    pub start_paused: bool,
}

/// Commands for the remodeling run (sent as [`super::Command::Remodel`]).
#[derive(Clone, Debug, PartialEq)]
pub enum RemodelCommand {
    /// Builds the model and starts a run; replaces (and cancels) any run in progress.
    Start(Box<StartRemodel>),
    /// Stops stepping at the next day boundary (the run stays loaded).
    Pause,
    /// Continues stepping to the end of the scenario.
    Resume,
    /// Simulates `days` more days, then pauses (also pauses a running run after `days`).
    Step { days: u32 },
    /// A new scenario. `restart: false` applies it from the next day (the days simulated so
    /// far keep their records; the scenario must be at least as long as they are).
    /// `restart: true` starts a new run on the same model from day 0.
    ReplaceScenario { scenario: Scenario, restart: bool },
    /// Ends the run; takes effect at once, also inside an FE solve.
    Cancel,
}

/// The model, scenario and view geometry of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct RemodelInfo {
    /// The run these belong to.
    pub run: JobId,
    pub source: VertebraSource,
    /// [`VertebraSource::label`].
    pub label: String,
    pub element_count: usize,
    /// Elements per region, in [`Region::ALL`] order.
    pub region_counts: [usize; 3],
    pub grid: Grid,
    pub scenario: Scenario,
    pub total_days: u32,
    /// First day of each phase.
    pub phase_starts: Vec<u32>,
    pub phase_names: Vec<String>,
    /// Surface, sampler and sections for the view (shared by restarts on the same model).
    pub geometry: Arc<VertebraGeometry>,
    /// Seconds spent building the model and solving day 0.
    pub setup_seconds: f64,
}

impl RemodelInfo {
    /// Number of elements of `region`.
    pub fn region_count(&self, region: Region) -> usize {
        Region::ALL
            .iter()
            .position(|r| *r == region)
            .map_or(0, |i| self.region_counts[i])
    }

    /// The same info for a new scenario.
    pub(crate) fn with_scenario(&self, run: JobId, scenario: Scenario) -> Self {
        Self {
            run,
            total_days: scenario.total_days(),
            phase_starts: scenario.phase_starts(),
            phase_names: scenario.phases.iter().map(|p| p.name.clone()).collect(),
            scenario,
            ..self.clone()
        }
    }
}

/// Events of the remodeling run (sent as [`super::Event::Remodel`]).
#[derive(Clone, Debug, PartialEq)]
pub enum RemodelEvent {
    /// Set-up progress of a starting run ("building the vertebra", "solving day 0").
    Preparing { run: JobId, message: String },
    /// The run is set up; its day-0 record follows as a [`RemodelEvent::Day`].
    Started(Arc<RemodelInfo>),
    /// One simulated day (day 0 = the start). Its element field is in the
    /// [`FieldHistory`] before this event is sent.
    Day { run: JobId, record: DayRecord },
    /// Stepping stopped after `day` days (by [`RemodelCommand::Pause`], at the end of a
    /// [`RemodelCommand::Step`], or because the run was set up paused).
    Paused { run: JobId, day: u32 },
    /// Stepping continues from `day`.
    Resumed { run: JobId, day: u32 },
    /// A new scenario applies from day `from_day` on (the first day not yet simulated).
    ScenarioReplaced {
        run: JobId,
        from_day: u32,
        info: Arc<RemodelInfo>,
    },
    /// A command could not be applied (e.g. a scenario shorter than the days already
    /// simulated); the run goes on unchanged.
    Rejected { run: Option<JobId>, message: String },
    /// All days of the scenario are simulated; the run stays loaded (scrubbing, or a longer
    /// scenario applied from the next day).
    Finished { run: JobId, day: u32 },
    /// The run was cancelled after `day` days.
    Cancelled { run: JobId, day: u32 },
    /// The run failed (bad model or scenario, solver failure); the message says why.
    Failed { run: JobId, message: String },
}

impl RemodelEvent {
    /// The run an event belongs to (`None` for a rejection without a run).
    pub fn run(&self) -> Option<JobId> {
        match self {
            RemodelEvent::Started(info) => Some(info.run),
            RemodelEvent::Preparing { run, .. }
            | RemodelEvent::Day { run, .. }
            | RemodelEvent::Paused { run, .. }
            | RemodelEvent::Resumed { run, .. }
            | RemodelEvent::ScenarioReplaced { run, .. }
            | RemodelEvent::Finished { run, .. }
            | RemodelEvent::Cancelled { run, .. }
            | RemodelEvent::Failed { run, .. } => Some(*run),
            RemodelEvent::Rejected { run, .. } => *run,
        }
    }
}

/// The BMD-change field (% against day 0, per element) of one day, as stored.
///
/// Values are quantised to `i16` hundredths of a percent (resolution 0.01 %, range
/// ±327.67 %, beyond which they saturate): half the memory of `f32` and far finer than any
/// colour map shows.
#[derive(Clone, Debug, PartialEq)]
pub struct DayField {
    /// The day this field belongs to (the stored day nearest below the one asked for).
    pub day: u32,
    pub centi_percent: Arc<[i16]>,
}

impl DayField {
    /// The field in percent, one value per element.
    pub fn to_percent(&self) -> Vec<f32> {
        self.centi_percent
            .iter()
            .map(|&v| v as f32 * 0.01)
            .collect()
    }

    /// Quantises a percent field (NaN becomes 0).
    pub fn quantise(percent: &[f32]) -> Arc<[i16]> {
        percent
            .iter()
            .map(|&p| {
                let c = (p as f64 * 100.0).round();
                if c.is_nan() {
                    0
                } else {
                    c.clamp(i16::MIN as f64, i16::MAX as f64) as i16
                }
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct HistoryInner {
    run: JobId,
    /// Days kept: multiples of `stride` (doubled whenever the budget is exceeded).
    stride: u32,
    /// Stored fields, increasing day.
    frames: VecDeque<DayField>,
    /// The newest field, always kept.
    latest: Option<DayField>,
    bytes: usize,
    budget_bytes: usize,
}

/// The per-day element fields of the current run, shared between the simulation thread
/// (which appends one per day before announcing the day) and readers (the app's scrubber).
///
/// Memory is bounded: when the stored fields exceed the budget, every other day is dropped
/// and from then on only every `2^k`-th day is kept; [`FieldHistory::field_at`] returns the
/// nearest stored day at or below the one asked for, and the newest day is always kept.
#[derive(Clone, Debug)]
pub struct FieldHistory {
    inner: Arc<Mutex<HistoryInner>>,
}

impl FieldHistory {
    /// An empty history with a memory budget in bytes.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HistoryInner {
                stride: 1,
                budget_bytes,
                ..HistoryInner::default()
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HistoryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets everything and starts collecting for `run`.
    pub(crate) fn reset(&self, run: JobId) {
        let mut h = self.lock();
        let budget = h.budget_bytes;
        *h = HistoryInner {
            run,
            stride: 1,
            budget_bytes: budget,
            ..HistoryInner::default()
        };
    }

    /// Records the field of `day` (percent per element) for `run`; ignored for another run.
    pub(crate) fn push(&self, run: JobId, day: u32, percent: &[f32]) {
        let field = DayField {
            day,
            centi_percent: DayField::quantise(percent),
        };
        let mut h = self.lock();
        if h.run != run {
            return;
        }
        // Days already stored at or after `day` belong to a superseded branch (cannot
        // happen within a run, but keep the order invariant regardless).
        while h.frames.back().is_some_and(|f| f.day >= day) {
            if let Some(f) = h.frames.pop_back() {
                h.bytes -= 2 * f.centi_percent.len();
            }
        }
        if day.is_multiple_of(h.stride) {
            h.bytes += 2 * field.centi_percent.len();
            h.frames.push_back(field.clone());
        }
        h.latest = Some(field);
        while h.bytes > h.budget_bytes && h.frames.len() > 1 {
            h.stride = h.stride.saturating_mul(2);
            let stride = h.stride;
            let mut bytes = 0;
            h.frames.retain(|f| {
                let keep = f.day.is_multiple_of(stride);
                if keep {
                    bytes += 2 * f.centi_percent.len();
                }
                keep
            });
            h.bytes = bytes;
        }
    }

    /// The stored field of `run` at `day`, or the nearest stored day below it (the newest
    /// day for any later day). `None` for another run or before anything was stored.
    pub fn field_at(&self, run: JobId, day: u32) -> Option<DayField> {
        let h = self.lock();
        if h.run != run {
            return None;
        }
        let latest = h.latest.as_ref()?;
        if day >= latest.day {
            return Some(latest.clone());
        }
        let idx = h.frames.partition_point(|f| f.day <= day);
        if idx == 0 {
            return None;
        }
        h.frames.get(idx - 1).cloned()
    }

    /// The newest day stored for `run`.
    pub fn latest_day(&self, run: JobId) -> Option<u32> {
        let h = self.lock();
        if h.run != run {
            return None;
        }
        h.latest.as_ref().map(|f| f.day)
    }

    /// Every how many days a field is kept (1 until the budget was exceeded).
    pub fn stride(&self) -> u32 {
        self.lock().stride
    }

    /// Bytes held by the stored fields (the newest one not counted twice).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl Default for FieldHistory {
    fn default() -> Self {
        Self::new(DEFAULT_FIELD_HISTORY_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisation_is_centi_percent_and_saturates() {
        let q = DayField::quantise(&[-1.234, 0.006, f32::NAN, 1e9, -1e9]);
        assert_eq!(&*q, &[-123, 1, 0, i16::MAX, i16::MIN]);
        let f = DayField {
            day: 0,
            centi_percent: q,
        };
        assert!((f.to_percent()[0] + 1.23).abs() < 1e-6);
    }

    #[test]
    fn history_thins_to_the_budget_and_answers_the_nearest_day_below() {
        // 10 elements = 20 bytes a day; a budget of 100 bytes holds 5 days.
        let h = FieldHistory::new(100);
        h.reset(7);
        for day in 0..=20u32 {
            h.push(7, day, &[day as f32; 10]);
        }
        assert!(h.bytes() <= 100, "{} bytes", h.bytes());
        assert!(h.stride() >= 4);
        // The newest day is always exact.
        assert_eq!(h.field_at(7, 20).unwrap().day, 20);
        assert_eq!(h.field_at(7, 99).unwrap().day, 20);
        // Any other day maps to a stored day at or below it, within one stride.
        for day in 0..20 {
            let f = h.field_at(7, day).unwrap();
            assert!(
                f.day <= day && day - f.day < h.stride(),
                "{day} -> {}",
                f.day
            );
            assert!((f.to_percent()[0] - f.day as f32).abs() < 1e-3);
        }
        // Another run sees nothing; pushes for it are ignored.
        assert!(h.field_at(8, 3).is_none());
        h.push(8, 21, &[0.0; 10]);
        assert_eq!(h.latest_day(7), Some(20));
        h.reset(8);
        assert!(h.field_at(7, 3).is_none());
        assert_eq!(h.latest_day(8), None);
    }
}
