//! The generator's eval-mode forward pass in pure Rust, and the field-to-mask step.
//!
//! The network is the generator of a DCGAN (Radford, Metz & Chintala 2016, ICLR,
//! arXiv:1511.06434) in 3-D; see [`super::arch`] for the layer contract.
//!
//! ## Semantics (PyTorch, followed exactly)
//!
//! - `ConvTranspose3d` (PyTorch's `torch.nn.ConvTranspose3d`,
//!   <https://pytorch.org/docs/stable/generated/torch.nn.ConvTranspose3d.html>, the adjoint
//!   of `Conv3d`; no groups, no dilation, no output padding, no bias):
//!   `out[o, od, oh, ow] = Σ in[c, id, ih, iw] · w[c, o, kd, kh, kw]` over all input
//!   channels `c`, input positions and kernel offsets with `od = id · stride − padding + kd`
//!   (likewise h, w) inside the output, whose edge is `(in − 1) · stride − 2 · padding + k`.
//! - `BatchNorm3d` in eval mode: `(x − running_mean) / sqrt(running_var + eps) · weight +
//!   bias`, folded, as PyTorch's CPU kernel does, into `x · scale + shift`.
//! - ReLU after every batch norm; tanh after the last layer.
//!
//! ## Implementation
//!
//! Activations are channels-last cubes, `[z][y][x][c]`; the latent vector is the 1³ input
//! and the final 1-channel cube is the crate's voxel order (x fastest). Each transposed
//! convolution is a gather: for every output voxel the contributing (input position, kernel
//! offset) pairs per axis are precomputed ("taps", two per axis for stride 2), and the
//! output channel vector accumulates `in[c] · W[k][c][·]` with the weights repacked to
//! `[kd][kh][kw][c_in][c_out]`, so the innermost loop runs over contiguous output channels.
//! Rows `(z, y)` of the output run in parallel (rayon); no allocation inside the loops.

use std::fmt;
use std::path::Path;

use rayon::prelude::*;

use super::GanError;
use super::arch::{GeneratorArch, GeneratorCard, KERNEL, LayerSpec, MaskOptions, card_path_for};
use super::latent::latent_for;
use super::weights::{self, BatchNormTensors};
use crate::volume::segment::{
    fill_enclosed_marrow as fill_enclosed_marrow_of, gaussian_smooth_f32, largest_component,
    threshold,
};
use crate::volume::{BoneMask, Dims, Grid, Volume, VoxelData};

/// A 3-D transposed convolution without bias on cubes, channels-last.
#[derive(Clone, Debug)]
pub(crate) struct ConvTranspose3d {
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    /// `[kd][kh][kw][c_in][c_out]`.
    packed: Vec<f32>,
}

impl ConvTranspose3d {
    /// From PyTorch's weight layout `[c_in, c_out, k, k, k]` (C-contiguous).
    pub(crate) fn from_pytorch(
        weight: &[f32],
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        let k3 = kernel * kernel * kernel;
        assert_eq!(weight.len(), cin * cout * k3, "weight length");
        assert!(
            stride >= 1 && kernel >= 1,
            "stride and kernel must be positive"
        );
        let mut packed = vec![0.0f32; weight.len()];
        for c in 0..cin {
            for o in 0..cout {
                let src = &weight[(c * cout + o) * k3..][..k3];
                for (kk, &w) in src.iter().enumerate() {
                    packed[(kk * cin + c) * cout + o] = w;
                }
            }
        }
        Self {
            cin,
            cout,
            kernel,
            stride,
            padding,
            packed,
        }
    }

    /// Output edge for an input edge: `(in − 1) · stride − 2 · padding + kernel`.
    pub(crate) fn out_size(&self, in_size: usize) -> usize {
        ((in_size - 1) * self.stride + self.kernel).saturating_sub(2 * self.padding)
    }

    /// For each output coordinate along one axis, the (input coordinate, kernel offset)
    /// pairs with `out = in · stride − padding + k`.
    fn taps(&self, in_size: usize, out_size: usize) -> Vec<Vec<(usize, usize)>> {
        let mut taps = vec![Vec::new(); out_size];
        for i in 0..in_size {
            for k in 0..self.kernel {
                let o = (i * self.stride + k) as isize - self.padding as isize;
                if o >= 0 && (o as usize) < out_size {
                    taps[o as usize].push((i, k));
                }
            }
        }
        taps
    }

    /// Applies the convolution to a channels-last cube of edge `in_size` (`in_size³ · c_in`
    /// values); returns the output cube (`out_size³ · c_out` values).
    pub(crate) fn forward(&self, input: &[f32], in_size: usize) -> Vec<f32> {
        let (cin, cout, k) = (self.cin, self.cout, self.kernel);
        assert_eq!(
            input.len(),
            in_size * in_size * in_size * cin,
            "input length"
        );
        let out_size = self.out_size(in_size);
        let taps = self.taps(in_size, out_size);
        let mut out = vec![0.0f32; out_size * out_size * out_size * cout];
        let in_row = in_size * cin;
        let wk_len = cin * cout;
        out.par_chunks_mut(out_size * cout)
            .enumerate()
            .for_each(|(row, orow)| {
                let (od, oh) = (row / out_size, row % out_size);
                for &(id, kd) in &taps[od] {
                    for &(ih, kh) in &taps[oh] {
                        let irow = &input[(id * in_size + ih) * in_row..][..in_row];
                        let wbase = (kd * k + kh) * k;
                        for (acc, wtaps) in orow.chunks_exact_mut(cout).zip(&taps) {
                            for &(iw, kw) in wtaps {
                                let x = &irow[iw * cin..][..cin];
                                let wk = &self.packed[(wbase + kw) * wk_len..][..wk_len];
                                for (&a, wrow) in x.iter().zip(wk.chunks_exact(cout)) {
                                    for (o, &w) in acc.iter_mut().zip(wrow) {
                                        *o += a * w;
                                    }
                                }
                            }
                        }
                    }
                }
            });
        out
    }
}

