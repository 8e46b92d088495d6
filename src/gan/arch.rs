//! The generator architecture contract, shared by the tch training side and the pure-Rust
//! forward pass, and the JSON card that travels with the weights.
//!
//! ## Architecture
//!
//! A DCGAN generator (Radford, Metz & Chintala 2016, ICLR, arXiv:1511.06434) in 3-D, with
//! `n = log2(size / 4) + 1` layers (`size = 4 · 2^k`, `k ≥ 1`):
//!
//! | layer `i` (1-based) | operation | spatial size | channels |
//! |---|---|---|---|
//! | 1 | `ConvTranspose3d(latent_dim → c_1, kernel 4, stride 1, padding 0, bias=false)` | 1³ → 4³ | `c_1` |
//! | 2..n | `ConvTranspose3d(c_{i−1} → c_i, kernel 4, stride 2, padding 1, bias=false)` | s → 2s | `c_i` |
//!
//! with `c_i = base_channels · 2^(n−1−i)` for `i < n` and `c_n = 1`. After every layer but
//! the last: `BatchNorm3d(c_i, eps = 1e-5)` in eval mode (running statistics), then ReLU;
//! after the last: tanh. The defaults (latent 64, base 16, size 64) give 4 → 8 → 16 → 32 → 64
//! with channels 128, 64, 32, 16, 1.
//!
//! ## Tensor names (tch `VarStore`, no prefix), all F32, C-contiguous, little endian
//!
//! - `ct{i}.weight`, shape `[c_{i−1}, c_i, 4, 4, 4]` (PyTorch's ConvTranspose3d layout
//!   `[in, out, kD, kH, kW]`, `c_0 = latent_dim`), for `i = 1..=n`;
//! - `bn{i}.weight`, `bn{i}.bias`, `bn{i}.running_mean`, `bn{i}.running_var`, shape `[c_i]`,
//!   for `i = 1..n−1`.
//!
//! Activations are PyTorch's `[N, C, D, H, W]` with D ↔ z, H ↔ y, W ↔ x, so the output cube
//! (C = 1) is in this crate's voxel order, `x + size · (y + size · z)`.
//!
//! ## Card
//!
//! `NAME.json` beside `NAME.safetensors`: `{"architecture": {"latent_dim", "base_channels",
//! "size"}, "voxel_size_mm", "bv_tv_mean"}` plus free-form sections (`training`,
//! `validation`, anything else), which are kept but not interpreted.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::GanError;

/// Kernel edge of every transposed convolution.
pub const KERNEL: usize = 4;
/// Batch-norm epsilon (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;
/// Gaussian smoothing (σ in voxels) of a generated field before thresholding, unless the card
/// says otherwise. It is the σ with which `osteolab gan train` segments its grey training
/// data by default, so a generated cube goes through the same smoothing-then-threshold step
/// as the real cubes it imitates. It also removes the voxel-scale checkerboard texture that
/// stride-2 transposed convolutions leave (Odena, Dumoulin & Olah 2016, Distill,
/// doi:10.23915/distill.00003): on the step-1900 weights, thresholding the raw field gave
/// Conn.D 44 mm⁻³ and Tb.Th 0.13 mm against 6.6 mm⁻³ and 0.24 mm after σ = 1 (real bone:
/// 3.0 mm⁻³, 0.26 mm).
pub const DEFAULT_MASK_SIGMA_VOXELS: f64 = 1.0;
/// The mask σ calibrated for the shipped weights (`mask_sigma_voxels` in
/// assets/recongan/generator.json): the default of the trainer's differentiable copy of the
/// mask (`gan train --mask-like-sigma`).
pub const SHIPPED_MASK_SIGMA_VOXELS: f64 = 0.7;
/// Largest supported cube edge.
pub const MAX_SIZE: usize = 512;

/// The generator's shape parameters (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GeneratorArch {
    /// Length of the latent vector.
    pub latent_dim: usize,
    /// Channels of the last hidden layer; earlier layers double it per layer.
    pub base_channels: usize,
    /// Edge of the generated cube in voxels: `4 · 2^k`, `k ≥ 1`, at most [`MAX_SIZE`].
    pub size: usize,
}

impl Default for GeneratorArch {
    fn default() -> Self {
        Self {
            latent_dim: 64,
            base_channels: 16,
            size: 64,
        }
    }
}

