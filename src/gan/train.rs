//! ReconGAN training with tch (feature `torch`): a 3D DCGAN (Radford, Metz & Chintala 2016,
//! ICLR, arXiv:1511.06434) on sub-volumes of segmented micro-CT.
//!
//! - **Generator.** The architecture contract of [`super::arch`]: transposed 3-D convolutions
//!   with batch norm and ReLU, ending in tanh. Its tensors are named `ct{i}.*` / `bn{i}.*`,
//!   so the exported safetensors file runs unchanged in the pure-Rust generator.
//! - **Discriminator.** The mirror image: 3-D convolutions (kernel 4, stride 2, padding 1)
//!   down to 4³ with LeakyReLU(0.2), then a 4³ convolution to one logit. By default every
//!   convolution is spectrally normalised (Miyato et al. 2018, ICLR, arXiv:1802.05957) and D
//!   has no batch norm; `discriminator_norm` = batch puts batch norm on all hidden layers
//!   but the first instead, as the DCGAN paper does and as the weights shipped before
//!   2026-11-25 were trained.
//! - **Why spectral normalisation** (2026-11-25, on the shared micro-CT, docs/recongan.md).
//!   With batch norm, two batches hide the amplitude from D (below), and one joint batch
//!   trained from scratch collapsed: by step 1000 every latent gave the same blobs, with D
//!   at 0.33 and G at 7 from the first hundred steps. With spectral normalisation and the
//!   same settings the samples stayed distinct, and at step 4250 five of the six free
//!   morphometric indices were within 10 % of the real ones on 16 + 16 cubes, against
//!   two (Tb.Th, Tb.N) for the 8350-step batch-norm weights shipped before. The snapshots
//!   still swing from one checkpoint to the next (Conn.D +45 to +127 % between steps 4250
//!   and 6000). The shipped weights are step 8000 of that run, continued with the z flip
//!   (below) from step 6000: on 64 + 64 cubes E_app is −5.0 % and only DA is more than
//!   10 % off.
//! - **Stabilisers**, the DCGAN recipe: Adam with lr 2e-4 and β₁ = 0.5, weights initialised
//!   N(0, 0.02), one-sided label smoothing (real label 0.9; Salimans et al. 2016), and the
//!   non-saturating generator loss −log D(G(z)).
//! - **One batch through a batch-norm discriminator.** Real and generated cubes go through
//!   D together, so its batch norms normalise both with the same statistics. Run as two
//!   batches (as the DCGAN reference code does), D is blind to anything that batch norm
//!   removes per batch: conv + LeakyReLU is positively homogeneous, so D(a·x) = D(x) for
//!   a > 0, up to batch norm's ε. The 8350-step generator shipped before, trained that way,
//!   puts 98 % of its output within (−0.24, 0.22) instead of at ±1; only the threshold to
//!   BV/TV turns it into bone (`joint_discriminator_batch`; on by default, off reproduces
//!   that training).
//! - **Slice-fraction loss** (optional, `slice_loss_weight` λ). The bone fraction of every
//!   slice normal to x, y and z, φ = mean of (G(z) + 1)/2 over the slice, is a
//!   one-dimensional sample per axis; the generator is charged λ times the squared
//!   2-Wasserstein distance between the sorted fractions of the generated and the real
//!   batch, averaged over the axes. Under axial load slices act in series, so a cube with
//!   sparser slices is softer at the same BV/TV: the sparsest slice of the 8350-step cubes
//!   holds BV/TV 0.095 against 0.110 in real ones, about a quarter of their −41 % in E_app
//!   (docs/recongan.md). Matching the slice fractions' distribution is a moment-matching
//!   term in the spirit of feature matching (Salimans et al. 2016, NeurIPS,
//!   arXiv:1606.03498), on a statistic that micro-FE is sensitive to.
//! - **Intercept-share loss** (optional, `intercept_loss_weight` λ_I). Each cube's
//!   bone/marrow crossings along z, y and x, as shares of their mean, are the axis
//!   intercept densities of the MIL fabric that DA is computed from (the bone's fabric is
//!   aligned with z, and DA follows |z share − 1| with correlation 0.96–0.97 over 64 real
//!   and 64 generated cubes). The generator is charged λ_I times the squared 2-Wasserstein
//!   distance between the sorted shares of the generated and the real batch, per axis,
//!   averaged over the axes. The generated cubes enter as the mask pipeline will cut them
//!   ([`mask_like`]: the card's Gaussian, then a steep tanh in place of the threshold),
//!   because the pipeline is what made them anisotropic: on the 8000-step weights (64
//!   cubes, seed 0) the raw field's z share is 0.960 ± 0.050 against 0.965 ± 0.044 in real
//!   cubes, but the mask's is 0.944 ± 0.069 (σ 0.7) and DA +60 %. The smoothing drops the
//!   faint struts across z that the raw field only sketches.
//!   Off by default: resumed from run F at λ_I = 300, then 1000, it brought DA from +60 %
//!   to +17.5 % at best, but E_app fell to −28 % (docs/recongan.md, "DA").
//! - **The discriminator sees the mask** (optional, `discriminator_sees_mask`). D judges
//!   [`mask_like`] of both batches instead of the cubes themselves: the generated field as
//!   the mask pipeline will cut it, against real cubes blurred and sharpened the same way
//!   (so that the softness of the faces tells D nothing). A strut the generator only
//!   sketches, which the mask's smoothing then erases, is then missing in what D sees.
//! - **Minibatch standard deviation** (optional, `minibatch_std`; Karras et al. 2018, ICLR,
//!   arXiv:1710.10196): the discriminator's last convolution also sees one channel holding
//!   how much the cubes of the batch differ from each other ([`minibatch_std_channel`];
//!   real and generated cubes in separate groups). A spectrally normalised D otherwise
//!   scores each cube on its own and cannot see that generated cubes vary more between
//!   each other than real ones, for example in how strongly each is aligned.
//! - **Fine-tuning** from an exported generator (`train`'s `init_generator`) with a fresh
//!   discriminator, which alone learns for `discriminator_warmup_steps` steps before the
//!   generator moves. A generator trained with two batches has a faint output; a one-batch
//!   discriminator sees that at once, and its gradients then tear the structure apart (on
//!   the 8350-step weights at lr 2e-4, blobs on a grid within 300 generator steps).
//!   `init_output_gain` scales the last layer first, so that the output saturates where the
//!   faint field crosses zero: the bone of the zero crossing is the same structure.
//! - **Data.** Random sub-cubes of the training masks with random flips in x, y and z and
//!   random quarter turns about z, the loading axis. The trabecular fabric is aligned with
//!   z, so rotations that move z are not used; a flip keeps it. Without the z flip
//!   (`flip_z` off, as before 2026-11-25) every cube keeps the volume's gradient along z:
//!   the bottom quarter of the shared micro-CT holds BV/TV 0.12–0.14 against 0.2–0.3 above,
//!   so a uniformly placed 64³ cube averages 0.17 in its first slice and 0.22 in its last.
//!   The generators learnt that gradient and overshot it (0.07–0.13 in their first slice),
//!   and under axial load the sparse end slice softens the whole cube. Bone maps to +1 and
//!   marrow to −1.
//! - **Checkpoints.** Every `checkpoint_every` steps: generator and discriminator weights and
//!   `state.json` (the step and the data sampler's random state), each written atomically.
//!   A resumed run continues from the saved step with the same sampler stream. Adam's moment
//!   estimates are not saved (tch cannot export them), so they restart from zero; with lr 2e-4
//!   they recover within a few tens of steps.
//! - **Export.** `generator.safetensors` plus the JSON card `generator.json` (architecture,
//!   voxel size, BV/TV of the training data, training settings). The batch norms of the
//!   exported generator hold standing statistics over `standing_statistics_count` generated
//!   cubes ([`crate::gan::standing`]), not the running averages of training: those were
//!   accumulated over earlier weights, and eval mode would otherwise generate with them.
//!   Checkpoints keep the running averages, so a resumed run is unaffected.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use super::arch::GeneratorArch;
use super::validate::Symmetry;
use crate::rng::SplitMix64;
use crate::volume::{BoneMask, Dims};

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid training parameter: {0}")]
    InvalidParameter(String),
    #[error("training data: {0}")]
    Data(String),
    #[error("{path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("training cancelled at step {step}")]
    Cancelled { step: usize },
}

/// Settings of a training run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    pub arch: GeneratorArch,
    pub batch_size: usize,
    /// Total optimisation steps (one discriminator and one generator update each).
    pub steps: usize,
    pub learning_rate: f64,
    pub beta1: f64,
    /// Target for real cubes in the discriminator loss (one-sided label smoothing).
    pub real_label: f64,
    pub checkpoint_every: usize,
    pub seed: u64,
    /// Real and generated cubes through the discriminator as one batch (see the module docs).
    /// Checkpoints written before this field existed were trained without it.
    #[serde(default)]
    pub joint_discriminator_batch: bool,
    /// Weight λ of the slice-fraction loss (0 = off; see the module docs).
    #[serde(default)]
    pub slice_loss_weight: f64,
    /// Steps at the start of a run (global step numbers) in which only the discriminator
    /// learns: for fine-tuning an exported generator against a fresh discriminator.
    #[serde(default)]
    pub discriminator_warmup_steps: usize,
    /// Factor on the last transposed convolution of an `init_generator` when it is loaded.
    /// The generator's output is tanh of that layer, so a gain K turns a faint field into a
    /// saturated one with the same zero crossings (see the module docs).
    #[serde(default = "unit_gain")]
    pub init_output_gain: f64,
    /// How the discriminator's layers are normalised (spectral by default; see the module
    /// docs). Checkpoints written before this field existed used batch norm.
    #[serde(default)]
    pub discriminator_norm: DiscriminatorNorm,
    /// Mirror half the training cubes along z (see the module docs). Checkpoints written
    /// before this field existed trained without it.
    #[serde(default)]
    pub flip_z: bool,
    /// Weight λ_I of the intercept-share loss (0 = off; see the module docs). Checkpoints
    /// written before this field existed trained without it.
    #[serde(default)]
    pub intercept_loss_weight: f64,
    /// σ (voxels) of [`mask_like`]'s Gaussian, for the intercept-share loss and the
    /// discriminator's view of the mask: as the mask pipeline smooths (the card's
    /// `mask_sigma_voxels`; 0 = no smoothing).
    #[serde(
        default = "default_mask_like_sigma",
        alias = "intercept_loss_sigma_voxels"
    )]
    pub mask_like_sigma_voxels: f64,
    /// The discriminator judges both batches through [`mask_like`] (see the module docs).
    /// Checkpoints written before this field existed trained without it.
    #[serde(default)]
    pub discriminator_sees_mask: bool,
    /// Generated cubes the exported generator's standing batch-norm statistics are taken over
    /// (0 = export the running averages; see the module docs). Checkpoints written before
    /// this field existed get the default.
    #[serde(default = "default_standing_statistics_count")]
    pub standing_statistics_count: usize,
    /// The discriminator's last layer also sees the minibatch standard deviation over each
    /// batch ([`minibatch_std_channel`], groups of `batch_size`). Checkpoints written before
    /// this field existed trained without it.
    #[serde(default)]
    pub minibatch_std: bool,
}