/// `BatchNorm3d` in eval mode as a per-channel affine map (channels-last).
#[derive(Clone, Debug)]
pub(crate) struct BatchNorm3d {
    scale: Vec<f32>,
    shift: Vec<f32>,
    /// The tensors it was folded from, kept to refold with other statistics.
    tensors: BatchNormTensors,
}

impl BatchNorm3d {
    pub(crate) fn from_tensors(bn: &BatchNormTensors) -> Self {
        let (scale, shift) = weights::fold_batch_norm(bn);
        Self {
            scale,
            shift,
            tensors: bn.clone(),
        }
    }

    /// The same γ and β folded with other per-channel statistics.
    fn with_statistics(&self, stats: &ChannelStatistics) -> Self {
        let (running_mean, running_var) = stats.to_f32();
        Self::from_tensors(&BatchNormTensors {
            running_mean,
            running_var,
            ..self.tensors.clone()
        })
    }

    /// The running statistics it was folded with.
    fn statistics(&self) -> ChannelStatistics {
        let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect();
        ChannelStatistics {
            mean: f64s(&self.tensors.running_mean),
            variance: f64s(&self.tensors.running_var),
        }
    }

    /// `x ← x · scale[c] + shift[c]`, then `max(x, 0)` if `relu`.
    pub(crate) fn apply(&self, act: &mut [f32], relu: bool) {
        let c = self.scale.len();
        act.par_chunks_mut(c * 1024).for_each(|chunk| {
            for v in chunk.chunks_exact_mut(c) {
                for ((x, &s), &t) in v.iter_mut().zip(&self.scale).zip(&self.shift) {
                    let y = *x * s + t;
                    *x = if relu { y.max(0.0) } else { y };
                }
            }
        });
    }
}

/// Per-channel mean and biased variance of a batch norm's input, accumulated in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelStatistics {
    pub mean: Vec<f64>,
    pub variance: Vec<f64>,
}

impl ChannelStatistics {
    /// Over every voxel of every channels-last activation in `acts` (`channels` per voxel).
    fn of(acts: &[Vec<f32>], channels: usize) -> Self {
        let (mut sum, mut sum_sq) = (vec![0.0f64; channels], vec![0.0f64; channels]);
        let mut n = 0usize;
        for a in acts {
            for v in a.chunks_exact(channels) {
                for ((s, q), &x) in sum.iter_mut().zip(&mut sum_sq).zip(v) {
                    *s += x as f64;
                    *q += x as f64 * x as f64;
                }
                n += 1;
            }
        }
        let n = n as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let variance = sum_sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| (q / n - m * m).max(0.0))
            .collect();
        Self { mean, variance }
    }

    /// As the f32 `running_mean` and `running_var` of a PyTorch batch norm.
    pub fn to_f32(&self) -> (Vec<f32>, Vec<f32>) {
        (
            self.mean.iter().map(|&m| m as f32).collect(),
            self.variance.iter().map(|&v| v as f32).collect(),
        )
    }
}

#[derive(Clone, Debug)]
struct Layer {
    spec: LayerSpec,
    conv: ConvTranspose3d,
    batch_norm: Option<BatchNorm3d>,
}

