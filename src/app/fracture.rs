//! The fracture mode of the vertebra view: its state, fed by the runner's fracture events
//! (`osteolab::runner::fracture`), and its start-up.
//!
//! The curves grow point by point from the best-effort [`FractureEvent::Point`] events and are
//! replaced by the whole curve when a specimen is done; the damage fields arrive with the
//! finished specimen, behind an `Arc`.

use std::sync::Arc;

use bevy::prelude::*;
use bevy::window::RequestRedraw;

use osteolab::fracture::CurvePoint;
use osteolab::fracture::vertebra::FlightState;
use osteolab::remodel::scenario::Scenario;
use osteolab::runner::fracture::{
    FINE_STEP_FRACTION, FRACTURE_SCENARIO, MicroCoupling, SharedResult,
};
use osteolab::runner::{
    FractureCommand, FractureEvent, FractureInfo, JobId, MicroSlot, Specimen, StartFracture,
};

use super::bridge::{BridgeSet, Sim, UiState};
use super::multiscale::{MsStatus, MultiscaleState};

/// Which of the vertebra view's two modes is shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VertebraMode {
    #[default]
    Remodeling,
    Fracture,
}

/// Where the fracture run is.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum FractureStatus {
    #[default]
    Idle,
    /// Sent, set-up in progress (the message of the last Preparing event).
    Preparing(String),
    Running,
    Finished {
        seconds: f64,
    },
    Cancelled,
    Failed(String),
}

impl FractureStatus {
    pub fn label(&self) -> String {
        match self {
            FractureStatus::Idle => "not run yet".into(),
            FractureStatus::Preparing(m) => m.clone(),
            FractureStatus::Running => "breaking…".into(),
            FractureStatus::Finished { seconds } => format!("done in {seconds:.0} s"),
            FractureStatus::Cancelled => "cancelled".into(),
            FractureStatus::Failed(m) => format!("failed: {m}"),
        }
    }

    pub fn is_ended(&self) -> bool {
        matches!(
            self,
            FractureStatus::Finished { .. } | FractureStatus::Cancelled | FractureStatus::Failed(_)
        )
    }
}

/// One specimen of the run: its curve so far and, once done, its result.
#[derive(Clone, Debug, Default)]
pub struct SpecimenState {
    /// (displacement mm, load N) points received so far (the whole curve once done).
    pub points: Vec<CurvePoint>,
    pub result: Option<SharedResult>,
}

/// The fracture mode's state.
#[derive(Resource)]
pub struct FractureState {
    pub mode: VertebraMode,
    /// The run the app waits for or shows (the id of the last Start sent).
    pub run: Option<JobId>,
    pub info: Option<Arc<FractureInfo>>,
    pub status: FractureStatus,
    /// One entry per specimen of `info`, in run order.
    pub specimens: Vec<SpecimenState>,
    /// The specimen being broken.
    pub current: Option<usize>,

    // Settings of the next run.
    pub step_fraction: f64,
    /// Which states to break.
    pub states: [bool; 3],
    /// Also break the trabecular core held in this slot.
    pub core: Option<MicroSlot>,

    // Display.
    /// The specimen whose damage is drawn.
    pub selected: usize,
    /// The curve point whose damage is drawn.
    pub point: usize,
    /// Follow the newest point of the running curve (and the peak once done).
    pub follow: bool,

    // Start-up.
    pub on_start: bool,
    pub start_sent: bool,
}

impl Default for FractureState {
    fn default() -> Self {
        Self {
            mode: VertebraMode::Remodeling,
            run: None,
            info: None,
            status: FractureStatus::Idle,
            specimens: Vec::new(),
            current: None,
            step_fraction: FINE_STEP_FRACTION,
            states: [true; 3],
            core: None,
            selected: 0,
            point: 0,
            follow: true,
            on_start: false,
            start_sent: false,
        }
    }
}

/// `OSTEOLAB_FRACTURE_STEP`: the step of a scripted run (e.g. 0.1 in tests).
fn env_step() -> Option<f64> {
    std::env::var("OSTEOLAB_FRACTURE_STEP")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
}

/// `OSTEOLAB_FRACTURE_STATES`: the states of a scripted run, e.g. `pre,post`.
fn env_states() -> Option<[bool; 3]> {
    let v = std::env::var("OSTEOLAB_FRACTURE_STATES").ok()?;
    let mut on = [false; 3];
    for s in v.split(',') {
        let st = FlightState::parse(s.trim())?;
        on[state_index(st)] = true;
    }
    on.iter().any(|&b| b).then_some(on)
}