fn default_standing_statistics_count() -> usize {
    crate::gan::standing::DEFAULT_COUNT
}

/// The normalisation of the discriminator's convolutions. The serde default is batch norm,
/// which every checkpoint written before the choice existed used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscriminatorNorm {
    /// Batch norm after every convolution but the first and the last (DCGAN).
    #[default]
    Batch,
    /// Spectral normalisation of every convolution and no batch norm (Miyato et al. 2018,
    /// ICLR, arXiv:1802.05957): each weight is divided by an estimate of its largest
    /// singular value, one power iteration per training pass. D is then 1-Lipschitz per
    /// layer and, without batch statistics, sees each cube on its own.
    Spectral,
}

fn unit_gain() -> f64 {
    1.0
}

fn default_mask_like_sigma() -> f64 {
    crate::gan::arch::SHIPPED_MASK_SIGMA_VOXELS
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            arch: GeneratorArch::default(),
            batch_size: 8,
            steps: 2000,
            learning_rate: 2e-4,
            beta1: 0.5,
            real_label: 0.9,
            checkpoint_every: 100,
            seed: 0,
            joint_discriminator_batch: true,
            slice_loss_weight: 0.0,
            discriminator_warmup_steps: 0,
            init_output_gain: 1.0,
            discriminator_norm: DiscriminatorNorm::Spectral,
            flip_z: true,
            intercept_loss_weight: 0.0,
            mask_like_sigma_voxels: default_mask_like_sigma(),
            discriminator_sees_mask: false,
            standing_statistics_count: default_standing_statistics_count(),
            minibatch_std: false,
        }
    }
}

impl TrainParams {
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::InvalidParameter(m));
        if self.batch_size == 0 || self.batch_size > 1024 {
            return bad(format!(
                "batch size must be 1..=1024, got {}",
                self.batch_size
            ));
        }
        if self.steps == 0 {
            return bad("steps must be at least 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate < 1.0)
        {
            return bad(format!(
                "learning rate must lie in (0, 1), got {}",
                self.learning_rate
            ));
        }
        if !(self.beta1.is_finite() && (0.0..1.0).contains(&self.beta1)) {
            return bad(format!("beta1 must lie in [0, 1), got {}", self.beta1));
        }
        if !(self.real_label.is_finite() && self.real_label > 0.5 && self.real_label <= 1.0) {
            return bad(format!(
                "real label must lie in (0.5, 1], got {}",
                self.real_label
            ));
        }
        if !(self.slice_loss_weight.is_finite() && self.slice_loss_weight >= 0.0) {
            return bad(format!(
                "slice loss weight must be finite and non-negative, got {}",
                self.slice_loss_weight
            ));
        }
        if !(self.intercept_loss_weight.is_finite() && self.intercept_loss_weight >= 0.0) {
            return bad(format!(
                "intercept loss weight must be finite and non-negative, got {}",
                self.intercept_loss_weight
            ));
        }
        if !(self.mask_like_sigma_voxels.is_finite()
            && (0.0..=4.0).contains(&self.mask_like_sigma_voxels))
        {
            return bad(format!(
                "mask-like sigma must lie in [0, 4] voxels, got {}",
                self.mask_like_sigma_voxels
            ));
        }
        if !(self.init_output_gain.is_finite() && self.init_output_gain > 0.0) {
            return bad(format!(
                "initial output gain must be finite and positive, got {}",
                self.init_output_gain
            ));
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint interval must be at least 1 step".into());
        }
        layer_count(&self.arch)?;
        Ok(())
    }
}

/// Layers of the generator (and of the discriminator) for `arch`.
fn layer_count(arch: &GeneratorArch) -> Result<usize, TrainError> {
    let s = arch.size;
    if s < 8 || !s.is_power_of_two() || arch.latent_dim == 0 || arch.base_channels == 0 {
        return Err(TrainError::InvalidParameter(format!(
            "architecture must have a power-of-two size >= 8 and positive latent/base channels, got {arch:?}"
        )));
    }
    Ok((s / 4).trailing_zeros() as usize + 1)
}

/// Output channels of generator layer `i` (1-based) of `n`.
fn gen_channels(arch: &GeneratorArch, n: usize, i: usize) -> i64 {
    if i == n {
        1
    } else {
        (arch.base_channels << (n - 1 - i)) as i64
    }
}

fn normal_init() -> nn::Init {
    nn::Init::Randn {
        mean: 0.0,
        stdev: 0.02,
    }
}

/// The generator of the architecture contract, on a tch variable store.
pub struct TchGenerator {
    layers: Vec<(nn::ConvTranspose3D, Option<nn::BatchNorm>)>,
    latent_dim: i64,
}

impl TchGenerator {
    pub fn new(root: &nn::Path, arch: &GeneratorArch) -> Result<Self, TrainError> {
        let n = layer_count(arch)?;
        let mut layers = Vec::with_capacity(n);
        let mut c_in = arch.latent_dim as i64;
        for i in 1..=n {
            let c_out = gen_channels(arch, n, i);
            let (stride, padding) = if i == 1 { (1, 0) } else { (2, 1) };
            let ct = nn::conv_transpose3d(
                root / format!("ct{i}"),
                c_in,
                c_out,
                4,
                nn::ConvTransposeConfig {
                    stride,
                    padding,
                    bias: false,
                    ws_init: normal_init(),
                    ..Default::default()
                },
            );
            let bn = (i < n).then(|| {
                nn::batch_norm3d(
                    root / format!("bn{i}"),
                    c_out,
                    nn::BatchNormConfig {
                        ws_init: nn::Init::Randn {
                            mean: 1.0,
                            stdev: 0.02,
                        },
                        ..Default::default()
                    },
                )
            });
            layers.push((ct, bn));
            c_in = c_out;
        }
        Ok(Self {
            layers,
            latent_dim: arch.latent_dim as i64,
        })
    }

    /// `z`: [B, latent_dim] (or [B, latent_dim, 1, 1, 1]) → [B, 1, S, S, S] in (−1, 1).
    pub fn forward_t(&self, z: &Tensor, train: bool) -> Tensor {
        let b = z.size()[0];
        let mut x = z.reshape([b, self.latent_dim, 1, 1, 1]);
        for (ct, bn) in &self.layers {
            x = x.apply(ct);
            x = match bn {
                Some(bn) => x.apply_t(bn, train).relu(),
                None => x.tanh(),
            };
        }
        x
    }
}

/// One convolution of the discriminator with its normalisation.
struct DiscriminatorLayer {
    conv: nn::Conv3D,
    stride: i64,
    padding: i64,
    batch_norm: Option<nn::BatchNorm>,
    /// The left singular vector estimate of spectral normalisation (a non-trainable
    /// variable, so that checkpoints keep it).
    spectral_u: Option<Tensor>,
}

impl DiscriminatorLayer {
    fn new(
        root: &nn::Path,
        i: usize,
        (c_in, c_out): (i64, i64),
        (stride, padding): (i64, i64),
        last: bool,
        norm: DiscriminatorNorm,
    ) -> Self {
        let conv = nn::conv3d(
            root / format!("conv{i}"),
            c_in,
            c_out,
            4,
            nn::ConvConfig {
                stride,
                padding,
                bias: last,
                ws_init: normal_init(),
                ..Default::default()
            },
        );
        let (batch_norm, spectral_u) = match norm {
            DiscriminatorNorm::Batch => (
                (i > 1 && !last)
                    .then(|| nn::batch_norm3d(root / format!("bn{i}"), c_out, Default::default())),
                None,
            ),
            DiscriminatorNorm::Spectral => {
                let u = root.zeros_no_train(&format!("sn{i}_u"), &[c_out]);
                tch::no_grad(|| {
                    let start = unit(&Tensor::randn([c_out], (Kind::Float, u.device())));
                    u.shallow_clone().copy_(&start);
                });
                (None, Some(u))
            }
        };
        Self {
            conv,
            stride,
            padding,
            batch_norm,
            spectral_u,
        }
    }

