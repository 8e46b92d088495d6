//! Where the shared micro-CT sample lives. It is never copied into the repository: tests,
//! benchmarks and the app find it at `$OSTEOLAB_DATA` or at `../shared/data` beside the
//! checkout, and say plainly when it is absent.

use std::path::{Path, PathBuf};

use crate::volume::segment::{
    SegmentParams, Threshold, VoxelBox, crop_mask, downsample_volume, largest_component, segment,
};
use crate::volume::{BoneMask, Dims, VolumeError, load_volume};

/// Path of the sample's sidecar inside the data folder.
pub const MICROCT_SAMPLE: &str = "microct/lhdl-3155-D4-gray200.json";

/// Where the 200³ human trabecular sample (19.5 µm, uint8) is looked for:
/// `$OSTEOLAB_DATA/microct/…` when the variable is set, otherwise `../shared/data/microct/…`
/// beside the checkout this binary was built from.
pub fn microct_sample_path() -> PathBuf {
    let base = std::env::var_os("OSTEOLAB_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    base.join(MICROCT_SAMPLE)
}

/// The sample's sidecar if it is present; otherwise the place it was looked for (`Err`).
pub fn locate_microct_sample() -> Result<PathBuf, PathBuf> {
    let path = microct_sample_path();
    if path.is_file() { Ok(path) } else { Err(path) }
}

/// The sidecar of the sample, if it is present (for tests and benchmarks).
/// Prints a "skipped" line naming the place it looked when it is not.
pub fn microct_sample() -> Option<PathBuf> {
    match locate_microct_sample() {
        Ok(path) => Some(path),
        Err(path) => {
            println!("skipped: micro-CT data not found at {}", path.display());
            None
        }
    }
}

/// A centred `edge`³ cube of trabecular bone from a grey micro-CT volume, segmented the way
/// the shape optimisation, its benchmarks and the multiscale run take it: the grey values
/// block-averaged by `downsample` (1 = none), Gaussian σ = 1 voxel, Otsu's threshold, largest
/// 6-connected component, the centred cube cropped, its largest component kept.
pub fn centred_cube(path: &Path, downsample: usize, edge: usize) -> Result<BoneMask, VolumeError> {
    let mut grey = load_volume(path)?;
    if downsample > 1 {
        grey = downsample_volume(&grey, downsample)?;
    }
    let mask = segment(
        &grey,
        &SegmentParams {
            sigma_voxels: 1.0,
            threshold: Threshold::Otsu,
            keep_largest_component: true,
        },
    )?;
    let d = mask.dims();
    if edge == 0 || edge > d.nx || edge > d.ny || edge > d.nz {
        return Err(VolumeError::InvalidArgument(format!(
            "{}: a centred {edge}³ cube does not fit the segmented volume of {:?} voxels",
            path.display(),
            d.as_array()
        )));
    }
    let region = VoxelBox {
        min: [(d.nx - edge) / 2, (d.ny - edge) / 2, (d.nz - edge) / 2],
        dims: Dims::new(edge, edge, edge),
    };
    Ok(largest_component(&crop_mask(&mask, &region)?))
}
