//! `osteolab remodel` end to end (issue 3 §6), through `CARGO_BIN_EXE_osteolab`.

use serde_json::Value;

use crate::common::run;

const SHORT_SCENARIO: &str = r#"name = "short-disuse"
description = "three habitual days, then twenty days at a fifth of the load"

[[phase]]
name = "habitual"
days = 3

[[phase]]
name = "disuse"
days = 20
load_scale = { axial = 0.2, flexion = 0.2 }
"#;

#[test]
fn remodel_json_has_series_endpoints_and_writes_csv_png_vtk() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("short.toml");
    std::fs::write(&scenario, SHORT_SCENARIO).unwrap();
    let out_dir = dir.path().join("out");
    let out = run(&[
        "remodel",
        "--scenario",
        scenario.to_str().unwrap(),
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
    let series = v["series"].as_array().unwrap();
    assert_eq!(series.len(), 24, "day 0 and one record per day");
    for key in [
        "day",
        "phase",
        "bmd_trabecular_pct",
        "bmd_whole_pct",
        "bmd_cortical_pct",
        "bv_tv_trabecular",
        "mean_stimulus",
    ] {
        assert!(series[5].get(key).is_some(), "missing {key}");
    }
    let endpoints = v["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[1]["day"], 23);
    assert_eq!(endpoints[1]["phase"], "disuse");
    let loss = endpoints[1]["bmd_trabecular_pct"].as_f64().unwrap();
    assert!(loss < -0.5, "disuse must lose trabecular bone, got {loss}");
    assert_eq!(endpoints[0]["bmd_whole_pct"].as_f64().unwrap(), 0.0);

    let csv = std::fs::read_to_string(out_dir.join("series.csv")).unwrap();
    assert_eq!(csv.lines().count(), 25);
    assert!(csv.starts_with("day,phase,bmd_trabecular_pct"));
    let png = image::open(out_dir.join("bmd.png")).unwrap();
    assert!(png.width() >= 800);
    for name in [
        "density_day0000_start.vtk",
        "density_day0003_habitual.vtk",
        "density_day0023_disuse.vtk",
    ] {
        let bytes = std::fs::read(out_dir.join(name)).unwrap();
        assert!(bytes.starts_with(b"# vtk DataFile"), "{name}");
    }
}

#[test]
fn remodel_rejects_a_bad_scenario_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("bad.toml");
    std::fs::write(&scenario, SHORT_SCENARIO.replace("days = 20", "days = 0")).unwrap();
    let out = run(&["remodel", "--scenario", scenario.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:10:"), "{err}");
    assert!(err.contains("days must be >= 1"), "{err}");

    let out = run(&["remodel", "--scenario", "spaceflight-999"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spaceflight-215"),
        "lists the built-ins: {err}"
    );
}

#[test]
fn remodel_ct_errors_name_the_file() {
    let out = run(&[
        "remodel",
        "--scenario",
        "bed-rest-90",
        "--vertebra",
        "/nonexistent/spine.nii.gz",
        "--box",
        "0,0,0,40,40,30",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/spine.nii.gz"), "{err}");

    let out = run(&[
        "remodel",
        "--scenario",
        "bed-rest-90",
        "--vertebra",
        "/nonexistent/spine.nii.gz",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--box"), "{err}");
}
