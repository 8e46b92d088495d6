//! The multiscale job on the simulation thread (see [`crate::runner::multiscale`] for the
//! protocol): set-up, one checkpoint per step, the structures' surfaces coloured by change
//! against the original.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::{LIVE_SMOOTHING_SIGMA_VOXELS, Worker, panic_message};
use crate::mesh::{ExtractParams, SurfaceMesh, extract_surface_within};
use crate::multiscale::{
    BvTvMapping, Checkpoint, MultiscaleError, MultiscaleParams, MultiscaleRun, RunControl,
    formed_field, parse_mapping,
};
use crate::remodel::simulation::{DayRecord, RemodelError, Simulation};
use crate::remodel::vertebra::Vertebra;
use crate::runner::multiscale::{
    CHANGE_FIELD, MultiscaleCommand, MultiscaleEvent, MultiscaleInfo, MultiscaleSnapshot,
    StartMultiscale, StructureView,
};
use crate::runner::{Event, JobId};
use crate::shapeopt::StepReport;
use crate::volume::BoneMask;

/// Level of the block-averaged indicator at which the resorbed bone's surface is drawn: lower
/// than the bone's ½, so that resorbed layers one voxel thick still show on a coarse live mesh.
const REMOVED_ISO_LEVEL: f32 = 0.3;

/// The job the worker holds while it has checkpoints to compute.
pub(crate) struct MultiscaleJob {
    run: JobId,
    ms: MultiscaleRun,
    original: Arc<StructureView>,
    lowest: Arc<StructureView>,
    latest: Arc<StructureView>,
    mapping: Arc<dyn BvTvMapping>,
    max_triangles: usize,
}

/// Why a set-up stopped.
enum SetupEnd {
    Cancelled,
    Failed(String),
}

impl Worker {
    /// Whether a multiscale job has a checkpoint to compute.
    pub(super) fn multiscale_wants_step(&self) -> bool {
        self.multiscale.is_some()
    }

    fn multiscale_event(&self, event: MultiscaleEvent) {
        self.emitter.send(Event::Multiscale(event));
    }

    pub(super) fn multiscale_command(&mut self, job: JobId, command: MultiscaleCommand) {
        match command {
            MultiscaleCommand::Start(start) => self.multiscale_start(job, *start),
            MultiscaleCommand::Cancel => {
                // The flag already stopped any solve; end the job here if stepping did not
                // notice it yet.
                if let Some(old) = self.multiscale.take() {
                    let (run, day) = (old.run, old.ms.simulation().day());
                    self.multiscale_event(MultiscaleEvent::Cancelled { run, day });
                }
            }
        }
    }

    fn multiscale_start(&mut self, job: JobId, start: StartMultiscale) {
        if let Some(old) = self.multiscale.take() {
            let (run, day) = (old.run, old.ms.simulation().day());
            self.multiscale_event(MultiscaleEvent::Cancelled { run, day });
        }
        if self.multiscale_cancel.begin_job(job) {
            self.multiscale_event(MultiscaleEvent::Cancelled { run: job, day: 0 });
            return;
        }
        let started = Instant::now();
        let built = catch_unwind(AssertUnwindSafe(|| self.build_multiscale(job, &start)));
        let (job_state, mut info) = match built {
            Ok(Ok(b)) => b,
            Ok(Err(SetupEnd::Cancelled)) => {
                return self.multiscale_event(MultiscaleEvent::Cancelled { run: job, day: 0 });
            }
            Ok(Err(SetupEnd::Failed(message))) => {
                return self.multiscale_event(MultiscaleEvent::Failed { run: job, message });
            }
            Err(panic) => {
                return self.multiscale_event(MultiscaleEvent::Failed {
                    run: job,
                    message: format!(
                        "internal error while setting up the multiscale run: {}",
                        panic_message(&panic)
                    ),
                });
            }
        };
        info.setup_seconds = started.elapsed().as_secs_f64();
        let original = info.original.clone();
        self.multiscale = Some(job_state);
        self.publish_multiscale();
        self.multiscale_event(MultiscaleEvent::Started(Arc::new(info)));
        self.multiscale_event(MultiscaleEvent::Checkpoint {
            run: job,
            checkpoint: original,
        });
    }

