//! State of the vertebra view: the remodeling run as the app knows it (from runner events),
//! the displayed day, the scenario and vertebra being edited, the clip plane and colour
//! range. The panels edit this resource and send runner commands; nothing here computes.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bevy::prelude::*;

use osteolab::remodel::ct::{CtParams, HuCalibration};
use osteolab::remodel::scenario::{Phase, Scenario};
use osteolab::remodel::simulation::{DayRecord, RemodelConfig};
use osteolab::remodel::vertebra::VertebraParams;
use osteolab::runner::{
    JobId, RemodelCommand, RemodelEvent, RemodelInfo, StartRemodel, VertebraSource,
};
use osteolab::volume::Dims;
use osteolab::volume::segment::VoxelBox;

use super::bridge::Sim;

/// The scenario the app opens with.
pub const DEFAULT_SCENARIO: &str = "spaceflight-215";

/// Default colour range of the BMD change, % (most runs lose bone).
pub const DEFAULT_RANGE_PCT: (f32, f32) = (-15.0, 5.0);

/// Days per second of the replay animation through already computed days.
pub const REPLAY_DAYS_PER_SECOND: f32 = 40.0;

/// What the app believes the run is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum RunStatus {
    /// No run requested yet.
    Idle,
    /// Building the model / solving day 0.
    Preparing(String),
    Running,
    Paused,
    /// Every day of the scenario is computed.
    Finished,
    Cancelled,
    Failed,
}

impl RunStatus {
    pub fn label(&self) -> String {
        match self {
            RunStatus::Idle => "no run".into(),
            RunStatus::Preparing(m) => format!("preparing: {m}"),
            RunStatus::Running => "running".into(),
            RunStatus::Paused => "paused".into(),
            RunStatus::Finished => "finished".into(),
            RunStatus::Cancelled => "stopped".into(),
            RunStatus::Failed => "failed".into(),
        }
    }
}

/// How an edited scenario is applied to a loaded run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyMode {
    /// From the next simulated day on; the days computed so far stay.
    NextDay,
    /// A new run from day 0 on the same vertebra.
    Restart,
}

/// What a pending file dialog of the vertebra view is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogPurpose {
    LoadScenario,
    SaveScenario,
    PickCt,
}

/// Editable CT source (see `osteolab::remodel::ct`).
#[derive(Clone, Debug)]
pub struct CtDraft {
    pub path: String,
    pub box_min: [usize; 3],
    pub box_size: [usize; 3],
    pub calibration: HuCalibration,
}

impl Default for CtDraft {
    fn default() -> Self {
        Self {
            path: String::new(),
            box_min: [0; 3],
            box_size: [64, 64, 40],
            calibration: HuCalibration::default(),
        }
    }
}

impl CtDraft {
    pub fn source(&self) -> VertebraSource {
        let [nx, ny, nz] = self.box_size;
        let mut params = CtParams::new(VoxelBox {
            min: self.box_min,
            dims: Dims::new(nx, ny, nz),
        });
        params.calibration = self.calibration;
        VertebraSource::Ct {
            path: PathBuf::from(self.path.trim()),
            params,
        }
    }
}

/// Throughput of day records reaching the app.
#[derive(Clone, Debug, Default)]
pub struct StreamStats {
    /// Day records (after day 0) received for the current run.
    pub days: u64,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// Smoothed rate over the last second or so, days/s.
    pub rate: f32,
    window_start: Option<(Instant, u64)>,
}

impl StreamStats {
    fn record(&mut self, now: Instant) {
        self.days += 1;
        self.first.get_or_insert(now);
        self.last = Some(now);
        let (t0, d0) = *self.window_start.get_or_insert((now, self.days - 1));
        let dt = (now - t0).as_secs_f32();
        if dt >= 0.5 {
            self.rate = (self.days - d0) as f32 / dt;
            self.window_start = Some((now, self.days));
        }
    }

    /// Mean days/s from the first to the last record.
    pub fn mean_rate(&self) -> Option<f64> {
        let (a, b) = (self.first?, self.last?);
        let dt = (b - a).as_secs_f64();
        (self.days > 1 && dt > 0.0).then(|| (self.days - 1) as f64 / dt)
    }

