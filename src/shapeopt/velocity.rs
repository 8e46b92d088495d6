//! The mechanical stimulus that drives the surface: strain energy density (SED) from the
//! micro-FE, turned into a smooth field on a narrow band around the bone surface.
//!
//! SED-driven surface remodeling follows Huiskes et al. (2000, Nature 405:704) and Adachi et al.
//! (2001, J Biomech Eng 123:403): bone forms on surfaces where the local SED is high and is
//! resorbed where it is low. In level-set shape optimisation (Allaire, Jouve & Toader 2004) the
//! same field is the shape derivative of the compliance: moving the surface outward where SED is
//! highest stiffens the structure most per unit of added volume.
//!
//! The field is built in three steps:
//! 1. `ln(SED + ε)` on the bone voxels (SED spans orders of magnitude; ε = 10⁻⁶ × the mean
//!    bone SED keeps unloaded voxels finite and lowest);
//! 2. normalised Gaussian convolution (Knutsson & Westin 1993, "Normalized and differential
//!    convolution", CVPR): `G∗(m·r) / G∗m` with m the bone indicator, which both smooths the
//!    voxel noise of the FE field and extends it into the marrow a few voxels beyond the surface,
//!    where formation happens;
//! 3. rank normalisation over the narrow band `|φ| ≤ band`: the stimulus is `2q − 1` with q the
//!    voxel's quantile, so s = 0 at the band median of log SED (its natural reference),
//!    s ∈ [−1, 1], and the move's speed `gain · s` is bounded in voxels whatever the load
//!    magnitude or the tissue modulus (monotone in SED, so the order of formation and
//!    resorption is that of the SED itself). Outside the band s = 0.

use rayon::prelude::*;

use crate::volume::BoneMask;
use crate::volume::segment::gaussian_smooth_f32;

/// Relative floor added to SED before the logarithm.
const SED_FLOOR_RELATIVE: f64 = 1e-6;
/// Below this smoothed bone weight a voxel is too far from bone to carry a stimulus.
const MIN_WEIGHT: f32 = 1e-4;

/// The stimulus field (see the module docs): one value per voxel, in [−1, 1].
///
/// `sed_mpa` is grid-indexed (0 where there is no element), `phi` the level set of `mask`.
pub fn surface_stimulus(
    mask: &BoneMask,
    sed_mpa: &[f32],
    phi: &[f32],
    smoothing_sigma_voxels: f64,
    band_voxels: f64,
) -> Vec<f32> {
    let dims = mask.dims();
    let (sum, count) = mask
        .voxels
        .iter()
        .zip(sed_mpa)
        .filter(|(b, _)| **b)
        .fold((0.0f64, 0usize), |(s, c), (_, &e)| {
            (s + f64::from(e), c + 1)
        });
    let mean = if count > 0 { sum / count as f64 } else { 0.0 };
    let floor = if mean > 0.0 {
        mean * SED_FLOOR_RELATIVE
    } else {
        1e-30
    };
    let log_sed: Vec<f32> = mask
        .voxels
        .par_iter()
        .zip(sed_mpa)
        .map(|(&b, &e)| {
            if b {
                (f64::from(e).max(0.0) + floor).ln() as f32
            } else {
                0.0
            }
        })
        .collect();
    let weight: Vec<f32> = mask
        .voxels
        .par_iter()
        .map(|&b| if b { 1.0 } else { 0.0 })
        .collect();
    let (num, den) = if smoothing_sigma_voxels > 0.0 {
        (
            gaussian_smooth_f32(&log_sed, dims, smoothing_sigma_voxels)
                .expect("dims match the mask and sigma was validated"),
            gaussian_smooth_f32(&weight, dims, smoothing_sigma_voxels)
                .expect("dims match the mask and sigma was validated"),
        )
    } else {
        (log_sed, weight)
    };
    let band = band_voxels as f32;
    let mut in_band: Vec<u32> = (0..phi.len() as u32)
        .filter(|&i| phi[i as usize].abs() <= band && den[i as usize] > MIN_WEIGHT)
        .collect();
    let value = |i: u32| num[i as usize] / den[i as usize];
    in_band.sort_unstable_by(|&a, &b| value(a).total_cmp(&value(b)).then(a.cmp(&b)));
    let mut s = vec![0.0f32; phi.len()];
    // Band voxels too far from bone for the smoothed field count as the least stimulated.
    for (i, v) in s.iter_mut().enumerate() {
        if phi[i].abs() <= band {
            *v = -1.0;
        }
    }
    let m = in_band.len();
    if m == 1 {
        s[in_band[0] as usize] = 0.0;
    } else {
        // Equal values share the mean quantile of their run, so ties do not depend on index.
        let mut k = 0;
        while k < m {
            let mut end = k + 1;
            while end < m && value(in_band[end]) == value(in_band[k]) {
                end += 1;
            }
            let q = 0.5 * (k + end - 1) as f64 / (m - 1) as f64;
            for &i in &in_band[k..end] {
                s[i as usize] = (2.0 * q - 1.0) as f32;
            }
            k = end;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapeopt::levelset::signed_distance;
    use crate::volume::{Dims, Grid};

    #[test]
    fn stimulus_orders_surface_voxels_like_their_sed() {
        // A slab of bone (z < 4) whose SED grows with x: the stimulus on the slab's top face
        // must grow with x too, span [-1, 1] over the band, and vanish outside the band.
        let d = Dims::new(16, 6, 10);
        let mask = BoneMask::from_fn(Grid::isotropic(d, 0.05), |_, _, z| z < 4);
        let sed: Vec<f32> = (0..d.len())
            .map(|i| {
                let [x, _, z] = d.coords(i);
                if z < 4 { 1.0 + x as f32 } else { 0.0 }
            })
            .collect();
        let phi = signed_distance(&mask);
        let s = surface_stimulus(&mask, &sed, &phi, 1.0, 2.0);
        let top: Vec<f32> = (0..16).map(|x| s[d.index(x, 3, 3)]).collect();
        for w in top.windows(2) {
            assert!(w[1] > w[0], "stimulus not increasing along x: {top:?}");
        }
        let lo = s.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        assert!(lo >= -1.0 && hi <= 1.0 && hi > 0.9 && lo < -0.9);
        assert_eq!(s[d.index(5, 3, 9)], 0.0, "outside the band");
        assert_eq!(s[d.index(5, 3, 0)], 0.0, "outside the band");
    }
}
