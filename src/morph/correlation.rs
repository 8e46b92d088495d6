//! Two-point correlation S2(r) and lineal-path function L(r) of a bone mask, along the three
//! grid axes (Torquato 2002, "Random Heterogeneous Materials: Microstructure and Macroscopic
//! Properties", Springer, ch. 2.2 and 2.4).
//!
//! - **S2(r)** of the bone phase: the probability that both ends of a segment of `r` voxel
//!   lengths, parallel to an axis, lie in bone. `S2(0) = φ` (the bone volume fraction); for a
//!   structure without long-range order `S2(r) → φ²` as `r` grows, and the initial slope
//!   measures the specific surface.
//! - **L(r)** of a phase: the probability that the whole segment — all `r + 1` voxels from one
//!   end to the other — lies in that phase. `L(0)` is the phase's volume fraction, `L(r)` never
//!   increases with `r`, and `L(r) ≤ S2(r)` (both ends in bone is necessary for the whole
//!   segment to be). It is computed for both phases: for bone it decays over the trabecular
//!   thickness, for marrow over the trabecular separation, and a generated structure can match
//!   one and not the other. It is the cumulative form of the chord-length distribution.
//!
//! The estimators are non-periodic: only segments lying fully inside the grid count, so the
//! values at lag `r` along an axis of `n` voxels rest on `n − r` positions per grid line, and
//! `r` must stay below the shortest edge. Each curve is kept per axis (`z` is the loading axis;
//! trabecular bone is anisotropic) and as the mean of the three per-axis probabilities.
//! Lags are in voxels; `r · voxel_size_mm` converts them along each axis.

use rayon::prelude::*;
use serde::Serialize;

use super::MorphError;
use super::thickness::Phase;
use crate::volume::BoneMask;

/// One correlation function sampled at lags `0..=max_r` (voxels), per axis and averaged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AxisCurves {
    /// Mean of the `x`, `y` and `z` curves.
    pub mean: Vec<f64>,
    /// Along `x` (segments parallel to the x axis).
    pub x: Vec<f64>,
    /// Along `y`.
    pub y: Vec<f64>,
    /// Along `z`, the loading axis.
    pub z: Vec<f64>,
}

impl AxisCurves {
    fn from_axes([x, y, z]: [Vec<f64>; 3]) -> Self {
        let mean = (0..x.len()).map(|r| (x[r] + y[r] + z[r]) / 3.0).collect();
        AxisCurves { mean, x, y, z }
    }

    /// The curve of one axis (0 = x, 1 = y, 2 = z).
    pub fn axis(&self, axis: usize) -> &[f64] {
        match axis {
            0 => &self.x,
            1 => &self.y,
            _ => &self.z,
        }
    }
}

/// S2 of the bone and L of both phases for lags `0..=max_r` voxels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Correlations {
    /// Lags in voxels, `0..=max_r`.
    pub r_voxels: Vec<usize>,
    /// Voxel edges (mm) along x, y, z, to convert the lags.
    pub voxel_size_mm: [f64; 3],
    /// Two-point correlation of the bone phase.
    pub s2: AxisCurves,
    /// Lineal-path function of the bone phase.
    pub lineal_bone: AxisCurves,
    /// Lineal-path function of the marrow phase.
    pub lineal_marrow: AxisCurves,
}

/// How the voxels of one axis are laid out: `blocks` blocks of `n` layers of `width`
/// contiguous lines each; voxel `(block, t, line)` sits at `(block · n + t) · width + line`,
/// with `t` the coordinate along the axis.
#[derive(Clone, Copy, Debug)]
struct AxisLayout {
    blocks: usize,
    n: usize,
    width: usize,
}

impl AxisLayout {
    fn of(mask: &BoneMask, axis: usize) -> Self {
        let d = mask.dims();
        match axis {
            0 => AxisLayout {
                blocks: d.ny * d.nz,
                n: d.nx,
                width: 1,
            },
            1 => AxisLayout {
                blocks: d.nz,
                n: d.ny,
                width: d.nx,
            },
            _ => AxisLayout {
                blocks: 1,
                n: d.nz,
                width: d.nx * d.ny,
            },
        }
    }

    /// Grid lines parallel to the axis.
    fn lines(&self) -> usize {
        self.blocks * self.width
    }
}

