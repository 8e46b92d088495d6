//! The fracture job on the simulation thread (see [`crate::runner::fracture`] for the
//! protocol): set-up (macroscale states, models, view geometry), then one specimen per step.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::{LIVE_SMOOTHING_SIGMA_VOXELS, Worker, panic_message};
use crate::fracture::micro::{TissueParams, apparent_measures, micro_model, micro_run_params};
use crate::fracture::vertebra::{
    FlightState, MicrostructureFactor, macroscale_states, vertebra_model,
};
use crate::fracture::{
    CurvePoint, DamageSnapshot, FractureControl, FractureError, FractureModel, FractureParams,
    run_to_failure,
};
use crate::mesh::{ExtractParams, SurfaceMesh, extract_surface_within, try_sample_voxel_field};
use crate::remodel::simulation::RemodelError;
use crate::remodel::vertebra::Vertebra;
use crate::runner::fracture::{
    CoreView, FractureCommand, FractureEvent, FractureInfo, FractureSummary, SharedResult,
    Specimen, SpecimenInfo, SpecimenResult, StartFracture,
};
use crate::runner::section::VertebraGeometry;
use crate::runner::{Event, JobId};
use crate::volume::BoneMask;

/// How often (in macroscale days) the set-up reports its progress.
const PREPARING_EVERY_DAYS: u32 = 5;

/// A model waiting for its run, and how its damage fields go to the screen.
enum Pending {
    /// A vertebra state; `to_vertebra[k]` is the vertebra element of model element `k`.
    State {
        model: FractureModel,
        to_vertebra: Arc<Vec<usize>>,
    },
    /// The trabecular cube and its view surface.
    Core {
        model: FractureModel,
        surface: Arc<SurfaceMesh>,
    },
}

impl Pending {
    fn model(&self) -> &FractureModel {
        match self {
            Pending::State { model, .. } | Pending::Core { model, .. } => model,
        }
    }
}

/// The job the worker holds while it has specimens to break.
pub(crate) struct FractureJob {
    run: JobId,
    started: Instant,
    params: FractureParams,
    /// The specimens still to break, in run order; each model is dropped once broken.
    specimens: VecDeque<(Specimen, Pending)>,
    /// Index of the next specimen in the run order.
    next: usize,
}

/// Why a set-up stopped.
enum SetupEnd {
    Cancelled,
    Failed(String),
}

impl Worker {
    /// Whether a fracture job has a specimen to break.
    pub(super) fn fracture_wants_step(&self) -> bool {
        self.fracture.is_some()
    }

    fn fracture_event(&self, event: FractureEvent) {
        self.emitter.send(Event::Fracture(event));
    }

    pub(super) fn fracture_command(&mut self, job: JobId, command: FractureCommand) {
        match command {
            FractureCommand::Start(start) => self.fracture_start(job, *start),
            FractureCommand::Cancel => {
                // The flag already stopped any solve; end the job here if stepping did not
                // notice it yet.
                if let Some(old) = self.fracture.take() {
                    self.fracture_event(FractureEvent::Cancelled {
                        run: old.run,
                        index: Some(old.next),
                    });
                }
            }
        }
    }

    fn fracture_start(&mut self, job: JobId, start: StartFracture) {
        if let Some(old) = self.fracture.take() {
            self.fracture_event(FractureEvent::Cancelled {
                run: old.run,
                index: Some(old.next),
            });
        }
        if self.fracture_cancel.begin_job(job) {
            return self.fracture_event(FractureEvent::Cancelled {
                run: job,
                index: None,
            });
        }
        let started = Instant::now();
        let built = catch_unwind(AssertUnwindSafe(|| self.build_fracture(job, &start)));
        let (state, mut info) = match built {
            Ok(Ok(b)) => b,
            Ok(Err(SetupEnd::Cancelled)) => {
                return self.fracture_event(FractureEvent::Cancelled {
                    run: job,
                    index: None,
                });
            }
            Ok(Err(SetupEnd::Failed(message))) => {
                return self.fracture_event(FractureEvent::Failed { run: job, message });
            }
            Err(panic) => {
                return self.fracture_event(FractureEvent::Failed {
                    run: job,
                    message: format!(
                        "internal error while setting up the fracture run: {}",
                        panic_message(&panic)
                    ),
                });
            }
        };
        info.setup_seconds = started.elapsed().as_secs_f64();
        self.fracture = Some(FractureJob { started, ..state });
        self.fracture_event(FractureEvent::Started(Arc::new(info)));
    }