/// A trained (or random) ReconGAN generator, run in pure Rust.
#[derive(Clone)]
pub struct Generator {
    arch: GeneratorArch,
    card: GeneratorCard,
    origin: String,
    layers: Vec<Layer>,
    ignored: Vec<String>,
}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator")
            .field("origin", &self.origin)
            .field("arch", &self.arch)
            .field("voxel_size_mm", &self.card.voxel_size_mm)
            .field("bv_tv_mean", &self.card.bv_tv_mean)
            .field("ignored_tensors", &self.ignored)
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// Loads `NAME.safetensors` and its card `NAME.json` beside it (a path to the card is
    /// accepted too). The architecture comes from the card.
    pub fn load(weights: &Path) -> Result<Generator, GanError> {
        let weights = if weights.extension().is_some_and(|e| e == "json") {
            weights.with_extension("safetensors")
        } else {
            weights.to_path_buf()
        };
        let bytes = std::fs::read(&weights).map_err(|source| GanError::Io {
            path: weights.clone(),
            source,
        })?;
        let card = GeneratorCard::load(&card_path_for(&weights))?;
        let generator = Self::from_safetensors_bytes(
            &bytes,
            card.architecture,
            &weights.display().to_string(),
        )?;
        Ok(generator.with_card_unchecked(card))
    }

    /// A generator from an in-memory safetensors buffer; `origin` names it in errors. Its
    /// card is [`GeneratorCard::unknown`] until [`Generator::with_card`] supplies one.
    pub fn from_safetensors_bytes(
        bytes: &[u8],
        arch: GeneratorArch,
        origin: &str,
    ) -> Result<Generator, GanError> {
        let tensors = weights::parse(bytes, arch, origin)?;
        let layers = tensors
            .layers
            .iter()
            .map(|l| Layer {
                spec: l.spec,
                conv: ConvTranspose3d::from_pytorch(
                    &l.conv_weight,
                    l.spec.in_channels,
                    l.spec.out_channels,
                    KERNEL,
                    l.spec.stride,
                    l.spec.padding,
                ),
                batch_norm: l.batch_norm.as_ref().map(BatchNorm3d::from_tensors),
            })
            .collect();
        Ok(Generator {
            arch,
            card: GeneratorCard::unknown(arch),
            origin: origin.to_string(),
            layers,
            ignored: tensors.ignored,
        })
    }

    /// Replaces the card; it must be valid and describe this generator's architecture.
    pub fn with_card(self, card: GeneratorCard) -> Result<Generator, GanError> {
        let path = Path::new(&self.origin).to_path_buf();
        card.validate(&path)?;
        if card.architecture != self.arch {
            return Err(GanError::Card {
                path,
                reason: format!(
                    "architecture {:?} differs from the weights' {:?}",
                    card.architecture, self.arch
                ),
            });
        }
        Ok(self.with_card_unchecked(card))
    }

    fn with_card_unchecked(mut self, card: GeneratorCard) -> Generator {
        self.card = card;
        self
    }

    pub fn arch(&self) -> GeneratorArch {
        self.arch
    }

    pub fn card(&self) -> &GeneratorCard {
        &self.card
    }

    /// The file (or in-memory origin) the weights came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Tensors in the file that the architecture does not use (sorted).
    pub fn ignored_tensors(&self) -> &[String] {
        &self.ignored
    }

    /// One latent vector (`latent_dim` finite values, PyTorch shape `[1, latent_dim, 1, 1,
    /// 1]`) to `size³` values in [−1, 1], x fastest (`x + size · (y + size · z)`).
    pub fn forward(&self, z: &[f32]) -> Result<Vec<f32>, GanError> {
        if z.len() != self.arch.latent_dim {
            return Err(GanError::InvalidLatent {
                expected: self.arch.latent_dim,
                got: z.len(),
            });
        }
        if let Some((index, &value)) = z.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(GanError::NonFiniteLatent { index, value });
        }
        Ok(self.forward_unchecked(z))
    }

    fn forward_unchecked(&self, z: &[f32]) -> Vec<f32> {
        let mut act = z.to_vec();
        let mut size = 1;
        for layer in &self.layers {
            act = layer.conv.forward(&act, size);
            size = layer.spec.out_size;
            match &layer.batch_norm {
                Some(bn) => bn.apply(&mut act, true),
                None => act.par_iter_mut().for_each(|v| *v = v.tanh()),
            }
        }
        act
    }

    /// The running statistics of each batch norm, in layer order, as stored in the weights.
    pub fn running_statistics(&self) -> Vec<ChannelStatistics> {
        self.layers
            .iter()
            .filter_map(|l| l.batch_norm.as_ref().map(BatchNorm3d::statistics))
            .collect()
    }

    /// The population statistics of each batch norm's input over cubes `0..count` of `seed`
    /// ("standing statistics", Brock, Donahue & Simonyan 2019, ICLR, arXiv:1809.11096,
    /// app. C), in layer order.
    ///
    /// Training normalises each layer by the statistics of the current batch, while the
    /// running statistics that eval mode uses are an exponential average (momentum 0.1) over
    /// earlier batches, taken while the weights were still moving. Layer by layer, this runs
    /// the `count` latent vectors through the layers already re-estimated and takes the mean
    /// and the biased variance per channel over all cubes and voxels: what one training batch
    /// of `count` cubes would normalise with. Memory: `count` activations of the widest
    /// hidden layer (2 MB per cube for the shipped architecture).
    pub fn standing_statistics(
        &self,
        seed: u64,
        count: usize,
    ) -> Result<Vec<ChannelStatistics>, GanError> {
        Ok(self.with_standing_statistics(seed, count)?.1)
    }

    /// This generator with its batch norms refolded with [`Self::standing_statistics`], and
    /// those statistics.
    pub fn with_standing_statistics(
        &self,
        seed: u64,
        count: usize,
    ) -> Result<(Generator, Vec<ChannelStatistics>), GanError> {
        if count < 2 {
            return Err(GanError::InvalidArgument(format!(
                "standing statistics need at least 2 cubes, got {count}"
            )));
        }
        let mut out = self.clone();
        let mut stats = Vec::new();
        let mut acts: Vec<Vec<f32>> = (0..count)
            .map(|i| latent_for(seed, i, self.arch.latent_dim))
            .collect();
        let mut size = 1;
        for layer in &mut out.layers {
            let Some(bn) = &layer.batch_norm else { break };
            let conv = &layer.conv;
            acts = acts.par_iter().map(|a| conv.forward(a, size)).collect();
            size = layer.spec.out_size;
            let layer_stats = ChannelStatistics::of(&acts, layer.spec.out_channels);
            let standing = bn.with_statistics(&layer_stats);
            acts.par_iter_mut().for_each(|a| standing.apply(a, true));
            layer.batch_norm = Some(standing);
            stats.push(layer_stats);
        }
        Ok((out, stats))
    }

    /// Cube `index` of `seed`: the forward pass of [`latent_for`]`(seed, index, latent_dim)`.
    pub fn generate(&self, seed: u64, index: usize) -> Vec<f32> {
        self.forward_unchecked(&latent_for(seed, index, self.arch.latent_dim))
    }

    /// A generated field to a bone mask at BV/TV `bv_tv`, post-processed as the card says
    /// ([`GeneratorCard::mask_options`]: by default Gaussian smoothing with the σ the training
    /// data were segmented with and no cavity fill); see [`Self::field_to_mask_with`].
    pub fn field_to_mask(&self, field: &[f32], bv_tv: f64) -> Result<BoneMask, GanError> {
        self.field_to_mask_with(field, bv_tv, self.card.mask_options())
    }

    /// A generated field to a bone mask at BV/TV `bv_tv` with explicit post-processing:
    /// Gaussian smoothing with `options.sigma_voxels`, then [`to_mask`] at the card's voxel
    /// size (threshold, islands removed, enclosed marrow filled if asked).
    pub fn field_to_mask_with(
        &self,
        field: &[f32],
        bv_tv: f64,
        options: MaskOptions,
    ) -> Result<BoneMask, GanError> {
        options.validate()?;
        let size = self.arch.size;
        let sigma = options.sigma_voxels;
        let smoothed;
        let field = if sigma > 0.0 {
            smoothed = gaussian_smooth_f32(field, Dims::new(size, size, size), sigma)
                .map_err(|e| GanError::InvalidArgument(e.to_string()))?;
            &smoothed[..]
        } else {
            field
        };
        to_mask(
            field,
            size,
            self.card.voxel_size_mm,
            bv_tv,
            options.fill_enclosed_marrow,
        )
    }

    /// Cube `index` of `seed` as a bone mask: [`Self::generate`] then [`Self::field_to_mask`].
    pub fn generate_mask(&self, seed: u64, index: usize, bv_tv: f64) -> Result<BoneMask, GanError> {
        self.field_to_mask(&self.generate(seed, index), bv_tv)
    }
}