/// Checks the mask and the lag range shared by the functions of this module.
fn check(mask: &BoneMask, max_r: usize) -> Result<(), MorphError> {
    let d = mask.dims();
    let dims = d.as_array();
    if d.is_empty() {
        return Err(MorphError::EmptyMask { dims });
    }
    let expected = d.checked_len().unwrap_or(usize::MAX);
    if mask.voxels.len() != expected {
        return Err(MorphError::SizeMismatch {
            dims,
            voxels: mask.voxels.len(),
            expected,
        });
    }
    let shortest = d.nx.min(d.ny).min(d.nz);
    if max_r >= shortest {
        return Err(MorphError::InvalidParams(format!(
            "correlation lags up to {max_r} voxels need every edge longer than that, \
             the grid is {}x{}x{}",
            d.nx, d.ny, d.nz
        )));
    }
    Ok(())
}

fn as_bytes(mask: &BoneMask) -> Vec<u8> {
    mask.voxels.iter().map(|&b| b as u8).collect()
}

/// Pairs `(t, t + r)` along the axis with both voxels bone.
fn bone_pairs(v: &[u8], a: AxisLayout, r: usize) -> u64 {
    let span = a.n * a.width;
    let len = (a.n - r) * a.width;
    let shift = r * a.width;
    (0..a.blocks)
        .map(|b| {
            let base = b * span;
            let lo = &v[base..base + len];
            let hi = &v[base + shift..base + shift + len];
            lo.iter()
                .zip(hi)
                .map(|(&p, &q)| u64::from(p & q))
                .sum::<u64>()
        })
        .sum()
}

fn s2_axis(v: &[u8], a: AxisLayout, max_r: usize) -> Vec<f64> {
    (0..=max_r)
        .into_par_iter()
        .map(|r| bone_pairs(v, a, r) as f64 / (a.lines() * (a.n - r)) as f64)
        .collect()
}

/// Histogram of the run lengths of `phase` along the axis: `h[ℓ]` runs of `ℓ` voxels.
fn run_lengths(v: &[u8], a: AxisLayout, phase: Phase) -> Vec<u64> {
    let want = u8::from(phase == Phase::Bone);
    let mut hist = vec![0u64; a.n + 1];
    let mut run = vec![0usize; a.width];
    for b in 0..a.blocks {
        run.iter_mut().for_each(|l| *l = 0);
        for t in 0..a.n {
            let layer = &v[(b * a.n + t) * a.width..][..a.width];
            for (l, &x) in run.iter_mut().zip(layer) {
                if x == want {
                    *l += 1;
                } else if *l > 0 {
                    hist[*l] += 1;
                    *l = 0;
                }
            }
        }
        for &l in &run {
            hist[l] += 1;
        }
    }
    hist[0] = 0;
    hist
}

/// A run of `ℓ` voxels holds `ℓ − r` segments of `r + 1` voxels (when `ℓ > r`).
fn lineal_axis(v: &[u8], a: AxisLayout, phase: Phase, max_r: usize) -> Vec<f64> {
    let hist = run_lengths(v, a, phase);
    (0..=max_r)
        .map(|r| {
            let inside: u64 = hist
                .iter()
                .enumerate()
                .skip(r + 1)
                .map(|(l, &h)| h * (l - r) as u64)
                .sum();
            inside as f64 / (a.lines() * (a.n - r)) as f64
        })
        .collect()
}

/// S2(r) of the bone phase along x, y and z for `r = 0..=max_r` voxels.
pub fn two_point_correlation(mask: &BoneMask, max_r: usize) -> Result<AxisCurves, MorphError> {
    check(mask, max_r)?;
    let v = as_bytes(mask);
    Ok(AxisCurves::from_axes([0, 1, 2].map(|axis| {
        s2_axis(&v, AxisLayout::of(mask, axis), max_r)
    })))
}

/// L(r) of `phase` along x, y and z for `r = 0..=max_r` voxels.
pub fn lineal_path(mask: &BoneMask, phase: Phase, max_r: usize) -> Result<AxisCurves, MorphError> {
    check(mask, max_r)?;
    let v = as_bytes(mask);
    Ok(AxisCurves::from_axes([0, 1, 2].map(|axis| {
        lineal_axis(&v, AxisLayout::of(mask, axis), phase, max_r)
    })))
}