    /// The weight the convolution applies: as stored, or divided by its spectral norm
    /// σ = uᵀ W v, where W is the weight as a [c_out, c_in·4³] matrix and u, v come from one
    /// power iteration (in training) on the stored u. The gradient flows through W in σ,
    /// not through u and v (Miyato et al. 2018, Algorithm 1).
    fn weight(&self, train: bool) -> Tensor {
        let Some(u) = &self.spectral_u else {
            return self.conv.ws.shallow_clone();
        };
        let w = &self.conv.ws;
        let matrix = w.reshape([w.size()[0], -1]);
        let (u, v) = tch::no_grad(|| {
            let m = matrix.detach();
            let mut v = unit(&m.tr().mv(u));
            if train {
                u.shallow_clone().copy_(&unit(&m.mv(&v)));
                v = unit(&m.tr().mv(u));
            }
            (u.detach().copy(), v)
        });
        let sigma = u.dot(&matrix.mv(&v));
        w / sigma
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (s, p) = (self.stride, self.padding);
        let h = x.conv3d(
            &self.weight(train),
            self.conv.bs.as_ref(),
            [s, s, s],
            [p, p, p],
            [1, 1, 1],
            1,
        );
        match &self.batch_norm {
            Some(bn) => h.apply_t(bn, train),
            None => h,
        }
    }
}

/// `x / |x|`.
fn unit(x: &Tensor) -> Tensor {
    x / (x.norm() + 1e-12)
}

/// The DCGAN discriminator (see the module documentation).
pub struct TchDiscriminator {
    layers: Vec<DiscriminatorLayer>,
    /// Cubes per group of the minibatch standard-deviation channel (0 = none).
    minibatch_std_group: usize,
}

impl TchDiscriminator {
    pub fn new(
        root: &nn::Path,
        arch: &GeneratorArch,
        norm: DiscriminatorNorm,
    ) -> Result<Self, TrainError> {
        Self::with_minibatch_std(root, arch, norm, 0)
    }

    /// With `group` > 0, the last convolution also sees the minibatch standard deviation of
    /// [`minibatch_std_channel`] over consecutive groups of `group` cubes.
    pub fn with_minibatch_std(
        root: &nn::Path,
        arch: &GeneratorArch,
        norm: DiscriminatorNorm,
        group: usize,
    ) -> Result<Self, TrainError> {
        let n = layer_count(arch)?;
        let mut layers = Vec::with_capacity(n);
        let mut c_in = 1i64;
        for i in 1..n {
            let c_out = (arch.base_channels << (i - 1)) as i64;
            layers.push(DiscriminatorLayer::new(
                root,
                i,
                (c_in, c_out),
                (2, 1),
                false,
                norm,
            ));
            c_in = c_out;
        }
        let extra = i64::from(group > 0);
        layers.push(DiscriminatorLayer::new(
            root,
            n,
            (c_in + extra, 1),
            (1, 0),
            true,
            norm,
        ));
        Ok(Self {
            layers,
            minibatch_std_group: group,
        })
    }

    /// `x`: [B, 1, S, S, S] → logits [B]. In training, spectral normalisation advances its
    /// power iteration by one step.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (last, hidden) = self.layers.split_last().expect("at least two layers");
        let mut h = x.shallow_clone();
        for layer in hidden {
            h = layer.forward_t(&h, train);
            // LeakyReLU(0.2) = max(x, 0.2 x).
            h = h.maximum(&(&h * 0.2));
        }
        if self.minibatch_std_group > 0 {
            h = Tensor::cat(
                &[&h, &minibatch_std_channel(&h, self.minibatch_std_group)],
                1,
            );
        }
        last.forward_t(&h, train).reshape([-1])
    }
}

/// The minibatch standard deviation of Karras et al. (2018, "Progressive growing of GANs",
/// ICLR, arXiv:1710.10196, §3) as one extra channel: the batch [B, C, s, s, s] is cut into
/// consecutive groups of `group` cubes (the whole batch if `group` does not divide B); in
/// each group, the standard deviation over the group of every feature at every position,
/// averaged, fills the channel of the group's cubes. Real and generated cubes come in
/// separate groups (a joint batch is the real batch, then the generated one), so the
/// discriminator can compare how much the cubes of a batch differ from each other: a
/// generator whose cubes vary more (or less) than real ones is told apart.
pub fn minibatch_std_channel(h: &Tensor, group: usize) -> Tensor {
    let size = h.size();
    let b = size[0];
    let g = if group > 0 && b % group as i64 == 0 {
        group as i64
    } else {
        b
    };
    let grouped = h.reshape([b / g, g, -1]);
    let sd = (grouped.var_dim(1i64, false, true) + 1e-8).sqrt();
    let per_group = sd.mean_dim(2i64, true, Kind::Float);
    let mut shape = size.clone();
    shape[1] = 1;
    per_group
        .expand([b / g, g, 1], false)
        .reshape([b, 1, 1, 1, 1])
        .expand(&shape, false)
        .contiguous()
}

/// Segmented training volumes and a sampler of augmented sub-cubes.
pub struct TrainingData {
    masks: Vec<BoneMask>,
    pub voxel_size_mm: f64,
    /// Expected BV/TV of a training cube: the mean over masks (each drawn with equal
    /// probability) of the mean BV/TV over every cube offset. Uniform offsets weight a
    /// mask's centre more than its rim, so this differs from the masks' own BV/TV
    /// (0.2395 against 0.2077 for the 64³ cubes of the 100³ micro-CT mask).
    pub bv_tv_mean: f64,
    /// What the data are, for the card.
    pub description: String,
}

impl TrainingData {
    /// Training data from segmented masks; every mask must be isotropic, share one voxel
    /// size and hold at least one `size`³ cube.
    pub fn from_masks(
        masks: Vec<BoneMask>,
        size: usize,
        description: impl Into<String>,
    ) -> Result<Self, TrainError> {
        let Some(first) = masks.first() else {
            return Err(TrainError::Data("no training volumes".into()));
        };
        let h = first.grid.voxel_size_mm[0];
        let mut bv_tv_sum = 0.0;
        for (k, m) in masks.iter().enumerate() {
            let v = m.grid.voxel_size_mm;
            if v.iter().any(|&x| (x - h).abs() > 1e-9 * h) {
                return Err(TrainError::Data(format!(
                    "volume {k} has voxel size {v:?} mm; all must be isotropic at {h} mm"
                )));
            }
            let d = m.dims();
            if d.nx < size || d.ny < size || d.nz < size {
                return Err(TrainError::Data(format!(
                    "volume {k} ({}x{}x{}) is smaller than the {size}³ training cube",
                    d.nx, d.ny, d.nz
                )));
            }
            bv_tv_sum += expected_cube_bv_tv(m, size);
        }
        Ok(Self {
            bv_tv_mean: bv_tv_sum / masks.len() as f64,
            masks,
            voxel_size_mm: h,
            description: description.into(),
        })
    }

    /// A batch of `batch` augmented `size`³ cubes, [B, 1, S, S, S] with bone = +1; with
    /// `flip_z`, half of them (at random) mirrored along z as well.
    fn sample(&self, rng: &mut SplitMix64, batch: usize, size: usize, flip_z: bool) -> Tensor {
        let s = size;
        let mut out = vec![-1.0f32; batch * s * s * s];
        for b in 0..batch {
            let m = &self.masks[rng.below(self.masks.len())];
            let d: Dims = m.dims();
            let (ox, oy, oz) = (
                rng.below(d.nx - s + 1),
                rng.below(d.ny - s + 1),
                rng.below(d.nz - s + 1),
            );
            let (flip_x, flip_y, turns) = (rng.below(2) == 1, rng.below(2) == 1, rng.below(4));
            // Quarter turns about z, then flips in the plane, then the mirror in z; the mirror
            // is drawn only when asked, so that runs without it keep their sampler stream.
            let symmetry = Symmetry {
                quarter_turns: turns as u8,
                flip_x,
                flip_y,
                flip_z: flip_z && rng.below(2) == 1,
            };
            let cube = &mut out[b * s * s * s..(b + 1) * s * s * s];
            for z in 0..s {
                let w = symmetry.source_z(z, s);
                for y in 0..s {
                    for x in 0..s {
                        let (u, v) = symmetry.source(x, y, s);
                        if m.voxels[d.index(ox + u, oy + v, oz + w)] {
                            cube[x + s * (y + s * z)] = 1.0;
                        }
                    }
                }
            }
        }
        Tensor::from_slice(&out).reshape([batch as i64, 1, s as i64, s as i64, s as i64])
    }
}

/// The mean BV/TV of the `size`³ sub-cubes of `mask` over every offset (the sampler's
/// uniform offsets): Σ bone(v) · c_x(x) c_y(y) c_z(z) / (offsets · size³), where c_a counts
/// the offsets along axis a whose cube covers the voxel.
fn expected_cube_bv_tv(mask: &BoneMask, size: usize) -> f64 {
    let d = mask.dims();
    let cover = |n: usize| -> Vec<f64> {
        (0..n)
            .map(|i| (i.min(n - size) + 1 - (i + 1).saturating_sub(size)) as f64)
            .collect()
    };
    let (cx, cy, cz) = (cover(d.nx), cover(d.ny), cover(d.nz));
    let mut sum = 0.0;
    for z in 0..d.nz {
        for y in 0..d.ny {
            let w = cz[z] * cy[y];
            for x in 0..d.nx {
                if mask.voxels[d.index(x, y, z)] {
                    sum += w * cx[x];
                }
            }
        }
    }
    let offsets = ((d.nx - size + 1) * (d.ny - size + 1) * (d.nz - size + 1)) as f64;
    sum / (offsets * (size * size * size) as f64)
}

/// The slice-fraction distance of the module docs between two batches of cubes
/// `[B, 1, S, S, S]` in (−1, 1) (bone = +1): for each axis, the bone fractions of the B·S
/// slices normal to it are sorted in each batch, and the mean squared difference of the two
/// sorted lists is the squared 2-Wasserstein distance of the two empirical distributions.
/// Returns the mean over the three axes (a scalar, differentiable in both batches).
pub fn slice_fraction_loss(real: &Tensor, fake: &Tensor) -> Tensor {
    let fraction = |t: &Tensor| (t + 1.0) * 0.5;
    let (real, fake) = (fraction(real), fraction(fake));
    // Dims [B, C, D=z, H=y, W=x]: slices normal to z average over (3, 4), to y over (2, 4),
    // to x over (2, 3).
    let axes: [&[i64]; 3] = [&[3, 4], &[2, 4], &[2, 3]];
    let per_axis: Vec<Tensor> = axes
        .iter()
        .map(|&dims| {
            let sorted = |t: &Tensor| {
                t.mean_dim(dims, false, Kind::Float)
                    .reshape([-1])
                    .sort(0, false)
                    .0
            };
            (sorted(&fake) - sorted(&real)).square().mean(Kind::Float)
        })
        .collect();
    Tensor::stack(&per_axis, 0).mean(Kind::Float)
}

