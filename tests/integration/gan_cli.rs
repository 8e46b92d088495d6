//! `osteolab gan` end to end with random (untrained) weights: the generation path works
//! without libtorch, is deterministic for a seed, and thresholds to the requested BV/TV.

use osteolab::gan::arch::{GeneratorArch, GeneratorCard};
use osteolab::gan::weights::random_safetensors;
use serde_json::Value;

use crate::common::run;

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

fn generate(weights: &std::path::Path, out: &std::path::Path, seed: &str) -> Value {
    let o = run(&[
        "gan",
        "generate",
        "--weights",
        weights.to_str().unwrap(),
        "--seed",
        seed,
        "--count",
        "2",
        "--bv-tv",
        "0.3",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
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
