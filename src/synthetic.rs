//! A procedurally generated trabecular-like structure, the app's built-in microstructure until
//! a trained generator ships. It is labelled "synthetic" wherever it is shown.
//!
//! Method: a band-limited Gaussian random field G built from random plane waves (Rice 1944;
//! the "level-cut Gaussian random field" of Roberts & Teubner 1995 used for porous media and
//! bone), with wave vectors of wavelength about `wavelength_mm` and their z components shrunk
//! by `axial_elongation`, so struts and plates run preferentially along the loading axis z.
//! Bone is the two-sided level cut `|G| < t`, a network of perforated plates and rods; `t` is
//! the quantile that gives the requested BV/TV, islands are removed (largest 6-connected
//! component) and the cut corrected until BV/TV matches.

use rayon::prelude::*;

use crate::volume::segment::largest_component;
use crate::volume::{BoneMask, Dims, Grid};

/// Parameters of the synthetic structure.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SyntheticParams {
    /// Edge length of the cube in voxels.
    pub size_voxels: usize,
    /// Voxel edge length (mm).
    pub voxel_size_mm: f64,
    /// Target bone volume fraction (0.02–0.6).
    pub bv_tv: f64,
    /// Dominant wavelength of the random field (mm); sets the trabecular spacing.
    pub wavelength_mm: f64,
    /// Factor (≤ 1) applied to wave-vector z components: < 1 elongates the structure along z.
    pub axial_elongation: f64,
    /// Number of plane waves.
    pub modes: usize,
    pub seed: u64,
}

impl Default for SyntheticParams {
    /// A 3.8 mm cube at 40 µm with the BV/TV (0.25) and spacing of human vertebral
    /// trabecular bone (Tb.Sp ≈ 0.6-0.9 mm; Hildebrand et al. 1999, J Bone Miner Res 14:1167).
    fn default() -> Self {
        Self {
            size_voxels: 96,
            voxel_size_mm: 0.04,
            bv_tv: 0.25,
            wavelength_mm: 1.3,
            axial_elongation: 0.6,
            modes: 48,
            seed: 1,
        }
    }
}

/// Errors of the generator.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SyntheticError {
    #[error("invalid synthetic-structure parameter: {0}")]
    InvalidParameter(String),
}

impl SyntheticParams {
    pub fn validate(&self) -> Result<(), SyntheticError> {
        let bad = |m: String| Err(SyntheticError::InvalidParameter(m));
        if !(4..=1024).contains(&self.size_voxels) {
            return bad(format!(
                "size must be 4-1024 voxels, got {}",
                self.size_voxels
            ));
        }
        if !(self.voxel_size_mm.is_finite() && self.voxel_size_mm > 0.0) {
            return bad(format!(
                "voxel size must be positive, got {}",
                self.voxel_size_mm
            ));
        }
        if !(self.bv_tv.is_finite() && (0.02..=0.6).contains(&self.bv_tv)) {
            return bad(format!("BV/TV must lie in 0.02-0.6, got {}", self.bv_tv));
        }
        if !(self.wavelength_mm.is_finite() && self.wavelength_mm > 2.0 * self.voxel_size_mm) {
            return bad(format!(
                "wavelength must exceed two voxels, got {} mm",
                self.wavelength_mm
            ));
        }
        if !(self.axial_elongation.is_finite()
            && self.axial_elongation > 0.0
            && self.axial_elongation <= 1.0)
        {
            return bad(format!(
                "axial elongation must lie in (0, 1], got {}",
                self.axial_elongation
            ));
        }
        if self.modes == 0 || self.modes > 4096 {
            return bad(format!("modes must be 1-4096, got {}", self.modes));
        }
        Ok(())
    }
}

