//! The remodeling run on the simulation thread (see [`crate::runner::remodel`] for the
//! protocol): set-up, one day per step, and the commands that steer it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::{Worker, panic_message};
use crate::remodel::ct::vertebra_from_ct_file;
use crate::remodel::scenario::Scenario;
use crate::remodel::simulation::{RemodelConfig, RemodelError, Simulation};
use crate::remodel::vertebra::Vertebra;
use crate::runner::remodel::{
    RemodelCommand, RemodelEvent, RemodelInfo, StartRemodel, VertebraSource,
};
use crate::runner::section::VertebraGeometry;
use crate::runner::{Event, JobId};

/// What a loaded run is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Stepping until the end of the scenario.
    Running,
    /// Waiting (or stepping `steps_left` more days).
    Paused,
    /// Every day of the scenario is simulated.
    Finished,
    /// Cancelled or failed: no more stepping; the model can still be restarted.
    Ended,
}

/// The run the worker holds.
pub(crate) struct RemodelRun {
    run: JobId,
    sim: Simulation,
    info: Arc<RemodelInfo>,
    mode: Mode,
    /// Days left of a [`RemodelCommand::Step`] (in [`Mode::Paused`]).
    steps_left: u32,
}

/// Why a set-up stopped.
enum SetupStop {
    Cancelled,
    Failed(String),
}

fn setup_stop(e: RemodelError) -> SetupStop {
    match e {
        RemodelError::Cancelled { .. } => SetupStop::Cancelled,
        e => SetupStop::Failed(e.to_string()),
    }
}

impl Worker {
    /// Whether the loaded run has a day to simulate now.
    pub(super) fn remodel_wants_step(&self) -> bool {
        self.remodel.as_ref().is_some_and(|r| {
            r.mode == Mode::Running || (r.mode == Mode::Paused && r.steps_left > 0)
        })
    }

    fn remodel_event(&self, event: RemodelEvent) {
        self.emitter.send(Event::Remodel(event));
    }

    fn reject(&self, run: Option<JobId>, message: impl Into<String>) {
        self.remodel_event(RemodelEvent::Rejected {
            run,
            message: message.into(),
        });
    }

    pub(super) fn remodel_command(&mut self, job: JobId, command: RemodelCommand) {
        match command {
            RemodelCommand::Start(start) => self.remodel_start(job, *start),
            RemodelCommand::Pause => {
                let Some(r) = self.remodel.as_mut() else {
                    return self.reject(None, "no remodeling run to pause");
                };
                if matches!(r.mode, Mode::Running | Mode::Paused) {
                    r.mode = Mode::Paused;
                    r.steps_left = 0;
                    let (run, day) = (r.run, r.sim.day());
                    self.remodel_event(RemodelEvent::Paused { run, day });
                }
            }
            RemodelCommand::Resume => self.remodel_resume(None),
            RemodelCommand::Step { days } => {
                if days > 0 {
                    self.remodel_resume(Some(days));
                }
            }
            RemodelCommand::ReplaceScenario { scenario, restart } => {
                if restart {
                    self.remodel_restart(job, scenario);
                } else {
                    self.remodel_replace(scenario);
                }
            }
            RemodelCommand::Cancel => {
                // The flag already stopped any solve; end the run here if stepping did not
                // notice it yet.
                if let Some(r) = self.remodel.as_mut()
                    && matches!(r.mode, Mode::Running | Mode::Paused)
                {
                    r.mode = Mode::Ended;
                    let (run, day) = (r.run, r.sim.day());
                    self.remodel_event(RemodelEvent::Cancelled { run, day });
                }
            }
        }
    }

    /// Resume (`steps: None`) or step `n` days.
    fn remodel_resume(&mut self, steps: Option<u32>) {
        let Some(r) = self.remodel.as_mut() else {
            return self.reject(None, "no remodeling run: start one first");
        };
        let run = Some(r.run);
        match r.mode {
            Mode::Finished => {
                let days = r.sim.scenario.total_days();
                return self.reject(
                    run,
                    format!("the scenario is finished: all {days} days are simulated"),
                );
            }
            Mode::Ended => {
                return self.reject(run, "the run has ended; restart it or start a new one");
            }
            Mode::Running | Mode::Paused => {}
        }
        match steps {
            None => {
                r.mode = Mode::Running;
                r.steps_left = 0;
            }
            Some(n) => {
                r.mode = Mode::Paused;
                r.steps_left = n;
            }
        }
        let (run, day) = (r.run, r.sim.day());
        self.remodel_event(RemodelEvent::Resumed { run, day });
    }

