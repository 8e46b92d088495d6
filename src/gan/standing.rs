//! Standing batch-norm statistics for exported generator weights.
//!
//! A DCGAN generator is trained in train mode: every batch norm normalises by the statistics
//! of the current batch (8 cubes for the shipped weights). What is exported for eval mode are
//! the running averages `r ← 0.9 r + 0.1 · batch statistic`, accumulated while the weights
//! were still changing, so they describe the generator of the last few dozen steps, not
//! the exported one. Brock, Donahue & Simonyan (2019, "Large scale GAN training for high
//! fidelity natural image synthesis", ICLR, arXiv:1809.11096, app. C) replace them at
//! sampling time by "standing statistics": the statistics of many forward passes of the final
//! weights. [`write_with_standing_statistics`] does that once, for a weights file, and records
//! it in the card, so that generation (pure Rust or tch, both in eval mode) stays a fixed
//! per-channel affine map and costs nothing more.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::arch::{GeneratorCard, card_path_for};
use super::generator::ChannelStatistics;
use super::weights::with_running_statistics;
use super::{GanError, Generator};

/// Latent seed of the standing statistics by default, apart from the seeds validation uses.
pub const DEFAULT_SEED: u64 = 1_000_003;

/// Generated cubes the standing statistics are taken over by default: 16 384 samples per
/// channel in the first (4³) layer, so its means carry about 1 % of a standard deviation
/// of sampling error.
pub const DEFAULT_COUNT: usize = 256;

/// How the standing statistics in a weights file were computed (stored in its card).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StandingStatistics {
    /// Latent seed of the cubes (`latent_for(seed, 0..count)`).
    pub seed: u64,
    /// Number of generated cubes the statistics were taken over.
    pub count: usize,
}

/// What [`write_with_standing_statistics`] wrote.
#[derive(Clone, Debug)]
pub struct StandingStatisticsReport {
    pub weights: PathBuf,
    pub card: PathBuf,
    /// Per batch-norm layer: the largest relative change of a channel's standard deviation
    /// `|σ_standing / σ_running − 1|` and the largest shift of a channel's mean in units of
    /// the running σ, `|μ_standing − μ_running| / σ_running`.
    pub changes: Vec<StatisticsChange>,
}

/// How far the running statistics of one batch-norm layer were from the standing ones.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct StatisticsChange {
    pub max_relative_sd_change: f64,
    pub max_mean_shift_in_sd: f64,
}

