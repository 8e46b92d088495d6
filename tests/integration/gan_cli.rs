//! `osteolab gan` end to end with random (untrained) weights: the generation path works
//! without libtorch, is deterministic for a seed, and thresholds to the requested BV/TV.

use osteolab::gan::arch::{GeneratorArch, GeneratorCard};
use osteolab::gan::weights::random_safetensors;
use serde_json::Value;

use crate::common::{run, run_json};

fn random_generator(dir: &std::path::Path) -> std::path::PathBuf {
    let arch = GeneratorArch {
        latent_dim: 16,
        base_channels: 4,
        size: 32,
    };
    let path = dir.join("random.safetensors");
    std::fs::write(&path, random_safetensors(arch, 3).unwrap()).unwrap();
    let card = GeneratorCard {
        voxel_size_mm: 0.039,
        bv_tv_mean: 0.2,
        ..GeneratorCard::unknown(arch)
    };
    card.save(&dir.join("random.json")).unwrap();
    path
}

/// `osteolab gan generate --weights W ARGS... --out OUT --json`, which must succeed; its JSON.
fn generate_json(weights: &std::path::Path, out: &std::path::Path, args: &[&str]) -> Value {
    let mut all = vec!["gan", "generate", "--weights", weights.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", out.to_str().unwrap(), "--json"]);
    run_json(&all)
}

fn generate(weights: &std::path::Path, out: &std::path::Path, seed: &str) -> Value {
    generate_json(
        weights,
        out,
        &["--seed", seed, "--count", "2", "--bv-tv", "0.3"],
    )
}

#[test]
fn gan_generate_is_deterministic_and_hits_the_bv_tv() {
    let dir = tempfile::tempdir().unwrap();
    let weights = random_generator(dir.path());
    let a = generate(&weights, &dir.path().join("a"), "5");
    let b = generate(&weights, &dir.path().join("b"), "5");
    let cubes = a["cubes"].as_array().unwrap();
    assert_eq!(cubes.len(), 2);
    for (x, y) in cubes.iter().zip(b["cubes"].as_array().unwrap()) {
        assert_eq!(x["bv_tv"], y["bv_tv"]);
    }
    for c in cubes {
        let bv = c["bv_tv"].as_f64().unwrap();
        assert!((bv - 0.3).abs() < 0.02, "BV/TV {bv}");
    }
    for name in ["recongan_seed5_000.raw", "recongan_seed5_001.raw"] {
        let x = std::fs::read(dir.path().join("a").join(name)).unwrap();
        let y = std::fs::read(dir.path().join("b").join(name)).unwrap();
        assert_eq!(x.len(), 32 * 32 * 32);
        assert_eq!(x, y, "same seed, same cube");
    }
    let first = std::fs::read(dir.path().join("a/recongan_seed5_000.raw")).unwrap();
    let second = std::fs::read(dir.path().join("a/recongan_seed5_001.raw")).unwrap();
    assert_ne!(first, second, "different cubes of one seed differ");
}

/// `--field` writes each cube's raw tanh output beside its mask, the mask is the field's
/// high end (a higher mean over bone than over marrow), and the percentiles are ordered.
#[test]
fn gan_generate_writes_the_raw_field_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let weights = random_generator(dir.path());
    let out = dir.path().join("f");
    let report = generate_json(
        &weights,
        &out,
        &["--count", "1", "--bv-tv", "0.3", "--field"],
    );
    let p = &report["field_percentiles"];
    let q = |k: &str| p[k].as_f64().unwrap();
    assert!(-1.0 < q("p1") && q("p1") <= q("p50") && q("p50") <= q("p99") && q("p99") < 1.0);
    let raw = std::fs::read(out.join("recongan_seed0_000_field.raw")).unwrap();
    assert_eq!(raw.len(), 4 * 32 * 32 * 32);
    let field: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mask = std::fs::read(out.join("recongan_seed0_000.raw")).unwrap();
    let mean_where = |value: u8| {
        let v: Vec<f64> = field
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m == value)
            .map(|(f, _)| *f as f64)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (bone, marrow) = (mean_where(255), mean_where(0));
    assert!(bone > marrow, "mean field: bone {bone}, marrow {marrow}");
}

#[test]
fn gan_generate_reports_a_bad_weights_file_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let weights = random_generator(dir.path());
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let o = run(&[
        "gan",
        "generate",
        "--weights",
        weights.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("random.safetensors"), "{err}");
}