    /// Runs the macroscale to the state days and builds every model and view.
    fn build_fracture(
        &self,
        run: JobId,
        start: &StartFracture,
    ) -> Result<(FractureJob, FractureInfo), SetupEnd> {
        let emitter = &self.emitter;
        let preparing = |message: String| {
            emitter.send(Event::Fracture(FractureEvent::Preparing { run, message }));
        };
        let cancel = &self.fracture_cancel;
        let cancelled = || cancel.is_cancelled(run);
        let failed =
            |what: &str, e: &dyn std::fmt::Display| SetupEnd::Failed(format!("{what}: {e}"));
        start
            .scenario
            .validate()
            .map_err(|e| failed("scenario", &e))?;
        start
            .params
            .validate()
            .map_err(|e| failed("fracture parameters", &e))?;
        let mut states: Vec<FlightState> = Vec::new();
        for s in &start.states {
            if !states.contains(s) {
                states.push(*s);
            }
        }
        let core = match start.core {
            Some(slot) => {
                let Some(held) = self.current.get(slot).as_ref() else {
                    return Err(SetupEnd::Failed(format!(
                        "no microstructure in the {} slot for the trabecular core: load or \
                         generate one first",
                        slot.label()
                    )));
                };
                Some((Arc::clone(&held.mask), held.info.label.clone()))
            }
            None => None,
        };
        if states.is_empty() && core.is_none() {
            return Err(SetupEnd::Failed(
                "nothing to break: no state and no core".into(),
            ));
        }
        preparing("building the built-in vertebra".into());
        let density = start.config.density;
        let vertebra = Vertebra::builtin(&start.vertebra, &density)
            .map_err(|e| failed("built-in vertebra", &e))?;
        let max_triangles = start.max_triangles.min(self.max_live_triangles).max(12);
        preparing("extracting the vertebra surface".into());
        let geometry = self
            .pool
            .install(|| VertebraGeometry::new(&vertebra, max_triangles))
            .map_err(SetupEnd::Failed)?;
        if cancelled() {
            return Err(SetupEnd::Cancelled);
        }
        let flag = &self.fracture_cancel.flag;
        let mut specimens = VecDeque::new();
        let mut infos = Vec::new();
        let mut coupled = false;
        if !states.is_empty() {
            preparing(format!("macroscale run ({})", start.scenario.name));
            let (vertebra, mut macro_states) = self
                .pool
                .install(|| {
                    macroscale_states(
                        start.config,
                        vertebra,
                        start.scenario.clone(),
                        &states,
                        Some(flag),
                        |day, last| {
                            if day % PREPARING_EVERY_DAYS == 0 || day == last {
                                preparing(format!("macroscale run: day {day}/{last}"));
                            }
                        },
                    )
                })
                .map_err(|e| match e {
                    FractureError::Cancelled
                    | FractureError::Remodel(RemodelError::Cancelled { .. }) => SetupEnd::Cancelled,
                    e => failed("macroscale run", &e),
                })?;
            // Couple every state or none, so that the states stay comparable.
            let factors: Option<Vec<MicrostructureFactor>> =
                start.coupling.as_ref().and_then(|c| {
                    macro_states
                        .iter()
                        .map(|st| {
                            MicrostructureFactor::from_checkpoints(
                                &c.checkpoints,
                                st.day,
                                &start.config.density,
                                &c.origin,
                            )
                            .ok()
                        })
                        .collect()
                });
            match factors {
                Some(f) => {
                    coupled = true;
                    for (st, f) in macro_states.iter_mut().zip(f) {
                        st.microstructure = f;
                    }
                }
                None => {
                    if let Some(c) = &start.coupling {
                        let days: Vec<u32> = c.checkpoints.iter().map(|c| c.day).collect();
                        for st in &mut macro_states {
                            st.microstructure.source = format!(
                                "not coupled: {} has no checkpoint at every state day \
                                 (checkpoints at days {days:?}); the density law at the \
                                 macroscale BMD alone changes the trabecular bone between \
                                 states",
                                c.origin
                            );
                        }
                    }
                }
            }
            // Model elements are in grid order; the vertebra numbers them its own way.
            let to_vertebra = Arc::new(vertebra.elements_in_grid_order());
            for st in &macro_states {
                if cancelled() {
                    return Err(SetupEnd::Cancelled);
                }
                let description = format!(
                    "built-in vertebra, {} (day {} of {})",
                    st.state.name(),
                    st.day,
                    start.scenario.name
                );
                let model = vertebra_model(
                    &vertebra,
                    &st.volume_fraction,
                    &density,
                    &start.material,
                    st.microstructure.value,
                    &description,
                )
                .map_err(|e| failed(&format!("{} model", st.state.name()), &e))?;
                infos.push(SpecimenInfo {
                    specimen: Specimen::State(st.state),
                    day: st.day,
                    phase: st.phase.clone(),
                    bmd_trabecular_pct: st.bmd_trabecular_pct,
                    bmd_whole_pct: st.bmd_whole_pct,
                    microstructure: st.microstructure.clone(),
                    elements: model.element_count(),
                    description,
                });
                specimens.push_back((
                    Specimen::State(st.state),
                    Pending::State {
                        model,
                        to_vertebra: Arc::clone(&to_vertebra),
                    },
                ));
            }
        }
        let mut core_view = None;
        if let Some((mask, label)) = core {
            preparing(format!("building the trabecular core ({label})"));
            let model = micro_model(&mask, &TissueParams::default())
                .map_err(|e| failed(&format!("trabecular core {label}"), &e))?;
            let params = ExtractParams {
                smoothing_sigma_voxels: LIVE_SMOOTHING_SIGMA_VOXELS,
                ..ExtractParams::default()
            };
            let (surface, mesh_step) = self
                .pool
                .install(|| extract_surface_within(&mask, &params, max_triangles));
            let surface = Arc::new(surface);
            core_view = Some(CoreView {
                surface: Arc::clone(&surface),
                mesh_step,
                label: label.clone(),
                bv_tv: mask.bv_tv(),
            });
            infos.push(SpecimenInfo {
                specimen: Specimen::Core,
                day: 0,
                phase: String::new(),
                bmd_trabecular_pct: 0.0,
                bmd_whole_pct: 0.0,
                microstructure: MicrostructureFactor {
                    value: 1.0,
                    source: "tissue-level model of the held structure".into(),
                },
                elements: model.element_count(),
                description: model.description.clone(),
            });
            specimens.push_back((Specimen::Core, Pending::Core { model, surface }));
        }
        let info = FractureInfo {
            run,
            scenario: start.scenario.name.clone(),
            step_fraction_of_onset: start.params.step_fraction_of_onset,
            end_load_fraction: start.params.end_load_fraction,
            specimens: infos,
            geometry: Arc::new(geometry),
            core: core_view,
            coupled,
            setup_seconds: 0.0,
        };
        let job = FractureJob {
            run,
            started: Instant::now(),
            params: start.params,
            specimens,
            next: 0,
        };
        Ok((job, info))
    }

