//! Reading the generator's safetensors file (the format tch's `VarStore::save` writes for a
//! `.safetensors` path: an 8-byte little-endian header length, a JSON header of names,
//! dtypes, shapes and offsets, then the raw C-contiguous little-endian data).
//!
//! Every tensor of [`GeneratorArch::expected_tensors`] must be present, F32 and of exactly the
//! expected shape; anything else is an error naming the origin and the tensor. Extra tensors
//! are tolerated and listed (see [`super::Generator::ignored_tensors`]).

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};

use super::GanError;
use super::arch::{BN_EPS, GeneratorArch, LayerSpec};
use super::generator::ChannelStatistics;
use super::latent::NormalStream;

/// Batch-norm tensors of one layer.
#[derive(Clone, Debug)]
pub(crate) struct BatchNormTensors {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
}

/// The tensors of one layer, in PyTorch layout.
#[derive(Clone, Debug)]
pub(crate) struct LayerTensors {
    pub spec: LayerSpec,
    /// `[in, out, 4, 4, 4]`, C-contiguous.
    pub conv_weight: Vec<f32>,
    pub batch_norm: Option<BatchNormTensors>,
}

/// All layers plus the names of tensors the architecture does not use.
#[derive(Clone, Debug)]
pub(crate) struct GeneratorTensors {
    pub layers: Vec<LayerTensors>,
    pub ignored: Vec<String>,
}

fn format_error(origin: &str, e: SafeTensorError) -> GanError {
    GanError::Format {
        origin: origin.to_string(),
        reason: e.to_string(),
    }
}

/// One F32 tensor of exactly `shape`, decoded from little endian.
fn read_f32(
    st: &SafeTensors<'_>,
    origin: &str,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, GanError> {
    let view = st.tensor(name).map_err(|e| match e {
        SafeTensorError::TensorNotFound(_) => GanError::MissingTensor {
            origin: origin.to_string(),
            name: name.to_string(),
        },
        other => format_error(origin, other),
    })?;
    if view.dtype() != Dtype::F32 {
        return Err(GanError::WrongDtype {
            origin: origin.to_string(),
            name: name.to_string(),
            got: format!("{:?}", view.dtype()),
        });
    }
    if view.shape() != shape {
        return Err(GanError::WrongShape {
            origin: origin.to_string(),
            name: name.to_string(),
            expected: shape.to_vec(),
            got: view.shape().to_vec(),
        });
    }
    let data = view.data();
    let n: usize = shape.iter().product();
    if data.len() != n * 4 {
        return Err(GanError::Format {
            origin: origin.to_string(),
            reason: format!(
                "tensor `{name}` holds {} bytes, expected {}",
                data.len(),
                n * 4
            ),
        });
    }
    Ok(f32_from_le(data))
}

/// Little-endian bytes (a multiple of 4) to f32 values.
fn f32_from_le(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// f32 values to little-endian bytes.
fn f32_to_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Every tensor of a safetensors buffer of F32 tensors as (name, shape, values), in the
/// file's order: the inverse of [`serialize_f32`], for tests that edit a valid file.
#[cfg(test)]
pub(crate) fn decode_f32_tensors(bytes: &[u8]) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    SafeTensors::deserialize(bytes)
        .expect("a valid safetensors buffer")
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec(), f32_from_le(view.data())))
        .collect()
}

/// Parses and validates a safetensors buffer against `arch`; `origin` names it in errors.
pub(crate) fn parse(
    bytes: &[u8],
    arch: GeneratorArch,
    origin: &str,
) -> Result<GeneratorTensors, GanError> {
    let specs = arch.layers()?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| format_error(origin, e))?;
    let mut layers = Vec::with_capacity(specs.len());
    for spec in specs {
        let conv_weight = read_f32(
            &st,
            origin,
            &spec.conv_weight_name(),
            &spec.conv_weight_shape(),
        )?;
        let batch_norm = if spec.batch_norm {
            let names = spec.batch_norm_names();
            let shape = [spec.out_channels];
            let running_var = read_f32(&st, origin, &names[3], &shape)?;
            if let Some(v) = running_var.iter().find(|v| !(**v >= 0.0 && v.is_finite())) {
                return Err(GanError::Format {
                    origin: origin.to_string(),
                    reason: format!("tensor `{}` holds {v}, not a variance", names[3]),
                });
            }
            Some(BatchNormTensors {
                weight: read_f32(&st, origin, &names[0], &shape)?,
                bias: read_f32(&st, origin, &names[1], &shape)?,
                running_mean: read_f32(&st, origin, &names[2], &shape)?,
                running_var,
            })
        } else {
            None
        };
        layers.push(LayerTensors {
            spec,
            conv_weight,
            batch_norm,
        });
    }
    let expected = arch.expected_tensors()?;
    let mut ignored: Vec<String> = st
        .names()
        .into_iter()
        .filter(|n| !expected.iter().any(|(e, _)| e == n))
        .map(str::to_string)
        .collect();
    ignored.sort();
    Ok(GeneratorTensors { layers, ignored })
}