    pub fn summary(&self) -> String {
        match (self.mean_rate(), self.first, self.last) {
            (Some(rate), Some(a), Some(b)) => format!(
                "osteolab: remodel: {} simulated days reached the app in {:.1} s ({rate:.1} days/s)",
                self.days,
                (b - a).as_secs_f64()
            ),
            _ => format!(
                "osteolab: remodel: {} simulated days reached the app",
                self.days
            ),
        }
    }
}

/// Everything the vertebra view shows or edits.
#[derive(Resource)]
pub struct RemodelState {
    // The run, from events.
    /// The run the app waits for or shows (the id of the last Start or restart sent).
    pub run: Option<JobId>,
    pub info: Option<Arc<RemodelInfo>>,
    /// Day records of the run; index = day.
    pub series: Vec<DayRecord>,
    pub status: RunStatus,
    /// Last error or refusal, shown in the panels.
    pub message: Option<String>,
    /// Last informational note (e.g. "scenario applied from day 40").
    pub note: Option<String>,
    /// The source of the model of the current run.
    pub source: VertebraSource,
    pub stats: StreamStats,

    // Display.
    /// The day whose field colours the vertebra.
    pub shown_day: u32,
    /// Show each new day as it arrives.
    pub follow_latest: bool,
    /// Animating through computed days (replay), with the fractional day.
    pub replay: Option<f32>,
    pub clip_enabled: bool,
    /// Clip plane position, mm (`None` = the mid-sagittal plane of the model).
    pub clip_x_mm: Option<f32>,
    /// Keep the half x ≤ plane (true) or x ≥ plane.
    pub keep_below: bool,
    pub range_min_pct: f32,
    pub range_max_pct: f32,

    // Editing.
    pub draft: Scenario,
    pub builtin_choice: String,
    pub apply_mode: ApplyMode,
    pub vertebra_params: VertebraParams,
    pub ct: CtDraft,
    pub scenario_path: String,
    /// Result of the last scenario load/save.
    pub file_status: Option<Result<String, String>>,
    pub dialog: Option<(DialogPurpose, Mutex<Receiver<Option<PathBuf>>>)>,

    // Start-up.
    pub remodel_on_start: bool,
    pub launch_sent: bool,
}

impl Default for RemodelState {
    fn default() -> Self {
        let draft = Scenario::builtin(DEFAULT_SCENARIO).unwrap_or_else(|| Scenario {
            name: "habitual".into(),
            description: String::new(),
            phases: vec![Phase::habitual("habitual", 365)],
        });
        Self {
            run: None,
            info: None,
            series: Vec::new(),
            status: RunStatus::Idle,
            message: None,
            note: None,
            source: VertebraSource::Builtin(VertebraParams::default()),
            stats: StreamStats::default(),
            shown_day: 0,
            follow_latest: true,
            replay: None,
            clip_enabled: true,
            clip_x_mm: None,
            keep_below: true,
            range_min_pct: DEFAULT_RANGE_PCT.0,
            range_max_pct: DEFAULT_RANGE_PCT.1,
            draft,
            builtin_choice: DEFAULT_SCENARIO.into(),
            apply_mode: ApplyMode::NextDay,
            vertebra_params: VertebraParams::default(),
            ct: CtDraft::default(),
            scenario_path: String::new(),
            file_status: None,
            dialog: None,
            remodel_on_start: false,
            launch_sent: false,
        }
    }
}

impl RemodelState {
    /// The newest computed day.
    pub fn latest_day(&self) -> u32 {
        self.series.last().map_or(0, |r| r.day)
    }

    /// Whether the run is computing (set-up included).
    pub fn is_computing(&self) -> bool {
        matches!(self.status, RunStatus::Running | RunStatus::Preparing(_))
    }

    /// Name of the phase `day` belongs to (the record's phase, or the scenario's).
    pub fn phase_label(&self, day: u32) -> String {
        if let Some(r) = self.series.get(day as usize)
            && day > 0
        {
            return r.phase.clone();
        }
        self.info
            .as_ref()
            .and_then(|i| i.scenario.phase_at(day).map(|(_, p)| p.name.clone()))
            .unwrap_or_default()
    }

