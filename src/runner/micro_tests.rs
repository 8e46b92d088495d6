//! Tests of the micro-FE jobs: the two slots, generation, loading, solving, cancellation.

use super::test_support::spawn;
use super::*;

const EVENT_TIMEOUT: Duration = Duration::from_secs(300);

/// A small synthetic cube (24³ voxels of 40 µm, BV/TV 0.3, spacing 0.4 mm) that solves in
/// well under a second.
fn small_synthetic() -> SyntheticParams {
    SyntheticParams {
        size_voxels: 24,
        voxel_size_mm: 0.04,
        bv_tv: 0.3,
        wavelength_mm: 0.4,
        ..SyntheticParams::default()
    }
}

/// A solve of the generated slot (where the synthetic cubes go).
fn solve_generated(request: SolveRequest) -> Command {
    Command::Solve {
        slot: MicroSlot::Generated,
        request,
    }
}

/// Collects events until the job `job` finishes; panics on timeout.
fn events_until_finished(runner: &Runner, job: JobId) -> Vec<Event> {
    let mut out = Vec::new();
    let start = Instant::now();
    loop {
        let e = runner.recv_timeout(Duration::from_millis(200)).or_else(|| {
            assert!(start.elapsed() < EVENT_TIMEOUT, "no Finished for job {job}");
            None
        });
        if let Some(e) = e {
            let done = matches!(&e, Event::Finished { job: j, .. } if *j == job);
            out.push(e);
            if done {
                return out;
            }
        }
    }
}

fn outcome_of(events: &[Event], job: JobId) -> &Outcome {
    events
        .iter()
        .find_map(|e| match e {
            Event::Finished {
                job: j, outcome, ..
            } if *j == job => Some(outcome),
            _ => None,
        })
        .expect("job finished")
}