    /// Breaks the next specimen and publishes its result.
    pub(super) fn fracture_step(&mut self) {
        let Some(job) = self.fracture.as_mut() else {
            return;
        };
        let (run, index) = (job.run, job.next);
        if self.fracture_cancel.is_cancelled(run) {
            self.fracture = None;
            return self.fracture_event(FractureEvent::Cancelled {
                run,
                index: Some(index),
            });
        }
        let Some((specimen, pending)) = job.specimens.pop_front() else {
            let seconds = job.started.elapsed().as_secs_f64();
            self.fracture = None;
            return self.fracture_event(FractureEvent::Finished { run, seconds });
        };
        job.next += 1;
        let (params, last, started) = (job.params, job.specimens.is_empty(), job.started);
        let emitter = &self.emitter;
        let on_point = |point: &CurvePoint| {
            emitter.send_progress(Event::Fracture(FractureEvent::Point {
                run,
                index,
                point: *point,
            }));
        };
        let control = FractureControl {
            cancel: Some(&self.fracture_cancel.flag),
            progress: Some(&on_point),
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.pool
                .install(|| break_specimen(specimen, &pending, &params, &control))
        }));
        drop(pending);
        let end = match outcome {
            Ok(Ok(result)) => {
                self.fracture_event(FractureEvent::SpecimenDone {
                    run,
                    index,
                    result: SharedResult(Arc::new(result)),
                });
                last.then(|| FractureEvent::Finished {
                    run,
                    seconds: started.elapsed().as_secs_f64(),
                })
            }
            Ok(Err(FractureError::Cancelled)) => Some(FractureEvent::Cancelled {
                run,
                index: Some(index),
            }),
            Ok(Err(e)) => Some(FractureEvent::Failed {
                run,
                message: format!("{}: {e}", specimen.label()),
            }),
            Err(panic) => Some(FractureEvent::Failed {
                run,
                message: format!(
                    "internal error while breaking the {}: {}",
                    specimen.label(),
                    panic_message(&panic)
                ),
            }),
        };
        if let Some(end) = end {
            self.fracture = None;
            self.fracture_event(end);
        }
    }
}

