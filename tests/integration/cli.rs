//! The command line end to end (design §4), through `CARGO_BIN_EXE_osteolab`.

use serde_json::Value;

use crate::common::{run, synthetic_fixture};

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[test]
fn fe_json_has_the_contract_keys_and_a_consistent_energy() {
    let dir = tempfile::tempdir().unwrap();
    let vol = synthetic_fixture(dir.path(), 24);
    let v = json_of(&run(&[
        "fe",
        vol.to_str().unwrap(),
        "--bc",
        "axial-clamped",
        "--strain",
        "-0.01",
        "--e-mpa",
        "10000",
        "--nu",
        "0.3",
        "--tol",
        "1e-10",
        "--json",
    ]));
    for key in [
        "dofs",
        "elements",
        "iterations",
        "residual",
        "reaction_force_n",
        "e_app_mpa",
        "strain_energy_mj",
        "seconds",
    ] {
        assert!(v.get(key).is_some(), "missing key {key} in {v}");
    }
    let f = v["reaction_force_n"].as_f64().unwrap();
    let u = v["strain_energy_mj"].as_f64().unwrap();
    // ½ F u_top with u_top = ε · height (24 voxels of 0.04 mm).
    let work = 0.5 * f * (-0.01 * 24.0 * 0.04);
    assert!((u - work).abs() < 1e-6 * work, "U = {u}, ½Fu = {work}");
    assert!(v["residual"].as_f64().unwrap() <= 1e-10);
    assert!(v["e_app_mpa"].as_f64().unwrap() > 0.0);
}

#[test]
fn fe_kubc_reports_a_symmetric_apparent_stiffness() {
    let dir = tempfile::tempdir().unwrap();
    let vol = synthetic_fixture(dir.path(), 16);
    let v = json_of(&run(&[
        "fe",
        vol.to_str().unwrap(),
        "--bc",
        "kubc",
        "--json",
    ]));
    let c = v["stiffness_mpa"].as_array().unwrap();
    for i in 0..6 {
        for j in 0..6 {
            let a = c[i][j].as_f64().unwrap();
            let b = c[j][i].as_f64().unwrap();
            assert!(
                (a - b).abs() < 1e-4 * c[2][2].as_f64().unwrap(),
                "C[{i}][{j}]"
            );
        }
    }
}

#[test]
fn morph_json_has_the_contract_keys() {
    let dir = tempfile::tempdir().unwrap();
    let vol = synthetic_fixture(dir.path(), 32);
    let v = json_of(&run(&["morph", vol.to_str().unwrap(), "--json"]));
    for key in [
        "bv_tv",
        "bs_bv_per_mm",
        "tb_th_mm",
        "tb_th_sd_mm",
        "tb_sp_mm",
        "tb_sp_sd_mm",
        "tb_n_per_mm",
        "conn_d_per_mm3",
        "da",
        "smi",
    ] {
        assert!(v[key].as_f64().is_some_and(f64::is_finite), "{key} in {v}");
    }
    assert!((v["bv_tv"].as_f64().unwrap() - 0.25).abs() < 0.01);
}

#[test]
fn mesh_writes_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let vol = synthetic_fixture(dir.path(), 20);
    for ext in ["stl", "ply", "obj", "vtk"] {
        let out = dir.path().join(format!("bone.{ext}"));
        let mut args = vec![
            "mesh",
            vol.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        if ext == "vtk" || ext == "ply" {
            args.push("--with-sed");
        }
        let o = run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.len() > 1000, "{ext}: {} bytes", bytes.len());
        if ext == "vtk" {
            let text = String::from_utf8_lossy(&bytes);
            assert!(text.starts_with("# vtk DataFile Version"));
            assert!(
                text.contains("SCALARS sed_mpa"),
                "SED field in the VTK file"
            );
        }
    }
}

#[test]
fn bad_input_exits_non_zero_with_a_one_line_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing.json");
    let o = run(&["morph", missing.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "stderr: {err}");
    assert!(lines[0].contains("nothing.json"), "{err}");

    // Dims that do not match the byte count.
    let json = dir.path().join("bad.json");
    std::fs::write(
        &json,
        r#"{"dims": [10, 10, 10], "voxel_size_mm": 0.02, "dtype": "uint8"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.raw"), vec![0u8; 999]).unwrap();
    let o = run(&["fe", json.to_str().unwrap(), "--bc", "axial-free"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad"));

    // An unknown boundary condition.
    let vol = synthetic_fixture(dir.path(), 8);
    let o = run(&["fe", vol.to_str().unwrap(), "--bc", "sideways"]);
    assert!(!o.status.success());
}
