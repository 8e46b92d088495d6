//! `osteolab run` end to end (issue 5 §2) on a small synthetic structure and a short flight:
//! the JSON contract, the output folder, resuming, and refusal of bad input.

use serde_json::Value;

use crate::common::{run, run_json, synthetic_fixture};

/// Five habitual days, forty in microgravity, forty back on Earth.
const SHORT_FLIGHT: &str = r#"name = "short-flight"
description = "a short flight for the tests"

[[phase]]
name = "preflight"
days = 5

[[phase]]
name = "microgravity"
days = 40
load_scale = { axial = 0.1, flexion = 0.05 }

[[phase]]
name = "recovery"
days = 40
"#;

#[test]
fn run_reports_checkpoints_and_recovery_writes_the_folder_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let micro = synthetic_fixture(dir.path(), 24);
    let scenario = dir.path().join("short.toml");
    std::fs::write(&scenario, SHORT_FLIGHT).unwrap();
    let out = dir.path().join("run");
    let (scenario, micro, out_s) = (
        scenario.to_str().unwrap(),
        micro.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let v = run_json(&[
        "run",
        scenario,
        "--micro",
        micro,
        "--checkpoint-every",
        "20",
        "--out",
        out_s,
        "--json",
    ]);
    let cps = v["checkpoints"].as_array().unwrap();
    let days: Vec<u64> = cps.iter().map(|c| c["day"].as_u64().unwrap()).collect();
    assert_eq!(days, vec![0, 5, 20, 40, 45, 60, 80, 85]);
    for c in cps {
        let (bv, target) = (
            c["bv_tv"].as_f64().unwrap(),
            c["target_bv_tv"].as_f64().unwrap(),
        );
        assert!((bv - target).abs() <= 0.0025, "{c}");
        assert_eq!(c["islands"], 0);
        for key in [
            "tb_th_mm",
            "tb_sp_mm",
            "tb_n_per_mm",
            "conn_d_per_mm3",
            "smi",
            "da",
        ] {
            assert!(c["morphometry"][key].is_f64(), "{key}");
        }
    }
    let landing = &cps[4];
    assert!(landing["bv_tv"].as_f64() < cps[0]["bv_tv"].as_f64());
    let r = &v["recovery"];
    for key in [
        "bv_tv_difference_points",
        "dice_vs_original",
        "indices",
        "within_bounds",
        "lowest_day",
    ] {
        assert!(!r[key].is_null(), "recovery.{key}");
    }
    assert_eq!(r["lowest_day"], 45);
    for f in [
        "run.json",
        "checkpoints.csv",
        "series.csv",
        "report.md",
        "bmd.png",
        "bv_tv.png",
        "morphometry.png",
        "micro/day0000.json",
        "micro/day0045.json",
        "micro/day0085.json",
        "micro/day0085.ply",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(out.join("checkpoints.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + cps.len());
    // Written once at the end: the header and days 0 to the last checkpoint.
    let series = std::fs::read_to_string(out.join("series.csv")).unwrap();
    assert_eq!(series.lines().count(), 2 + *days.last().unwrap() as usize);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("![BV/TV](bv_tv.png)"));

    // The folder holds a run: a new run there is refused, --resume of the finished run adds
    // nothing and reports the same checkpoints.
    let o = run(&["run", scenario, "--micro", micro, "--out", out_s]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
    let again = run_json(&["run", "--resume", "--out", out_s, "--json"]);
    let days_again: Vec<u64> = again["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["day"].as_u64().unwrap())
        .collect();
    assert_eq!(days_again, days);
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["finished"], true);
}

#[test]
fn run_rejects_a_bad_mapping_a_missing_volume_and_an_unknown_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let micro = synthetic_fixture(dir.path(), 16);
    let m = micro.to_str().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &["run", "spaceflight-215", "--micro", m, "--mapping", "cubic"],
            "cubic",
        ),
        (
            &[
                "run",
                "spaceflight-215",
                "--micro",
                "/nonexistent/cube.json",
            ],
            "/nonexistent/cube.json",
        ),
        (
            &["run", "no-such-scenario", "--micro", m],
            "no-such-scenario",
        ),
    ];
    for (args, needle) in cases {
        let o = run(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