/// `gan validate` end to end on the shipped weights and the real micro-CT, with small counts
/// (3 generated, 3 real, lags to 16, copy search on a stride-4 grid; micro-FE off, since one
/// hard generated cube can take minutes of CG, and the library's tests cover that path): the
/// JSON has every section, S2(0) equals the mean BV/TV of each set (tolerance 1e-12), L(0)
/// of bone and marrow sum to 1, the generated cubes sit at the card's BV/TV (within 0.02),
/// the best Dice lies in (0, 1], the figures and validation.json are written, and with 3 + 3
/// cubes and no modulus the verdict fails (sample size) and lists the modulus as not
/// evaluated while the exit code is still 0. Skips plainly when the data are absent.
#[test]
fn gan_validate_reports_every_target_on_the_shipped_weights() {
    let Some(sample) = osteolab::sample_data::microct_sample() else {
        return;
    };
    let weights = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/recongan/generator.safetensors"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("val");
    let o = run(&[
        "gan",
        "validate",
        "--weights",
        weights,
        "--data",
        sample.to_str().unwrap(),
        "--downsample",
        "2",
        "--count",
        "3",
        "--real-count",
        "3",
        "--max-r",
        "16",
        "--dice-stride",
        "4",
        "--seed",
        "2",
        "--no-fe",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("failed: sample size"), "{stderr}");
    // stderr is a pipe here, so progress comes as plain lines, each stage through to its end.
    assert!(
        stderr.contains("6/6 cubes measured"),
        "no progress line for the cubes: {stderr}"
    );
    assert!(
        stderr.contains("3/3 cubes searched for copies"),
        "no progress line for the copy search: {stderr}"
    );
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let saved: Value =
        serde_json::from_slice(&std::fs::read(out.join("validation.json")).unwrap()).unwrap();
    assert_eq!(r["s2"], saved["s2"]);
    for png in ["s2.png", "lineal-path.png"] {
        let bytes = std::fs::read(out.join(png)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{png}");
    }
    let f = |v: &Value| v.as_f64().unwrap();
    let morph = &r["morphometry"];
    for key in [
        "bv_tv",
        "tb_th_mm",
        "tb_sp_mm",
        "tb_n_per_mm",
        "conn_d_per_mm3",
        "da",
        "smi",
    ] {
        let m = &morph[key];
        for side in ["real", "generated"] {
            assert!(f(&m[side]["mean"]).is_finite(), "{key} {side}");
            assert!(f(&m[side]["sd"]) >= 0.0, "{key} {side}");
        }
        assert!(m["relative_difference"].is_number(), "{key}");
        assert!(m["within_10_percent"].is_boolean(), "{key}");
    }
    let s2 = &r["s2"];
    assert_eq!(s2["r"].as_array().unwrap().len(), 17);
    assert!((f(&s2["real"][0]) - f(&morph["bv_tv"]["real"]["mean"])).abs() < 1e-12);
    assert!((f(&s2["generated"][0]) - f(&morph["bv_tv"]["generated"]["mean"])).abs() < 1e-12);
    assert!(f(&s2["rms_difference"]) >= 0.0);
    assert_eq!(s2["pass"], f(&s2["rms_difference"]) <= 0.01);
    let lp = &r["lineal_path"];
    for side in ["real", "generated"] {
        let sum = f(&lp["bone"][side][0]) + f(&lp["marrow"][side][0]);
        assert!((sum - 1.0).abs() < 1e-12, "{side}: {sum}");
    }
    let card: Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/recongan/generator.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(r["bv_tv_target"], card["bv_tv_mean"]);
    assert_eq!(r["training"], card["training"]);
    let cubes = r["cubes"].as_array().unwrap();
    assert_eq!(cubes.len(), 6);
    for c in cubes {
        assert!(c["e_app_mpa"].is_null(), "{c}");
        if c["kind"] == "generated" {
            assert!(
                (f(&c["bv_tv"]) - f(&card["bv_tv_mean"])).abs() < 0.02,
                "{c}"
            );
        }
    }
    assert!(r["e_app_mpa"].is_null() && r["fe"].is_null());
    assert!(stderr.contains("not evaluated: e_app_mpa"), "{stderr}");
    let dice = &r["dice"];
    assert!(f(&dice["best"]) > 0.0 && f(&dice["best"]) <= 1.0);
    assert!(f(&dice["mean_best"]) <= f(&dice["best"]));
    assert_eq!(dice["per_cube"].as_array().unwrap().len(), 3);
    assert_eq!(r["pass"], false);
    assert!(
        r["failed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.as_str().unwrap().starts_with("sample size"))
    );
}

#[test]
fn gan_validate_names_a_missing_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let weights = random_generator(dir.path());
    let missing = dir.path().join("absent.json");
    let o = run(&[
        "gan",
        "validate",
        "--weights",
        weights.to_str().unwrap(),
        "--data",
        missing.to_str().unwrap(),
        "--count",
        "2",
        "--real-count",
        "2",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("absent.json"), "{err}");
}
