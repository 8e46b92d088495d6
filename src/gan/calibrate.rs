//! Choosing how a generator's fields become bone masks (`osteolab gan calibrate`).
//!
//! A generated field is a grey-value cube; [`Generator::field_to_mask_with`] turns it into
//! bone by Gaussian smoothing (σ), a threshold at the target BV/TV with islands removed, and
//! optionally the fill of enclosed marrow cavities
//! ([`fill_enclosed_marrow`](crate::volume::segment::fill_enclosed_marrow)). σ sets the
//! smallest feature that survives, hence Tb.Th, Tb.Sp, Tb.N and Conn.D; the fill removes the
//! marrow bubbles a generator can leave inside thick bone, which real trabecular bone does not
//! have and which lower the Euler-number connectivity.
//!
//! The calibration scores every candidate `(σ, fill)` by the RMS over Tb.Th, Tb.Sp, Tb.N,
//! Conn.D, DA and SMI of the relative difference between the mean over `generated_count`
//! generated cubes and the mean over `real_count` training sub-cubes, and picks the lowest.
//! BV/TV is imposed by the threshold and left out. It is a fit of the post-processing to the
//! training data, like the BV/TV target itself: the cubes it uses are drawn with their own
//! seed ([`CalibrationParams::seed`], 1 by default against the validation's 0), so the
//! latents are disjoint from the validation's and the real sub-cubes are a different draw
//! from the same training volumes. The real sub-cubes are cut and measured as
//! [`super::validate`] cuts them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::Generator;
use super::arch::MaskOptions;
use super::validate::{
    MorphometryComparison, ValidationControl, ValidationError, ValidationParams, ValidationStage,
    check_inputs, extract_cube, sample_real_cubes,
};
use crate::morph::{self, MorphParams, Morphometry};
use crate::volume::BoneMask;

/// The indices the score averages (BV/TV is imposed by the threshold).
pub const SCORED_INDICES: [&str; 6] = [
    "tb_th_mm",
    "tb_sp_mm",
    "tb_n_per_mm",
    "conn_d_per_mm3",
    "da",
    "smi",
];

/// Settings of [`calibrate_mask`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CalibrationParams {
    /// Generated cubes per candidate (the same latents for every candidate).
    pub generated_count: usize,
    /// Real training sub-cubes.
    pub real_count: usize,
    /// Seed of the latents and of the real sub-cube sampler; keep it apart from the
    /// validation's seed.
    pub seed: u64,
    /// BV/TV of the thresholded cubes; `None` = the card's training mean.
    pub bv_tv: Option<f64>,
    /// Candidate smoothing σ, voxels.
    pub sigmas_voxels: Vec<f64>,
    /// Candidate cavity-fill settings.
    pub fill_enclosed_marrow: Vec<bool>,
}

impl Default for CalibrationParams {
    fn default() -> Self {
        Self {
            generated_count: 16,
            real_count: 16,
            seed: 1,
            bv_tv: None,
            sigmas_voxels: vec![0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 1.0, 1.5],
            fill_enclosed_marrow: vec![false, true],
        }
    }
}

/// One candidate's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CandidateScore {
    pub options: MaskOptions,
    /// RMS over [`SCORED_INDICES`] of (generated mean − real mean) / |real mean|.
    pub score: f64,
    pub morphometry: MorphometryComparison,
}

/// The result of [`calibrate_mask`] (`osteolab gan calibrate` prints it as JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CalibrationReport {
    pub params: CalibrationParams,
    /// BV/TV the generated cubes were thresholded to.
    pub bv_tv_target: f64,
    /// Every candidate, in the order σ-major, fill-minor.
    pub candidates: Vec<CandidateScore>,
    /// The candidate with the lowest score.
    pub best: MaskOptions,
    pub best_score: f64,
    pub seconds: f64,
}

