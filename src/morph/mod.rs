//! Trabecular morphometry after BoneJ (Doube et al. 2010, Bone 47:1076) and Scanco
//! conventions. All lengths in mm.
//!
//! | metric | method | module |
//! |---|---|---|
//! | BV/TV | bone voxels / all voxels | here |
//! | BS/BV | marching-cubes bone surface (cut faces excluded) / voxel bone volume | [`smi`] |
//! | Tb.Th, Tb.Sp (mean, SD) | local thickness, Hildebrand & Rüegsegger 1997, as BoneJ | [`thickness`] |
//! | Tb.N | `1 / (Tb.Th + Tb.Sp)` | here |
//! | Conn.D | Euler characteristic with Odgaard-Gundersen edge correction | [`connectivity`] |
//! | DA | mean intercept length fabric tensor, `1 − λmin/λmax` | [`anisotropy`] |
//! | SMI | `6 BV (dBS/dr) / BS²` on the marching-cubes mesh | [`smi`] |
//! | S2(r), L(r) | two-point correlation and lineal path along the axes, Torquato 2002 | [`correlation`] |
//!
//! Border conventions: for Tb.Th the outside of the image is background (as in BoneJ, where
//! the distance transform treats the image edges as background). For Tb.Sp the outside is
//! neither bone nor marrow: marrow distances are measured to the bone inside the image only,
//! so marrow spaces cut by the border are not artificially closed by it (BoneJ inverts the
//! image and keeps the edges-as-background rule, which makes the border act as bone and biases
//! Tb.Sp low in small crops). BS and SMI ignore the faces where bone is cut by the image
//! border. Conn.D corrects χ for the border (Odgaard & Gundersen 1993).
//!
//! Tb.N follows BoneJ / the parallel-plate model, `Tb.N = 1 / (Tb.Th + Tb.Sp)`. Scanco's
//! direct Tb.N is instead `1 / (mean distance between the mid-axes of the structure)`, the
//! inverse of the local thickness of the marrow measured up to the skeleton of the bone;
//! both agree for parallel plates.

use serde::{Deserialize, Serialize};

pub mod anisotropy;
pub mod connectivity;
pub mod correlation;
pub mod edt;
pub mod smi;
pub mod thickness;

pub use anisotropy::{Fabric, MilParams, mil_fabric};
pub use connectivity::{Connectivity, connectivity_of, delta_chi, euler_characteristic};
pub use correlation::{
    AxisCurves, Correlations, correlation_functions, lineal_path, two_point_correlation,
};
pub use edt::{Border, squared_distance_mm2};
pub use smi::{SurfaceMeasures, surface_measures};
pub use thickness::{Phase, ThicknessMap, ThicknessStats, local_thickness_map};

use crate::volume::BoneMask;

/// Errors of the morphometry functions.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MorphError {
    #[error("morphometry: the mask has no voxels (dims {dims:?})")]
    EmptyMask { dims: [usize; 3] },
    #[error("morphometry: the mask holds {voxels} voxels but its dims {dims:?} need {expected}")]
    SizeMismatch {
        dims: [usize; 3],
        voxels: usize,
        expected: usize,
    },
    #[error("morphometry: voxel size {voxel_size_mm:?} mm must be finite and positive")]
    BadVoxelSize { voxel_size_mm: [f64; 3] },
    #[error("morphometry: the mask holds no bone voxel")]
    NoBone,
    #[error("morphometry: the mask holds no marrow (background) voxel")]
    NoMarrow,
    #[error("morphometry: {0}")]
    InvalidParams(String),
    #[error("morphometry: no test line crossed a bone/marrow interface, DA is undefined")]
    NoIntercepts,
}

/// Parameters of [`morphometry`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MorphParams {
    /// Number of MIL directions (quasi-uniform on the half sphere); at least 6.
    pub mil_directions: usize,
    /// Seed of the MIL direction set rotation and of the test-line offsets.
    pub mil_seed: u64,
    /// Test-line length per MIL direction, in voxel lengths (sets the line spacing).
    pub mil_line_voxels_per_direction: usize,
}

impl Default for MorphParams {
    fn default() -> Self {
        let m = MilParams::default();
        Self {
            mil_directions: m.directions,
            mil_seed: m.seed,
            mil_line_voxels_per_direction: m.line_voxels_per_direction,
        }
    }
}

impl MorphParams {
    pub fn mil(&self) -> MilParams {
        MilParams {
            directions: self.mil_directions,
            seed: self.mil_seed,
            line_voxels_per_direction: self.mil_line_voxels_per_direction,
        }
    }
}

/// The standard trabecular indices (the `--json` keys of `osteolab morph`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Morphometry {
    /// Bone volume fraction.
    pub bv_tv: f64,
    /// Bone surface to bone volume ratio (mm⁻¹).
    pub bs_bv_per_mm: f64,
    /// Mean trabecular thickness (mm).
    pub tb_th_mm: f64,
    /// SD of the trabecular thickness (mm).
    pub tb_th_sd_mm: f64,
    /// Mean trabecular separation (mm).
    pub tb_sp_mm: f64,
    /// SD of the trabecular separation (mm).
    pub tb_sp_sd_mm: f64,
    /// Trabecular number `1 / (Tb.Th + Tb.Sp)` (mm⁻¹).
    pub tb_n_per_mm: f64,
    /// Connectivity density (mm⁻³).
    pub conn_d_per_mm3: f64,
    /// Degree of anisotropy `1 − λmin/λmax` of the MIL fabric, 0 (isotropic) to 1.
    pub da: f64,
    /// Structure model index (0 plates, 3 rods, 4 spheres).
    pub smi: f64,
}