pub fn state_index(state: FlightState) -> usize {
    FlightState::ALL
        .iter()
        .position(|&s| s == state)
        .unwrap_or(0)
}

impl FractureState {
    /// The state of a scripted start (`--fracture-on-start`): fracture mode, with the step
    /// and states of the environment when given.
    pub fn scripted(on_start: bool) -> Self {
        let mut s = Self {
            on_start,
            ..Self::default()
        };
        if on_start {
            s.mode = VertebraMode::Fracture;
            if let Some(step) = env_step() {
                s.step_fraction = step;
            }
            if let Some(states) = env_states() {
                s.states = states;
            }
        }
        s
    }

    pub fn is_computing(&self) -> bool {
        matches!(
            self.status,
            FractureStatus::Preparing(_) | FractureStatus::Running
        )
    }

    /// The finished result of specimen `index`.
    pub fn result(&self, index: usize) -> Option<&SharedResult> {
        self.specimens.get(index)?.result.as_ref()
    }

    /// Index of the pre-flight state, if it is part of the run.
    pub fn pre_index(&self) -> Option<usize> {
        self.info
            .as_ref()?
            .specimens
            .iter()
            .position(|s| s.specimen == Specimen::State(FlightState::Pre))
    }

    pub fn apply(&mut self, event: FractureEvent) {
        if Some(event.run()) != self.run {
            return;
        }
        match event {
            FractureEvent::Preparing { message, .. } => {
                self.status = FractureStatus::Preparing(message);
            }
            FractureEvent::Started(info) => {
                self.specimens = vec![SpecimenState::default(); info.specimens.len()];
                self.info = Some(info);
                self.status = FractureStatus::Running;
                self.current = Some(0);
                self.selected = 0;
                self.point = 0;
            }
            FractureEvent::Point { index, point, .. } => {
                if let Some(s) = self.specimens.get_mut(index) {
                    s.points.push(point);
                    self.current = Some(index);
                    if self.follow && self.selected == index {
                        self.point = s.points.len() - 1;
                    }
                }
            }
            FractureEvent::SpecimenDone { index, result, .. } => {
                if let Some(s) = self.specimens.get_mut(index) {
                    s.points = result.curve.clone();
                    let peak = result.peak_index;
                    s.result = Some(result);
                    // Show the newest finished specimen at its peak while following.
                    if self.follow {
                        self.selected = index;
                        self.point = peak;
                    }
                }
                self.current = Some(index + 1).filter(|&i| i < self.specimens.len());
            }
            FractureEvent::Finished { seconds, .. } => {
                self.status = FractureStatus::Finished { seconds };
                self.current = None;
            }
            FractureEvent::Cancelled { .. } => {
                self.status = FractureStatus::Cancelled;
                self.current = None;
            }
            FractureEvent::Failed { message, .. } => {
                self.status = FractureStatus::Failed(message);
                self.current = None;
            }
        }
    }

    /// Starts a run with the panel's settings; the states' trabecular factors come from the
    /// session's multiscale run when it has a checkpoint at every state day.
    pub fn start(&mut self, sim: &Sim, multiscale: &MultiscaleState) {
        let states: Vec<FlightState> = FlightState::ALL
            .into_iter()
            .zip(self.states)
            .filter_map(|(s, on)| on.then_some(s))
            .collect();
        let Some(scenario) = Scenario::builtin(FRACTURE_SCENARIO) else {
            self.status = FractureStatus::Failed(format!(
                "the built-in scenario {FRACTURE_SCENARIO} is missing"
            ));
            return;
        };
        let mut start = StartFracture::new(scenario, self.step_fraction);
        start.states = states;
        start.core = self.core;
        start.coupling = coupling(multiscale);
        match sim.runner.fracture(FractureCommand::Start(Box::new(start))) {
            Ok(run) => {
                self.run = Some(run);
                self.info = None;
                self.specimens.clear();
                self.current = None;
                self.follow = true;
                self.status = FractureStatus::Preparing("starting".into());
            }
            Err(e) => self.status = FractureStatus::Failed(e.to_string()),
        }
    }