/// Runs one specimen to failure and turns its damage fields into view fields.
fn break_specimen(
    specimen: Specimen,
    pending: &Pending,
    params: &FractureParams,
    control: &FractureControl,
) -> Result<SpecimenResult, FractureError> {
    let model = pending.model();
    let result = match pending {
        Pending::Core { .. } => run_to_failure(model, &micro_run_params(params), control)?,
        Pending::State { .. } => run_to_failure(model, params, control)?,
    };
    let apparent =
        matches!(pending, Pending::Core { .. }).then(|| apparent_measures(model, &result));
    let damage = view_damage(pending, &result.damage).map_err(FractureError::InvalidParameter)?;
    Ok(SpecimenResult {
        specimen,
        summary: FractureSummary::of(&result),
        peak_index: result.peak_index(),
        curve: result.curve,
        damage,
        apparent,
    })
}

/// The damage snapshots as the view needs them: in vertebra element order for a state, per
/// surface vertex for the core.
fn view_damage(
    pending: &Pending,
    snapshots: &[DamageSnapshot],
) -> Result<Vec<DamageSnapshot>, String> {
    match pending {
        Pending::State { to_vertebra, .. } => Ok(snapshots
            .iter()
            .map(|s| {
                let mut damage = vec![0.0f32; to_vertebra.len()];
                for (k, &d) in s.damage.iter().enumerate() {
                    if let Some(&e) = to_vertebra.get(k) {
                        damage[e] = d;
                    }
                }
                DamageSnapshot {
                    point: s.point,
                    displacement_mm: s.displacement_mm,
                    damage,
                }
            })
            .collect()),
        Pending::Core { model, surface } => snapshots
            .iter()
            .map(|s| {
                let damage = surface_damage(&model.mask, &model.element_voxel, surface, &s.damage)?;
                Ok(DamageSnapshot {
                    point: s.point,
                    displacement_mm: s.displacement_mm,
                    damage,
                })
            })
            .collect(),
    }
}

/// Per-vertex damage of `surface` from element damage: element → voxel (0 in the marrow) →
/// vertex ([`try_sample_voxel_field`]).
pub(crate) fn surface_damage(
    mask: &BoneMask,
    element_voxel: &[usize],
    surface: &SurfaceMesh,
    element_damage: &[f32],
) -> Result<Vec<f32>, String> {
    if surface.is_empty() {
        return Ok(Vec::new());
    }
    let mut field = vec![0.0f32; mask.voxels.len()];
    for (&v, &d) in element_voxel.iter().zip(element_damage) {
        if let Some(f) = field.get_mut(v) {
            *f = d;
        }
    }
    try_sample_voxel_field(surface, &mask.grid, mask, &field, "damage").map_err(|e| e.to_string())
}