/// One transposed-convolution layer of the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    /// 1-based layer number, as in the tensor names.
    pub index: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    /// Input and output cube edges.
    pub in_size: usize,
    pub out_size: usize,
    pub stride: usize,
    pub padding: usize,
    /// Batch norm + ReLU follow (every layer but the last, which is followed by tanh).
    pub batch_norm: bool,
}

impl LayerSpec {
    /// `ct{i}.weight`.
    pub fn conv_weight_name(&self) -> String {
        format!("ct{}.weight", self.index)
    }

    /// `[in, out, 4, 4, 4]`.
    pub fn conv_weight_shape(&self) -> Vec<usize> {
        vec![self.in_channels, self.out_channels, KERNEL, KERNEL, KERNEL]
    }

    /// The four batch-norm tensor names in the order weight, bias, running_mean,
    /// running_var (empty for the last layer).
    pub fn batch_norm_names(&self) -> Vec<String> {
        if !self.batch_norm {
            return Vec::new();
        }
        ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .map(|t| format!("bn{}.{t}", self.index))
            .collect()
    }
}

impl GeneratorArch {
    /// Checks the contract: positive latent and base channels, `size = 4 · 2^k` with
    /// `1 ≤ k` and `size ≤ MAX_SIZE`, and no overflow in the channel and tensor sizes.
    pub fn validate(&self) -> Result<(), GanError> {
        let bad = |m: String| Err(GanError::InvalidArch(m));
        if self.latent_dim == 0 {
            return bad("latent_dim must be at least 1".into());
        }
        if self.base_channels == 0 {
            return bad("base_channels must be at least 1".into());
        }
        let s = self.size;
        if !(8..=MAX_SIZE).contains(&s) || !s.is_multiple_of(4) || !(s / 4).is_power_of_two() {
            return bad(format!(
                "size must be 4·2^k with k ≥ 1 and at most {MAX_SIZE} (8, 16, 32, 64, …), got {s}"
            ));
        }
        // Largest weight tensors (layers 1 and 2) and activation (layer n − 1) must fit.
        let n = self.n_layers();
        let limit = isize::MAX as u128 / 8;
        let fits = |v: Option<u128>| v.is_some_and(|v| v <= limit);
        let top = (self.base_channels as u128) << (n - 2);
        let ok = fits(
            top.checked_mul(self.latent_dim as u128)
                .and_then(|v| v.checked_mul(64)),
        ) && fits(top.checked_mul(top).and_then(|v| v.checked_mul(64)))
            && fits((s as u128).pow(3).checked_mul(self.base_channels as u128));
        if !ok {
            return bad(format!(
                "latent_dim {} with base_channels {} and size {s} overflows the tensor sizes",
                self.latent_dim, self.base_channels
            ));
        }
        Ok(())
    }

    /// Number of layers, `log2(size / 4) + 1` (meaningful for a valid architecture).
    pub fn n_layers(&self) -> usize {
        (self.size / 4).max(1).trailing_zeros() as usize + 1
    }

    /// Output channels of layer `i` (1-based): `base · 2^(n−1−i)` for `i < n`, 1 for `i = n`.
    fn channels(&self, i: usize) -> usize {
        let n = self.n_layers();
        if i == n {
            1
        } else {
            self.base_channels << (n - 1 - i)
        }
    }

    /// The layers in order (validates first).
    pub fn layers(&self) -> Result<Vec<LayerSpec>, GanError> {
        self.validate()?;
        let n = self.n_layers();
        let mut specs = Vec::with_capacity(n);
        let mut in_size = 1;
        for i in 1..=n {
            let (stride, padding, out_size) = if i == 1 {
                (1, 0, KERNEL)
            } else {
                (2, 1, in_size * 2)
            };
            specs.push(LayerSpec {
                index: i,
                in_channels: if i == 1 {
                    self.latent_dim
                } else {
                    self.channels(i - 1)
                },
                out_channels: self.channels(i),
                in_size,
                out_size,
                stride,
                padding,
                batch_norm: i < n,
            });
            in_size = out_size;
        }
        Ok(specs)
    }