    /// Applies one runner event; events of other runs are ignored.
    pub fn apply(&mut self, event: RemodelEvent) {
        if let RemodelEvent::Rejected { run, message } = &event {
            if run.is_none() || *run == self.run {
                self.message = Some(message.clone());
            }
            return;
        }
        if event.run() != self.run {
            return;
        }
        match event {
            RemodelEvent::Preparing { message, .. } => {
                self.status = RunStatus::Preparing(message);
            }
            RemodelEvent::Started(info) => {
                info!(
                    "remodel: {} ({} elements), scenario {} ({} days), set up in {:.2} s",
                    info.label,
                    info.element_count,
                    info.scenario.name,
                    info.total_days,
                    info.setup_seconds
                );
                self.info = Some(info);
                self.series.clear();
                self.shown_day = 0;
                self.replay = None;
                self.status = RunStatus::Running;
                self.stats = StreamStats::default();
            }
            RemodelEvent::Day { record, .. } => {
                if record.day > 0 {
                    self.stats.record(Instant::now());
                }
                // Keep index = day (a record is never skipped, but stay robust).
                self.series.truncate(record.day as usize);
                let day = record.day;
                self.series.push(record);
                if self.follow_latest && self.replay.is_none() {
                    self.shown_day = day;
                }
            }
            RemodelEvent::Paused { .. } => self.status = RunStatus::Paused,
            RemodelEvent::Resumed { .. } => {
                self.status = RunStatus::Running;
                self.message = None;
            }
            RemodelEvent::ScenarioReplaced { from_day, info, .. } => {
                self.note = Some(format!(
                    "scenario `{}` applies from day {from_day}",
                    info.scenario.name
                ));
                self.info = Some(info);
            }
            RemodelEvent::Finished { day, .. } => {
                self.status = RunStatus::Finished;
                info!("remodel: finished at day {day}; {}", self.stats.summary());
            }
            RemodelEvent::Cancelled { day, .. } => {
                self.status = RunStatus::Cancelled;
                self.note = Some(format!("stopped after day {day}"));
            }
            RemodelEvent::Failed { message, .. } => {
                self.status = RunStatus::Failed;
                self.message = Some(message);
            }
            RemodelEvent::Rejected { .. } => {}
        }
    }

    fn send(&mut self, sim: &Sim, command: RemodelCommand) -> Option<JobId> {
        match sim.runner.remodel(command) {
            Ok(id) => Some(id),
            Err(e) => {
                self.message = Some(e.to_string());
                None
            }
        }
    }

    /// Starts a new run of `scenario` on `source` (validated here, errors shown).
    pub fn start(
        &mut self,
        sim: &Sim,
        source: VertebraSource,
        scenario: Scenario,
        start_paused: bool,
    ) {
        if let Err(e) = scenario.validate() {
            self.message = Some(e.to_string());
            return;
        }
        if let VertebraSource::Builtin(p) = &source
            && let Err(e) = p.validate()
        {
            self.message = Some(e.to_string());
            return;
        }
        let command = RemodelCommand::Start(Box::new(StartRemodel {
            vertebra: source.clone(),
            scenario,
            config: RemodelConfig::default(),
            start_paused,
        }));
        if let Some(run) = self.send(sim, command) {
            self.run = Some(run);
            self.source = source;
            self.status = RunStatus::Preparing("queued".into());
            self.message = None;
            self.note = None;
            self.follow_latest = true;
            self.replay = None;
        }
    }

    /// Runs the draft scenario from day 0 on the current model (a restart when a model is
    /// loaded, a fresh start otherwise).
    pub fn run_draft_from_start(&mut self, sim: &Sim) {
        if self.info.is_some() {
            self.apply_draft(sim, ApplyMode::Restart);
        } else {
            let source = self.source.clone();
            self.start(sim, source, self.draft.clone(), false);
        }
    }

    /// Applies the draft scenario to the loaded run.
    pub fn apply_draft(&mut self, sim: &Sim, mode: ApplyMode) {
        if let Err(e) = self.draft.validate() {
            self.message = Some(e.to_string());
            return;
        }
        if self.info.is_none() {
            let source = self.source.clone();
            return self.start(sim, source, self.draft.clone(), false);
        }
        let restart = mode == ApplyMode::Restart
            || matches!(self.status, RunStatus::Cancelled | RunStatus::Failed);
        let command = RemodelCommand::ReplaceScenario {
            scenario: self.draft.clone(),
            restart,
        };
        if let Some(id) = self.send(sim, command) {
            self.message = None;
            if restart {
                self.run = Some(id);
                self.status = RunStatus::Preparing("restarting".into());
                self.follow_latest = true;
                self.replay = None;
            }
        }
    }

