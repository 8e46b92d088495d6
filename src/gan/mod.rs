//! # ReconGAN: generated trabecular microstructure (design §2)
//!
//! A 3-D DCGAN (Radford, Metz & Chintala 2016, "Unsupervised representation learning with
//! deep convolutional generative adversarial networks", ICLR, arXiv:1511.06434) whose
//! generator maps a latent vector to a voxel cube of trabecular bone. It is trained with tch
//! (libtorch, feature `torch`, module `train`); the default build runs the trained generator in pure
//! Rust (rayon) from the safetensors file tch writes, with no libtorch.
//!
//! - [`arch`]: the architecture contract shared with the training side ([`GeneratorArch`],
//!   [`LayerSpec`]), the tensor names and shapes, and the JSON card ([`GeneratorCard`]).
//! - [`weights`]: reading and validating the safetensors file; random weights for tests.
//! - [`generator`]: the eval-mode forward pass ([`Generator`]) and [`to_mask`], which turns a
//!   generated field into a [`BoneMask`](crate::volume::BoneMask).
//! - [`latent`]: the documented, reproducible latent vectors ([`standard_normal`],
//!   [`latent_for`]).
//! - [`calibrate`]: chooses the mask post-processing (smoothing σ, cavity fill) on the
//!   training data, the library side of `osteolab gan calibrate`.
//! - [`validate`]: generated cubes against real sub-volumes (morphometry, S2, L, micro-FE,
//!   copy search), the library side of `osteolab gan validate`.
//!
//! Value convention: bone is +1 and marrow −1 in the training data, so bone is the high end
//! of the generated field.

pub mod arch;
pub mod builtin;
pub mod calibrate;
pub mod generator;
pub mod latent;
pub mod standing;
#[cfg(feature = "torch")]
pub mod train;
pub mod validate;
pub mod weights;

use std::path::PathBuf;

pub use arch::{DEFAULT_MASK_SIGMA_VOXELS, GeneratorArch, GeneratorCard, LayerSpec, MaskOptions};
pub use generator::{ChannelStatistics, Generator, to_mask};
pub use latent::{latent_for, standard_normal};

/// Errors of loading and running a generator. Every file-related variant names the file (or
/// the `origin` given for an in-memory buffer) and, where there is one, the tensor.
#[derive(Debug, thiserror::Error)]
pub enum GanError {
    #[error("{}: I/O error: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not a readable safetensors file: bad header, truncated data, inconsistent offsets.
    #[error("{origin}: not a valid safetensors file: {reason}")]
    Format { origin: String, reason: String },
    #[error("{origin}: tensor `{name}` is missing")]
    MissingTensor { origin: String, name: String },
    #[error("{origin}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    WrongShape {
        origin: String,
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("{origin}: tensor `{name}` has dtype {got}, expected F32")]
    WrongDtype {
        origin: String,
        name: String,
        got: String,
    },
    /// The JSON card beside the weights is missing a field, malformed or inconsistent.
    #[error("{}: invalid generator card: {reason}", path.display())]
    Card { path: PathBuf, reason: String },
    #[error("invalid generator architecture: {0}")]
    InvalidArch(String),
    #[error("latent vector has {got} entries, the generator expects {expected}")]
    InvalidLatent { expected: usize, got: usize },
    #[error("latent vector entry {index} is not finite ({value})")]
    NonFiniteLatent { index: usize, value: f32 },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}