    /// Every tensor the weights file must hold, with its shape, in layer order.
    pub fn expected_tensors(&self) -> Result<Vec<(String, Vec<usize>)>, GanError> {
        let mut out = Vec::new();
        for l in self.layers()? {
            out.push((l.conv_weight_name(), l.conv_weight_shape()));
            for name in l.batch_norm_names() {
                out.push((name, vec![l.out_channels]));
            }
        }
        Ok(out)
    }

    /// Number of voxels of one generated cube, `size³`.
    pub fn output_len(&self) -> usize {
        self.size * self.size * self.size
    }
}

/// The JSON card beside the weights (see the module docs). Unknown keys are kept in
/// [`extra`](Self::extra) and written back unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneratorCard {
    pub architecture: GeneratorArch,
    /// Voxel edge (mm) of the training data, hence of the generated cubes.
    pub voxel_size_mm: f64,
    /// Mean BV/TV of the training cubes: the default threshold target of [`super::to_mask`].
    pub bv_tv_mean: f64,
    /// Gaussian σ (voxels) applied to a generated field before it is thresholded
    /// ([`Generator::field_to_mask`](super::Generator::field_to_mask)); absent =
    /// [`DEFAULT_MASK_SIGMA_VOXELS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_sigma_voxels: Option<f64>,
    /// Fill enclosed marrow cavities after thresholding
    /// ([`fill_enclosed_marrow`](crate::volume::segment::fill_enclosed_marrow)); absent =
    /// no.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_fill_enclosed_marrow: Option<bool>,
    /// Set when the batch norms' running statistics were replaced by standing statistics
    /// ([`super::standing`]); absent = the running averages from training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing_statistics: Option<super::standing::StandingStatistics>,
    /// Free-form record of how the mask settings were chosen (`osteolab gan calibrate`), not
    /// interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_calibration: Option<serde_json::Value>,
    /// Free-form training record (settings, losses), not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
    /// Free-form validation record (morphometry against held-out data), not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<serde_json::Value>,
    /// Any other top-level keys.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The card path for a weights path: `NAME.json` beside `NAME.safetensors`.
