//! Voxel volumes: the grid type, readers and writers, segmentation.
//!
//! - [`grid`]: `Dims`, `Grid`, `Volume`, `VoxelData`, `DType`, `BoneMask` (x fastest).
//! - [`load`]: [`load_volume`] / [`save_volume`] dispatching on the path.
//! - [`sidecar`]: raw + JSON sidecar (`.json` + `.raw` / `.raw.gz`).
//! - [`nifti`]: NIfTI-1 (`.nii`, `.nii.gz`).
//! - [`dicom`]: DICOM CT series (uncompressed), values in HU.
//! - [`stack`]: PNG/TIFF slice folders.
//! - [`segment`]: smoothing, Otsu, thresholds, largest component, crop, downsampling.
//! - [`vtk`]: cell fields as legacy VTK structured points (ParaView).
//! - [`error`]: [`VolumeError`], shared by all of them.

pub mod dicom;
pub mod error;
pub mod grid;
pub mod load;
pub mod nifti;
pub mod segment;
pub mod sidecar;
pub mod stack;
pub mod vtk;

pub use error::VolumeError;
pub use grid::{BoneMask, DType, Dims, Grid, Volume, VoxelData};
pub use load::{SaveOptions, VolumeFormat, load_volume, save_volume, save_volume_with};
pub use segment::{SegmentParams, Threshold, segment};