    pub fn cancel(&mut self, sim: &Sim) {
        if let Err(e) = sim.runner.fracture(FractureCommand::Cancel) {
            self.status = FractureStatus::Failed(e.to_string());
        }
    }
}

/// The session's multiscale run as a coupling, when it ran the fracture scenario.
fn coupling(multiscale: &MultiscaleState) -> Option<MicroCoupling> {
    let info = multiscale.info.as_ref()?;
    if info.scenario.name != FRACTURE_SCENARIO || multiscale.checkpoints.is_empty() {
        return None;
    }
    let state = match multiscale.status {
        MsStatus::Finished => "finished",
        _ => "in progress",
    };
    Some(MicroCoupling {
        origin: format!(
            "this session's multiscale run on {} ({state})",
            info.structure
        ),
        checkpoints: multiscale.checkpoints.clone(),
    })
}

/// Sends the scripted start once the runner is up, and keeps the window redrawing while the
/// run computes.
fn drive_fracture(
    sim: Option<Res<Sim>>,
    mut state: ResMut<FractureState>,
    multiscale: Res<MultiscaleState>,
    ui: Res<UiState>,
    mut redraw: MessageWriter<RequestRedraw>,
) {
    let Some(sim) = sim else {
        return;
    };
    if state.on_start && !state.start_sent {
        // A scripted run with the core waits for the micro view's structures.
        if state.core.is_some() && !ui.startup_settled() {
            return;
        }
        state.start_sent = true;
        state.start(&sim, &multiscale);
    }
    if state.is_computing() {
        redraw.write(RequestRedraw);
    }
}

pub struct FracturePlugin {
    pub on_start: bool,
}

impl Plugin for FracturePlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(FractureState::scripted(self.on_start))
            .add_systems(Update, drive_fracture.after(BridgeSet));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osteolab::fracture::EndPoint;
    use osteolab::runner::fracture::{FractureSummary, SpecimenResult};

    fn point(w: f64, f: f64) -> CurvePoint {
        CurvePoint {
            displacement_mm: w,
            load_n: f,
            iterations: 1,
            cg_iterations: 1,
            converged: true,
            damaged_elements: 0,
            max_damage: 0.0,
            strain_energy_mj: 0.0,
            dissipated_energy_mj: 0.0,
        }
    }

    fn result(curve: Vec<CurvePoint>, peak: usize) -> SharedResult {
        SharedResult(Arc::new(SpecimenResult {
            specimen: Specimen::State(FlightState::Pre),
            summary: FractureSummary {
                stiffness_kn_per_mm: 1.0,
                peak_load_kn: 1.0,
                displacement_at_peak_mm: 1.0,
                energy_to_peak_j: 1.0,
                energy_to_end_j: 1.0,
                end_displacement_mm: 1.0,
                end_point: EndPoint::MaxIncrements,
                increments: curve.len(),
                unconverged_increments: 0,
                points: curve.len(),
                seconds: 0.0,
            },
            peak_index: peak,
            curve,
            damage: Vec::new(),
            apparent: None,
        }))
    }

    #[test]
    fn points_grow_the_curve_and_the_finished_curve_replaces_them() {
        let mut s = FractureState {
            run: Some(7),
            specimens: vec![SpecimenState::default(); 2],
            ..FractureState::default()
        };
        // Another run's point is ignored.
        s.apply(FractureEvent::Point {
            run: 6,
            index: 0,
            point: point(0.1, 1.0),
        });
        assert!(s.specimens[0].points.is_empty());
        for i in 0..3 {
            s.apply(FractureEvent::Point {
                run: 7,
                index: 0,
                point: point(0.1 * i as f64, i as f64),
            });
        }
        assert_eq!(s.specimens[0].points.len(), 3);
        assert_eq!(s.point, 2, "following the newest point");
        let full: Vec<CurvePoint> = (0..5).map(|i| point(0.1 * i as f64, 1.0)).collect();
        s.apply(FractureEvent::SpecimenDone {
            run: 7,
            index: 0,
            result: result(full, 3),
        });
        assert_eq!(s.specimens[0].points.len(), 5);
        assert_eq!(
            (s.selected, s.point),
            (0, 3),
            "the finished curve at its peak"
        );
        assert_eq!(s.current, Some(1));
        s.apply(FractureEvent::Cancelled {
            run: 7,
            index: Some(1),
        });
        assert_eq!(s.status, FractureStatus::Cancelled);
        assert!(!s.is_computing());
    }
}