/// How steeply [`mask_like`] sharpens: `tanh(K · smoothed)`. With K = 5 a feature whose
/// smoothed value stays at −0.5 (a faint strut that never crosses the threshold) is left at
/// −0.987, so it adds 1.3 % of its raw step to the crossings, while the gradient at the
/// zero crossing is 5.
pub const MASK_LIKE_SHARPNESS: f64 = 5.0;

/// The generated field as the mask pipeline will cut it, in a differentiable form:
/// Gaussian smoothing with `sigma_voxels` (separable, truncated at 3σ, clamp-to-edge, as
/// [`gaussian_smooth_f32`](crate::volume::segment::gaussian_smooth_f32)), then
/// `tanh(K · smoothed)` with K = [`MASK_LIKE_SHARPNESS`] in place of the threshold.
/// `cubes` is `[B, 1, S, S, S]` in (−1, 1).
pub fn mask_like(cubes: &Tensor, sigma_voxels: f64) -> Result<Tensor, TrainError> {
    let kernel = crate::volume::segment::gaussian_kernel(sigma_voxels)
        .map_err(|e| TrainError::InvalidParameter(e.to_string()))?;
    let len = kernel.len() as i64;
    let r = len / 2;
    let mut smoothed = cubes.shallow_clone();
    if len > 1 {
        let weights = Tensor::from_slice(&kernel).to_device(cubes.device());
        // Dims [B, C, D, H, W]; replication_pad3d takes (W, W, H, H, D, D).
        for (shape, pad) in [
            ([1, 1, 1, 1, len], [r, r, 0, 0, 0, 0]),
            ([1, 1, 1, len, 1], [0, 0, r, r, 0, 0]),
            ([1, 1, len, 1, 1], [0, 0, 0, 0, r, r]),
        ] {
            smoothed = smoothed.replication_pad3d(pad).conv3d(
                &weights.reshape(shape),
                None::<Tensor>,
                [1, 1, 1],
                [0, 0, 0],
                [1, 1, 1],
                1,
            );
        }
    }
    Ok((smoothed * MASK_LIKE_SHARPNESS).tanh())
}

/// Each cube's interface crossings along z, y and x as shares `[B, 3]` (each row sums to
/// 3): for a field f = (t + 1)/2 in [0, 1], the crossings along an axis are the total
/// variation Σ|f(x + e) − f(x)| of its lines, which is one per bone/marrow interface
/// whether the interface is sharp or spread over a few voxels. The shares are the axis
/// intercept densities of the MIL fabric, normalised by their mean. On a ±1 mask with at
/// least one interface they are the shares [`crate::gan::validate::axis_intercept_shares`]
/// gives on a `BoneMask` (there in the order x, y, z; a cube without interfaces gives 0 here
/// and 1 there).
pub fn total_variation_intercept_shares(cubes: &Tensor) -> Tensor {
    let f = (cubes + 1.0) * 0.5;
    let per_axis: Vec<Tensor> = [2i64, 3, 4]
        .iter()
        .map(|&dim| {
            let n = f.size()[dim as usize];
            (f.narrow(dim, 1, n - 1) - f.narrow(dim, 0, n - 1))
                .abs()
                .sum_dim_intlist([1i64, 2, 3, 4].as_slice(), false, Kind::Float)
        })
        .collect();
    let crossings = Tensor::stack(&per_axis, 1);
    let mean = crossings.mean_dim([1i64].as_slice(), true, Kind::Float);
    crossings / (mean + 1e-6)
}

/// The intercept-share distance of the module docs: per axis, the squared 2-Wasserstein
/// distance between the sorted [`total_variation_intercept_shares`] of the real batch and of
/// `fake_mask_like` (the generated batch through [`mask_like`]), averaged over the axes.
pub fn intercept_share_loss(real: &Tensor, fake_mask_like: &Tensor) -> Tensor {
    let sorted = |t: &Tensor| total_variation_intercept_shares(t).sort(0, false).0;
    (sorted(fake_mask_like) - sorted(real))
        .square()
        .mean(Kind::Float)
}

/// One report of training progress.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TrainProgress {
    pub step: usize,
    pub steps: usize,
    /// Training cubes seen, in units of the volume of the training data.
    pub epoch: f64,
    pub loss_d: f64,
    /// The generator's adversarial loss (without the slice-fraction term).
    pub loss_g: f64,
    /// The slice-fraction distance (unweighted; computed even when its weight is 0).
    pub loss_slices: f64,
    /// The intercept-share distance (unweighted; computed only when its weight is not 0:
    /// its smoothing and backward pass add about 40 % to a step, BENCHMARKS.md).
    pub loss_intercepts: Option<f64>,
    pub samples_per_second: f64,
    pub eta_seconds: f64,
}

/// What a finished run wrote.
#[derive(Clone, Debug, Serialize)]
pub struct TrainOutcome {
    pub generator: PathBuf,
    pub card: PathBuf,
    pub steps: usize,
    pub resumed_from_step: usize,
    pub last: Option<TrainProgress>,
    pub seconds: f64,
}

#[derive(Serialize, Deserialize)]
struct CheckpointState {
    step: usize,
    sampler: SplitMix64,
    params: TrainParams,
}

fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