/// RMS of the relative differences of the scored indices.
fn score(cmp: &MorphometryComparison) -> f64 {
    let entries = cmp.entries();
    let scored: Vec<f64> = entries
        .iter()
        .filter(|(name, _)| SCORED_INDICES.contains(name))
        .map(|(_, c)| c.relative_difference)
        .collect();
    (scored.iter().map(|d| d * d).sum::<f64>() / scored.len() as f64).sqrt()
}

fn morph_of(mask: &BoneMask, cube: String) -> Result<Morphometry, ValidationError> {
    morph::morphometry(mask, &MorphParams::default())
        .map_err(|source| ValidationError::Morph { cube, source })
}

/// Scores every `(σ, fill)` candidate of `params` for `generator` against the training
/// `masks` (segmented, at the generator's voxel size) and returns them with the best.
pub fn calibrate_mask(
    generator: &Generator,
    masks: &[BoneMask],
    params: &CalibrationParams,
    control: &ValidationControl,
) -> Result<CalibrationReport, ValidationError> {
    let t0 = Instant::now();
    let bad = |m: String| Err(ValidationError::InvalidParameter(m));
    if params.sigmas_voxels.is_empty() || params.fill_enclosed_marrow.is_empty() {
        return bad("calibration needs at least one σ and one fill setting".into());
    }
    let candidates: Vec<MaskOptions> = params
        .sigmas_voxels
        .iter()
        .flat_map(|&sigma_voxels| {
            params
                .fill_enclosed_marrow
                .iter()
                .map(move |&fill_enclosed_marrow| MaskOptions {
                    sigma_voxels,
                    fill_enclosed_marrow,
                })
        })
        .collect();
    for c in &candidates {
        c.validate()?;
    }
    let (size, _, bv_tv) = check_inputs(
        generator,
        masks,
        &ValidationParams {
            generated_count: params.generated_count,
            real_count: params.real_count,
            seed: params.seed,
            bv_tv: params.bv_tv,
            max_r_voxels: 0,
            fe: false,
            dice_stride_voxels: 1,
        },
    )?;
    let n_gen = params.generated_count;
    let total = params.real_count + n_gen * candidates.len();
    let done = AtomicUsize::new(0);
    let tick = || {
        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
        control.report(ValidationStage::Cubes, d, total);
    };
    let check_cancel = || {
        if control.cancelled() {
            Err(ValidationError::Cancelled)
        } else {
            Ok(())
        }
    };
    control.report(ValidationStage::Cubes, 0, total);

    let real_cubes = sample_real_cubes(masks, size, params.real_count, params.seed);
    let real: Vec<Morphometry> = real_cubes
        .par_iter()
        .enumerate()
        .map(|(i, rc)| {
            check_cancel()?;
            let mask = extract_cube(&masks[rc.volume], rc, size);
            let m = morph_of(&mask, format!("real sub-cube {i} (volume {})", rc.volume))?;
            tick();
            Ok(m)
        })
        .collect::<Result<_, ValidationError>>()?;

    let fields: Vec<Vec<f32>> = (0..n_gen)
        .into_par_iter()
        .map(|i| generator.generate(params.seed, i))
        .collect();
    let generated: Vec<Vec<Morphometry>> = candidates
        .iter()
        .map(|&options| {
            fields
                .par_iter()
                .enumerate()
                .map(|(i, field)| {
                    check_cancel()?;
                    let mask = generator.field_to_mask_with(field, bv_tv, options)?;
                    let m = morph_of(
                        &mask,
                        format!(
                            "generated cube {i} (seed {}, σ {}, fill {})",
                            params.seed, options.sigma_voxels, options.fill_enclosed_marrow
                        ),
                    )?;
                    tick();
                    Ok(m)
                })
                .collect::<Result<Vec<_>, ValidationError>>()
        })
        .collect::<Result<_, _>>()?;

    let scored: Vec<CandidateScore> = candidates
        .iter()
        .zip(&generated)
        .map(|(&options, gen_morph)| {
            let morphometry = MorphometryComparison::of(&real, gen_morph);
            CandidateScore {
                options,
                score: score(&morphometry),
                morphometry,
            }
        })
        .collect();
    let best = scored
        .iter()
        .min_by(|a, b| a.score.total_cmp(&b.score))
        .expect("at least one candidate");
    Ok(CalibrationReport {
        params: params.clone(),
        bv_tv_target: bv_tv,
        best: best.options,
        best_score: best.score,
        candidates: scored,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::arch::{GeneratorArch, GeneratorCard};
    use super::super::weights::random_safetensors;
    use super::*;
    use crate::volume::{Dims, Grid};

    /// A small random generator whose card sits at the training voxel size.
    fn generator(voxel_size_mm: f64) -> Generator {
        let arch = GeneratorArch {
            latent_dim: 8,
            base_channels: 4,
            size: 16,
        };
        let bytes = random_safetensors(arch, 5).unwrap();
        Generator::from_safetensors_bytes(&bytes, arch, "random")
            .unwrap()
            .with_card(GeneratorCard {
                voxel_size_mm,
                bv_tv_mean: 0.3,
                ..GeneratorCard::unknown(arch)
            })
            .unwrap()
    }

    /// Plates normal to z, 2 voxels thick every 8, joined by square rods along z: a connected,
    /// anisotropic training volume whose indices are all non-zero.
    fn plates(n: usize, h: f64) -> BoneMask {
        BoneMask::from_fn(Grid::isotropic(Dims::new(n, n, n), h), |x, y, z| {
            z % 8 < 2 || (x % 8 < 3 && y % 8 < 3)
        })
    }

    /// The score is the RMS of the six relative differences, and the best candidate is the
    /// one with the lowest score; every candidate is scored on the same latents.
    #[test]
    fn calibration_scores_every_candidate_and_picks_the_lowest_rms() {
        let g = generator(0.04);
        let masks = [plates(24, 0.04)];
        let params = CalibrationParams {
            generated_count: 3,
            real_count: 3,
            sigmas_voxels: vec![0.0, 1.0],
            ..CalibrationParams::default()
        };
        let report = calibrate_mask(&g, &masks, &params, &ValidationControl::default()).unwrap();
        assert_eq!(report.candidates.len(), 4);
        for c in &report.candidates {
            let d: Vec<f64> = c
                .morphometry
                .entries()
                .iter()
                .filter(|(n, _)| SCORED_INDICES.contains(n))
                .map(|(_, m)| m.relative_difference)
                .collect();
            let rms = (d.iter().map(|x| x * x).sum::<f64>() / 6.0).sqrt();
            assert!((c.score - rms).abs() < 1e-12, "{} against {rms}", c.score);
            assert!(c.score.is_finite(), "{:?}", c.morphometry);
        }
        let lowest = report
            .candidates
            .iter()
            .map(|c| c.score)
            .fold(f64::INFINITY, f64::min);
        assert_eq!(report.best_score, lowest);
        let same_real = report.candidates[0].morphometry.tb_th_mm.real;
        assert!(
            report
                .candidates
                .iter()
                .all(|c| c.morphometry.tb_th_mm.real == same_real)
        );
    }

    #[test]
    fn calibration_refuses_bad_candidates_and_mismatched_data() {
        let g = generator(0.04);
        let masks = [plates(24, 0.04)];
        let run = |p: CalibrationParams, m: &[BoneMask]| {
            calibrate_mask(&g, m, &p, &ValidationControl::default())
                .unwrap_err()
                .to_string()
        };
        let e = run(
            CalibrationParams {
                sigmas_voxels: vec![f64::NAN],
                ..CalibrationParams::default()
            },
            &masks,
        );
        assert!(e.contains("σ"), "{e}");
        let e = run(
            CalibrationParams {
                sigmas_voxels: vec![],
                ..CalibrationParams::default()
            },
            &masks,
        );
        assert!(e.contains("at least one"), "{e}");
        let e = run(CalibrationParams::default(), &[plates(24, 0.08)]);
        assert!(e.contains("voxel size"), "{e}");
    }
}