/// A valid weights file for `arch` with random parameters, for tests and benchmarks.
///
/// Transposed-convolution weights are N(0, σ²) with He scaling σ = sqrt(2 / fan), where fan
/// is the number of terms of one output sum (`in_channels` for the 1³ → 4³ layer,
/// `8 · in_channels` for the stride-2 layers), so activations stay of order one and the
/// tanh output spans much of (−1, 1). Batch norm: weight 1 + 0.1 N, bias 0.1 N, running mean
/// 0.1 N, running variance 1 + 0.2 |N|. (Training starts from DCGAN's N(0, 0.02) instead.)
pub fn random_safetensors(arch: GeneratorArch, seed: u64) -> Result<Vec<u8>, GanError> {
    let mut stream = NormalStream::new(seed);
    let mut normal = move || stream.next_f64();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for spec in arch.layers()? {
        let shape = spec.conv_weight_shape();
        let taps = if spec.in_size == 1 { 1 } else { 8 };
        let sigma = (2.0 / (taps * spec.in_channels) as f64).sqrt();
        let n: usize = shape.iter().product();
        let w = (0..n).map(|_| (sigma * normal()) as f32).collect();
        tensors.push((spec.conv_weight_name(), shape, w));
        let c = spec.out_channels;
        let names = spec.batch_norm_names();
        if !names.is_empty() {
            let mut gen_c = |f: &dyn Fn(f64) -> f64| (0..c).map(|_| f(normal()) as f32).collect();
            let weight = gen_c(&|g| 1.0 + 0.1 * g);
            let bias = gen_c(&|g| 0.1 * g);
            let mean = gen_c(&|g| 0.1 * g);
            let var = gen_c(&|g| 1.0 + 0.2 * g.abs());
            for (name, values) in names.into_iter().zip([weight, bias, mean, var]) {
                tensors.push((name, vec![c], values));
            }
        }
    }
    serialize_f32(&tensors)
}

/// The safetensors buffer `bytes` (weights for `arch`) with each batch norm's
/// `running_mean` and `running_var` replaced by `stats` (one entry per batch-norm layer, in
/// layer order); every other tensor, ignored ones included, is copied unchanged.
pub(crate) fn with_running_statistics(
    bytes: &[u8],
    arch: GeneratorArch,
    origin: &str,
    stats: &[ChannelStatistics],
) -> Result<Vec<u8>, GanError> {
    // Validates names, shapes and dtypes first.
    parse(bytes, arch, origin)?;
    let bn_layers: Vec<_> = arch
        .layers()?
        .into_iter()
        .filter(|l| l.batch_norm)
        .collect();
    if bn_layers.len() != stats.len() {
        return Err(GanError::InvalidArgument(format!(
            "{} batch-norm statistics for {} batch-norm layers",
            stats.len(),
            bn_layers.len()
        )));
    }
    let mut replaced: Vec<(String, Vec<u8>)> = Vec::new();
    for (spec, s) in bn_layers.iter().zip(stats) {
        if s.mean.len() != spec.out_channels || s.variance.len() != spec.out_channels {
            return Err(GanError::InvalidArgument(format!(
                "statistics of {} and {} channels for a layer of {}",
                s.mean.len(),
                s.variance.len(),
                spec.out_channels
            )));
        }
        let names = spec.batch_norm_names();
        let (mean, var) = s.to_f32();
        replaced.push((names[2].clone(), f32_to_le(&mean)));
        replaced.push((names[3].clone(), f32_to_le(&var)));
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| format_error(origin, e))?;
    let mut tensors = st.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    serialize_raw(tensors.iter().map(|(name, view)| {
        let data = replaced
            .iter()
            .find(|(n, _)| n == name)
            .map_or(view.data(), |(_, d)| d.as_slice());
        (name.as_str(), view.dtype(), view.shape().to_vec(), data)
    }))
}

/// Serialises named F32 tensors (name, shape, values) to safetensors bytes.
pub(crate) fn serialize_f32(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<Vec<u8>, GanError> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, v)| f32_to_le(v)).collect();
    serialize_raw(
        tensors
            .iter()
            .zip(&bytes)
            .map(|((name, shape, _), b)| (name.as_str(), Dtype::F32, shape.clone(), b.as_slice())),
    )
}

/// Serialises raw tensors (name, dtype, shape, little-endian bytes).
pub(crate) fn serialize_raw<'a>(
    tensors: impl IntoIterator<Item = (&'a str, Dtype, Vec<usize>, &'a [u8])>,
) -> Result<Vec<u8>, GanError> {
    let invalid = |e: SafeTensorError| GanError::InvalidArgument(format!("safetensors: {e}"));
    let views = tensors
        .into_iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(dtype, shape, data).map(|v| (name.to_string(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    safetensors::serialize(views, None).map_err(invalid)
}

/// Batch norm in eval mode folded into a per-channel affine map, computed in f64:
/// `scale = weight / sqrt(running_var + eps)`, `shift = bias − running_mean · scale`.
pub(crate) fn fold_batch_norm(bn: &BatchNormTensors) -> (Vec<f32>, Vec<f32>) {
    let mut scale = Vec::with_capacity(bn.weight.len());
    let mut shift = Vec::with_capacity(bn.weight.len());
    for c in 0..bn.weight.len() {
        let s = bn.weight[c] as f64 / (bn.running_var[c] as f64 + BN_EPS).sqrt();
        scale.push(s as f32);
        shift.push((bn.bias[c] as f64 - bn.running_mean[c] as f64 * s) as f32);
    }
    (scale, shift)
}