    pub fn pause(&mut self, sim: &Sim) {
        self.send(sim, RemodelCommand::Pause);
    }

    pub fn resume(&mut self, sim: &Sim) {
        self.follow_latest = true;
        self.replay = None;
        self.send(sim, RemodelCommand::Resume);
    }

    pub fn step(&mut self, sim: &Sim, days: u32) {
        self.follow_latest = true;
        self.replay = None;
        self.send(sim, RemodelCommand::Step { days });
    }

    pub fn cancel(&mut self, sim: &Sim) {
        self.send(sim, RemodelCommand::Cancel);
    }

    /// Loads a built-in scenario into the editor.
    pub fn pick_builtin(&mut self, name: &str) {
        if let Some(s) = Scenario::builtin(name) {
            self.draft = s;
            self.builtin_choice = name.into();
            self.file_status = None;
        }
    }

    /// Loads a scenario file into the editor (errors shown in the panel).
    pub fn load_scenario_file(&mut self, path: PathBuf) {
        match Scenario::load(&path) {
            Ok(s) => {
                self.file_status = Some(Ok(format!("loaded {}", path.display())));
                self.draft = s;
                self.builtin_choice.clear();
                self.scenario_path = path.display().to_string();
            }
            Err(e) => self.file_status = Some(Err(e.to_string())),
        }
    }

    /// Saves the draft scenario (validated, atomic write; errors shown in the panel).
    pub fn save_scenario_file(&mut self, path: PathBuf) {
        match self.draft.save(&path) {
            Ok(()) => {
                self.file_status = Some(Ok(format!("saved {}", path.display())));
                self.scenario_path = path.display().to_string();
            }
            Err(e) => self.file_status = Some(Err(e.to_string())),
        }
    }

    /// Advances the replay animation by `dt` seconds; ends it at the newest day.
    pub fn advance_replay(&mut self, dt: f32) {
        let Some(t) = self.replay else {
            return;
        };
        let latest = self.latest_day() as f32;
        let t = (t + dt * REPLAY_DAYS_PER_SECOND).min(latest);
        self.shown_day = t.floor() as u32;
        self.replay = if t >= latest { None } else { Some(t) };
        if self.replay.is_none() {
            self.follow_latest = true;
        }
    }
}

/// Opens a file dialog for the vertebra view on its own thread (never blocking the frame).
pub fn open_dialog(state: &mut RemodelState, purpose: DialogPurpose) {
    if state.dialog.is_some() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("osteolab-file-dialog".into())
        .spawn(move || {
            let picked = match purpose {
                DialogPurpose::LoadScenario => rfd::FileDialog::new()
                    .set_title("Load scenario")
                    .add_filter("scenario (TOML)", &["toml"])
                    .pick_file(),
                DialogPurpose::SaveScenario => rfd::FileDialog::new()
                    .set_title("Save scenario")
                    .add_filter("scenario (TOML)", &["toml"])
                    .set_file_name("scenario.toml")
                    .save_file(),
                DialogPurpose::PickCt => rfd::FileDialog::new()
                    .set_title("CT volume (NIfTI, sidecar .json; cancel to pick a DICOM folder)")
                    .add_filter("volumes", &["nii", "gz", "json", "dcm"])
                    .pick_file()
                    .or_else(|| {
                        rfd::FileDialog::new()
                            .set_title("DICOM series folder")
                            .pick_folder()
                    }),
            };
            let _ = tx.send(picked);
        });
    match spawned {
        Ok(_) => state.dialog = Some((purpose, Mutex::new(rx))),
        Err(e) => state.file_status = Some(Err(format!("could not open the file dialog: {e}"))),
    }
}

/// Handles a finished file dialog of the vertebra view.
pub fn poll_remodel_dialog(mut state: ResMut<RemodelState>) {
    let Some((purpose, rx)) = &state.dialog else {
        return;
    };
    let purpose = *purpose;
    let picked = match rx.lock().map(|rx| rx.try_recv()) {
        Ok(Ok(picked)) => picked,
        Ok(Err(std::sync::mpsc::TryRecvError::Empty)) => return,
        _ => None,
    };
    state.dialog = None;
    let Some(path) = picked else {
        state.file_status = Some(Err(
            "no file chosen (the dialog needs an XDG desktop portal; type a path instead)".into(),
        ));
        return;
    };
    match purpose {
        DialogPurpose::LoadScenario => state.load_scenario_file(path),
        DialogPurpose::SaveScenario => state.save_scenario_file(path),
        DialogPurpose::PickCt => state.ct.path = path.display().to_string(),
    }
}