/// Reads the generator `weights` (and its card), computes standing statistics over cubes
/// `0..count` of `seed` ([`Generator::standing_statistics`]) and writes `out`
/// (`.safetensors`) with the batch norms' running statistics replaced, and its card beside
/// it. The card records [`StandingStatistics`]; its `validation` and `mask_calibration`
/// records are dropped, since they were measured with the old statistics (the mask settings
/// themselves are kept). Both files are written atomically; `out` may equal `weights`.
pub fn write_with_standing_statistics(
    weights: &Path,
    out: &Path,
    seed: u64,
    count: usize,
) -> Result<StandingStatisticsReport, GanError> {
    if out.extension().is_none_or(|e| e != "safetensors") {
        return Err(GanError::InvalidArgument(format!(
            "{}: the output must be a .safetensors path",
            out.display()
        )));
    }
    let bytes = std::fs::read(weights).map_err(|source| GanError::Io {
        path: weights.to_path_buf(),
        source,
    })?;
    let mut card = GeneratorCard::load(&card_path_for(weights))?;
    let origin = weights.display().to_string();
    let generator = Generator::from_safetensors_bytes(&bytes, card.architecture, &origin)?;
    let running = generator.running_statistics();
    let standing = generator.standing_statistics(seed, count)?;
    let changes = running
        .iter()
        .zip(&standing)
        .map(|(r, s)| change(r, s))
        .collect();
    let rewritten = with_running_statistics(&bytes, card.architecture, &origin, &standing)?;
    card.standing_statistics = Some(StandingStatistics { seed, count });
    card.validation = None;
    card.mask_calibration = None;
    let card_path = card_path_for(out);
    crate::atomic::write_bytes_atomic(out, &rewritten).map_err(|source| GanError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    card.save(&card_path)?;
    Ok(StandingStatisticsReport {
        weights: out.to_path_buf(),
        card: card_path,
        changes,
    })
}

fn change(running: &ChannelStatistics, standing: &ChannelStatistics) -> StatisticsChange {
    let mut out = StatisticsChange {
        max_relative_sd_change: 0.0,
        max_mean_shift_in_sd: 0.0,
    };
    for c in 0..running.mean.len() {
        let sd_running = running.variance[c].sqrt().max(f64::MIN_POSITIVE);
        let sd_standing = standing.variance[c].sqrt();
        out.max_relative_sd_change = out
            .max_relative_sd_change
            .max((sd_standing / sd_running - 1.0).abs());
        out.max_mean_shift_in_sd = out
            .max_mean_shift_in_sd
            .max((standing.mean[c] - running.mean[c]).abs() / sd_running);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gan::GeneratorArch;
    use crate::gan::weights::{decode_f32_tensors, random_safetensors, serialize_f32};
    use safetensors::SafeTensors;

    fn arch() -> GeneratorArch {
        GeneratorArch {
            latent_dim: 8,
            base_channels: 4,
            size: 16,
        }
    }

    /// Weights with an extra (ignored) tensor and a card carrying validation and mask
    /// records, written to `dir/g.safetensors` and `dir/g.json`.
    fn write_inputs(dir: &Path) -> PathBuf {
        let mut tensors = decode_f32_tensors(&random_safetensors(arch(), 3).unwrap());
        tensors.push(("extra.note".into(), vec![2], vec![1.5, -2.5]));
        let path = dir.join("g.safetensors");
        std::fs::write(&path, serialize_f32(&tensors).unwrap()).unwrap();
        std::fs::write(
            dir.join("g.json"),
            r#"{"architecture": {"latent_dim": 8, "base_channels": 4, "size": 16},
                "voxel_size_mm": 0.05, "bv_tv_mean": 0.2, "mask_sigma_voxels": 0.6,
                "mask_calibration": {"best": 1}, "validation": {"da": 0.1},
                "training": {"steps": 3}}"#,
        )
        .unwrap();
        path
    }

    #[test]
    fn written_weights_carry_the_standing_statistics_and_nothing_else_changes() {
        let dir = tempfile::tempdir().unwrap();
        let input = write_inputs(dir.path());
        let out = dir.path().join("standing.safetensors");
        let report = write_with_standing_statistics(&input, &out, 9, 5).unwrap();
        assert_eq!(report.changes.len(), arch().n_layers() - 1);
        assert!(
            report
                .changes
                .iter()
                .all(|c| c.max_relative_sd_change > 0.0)
        );

        let original = Generator::load(&input).unwrap();
        let (in_memory, _) = original.with_standing_statistics(9, 5).unwrap();
        let loaded = Generator::load(&out).unwrap();
        assert_eq!(loaded.generate(2, 1), in_memory.generate(2, 1));
        assert_eq!(loaded.ignored_tensors(), ["extra.note"]);

        let card = loaded.card();
        assert_eq!(
            card.standing_statistics,
            Some(StandingStatistics { seed: 9, count: 5 })
        );
        assert!(card.validation.is_none() && card.mask_calibration.is_none());
        assert_eq!(card.mask_sigma_voxels, Some(0.6));
        assert!(card.training.is_some());

        // Only running_mean and running_var differ between the two files.
        let (a, b) = (std::fs::read(&input).unwrap(), std::fs::read(&out).unwrap());
        let (a, b) = (
            SafeTensors::deserialize(&a).unwrap(),
            SafeTensors::deserialize(&b).unwrap(),
        );
        assert_eq!(a.len(), b.len());
        for (name, view) in a.tensors() {
            let other = b.tensor(&name).unwrap();
            assert_eq!(view.shape(), other.shape(), "{name}");
            let running = name.ends_with("running_mean") || name.ends_with("running_var");
            assert_eq!(view.data() != other.data(), running, "{name}");
        }
    }

    #[test]
    fn bad_requests_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let input = write_inputs(dir.path());
        let e = write_with_standing_statistics(&input, &dir.path().join("x.bin"), 1, 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.bin") && e.contains(".safetensors"), "{e}");
        let e = write_with_standing_statistics(&input, &dir.path().join("y.safetensors"), 1, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 2"), "{e}");
        let missing = dir.path().join("none.safetensors");
        let e = write_with_standing_statistics(&missing, &dir.path().join("z.safetensors"), 1, 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.safetensors"), "{e}");
        assert!(!dir.path().join("y.safetensors").exists());
    }
}