/// S2 of the bone and L of bone and marrow for `r = 0..=max_r` voxels, from one pass over
/// the mask per axis.
pub fn correlation_functions(mask: &BoneMask, max_r: usize) -> Result<Correlations, MorphError> {
    check(mask, max_r)?;
    let v = as_bytes(mask);
    let per_axis: Vec<[Vec<f64>; 3]> = (0..3)
        .into_par_iter()
        .map(|axis| {
            let a = AxisLayout::of(mask, axis);
            [
                s2_axis(&v, a, max_r),
                lineal_axis(&v, a, Phase::Bone, max_r),
                lineal_axis(&v, a, Phase::Marrow, max_r),
            ]
        })
        .collect();
    let pick = |k: usize| AxisCurves::from_axes([0, 1, 2].map(|axis| per_axis[axis][k].clone()));
    Ok(Correlations {
        r_voxels: (0..=max_r).collect(),
        voxel_size_mm: mask.grid.voxel_size_mm,
        s2: pick(0),
        lineal_bone: pick(1),
        lineal_marrow: pick(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use crate::volume::{Dims, Grid};

    fn grid(nx: usize, ny: usize, nz: usize) -> Grid {
        Grid::isotropic(Dims::new(nx, ny, nz), 0.02)
    }

    fn bernoulli(n: usize, phi: f64, seed: u64) -> BoneMask {
        let mut rng = SplitMix64::new(seed);
        BoneMask::from_fn(grid(n, n, n), |_, _, _| rng.next_f64() < phi)
    }

    /// The definitions evaluated literally, voxel by voxel.
    fn brute_force(mask: &BoneMask, axis: usize, r: usize) -> (f64, f64, f64) {
        let d = mask.dims();
        let n = [d.nx, d.ny, d.nz];
        let (mut pairs, mut s2, mut lb, mut lm) = (0usize, 0usize, 0usize, 0usize);
        for z in 0..d.nz {
            for y in 0..d.ny {
                for x in 0..d.nx {
                    let p = [x, y, z];
                    if p[axis] + r >= n[axis] {
                        continue;
                    }
                    pairs += 1;
                    let at = |k: usize| {
                        let mut q = p;
                        q[axis] += k;
                        mask.get(q[0], q[1], q[2])
                    };
                    s2 += usize::from(at(0) && at(r));
                    lb += usize::from((0..=r).all(at));
                    lm += usize::from((0..=r).all(|k| !at(k)));
                }
            }
        }
        let f = |c: usize| c as f64 / pairs as f64;
        (f(s2), f(lb), f(lm))
    }

    /// Problem: the fast estimators against the literal definitions on a small non-cubic
    /// random grid (7×9×11, φ = 0.6, so long runs occur), every axis and lag. Tolerance
    /// 1e-15 (the same counts over the same denominators).
    #[test]
    fn correlation_functions_match_the_definitions_on_a_non_cubic_grid() {
        let mut rng = SplitMix64::new(3);
        let mask = BoneMask::from_fn(grid(7, 9, 11), |_, _, _| rng.next_f64() < 0.6);
        let c = correlation_functions(&mask, 6).unwrap();
        for axis in 0..3 {
            for r in 0..=6 {
                let (s2, lb, lm) = brute_force(&mask, axis, r);
                assert!(
                    (c.s2.axis(axis)[r] - s2).abs() < 1e-15,
                    "S2 axis {axis} r {r}"
                );
                assert!((c.lineal_bone.axis(axis)[r] - lb).abs() < 1e-15);
                assert!((c.lineal_marrow.axis(axis)[r] - lm).abs() < 1e-15);
            }
        }
        assert_eq!(c.s2, two_point_correlation(&mask, 6).unwrap());
        assert_eq!(c.lineal_bone, lineal_path(&mask, Phase::Bone, 6).unwrap());
        assert_eq!(
            c.lineal_marrow,
            lineal_path(&mask, Phase::Marrow, 6).unwrap()
        );
        assert_eq!(c.r_voxels, (0..=6).collect::<Vec<_>>());
    }

    /// Problem: at zero lag both functions reduce to a volume fraction, S2(0) = L_bone(0) = φ
    /// and L_marrow(0) = 1 − φ, on every axis. Tolerance 1e-15.
    #[test]
    fn s2_and_lineal_path_at_zero_lag_equal_the_volume_fraction() {
        for (seed, phi) in [(1, 0.1), (2, 0.35), (3, 0.8)] {
            let mask = bernoulli(24, phi, seed);
            let bv_tv = mask.bv_tv();
            let c = correlation_functions(&mask, 5).unwrap();
            for axis in 0..3 {
                assert!((c.s2.axis(axis)[0] - bv_tv).abs() < 1e-15);
                assert!((c.lineal_bone.axis(axis)[0] - bv_tv).abs() < 1e-15);
                assert!((c.lineal_marrow.axis(axis)[0] - (1.0 - bv_tv)).abs() < 1e-15);
            }
            assert!((c.s2.mean[0] - bv_tv).abs() < 1e-15);
        }
    }

    /// Problem: a Bernoulli field (each voxel bone with probability φ = 0.3, independently),
    /// 64³. Exact expectations: S2(r > 0) = φ², L_bone(r) = φ^(r+1), L_marrow(r) =
    /// (1 − φ)^(r+1). Compared with the sample's own φ̂; the standard error of one lag's S2
    /// on 3 · 64² · (64 − r) ≥ 4·10⁵ pairs is below 1e-3, hence tolerance 3e-3 for S2 and the
    /// first lineal-path lags.
    #[test]
    fn s2_of_a_bernoulli_field_tends_to_phi_squared() {
        let mask = bernoulli(64, 0.3, 11);
        let phi = mask.bv_tv();
        let c = correlation_functions(&mask, 32).unwrap();
        for r in 1..=32 {
            for axis in 0..3 {
                let s2 = c.s2.axis(axis)[r];
                assert!((s2 - phi * phi).abs() < 3e-3, "axis {axis} r {r}: {s2}");
            }
        }
        for r in 1..=3 {
            let lb = c.lineal_bone.mean[r];
            let lm = c.lineal_marrow.mean[r];
            assert!((lb - phi.powi(r as i32 + 1)).abs() < 3e-3, "r {r}: {lb}");
            assert!(
                (lm - (1.0 - phi).powi(r as i32 + 1)).abs() < 3e-3,
                "r {r}: {lm}"
            );
        }
    }

    /// Plates normal to `axis`: bone where the coordinate along it, mod `period`, is below
    /// `thickness`.
    fn plates(dims: [usize; 3], axis: usize, period: usize, thickness: usize) -> BoneMask {
        BoneMask::from_fn(grid(dims[0], dims[1], dims[2]), |x, y, z| {
            [x, y, z][axis] % period < thickness
        })
    }

    /// Problem: a stack of parallel plates of thickness T = 3 voxels and period P = 10
    /// (marrow gaps of 7), normal to x, to y and to z in turn. Exact values over whole
    /// periods: along the normal, S2(r) = [max(0, T − r') + max(0, T − (P − r'))] / P with
    /// r' = r mod P, L_bone(r) = max(0, T − r) / P and L_marrow(r) = max(0, P − T − r) / P.
    /// Along either in-plane axis every line stays in one layer, so S2(r) = L_bone(r) = φ and
    /// L_marrow(r) = 1 − φ, φ being the mask's fraction of bone layers. The estimator is
    /// non-periodic, so for each lag the grid edge along the normal is r + 2P: the r + 2P − r
    /// start positions span exactly two periods. Tolerance 1e-14.
    #[test]
    fn s2_and_lineal_path_of_parallel_plates_are_exact() {
        let (t, p) = (3usize, 10usize);
        for normal in 0..3 {
            for r in 0..=24 {
                let mut dims = [5, 6, 7];
                dims[normal] = r + 2 * p;
                let mask = plates(dims, normal, p, t);
                let phi = mask.bv_tv();
                let c = correlation_functions(&mask, r.min(4)).unwrap_or_else(|_| {
                    panic!("lags up to {} on {dims:?}", r.min(4));
                });
                // The in-plane axes, at the lags the short in-plane edges allow.
                for axis in (0..3).filter(|&a| a != normal) {
                    for q in 0..=r.min(4) {
                        assert!((c.s2.axis(axis)[q] - phi).abs() < 1e-14);
                        assert!((c.lineal_bone.axis(axis)[q] - phi).abs() < 1e-14);
                        assert!((c.lineal_marrow.axis(axis)[q] - (1.0 - phi)).abs() < 1e-14);
                    }
                }
                // Along the normal, at lag r.
                let a = AxisLayout::of(&mask, normal);
                let v = as_bytes(&mask);
                let s2 = s2_axis(&v, a, r)[r];
                let lb = lineal_axis(&v, a, Phase::Bone, r)[r];
                let lm = lineal_axis(&v, a, Phase::Marrow, r)[r];
                let rp = r % p;
                let expect_s2 = (t.saturating_sub(rp) + t.saturating_sub(p - rp)) as f64 / p as f64;
                let expect_lb = t.saturating_sub(r) as f64 / p as f64;
                let expect_lm = (p - t).saturating_sub(r) as f64 / p as f64;
                assert!(
                    (s2 - expect_s2).abs() < 1e-14,
                    "normal {normal} r {r}: {s2}"
                );
                assert!(
                    (lb - expect_lb).abs() < 1e-14,
                    "normal {normal} r {r}: {lb}"
                );
                assert!(
                    (lm - expect_lm).abs() < 1e-14,
                    "normal {normal} r {r}: {lm}"
                );
            }
        }
    }

    /// A smoothed random field cut at its 30 % quantile: a connected, trabecular-like
    /// structure with runs of many lengths.
    fn smooth_structure(n: usize, seed: u64) -> BoneMask {
        let mut rng = SplitMix64::new(seed);
        let noise: Vec<f64> = (0..n * n * n).map(|_| rng.next_f64()).collect();
        let d = Dims::new(n, n, n);
        let mut field = noise.clone();
        for axis in 0..3 {
            let src = field.clone();
            for z in 0..n {
                for y in 0..n {
                    for x in 0..n {
                        let mut s = 0.0;
                        for k in -2i64..=2 {
                            let mut q = [x as i64, y as i64, z as i64];
                            q[axis] = (q[axis] + k).rem_euclid(n as i64);
                            s += src[d.index(q[0] as usize, q[1] as usize, q[2] as usize)];
                        }
                        field[d.index(x, y, z)] = s;
                    }
                }
            }
        }
        let mut sorted = field.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let cut = sorted[(0.3 * sorted.len() as f64) as usize];
        BoneMask::new(grid(n, n, n), field.iter().map(|&v| v > cut).collect()).unwrap()
    }

    /// Problem: the inequalities that hold for any structure with these non-periodic
    /// estimators: L(r) ≤ S2(r) for the bone (the same start positions, and a segment wholly
    /// in bone has both ends in bone), and L(r + 1) ≤ L(r) for both phases, on every axis.
    /// Exact (tolerance 1e-15 for rounding), on a Bernoulli field and a smoothed structure.
    #[test]
    fn lineal_path_is_below_s2_and_never_increases() {
        for (mask, smooth) in [
            (bernoulli(40, 0.45, 5), false),
            (smooth_structure(40, 6), true),
        ] {
            let c = correlation_functions(&mask, 39).unwrap();
            for axis in 0..3 {
                let s2 = c.s2.axis(axis);
                let lb = c.lineal_bone.axis(axis);
                let lm = c.lineal_marrow.axis(axis);
                for r in 0..=39 {
                    assert!(lb[r] <= s2[r] + 1e-15, "axis {axis} r {r}");
                    if r > 0 {
                        assert!(lb[r] <= lb[r - 1] + 1e-15, "bone axis {axis} r {r}");
                        assert!(lm[r] <= lm[r - 1] + 1e-15, "marrow axis {axis} r {r}");
                    }
                }
            }
            // The smoothed structure's bone runs are long: L decays slower than for noise.
            if smooth {
                let phi = mask.bv_tv();
                assert!(c.lineal_bone.mean[3] > 2.0 * phi.powi(4));
            }
        }
    }

    #[test]
    fn lags_beyond_the_shortest_edge_are_refused() {
        let mask = bernoulli(8, 0.5, 1);
        assert!(matches!(
            correlation_functions(&mask, 8),
            Err(MorphError::InvalidParams(_))
        ));
        assert!(two_point_correlation(&mask, 7).is_ok());
        let bad = BoneMask {
            grid: grid(4, 4, 4),
            voxels: vec![true; 10],
        };
        assert!(matches!(
            lineal_path(&bad, Phase::Bone, 1),
            Err(MorphError::SizeMismatch { .. })
        ));
    }
}