/// SplitMix64 (Steele et al. 2014): a small, high-quality seeded generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The random field G on the grid (mean 0, unit variance).
fn random_field(p: &SyntheticParams) -> Vec<f32> {
    let n = p.size_voxels;
    let mut rng = SplitMix64(p.seed ^ 0x005E_ED0F_B0E5);
    let mut waves = Vec::with_capacity(p.modes);
    for _ in 0..p.modes {
        // Isotropic direction, then anisotropic scaling of kz.
        let cz = 2.0 * rng.uniform() - 1.0;
        let phi = 2.0 * std::f64::consts::PI * rng.uniform();
        let sz = (1.0 - cz * cz).sqrt();
        let k = 2.0 * std::f64::consts::PI / p.wavelength_mm * (0.8 + 0.4 * rng.uniform());
        let kv = [
            k * sz * phi.cos(),
            k * sz * phi.sin(),
            k * cz * p.axial_elongation,
        ];
        let phase = 2.0 * std::f64::consts::PI * rng.uniform();
        waves.push((kv, phase));
    }
    // Per-axis complex exponentials: e^{i k_a x_a}.
    let h = p.voxel_size_mm;
    let axis = |a: usize| -> Vec<Vec<(f32, f32)>> {
        waves
            .iter()
            .map(|(kv, _)| {
                (0..n)
                    .map(|i| {
                        let t = kv[a] * i as f64 * h;
                        (t.cos() as f32, t.sin() as f32)
                    })
                    .collect()
            })
            .collect()
    };
    let (ex, ey, ez) = (axis(0), axis(1), axis(2));
    let phases: Vec<(f32, f32)> = waves
        .iter()
        .map(|(_, ph)| (ph.cos() as f32, ph.sin() as f32))
        .collect();
    let norm = (2.0 / p.modes as f64).sqrt() as f32;
    let mut field = vec![0f32; n * n * n];
    field
        .par_chunks_mut(n * n)
        .enumerate()
        .for_each(|(z, slab)| {
            for (m, &(pc, ps)) in phases.iter().enumerate() {
                // c = e^{i(kz z + φ)}
                let (zc, zs) = ez[m][z];
                let (c0, s0) = (zc * pc - zs * ps, zc * ps + zs * pc);
                for y in 0..n {
                    let (yc, ys) = ey[m][y];
                    let (c1, s1) = (c0 * yc - s0 * ys, c0 * ys + s0 * yc);
                    let row = &mut slab[y * n..(y + 1) * n];
                    for (x, v) in row.iter_mut().enumerate() {
                        let (xc, xs) = ex[m][x];
                        *v += c1 * xc - s1 * xs;
                    }
                }
            }
            slab.iter_mut().for_each(|v| *v *= norm);
        });
    field
}

/// Generates the synthetic trabecular structure.
pub fn synthetic_trabecular(p: &SyntheticParams) -> Result<BoneMask, SyntheticError> {
    p.validate()?;
    let n = p.size_voxels;
    let grid = Grid::isotropic(Dims::new(n, n, n), p.voxel_size_mm);
    let field = random_field(p);
    let abs: Vec<f32> = field.iter().map(|v| v.abs()).collect();
    let mut sorted = abs.clone();
    sorted.par_sort_unstable_by(f32::total_cmp);
    let mut target = p.bv_tv;
    let mut mask = BoneMask::new(grid, vec![false; abs.len()]).expect("sizes match");
    // Islands removed by the component filter lower BV/TV; correct the cut a few times.
    for _ in 0..4 {
        let k = ((target * sorted.len() as f64) as usize).clamp(1, sorted.len() - 1);
        let t = sorted[k];
        let raw = BoneMask::new(grid, abs.iter().map(|&a| a < t).collect()).expect("sizes");
        mask = largest_component(&raw);
        let got = mask.bv_tv();
        if (got - p.bv_tv).abs() < 0.002 || got == 0.0 {
            break;
        }
        target *= p.bv_tv / got;
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_structure_meets_the_requested_bv_tv_and_is_one_component() {
        for bv_tv in [0.12, 0.25, 0.35] {
            let p = SyntheticParams {
                size_voxels: 48,
                bv_tv,
                ..Default::default()
            };
            let m = synthetic_trabecular(&p).unwrap();
            assert!(
                (m.bv_tv() - bv_tv).abs() < 0.005,
                "{} vs {bv_tv}",
                m.bv_tv()
            );
            assert_eq!(largest_component(&m).count(), m.count());
        }
    }

    #[test]
    fn synthetic_structure_is_deterministic_for_a_seed() {
        let p = SyntheticParams {
            size_voxels: 32,
            ..Default::default()
        };
        let a = synthetic_trabecular(&p).unwrap();
        assert_eq!(a, synthetic_trabecular(&p).unwrap());
        let b = synthetic_trabecular(&SyntheticParams { seed: 2, ..p }).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn invalid_synthetic_parameters_are_rejected() {
        for p in [
            SyntheticParams {
                bv_tv: f64::NAN,
                ..Default::default()
            },
            SyntheticParams {
                size_voxels: 2,
                ..Default::default()
            },
            SyntheticParams {
                voxel_size_mm: -1.0,
                ..Default::default()
            },
        ] {
            assert!(synthetic_trabecular(&p).is_err());
        }
    }
}