#[test]
fn synthetic_solve_goes_started_progress_finished_with_sed_snapshot() {
    let woken = Arc::new(AtomicU64::new(0));
    let w = Arc::clone(&woken);
    let runner = Runner::spawn(RunnerOptions {
        waker: Some(Box::new(move || {
            w.fetch_add(1, Ordering::Relaxed);
        })),
        solver_threads: Some(2),
        ..RunnerOptions::default()
    })
    .unwrap();
    let generate = runner
        .send(Command::GenerateSynthetic(small_synthetic()))
        .unwrap();
    let events = events_until_finished(&runner, generate);
    let Outcome::Completed(JobReport::Model(info)) = outcome_of(&events, generate) else {
        panic!("generation failed: {events:?}");
    };
    assert!(info.is_synthetic());
    assert!((info.bv_tv - 0.3).abs() < 0.02, "BV/TV {}", info.bv_tv);
    let mut seen = 0;
    let first_pair = runner.latest_snapshot(&mut seen).expect("mesh published");
    assert!(first_pair.get(MicroSlot::Real).is_none(), "nothing loaded");
    let first = first_pair
        .get(MicroSlot::Generated)
        .expect("generated slot");
    assert_eq!(info.slot, MicroSlot::Generated);
    assert!(first.mesh.indices.len() >= 3 && first.fe.is_none());
    assert!(first.field(SED_FIELD).is_none());

    let solve = runner
        .send(solve_generated(SolveRequest {
            tolerance: 1e-6,
            ..SolveRequest::default()
        }))
        .unwrap();
    let events = events_until_finished(&runner, solve);
    // Order: Started first, then progress with increasing iterations, Finished last.
    assert!(matches!(
        events.first(),
        Some(Event::Started {
            kind: JobKind::Solve,
            ..
        })
    ));
    let iterations: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            Event::SolverProgress { iteration, .. } => Some(*iteration),
            _ => None,
        })
        .collect();
    assert!(!iterations.is_empty(), "no progress events: {events:?}");
    assert!(iterations.windows(2).all(|w| w[0] < w[1]));
    let Outcome::Completed(JobReport::Solve(summary)) = outcome_of(&events, solve) else {
        panic!("solve did not complete: {events:?}");
    };
    assert!(summary.iterations > 0 && summary.relative_residual <= 1e-6);
    // Compression: negative reaction, positive apparent modulus below the tissue modulus.
    assert!(summary.reaction_force_n < 0.0);
    assert!(summary.e_app_mpa > 0.0 && summary.e_app_mpa < 10_000.0);

    let snap_pair = runner
        .latest_snapshot(&mut seen)
        .expect("coloured mesh published");
    let snap = snap_pair.get(MicroSlot::Generated).expect("generated slot");
    assert_eq!(summary.slot, MicroSlot::Generated);
    assert_eq!(snap.fe, Some(*summary));
    assert!(
        Arc::ptr_eq(&snap.model, &first.model),
        "same microstructure"
    );
    let sed = snap.field(SED_FIELD).expect("sed_mpa field");
    assert_eq!(sed.len(), snap.mesh.positions.len());
    // Every vertex value is a (weighted mean of) bone-voxel SED, so it lies within the
    // voxel range; tolerance 1e-6 relative for the f32 weighting.
    let [lo, hi] = summary.sed_range_mpa;
    assert!(hi > 0.0);
    let slack = 1e-6 * hi;
    assert!(
        sed.iter()
            .all(|v| v.is_finite() && *v >= -slack && *v <= hi + slack)
    );
    assert!(lo >= 0.0);
    assert!(woken.load(Ordering::Relaxed) >= 4, "waker called on events");
    runner.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn cancel_mid_solve_ends_with_cancelled_outcome() {
    let runner = spawn();
    let generate = runner
        .send(Command::GenerateSynthetic(SyntheticParams {
            size_voxels: 32,
            ..small_synthetic()
        }))
        .unwrap();
    events_until_finished(&runner, generate);
    // An unreachable tolerance: the solve can only end by cancellation.
    let solve = runner
        .send(solve_generated(SolveRequest {
            tolerance: 1e-30,
            ..SolveRequest::default()
        }))
        .unwrap();
    let start = Instant::now();
    let mut outcome = None;
    let mut cancelled = false;
    while outcome.is_none() {
        assert!(start.elapsed() < EVENT_TIMEOUT);
        match runner.recv_timeout(Duration::from_millis(200)) {
            Some(Event::SolverProgress { .. }) if !cancelled => {
                runner.cancel().unwrap();
                cancelled = true;
            }
            Some(Event::Finished {
                job, outcome: o, ..
            }) if job == solve => outcome = Some(o),
            _ => {}
        }
    }
    assert!(cancelled, "no progress before the end");
    match outcome.unwrap() {
        // The solver reports the iteration it stopped at (0 = before the first update).
        Outcome::Cancelled { iteration: Some(_) } => {}
        other => panic!("expected Cancelled, got {other:?}"),
    }
    // The runner stays usable: a later solve is not affected by the earlier cancel.
    let again = runner
        .send(solve_generated(SolveRequest {
            tolerance: 1e-4,
            ..SolveRequest::default()
        }))
        .unwrap();
    let events = events_until_finished(&runner, again);
    assert!(matches!(
        outcome_of(&events, again),
        Outcome::Completed(JobReport::Solve(_))
    ));
    runner.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn cancel_before_start_cancels_queued_jobs_only() {
    let runner = spawn();
    let a = runner
        .send(Command::GenerateSynthetic(small_synthetic()))
        .unwrap();
    let b = runner
        .send(solve_generated(SolveRequest::default()))
        .unwrap();
    runner.cancel().unwrap();
    let c = runner
        .send(Command::GenerateSynthetic(small_synthetic()))
        .unwrap();
    let events = events_until_finished(&runner, c);
    assert!(matches!(
        outcome_of(&events, a),
        Outcome::Cancelled { .. } | Outcome::Completed(_)
    ));
    assert_eq!(
        outcome_of(&events, b),
        &Outcome::Cancelled { iteration: None }
    );
    assert!(matches!(outcome_of(&events, c), Outcome::Completed(_)));
}

#[test]
fn bad_path_gives_failed_event_naming_the_file() {
    let runner = spawn();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-volume.json");
    let job = runner
        .send(Command::LoadVolume(LoadVolumeParams::new(
            path.clone(),
            SegmentParams::default(),
        )))
        .unwrap();
    let events = events_until_finished(&runner, job);
    match outcome_of(&events, job) {
        Outcome::Failed(message) => {
            assert!(message.contains("no-such-volume.json"), "{message}")
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // Solving with nothing loaded fails cleanly too.
    let solve = runner
        .send(solve_generated(SolveRequest::default()))
        .unwrap();
    let events = events_until_finished(&runner, solve);
    assert!(
        matches!(outcome_of(&events, solve), Outcome::Failed(m) if m.contains("no microstructure"))
    );
}

#[test]
fn shutdown_joins_even_while_solving() {
    let runner = spawn();
    let generate = runner
        .send(Command::GenerateSynthetic(small_synthetic()))
        .unwrap();
    events_until_finished(&runner, generate);
    runner
        .send(solve_generated(SolveRequest {
            tolerance: 1e-30,
            ..SolveRequest::default()
        }))
        .unwrap();
    // Wait until the solve is iterating, then stop without draining further events.
    let start = Instant::now();
    while !matches!(
        runner.recv_timeout(Duration::from_millis(200)),
        Some(Event::SolverProgress { .. })
    ) {
        assert!(start.elapsed() < EVENT_TIMEOUT);
    }
    assert!(runner.is_running());
    runner.shutdown(Duration::from_secs(30)).unwrap();
    assert!(!runner.is_running());
    assert!(matches!(
        runner.send(Command::Cancel),
        Err(RunnerError::Stopped)
    ));
    // Idempotent.
    runner.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn lagging_consumer_drops_progress_not_finished() {
    // A channel of 4 events that nobody drains during the solve: progress overflows and is
    // counted, the lossless Finished still arrives once the consumer reads.
    let runner = Runner::spawn(RunnerOptions {
        event_capacity: 4,
        solver_threads: Some(2),
        ..RunnerOptions::default()
    })
    .unwrap();
    let generate = runner
        .send(Command::GenerateSynthetic(small_synthetic()))
        .unwrap();
    events_until_finished(&runner, generate);
    let solve = runner
        .send(solve_generated(SolveRequest {
            tolerance: 1e-10,
            ..SolveRequest::default()
        }))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let events = events_until_finished(&runner, solve);
    assert!(matches!(
        outcome_of(&events, solve),
        Outcome::Completed(JobReport::Solve(_))
    ));
    let Outcome::Completed(JobReport::Solve(s)) = outcome_of(&events, solve) else {
        unreachable!()
    };
    // Started and Stage take two of the four slots; more than two progress events
    // cannot all fit.
    assert!(
        s.iterations > 4,
        "too few iterations to overflow: {}",
        s.iterations
    );
    assert!(runner.dropped_progress() > 0);
    let delivered = events
        .iter()
        .filter(|e| matches!(e, Event::SolverProgress { .. }))
        .count() as u64;
    assert!(delivered + runner.dropped_progress() >= s.iterations as u64);
}

/// The `Morphometry` event of job `job`, if one was sent.
fn morphometry_of(
    events: &[Event],
    job: JobId,
) -> Option<(MicroSlot, &Result<Morphometry, String>)> {
    events.iter().find_map(|e| match e {
        Event::Morphometry {
            job: j,
            slot,
            result,
            ..
        } if *j == job => Some((*slot, result)),
        _ => None,
    })
}

/// Writes the synthetic structure `params` as a 0/255 uint8 sidecar volume in `dir`.
fn write_synthetic_volume(dir: &std::path::Path, params: &SyntheticParams) -> PathBuf {
    let mask = crate::synthetic::synthetic_trabecular(params).unwrap();
    let path = dir.join("cube.json");
    crate::volume::save_volume(&mask.to_volume(), &path).unwrap();
    path
}

/// GenerateReconGan runs the built-in generator: the cube lands in the generated slot with
/// the generator's size and voxel edge and exactly the bone voxels of
/// `Generator::generate_mask` for that seed and BV/TV (how close that BV/TV is to the target
/// depends on the weights, see `gan::builtin`), its morphometry is reported (BV/TV equal to the
/// model's to 1e-12) before `Finished`, and the same seed gives the same structure.
#[test]
fn recongan_generation_fills_the_generated_slot_with_its_morphometry() {
    let runner = spawn();
    let card = crate::gan::builtin::builtin_card().unwrap();
    let params = ReconGanParams {
        seed: 3,
        bv_tv: 0.25,
    };
    let job = runner.send(Command::GenerateReconGan(params)).unwrap();
    let events = events_until_finished(&runner, job);
    assert!(matches!(
        events.first(),
        Some(Event::Started {
            kind: JobKind::GenerateReconGan,
            ..
        })
    ));
    assert_eq!(JobKind::GenerateReconGan.label(), "generate ReconGAN");
    let Outcome::Completed(JobReport::Model(info)) = outcome_of(&events, job) else {
        panic!("generation failed: {events:?}");
    };
    assert_eq!(info.slot, MicroSlot::Generated);
    assert_eq!(info.recongan_seed(), Some(3));
    assert_eq!(info.source, ModelSource::ReconGan(params));
    let size = card.architecture.size;
    assert_eq!(info.grid.dims.as_array(), [size; 3]);
    assert!((info.grid.voxel_size_mm[0] - card.voxel_size_mm).abs() < 1e-12);
    let generator = crate::gan::builtin::builtin().unwrap();
    let direct = generator.generate_mask(3, 0, 0.25).unwrap();
    assert_eq!(info.bone_voxels, direct.count());
    assert_eq!(info.bv_tv, direct.bv_tv());
    assert!(info.label.starts_with("ReconGAN seed 3"), "{}", info.label);

    let morph_at = events
        .iter()
        .position(|e| matches!(e, Event::Morphometry { .. }))
        .expect("a morphometry event");
    let finished_at = events
        .iter()
        .position(|e| matches!(e, Event::Finished { .. }))
        .unwrap();
    assert!(morph_at < finished_at);
    let (slot, result) = morphometry_of(&events, job).unwrap();
    assert_eq!(slot, MicroSlot::Generated);
    let m = result.as_ref().expect("morphometry of a generated cube");
    assert!((m.bv_tv - info.bv_tv).abs() < 1e-12);
    assert!(m.tb_th_mm > 0.0 && m.tb_sp_mm > m.tb_th_mm && m.tb_n_per_mm > 0.0);

    let mut seen = 0;
    let snap = runner.latest_snapshot(&mut seen).unwrap();
    assert!(snap.get(MicroSlot::Real).is_none());
    let generated = snap.get(MicroSlot::Generated).unwrap();
    assert!(Arc::ptr_eq(&generated.model, info));
    assert!(generated.mesh.indices.len() >= 3);

    let again = runner.send(Command::GenerateReconGan(params)).unwrap();
    let events = events_until_finished(&runner, again);
    let Outcome::Completed(JobReport::Model(second)) = outcome_of(&events, again) else {
        panic!("second generation failed: {events:?}");
    };
    assert_eq!(second.bone_voxels, info.bone_voxels, "same seed, same cube");
    runner.shutdown(Duration::from_secs(10)).unwrap();
}

/// A loaded volume goes to the real slot, a generated one to the generated slot, and a solve
/// touches only the slot it names: the other slot's snapshot stays the same `Arc`, and each
/// slot keeps its own FE summary.
#[test]
fn real_and_generated_slots_are_solved_independently() {
    let runner = spawn();
    let dir = tempfile::tempdir().unwrap();
    let path = write_synthetic_volume(
        dir.path(),
        &SyntheticParams {
            seed: 7,
            ..small_synthetic()
        },
    );
    let load = runner
        .send(Command::LoadVolume(LoadVolumeParams::new(
            path.clone(),
            SegmentParams::default(),
        )))
        .unwrap();
    let generate = runner
        .send(Command::GenerateSynthetic(small_synthetic()))
        .unwrap();
    let mut events = events_until_finished(&runner, load);
    events.extend(events_until_finished(&runner, generate));
    let Outcome::Completed(JobReport::Model(real)) = outcome_of(&events, load) else {
        panic!("load failed: {events:?}");
    };
    assert_eq!(real.slot, MicroSlot::Real);
    assert_eq!(real.label, "cube.json");
    assert!(matches!(
        morphometry_of(&events, load),
        Some((MicroSlot::Real, _))
    ));
    assert!(matches!(
        morphometry_of(&events, generate),
        Some((MicroSlot::Generated, Ok(_)))
    ));

    let mut seen = 0;
    let before = runner.latest_snapshot(&mut seen).unwrap();
    let generated_before = Arc::clone(before.get(MicroSlot::Generated).unwrap());
    assert!(Arc::ptr_eq(
        &before.get(MicroSlot::Real).unwrap().model,
        real
    ));

    let solve_real = runner
        .send(Command::Solve {
            slot: MicroSlot::Real,
            request: SolveRequest::default(),
        })
        .unwrap();
    let events = events_until_finished(&runner, solve_real);
    let Outcome::Completed(JobReport::Solve(real_fe)) = outcome_of(&events, solve_real) else {
        panic!("real solve failed: {events:?}");
    };
    assert_eq!(real_fe.slot, MicroSlot::Real);
    let after_real = runner.latest_snapshot(&mut seen).unwrap();
    let real_shown = Arc::clone(after_real.get(MicroSlot::Real).unwrap());
    assert_eq!(real_shown.fe, Some(*real_fe));
    assert!(real_shown.field(SED_FIELD).is_some());
    assert!(
        Arc::ptr_eq(
            after_real.get(MicroSlot::Generated).unwrap(),
            &generated_before
        ),
        "the generated slot is untouched by the real solve"
    );

    let solve_generated = runner
        .send(solve_generated(SolveRequest::default()))
        .unwrap();
    let events = events_until_finished(&runner, solve_generated);
    let Outcome::Completed(JobReport::Solve(generated_fe)) = outcome_of(&events, solve_generated)
    else {
        panic!("generated solve failed: {events:?}");
    };
    let both = runner.latest_snapshot(&mut seen).unwrap();
    assert!(Arc::ptr_eq(both.get(MicroSlot::Real).unwrap(), &real_shown));
    assert_eq!(
        both.get(MicroSlot::Generated).unwrap().fe,
        Some(*generated_fe)
    );
    // Two different structures (seeds 7 and 1): two different stiffnesses.
    assert!(real_fe.e_app_mpa > 0.0 && generated_fe.e_app_mpa > 0.0);
    assert_ne!(real_fe.e_app_mpa, generated_fe.e_app_mpa);
    runner.shutdown(Duration::from_secs(10)).unwrap();
}

/// Resampling on load: a 32³ volume at 0.04 mm read at 0.08 mm is 16³, its centred 12³
/// cube is kept; a voxel edge that is not an integer multiple is refused naming the file.
#[test]
fn load_downsamples_and_crops_the_centred_cube() {
    let runner = spawn();
    let dir = tempfile::tempdir().unwrap();
    let path = write_synthetic_volume(
        dir.path(),
        &SyntheticParams {
            size_voxels: 32,
            ..small_synthetic()
        },
    );
    let job = runner
        .send(Command::LoadVolume(LoadVolumeParams::comparable_with(
            path.clone(),
            0.08,
            12,
        )))
        .unwrap();
    let events = events_until_finished(&runner, job);
    let Outcome::Completed(JobReport::Model(info)) = outcome_of(&events, job) else {
        panic!("load failed: {events:?}");
    };
    assert_eq!(info.grid.dims.as_array(), [12; 3]);
    assert!((info.grid.voxel_size_mm[0] - 0.08).abs() < 1e-12);
    assert_eq!(info.label, "cube.json, centred 12³ at 0.08 mm");
    assert!(info.bone_voxels > 0);

    let bad = runner
        .send(Command::LoadVolume(LoadVolumeParams::comparable_with(
            path, 0.06, 12,
        )))
        .unwrap();
    let events = events_until_finished(&runner, bad);
    match outcome_of(&events, bad) {
        Outcome::Failed(m) => assert!(
            m.contains("cube.json") && m.contains("integer multiple"),
            "{m}"
        ),
        other => panic!("expected Failed, got {other:?}"),
    }
    runner.shutdown(Duration::from_secs(10)).unwrap();
}

/// A ReconGAN generation queued behind a long solve is cancelled with it, and the generated
/// slot keeps the structure it had.
#[test]
fn cancel_drops_a_queued_recongan_generation() {
    let runner = spawn();
    let generate = runner
        .send(Command::GenerateSynthetic(small_synthetic()))
        .unwrap();
    let events = events_until_finished(&runner, generate);
    let Outcome::Completed(JobReport::Model(synthetic)) = outcome_of(&events, generate) else {
        panic!("generation failed: {events:?}");
    };
    let solve = runner
        .send(solve_generated(SolveRequest {
            tolerance: 1e-30,
            ..SolveRequest::default()
        }))
        .unwrap();
    let recongan = runner
        .send(Command::GenerateReconGan(ReconGanParams {
            seed: 0,
            bv_tv: 0.2,
        }))
        .unwrap();
    runner.cancel().unwrap();
    let events = events_until_finished(&runner, recongan);
    assert!(matches!(
        outcome_of(&events, solve),
        Outcome::Cancelled { .. }
    ));
    assert_eq!(
        outcome_of(&events, recongan),
        &Outcome::Cancelled { iteration: None }
    );
    assert!(morphometry_of(&events, recongan).is_none());
    let mut seen = 0;
    let snap = runner.latest_snapshot(&mut seen).unwrap();
    assert!(Arc::ptr_eq(
        &snap.get(MicroSlot::Generated).unwrap().model,
        synthetic
    ));
    runner.shutdown(Duration::from_secs(10)).unwrap();
}

/// The real micro-CT sample read as the app reads it (×2 to 0.039 mm, Otsu after σ = 1,
/// largest component, centred 64³): a 64³ cube of trabecular bone whose BV/TV lies in the
/// range of human vertebral trabecular bone (0.05–0.40) and whose morphometry is defined.
#[test]
fn real_microct_sample_loads_as_a_centred_cube_at_the_gan_voxel_size() {
    let Some(path) = crate::sample_data::microct_sample() else {
        return;
    };
    let card = crate::gan::builtin::builtin_card().unwrap();
    let runner = spawn();
    let job = runner
        .send(Command::LoadVolume(LoadVolumeParams::comparable_with(
            path,
            card.voxel_size_mm,
            card.architecture.size,
        )))
        .unwrap();
    let events = events_until_finished(&runner, job);
    let Outcome::Completed(JobReport::Model(info)) = outcome_of(&events, job) else {
        panic!("load failed: {events:?}");
    };
    assert_eq!(info.slot, MicroSlot::Real);
    assert_eq!(info.grid.dims.as_array(), [card.architecture.size; 3]);
    assert!((info.grid.voxel_size_mm[0] - card.voxel_size_mm).abs() < 1e-9);
    assert!(
        info.bv_tv > 0.05 && info.bv_tv < 0.40,
        "BV/TV {}",
        info.bv_tv
    );
    let (_, result) = morphometry_of(&events, job).unwrap();
    let m = result.as_ref().expect("morphometry of the sample");
    assert!(m.tb_th_mm > 0.0 && m.conn_d_per_mm3 > 0.0);
    runner.shutdown(Duration::from_secs(10)).unwrap();
}
