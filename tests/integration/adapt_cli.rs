//! `osteolab adapt` end to end on a small synthetic structure: the JSON contract of issue 5 §1,
//! the written volume, and refusal of bad input with a clear message and no output.

use osteolab::volume::load_volume;
use serde_json::Value;

use crate::common::{run, synthetic_fixture};

#[test]
fn adapt_json_reports_the_contract_and_writes_the_adapted_volume() {
    let dir = tempfile::tempdir().unwrap();
    let input = synthetic_fixture(dir.path(), 32);
    let out = dir.path().join("adapted");
    let o = run(&[
        "adapt",
        input.to_str().unwrap(),
        "--target-bv-tv",
        "0.2",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in [
        "bv_tv_start",
        "bv_tv_end",
        "fe_solves",
        "islands",
        "dice_vs_start",
        "e_app_start_mpa",
        "e_app_end_mpa",
        "morphometry_start",
        "morphometry_end",
        "steps",
        "target_bv_tv",
        "seconds",
    ] {
        assert!(!v[key].is_null(), "missing {key}: {v}");
    }
    // The target within ±0.25 BV/TV points, within 15 solves, no islands.
    assert!(
        (v["bv_tv_end"].as_f64().unwrap() - 0.2).abs() <= 0.0025,
        "{v}"
    );
    assert!(v["fe_solves"].as_u64().unwrap() <= 15);
    assert_eq!(v["islands"].as_u64(), Some(0));
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len() as u64, v["fe_solves"].as_u64().unwrap());
    for s in steps {
        for key in ["bv_tv", "e_app_mpa", "fe_solves", "morphometry"] {
            assert!(!s[key].is_null(), "step without {key}: {s}");
        }
        assert!(!s["morphometry"]["tb_th_mm"].is_null());
    }
    // The written volume is the adapted mask: same BV/TV as reported.
    let written = load_volume(&out.join("adapted.json")).unwrap();
    let bone = (0..written.data.len())
        .filter(|&i| written.data.get_f64(i) > 0.0)
        .count();
    let bv_tv = bone as f64 / written.data.len() as f64;
    assert_eq!(bv_tv, v["bv_tv_end"].as_f64().unwrap());
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["bv_tv_end"], v["bv_tv_end"]);
}

#[test]
fn adapt_refuses_a_target_outside_half_to_one_and_a_half_of_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let input = synthetic_fixture(dir.path(), 24);
    let out = dir.path().join("adapted");
    for target in ["0.05", "0.6", "nan"] {
        let o = run(&[
            "adapt",
            input.to_str().unwrap(),
            "--target-bv-tv",
            target,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "target {target} accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("target BV/TV"), "target {target}: {err}");
        assert!(
            err.contains(input.to_str().unwrap()),
            "names the file: {err}"
        );
        assert!(!out.join("adapted.json").exists(), "wrote output on error");
    }
}

#[test]
fn adapt_back_up_with_the_written_start_as_reference_returns_to_it() {
    // Down to BV/TV 0.2, then the written `adapted.json` back up to the start BV/TV with the
    // written `start.json` as the reference (coupled remodeling): BV/TV within 0.5 points of
    // the start and Dice >= 0.8 against it (issue 5 §4).
    let dir = tempfile::tempdir().unwrap();
    let input = synthetic_fixture(dir.path(), 32);
    let down_dir = dir.path().join("down");
    let o = run(&[
        "adapt",
        input.to_str().unwrap(),
        "--target-bv-tv",
        "0.2",
        "--out",
        down_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let down: Value = serde_json::from_slice(&o.stdout).unwrap();
    let start = down["bv_tv_start"].as_f64().unwrap();
    let start_path = down_dir.join("start.json");
    let start_written = load_volume(&start_path).unwrap();
    let bone = (0..start_written.data.len())
        .filter(|&i| start_written.data.get_f64(i) > 0.0)
        .count();
    assert_eq!(bone as f64 / start_written.data.len() as f64, start);
    let o = run(&[
        "adapt",
        down_dir.join("adapted.json").to_str().unwrap(),
        "--target-bv-tv",
        &format!("{start}"),
        "--reference",
        start_path.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let up: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        (up["bv_tv_end"].as_f64().unwrap() - start).abs() <= 0.005,
        "{up}"
    );
    let d = up["dice_vs_reference"].as_f64().unwrap();
    assert!(d >= 0.8, "Dice vs reference {d}");
    assert_eq!(up["islands"].as_u64(), Some(0));
}

#[test]
fn adapt_refuses_a_reference_on_another_grid_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = synthetic_fixture(dir.path(), 24);
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = synthetic_fixture(&other_dir, 20);
    let o = run(&[
        "adapt",
        input.to_str().unwrap(),
        "--target-bv-tv",
        "0.2",
        "--reference",
        other.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("reference"), "{err}");
    assert!(
        err.contains(input.to_str().unwrap()),
        "names the file: {err}"
    );
}
