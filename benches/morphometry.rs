//! Morphometry on a 256³ synthetic trabecular-like volume: each metric and the full set.
//!
//! The volume is deterministic: white noise on a periodic 64³ grid, Gaussian-smoothed
//! (sigma 1.5 cells, periodic), trilinearly upsampled x4 to 256³, and bone where |field| is
//! below its 25th percentile: a connected network of plate-like walls (BV/TV = 0.25) around
//! marrow cavities 20-40 voxels across. Run: `cargo bench --bench morphometry
//! --no-default-features`.

use osteolab::morph::{self, MilParams, MorphParams};
use osteolab::volume::{BoneMask, Dims, Grid};

fn main() {
    divan::main();
}

fn synthetic_trabecular(n: usize) -> BoneMask {
    let c = 64usize;
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut noise: Vec<f64> = (0..c * c * c)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect();
    let sigma = 1.5f64;
    let half = (3.0 * sigma).ceil() as i64;
    let kernel: Vec<f64> = (-half..=half)
        .map(|k| (-(k * k) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    for axis in 0..3 {
        let src = noise.clone();
        for z in 0..c {
            for y in 0..c {
                for x in 0..c {
                    let mut acc = 0.0;
                    for (t, kv) in kernel.iter().enumerate() {
                        let o = t as i64 - half;
                        let mut p = [x as i64, y as i64, z as i64];
                        p[axis] = (p[axis] + o).rem_euclid(c as i64);
                        acc += kv * src[p[0] as usize + c * (p[1] as usize + c * p[2] as usize)];
                    }
                    noise[x + c * (y + c * z)] = acc;
                }
            }
        }
    }
    let scale = c as f64 / n as f64;
    let at = |x: usize, y: usize, z: usize| noise[(x % c) + c * ((y % c) + c * (z % c))];
    let mut field = vec![0f64; n * n * n];
    for z in 0..n {
        let fz = z as f64 * scale;
        let (z0, tz) = (fz.floor() as usize, fz.fract());
        for y in 0..n {
            let fy = y as f64 * scale;
            let (y0, ty) = (fy.floor() as usize, fy.fract());
            for x in 0..n {
                let fx = x as f64 * scale;
                let (x0, tx) = (fx.floor() as usize, fx.fract());
                let mut v = 0.0;
                for (dz, wz) in [(0, 1.0 - tz), (1, tz)] {
                    for (dy, wy) in [(0, 1.0 - ty), (1, ty)] {
                        for (dx, wx) in [(0, 1.0 - tx), (1, tx)] {
                            v += wz * wy * wx * at(x0 + dx, y0 + dy, z0 + dz);
                        }
                    }
                }
                field[x + n * (y + n * z)] = v.abs();
            }
        }
    }
    let mut sorted = field.clone();
    let k = sorted.len() / 4;
    let (_, q, _) = sorted.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    let q = *q;
    let grid = Grid::isotropic(Dims::new(n, n, n), 0.0195);
    BoneMask::new(grid, field.iter().map(|&v| v < q).collect()).expect("dims match")
}

fn volume() -> BoneMask {
    synthetic_trabecular(256)
}

#[divan::bench(sample_count = 1, sample_size = 1)]
fn bs_bv_and_smi(bencher: divan::Bencher) {
    bencher
        .with_inputs(volume)
        .bench_refs(|m| morph::bone_surface(m).unwrap());
}

#[divan::bench(sample_count = 1, sample_size = 1)]
fn tb_th(bencher: divan::Bencher) {
    bencher
        .with_inputs(volume)
        .bench_refs(|m| morph::trabecular_thickness(m).unwrap());
}

#[divan::bench(sample_count = 1, sample_size = 1)]
fn tb_sp(bencher: divan::Bencher) {
    bencher
        .with_inputs(volume)
        .bench_refs(|m| morph::trabecular_separation(m).unwrap());
}

#[divan::bench(sample_count = 1, sample_size = 1)]
fn conn_d(bencher: divan::Bencher) {
    bencher
        .with_inputs(volume)
        .bench_refs(|m| morph::connectivity_density(m).unwrap());
}

#[divan::bench(sample_count = 1, sample_size = 1)]
fn da_mil(bencher: divan::Bencher) {
    bencher
        .with_inputs(volume)
        .bench_refs(|m| morph::degree_of_anisotropy(m, &MilParams::default()).unwrap());
}

#[divan::bench(sample_count = 1, sample_size = 1)]
fn full_set(bencher: divan::Bencher) {
    bencher.with_inputs(volume).bench_refs(|m| {
        let r = morph::morphometry(m, &MorphParams::default()).unwrap();
        eprintln!("256³ synthetic: {r:?}");
        r
    });
}