    fn remodel_start(&mut self, job: JobId, start: StartRemodel) {
        // Free the old run (and its fields) before building the new one.
        self.remodel = None;
        self.history.reset(job);
        if self.remodel_cancel.begin_job(job) {
            self.remodel_event(RemodelEvent::Cancelled { run: job, day: 0 });
            return;
        }
        let started = Instant::now();
        let built = catch_unwind(AssertUnwindSafe(|| self.build_run(job, &start)));
        let (sim, geometry) = match built {
            Ok(Ok(b)) => b,
            Ok(Err(stop)) => return self.setup_failed(job, stop),
            Err(panic) => {
                return self.setup_failed(
                    job,
                    SetupStop::Failed(format!(
                        "internal error while setting up the run: {}",
                        panic_message(&panic)
                    )),
                );
            }
        };
        let v = &sim.vertebra;
        let info = RemodelInfo {
            run: job,
            label: start.vertebra.label(),
            source: start.vertebra,
            element_count: v.element_count(),
            region_counts: v.region_counts(),
            grid: v.grid,
            total_days: sim.scenario.total_days(),
            phase_starts: sim.scenario.phase_starts(),
            phase_names: sim.scenario.phases.iter().map(|p| p.name.clone()).collect(),
            scenario: sim.scenario.clone(),
            geometry: Arc::new(geometry),
            setup_seconds: started.elapsed().as_secs_f64(),
        };
        self.begin_run(job, sim, Arc::new(info), start.start_paused);
    }

    fn setup_failed(&self, run: JobId, stop: SetupStop) {
        match stop {
            SetupStop::Cancelled => self.remodel_event(RemodelEvent::Cancelled { run, day: 0 }),
            SetupStop::Failed(message) => self.remodel_event(RemodelEvent::Failed { run, message }),
        }
    }

    /// Builds the vertebra, its view geometry and the simulation (day-0 FE solve).
    fn build_run(
        &self,
        run: JobId,
        start: &StartRemodel,
    ) -> Result<(Simulation, VertebraGeometry), SetupStop> {
        let preparing = |message: String| {
            self.remodel_event(RemodelEvent::Preparing { run, message });
        };
        start
            .scenario
            .validate()
            .map_err(|e| SetupStop::Failed(e.to_string()))?;
        let density = start.config.density;
        let vertebra = match &start.vertebra {
            VertebraSource::Builtin(params) => {
                preparing("building the built-in vertebra".into());
                Vertebra::builtin(params, &density)
                    .map_err(|e| SetupStop::Failed(format!("built-in vertebra: {e}")))?
            }
            VertebraSource::Ct { path, params } => {
                preparing(format!("building the vertebra from {}", path.display()));
                self.pool
                    .install(|| vertebra_from_ct_file(path, params, &density))
                    .map_err(|e| SetupStop::Failed(e.to_string()))?
            }
        };
        if self.remodel_cancel.is_cancelled(run) {
            return Err(SetupStop::Cancelled);
        }
        preparing("extracting the surface".into());
        let max_triangles = self.max_live_triangles;
        let geometry = self
            .pool
            .install(|| VertebraGeometry::new(&vertebra, max_triangles))
            .map_err(SetupStop::Failed)?;
        let sim = self.new_simulation(run, start.config, vertebra, start.scenario.clone())?;
        Ok((sim, geometry))
    }

    fn new_simulation(
        &self,
        run: JobId,
        config: RemodelConfig,
        vertebra: Vertebra,
        scenario: Scenario,
    ) -> Result<Simulation, SetupStop> {
        self.remodel_event(RemodelEvent::Preparing {
            run,
            message: format!(
                "solving the habitual loads on {} elements (day 0)",
                vertebra.element_count()
            ),
        });
        let flag = &self.remodel_cancel.flag;
        self.pool
            .install(|| Simulation::new(config, vertebra, scenario, Some(flag)))
            .map_err(setup_stop)
    }

    /// Publishes a set-up run: the day-0 field, Started, the day-0 record, and Paused if it
    /// waits.
    fn begin_run(&mut self, run: JobId, sim: Simulation, info: Arc<RemodelInfo>, paused: bool) {
        self.history.push(run, 0, &sim.bmd_change_pct());
        self.remodel_event(RemodelEvent::Started(Arc::clone(&info)));
        if let Some(record) = sim.series().first() {
            self.remodel_event(RemodelEvent::Day {
                run,
                record: record.clone(),
            });
        }
        if paused {
            self.remodel_event(RemodelEvent::Paused { run, day: 0 });
        }
        self.remodel = Some(RemodelRun {
            run,
            sim,
            info,
            mode: if paused { Mode::Paused } else { Mode::Running },
            steps_left: 0,
        });
    }

