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

/// A synthetic lumbar CT in HU (0.5 mm voxels): soft tissue at 40 HU around an elliptic
/// vertebral body with trabecular bone at 190 HU, a 1.5 mm cortex at 1200 HU and 1 mm
/// endplates at 1000 HU, written as NIfTI.
fn synthetic_ct_nifti(dir: &std::path::Path) -> std::path::PathBuf {
    use osteolab::volume::{Dims, Grid, Volume, VoxelData, save_volume};
    let dims = Dims::new(60, 50, 36);
    let h = 0.5;
    let (a, b, cortex) = (12.0, 9.0, 1.5);
    let mut data = Vec::with_capacity(dims.len());
    for z in 0..dims.nz {
        for y in 0..dims.ny {
            for x in 0..dims.nx {
                let px = (x as f64 + 0.5) * h - 15.0;
                let py = (y as f64 + 0.5) * h - 12.5;
                let outer = (px / a).powi(2) + (py / b).powi(2) <= 1.0;
                let inner = (px / (a - cortex)).powi(2) + (py / (b - cortex)).powi(2) <= 1.0;
                let hu: f32 = if (4..32).contains(&z) && outer {
                    if !inner {
                        1200.0
                    } else if !(6..30).contains(&z) {
                        1000.0
                    } else {
                        190.0
                    }
                } else {
                    40.0
                };
                data.push(hu);
            }
        }
    }
    let volume = Volume::new(Grid::isotropic(dims, h), VoxelData::F32(data)).unwrap();
    let path = dir.join("spine.nii.gz");
    save_volume(&volume, &path).unwrap();
    path
}

#[test]
fn remodel_runs_on_a_vertebra_from_ct() {
    let dir = tempfile::tempdir().unwrap();
    let ct = synthetic_ct_nifti(dir.path());
    let scenario = dir.path().join("short.toml");
    std::fs::write(&scenario, SHORT_SCENARIO).unwrap();
    let out = run(&[
        "remodel",
        "--scenario",
        scenario.to_str().unwrap(),
        "--vertebra",
        ct.to_str().unwrap(),
        "--box",
        "0,0,0,60,50,36",
        "--hu-slope",
        "0.8",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["vertebra"]["source"], ct.to_str().unwrap());
    let regions = &v["vertebra"]["regions"];
    for r in ["trabecular", "cortical", "endplate"] {
        assert!(regions[r].as_u64().unwrap() > 100, "{r}: {regions}");
    }
    let end = &v["endpoints"][1];
    assert!(end["bmd_trabecular_pct"].as_f64().unwrap() < -0.5, "{end}");
    assert!(end["bmd_trabecular_pct"].as_f64().unwrap() < end["bmd_whole_pct"].as_f64().unwrap());

    // A calibration that makes soft tissue bone-dense is refused with the reason.
    let out = run(&[
        "remodel",
        "--scenario",
        scenario.to_str().unwrap(),
        "--vertebra",
        ct.to_str().unwrap(),
        "--box",
        "0,0,0,60,50,36",
        "--hu-slope",
        "8",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spine.nii.gz") && err.contains("soft tissue"),
        "{err}"
    );
}