/// A generated field (`size³` values, x fastest) to a bone mask with BV/TV close to `bv_tv`.
///
/// Bone is the high end of the field (`value ≥ t`; the training data map bone to +1 and
/// marrow to −1), and only the largest 6-connected component is kept
/// ([`largest_component`]). The threshold is the k-th largest value, as in
/// [`threshold_for_bv_tv`](crate::volume::segment::threshold_for_bv_tv), but with `k` chosen
/// so that BV/TV *after* island removal matches: the size of the largest component never
/// decreases as `k` grows (components only grow and merge), so `k` is found by bisection
/// between `round(bv_tv · n)` and the number of non-NaN values (or, when the cavity fill
/// below overshoots at `round(bv_tv · n)`, between 1 and it), and the nearer of the two
/// final cuts is returned. A field whose components merge abruptly (e.g. noise near the
/// percolation threshold) can make the exact target unreachable.
///
/// With `fill_enclosed_marrow`, marrow cavities that touch no face of the cube become bone
/// after island removal ([`crate::volume::segment::fill_enclosed_marrow`]), and the BV/TV
/// counted in the bisection is the filled one. It grows with `k` as long as the largest
/// component stays the same one (bone grows, open marrow shrinks); if another component
/// overtakes it, the bisection still returns the nearer of its two final cuts.
pub fn to_mask(
    field: &[f32],
    size: usize,
    voxel_size_mm: f64,
    bv_tv: f64,
    fill_enclosed_marrow: bool,
) -> Result<BoneMask, GanError> {
    let len = size.checked_mul(size).and_then(|s| s.checked_mul(size));
    if size == 0 || len != Some(field.len()) {
        return Err(GanError::InvalidArgument(format!(
            "a field of {} values is not a cube of edge {size}",
            field.len()
        )));
    }
    if !(voxel_size_mm.is_finite() && voxel_size_mm > 0.0) {
        return Err(GanError::InvalidArgument(format!(
            "voxel size must be finite and positive, got {voxel_size_mm} mm"
        )));
    }
    if !(bv_tv > 0.0 && bv_tv <= 1.0) {
        return Err(GanError::InvalidArgument(format!(
            "BV/TV must be in (0, 1], got {bv_tv}"
        )));
    }
    let n = field.len();
    let mut sorted: Vec<f32> = field.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return Err(GanError::InvalidArgument("the field holds only NaN".into()));
    }
    sorted.par_sort_unstable_by(|a, b| b.total_cmp(a));
    let volume = Volume {
        grid: Grid::isotropic(Dims::new(size, size, size), voxel_size_mm),
        data: VoxelData::F32(field.to_vec()),
    };
    let target = ((bv_tv * n as f64).round() as usize).max(1);
    // Bone = the k largest values (and their ties), then the largest component.
    let cut = |k: usize| {
        let mut mask = largest_component(&threshold(&volume, sorted[k - 1] as f64));
        if fill_enclosed_marrow {
            mask = fill_enclosed_marrow_of(&mask);
        }
        (mask.count(), mask)
    };
    // Bracket the target: without the fill count(k) <= k, so the bracket lies above
    // k = target; the fill can push count(target) over it, and the bracket then lies below.
    let k0 = target.min(sorted.len());
    let first = cut(k0);
    let (mut lo_k, mut lo, mut hi_k, mut hi);
    if first.0 >= target {
        if first.0 == target || k0 == 1 {
            return Ok(first.1);
        }
        (hi_k, hi) = (k0, first);
        (lo_k, lo) = (1, cut(1));
        if lo.0 >= target {
            return Ok(lo.1);
        }
    } else {
        if k0 == sorted.len() {
            return Ok(first.1);
        }
        (lo_k, lo) = (k0, first);
        hi_k = sorted.len();
        hi = cut(hi_k);
        if hi.0 < target {
            return Ok(hi.1);
        }
    }
    // Invariant: count(lo_k) < target <= count(hi_k).
    while hi_k - lo_k > 1 {
        let mid_k = lo_k + (hi_k - lo_k) / 2;
        let mid = cut(mid_k);
        if mid.0 == target {
            return Ok(mid.1);
        }
        if mid.0 > target {
            (hi_k, hi) = (mid_k, mid);
        } else {
            (lo_k, lo) = (mid_k, mid);
        }
    }
    Ok(if target - lo.0 < hi.0 - target {
        lo.1
    } else {
        hi.1
    })
}

#[cfg(test)]
mod tests {
    use super::super::arch::DEFAULT_MASK_SIGMA_VOXELS;
    use super::super::weights::{
        decode_f32_tensors, random_safetensors, serialize_f32, serialize_raw,
    };
    use super::*;
    use crate::rng::SplitMix64;
    use crate::volume::segment::component_sizes;
    use safetensors::tensor::Dtype;

    fn small() -> GeneratorArch {
        GeneratorArch {
            latent_dim: 8,
            base_channels: 4,
            size: 16,
        }
    }

