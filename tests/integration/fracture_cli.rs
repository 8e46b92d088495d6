//! `osteolab fracture` end to end (issue 6 §5), through `CARGO_BIN_EXE_osteolab`, on a small
//! synthetic trabecular cube (the built-in vertebra takes minutes; see BENCHMARKS.md).

use serde_json::Value;

use crate::common::{run, run_json, synthetic_fixture};

#[test]
fn fracture_of_a_cube_prints_the_curve_and_measures_and_writes_csv_png_vtk() {
    let dir = tempfile::tempdir().unwrap();
    let volume = synthetic_fixture(dir.path(), 16);
    let out_dir = dir.path().join("out");
    let out = run(&[
        "fracture",
        "--volume",
        volume.to_str().unwrap(),
        "--step",
        "0.1",
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let w = v["curve"]["displacement_mm"].as_array().unwrap();
    let f = v["curve"]["load_kn"].as_array().unwrap();
    assert_eq!(w.len(), f.len());
    assert!(w.len() > 10);
    let peak = v["peak_load_kn"].as_f64().unwrap();
    let max_f = f.iter().map(|x| x.as_f64().unwrap()).fold(0.0, f64::max);
    assert_eq!(peak, max_f);
    for key in [
        "stiffness_kn_per_mm",
        "displacement_at_peak_mm",
        "energy_to_peak_j",
        "energy_to_end_j",
        "apparent_strength_mpa",
        "strain_at_peak",
        "offset_yield_strength_mpa",
        "offset_yield_strain",
    ] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}");
    }
    assert!(
        v["offset_yield_strength_mpa"].as_f64().unwrap()
            <= v["apparent_strength_mpa"].as_f64().unwrap()
    );
    assert!(v["energy_to_end_j"].as_f64().unwrap() >= v["energy_to_peak_j"].as_f64().unwrap());
    for name in ["curves.csv", "curves.png"] {
        assert!(out_dir.join(name).is_file(), "{name} missing");
    }
    let vtk = std::fs::read_dir(&out_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".vtk")
        })
        .count();
    // Damage at the peak and at the end (one file when the run ends at its peak).
    assert!((1..=2).contains(&vtk), "{vtk} VTK files");
}

#[test]
fn fracture_rejects_an_unknown_state_and_a_missing_volume() {
    let out = run(&["fracture", "--state", "launch"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("launch"), "{err}");
    let out = run(&["fracture", "--volume", "/nonexistent/cube.json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/cube.json"), "{err}");
    let out = run(&[
        "fracture",
        "--state",
        "pre",
        "--trabecular-strength-basis",
        "architecture",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("architecture") && err.contains("expected modulus or density"),
        "{err}"
    );
}

#[test]
fn fracture_stops_after_max_increments_and_reports_the_solver_settings() {
    let dir = tempfile::tempdir().unwrap();
    let volume = synthetic_fixture(dir.path(), 16);
    let out = run(&[
        "fracture",
        "--volume",
        volume.to_str().unwrap(),
        "--max-increments",
        "3",
        "--no-aitken",
        "--preconditioner-max-drift",
        "0",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["increments"].as_u64(), Some(3));
    assert_eq!(v["end_point"]["reason"].as_str(), Some("max-increments"));
    // Drift 0 rebuilds the hierarchy before every solve whose damage differs from the last
    // build's: at least once after the elastic solve, at most once per solve.
    let solves = v["linear_solves"].as_u64().unwrap();
    let builds = v["preconditioner_builds"].as_u64().unwrap();
    assert!(
        solves >= 4 && builds >= 2 && builds <= solves,
        "{solves} solves, {builds} builds"
    );
}

/// `--run DIR` takes the states in the multiscale run's scenario and scales the trabecular
/// compartment of each by its adapted structure's E_app relative to day 0 (one nonlinear
/// increment only: the built-in vertebra's full curve takes minutes).
#[test]
fn fracture_of_a_multiscale_run_state_uses_its_microstructure_modulus() {
    let dir = tempfile::tempdir().unwrap();
    let micro = synthetic_fixture(dir.path(), 20);
    let scenario = dir.path().join("short.toml");
    std::fs::write(
        &scenario,
        "name = \"short-flight\"\n\
         [[phase]]\nname = \"preflight\"\ndays = 3\n\
         [[phase]]\nname = \"microgravity\"\ndays = 30\n\
         load_scale = { axial = 0.1, flexion = 0.05 }\n",
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    let ms = run_json(&[
        "run",
        scenario.to_str().unwrap(),
        "--micro",
        micro.to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
        "--json",
    ]);
    let cps = ms["checkpoints"].as_array().unwrap();
    let at = |day: u64, key: &str| {
        cps.iter()
            .find(|c| c["day"] == day)
            .and_then(|c| c[key].as_f64())
            .unwrap()
    };
    // The micro-FE modulus ratio over the Morgan et al. (2003) density law's, ρ^1.56, for the
    // structure's own BV/TV change.
    let expected =
        (at(33, "e_app_mpa") / at(0, "e_app_mpa")) / (at(33, "bv_tv") / at(0, "bv_tv")).powf(1.56);
    let v = run_json(&[
        "fracture",
        "--state",
        "post",
        "--run",
        run_dir.to_str().unwrap(),
        "--max-increments",
        "1",
        "--json",
    ]);
    assert_eq!(v["day"], 33);
    let factor = &v["microstructure_factor"];
    assert!(
        (factor["value"].as_f64().unwrap() - expected).abs() < 1e-12,
        "{factor}"
    );
    assert!(factor["source"].as_str().unwrap().contains("day 33"));
    assert_eq!(v["parameters"]["trabecular_strength_basis"], "modulus");

    let o = run(&["fracture", "--state", "post", "--run", "/nonexistent/run"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/run"));
}

/// The vertebral overrides reach the model: `--cortical-yield-strain-scale R` multiplies both
/// cortical yield strains by R and the cortical fracture energy by R² (so the shell keeps its
/// ductility), `--trabecular-strength-basis density` is reported, and a scale that makes the
/// yield strains non-positive is refused by name. One increment of the pre-flight curve.
#[test]
fn fracture_of_the_vertebra_takes_the_cortical_and_strength_overrides() {
    let v = run_json(&[
        "fracture",
        "--state",
        "pre",
        "--max-increments",
        "1",
        "--cortical-yield-strain-scale",
        "1.3",
        "--trabecular-strength-basis",
        "density",
        "--json",
    ]);
    let p = &v["parameters"];
    let cortical = &p["cortical"];
    let close = |got: &Value, want: f64| (got.as_f64().unwrap() / want - 1.0).abs() < 1e-12;
    assert!(
        close(&cortical["yield_strain_compression"], 0.013),
        "{cortical}"
    );
    assert!(
        close(&cortical["yield_strain_tension"], 0.0104),
        "{cortical}"
    );
    assert!(
        close(&cortical["fracture_energy_n_per_mm"], 4.7 * 1.69),
        "{cortical}"
    );
    assert!(close(&p["trabecular"]["yield_strain_compression"], 0.0084));
    assert_eq!(p["trabecular_strength_basis"], "density");

    for bad in [
        "--cortical-yield-strain-scale=-1",
        "--cortical-yield-strain-scale=NaN",
    ] {
        let out = run(&["fracture", "--state", "pre", bad]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cortical compressive yield strain"), "{err}");
    }
}