/// Checks that the mask is consistent and holds both bone and marrow.
pub fn validate(mask: &BoneMask) -> Result<(), MorphError> {
    let d = mask.dims();
    let dims = d.as_array();
    let expected = d.checked_len().unwrap_or(usize::MAX);
    if d.is_empty() {
        return Err(MorphError::EmptyMask { dims });
    }
    if mask.voxels.len() != expected {
        return Err(MorphError::SizeMismatch {
            dims,
            voxels: mask.voxels.len(),
            expected,
        });
    }
    let s = mask.grid.voxel_size_mm;
    if !s.iter().all(|v| v.is_finite() && *v > 0.0) {
        return Err(MorphError::BadVoxelSize { voxel_size_mm: s });
    }
    let bone = mask.count();
    if bone == 0 {
        return Err(MorphError::NoBone);
    }
    if bone == mask.voxels.len() {
        return Err(MorphError::NoMarrow);
    }
    Ok(())
}

/// BV/TV: bone voxels over all voxels.
pub fn bone_volume_fraction(mask: &BoneMask) -> Result<f64, MorphError> {
    validate(mask)?;
    Ok(mask.bv_tv())
}

/// Tb.Th: local thickness of the bone (outside of the image = background, as in BoneJ).
pub fn trabecular_thickness(mask: &BoneMask) -> Result<ThicknessStats, MorphError> {
    validate(mask)?;
    local_thickness_map(mask, Phase::Bone, Border::Site)
        .map(|m| m.stats)
        .ok_or(MorphError::NoBone)
}

/// Tb.Sp: local thickness of the marrow, distances to the bone inside the image only.
pub fn trabecular_separation(mask: &BoneMask) -> Result<ThicknessStats, MorphError> {
    validate(mask)?;
    local_thickness_map(mask, Phase::Marrow, Border::Ignored)
        .map(|m| m.stats)
        .ok_or(MorphError::NoMarrow)
}

/// Tb.N = 1 / (Tb.Th + Tb.Sp) (mm⁻¹), the BoneJ / plate-model convention.
pub fn trabecular_number(tb_th_mm: f64, tb_sp_mm: f64) -> f64 {
    1.0 / (tb_th_mm + tb_sp_mm)
}

/// Conn.D with the Odgaard-Gundersen border correction.
pub fn connectivity_density(mask: &BoneMask) -> Result<Connectivity, MorphError> {
    validate(mask)?;
    Ok(connectivity_of(mask))
}

/// The MIL fabric tensor and DA.
pub fn degree_of_anisotropy(mask: &BoneMask, params: &MilParams) -> Result<Fabric, MorphError> {
    validate(mask)?;
    if params.directions < 6 {
        return Err(MorphError::InvalidParams(format!(
            "the MIL fit needs at least 6 directions, got {}",
            params.directions
        )));
    }
    mil_fabric(mask, params).ok_or(MorphError::NoIntercepts)
}

/// BS (mm²), dBS/dr and BV of the bone surface; `bs_bv_per_mm()` and `smi()` derive from it.
pub fn bone_surface(mask: &BoneMask) -> Result<SurfaceMeasures, MorphError> {
    validate(mask)?;
    Ok(surface_measures(mask))
}

/// BS/BV (mm⁻¹).
pub fn bone_surface_density(mask: &BoneMask) -> Result<f64, MorphError> {
    Ok(bone_surface(mask)?.bs_bv_per_mm())
}

/// SMI = 6 BV (dBS/dr) / BS².
pub fn structure_model_index(mask: &BoneMask) -> Result<f64, MorphError> {
    Ok(bone_surface(mask)?.smi())
}

/// All indices of [`Morphometry`].
pub fn morphometry(mask: &BoneMask, params: &MorphParams) -> Result<Morphometry, MorphError> {
    validate(mask)?;
    let bv_tv = mask.bv_tv();
    let surface = surface_measures(mask);
    let th = trabecular_thickness(mask)?;
    let sp = trabecular_separation(mask)?;
    let conn = connectivity_of(mask);
    let fabric = degree_of_anisotropy(mask, &params.mil())?;
    Ok(Morphometry {
        bv_tv,
        bs_bv_per_mm: surface.bs_bv_per_mm(),
        tb_th_mm: th.mean_mm,
        tb_th_sd_mm: th.sd_mm,
        tb_sp_mm: sp.mean_mm,
        tb_sp_sd_mm: sp.sd_mm,
        tb_n_per_mm: trabecular_number(th.mean_mm, sp.mean_mm),
        conn_d_per_mm3: conn.conn_d_per_mm3,
        da: fabric.da,
        smi: surface.smi(),
    })
}

pub(crate) use crate::rng::SplitMix64;

#[cfg(test)]
mod tests;