fn save_vs_atomic(vs: &nn::VarStore, path: &Path) -> Result<(), TrainError> {
    // tch picks the format from the extension, so the temporary name keeps it.
    let tmp = path.with_extension("tmp.safetensors");
    vs.save(&tmp).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    std::fs::rename(&tmp, path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let bytes = serde_json::to_vec_pretty(value).expect("serialisable");
    crate::atomic::write_bytes_atomic(path, &bytes).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Where a run that does not resume takes its starting weights from (fresh when `None`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Initialisation<'a> {
    /// An exported `generator.safetensors` of the same architecture (fine-tuning).
    pub generator: Option<&'a Path>,
    /// A checkpoint's `discriminator.safetensors` ([`load_discriminator_widening`]).
    pub discriminator: Option<&'a Path>,
}

/// Trains ReconGAN on `data`, writing checkpoints and the exported generator into `out`.
/// With `resume`, continues from `out/checkpoint` when it exists. Otherwise each network
/// starts from `init` where it names a file (an exported generator of the same
/// architecture; a discriminator checkpoint), and from scratch where it does not.
pub fn train(
    data: &TrainingData,
    params: &TrainParams,
    out: &Path,
    resume: bool,
    init: Initialisation<'_>,
    cancel: Option<&AtomicBool>,
    mut progress: impl FnMut(&TrainProgress),
) -> Result<TrainOutcome, TrainError> {
    params.validate()?;
    let size = params.arch.size;
    let t0 = Instant::now();
    std::fs::create_dir_all(checkpoint_dir(out)).map_err(|source| TrainError::Io {
        path: checkpoint_dir(out),
        source,
    })?;
    tch::manual_seed(params.seed as i64);
    let device = Device::Cpu;
    let mut g_vs = nn::VarStore::new(device);
    let mut d_vs = nn::VarStore::new(device);
    let generator = TchGenerator::new(&g_vs.root(), &params.arch)?;
    let discriminator = TchDiscriminator::with_minibatch_std(
        &d_vs.root(),
        &params.arch,
        params.discriminator_norm,
        if params.minibatch_std {
            params.batch_size
        } else {
            0
        },
    )?;
    let mut sampler = SplitMix64::new(params.seed ^ 0x005E_ED0F_DA7A);
    let mut start = 0usize;
    let ckpt = checkpoint_dir(out);
    let state_path = ckpt.join("state.json");
    let resuming = resume && state_path.exists();
    if let (Some(path), false) = (init.generator, resuming) {
        g_vs.load(path).map_err(|e| TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if params.init_output_gain != 1.0 {
            let last = &generator.layers.last().expect("at least two layers").0;
            tch::no_grad(|| {
                let _ = last
                    .ws
                    .shallow_clone()
                    .g_mul_scalar_(params.init_output_gain);
            });
        }
    }
    if let (Some(path), false) = (init.discriminator, resuming) {
        load_discriminator_widening(&mut d_vs, path)?;
    }
    if resuming {
        let text = std::fs::read_to_string(&state_path).map_err(|source| TrainError::Io {
            path: state_path.clone(),
            source,
        })?;
        let state: CheckpointState =
            serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
                path: state_path.clone(),
                reason: e.to_string(),
            })?;
        if state.params.arch != params.arch {
            return Err(TrainError::Checkpoint {
                path: state_path,
                reason: format!(
                    "checkpoint architecture {:?} differs from the requested {:?}",
                    state.params.arch, params.arch
                ),
            });
        }
        for (vs, name) in [
            (&mut g_vs, "generator.safetensors"),
            (&mut d_vs, "discriminator.safetensors"),
        ] {
            let p = ckpt.join(name);
            vs.load(&p).map_err(|e| TrainError::Checkpoint {
                path: p.clone(),
                reason: e.to_string(),
            })?;
        }
        start = state.step;
        sampler = state.sampler;
        // A fresh but reproducible torch stream for the rest of the run.
        tch::manual_seed((params.seed ^ (start as u64).wrapping_mul(0x9E37_79B9)) as i64);
    }
    let mut g_opt = nn::Adam {
        beta1: params.beta1,
        beta2: 0.999,
        wd: 0.0,
        eps: 1e-8,
        amsgrad: false,
    }
    .build(&g_vs, params.learning_rate)?;
    let mut d_opt = nn::Adam {
        beta1: params.beta1,
        beta2: 0.999,
        wd: 0.0,
        eps: 1e-8,
        amsgrad: false,
    }
    .build(&d_vs, params.learning_rate)?;
    let b = params.batch_size as i64;
    let cube_voxels = (size * size * size) as f64;
    let data_voxels: f64 = data.masks.iter().map(|m| m.voxels.len() as f64).sum();
    let mut last = None;
    let loop_start = Instant::now();
    for step in start..params.steps {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(TrainError::Cancelled { step });
        }
        let real = data.sample(&mut sampler, params.batch_size, size, params.flip_z);
        let z = Tensor::randn([b, params.arch.latent_dim as i64], (Kind::Float, device));
        let fake = generator.forward_t(&z, true);
        let sigma = params.mask_like_sigma_voxels;
        // The generated batch as the mask will cut it, when something needs it.
        let fake_cut = if params.discriminator_sees_mask || params.intercept_loss_weight > 0.0 {
            Some(mask_like(&fake, sigma)?)
        } else {
            None
        };
        // What D judges: both batches as they are, or both through `mask_like`.
        let (real_seen, fake_seen) = match (&fake_cut, params.discriminator_sees_mask) {
            (Some(cut), true) => (mask_like(&real, sigma)?, cut.shallow_clone()),
            _ => (real.shallow_clone(), fake.shallow_clone()),
        };
        // D's logits of the real and of the generated cubes, in one batch or in two.
        let logits = |fake: &Tensor| -> (Tensor, Tensor) {
            if params.joint_discriminator_batch {
                let both = discriminator.forward_t(&Tensor::cat(&[&real_seen, fake], 0), true);
                (both.narrow(0, 0, b), both.narrow(0, b, b))
            } else {
                (
                    discriminator.forward_t(&real_seen, true),
                    discriminator.forward_t(fake, true),
                )
            }
        };
        // Discriminator: real → real_label, fake → 0.
        let real_target = Tensor::full([b], params.real_label, (Kind::Float, device));
        let fake_target = Tensor::zeros([b], (Kind::Float, device));
        let (real_logits, fake_logits) = logits(&fake_seen.detach());
        let loss_d = real_logits.binary_cross_entropy_with_logits::<Tensor>(
            &real_target,
            None,
            None,
            Reduction::Mean,
        ) + fake_logits.binary_cross_entropy_with_logits::<Tensor>(
            &fake_target,
            None,
            None,
            Reduction::Mean,
        );
        d_opt.backward_step(&loss_d);
        // Generator: non-saturating loss, fake → 1, plus the slice-fraction loss.
        let ones = Tensor::ones([b], (Kind::Float, device));
        // Only batch norm over one joint batch needs the real half again for D's statistics.
        let fake_logits = if params.joint_discriminator_batch
            && params.discriminator_norm == DiscriminatorNorm::Batch
        {
            logits(&fake_seen).1
        } else {
            discriminator.forward_t(&fake_seen, true)
        };
        let loss_adversarial = fake_logits.binary_cross_entropy_with_logits::<Tensor>(
            &ones,
            None,
            None,
            Reduction::Mean,
        );
        let loss_slices = slice_fraction_loss(&real, &fake);
        let loss_intercepts = match &fake_cut {
            Some(cut) if params.intercept_loss_weight > 0.0 => {
                Some(intercept_share_loss(&real, cut))
            }
            _ => None,
        };
        let loss_g = &loss_adversarial + &loss_slices * params.slice_loss_weight;
        let loss_g = match &loss_intercepts {
            Some(loss) => loss_g + loss * params.intercept_loss_weight,
            None => loss_g,
        };
        if step >= params.discriminator_warmup_steps {
            g_opt.backward_step(&loss_g);
        }
        let (ld, lg, ls) = (
            loss_d.double_value(&[]),
            loss_adversarial.double_value(&[]),
            loss_slices.double_value(&[]),
        );
        let li = loss_intercepts.map(|l| l.double_value(&[]));
        if !(ld.is_finite() && lg.is_finite() && ls.is_finite() && li.is_none_or(f64::is_finite)) {
            return Err(TrainError::Data(format!(
                "losses became non-finite at step {step} (D {ld}, G {lg}, slices {ls}, intercepts {li:?})"
            )));
        }
        let done = step + 1;
        let elapsed = loop_start.elapsed().as_secs_f64().max(1e-9);
        let per_step = elapsed / (done - start) as f64;
        let p = TrainProgress {
            step: done,
            steps: params.steps,
            epoch: done as f64 * params.batch_size as f64 * cube_voxels / data_voxels,
            loss_d: ld,
            loss_g: lg,
            loss_slices: ls,
            loss_intercepts: li,
            samples_per_second: params.batch_size as f64 / per_step,
            eta_seconds: per_step * (params.steps - done) as f64,
        };
        progress(&p);
        last = Some(p);
        if done % params.checkpoint_every == 0 || done == params.steps {
            save_vs_atomic(&g_vs, &ckpt.join("generator.safetensors"))?;
            save_vs_atomic(&d_vs, &ckpt.join("discriminator.safetensors"))?;
            write_json_atomic(
                &state_path,
                &CheckpointState {
                    step: done,
                    sampler,
                    params: *params,
                },
            )?;
        }
    }
    let generator_path = out.join("generator.safetensors");
    save_vs_atomic(&g_vs, &generator_path)?;
    let card = out.join("generator.json");
    write_json_atomic(
        &card,
        &serde_json::json!({
            "architecture": params.arch,
            "voxel_size_mm": data.voxel_size_mm,
            "bv_tv_mean": data.bv_tv_mean,
            "training": {
                "data": data.description,
                "steps": params.steps,
                "batch_size": params.batch_size,
                "learning_rate": params.learning_rate,
                "beta1": params.beta1,
                "real_label": params.real_label,
                "seed": params.seed,
                "joint_discriminator_batch": params.joint_discriminator_batch,
                "slice_loss_weight": params.slice_loss_weight,
                "discriminator_warmup_steps": params.discriminator_warmup_steps,
                "init_output_gain": params.init_output_gain,
                "discriminator_norm": params.discriminator_norm,
                "flip_z": params.flip_z,
                "intercept_loss_weight": params.intercept_loss_weight,
                "mask_like_sigma_voxels": params.mask_like_sigma_voxels,
                "discriminator_sees_mask": params.discriminator_sees_mask,
                "minibatch_std": params.minibatch_std,
                "init_generator": init.generator.map(|p| p.display().to_string()),
                "init_discriminator": init.discriminator.map(|p| p.display().to_string()),
                "epochs": last.map(|p| p.epoch),
                "final_loss_d": last.map(|p| p.loss_d),
                "final_loss_g": last.map(|p| p.loss_g),
                "libtorch": "2.13.0",
            },
        }),
    )?;
    if params.standing_statistics_count > 0 {
        crate::gan::standing::write_with_standing_statistics(
            &generator_path,
            &generator_path,
            crate::gan::standing::DEFAULT_SEED,
            params.standing_statistics_count,
        )
        .map_err(|e| TrainError::Checkpoint {
            path: generator_path.clone(),
            reason: format!("standing statistics: {e}"),
        })?;
    }
    Ok(TrainOutcome {
        generator: generator_path,
        card,
        steps: params.steps,
        resumed_from_step: start,
        last,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Loads a discriminator checkpoint into `d_vs` tensor by tensor. A tensor of the same shape
/// is copied; a weight with one more input channel than the saved one (the last convolution
/// of a discriminator with [`minibatch_std_channel`], from one without) gets the saved
/// weights in its first channels and zero on the new one, so that the discriminator starts
/// out scoring exactly as the saved one did. Any other difference is an error.
fn load_discriminator_widening(d_vs: &mut nn::VarStore, path: &Path) -> Result<(), TrainError> {
    let bad = |reason: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let saved = Tensor::read_safetensors(path).map_err(|e| bad(e.to_string()))?;
    let mut vars: Vec<(String, Tensor)> = d_vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in &vars {
        let Some((_, src)) = saved.iter().find(|(n, _)| n == name) else {
            return Err(bad(format!("no tensor `{name}`")));
        };
        let (want, got) = (var.size(), src.size());
        let widened = want.len() == got.len()
            && want.len() > 1
            && want[1] == got[1] + 1
            && want
                .iter()
                .zip(&got)
                .enumerate()
                .all(|(i, (a, b))| i == 1 || a == b);
        tch::no_grad(|| {
            let mut dst = var.shallow_clone();
            if want == got {
                dst.copy_(src);
                Ok(())
            } else if widened {
                let _ = dst.zero_();
                dst.narrow(1, 0, got[1]).copy_(src);
                Ok(())
            } else {
                Err(bad(format!(
                    "tensor `{name}` has shape {got:?}, the discriminator needs {want:?}"
                )))
            }
        })?;
    }
    Ok(())
}

/// The tch generator of an exported file, for comparisons with the pure-Rust one.
pub fn load_tch_generator(
    weights: &Path,
    arch: &GeneratorArch,
) -> Result<(nn::VarStore, TchGenerator), TrainError> {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let g = TchGenerator::new(&vs.root(), arch)?;
    vs.load(weights).map_err(|e| TrainError::Checkpoint {
        path: weights.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok((vs, g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{SyntheticParams, synthetic_trabecular};

    fn tiny() -> TrainParams {
        TrainParams {
            arch: GeneratorArch {
                latent_dim: 8,
                base_channels: 2,
                size: 16,
            },
            batch_size: 2,
            steps: 4,
            checkpoint_every: 2,
            seed: 7,
            ..Default::default()
        }
    }

    fn data() -> TrainingData {
        let mask = synthetic_trabecular(&SyntheticParams {
            size_voxels: 32,
            ..Default::default()
        })
        .expect("synthetic structure");
        TrainingData::from_masks(vec![mask], 16, "synthetic test structure").unwrap()
    }

    /// The closed-form expectation equals the brute-force mean over every offset, and for a
    /// mask the size of the cube it is the mask's own BV/TV.
    #[test]
    fn expected_cube_bv_tv_is_the_mean_over_all_offsets() {
        let mut rng = SplitMix64::new(11);
        let dims = Dims::new(13, 11, 9);
        let voxels: Vec<bool> = (0..dims.len()).map(|_| rng.below(3) == 0).collect();
        let mask = BoneMask::new(crate::volume::Grid::isotropic(dims, 0.1), voxels).unwrap();
        let s = 6;
        let mut brute = 0.0;
        let mut offsets = 0;
        for oz in 0..=dims.nz - s {
            for oy in 0..=dims.ny - s {
                for ox in 0..=dims.nx - s {
                    let mut bone = 0;
                    for z in 0..s {
                        for y in 0..s {
                            for x in 0..s {
                                bone += mask.voxels[dims.index(ox + x, oy + y, oz + z)] as usize;
                            }
                        }
                    }
                    brute += bone as f64 / (s * s * s) as f64;
                    offsets += 1;
                }
            }
        }
        brute /= offsets as f64;
        assert!((expected_cube_bv_tv(&mask, s) - brute).abs() < 1e-12);
        let cube = BoneMask::new(
            crate::volume::Grid::isotropic(Dims::new(s, s, s), 0.1),
            (0..s * s * s).map(|i| i % 4 == 0).collect(),
        )
        .unwrap();
        assert!((expected_cube_bv_tv(&cube, s) - cube.bv_tv()).abs() < 1e-12);
    }

    /// A mask with bone only in its lowest slices: without the z flip every sampled cube has
    /// its bone at the bottom; with it, about half have it at the top, and a sampled cube is
    /// always the mask's bone either way up.
    #[test]
    fn z_flip_samples_the_volume_both_ways_up() {
        let dims = Dims::new(16, 16, 24);
        let voxels = (0..dims.len()).map(|i| i / (16 * 16) < 4).collect();
        let mask = BoneMask::new(crate::volume::Grid::isotropic(dims, 0.1), voxels).unwrap();
        let data = TrainingData::from_masks(vec![mask], 16, "bone at the bottom").unwrap();
        let bottom_heavy = |flip_z: bool| -> usize {
            let mut rng = SplitMix64::new(4);
            let cubes = data.sample(&mut rng, 200, 16, flip_z);
            let v = Vec::<f32>::try_from(cubes.reshape([-1])).unwrap();
            v.chunks(16 * 16 * 16)
                .filter(|cube| {
                    let bone = |z: usize| {
                        cube[z * 256..(z + 1) * 256]
                            .iter()
                            .filter(|&&x| x > 0.0)
                            .count()
                    };
                    let (low, high) = (
                        (0..8).map(bone).sum::<usize>(),
                        (8..16).map(bone).sum::<usize>(),
                    );
                    assert!(low == 0 || high == 0, "bone on both sides of the middle");
                    low > high
                })
                .count()
        };
        let cubes_with_bone = {
            let mut rng = SplitMix64::new(4);
            let v =
                Vec::<f32>::try_from(data.sample(&mut rng, 200, 16, false).reshape([-1])).unwrap();
            v.chunks(16 * 16 * 16)
                .filter(|c| c.iter().any(|&x| x > 0.0))
                .count()
        };
        assert!(cubes_with_bone > 50);
        assert_eq!(bottom_heavy(false), cubes_with_bone);
        let flipped = bottom_heavy(true);
        assert!(
            (cubes_with_bone * 3 / 10..cubes_with_bone * 7 / 10).contains(&flipped),
            "{flipped} of {cubes_with_bone} bottom-heavy with the z flip"
        );
    }

    /// A few steps on a tiny network, with either discriminator: finite losses, a checkpoint
    /// every 2 steps, and a run resumed from the step-2 checkpoint continues from step 2 to
    /// the same number of steps.
    #[test]
    fn training_smoke_test_checkpoints_and_resumes() {
        for norm in [DiscriminatorNorm::Batch, DiscriminatorNorm::Spectral] {
            smoke_test_with(TrainParams {
                discriminator_norm: norm,
                ..tiny()
            });
        }
        smoke_test_with(TrainParams {
            intercept_loss_weight: 100.0,
            discriminator_sees_mask: true,
            minibatch_std: true,
            ..tiny()
        });
    }

    /// A discriminator with the minibatch channel, loaded from the checkpoint of one without
    /// it, scores every batch exactly as the saved one does (its new input channel starts at
    /// zero weight); a checkpoint of another architecture is refused by name.
    #[test]
    fn discriminator_widened_for_the_minibatch_channel_scores_as_the_saved_one() {
        let dir = tempfile::tempdir().unwrap();
        let params = TrainParams { steps: 2, ..tiny() };
        train_fresh(&data(), &params, dir.path());
        let ckpt = checkpoint_dir(dir.path()).join("discriminator.safetensors");
        let mut plain_vs = nn::VarStore::new(Device::Cpu);
        let plain =
            TchDiscriminator::new(&plain_vs.root(), &params.arch, params.discriminator_norm)
                .unwrap();
        plain_vs.load(&ckpt).unwrap();
        let mut wide_vs = nn::VarStore::new(Device::Cpu);
        let wide = TchDiscriminator::with_minibatch_std(
            &wide_vs.root(),
            &params.arch,
            params.discriminator_norm,
            2,
        )
        .unwrap();
        load_discriminator_widening(&mut wide_vs, &ckpt).unwrap();
        let s = params.arch.size as i64;
        let x = Tensor::randn([4, 1, s, s, s], (Kind::Float, Device::Cpu));
        let (a, b) = tch::no_grad(|| (plain.forward_t(&x, false), wide.forward_t(&x, false)));
        let gap = (a - b).abs().max().double_value(&[]);
        assert!(gap < 1e-6, "logits differ by {gap:e}");

        let mut other_vs = nn::VarStore::new(Device::Cpu);
        let bigger = GeneratorArch {
            base_channels: 4,
            ..params.arch
        };
        let _ = TchDiscriminator::new(&other_vs.root(), &bigger, params.discriminator_norm);
        let e = load_discriminator_widening(&mut other_vs, &ckpt)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("discriminator.safetensors") && e.contains("shape"),
            "{e}"
        );
    }

    /// Two groups of two cubes: identical cubes give a zero channel, cubes of +a and −a
    /// everywhere give a (the biased standard deviation of {a, −a}); the channel has the
    /// cubes' shape with one channel, and a batch the group does not divide is one group.
    #[test]
    fn minibatch_std_channel_is_the_group_standard_deviation() {
        let a = 0.75f64;
        let ones = Tensor::ones([1, 2, 3, 3, 3], (Kind::Float, Device::Cpu));
        let x = Tensor::cat(&[&ones, &ones, &(&ones * a), &(&ones * -a)], 0);
        let c = minibatch_std_channel(&x, 2);
        assert_eq!(c.size(), [4, 1, 3, 3, 3]);
        for (cube, want) in [(0, 0.0), (1, 0.0), (2, a), (3, a)] {
            let (lo, hi) = (
                c.get(cube).min().double_value(&[]),
                c.get(cube).max().double_value(&[]),
            );
            assert!(
                (lo - want).abs() < 1e-3 && (hi - want).abs() < 1e-3,
                "cube {cube}: {lo}..{hi}"
            );
        }
        // Group 3 does not divide 4: one group of all four cubes, sd over {1, 1, a, −a}.
        let all = minibatch_std_channel(&x, 3).max().double_value(&[]);
        let values = [1.0, 1.0, a, -a];
        let mean = values.iter().sum::<f64>() / 4.0;
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        assert!((all - sd).abs() < 1e-3, "{all} against {sd}");
        // The discriminator with the channel scores each cube.
        let vs = nn::VarStore::new(Device::Cpu);
        let arch = tiny().arch;
        let d =
            TchDiscriminator::with_minibatch_std(&vs.root(), &arch, DiscriminatorNorm::Spectral, 2)
                .unwrap();
        let s = arch.size as i64;
        let logits = d.forward_t(
            &Tensor::randn([4, 1, s, s, s], (Kind::Float, Device::Cpu)),
            true,
        );
        assert_eq!(logits.size(), [4]);
    }

    fn smoke_test_with(params: TrainParams) {
        let dir = tempfile::tempdir().unwrap();
        let data = data();
        let mut seen = Vec::new();
        let outcome = train_run(&data, &params, dir.path(), false, |p| seen.push(p.step));
        assert_eq!(seen, vec![1, 2, 3, 4]);
        let last = outcome.last.unwrap();
        assert!(last.loss_d.is_finite() && last.loss_g.is_finite());
        // The intercept-share distance is computed only when it is charged.
        match last.loss_intercepts {
            Some(l) => assert!(params.intercept_loss_weight > 0.0 && l.is_finite() && l >= 0.0),
            None => assert_eq!(params.intercept_loss_weight, 0.0),
        }
        assert!(dir.path().join("generator.safetensors").exists());
        let card: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("generator.json")).unwrap())
                .unwrap();
        assert_eq!(card["architecture"]["size"], 16);
        assert_eq!(
            card["training"]["intercept_loss_weight"],
            params.intercept_loss_weight
        );
        assert_eq!(
            card["training"]["discriminator_sees_mask"],
            params.discriminator_sees_mask
        );
        assert!(card["bv_tv_mean"].as_f64().unwrap() > 0.05);
        // The export carries standing batch-norm statistics, recorded in the card.
        assert_eq!(
            card["standing_statistics"]["count"],
            params.standing_statistics_count
        );
        assert_eq!(
            card["standing_statistics"]["seed"],
            crate::gan::standing::DEFAULT_SEED
        );

        // Resume: cut the checkpoint back to step 2 and ask for 5 steps.
        let state_path = dir.path().join("checkpoint/state.json");
        let mut state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
        assert_eq!(state["step"], 4);
        state["step"] = 2.into();
        std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
        let more = TrainParams { steps: 5, ..params };
        let mut resumed = Vec::new();
        let outcome = train_run(&data, &more, dir.path(), true, |p| resumed.push(p.step));
        assert_eq!(outcome.resumed_from_step, 2);
        assert_eq!(resumed, vec![3, 4, 5]);
    }

    /// For batches of uniform cubes the distance is the squared gap of the bone fractions on
    /// every axis; it ignores the order of the cubes in a batch; and it pulls a generated
    /// batch towards the real one.
    #[test]
    fn slice_fraction_loss_is_the_squared_fraction_gap_for_uniform_cubes() {
        let shape = [3i64, 1, 4, 4, 4];
        let bone = Tensor::ones(shape, (Kind::Float, Device::Cpu));
        let grey = Tensor::full(shape, -0.5, (Kind::Float, Device::Cpu)).set_requires_grad(true);
        // Fractions 1 and 0.25 on every slice of every axis.
        let loss = slice_fraction_loss(&bone, &grey);
        assert!((loss.double_value(&[]) - 0.75f64.powi(2)).abs() < 1e-6);
        loss.backward();
        // d/d(voxel) of mean over axes of mean over slices of (φ − 1)², each voxel in one
        // slice per axis: 2 (φ − 1) · ½ / (slice voxels · slices) = −0.75 / (16 · 12).
        let g = grey.grad();
        assert!((g.min().double_value(&[]) + 0.75 / 192.0).abs() < 1e-7);
        assert!((g.max().double_value(&[]) + 0.75 / 192.0).abs() < 1e-7);

        let mut rng = SplitMix64::new(3);
        let values: Vec<f32> = (0..3 * 64)
            .map(|_| if rng.below(3) == 0 { 1.0 } else { -1.0 })
            .collect();
        let cubes = Tensor::from_slice(&values).reshape(shape);
        let reordered = cubes.index_select(0, &Tensor::from_slice(&[2i64, 0, 1]));
        assert!(slice_fraction_loss(&cubes, &reordered).double_value(&[]) < 1e-12);
        assert!(slice_fraction_loss(&cubes, &bone).double_value(&[]) > 0.1);
    }

    /// A batch of `b` cubes of edge `s` in ±1, bone where `bone(x, y, z)`.
    fn cubes_of(b: i64, s: i64, bone: impl Fn(i64, i64, i64) -> bool) -> Tensor {
        let mut values = Vec::new();
        for _ in 0..b {
            for z in 0..s {
                for y in 0..s {
                    for x in 0..s {
                        values.push(if bone(x, y, z) { 1.0f32 } else { -1.0 });
                    }
                }
            }
        }
        Tensor::from_slice(&values).reshape([b, 1, s, s, s])
    }

    /// Plates normal to z cross only lines along z, so their shares are (3, 0, 0) in the
    /// order (z, y, x); plates normal to x give (0, 0, 3). The loss between the two batches
    /// is then the mean of (0 − 3)², 0 and (3 − 0)², i.e. 6. It ignores the order of the
    /// cubes in a batch, and its gradient reaches a generated batch of random voxels.
    #[test]
    fn intercept_shares_of_plates_lie_along_the_plate_normal() {
        let z_plates = cubes_of(2, 16, |_, _, z| (z / 4) % 2 == 0);
        let x_plates = cubes_of(2, 16, |x, _, _| (x / 4) % 2 == 0);
        let shares = total_variation_intercept_shares(&z_plates);
        for (axis, want) in [3.0, 0.0, 0.0].iter().enumerate() {
            let got = shares.double_value(&[0, axis as i64]);
            assert!((got - want).abs() < 1e-5, "axis {axis}: {got}");
        }
        let loss = intercept_share_loss(&z_plates, &x_plates);
        assert!((loss.double_value(&[]) - 6.0).abs() < 1e-4);

        let mut rng = SplitMix64::new(9);
        let values: Vec<f32> = (0..2 * 4096)
            .map(|_| if rng.below(4) == 0 { 0.9 } else { -0.9 })
            .collect();
        let random = Tensor::from_slice(&values)
            .reshape([2, 1, 16, 16, 16])
            .set_requires_grad(true);
        let reordered = random.index_select(0, &Tensor::from_slice(&[1i64, 0]));
        assert!(intercept_share_loss(&random, &reordered).double_value(&[]) < 1e-12);
        let loss = intercept_share_loss(&z_plates, &random);
        loss.backward();
        let grad = random.grad().abs().sum(Kind::Float).double_value(&[]);
        assert!(grad.is_finite() && grad > 0.0, "gradient {grad}");
    }

    /// A rod along z crosses only lines along x and y. A faint plate across it (−0.5 on
    /// the −1 marrow, which the mask's threshold never makes bone) adds crossings along z
    /// to the raw field's shares; through `mask_like` (σ 0.7, then tanh(5·)) they fall below
    /// a tenth (its faces keep steps of 0.007 of a crossing; the rest is where it meets the
    /// rod, whose smoothed edge it shifts), while the smoothed rod still counts one crossing
    /// per face: x and y keep half the total each. Smoothing alone would keep them.
    #[test]
    fn mask_like_counts_a_rod_once_and_drops_a_faint_plate() {
        let rod = |x: i64, y: i64| (6..10).contains(&x) && (6..10).contains(&y);
        let mut values = Vec::new();
        for z in 0..16i64 {
            for y in 0..16i64 {
                for x in 0..16i64 {
                    values.push(if rod(x, y) {
                        1.0f32
                    } else if (6..10).contains(&z) {
                        -0.5
                    } else {
                        -1.0
                    });
                }
            }
        }
        let field = Tensor::from_slice(&values).reshape([1, 1, 16, 16, 16]);
        let raw = total_variation_intercept_shares(&field);
        let cut = total_variation_intercept_shares(&mask_like(&field, 0.7).unwrap());
        let raw_z = raw.double_value(&[0, 0]);
        let cut_z = cut.double_value(&[0, 0]);
        assert!(
            raw_z > 0.5,
            "the faint plate crosses lines along z: {raw_z}"
        );
        assert!(
            cut_z < 0.1 * raw_z,
            "z share after mask_like {cut_z} (raw {raw_z})"
        );
        for axis in [1, 2] {
            let share = cut.double_value(&[0, axis]);
            assert!((share - 1.5).abs() < 0.1, "axis {axis}: {share}");
        }
        let smoothed_only = mask_like(&field, 0.7).unwrap().atanh() / MASK_LIKE_SHARPNESS;
        let smooth_z = total_variation_intercept_shares(&smoothed_only).double_value(&[0, 0]);
        assert!(
            smooth_z > 0.5 * raw_z,
            "smoothing alone keeps the plate: {smooth_z}"
        );
        // σ = 0 only sharpens.
        let sharp = mask_like(&field, 0.0).unwrap();
        assert!((sharp.double_value(&[0, 0, 0, 8, 8]) - 5f64.tanh()).abs() < 1e-6);
    }

    /// A discriminator of the tiny architecture (seed 5), four random ±1 cubes and the same
    /// cubes at half amplitude. The variable store is returned to keep the weights alive.
    fn tiny_discriminator_and_fields(
        norm: DiscriminatorNorm,
    ) -> (nn::VarStore, TchDiscriminator, Tensor, Tensor) {
        tch::manual_seed(5);
        let arch = tiny().arch;
        let vs = nn::VarStore::new(Device::Cpu);
        let d = TchDiscriminator::new(&vs.root(), &arch, norm).unwrap();
        let s = arch.size as i64;
        let real = Tensor::randn([4, 1, s, s, s], (Kind::Float, Device::Cpu)).sign();
        let faint = &real * 0.5;
        (vs, d, real, faint)
    }

    /// The premise of the one-batch discriminator: with its batch norms fed one batch of
    /// real and one of generated cubes, D barely tells a field from the same field at half
    /// its amplitude (only batch norm's ε separates them); fed both in one batch, it does.
    #[test]
    fn discriminator_in_separate_batches_is_blind_to_the_field_amplitude() {
        let (_vs, d, real, faint) = tiny_discriminator_and_fields(DiscriminatorNorm::Batch);
        let separate = (d.forward_t(&real, true) - d.forward_t(&faint, true))
            .abs()
            .max()
            .double_value(&[]);
        let both = d.forward_t(&Tensor::cat(&[&real, &faint], 0), true);
        let joint = (both.narrow(0, 0, 4) - both.narrow(0, 4, 4))
            .abs()
            .max()
            .double_value(&[]);
        assert!(
            separate < 0.1 * joint,
            "logit change at half amplitude: {separate:e} in two batches, {joint:e} in one"
        );
    }

    /// Spectral normalisation (Miyato et al. 2018): after enough training passes the power
    /// iteration has converged, and every convolution's weight, as a [c_out, c_in·4³]
    /// matrix, has largest singular value 1 (to 1 %); σ = uᵀWv never exceeds the true
    /// largest singular value, so the normalised weight's is never below 1.
    #[test]
    fn spectral_normalisation_gives_every_convolution_unit_largest_singular_value() {
        tch::manual_seed(3);
        let arch = tiny().arch;
        let vs = nn::VarStore::new(Device::Cpu);
        let d = TchDiscriminator::new(&vs.root(), &arch, DiscriminatorNorm::Spectral).unwrap();
        let s = arch.size as i64;
        let x = Tensor::randn([2, 1, s, s, s], (Kind::Float, Device::Cpu));
        let largest = |layer: &DiscriminatorLayer| {
            let w = layer.weight(false).to_kind(Kind::Double);
            let m = w.reshape([w.size()[0], -1]);
            // The largest singular value is the square root of W Wᵀ's largest eigenvalue.
            m.matmul(&m.tr())
                .linalg_eigvalsh("L")
                .max()
                .double_value(&[])
                .sqrt()
        };
        for layer in &d.layers {
            assert!(largest(layer) >= 1.0 - 1e-5);
        }
        for _ in 0..200 {
            let _ = d.forward_t(&x, true);
        }
        for (i, layer) in d.layers.iter().enumerate() {
            let sv = largest(layer);
            assert!(
                (sv - 1.0).abs() < 0.01,
                "layer {i}: largest singular value {sv}"
            );
            assert!(layer.batch_norm.is_none());
        }
        // Batch norm keeps its layers and has no power iteration.
        let d =
            TchDiscriminator::new(&(vs.root() / "bn"), &arch, DiscriminatorNorm::Batch).unwrap();
        assert!(d.layers.iter().all(|l| l.spectral_u.is_none()));
        assert_eq!(
            d.layers.iter().filter(|l| l.batch_norm.is_some()).count(),
            d.layers.len() - 2
        );
    }

    /// Without batch statistics a spectrally normalised D scores each cube on its own: one
    /// batch or two give the same logits, and a field at half its amplitude scores
    /// differently (unlike the batch-norm D in two batches, above).
    #[test]
    fn spectral_norm_discriminator_sees_the_field_amplitude_in_separate_batches() {
        let (_vs, d, real, faint) = tiny_discriminator_and_fields(DiscriminatorNorm::Spectral);
        let (l_real, l_faint) = (d.forward_t(&real, false), d.forward_t(&faint, false));
        let both = d.forward_t(&Tensor::cat(&[&real, &faint], 0), false);
        let max_abs = |t: Tensor| t.abs().max().double_value(&[]);
        let batch_effect =
            max_abs(both.narrow(0, 0, 4) - &l_real).max(max_abs(both.narrow(0, 4, 4) - &l_faint));
        let amplitude_effect = max_abs(&l_real - &l_faint);
        assert!(batch_effect < 1e-5, "batch effect {batch_effect:e}");
        assert!(
            amplitude_effect > 1e3 * batch_effect.max(1e-9),
            "logit change at half amplitude {amplitude_effect:e}"
        );
    }

    /// A spectrally normalised run checkpoints its power-iteration vectors with the weights,
    /// resumes from them, and the card says which discriminator trained the generator.
    #[test]
    fn spectral_norm_training_resumes_from_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let data = data();
        let params = TrainParams {
            discriminator_norm: DiscriminatorNorm::Spectral,
            ..tiny()
        };
        train_fresh(&data, &params, dir.path());
        let mut saved = nn::VarStore::new(Device::Cpu);
        let _ = TchDiscriminator::new(&saved.root(), &params.arch, params.discriminator_norm);
        saved
            .load(dir.path().join("checkpoint/discriminator.safetensors"))
            .unwrap();
        let names: Vec<String> = saved.variables().into_keys().collect();
        assert!(names.iter().any(|n| n.ends_with("_u")), "{names:?}");
        let card: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("generator.json")).unwrap())
                .unwrap();
        assert_eq!(card["training"]["discriminator_norm"], "spectral");
        let more = TrainParams { steps: 6, ..params };
        let mut resumed = Vec::new();
        let outcome = train_run(&data, &more, dir.path(), true, |p| {
            assert!(p.loss_d.is_finite() && p.loss_g.is_finite());
            resumed.push(p.step)
        });
        assert_eq!(outcome.resumed_from_step, 4);
        assert_eq!(resumed, vec![5, 6]);
    }

    /// Fine-tuning starts from the exported generator: with the discriminator warming up for
    /// the whole run the generator's convolutions come out as loaded (the last one times the
    /// initial output gain), without the warm-up they move.
    #[test]
    fn fine_tuning_starts_from_the_exported_generator() {
        let data = data();
        let first = tempfile::tempdir().unwrap();
        let base = train_fresh(&data, &tiny(), first.path());
        let conv_weights = |path: &Path| -> Vec<Vec<f32>> {
            let (_vs, g) = load_tch_generator(path, &tiny().arch).unwrap();
            g.layers
                .iter()
                .map(|(ct, _)| Vec::<f32>::try_from(ct.ws.reshape([-1])).unwrap())
                .collect()
        };
        let start = conv_weights(&base.generator);
        let steps = tiny().steps;
        for (warmup, gain) in [(steps, 1.0), (steps, 3.0), (0, 1.0)] {
            let dir = tempfile::tempdir().unwrap();
            let params = TrainParams {
                discriminator_warmup_steps: warmup,
                init_output_gain: gain,
                slice_loss_weight: 10.0,
                seed: 8,
                ..tiny()
            };
            let tuned = train(
                &data,
                &params,
                dir.path(),
                true,
                Initialisation {
                    generator: Some(&base.generator),
                    ..Default::default()
                },
                None,
                |p| assert!(p.loss_slices.is_finite() && p.loss_slices >= 0.0),
            )
            .unwrap();
            let tuned = conv_weights(&tuned.generator);
            if warmup < steps {
                assert_ne!(tuned, start);
                continue;
            }
            let last = start.len() - 1;
            for (layer, (got, loaded)) in tuned.iter().zip(&start).enumerate() {
                let factor = if layer == last { gain as f32 } else { 1.0 };
                for (g, l) in got.iter().zip(loaded) {
                    assert!((g - l * factor).abs() <= 1e-6 * (l * factor).abs());
                }
            }
        }
    }

    /// A run without initial weights or cancel flag, resumed or not.
    fn train_run(
        data: &TrainingData,
        params: &TrainParams,
        out: &Path,
        resume: bool,
        progress: impl FnMut(&TrainProgress),
    ) -> TrainOutcome {
        train(
            data,
            params,
            out,
            resume,
            Initialisation::default(),
            None,
            progress,
        )
        .unwrap()
    }

    /// A fresh run, progress ignored.
    fn train_fresh(data: &TrainingData, params: &TrainParams, out: &Path) -> TrainOutcome {
        train_run(data, params, out, false, |_| {})
    }

    /// Two training steps of a 32³ generator (latent 16, 4 base channels) on a synthetic
    /// volume, exported with standing statistics over `standing_count` cubes (0 = none).
    fn two_steps_at_32(standing_count: usize) -> (tempfile::TempDir, TrainParams, TrainOutcome) {
        let dir = tempfile::tempdir().unwrap();
        let params = TrainParams {
            arch: GeneratorArch {
                latent_dim: 16,
                base_channels: 4,
                size: 32,
            },
            steps: 2,
            standing_statistics_count: standing_count,
            ..tiny()
        };
        let data = {
            let mask = synthetic_trabecular(&SyntheticParams {
                size_voxels: 40,
                ..Default::default()
            })
            .unwrap();
            TrainingData::from_masks(vec![mask], 32, "synthetic").unwrap()
        };
        let outcome = train_fresh(&data, &params, dir.path());
        (dir, params, outcome)
    }

    /// The pure-Rust generator reproduces tch's eval-mode forward pass on the exported
    /// weights to 1e-5.
    #[test]
    fn pure_rust_generator_matches_tch_forward_to_1e_5() {
        let (_dir, params, outcome) = two_steps_at_32(tiny().standing_statistics_count);
        let rust = super::super::Generator::load(&outcome.generator).unwrap();
        let (_vs, tch_gen) = load_tch_generator(&outcome.generator, &params.arch).unwrap();
        for index in 0..3 {
            let z = super::super::latent::latent_for(11, index, params.arch.latent_dim);
            let ours = rust.forward(&z).unwrap();
            let theirs = tch::no_grad(|| {
                tch_gen.forward_t(
                    &Tensor::from_slice(&z).reshape([1, params.arch.latent_dim as i64]),
                    false,
                )
            });
            let theirs: Vec<f32> = theirs.reshape([-1]).try_into().unwrap();
            assert_eq!(ours.len(), theirs.len());
            let worst = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-5, "max |rust - tch| = {worst:e}");
        }
    }

    /// Standing statistics over K cubes make the pure-Rust eval-mode generator reproduce
    /// tch's train-mode forward pass on a batch of those K cubes (batch norm with the batch's
    /// own mean and biased variance), to 1e-4.
    #[test]
    fn standing_statistics_reproduce_train_mode_batch_norm_over_the_same_cubes() {
        // Export the running averages, to compare them too.
        let (_dir, params, outcome) = two_steps_at_32(0);
        let eval = super::super::Generator::load(&outcome.generator).unwrap();
        assert_eq!(eval.card().standing_statistics, None);
        let (seed, count, dim) = (21, 6, params.arch.latent_dim);
        let (standing, _) = eval.with_standing_statistics(seed, count).unwrap();
        let (_vs, tch_gen) = load_tch_generator(&outcome.generator, &params.arch).unwrap();
        let z: Vec<f32> = (0..count)
            .flat_map(|i| super::super::latent::latent_for(seed, i, dim))
            .collect();
        let batch = tch::no_grad(|| {
            tch_gen.forward_t(
                &Tensor::from_slice(&z).reshape([count as i64, dim as i64]),
                true,
            )
        });
        let batch: Vec<f32> = batch.reshape([-1]).try_into().unwrap();
        let n = batch.len() / count;
        let (mut worst_standing, mut worst_running) = (0.0f32, 0.0f32);
        for (i, theirs) in batch.chunks_exact(n).enumerate() {
            let zi = &z[i * dim..][..dim];
            let gap = |ours: Vec<f32>| {
                ours.iter()
                    .zip(theirs)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max)
            };
            worst_standing = worst_standing.max(gap(standing.forward(zi).unwrap()));
            worst_running = worst_running.max(gap(eval.forward(zi).unwrap()));
        }
        assert!(
            worst_standing <= 1e-4,
            "max |standing - train mode| = {worst_standing:e}"
        );
        // The check can fail: after two steps the running averages are still near their
        // initial values, far from this batch's statistics.
        assert!(
            worst_running > 1e-2,
            "running statistics already match: {worst_running:e}"
        );
    }
}