    /// Builds the vertebra and the macroscale simulation (day-0 solve), then solves and
    /// measures the original structure and meshes it.
    fn build_multiscale(
        &self,
        run: JobId,
        start: &StartMultiscale,
    ) -> Result<(MultiscaleJob, MultiscaleInfo), SetupEnd> {
        let preparing = |message: String| {
            self.multiscale_event(MultiscaleEvent::Preparing { run, message });
        };
        let cancelled = || self.multiscale_cancel.is_cancelled(run);
        start
            .scenario
            .validate()
            .map_err(|e| SetupEnd::Failed(e.to_string()))?;
        let mapping: Arc<dyn BvTvMapping> =
            parse_mapping(&start.mapping).map_err(SetupEnd::Failed)?;
        let params = MultiscaleParams {
            checkpoint_every_days: start.checkpoint_every_days,
            coupled: start.coupled,
            ..MultiscaleParams::default()
        };
        params
            .validate()
            .map_err(|e| SetupEnd::Failed(e.to_string()))?;
        let Some(held) = self.current.get(start.slot).as_ref() else {
            return Err(SetupEnd::Failed(format!(
                "no microstructure in the {} slot: load or generate one first",
                start.slot.label()
            )));
        };
        let (mask, structure) = (Arc::clone(&held.mask), held.info.label.clone());

        preparing("building the built-in vertebra".into());
        let vertebra = Vertebra::builtin(&start.vertebra, &start.config.density)
            .map_err(|e| SetupEnd::Failed(format!("built-in vertebra: {e}")))?;
        if cancelled() {
            return Err(SetupEnd::Cancelled);
        }
        preparing(format!(
            "solving the habitual loads on {} elements (day 0)",
            vertebra.element_count()
        ));
        let flag = &self.multiscale_cancel.flag;
        let scenario = start.scenario.clone();
        let sim = self
            .pool
            .install(|| Simulation::new(start.config, vertebra, scenario, Some(flag)))
            .map_err(|e| match e {
                RemodelError::Cancelled { .. } => SetupEnd::Cancelled,
                e => SetupEnd::Failed(format!("macroscale: {e}")),
            })?;
        preparing(format!(
            "solving and measuring the original structure ({} bone voxels)",
            mask.count()
        ));
        let ms = self
            .pool
            .install(|| {
                MultiscaleRun::new(
                    sim,
                    (*mask).clone(),
                    Arc::clone(&mapping),
                    params,
                    Some(flag),
                )
            })
            .map_err(|e| match e {
                MultiscaleError::Cancelled { .. } => SetupEnd::Cancelled,
                e => SetupEnd::Failed(e.to_string()),
            })?;
        if cancelled() {
            return Err(SetupEnd::Cancelled);
        }
        preparing("extracting the surface".into());
        let c0 = ms.checkpoints()[0].clone();
        let max_triangles = start.max_triangles.max(12);
        let view = self
            .pool
            .install(|| structure_view(c0.clone(), Arc::clone(&mask), &mask, max_triangles))
            .map_err(SetupEnd::Failed)?;
        let view = Arc::new(view);
        let scenario = &ms.simulation().scenario;
        let info = MultiscaleInfo {
            run,
            total_days: scenario.total_days(),
            phase_starts: scenario.phase_starts(),
            phase_names: scenario.phases.iter().map(|p| p.name.clone()).collect(),
            scenario: scenario.clone(),
            schedule: ms.schedule().to_vec(),
            slot: start.slot,
            structure,
            mapping: mapping.spec(),
            coupled: start.coupled,
            original: c0,
            setup_seconds: 0.0,
        };
        let job = MultiscaleJob {
            run,
            ms,
            original: Arc::clone(&view),
            lowest: Arc::clone(&view),
            latest: view,
            mapping,
            max_triangles,
        };
        Ok((job, info))
    }

    /// Publishes the three structures of the held job.
    fn publish_multiscale(&self) {
        if let Some(job) = &self.multiscale {
            self.multiscale_snapshots
                .publish(Arc::new(MultiscaleSnapshot {
                    run: job.run,
                    original: Arc::clone(&job.original),
                    lowest: Arc::clone(&job.lowest),
                    latest: Arc::clone(&job.latest),
                }));
            self.emitter.wake();
        }
    }