    /// Simulates one day of the loaded run and publishes it.
    pub(super) fn remodel_step(&mut self) {
        let Worker {
            remodel,
            pool,
            remodel_cancel,
            history,
            emitter,
            ..
        } = self;
        let Some(r) = remodel.as_mut() else {
            return;
        };
        let send = |e: RemodelEvent| emitter.send(Event::Remodel(e));
        let run = r.run;
        if remodel_cancel.is_cancelled(run) {
            r.mode = Mode::Ended;
            return send(RemodelEvent::Cancelled {
                run,
                day: r.sim.day(),
            });
        }
        let flag = &remodel_cancel.flag;
        let sim = &mut r.sim;
        let stepped = catch_unwind(AssertUnwindSafe(|| {
            pool.install(|| {
                let record = sim.step_day(Some(flag))?.clone();
                Ok::<_, RemodelError>((record, sim.bmd_change_pct()))
            })
        }));
        match stepped {
            Ok(Ok((record, field))) => {
                let day = record.day;
                history.push(run, day, &field);
                send(RemodelEvent::Day { run, record });
                if r.sim.is_finished() {
                    r.mode = Mode::Finished;
                    r.steps_left = 0;
                    send(RemodelEvent::Finished { run, day });
                } else if r.mode == Mode::Paused && r.steps_left > 0 {
                    r.steps_left -= 1;
                    if r.steps_left == 0 {
                        send(RemodelEvent::Paused { run, day });
                    }
                }
            }
            Ok(Err(RemodelError::Cancelled { day })) => {
                r.mode = Mode::Ended;
                send(RemodelEvent::Cancelled { run, day });
            }
            Ok(Err(RemodelError::Finished(_))) => {
                r.mode = Mode::Finished;
                send(RemodelEvent::Finished {
                    run,
                    day: r.sim.day(),
                });
            }
            Ok(Err(e)) => {
                r.mode = Mode::Ended;
                send(RemodelEvent::Failed {
                    run,
                    message: format!("day {}: {e}", r.sim.day() + 1),
                });
            }
            Err(panic) => {
                r.mode = Mode::Ended;
                send(RemodelEvent::Failed {
                    run,
                    message: format!(
                        "internal error on day {}: {}",
                        r.sim.day() + 1,
                        panic_message(&panic)
                    ),
                });
            }
        }
    }

    /// Applies a new scenario from the next day.
    fn remodel_replace(&mut self, scenario: Scenario) {
        let Some(r) = self.remodel.as_mut() else {
            return self.reject(None, "no remodeling run to change: start one first");
        };
        let run = r.run;
        if r.mode == Mode::Ended {
            return self.reject(
                Some(run),
                "the run has ended; choose \"restart\" to run the new scenario",
            );
        }
        if let Err(e) = r.sim.replace_scenario(scenario.clone()) {
            return self.reject(Some(run), e.to_string());
        }
        let info = Arc::new(r.info.with_scenario(run, scenario));
        r.info = Arc::clone(&info);
        let from_day = r.sim.day();
        let finished = r.sim.is_finished();
        let was_finished = r.mode == Mode::Finished;
        if was_finished && !finished {
            // A longer scenario: wait for Resume.
            r.mode = Mode::Paused;
            r.steps_left = 0;
        } else if finished {
            r.mode = Mode::Finished;
            r.steps_left = 0;
        }
        self.remodel_event(RemodelEvent::ScenarioReplaced {
            run,
            from_day,
            info,
        });
        if was_finished && !finished {
            self.remodel_event(RemodelEvent::Paused { run, day: from_day });
        } else if finished && !was_finished {
            self.remodel_event(RemodelEvent::Finished { run, day: from_day });
        }
    }

    /// Starts a new run (id `job`) on the loaded model with `scenario`, from day 0.
    fn remodel_restart(&mut self, job: JobId, scenario: Scenario) {
        if self.remodel.is_none() {
            return self.reject(None, "no vertebra loaded: start a run first");
        }
        if let Err(e) = scenario.validate() {
            let run = self.remodel.as_ref().map(|r| r.run);
            return self.reject(run, e.to_string());
        }
        let Some(old) = self.remodel.take() else {
            return;
        };
        let (vertebra, config, old_info) = (old.sim.vertebra.clone(), old.sim.config, old.info);
        drop(old.sim);
        self.history.reset(job);
        if self.remodel_cancel.begin_job(job) {
            self.remodel_event(RemodelEvent::Cancelled { run: job, day: 0 });
            return;
        }
        let started = Instant::now();
        let built = catch_unwind(AssertUnwindSafe(|| {
            self.new_simulation(job, config, vertebra, scenario.clone())
        }));
        let sim = match built {
            Ok(Ok(sim)) => sim,
            Ok(Err(stop)) => return self.setup_failed(job, stop),
            Err(panic) => {
                return self.setup_failed(
                    job,
                    SetupStop::Failed(format!(
                        "internal error while restarting: {}",
                        panic_message(&panic)
                    )),
                );
            }
        };
        let mut info = old_info.with_scenario(job, scenario);
        info.setup_seconds = started.elapsed().as_secs_f64();
        self.begin_run(job, sim, Arc::new(info), false);
    }
}