    fn random_vec(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| (rng.next_f64() * 2.0 - 1.0) as f32)
            .collect()
    }

    /// PyTorch's ConvTranspose3d formula on `[C, D, H, W]` tensors, as a direct scatter loop.
    #[allow(clippy::too_many_arguments)]
    fn naive_conv_transpose(
        input: &[f32],
        cin: usize,
        n: usize,
        weight: &[f32],
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> (Vec<f32>, usize) {
        // Accumulated in f64, so the comparison measures the kernel's rounding only.
        let m = (n - 1) * stride + k - 2 * pad;
        let mut out = vec![0.0f64; cout * m * m * m];
        for c in 0..cin {
            for o in 0..cout {
                for id in 0..n {
                    for ih in 0..n {
                        for iw in 0..n {
                            for kd in 0..k {
                                for kh in 0..k {
                                    for kw in 0..k {
                                        let od = (id * stride + kd) as isize - pad as isize;
                                        let oh = (ih * stride + kh) as isize - pad as isize;
                                        let ow = (iw * stride + kw) as isize - pad as isize;
                                        let inside = |v: isize| v >= 0 && (v as usize) < m;
                                        if !(inside(od) && inside(oh) && inside(ow)) {
                                            continue;
                                        }
                                        let (od, oh, ow) = (od as usize, oh as usize, ow as usize);
                                        let x = input[((c * n + id) * n + ih) * n + iw];
                                        let w =
                                            weight[(((c * cout + o) * k + kd) * k + kh) * k + kw];
                                        out[((o * m + od) * m + oh) * m + ow] +=
                                            x as f64 * w as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (out.into_iter().map(|v| v as f32).collect(), m)
    }

    /// `[C, D, H, W]` → `[D, H, W, C]` and back.
    fn to_channels_last(v: &[f32], c: usize, n: usize) -> Vec<f32> {
        let n3 = n * n * n;
        let mut out = vec![0.0; v.len()];
        for ch in 0..c {
            for p in 0..n3 {
                out[p * c + ch] = v[ch * n3 + p];
            }
        }
        out
    }

    #[test]
    fn conv_transpose_matches_a_naive_reference() {
        let mut rng = SplitMix64::new(5);
        // (c_in, c_out, input edge, stride, padding): the generator's two layer kinds, plus
        // a larger stride-2 case with borders on every side.
        for (cin, cout, n, stride, pad) in [(3, 2, 2, 2, 1), (3, 2, 1, 1, 0), (3, 2, 5, 2, 1)] {
            let k = 4;
            let input = random_vec(&mut rng, cin * n * n * n);
            let weight = random_vec(&mut rng, cin * cout * k * k * k);
            let (want, m) = naive_conv_transpose(&input, cin, n, &weight, cout, k, stride, pad);
            let conv = ConvTranspose3d::from_pytorch(&weight, cin, cout, k, stride, pad);
            assert_eq!(conv.out_size(n), m);
            let got = conv.forward(&to_channels_last(&input, cin, n), n);
            let want = to_channels_last(&want, cout, m);
            assert_eq!(got.len(), want.len());
            // Error relative to max(1, |value|): absolute for the unit-sized values.
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-6, "{n}³ stride {stride}: max error {worst:e}");
        }
    }

    #[test]
    fn batchnorm_eval_uses_running_statistics() {
        let bn = BatchNormTensors {
            weight: vec![2.0, 0.5],
            bias: vec![0.1, -1.0],
            running_mean: vec![1.0, -2.0],
            running_var: vec![4.0, 0.25],
        };
        let layer = BatchNorm3d::from_tensors(&bn);
        // Three voxels of identical values: batch statistics would give zero variance and
        // output the bias; eval mode must use the running statistics instead.
        let mut act = vec![3.0, 1.0, 3.0, 1.0, 3.0, 1.0];
        layer.apply(&mut act, false);
        let expect = |x: f64, c: usize| {
            (x - bn.running_mean[c] as f64) / (bn.running_var[c] as f64 + 1e-5).sqrt()
                * bn.weight[c] as f64
                + bn.bias[c] as f64
        };
        for v in act.chunks(2) {
            assert!((v[0] as f64 - expect(3.0, 0)).abs() < 1e-6, "{}", v[0]);
            assert!((v[1] as f64 - expect(1.0, 1)).abs() < 1e-6, "{}", v[1]);
        }
        // With ReLU, negative results clamp to 0.
        let mut act = vec![-5.0, -5.0];
        layer.apply(&mut act, true);
        assert_eq!(act, [0.0, 0.0]);
    }

    #[test]
    fn generator_output_has_the_cube_size_and_tanh_range() {
        let arch = small();
        let bytes = random_safetensors(arch, 1).unwrap();
        let g = Generator::from_safetensors_bytes(&bytes, arch, "random").unwrap();
        assert_eq!(g.arch(), arch);
        assert!(g.ignored_tensors().is_empty());
        let out = g.forward(&latent_for(3, 0, arch.latent_dim)).unwrap();
        assert_eq!(out.len(), 16 * 16 * 16);
        assert!(
            out.iter()
                .all(|v| v.is_finite() && (-1.0..=1.0).contains(v))
        );
        let (lo, hi) = out
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        assert!(
            lo < -0.2 && hi > 0.2,
            "output range [{lo}, {hi}] is degenerate"
        );
        let e = g.forward(&[0.0; 7]).unwrap_err();
        assert!(matches!(
            e,
            GanError::InvalidLatent {
                expected: 8,
                got: 7
            }
        ));
        let mut z = vec![0.0; 8];
        z[3] = f32::NAN;
        assert!(matches!(
            g.forward(&z).unwrap_err(),
            GanError::NonFiniteLatent { index: 3, .. }
        ));
    }

    #[test]
    fn generation_is_deterministic_for_a_seed() {
        let arch = small();
        let bytes = random_safetensors(arch, 2).unwrap();
        let g = Generator::from_safetensors_bytes(&bytes, arch, "random").unwrap();
        let a = g.generate(10, 0);
        assert_eq!(a, g.generate(10, 0));
        assert_eq!(a, g.forward(&latent_for(10, 0, 8)).unwrap());
        let differs = |b: &[f32]| a.iter().zip(b).any(|(x, y)| (x - y).abs() > 1e-3);
        assert!(differs(&g.generate(11, 0)), "seeds 10 and 11 agree");
        assert!(differs(&g.generate(10, 1)), "cubes 0 and 1 agree");
    }

    /// The mask pipeline smooths before thresholding: a field whose bone is a solid slab
    /// sprinkled with single-voxel speckle (the checkerboard a stride-2 transposed
    /// convolution leaves) gives the clean slab after σ = 1, while σ = 0 keeps the speckle
    /// as extra components and a ragged surface.
    #[test]
    fn field_to_mask_smooths_speckle_away_before_thresholding() {
        let arch = small();
        let n = arch.size;
        let bytes = random_safetensors(arch, 2).unwrap();
        let card = |sigma: Option<f64>| GeneratorCard {
            voxel_size_mm: 0.04,
            bv_tv_mean: 0.25,
            mask_sigma_voxels: sigma,
            ..GeneratorCard::unknown(arch)
        };
        let g = |sigma| {
            Generator::from_safetensors_bytes(&bytes, arch, "random")
                .unwrap()
                .with_card(card(sigma))
                .unwrap()
        };
        // Slab z in [6, 10) (a quarter of the cube) plus isolated speckle elsewhere.
        let mut rng = SplitMix64::new(3);
        let field: Vec<f32> = (0..n * n * n)
            .map(|i| {
                let z = i / (n * n);
                if (6..10).contains(&z) {
                    0.9
                } else if rng.next_f64() < 0.04 {
                    0.95
                } else {
                    -0.9
                }
            })
            .collect();
        let smooth = g(None).field_to_mask(&field, 0.25).unwrap();
        assert_eq!(g(None).card().mask_sigma(), DEFAULT_MASK_SIGMA_VOXELS);
        let slab_voxels = (0..n * n * n)
            .filter(|&i| (6..10).contains(&(i / (n * n))) && smooth.voxels[i])
            .count();
        assert_eq!(slab_voxels, 4 * n * n, "the slab survives whole");
        assert_eq!(smooth.count(), 4 * n * n, "no speckle survives");
        let raw = g(Some(0.0)).field_to_mask(&field, 0.25).unwrap();
        let speckle = (0..n * n * n)
            .filter(|&i| !(6..10).contains(&(i / (n * n))) && raw.voxels[i])
            .count();
        assert!(speckle > 0, "without smoothing the speckle is kept");
        // generate_mask is generate + field_to_mask.
        let gm = g(None);
        assert_eq!(
            gm.generate_mask(4, 1, 0.25).unwrap(),
            gm.field_to_mask(&gm.generate(4, 1), 0.25).unwrap()
        );
        let bad = GeneratorCard {
            mask_sigma_voxels: Some(f64::NAN),
            ..card(None)
        };
        let e = g(None).with_card(bad).unwrap_err().to_string();
        assert!(e.contains("mask_sigma_voxels"), "{e}");
    }

    #[test]
    fn loads_from_files_with_the_card_and_lists_extra_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let arch = small();
        let mut tensors = decode_f32_tensors(&random_safetensors(arch, 4).unwrap());
        tensors.push(("bn1.num_batches_tracked".into(), vec![1], vec![0.0]));
        let path = dir.path().join("g.safetensors");
        std::fs::write(&path, serialize_f32(&tensors).unwrap()).unwrap();
        std::fs::write(
            dir.path().join("g.json"),
            r#"{"architecture": {"latent_dim": 8, "base_channels": 4, "size": 16},
                "voxel_size_mm": 0.05, "bv_tv_mean": 0.2, "training": {"steps": 3}}"#,
        )
        .unwrap();
        let g = Generator::load(&path).unwrap();
        assert_eq!(g.card().voxel_size_mm, 0.05);
        assert_eq!(g.ignored_tensors(), ["bn1.num_batches_tracked"]);
        let from_bytes =
            Generator::from_safetensors_bytes(&std::fs::read(&path).unwrap(), arch, "m").unwrap();
        assert_eq!(g.generate(1, 2), from_bytes.generate(1, 2));
        // The card path is accepted too.
        assert!(Generator::load(&dir.path().join("g.json")).is_ok());
        assert!(format!("{g:?}").contains("g.safetensors"));
    }

    /// Standing statistics are the batch statistics of the generator they produce: the first
    /// layer's agree with a direct computation, re-estimating on the refolded generator
    /// returns them again, and they are not the file's running averages.
    #[test]
    fn standing_statistics_are_the_batch_statistics_of_the_refolded_generator() {
        let arch = small();
        let bytes = random_safetensors(arch, 6).unwrap();
        let g = Generator::from_safetensors_bytes(&bytes, arch, "random").unwrap();
        let (seed, count) = (5, 4);
        let (refolded, stats) = g.with_standing_statistics(seed, count).unwrap();
        let running = g.running_statistics();
        assert_eq!(stats.len(), running.len());
        assert_eq!(stats.len(), arch.n_layers() - 1);

        // Layer 1 directly: mean and biased variance of the first convolution's output.
        let c = g.layers[0].spec.out_channels;
        let first: Vec<Vec<f32>> = (0..count)
            .map(|i| {
                g.layers[0]
                    .conv
                    .forward(&latent_for(seed, i, arch.latent_dim), 1)
            })
            .collect();
        for ch in 0..c {
            let v: Vec<f64> = first
                .iter()
                .flat_map(|a| a.chunks_exact(c).map(move |x| x[ch] as f64))
                .collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
            assert!((stats[0].mean[ch] - mean).abs() <= 1e-9 * (1.0 + mean.abs()));
            assert!((stats[0].variance[ch] - var).abs() <= 1e-9 * (1.0 + var));
        }

        let close = |a: &ChannelStatistics, b: &ChannelStatistics, tol: f64| {
            a.mean
                .iter()
                .zip(&b.mean)
                .chain(a.variance.iter().zip(&b.variance))
                .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
        };
        let again = refolded.standing_statistics(seed, count).unwrap();
        let stored = refolded.running_statistics();
        for k in 0..stats.len() {
            assert!(
                close(&again[k], &stats[k], 1e-5),
                "layer {k} moved on re-estimation"
            );
            assert!(close(&stored[k], &stats[k], 1e-6), "layer {k} not stored");
            assert!(
                !close(&running[k], &stats[k], 1e-2),
                "layer {k} equals the running"
            );
        }
        assert_ne!(refolded.generate(seed, 0), g.generate(seed, 0));
        let e = g.standing_statistics(seed, 1).unwrap_err().to_string();
        assert!(e.contains("at least 2 cubes"), "{e}");
    }

    /// The tensors of a valid small file, as (name, shape, values), for the error tests.
    fn valid_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let arch = small();
        let mut rng = SplitMix64::new(9);
        arch.expected_tensors()
            .unwrap()
            .into_iter()
            .map(|(n, s)| {
                let len = s.iter().product();
                (n, s, random_vec(&mut rng, len))
            })
            .map(|(n, s, mut v)| {
                if n.ends_with("running_var") {
                    v.iter_mut().for_each(|x| *x = x.abs() + 0.5);
                }
                (n, s, v)
            })
            .collect()
    }

    fn load_err(bytes: &[u8]) -> String {
        let e =
            Generator::from_safetensors_bytes(bytes, small(), "weights/g.safetensors").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("weights/g.safetensors"), "{msg}");
        msg
    }

    #[test]
    fn error_missing_tensor_names_file_and_tensor() {
        let mut t = valid_tensors();
        t.retain(|(n, _, _)| n != "bn2.running_mean");
        let msg = load_err(&serialize_f32(&t).unwrap());
        assert!(
            msg.contains("`bn2.running_mean`") && msg.contains("missing"),
            "{msg}"
        );
    }

    #[test]
    fn error_wrong_shape_names_file_and_tensor() {
        let mut t = valid_tensors();
        let ct2 = t.iter_mut().find(|(n, _, _)| n == "ct2.weight").unwrap();
        ct2.1 = vec![ct2.1[1], ct2.1[0], 4, 4, 4]; // [out, in, …]: Conv3d's layout, not ours
        let msg = load_err(&serialize_f32(&t).unwrap());
        assert!(
            msg.contains("`ct2.weight`") && msg.contains("shape"),
            "{msg}"
        );
        let e = Generator::from_safetensors_bytes(&serialize_f32(&t).unwrap(), small(), "x")
            .unwrap_err();
        assert!(matches!(e, GanError::WrongShape { .. }), "{e:?}");
    }

    #[test]
    fn error_wrong_dtype_names_file_and_tensor() {
        let t = valid_tensors();
        let f64_bytes: Vec<Vec<u8>> = t
            .iter()
            .map(|(_, _, v)| v.iter().flat_map(|x| (*x as f64).to_le_bytes()).collect())
            .collect();
        let f32_bytes: Vec<Vec<u8>> = t
            .iter()
            .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let raw = t.iter().enumerate().map(|(i, (n, s, _))| {
            if n == "bn1.weight" {
                (n.as_str(), Dtype::F64, s.clone(), f64_bytes[i].as_slice())
            } else {
                (n.as_str(), Dtype::F32, s.clone(), f32_bytes[i].as_slice())
            }
        });
        let msg = load_err(&serialize_raw(raw).unwrap());
        assert!(msg.contains("`bn1.weight`") && msg.contains("F64"), "{msg}");
    }

    #[test]
    fn error_truncated_file_names_the_file() {
        let bytes = serialize_f32(&valid_tensors()).unwrap();
        for cut in [bytes.len() - 10, 100, 5, 0] {
            let msg = load_err(&bytes[..cut]);
            assert!(msg.contains("not a valid safetensors file"), "{msg}");
        }
    }

    #[test]
    fn error_bad_card_and_missing_file_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.safetensors");
        // File not found.
        let e = Generator::load(&path).unwrap_err();
        assert!(matches!(e, GanError::Io { .. }), "{e:?}");
        assert!(e.to_string().contains("g.safetensors"), "{e}");
        // Weights present, card missing.
        std::fs::write(&path, serialize_f32(&valid_tensors()).unwrap()).unwrap();
        let e = Generator::load(&path).unwrap_err();
        assert!(e.to_string().contains("g.json"), "{e}");
        // Malformed JSON, a missing field, and an impossible value.
        for (card, what) in [
            ("{\"architecture\": ", "EOF"),
            (
                r#"{"architecture": {"latent_dim": 8, "base_channels": 4, "size": 16}, "bv_tv_mean": 0.2}"#,
                "voxel_size_mm",
            ),
            (
                r#"{"architecture": {"latent_dim": 8, "base_channels": 4, "size": 16}, "voxel_size_mm": -1, "bv_tv_mean": 0.2}"#,
                "voxel_size_mm",
            ),
        ] {
            std::fs::write(dir.path().join("g.json"), card).unwrap();
            let e = Generator::load(&path).unwrap_err();
            assert!(matches!(e, GanError::Card { .. }), "{e:?}");
            let msg = e.to_string();
            assert!(msg.contains("g.json") && msg.contains(what), "{msg}");
        }
        // A valid card whose architecture disagrees with the weights: a shape error.
        std::fs::write(
            dir.path().join("g.json"),
            r#"{"architecture": {"latent_dim": 9, "base_channels": 4, "size": 16}, "voxel_size_mm": 0.04, "bv_tv_mean": 0.2}"#,
        )
        .unwrap();
        let msg = Generator::load(&path).unwrap_err().to_string();
        assert!(
            msg.contains("g.safetensors") && msg.contains("`ct1.weight`"),
            "{msg}"
        );
    }

    #[test]
    fn to_mask_hits_the_requested_bv_tv_and_keeps_one_component() {
        let arch = GeneratorArch {
            latent_dim: 16,
            base_channels: 4,
            size: 32,
        };
        let bytes = random_safetensors(arch, 3).unwrap();
        let g = Generator::from_safetensors_bytes(&bytes, arch, "random").unwrap();
        let field = g.generate(1, 0);
        for (target, fill) in [(0.15, false), (0.3, false), (0.15, true), (0.3, true)] {
            let mask = to_mask(&field, 32, 0.04, target, fill).unwrap();
            println!(
                "to_mask: BV/TV {} for target {target}, cavities filled: {fill}",
                mask.bv_tv()
            );
            if fill {
                assert_eq!(fill_enclosed_marrow_of(&mask), mask, "a cavity is left");
            }
            assert_eq!(mask.dims(), Dims::new(32, 32, 32));
            assert_eq!(mask.grid.voxel_size_mm, [0.04; 3]);
            assert!(
                (mask.bv_tv() - target).abs() < 0.01,
                "BV/TV {} for target {target}",
                mask.bv_tv()
            );
            assert_eq!(component_sizes(&mask).len(), 1);
        }
        assert!(to_mask(&field, 31, 0.04, 0.2, false).is_err());
        assert!(to_mask(&field, 32, 0.0, 0.2, false).is_err());
        assert!(to_mask(&field, 32, 0.04, 0.0, false).is_err());
        let unknown = g.card().voxel_size_mm;
        assert!(to_mask(&field, 32, unknown, 0.2, false).is_err());
    }

    /// A hollow ball: a shell of the highest values around a cavity of lower ones. Without
    /// the fill the shell's BV/TV target gives the shell with its cavity; with the fill the
    /// same target cannot keep the cavity, so the bisection searches below it and returns the
    /// shell opened by a 2 × 2 × 3 tunnel (12 voxels short); the ball's target gives the ball.
    #[test]
    fn to_mask_fills_an_enclosed_cavity_and_still_meets_the_bv_tv() {
        let n = 32;
        let c = 15.5;
        let r = |i: usize| {
            let (x, y, z) = (i % n, (i / n) % n, i / (n * n));
            ((x as f64 - c).powi(2) + (y as f64 - c).powi(2) + (z as f64 - c).powi(2)).sqrt()
        };
        // The shell's lowest values lie on the +x half-axis, so the first voxels to go open
        // a 2 × 2 tunnel through it; a tilt of 1e-4 over the cube breaks ties.
        let field: Vec<f32> = (0..n * n * n)
            .map(|i| {
                let (x, y, z) = (i % n, (i / n) % n, i / (n * n));
                let off_axis = if x as f64 > c {
                    ((y as f64 - c).powi(2) + (z as f64 - c).powi(2))
                        .sqrt()
                        .min(5.0)
                } else {
                    5.0
                };
                let tilt = (i as f64 / (n * n * n) as f64) * 1e-4;
                (if (8.0..11.0).contains(&r(i)) {
                    0.9 + 0.02 * off_axis - tilt
                } else if r(i) < 8.0 {
                    0.5 - tilt
                } else {
                    -1.0 - tilt
                }) as f32
            })
            .collect();
        let shell = (0..n * n * n)
            .filter(|&i| (8.0..11.0).contains(&r(i)))
            .count();
        let ball = (0..n * n * n).filter(|&i| r(i) < 11.0).count();
        let total = (n * n * n) as f64;
        let open = to_mask(&field, n, 0.04, shell as f64 / total, false).unwrap();
        assert_eq!(open.count(), shell);
        assert!(
            !open.get(16, 16, 16),
            "the cavity is marrow without the fill"
        );
        let filled_ball = to_mask(&field, n, 0.04, ball as f64 / total, true).unwrap();
        assert_eq!(filled_ball.count(), ball);
        let filled = to_mask(&field, n, 0.04, shell as f64 / total, true).unwrap();
        println!(
            "hollow ball: shell {shell}, ball {ball}, filled mask at the shell's target {}",
            filled.count()
        );
        assert!(
            filled.count().abs_diff(shell) <= 12,
            "{} voxels for a target of {shell}",
            filled.count()
        );
        assert_eq!(fill_enclosed_marrow_of(&filled), filled);
        assert!(!filled.get(16, 16, 16), "an opened shell keeps its marrow");
    }

    /// The default 64³ generator, random weights: timing of `generate` (printed).
    #[test]
    fn default_generator_runs_a_64_cube_quickly() {
        let arch = GeneratorArch::default();
        let bytes = random_safetensors(arch, 7).unwrap();
        let g = Generator::from_safetensors_bytes(&bytes, arch, "random").unwrap();
        let _ = g.generate(0, 0); // warm-up (thread pool, page faults)
        let runs = 5;
        let t0 = std::time::Instant::now();
        for i in 0..runs {
            let out = g.generate(0, i);
            assert_eq!(out.len(), 64 * 64 * 64);
        }
        let per = t0.elapsed().as_secs_f64() / runs as f64;
        println!(
            "64³ generate: {:.1} ms per cube ({} threads)",
            per * 1e3,
            rayon::current_num_threads()
        );
        let field = g.generate(0, 0);
        let t0 = std::time::Instant::now();
        let mask = to_mask(&field, 64, 0.04, 0.25, false).unwrap();
        println!(
            "64³ to_mask: {:.1} ms, BV/TV {:.4} for 0.25",
            t0.elapsed().as_secs_f64() * 1e3,
            mask.bv_tv()
        );
    }
}