    /// Steps the macroscale to the next checkpoint, adapts the structure and publishes it.
    pub(super) fn multiscale_step(&mut self) {
        let Some(job) = self.multiscale.as_mut() else {
            return;
        };
        let run = job.run;
        if self.multiscale_cancel.is_cancelled(run) {
            let day = job.ms.simulation().day();
            self.multiscale = None;
            return self.multiscale_event(MultiscaleEvent::Cancelled { run, day });
        }
        let emitter = &self.emitter;
        let flag = &self.multiscale_cancel.flag;
        // The day of the checkpoint being computed (checkpoint 0 is the original).
        let day = job
            .ms
            .schedule()
            .get(job.ms.checkpoints().len() - 1)
            .copied()
            .unwrap_or_default();
        let bv_tv_original = job.ms.original().bv_tv();
        let mapping = Arc::clone(&job.mapping);
        let target_of =
            |bmd_pct: f64| bv_tv_original * (1.0 + mapping.bv_tv_change_pct(bmd_pct) / 100.0);
        let on_day = |r: &DayRecord| {
            emitter.send(Event::Multiscale(MultiscaleEvent::Day {
                run,
                day: r.day,
                phase: r.phase.clone(),
                bmd_trabecular_pct: r.bmd_trabecular_pct,
                target_bv_tv: target_of(r.bmd_trabecular_pct),
            }));
        };
        let on_step = |s: &StepReport| {
            emitter.send_progress(Event::Multiscale(MultiscaleEvent::Step {
                run,
                day,
                moves: s.moves,
                fe_solves: s.fe_solves,
                bv_tv: s.bv_tv,
            }));
        };
        let control = RunControl {
            cancel: Some(flag),
            on_day: Some(&on_day),
            on_step: Some(&on_step),
        };
        let pool = &self.pool;
        let advanced = catch_unwind(AssertUnwindSafe(|| {
            pool.install(|| {
                let checkpoint = job.ms.advance(&control)?.cloned();
                let Some(checkpoint) = checkpoint else {
                    return Ok(None);
                };
                let mask = Arc::new(job.ms.current().clone());
                let view = structure_view(
                    checkpoint.clone(),
                    mask,
                    job.ms.original(),
                    job.max_triangles,
                );
                Ok::<_, MultiscaleError>(Some((checkpoint, view)))
            })
        }));
        let day_now = job.ms.simulation().day();
        let finished = job.ms.is_finished();
        match advanced {
            Ok(Ok(Some((checkpoint, Err(message))))) => {
                self.multiscale = None;
                self.multiscale_event(MultiscaleEvent::Failed {
                    run,
                    message: format!("checkpoint of day {}: {message}", checkpoint.day),
                });
            }
            Ok(Ok(Some((checkpoint, Ok(view))))) => {
                let view = Arc::new(view);
                if checkpoint.bv_tv < job.lowest.checkpoint.bv_tv {
                    job.lowest = Arc::clone(&view);
                }
                job.latest = view;
                self.publish_multiscale();
                self.multiscale_event(MultiscaleEvent::Checkpoint { run, checkpoint });
                if finished {
                    self.multiscale = None;
                    self.multiscale_event(MultiscaleEvent::Finished { run, day: day_now });
                }
            }
            Ok(Ok(None)) => {
                self.multiscale = None;
                self.multiscale_event(MultiscaleEvent::Finished { run, day: day_now });
            }
            Ok(Err(MultiscaleError::Cancelled { .. })) => {
                self.multiscale = None;
                self.multiscale_event(MultiscaleEvent::Cancelled { run, day: day_now });
            }
            Ok(Err(e)) => {
                self.multiscale = None;
                self.multiscale_event(MultiscaleEvent::Failed {
                    run,
                    message: e.to_string(),
                });
            }
            Err(panic) => {
                self.multiscale = None;
                self.multiscale_event(MultiscaleEvent::Failed {
                    run,
                    message: format!(
                        "internal error at the checkpoint of day {day}: {}",
                        panic_message(&panic)
                    ),
                });
            }
        }
    }
}

/// The live view of one structure: its bone surface with the formed fraction
/// ([`CHANGE_FIELD`]) and the surface of the bone resorbed since `original`, both extracted
/// with the same voxel step (the smallest that keeps the bone surface within `max_triangles`).
fn structure_view(
    checkpoint: Checkpoint,
    mask: Arc<BoneMask>,
    original: &BoneMask,
    max_triangles: usize,
) -> Result<StructureView, String> {
    if mask.dims() != original.dims() {
        return Err(format!(
            "the structure has {:?} voxels, the original {:?}",
            mask.dims().as_array(),
            original.dims().as_array()
        ));
    }
    let params = ExtractParams {
        smoothing_sigma_voxels: LIVE_SMOOTHING_SIGMA_VOXELS,
        ..ExtractParams::default()
    };
    let (mut surface, mesh_step) = extract_surface_within(&mask, &params, max_triangles);
    if !surface.is_empty() {
        surface
            .add_voxel_field(&mask, &formed_field(original, &mask), CHANGE_FIELD)
            .map_err(|e| format!("colouring the surface by change: {e}"))?;
    }
    let removed_voxels: Vec<bool> = mask
        .voxels
        .iter()
        .zip(&original.voxels)
        .map(|(&now, &then)| then && !now)
        .collect();
    let removed = if removed_voxels.iter().any(|&v| v) {
        let removed_mask = BoneMask {
            grid: mask.grid,
            voxels: removed_voxels,
        };
        let params = ExtractParams {
            step: mesh_step,
            iso_level: REMOVED_ISO_LEVEL,
            ..params
        };
        extract_surface_within(&removed_mask, &params, max_triangles).0
    } else {
        SurfaceMesh::default()
    };
    Ok(StructureView {
        checkpoint,
        mask,
        surface: Arc::new(surface),
        removed: Arc::new(removed),
        mesh_step,
    })
}