pub fn card_path_for(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

impl GeneratorCard {
    /// A card for weights of unknown provenance (e.g. an in-memory buffer): voxel size and
    /// BV/TV are NaN, so [`super::to_mask`] refuses them until real values are supplied.
    pub fn unknown(architecture: GeneratorArch) -> Self {
        Self {
            architecture,
            voxel_size_mm: f64::NAN,
            bv_tv_mean: f64::NAN,
            mask_sigma_voxels: None,
            mask_fill_enclosed_marrow: None,
            standing_statistics: None,
            mask_calibration: None,
            training: None,
            validation: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Parses and validates a card; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, GanError> {
        let card: Self = serde_json::from_str(text).map_err(|e| GanError::Card {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        card.validate(path)?;
        Ok(card)
    }

    /// Reads and validates the card at `path`.
    pub fn load(path: &Path) -> Result<Self, GanError> {
        let text = std::fs::read_to_string(path).map_err(|source| GanError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Writes the card as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), GanError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| GanError::Card {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        crate::atomic::write_bytes_atomic(path, text.as_bytes()).map_err(|source| GanError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Architecture valid, voxel size finite and positive, BV/TV in (0, 1].
    pub fn validate(&self, path: &Path) -> Result<(), GanError> {
        let bad = |reason: String| {
            Err(GanError::Card {
                path: path.to_path_buf(),
                reason,
            })
        };
        if let Err(e) = self.architecture.validate() {
            return bad(e.to_string());
        }
        if !(self.voxel_size_mm.is_finite() && self.voxel_size_mm > 0.0) {
            return bad(format!(
                "voxel_size_mm must be finite and positive, got {}",
                self.voxel_size_mm
            ));
        }
        if !(self.bv_tv_mean > 0.0 && self.bv_tv_mean <= 1.0) {
            return bad(format!(
                "bv_tv_mean must be in (0, 1], got {}",
                self.bv_tv_mean
            ));
        }
        if let Some(sigma) = self.mask_sigma_voxels
            && !(sigma.is_finite() && (0.0..=8.0).contains(&sigma))
        {
            return bad(format!(
                "mask_sigma_voxels must be finite and in [0, 8], got {sigma}"
            ));
        }
        Ok(())
    }

    /// The smoothing σ (voxels) applied before thresholding a generated field.
    pub fn mask_sigma(&self) -> f64 {
        self.mask_sigma_voxels.unwrap_or(DEFAULT_MASK_SIGMA_VOXELS)
    }

    /// How a generated field becomes a bone mask with these weights.
    pub fn mask_options(&self) -> MaskOptions {
        MaskOptions {
            sigma_voxels: self.mask_sigma(),
            fill_enclosed_marrow: self.mask_fill_enclosed_marrow.unwrap_or(false),
        }
    }

    /// Records `options` as the card's mask settings.
    pub fn set_mask_options(&mut self, options: MaskOptions) {
        self.mask_sigma_voxels = Some(options.sigma_voxels);
        self.mask_fill_enclosed_marrow = Some(options.fill_enclosed_marrow);
    }
}

/// The post-processing that turns a generated field into a bone mask
/// ([`Generator::field_to_mask_with`](super::Generator::field_to_mask_with)): Gaussian
/// smoothing, the BV/TV threshold with islands removed, and optionally the cavity fill.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaskOptions {
    /// Gaussian σ in voxels (0 = none).
    pub sigma_voxels: f64,
    /// Fill marrow cavities that touch no face of the cube.
    pub fill_enclosed_marrow: bool,
}

impl MaskOptions {
    /// σ finite and in [0, 8] voxels.
    pub fn validate(&self) -> Result<(), GanError> {
        if self.sigma_voxels.is_finite() && (0.0..=8.0).contains(&self.sigma_voxels) {
            Ok(())
        } else {
            Err(GanError::InvalidArgument(format!(
                "mask smoothing σ must be finite and in [0, 8] voxels, got {}",
                self.sigma_voxels
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_arch_has_the_documented_layers() {
        let specs = GeneratorArch::default().layers().unwrap();
        let sizes: Vec<_> = specs.iter().map(|l| l.out_size).collect();
        let channels: Vec<_> = specs.iter().map(|l| l.out_channels).collect();
        assert_eq!(sizes, [4, 8, 16, 32, 64]);
        assert_eq!(channels, [128, 64, 32, 16, 1]);
        assert_eq!(specs[0].in_channels, 64);
        assert_eq!((specs[0].stride, specs[0].padding), (1, 0));
        assert!(specs[1..].iter().all(|l| (l.stride, l.padding) == (2, 1)));
        assert_eq!(specs.iter().filter(|l| l.batch_norm).count(), 4);
        let names = GeneratorArch::default().expected_tensors().unwrap();
        assert_eq!(names.len(), 5 + 4 * 4);
        assert_eq!(names[0], ("ct1.weight".to_string(), vec![64, 128, 4, 4, 4]));
        assert_eq!(names[4], ("bn1.running_var".to_string(), vec![128]));
        assert_eq!(names[20], ("ct5.weight".to_string(), vec![16, 1, 4, 4, 4]));
    }

    #[test]
    fn smallest_arch_has_two_layers_and_bad_sizes_are_rejected() {
        let a = GeneratorArch {
            latent_dim: 3,
            base_channels: 2,
            size: 8,
        };
        let specs = a.layers().unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!((specs[0].out_channels, specs[1].out_channels), (2, 1));
        for size in [0, 4, 12, 24, 100, 1024] {
            let e = GeneratorArch { size, ..a }.validate().unwrap_err();
            assert!(matches!(e, GanError::InvalidArch(_)), "{size}: {e}");
        }
        assert!(GeneratorArch { latent_dim: 0, ..a }.validate().is_err());
    }

    #[test]
    fn card_tolerates_free_form_sections_and_round_trips() {
        let text = r#"{"architecture": {"latent_dim": 8, "base_channels": 4, "size": 16},
            "voxel_size_mm": 0.04, "bv_tv_mean": 0.22,
            "training": {"steps": 10, "anything": [1, 2]},
            "validation": {"bv_tv": {"real": 0.2, "fake": 0.21}},
            "notes": "hello"}"#;
        let card = GeneratorCard::from_json(text, Path::new("g.json")).unwrap();
        assert_eq!(card.architecture.size, 16);
        assert_eq!(card.extra["notes"], "hello");
        let back: GeneratorCard =
            serde_json::from_str(&serde_json::to_string(&card).unwrap()).unwrap();
        assert_eq!(back, card);
    }
}
