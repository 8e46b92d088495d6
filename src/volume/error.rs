//! The error type of every volume reader, writer and segmentation step.
//!
//! Each variant that comes from a file carries the path of that file, and its message starts
//! with it, so a user always learns which file is wrong and why.

use std::io;
use std::path::{Path, PathBuf};

/// What can go wrong while reading, writing or segmenting a volume.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The operating system refused a read or a write.
    #[error("{}: I/O error: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A sidecar file is not valid JSON (or not a JSON object).
    #[error("{}: invalid JSON: {message}", path.display())]
    BadJson { path: PathBuf, message: String },

    /// A required sidecar key is absent.
    #[error("{}: missing sidecar key \"{key}\"", path.display())]
    MissingKey { path: PathBuf, key: &'static str },

    /// A sidecar key is present but its value has the wrong shape.
    #[error("{}: invalid value for \"{key}\": {message}", path.display())]
    BadKey {
        path: PathBuf,
        key: &'static str,
        message: String,
    },

    /// The sample type named in a sidecar is not one of uint8, uint16, float32.
    #[error("{}: unknown dtype \"{dtype}\" (expected \"uint8\", \"uint16\" or \"float32\")", path.display())]
    UnknownDType { path: PathBuf, dtype: String },

    /// Zero, negative or overflowing grid dimensions.
    #[error("{}: invalid dimensions {dims:?}: {reason}", path.display())]
    BadDims {
        path: PathBuf,
        dims: Vec<i64>,
        reason: String,
    },

    /// The data ends before the dimensions say it should.
    #[error("{}: truncated data: expected {expected_bytes} bytes, found only {found_bytes}", path.display())]
    Truncated {
        path: PathBuf,
        expected_bytes: u64,
        found_bytes: u64,
    },

    /// The data holds more bytes than the dimensions and sample type account for.
    #[error(
        "{}: dimensions do not match the data: {dims:?} x {bytes_per_voxel} bytes = {expected_bytes} bytes, but the data has {found_bytes}",
        path.display()
    )]
    SizeMismatch {
        path: PathBuf,
        dims: [usize; 3],
        bytes_per_voxel: usize,
        expected_bytes: u64,
        found_bytes: u64,
    },

    /// A volume whose byte count cannot be allocated on this machine.
    #[error("{}: a volume of {bytes} bytes is too large to allocate", path.display())]
    TooLarge { path: PathBuf, bytes: u64 },

    /// A voxel size that is zero, negative, NaN or infinite.
    #[error("{}: voxel size {voxel_size_mm:?} mm must be finite and positive", path.display())]
    BadVoxelSize {
        path: PathBuf,
        voxel_size_mm: Vec<f64>,
    },

    /// A slice folder without any usable slice.
    #[error("{}: no image slices found ({expected})", path.display())]
    EmptySliceFolder {
        path: PathBuf,
        expected: &'static str,
    },

    /// A slice whose size differs from the first slice of the stack.
    #[error(
        "{}: slice is {found:?} (columns x rows) but the first slice {} is {expected:?}",
        path.display(),
        first.display()
    )]
    MixedSliceSizes {
        path: PathBuf,
        first: PathBuf,
        expected: [usize; 2],
        found: [usize; 2],
    },

    /// A pixel or sample type this reader does not handle (RGB images, 32-bit samples, ...).
    #[error("{}: unsupported pixel type: {what}", path.display())]
    UnsupportedPixelType { path: PathBuf, what: String },

    /// An image file that could not be decoded or encoded.
    #[error("{}: image error: {message}", path.display())]
    Image { path: PathBuf, message: String },

    /// A file that is not a valid NIfTI-1 file.
    #[error("{}: not a valid NIfTI-1 file: {reason}", path.display())]
    BadNifti { path: PathBuf, reason: String },

    /// A NIfTI datatype code this reader does not handle.
    #[error(
        "{}: unsupported NIfTI datatype {code} ({name}); supported: uint8 (2), int16 (4), uint16 (512), float32 (16)",
        path.display()
    )]
    UnsupportedNiftiType {
        path: PathBuf,
        code: i16,
        name: &'static str,
    },

    /// A DICOM file encoded with a compressed (or otherwise unsupported) transfer syntax.
    #[error(
        "{}: unsupported transfer syntax {uid}; only uncompressed Implicit/Explicit VR Little Endian is read",
        path.display()
    )]
    UnsupportedTransferSyntax { path: PathBuf, uid: String },

    /// A DICOM file that could not be parsed, or that lacks or misstates an attribute.
    #[error("{}: DICOM error: {message}", path.display())]
    Dicom { path: PathBuf, message: String },

    /// DICOM slice positions that are not equally spaced (within 1 %) or coincide.
    #[error("{}: slice spacing is not uniform: {message}", path.display())]
    NonUniformSpacing { path: PathBuf, message: String },

    /// A path whose kind (extension, folder content) is not a volume format.
    #[error("{}: unsupported volume format: {reason}", path.display())]
    UnsupportedFormat { path: PathBuf, reason: String },

    /// A volume that the requested output format cannot hold.
    #[error("{}: cannot write this volume: {reason}", path.display())]
    CannotWrite { path: PathBuf, reason: String },

    /// A bad argument to an in-memory operation (segmentation, crop, downsampling).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl VolumeError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: io::Error) -> Self {
        VolumeError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The file this error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        use VolumeError::*;
        match self {
            Io { path, .. }
            | BadJson { path, .. }
            | MissingKey { path, .. }
            | BadKey { path, .. }
            | UnknownDType { path, .. }
            | BadDims { path, .. }
            | Truncated { path, .. }
            | SizeMismatch { path, .. }
            | TooLarge { path, .. }
            | BadVoxelSize { path, .. }
            | EmptySliceFolder { path, .. }
            | MixedSliceSizes { path, .. }
            | UnsupportedPixelType { path, .. }
            | Image { path, .. }
            | BadNifti { path, .. }
            | UnsupportedNiftiType { path, .. }
            | UnsupportedTransferSyntax { path, .. }
            | Dicom { path, .. }
            | NonUniformSpacing { path, .. }
            | UnsupportedFormat { path, .. }
            | CannotWrite { path, .. } => Some(path),
            InvalidArgument(_) => None,
        }
    }
}

/// Checks a voxel size: every component finite and > 0.
pub(crate) fn check_voxel_size(path: &Path, voxel_size_mm: [f64; 3]) -> Result<(), VolumeError> {
    if voxel_size_mm.iter().all(|v| v.is_finite() && *v > 0.0) {
        Ok(())
    } else {
        Err(VolumeError::BadVoxelSize {
            path: path.to_path_buf(),
            voxel_size_mm: voxel_size_mm.to_vec(),
        })
    }
}

/// Checks grid dimensions: all positive and the voxel count (times `bytes_per_voxel`) fits.
/// Returns the voxel count.
pub(crate) fn check_dims(
    path: &Path,
    dims: [usize; 3],
    bytes_per_voxel: usize,
) -> Result<usize, VolumeError> {
    let bad = |reason: &str| VolumeError::BadDims {
        path: path.to_path_buf(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        reason: reason.to_string(),
    };
    if dims.contains(&0) {
        return Err(bad("every dimension must be at least 1"));
    }
    let n = crate::volume::Dims::from(dims)
        .checked_len()
        .ok_or_else(|| bad("voxel count overflows"))?;
    n.checked_mul(bytes_per_voxel)
        .ok_or_else(|| bad("byte count overflows"))?;
    Ok(n)
}