/// Advances the replay animation each frame.
pub fn tick_replay(
    time: Res<Time>,
    mut state: ResMut<RemodelState>,
    mut redraw: MessageWriter<bevy::window::RequestRedraw>,
) {
    if state.replay.is_some() {
        state.advance_replay(time.delta_secs());
        redraw.write(bevy::window::RequestRedraw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osteolab::remodel::density::DensityRelations;
    use osteolab::remodel::vertebra::Vertebra;
    use osteolab::runner::section::VertebraGeometry;

    fn info(run: JobId) -> Arc<RemodelInfo> {
        let params = VertebraParams {
            width_mm: 24.0,
            depth_mm: 18.0,
            height_mm: 12.0,
            ..VertebraParams::default()
        };
        let v = Vertebra::builtin(&params, &DensityRelations::default()).unwrap();
        let scenario = Scenario {
            name: "t".into(),
            description: String::new(),
            phases: vec![Phase::habitual("a", 3), Phase::habitual("b", 2)],
        };
        Arc::new(RemodelInfo {
            run,
            source: VertebraSource::Builtin(params),
            label: "built-in".into(),
            element_count: v.element_count(),
            region_counts: v.region_counts(),
            grid: v.grid,
            total_days: scenario.total_days(),
            phase_starts: scenario.phase_starts(),
            phase_names: vec!["a".into(), "b".into()],
            scenario,
            geometry: Arc::new(VertebraGeometry::new(&v, 50_000).unwrap()),
            setup_seconds: 0.1,
        })
    }

    fn day(run: JobId, day: u32, phase: &str) -> RemodelEvent {
        RemodelEvent::Day {
            run,
            record: DayRecord {
                day,
                phase: phase.into(),
                bmd_trabecular_pct: -(day as f64),
                bmd_cortical_pct: 0.0,
                bmd_endplate_pct: 0.0,
                bmd_whole_pct: 0.0,
                bmd_trabecular_mg_cm3: 150.0,
                bmd_whole_mg_cm3: 200.0,
                bv_tv_trabecular: 0.12,
                mean_stimulus: 1.0,
                fe_solves: 1,
            },
        }
    }

    #[test]
    fn events_of_other_runs_are_ignored_and_the_view_follows_new_days() {
        let mut s = RemodelState {
            run: Some(5),
            ..RemodelState::default()
        };
        s.apply(RemodelEvent::Started(info(4)));
        assert!(s.info.is_none(), "a superseded run's Started is ignored");
        s.apply(RemodelEvent::Started(info(5)));
        assert_eq!(s.status, RunStatus::Running);
        for d in 0..=3 {
            s.apply(day(5, d, "a"));
        }
        s.apply(day(4, 9, "a"));
        assert_eq!(s.latest_day(), 3);
        assert_eq!(s.shown_day, 3);
        // Scrubbed back: new days no longer move the view.
        s.follow_latest = false;
        s.shown_day = 1;
        s.apply(day(5, 4, "b"));
        assert_eq!((s.shown_day, s.latest_day()), (1, 4));
        assert_eq!(s.phase_label(4), "b");
        s.apply(RemodelEvent::Rejected {
            run: Some(4),
            message: "old".into(),
        });
        assert!(s.message.is_none());
        s.apply(RemodelEvent::Failed {
            run: 5,
            message: "solver".into(),
        });
        assert_eq!(s.status, RunStatus::Failed);
        assert_eq!(s.message.as_deref(), Some("solver"));
    }

    #[test]
    fn replay_runs_through_the_computed_days_then_follows_again() {
        let mut s = RemodelState {
            run: Some(1),
            ..RemodelState::default()
        };
        s.apply(RemodelEvent::Started(info(1)));
        for d in 0..=5 {
            s.apply(day(1, d, "a"));
        }
        s.follow_latest = false;
        s.replay = Some(0.0);
        s.advance_replay(2.0 / REPLAY_DAYS_PER_SECOND);
        assert_eq!(s.shown_day, 2);
        s.advance_replay(100.0);
        assert_eq!(s.shown_day, 5);
        assert!(s.replay.is_none() && s.follow_latest);
    }
}
