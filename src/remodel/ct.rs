//! A macroscale [`Vertebra`] built from a clinical CT scan (design §1.1: patient-specific
//! geometry and density).
//!
//! The method is the one of voxel-based QCT finite-element models of the vertebral body
//! (e.g. Crawford, Cann & Keaveny 2003, Bone 33:744, *Finite element models predict in vitro
//! vertebral body compressive strength better than quantitative computed tomography*):
//!
//! 1. **Volume.** A DICOM CT series or a NIfTI volume with grey values in Hounsfield units
//!    (read by [`crate::volume::load_volume`]; DICOM is rescaled to HU on reading).
//! 2. **Calibration.** QCT converts HU to bone mineral density with a linear fit to a
//!    calibration phantom scanned with the patient (Cann & Genant 1980, J Comput Assist
//!    Tomogr 4:493, *Precise measurement of vertebral mineral content using computed
//!    tomography*): BMD = slope · HU + intercept ([`HuCalibration`]). Slope and intercept are
//!    parameters and must come from the phantom of the scan at hand.
//! 3. **Isolation.** A user-given voxel box ([`CtParams::box_voxels`]) holds one vertebral body:
//!    in x and y it encloses the body with some soft tissue around it and leaves out the
//!    posterior elements; in z it runs from the inferior to the superior endplate (a margin of
//!    disc above and below is cropped away).
//! 4. **Resampling and segmentation.** Block averaging to about 1 mm elements (an integer
//!    factor per axis), a global BMD threshold on the element BMD with light Gaussian
//!    smoothing against noise, the largest 6-connected component, per-slice filling of
//!    enclosed cavities (marrow below the threshold inside the cortex), and removal of sparse
//!    end layers.
//! 5. **Regions** ([`Region`]): endplate elements lie within
//!    [`CtParams::endplate_thickness_mm`] of the top or bottom bone surface of their (x, y)
//!    column; cortical elements within [`CtParams::shell_thickness_mm`] of the periosteal
//!    surface in their transverse slice; the rest is trabecular.
//! 6. **Compartments**, the partial-volume split of [`super::vertebra`]: an element's measured
//!    BMD b is read as a mix of compact shell tissue at [`CtParams::cortical_bmd_mg_cm3`] and
//!    trabecular bone at the median BMD of the trabecular region (see [`vertebra_from_ct`]).
//!
//! Each step has a clear error ([`CtError`]) when the calibration, the box or the parameters are
//! unusable, with the numbers found in the scan so that the cause can be recognised.
//!
//! Limitations: the grid stays aligned with the scanner axes (no reorientation of a tilted
//! vertebra); cavities are filled only where the cortex closes in the slice, so marrow behind
//! a gap of the thresholded shell stays outside; a box that takes in a closed posterior arch
//! would fill the vertebral canal; the low default threshold keeps boundary elements holding
//! only a small part of bone (partial volume), which makes the body slightly larger (5 % more
//! elements on the synthetic test body).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::density::DensityRelations;
use super::law::COMPARTMENTS;
use super::vertebra::{Region, Vertebra, in_plane_depth};
use crate::volume::segment::{
    VoxelBox, crop_mask, crop_volume, gaussian_smooth_f32, largest_component,
};
use crate::volume::{BoneMask, Dims, Grid, Volume, VolumeError, VoxelData, load_volume};

/// Fewest elements a vertebral body model may have.
pub const MIN_ELEMENTS: usize = 500;
/// Fewest voxels along each side of the box (and of the resampled box), and fewest z layers
/// the bone must span.
pub const MIN_BOX_SIDE: usize = 5;
/// Plausible range (mg/cm³) of the calibrated BMD of soft tissue (muscle, fat, disc, marrow).
pub const SOFT_TISSUE_RANGE_MG_CM3: [f64; 2] = [-200.0, 150.0];
/// Plausible range (mg/cm³) of the 99th percentile of the calibrated BMD in the box.
pub const P99_RANGE_MG_CM3: [f64; 2] = [150.0, 3000.0];
/// Bottom and top bone layers holding less than this fraction of the largest cross-section
/// are dropped: noise and blur of the dense endplate above the threshold in the disc, tips of
/// osteophytes or of a tilted endplate. The load enters through the end layers, so they must
/// be endplate (the rim-only layer of a concave endplate holds far more than this).
pub const MIN_END_LAYER_FRACTION: f64 = 0.1;

/// Linear HU → BMD calibration: BMD [mg HA/cm³] = `slope_mg_per_hu` · HU +
/// `intercept_mg_cm3`, the least-squares line through the rods of a calibration phantom
/// scanned with the patient (Cann & Genant 1980).
///
/// The defaults (slope 0.8 mg/cm³ per HU, intercept 0) are only an order of magnitude of
/// such fits, so that a scan can be looked at; **for any result, slope and intercept must
/// come from the phantom of the scan itself** (they depend on scanner, tube voltage and
/// reconstruction).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HuCalibration {
    /// mg HA/cm³ per HU, in (0, 10].
    pub slope_mg_per_hu: f64,
    /// mg HA/cm³ at 0 HU, in [-1000, 1000].
    pub intercept_mg_cm3: f64,
}

impl Default for HuCalibration {
    fn default() -> Self {
        Self {
            slope_mg_per_hu: 0.8,
            intercept_mg_cm3: 0.0,
        }
    }
}

impl HuCalibration {
    /// BMD (mg HA/cm³) of a grey value in HU.
    pub fn bmd_mg_cm3(&self, hu: f64) -> f64 {
        self.slope_mg_per_hu * hu + self.intercept_mg_cm3
    }

    /// Checks that slope and intercept are finite, the slope in (0, 10] mg/cm³ per HU and the
    /// intercept within ±1000 mg/cm³.
    pub fn validate(&self) -> Result<(), CtError> {
        let s = self.slope_mg_per_hu;
        if !(s.is_finite() && s > 0.0 && s <= 10.0) {
            return Err(CtError::InvalidCalibration(format!(
                "HU calibration slope_mg_per_hu must be a finite number in (0, 10] mg/cm³ per \
                 HU, got {s}; take slope and intercept from the phantom fit of the scan"
            )));
        }
        let c = self.intercept_mg_cm3;
        if !(c.is_finite() && c.abs() <= 1000.0) {
            return Err(CtError::InvalidCalibration(format!(
                "HU calibration intercept_mg_cm3 must be a finite number in [-1000, 1000] \
                 mg/cm³, got {c}; take slope and intercept from the phantom fit of the scan"
            )));
        }
        Ok(())
    }
}

/// Parameters of [`vertebra_from_ct`].
///
/// The defaults other than the box are our choices: 80 mg/cm³ separates bone from soft
/// tissue (muscle and disc are about 30–60 mg/cm³ after calibration) while keeping
/// osteoporotic trabecular bone; 1 mm shell and endplate regions are one element layer at the
/// default 1 mm elements; 1000 mg/cm³ for compact shell tissue as in
/// [`super::vertebra::VertebraParams`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CtParams {
    /// HU → BMD calibration of the scan.
    pub calibration: HuCalibration,
    /// The box (in voxels of the input volume) isolating one vertebral body. In x and y it
    /// encloses the body with soft tissue around it; in z it must run from the inferior to the
    /// superior endplate. At least [`MIN_BOX_SIDE`] voxels per side.
    pub box_voxels: VoxelBox,
    /// Voxels whose BMD and smoothed BMD both reach this value (mg/cm³) are bone. Default 80.
    pub bone_threshold_mg_cm3: f64,
    /// Gaussian smoothing against noise before thresholding, in voxels of the resampled grid
    /// (0 = none). It can only remove voxels from the bone (see [`vertebra_from_ct`], step 4).
    /// Default 0.5.
    pub smoothing_sigma_voxels: f64,
    /// Cortical region: bone whose in-plane (transverse) depth below the periosteal surface
    /// is less than this (mm). Default 1.0.
    pub shell_thickness_mm: f64,
    /// Endplate region: bone whose depth below the top or bottom bone surface of its (x, y)
    /// column is less than this (mm). Default 1.0.
    pub endplate_thickness_mm: f64,
    /// BMD (mg/cm³) of compact shell tissue, for the two-compartment split; in
    /// (threshold, 2000]. Default 1000.
    pub cortical_bmd_mg_cm3: f64,
    /// Resample by block averaging to about this voxel size (mm): along each axis the factor
    /// is `max(1, round(target / h))` (e.g. 2 for 0.5 mm, 3 for 0.35 mm). `None` keeps the
    /// scan's voxels. Default `Some(1.0)`.
    pub target_voxel_mm: Option<f64>,
}

impl Default for CtParams {
    /// The default parameters with an **empty box**, which [`vertebra_from_ct`] rejects: set
    /// [`CtParams::box_voxels`] (or use [`CtParams::new`]).
    fn default() -> Self {
        Self::new(VoxelBox {
            min: [0; 3],
            dims: Dims::new(0, 0, 0),
        })
    }
}

impl CtParams {
    /// The default parameters for a given box.
    pub fn new(box_voxels: VoxelBox) -> Self {
        Self {
            calibration: HuCalibration::default(),
            box_voxels,
            bone_threshold_mg_cm3: 80.0,
            smoothing_sigma_voxels: 0.5,
            shell_thickness_mm: 1.0,
            endplate_thickness_mm: 1.0,
            cortical_bmd_mg_cm3: 1000.0,
            target_voxel_mm: Some(1.0),
        }
    }

    /// Checks the calibration and every parameter (the box is checked against the volume by
    /// [`vertebra_from_ct`]).
    pub fn validate(&self) -> Result<(), CtError> {
        self.calibration.validate()?;
        let param = |name: &str, v: f64, lo: f64, hi: f64, lo_open: bool| {
            let above = if lo_open { v > lo } else { v >= lo };
            if v.is_finite() && above && v <= hi {
                Ok(())
            } else {
                let open = if lo_open { "(" } else { "[" };
                Err(CtError::InvalidParameter(format!(
                    "CT parameter {name} must be a finite number in {open}{lo}, {hi}], got {v}"
                )))
            }
        };
        param(
            "bone_threshold_mg_cm3",
            self.bone_threshold_mg_cm3,
            0.0,
            2000.0,
            true,
        )?;
        param(
            "smoothing_sigma_voxels",
            self.smoothing_sigma_voxels,
            0.0,
            5.0,
            false,
        )?;
        param(
            "shell_thickness_mm",
            self.shell_thickness_mm,
            0.0,
            10.0,
            false,
        )?;
        param(
            "endplate_thickness_mm",
            self.endplate_thickness_mm,
            0.0,
            10.0,
            false,
        )?;
        param(
            "cortical_bmd_mg_cm3",
            self.cortical_bmd_mg_cm3,
            0.0,
            2000.0,
            true,
        )?;
        if self.cortical_bmd_mg_cm3 <= self.bone_threshold_mg_cm3 {
            return Err(CtError::InvalidParameter(format!(
                "CT parameter cortical_bmd_mg_cm3 ({}) must exceed bone_threshold_mg_cm3 ({})",
                self.cortical_bmd_mg_cm3, self.bone_threshold_mg_cm3
            )));
        }
        if let Some(t) = self.target_voxel_mm {
            param("target_voxel_mm", t, 0.0, 5.0, true)?;
        }
        Ok(())
    }

    /// Block-averaging factor along each axis for voxels of `voxel_size_mm`.
    pub fn resample_factors(&self, voxel_size_mm: [f64; 3]) -> [usize; 3] {
        match self.target_voxel_mm {
            None => [1; 3],
            Some(t) => voxel_size_mm.map(|h| (t / h).round().max(1.0) as usize),
        }
    }
}

/// What can go wrong when building a vertebra from CT. The messages give the numbers found
/// in the scan; [`vertebra_from_ct_file`] puts the path in front of them.
#[derive(Debug, thiserror::Error)]
pub enum CtError {
    /// The volume could not be read (the message names the file).
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// Slope or intercept out of range, or calibrated values implausible for a CT in HU.
    #[error("{0}")]
    InvalidCalibration(String),
    /// The box does not fit the volume, is too small, or does not isolate one vertebral body.
    #[error("{0}")]
    InvalidBox(String),
    /// Too little bone in the box.
    #[error("{0}")]
    NoBone(String),
    /// A parameter out of its range.
    #[error("{0}")]
    InvalidParameter(String),
    /// A volume whose data cannot be used (size mismatch, bad voxel size, NaN values).
    #[error("{0}")]
    InvalidVolume(String),
}

impl CtError {
    /// The same error with `path` in front of its message (read errors name their file
    /// already and are returned unchanged).
    fn in_file(self, path: &Path) -> Self {
        let p = path.display();
        match self {
            CtError::Volume(e) => CtError::Volume(e),
            CtError::InvalidCalibration(m) => CtError::InvalidCalibration(format!("{p}: {m}")),
            CtError::InvalidBox(m) => CtError::InvalidBox(format!("{p}: {m}")),
            CtError::NoBone(m) => CtError::NoBone(format!("{p}: {m}")),
            CtError::InvalidParameter(m) => CtError::InvalidParameter(format!("{p}: {m}")),
            CtError::InvalidVolume(m) => CtError::InvalidVolume(format!("{p}: {m}")),
        }
    }
}

/// Reads a CT volume (DICOM series folder, `.nii`/`.nii.gz`, or sidecar) and builds the
/// vertebra with [`vertebra_from_ct`]. Every error names `path`; the model's `source` is the
/// path.
pub fn vertebra_from_ct_file(
    path: &Path,
    params: &CtParams,
    density: &DensityRelations,
) -> Result<Vertebra, CtError> {
    let volume = load_volume(path)?;
    vertebra_from_ct(&volume, params, density, &path.display().to_string())
        .map_err(|e| e.in_file(path))
}

/// Builds the macroscale vertebra from a CT volume in HU (see the module docs for the
/// method). `source` is stored verbatim in [`Vertebra::source`].
///
/// Steps, in order, each with its error:
/// 1. Parameters ([`CtParams::validate`]) and the box: inside the volume and at least
///    [`MIN_BOX_SIDE`] voxels per side, else [`CtError::InvalidBox`] naming box and volume.
/// 2. Crop, calibrate to BMD (non-finite values are a [`CtError::InvalidVolume`]),
///    block-average to [`CtParams::target_voxel_mm`] (trailing voxels that do not fill a
///    block are dropped; the resampled box must still have [`MIN_BOX_SIDE`] voxels per side),
///    and a copy smoothed with [`CtParams::smoothing_sigma_voxels`] on the resampled grid.
/// 3. Calibration sanity ([`CtError::InvalidCalibration`]): the median smoothed BMD of the
///    soft tissue (voxels below min(threshold, 150) mg/cm³) must lie in
///    [`SOFT_TISSUE_RANGE_MG_CM3`] and the 99th percentile of the BMD in
///    [`P99_RANGE_MG_CM3`]. When under 1 % of the box is soft tissue, the 1st percentile
///    stands for it: above 150 mg/cm³ the calibration is wrong, otherwise the box holds no
///    soft tissue around the body ([`CtError::InvalidBox`]).
/// 4. Bone: both the smoothed and the element's own BMD ≥ threshold. Smoothing thus only
///    removes noise speckles and never adds voxels: on its own it would spread a dense
///    endplate or shell a whole element into the disc and soft tissue (at sigma 0.5 voxel a
///    neighbour receives 11 % of 800 mg/cm³, above an 80 mg/cm³ threshold) and grow the body
///    by one element on every side. Then the largest 6-connected component, cavities of each
///    z slice filled (background not 4-connected to the slice border, e.g. marrow below the
///    threshold inside the cortex), bottom and top layers dropped while they hold less than
///    [`MIN_END_LAYER_FRACTION`] of the largest cross-section. At least [`MIN_ELEMENTS`]
///    voxels, else [`CtError::NoBone`].
/// 5. Crop z to the layers holding bone, so the bone touches the bottom and top of the grid
///    (the load enters through the endplates), and x, y to the bone with one voxel of margin.
///    The bone must span [`MIN_BOX_SIDE`] layers, else [`CtError::InvalidBox`].
/// 6. Regions. In-plane depth `(layers + 0.5) · h_xy` below the periosteal surface of the
///    filled slice ([`in_plane_depth`], `h_xy` the smaller in-plane voxel size); along-z depth
///    `(layers + 0.5) · h_z` below the top or bottom bone voxel of the element's (x, y)
///    column. Endplate if the z depth is below the endplate thickness, else cortical if the
///    in-plane depth is below the shell thickness, else trabecular.
/// 7. Compartments, from each element's block-averaged (unsmoothed) BMD b. The trabecular
///    reference b_t is the median b of the trabecular region (at least 1 mg/cm³), b_c the
///    cortical tissue BMD. A trabecular element has cortical share 0 and volume fractions
///    [0, v(max(b, 1))]. A cortical or endplate element has share
///    s = clamp((b − b_t)/(b_c − b_t), 0, 1) and fractions [v(b_c) if s > 0, v(b_t) if s < 1]
///    (0 otherwise), so that its BMD s·b_c + (1 − s)·b_t reproduces b, clamped to [b_t, b_c]
///    (an element of the shell or endplate region reading at most b_t keeps its label with
///    share 0).
///    v is [`DensityRelations::volume_fraction`]. Filled cavities count with their own
///    (low) BMD, clamped as above; surface elements read low through partial volume with
///    the soft tissue outside, as in clinical QCT.
pub fn vertebra_from_ct(
    volume: &Volume,
    params: &CtParams,
    density: &DensityRelations,
    source: &str,
) -> Result<Vertebra, CtError> {
    build(volume, params, density, source).map(|b| b.vertebra)
}

/// The model and the numbers behind it (the tests check them).
#[cfg_attr(not(test), allow(dead_code))]
struct CtBuild {
    vertebra: Vertebra,
    /// Block-averaged BMD of each element (mg/cm³).
    element_bmd: Vec<f64>,
    /// Trabecular reference BMD b_t (mg/cm³).
    trabecular_bmd: f64,
}

fn build(
    volume: &Volume,
    params: &CtParams,
    density: &DensityRelations,
    source: &str,
) -> Result<CtBuild, CtError> {
    params.validate()?;
    density
        .validate()
        .map_err(|e| CtError::InvalidParameter(format!("density relations: {e}")))?;
    check_volume(volume)?;
    check_box(&params.box_voxels, volume.dims())?;

    // Crop and calibrate.
    let cropped = crop_volume(volume, &params.box_voxels)?;
    let hu = cropped.data.to_f32();
    let non_finite = hu.iter().filter(|v| !v.is_finite()).count();
    if non_finite > 0 {
        return Err(CtError::InvalidVolume(format!(
            "the CT volume has {non_finite} non-finite (NaN or infinite) values inside the box"
        )));
    }
    let cal = params.calibration;
    let bmd: Vec<f32> = hu
        .iter()
        .map(|&h| cal.bmd_mg_cm3(h as f64) as f32)
        .collect();
    drop(hu);

    // Resample and smooth.
    let factors = params.resample_factors(cropped.grid.voxel_size_mm);
    let (grid, bmd) = block_mean(&cropped.grid, &bmd, factors);
    let d = grid.dims;
    if d.as_array().iter().any(|&n| n < MIN_BOX_SIDE) {
        return Err(CtError::InvalidBox(format!(
            "vertebral-body box at {:?} of {:?} voxels becomes {:?} voxels when block-averaged \
             by {factors:?} to about {} mm; each side must be at least {MIN_BOX_SIDE} voxels",
            params.box_voxels.min,
            params.box_voxels.dims.as_array(),
            d.as_array(),
            params.target_voxel_mm.unwrap_or(0.0),
        )));
    }
    let smooth = gaussian_smooth_f32(&bmd, d, params.smoothing_sigma_voxels)?;

    check_calibration(&bmd, &smooth, params)?;

    // Segment.
    let t = params.bone_threshold_mg_cm3;
    let raw = BoneMask {
        grid,
        voxels: smooth
            .iter()
            .zip(&bmd)
            .map(|(&s, &b)| s.min(b) as f64 >= t)
            .collect(),
    };
    let mut filled = largest_component(&raw).voxels;
    drop(raw);
    fill_slice_cavities(d, &mut filled);
    trim_sparse_end_layers(d, &mut filled);
    let count = filled.iter().filter(|&&b| b).count();
    if count < MIN_ELEMENTS {
        let (lo, hi) = finite_range(&smooth);
        return Err(CtError::NoBone(format!(
            "no vertebral body found: the largest connected bone holds {count} voxels at the \
             bone threshold {t} mg/cm³ (at least {MIN_ELEMENTS} are needed), and the smoothed \
             BMD in the box ranges from {lo:.0} to {hi:.0} mg/cm³. Probably the calibration \
             (slope {} mg/cm³ per HU, intercept {} mg/cm³) does not fit the scan, the box \
             misses the vertebral body, or the threshold is too high",
            cal.slope_mg_per_hu, cal.intercept_mg_cm3
        )));
    }

    // Crop to the bone: all of z, x and y with one voxel of margin.
    let bone_box = bone_box(d, &filled);
    let mask = crop_mask(
        &BoneMask {
            grid,
            voxels: filled,
        },
        &bone_box,
    )?;
    let bmd_volume = crop_volume(
        &Volume {
            grid,
            data: VoxelData::F32(bmd),
        },
        &bone_box,
    )?;
    let VoxelData::F32(bmd) = bmd_volume.data else {
        unreachable!("cropping keeps the sample type")
    };
    let grid = mask.grid;
    let d = grid.dims;
    if d.nz < MIN_BOX_SIDE {
        return Err(CtError::InvalidBox(format!(
            "the bone in the vertebral-body box at {:?} of {:?} voxels spans only {} layers \
             of {} mm in z (at least {MIN_BOX_SIDE} are needed): the box must run from the \
             inferior to the superior endplate",
            params.box_voxels.min,
            params.box_voxels.dims.as_array(),
            d.nz,
            grid.voxel_size_mm[2]
        )));
    }

    // Regions.
    let [hx, hy, hz] = grid.voxel_size_mm;
    let h_xy = hx.min(hy);
    let depth_xy = in_plane_depth(d, &mask.voxels);
    let plane = d.nx * d.ny;
    let mut z_lo = vec![usize::MAX; plane];
    let mut z_hi = vec![0usize; plane];
    for (i, _) in mask.voxels.iter().enumerate().filter(|(_, b)| **b) {
        let z = i / plane;
        let c = i % plane;
        z_lo[c] = z_lo[c].min(z);
        z_hi[c] = z_hi[c].max(z);
    }
    let mut voxel = Vec::with_capacity(count);
    let mut region = Vec::with_capacity(count);
    let mut element_bmd = Vec::with_capacity(count);
    let mut trabecular = Vec::new();
    for (i, _) in mask.voxels.iter().enumerate().filter(|(_, b)| **b) {
        let z = i / plane;
        let c = i % plane;
        let z_layers = (z - z_lo[c]).min(z_hi[c] - z);
        let z_depth_mm = (z_layers as f64 + 0.5) * hz;
        let xy_depth_mm = (depth_xy[i] as f64 + 0.5) * h_xy;
        let r = if z_depth_mm < params.endplate_thickness_mm {
            Region::Endplate
        } else if xy_depth_mm < params.shell_thickness_mm {
            Region::Cortical
        } else {
            trabecular.push(bmd[i]);
            Region::Trabecular
        };
        voxel.push(i);
        region.push(r);
        element_bmd.push(bmd[i] as f64);
    }
    if trabecular.is_empty() {
        return Err(CtError::InvalidParameter(format!(
            "shell_thickness_mm {} and endplate_thickness_mm {} leave no trabecular element in \
             a bone of {:?} elements of {:?} mm",
            params.shell_thickness_mm,
            params.endplate_thickness_mm,
            d.as_array(),
            grid.voxel_size_mm
        )));
    }
    let b_t = (percentile(&mut trabecular, 0.5) as f64).max(1.0);
    let b_c = params.cortical_bmd_mg_cm3;
    let b_full = density.bmd_mg_cm3(1.0);
    if b_c > b_full {
        return Err(CtError::InvalidParameter(format!(
            "CT parameter cortical_bmd_mg_cm3 ({b_c}) exceeds the BMD of fully dense bone \
             tissue ({b_full:.0} mg/cm³ with the density relations in use)"
        )));
    }
    if b_t >= b_c {
        return Err(CtError::InvalidCalibration(format!(
            "the median calibrated BMD of the trabecular region is {b_t:.0} mg/cm³, not below \
             the cortical tissue BMD {b_c} mg/cm³ (trabecular bone is about 50-250 mg/cm³); \
             check the calibration slope ({} mg/cm³ per HU) and intercept ({} mg/cm³)",
            cal.slope_mg_per_hu, cal.intercept_mg_cm3
        )));
    }

    // Compartments.
    let v_c = density.volume_fraction(b_c);
    let v_t = density.volume_fraction(b_t);
    let mut cortical_share = Vec::with_capacity(count);
    let mut initial_volume_fraction: Vec<[f64; COMPARTMENTS]> = Vec::with_capacity(count);
    for (r, &b) in region.iter().zip(&element_bmd) {
        match r {
            Region::Trabecular => {
                cortical_share.push(0.0);
                // Clamped to fully dense tissue: a trabecular element cannot hold more.
                let v = density.volume_fraction(b.max(1.0)).min(1.0);
                initial_volume_fraction.push([0.0, v]);
            }
            Region::Cortical | Region::Endplate => {
                let s = ((b - b_t) / (b_c - b_t)).clamp(0.0, 1.0);
                cortical_share.push(s);
                initial_volume_fraction.push([
                    if s > 0.0 { v_c } else { 0.0 },
                    if s < 1.0 { v_t } else { 0.0 },
                ]);
            }
        }
    }

    Ok(CtBuild {
        vertebra: Vertebra {
            grid,
            voxel,
            region,
            cortical_share,
            initial_volume_fraction,
            source: source.to_string(),
        },
        element_bmd,
        trabecular_bmd: b_t,
    })
}

/// The data length matches the dimensions and the voxel sizes are finite and positive.
fn check_volume(volume: &Volume) -> Result<(), CtError> {
    let d = volume.dims();
    if d.is_empty() || d.checked_len() != Some(volume.data.len()) {
        return Err(CtError::InvalidVolume(format!(
            "the CT volume of {:?} voxels holds {} samples",
            d.as_array(),
            volume.data.len()
        )));
    }
    let h = volume.grid.voxel_size_mm;
    if !h.iter().all(|v| v.is_finite() && *v > 0.0) {
        return Err(CtError::InvalidVolume(format!(
            "the CT volume has voxel size {h:?} mm; every component must be finite and positive"
        )));
    }
    Ok(())
}

/// The box lies inside the volume and has at least [`MIN_BOX_SIDE`] voxels per side.
fn check_box(b: &VoxelBox, volume: Dims) -> Result<(), CtError> {
    let size = b.dims.as_array();
    let vol = volume.as_array();
    let describe = || {
        format!(
            "vertebral-body box at {:?} of {:?} voxels (volume of {:?} voxels)",
            b.min, size, vol
        )
    };
    if let Some(axis) = (0..3).find(|&a| size[a] < MIN_BOX_SIDE) {
        return Err(CtError::InvalidBox(format!(
            "{}: it is {} voxels along {}; each side must be at least {MIN_BOX_SIDE} voxels{}",
            describe(),
            size[axis],
            ["x", "y", "z"][axis],
            if size.contains(&0) {
                " (set CtParams::box_voxels)"
            } else {
                ""
            }
        )));
    }
    if let Some(axis) = (0..3).find(|&a| b.min[a].checked_add(size[a]).is_none_or(|hi| hi > vol[a]))
    {
        return Err(CtError::InvalidBox(format!(
            "{}: it does not lie inside the volume along {} (voxels {} to {} of 0 to {})",
            describe(),
            ["x", "y", "z"][axis],
            b.min[axis],
            b.min[axis].saturating_add(size[axis]).saturating_sub(1),
            vol[axis] - 1
        )));
    }
    Ok(())
}

/// Block mean by an integer factor per axis; trailing voxels that do not fill a block are
/// dropped, the origin moves to the centre of the first block.
fn block_mean(grid: &Grid, data: &[f32], f: [usize; 3]) -> (Grid, Vec<f32>) {
    let d = grid.dims;
    if f == [1, 1, 1] {
        return (*grid, data.to_vec());
    }
    let out = Dims::new(d.nx / f[0], d.ny / f[1], d.nz / f[2]);
    let mut sums = vec![0.0f64; out.len()];
    for oz in 0..out.nz {
        for z in oz * f[2]..(oz + 1) * f[2] {
            for y in 0..out.ny * f[1] {
                let orow = out.index(0, y / f[1], oz);
                let row = d.index(0, y, z);
                for x in 0..out.nx * f[0] {
                    sums[orow + x / f[0]] += data[row + x] as f64;
                }
            }
        }
    }
    let inv = 1.0 / (f[0] * f[1] * f[2]) as f64;
    let h = grid.voxel_size_mm;
    let half = |a: usize| (f[a] as f64 - 1.0) / 2.0;
    let out_grid = Grid {
        dims: out,
        voxel_size_mm: [h[0] * f[0] as f64, h[1] * f[1] as f64, h[2] * f[2] as f64],
        origin_mm: grid.world_from_voxel(half(0), half(1), half(2)),
    };
    (
        out_grid,
        sums.into_iter().map(|s| (s * inv) as f32).collect(),
    )
}

/// Value at quantile `q` in [0, 1] (nearest rank; reorders `values`, which is non-empty).
fn percentile(values: &mut [f32], q: f64) -> f32 {
    let k = ((values.len() - 1) as f64 * q).round() as usize;
    *values.select_nth_unstable_by(k, |a, b| a.total_cmp(b)).1
}

fn finite_range(values: &[f32]) -> (f32, f32) {
    values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// The calibrated values must look like a CT in HU run through a phantom fit (step 3 of
/// [`vertebra_from_ct`]).
fn check_calibration(bmd: &[f32], smooth: &[f32], params: &CtParams) -> Result<(), CtError> {
    let cal = params.calibration;
    let fit = format!(
        "slope {} mg/cm³ per HU, intercept {} mg/cm³",
        cal.slope_mg_per_hu, cal.intercept_mg_cm3
    );
    let [soft_lo, soft_hi] = SOFT_TISSUE_RANGE_MG_CM3;
    let limit = params.bone_threshold_mg_cm3.min(soft_hi) as f32;
    let mut soft: Vec<f32> = smooth.iter().copied().filter(|&v| v < limit).collect();
    if soft.len() * 100 < smooth.len() {
        let mut all = smooth.to_vec();
        let p1 = percentile(&mut all, 0.01) as f64;
        if p1 > soft_hi {
            return Err(CtError::InvalidCalibration(format!(
                "found no soft tissue in the box: the calibrated BMD of its least dense 1 % is \
                 {p1:.0} mg/cm³ or more, so soft tissue would be at about {p1:.0} mg/cm³ where \
                 {soft_lo} to {soft_hi} is expected ({fit}). Is the slope in mg/cm³ per HU and \
                 the volume in HU (not raw stored values without the rescale intercept)?"
            )));
        }
        return Err(CtError::InvalidBox(format!(
            "vertebral-body box at {:?} of {:?} voxels holds almost no soft tissue (under 1 % \
             of it is below {limit} mg/cm³): it must enclose the vertebral body in x and y \
             with some soft tissue around it",
            params.box_voxels.min,
            params.box_voxels.dims.as_array()
        )));
    }
    let soft_median = percentile(&mut soft, 0.5) as f64;
    drop(soft);
    if !(soft_lo..=soft_hi).contains(&soft_median) {
        let hint = if soft_median < soft_lo {
            "Is the slope in mg/cm³ per HU and the volume in HU, and does the box lie inside \
             the body (not in air)?"
        } else {
            "Is the slope in mg/cm³ per HU and the volume in HU (not raw stored values \
             without the rescale intercept)?"
        };
        return Err(CtError::InvalidCalibration(format!(
            "the calibrated BMD of soft tissue (median of the box's voxels below {limit} \
             mg/cm³) is {soft_median:.0} mg/cm³, outside the expected {soft_lo} to {soft_hi} \
             mg/cm³ ({fit}). {hint}"
        )));
    }
    let mut all = bmd.to_vec();
    let p99 = percentile(&mut all, 0.99) as f64;
    let [p99_lo, p99_hi] = P99_RANGE_MG_CM3;
    if p99 < p99_lo {
        return Err(CtError::InvalidCalibration(format!(
            "the densest 1 % of the box has a calibrated BMD of only {p99:.0} mg/cm³ (below \
             {p99_lo}): the box holds no cortical bone or the slope is too small ({fit}). Is \
             the slope in mg/cm³ per HU and the volume in HU?"
        )));
    }
    if p99 > p99_hi {
        return Err(CtError::InvalidCalibration(format!(
            "the densest 1 % of the box has a calibrated BMD of {p99:.0} mg/cm³, above \
             {p99_hi} and denser than any bone tissue (cortical bone is about 1000-1200 \
             mg/cm³): the slope is too large ({fit}) or the box holds metal or contrast agent"
        )));
    }
    Ok(())
}

/// Fills, in each z slice, the background not 4-connected to the slice border.
fn fill_slice_cavities(d: Dims, bone: &mut [bool]) {
    let (nx, ny) = (d.nx, d.ny);
    let plane = nx * ny;
    let mut outside = vec![false; plane];
    let mut stack = Vec::new();
    for slice in bone.chunks_mut(plane) {
        outside.fill(false);
        stack.clear();
        for y in 0..ny {
            for x in 0..nx {
                let c = x + nx * y;
                let border = x == 0 || y == 0 || x + 1 == nx || y + 1 == ny;
                if border && !slice[c] {
                    outside[c] = true;
                    stack.push(c);
                }
            }
        }
        while let Some(c) = stack.pop() {
            let (x, y) = (c % nx, c / nx);
            let mut visit = |n: usize| {
                if !slice[n] && !outside[n] {
                    outside[n] = true;
                    stack.push(n);
                }
            };
            if x > 0 {
                visit(c - 1);
            }
            if x + 1 < nx {
                visit(c + 1);
            }
            if y > 0 {
                visit(c - nx);
            }
            if y + 1 < ny {
                visit(c + nx);
            }
        }
        for (b, o) in slice.iter_mut().zip(&outside) {
            *b = !*o;
        }
    }
}

/// The bounding box of the bone, widened by one voxel in x and y (within the grid).
fn bone_box(d: Dims, bone: &[bool]) -> VoxelBox {
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    for (i, _) in bone.iter().enumerate().filter(|(_, b)| **b) {
        let c = d.coords(i);
        for a in 0..3 {
            lo[a] = lo[a].min(c[a]);
            hi[a] = hi[a].max(c[a]);
        }
    }
    let n = d.as_array();
    for a in 0..2 {
        lo[a] = lo[a].saturating_sub(1);
        hi[a] = (hi[a] + 1).min(n[a] - 1);
    }
    VoxelBox {
        min: lo,
        dims: Dims::new(hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1),
    }
}

/// Drops the bottom and top bone layers while they hold less than
/// [`MIN_END_LAYER_FRACTION`] of the largest cross-section.
fn trim_sparse_end_layers(d: Dims, bone: &mut [bool]) {
    let plane = d.nx * d.ny;
    let area: Vec<usize> = bone
        .chunks(plane)
        .map(|s| s.iter().filter(|&&b| b).count())
        .collect();
    let largest = area.iter().copied().max().unwrap_or(0);
    let keep = |a: usize| a > 0 && a as f64 >= MIN_END_LAYER_FRACTION * largest as f64;
    let (Some(lo), Some(hi)) = (
        area.iter().position(|&a| keep(a)),
        area.iter().rposition(|&a| keep(a)),
    ) else {
        return;
    };
    for (z, slice) in bone.chunks_mut(plane).enumerate() {
        if z < lo || z > hi {
            slice.fill(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOFT_HU: f64 = 40.0;
    const TRAB_HU: f64 = 190.0;
    const CORTEX_HU: f64 = 1200.0;
    const ENDPLATE_HU: f64 = 1000.0;
    const ORIGIN: [f64; 3] = [-10.0, 5.0, 100.0];

    /// A 60 x 50 x 36 CT at 0.5 mm in integer HU: soft tissue around an elliptic cylinder
    /// (semi-axes 12 and 9 mm, centred in x and y) from z = 2 to 16 mm of trabecular bone with
    /// a 1.5 mm cortex and 1 mm endplates, uniform noise of ±`noise` HU from an LCG.
    /// `spike`: a 2 x 2 mm bone post rising from the superior endplate to the top of the
    /// volume (2 mm).
    fn synthetic_ct(noise: f64, spike: bool) -> Volume {
        let dims = Dims::new(60, 50, 36);
        let h = 0.5;
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let (a, b, cortex) = (12.0, 9.0, 1.5);
        let mut data = Vec::with_capacity(dims.len());
        for z in 0..dims.nz {
            for y in 0..dims.ny {
                for x in 0..dims.nx {
                    let px = (x as f64 + 0.5) * h - 15.0;
                    let py = (y as f64 + 0.5) * h - 12.5;
                    let outer = (px / a).powi(2) + (py / b).powi(2) <= 1.0;
                    let inner = (px / (a - cortex)).powi(2) + (py / (b - cortex)).powi(2) <= 1.0;
                    let hu = if (4..32).contains(&z) && outer {
                        if !inner {
                            CORTEX_HU
                        } else if !(6..30).contains(&z) {
                            ENDPLATE_HU
                        } else {
                            TRAB_HU
                        }
                    } else if spike && (32..38).contains(&z) && px.abs() < 1.0 && py.abs() < 1.0 {
                        CORTEX_HU
                    } else {
                        SOFT_HU
                    };
                    data.push((hu + 2.0 * noise * uniform()).round() as f32);
                }
            }
        }
        let grid = Grid {
            dims,
            voxel_size_mm: [h; 3],
            origin_mm: ORIGIN,
        };
        Volume::new(grid, VoxelData::F32(data)).unwrap()
    }

    fn whole(v: &Volume) -> VoxelBox {
        VoxelBox {
            min: [0; 3],
            dims: v.dims(),
        }
    }

    fn median_by_region(b: &CtBuild, r: Region, f: impl Fn(usize) -> f64) -> f64 {
        let mut v: Vec<f32> = (0..b.vertebra.element_count())
            .filter(|&e| b.vertebra.region[e] == r)
            .map(|e| f(e) as f32)
            .collect();
        percentile(&mut v, 0.5) as f64
    }

    #[test]
    fn synthetic_ct_gives_three_regions_with_their_bmd_and_shares() {
        let ct = synthetic_ct(30.0, false);
        let d = DensityRelations::default();
        let built = build(&ct, &CtParams::new(whole(&ct)), &d, "synthetic").unwrap();
        let v = &built.vertebra;
        assert_eq!(v.source, "synthetic");
        // 1 mm elements; z cropped to the 14 bone layers (z = 2 to 16 mm).
        assert_eq!(v.grid.voxel_size_mm, [1.0; 3]);
        assert_eq!(v.grid.dims.nz, 14);
        // Origin: centre of the first 2x2x2 block of the bone's first layer (input voxels 4, 5).
        assert!((v.grid.origin_mm[2] - (ORIGIN[2] + 4.5 * 0.5)).abs() < 1e-9);
        let n = v.element_count() as f64;
        let centre: Vec<f64> = (0..2)
            .map(|a| {
                v.voxel
                    .iter()
                    .map(|&i| {
                        let c = v.grid.dims.coords(i);
                        v.grid
                            .world_from_voxel(c[0] as f64, c[1] as f64, c[2] as f64)[a]
                    })
                    .sum::<f64>()
                    / n
            })
            .collect();
        // The axis lies at 15 and 12.5 mm from the volume's corner, i.e. 0.25 mm less from the
        // centre of voxel (0, 0, 0).
        assert!((centre[0] - (ORIGIN[0] + 14.75)).abs() < 0.3, "{centre:?}");
        assert!((centre[1] - (ORIGIN[1] + 12.25)).abs() < 0.3, "{centre:?}");
        // The body is pi * 12 * 9 mm² x 14 mm = 4750 mm³.
        let expect = std::f64::consts::PI * 12.0 * 9.0 * 14.0;
        assert!(
            (n - expect).abs() < 0.08 * expect,
            "{n} elements vs {expect:.0}"
        );
        let [trab, cort, endp] = v.region_counts();
        assert!(
            trab > 2500 && cort > 400 && endp > 500,
            "{:?}",
            v.region_counts()
        );
        // Endplates are exactly the bottom and top layers.
        for (e, &i) in v.voxel.iter().enumerate() {
            let z = v.grid.dims.coords(i)[2];
            assert_eq!(
                v.region[e] == Region::Endplate,
                z == 0 || z == 13,
                "element {e} at z {z}"
            );
        }

        // Trabecular BMD: 0.8 * 190 = 152 mg/cm³.
        assert!(
            (built.trabecular_bmd - 152.0).abs() < 5.0,
            "{}",
            built.trabecular_bmd
        );
        let bmd = |e| v.element_bmd_mg_cm3(e, v.initial_volume_fraction[e], &d);
        assert!((median_by_region(&built, Region::Trabecular, bmd) - 152.0).abs() < 5.0);
        // Endplates: 0.8 * 1000 = 800 mg/cm³ (one 1 mm layer, partial volume at the rim).
        let endplate = median_by_region(&built, Region::Endplate, bmd);
        assert!((endplate - 800.0).abs() < 30.0, "{endplate}");
        // Shell elements mix the 1.5 mm cortex (960 mg/cm³) with soft tissue and
        // trabecular bone.
        let shell = median_by_region(&built, Region::Cortical, bmd);
        assert!(shell > 400.0 && shell < 960.0, "{shell}");

        // Shares: none in the centrum, partial in the shell and endplates; each element's BMD
        // reproduces its measured BMD, clamped to [b_t, b_c].
        let b_t = built.trabecular_bmd;
        for e in 0..v.element_count() {
            let s = v.cortical_share[e];
            let measured = built.element_bmd[e];
            match v.region[e] {
                Region::Trabecular => {
                    assert_eq!(s, 0.0);
                    assert_eq!(v.initial_volume_fraction[e][0], 0.0);
                    assert!((bmd(e) - measured.max(1.0)).abs() < 1e-9);
                }
                Region::Cortical | Region::Endplate => {
                    assert!((0.0..=1.0).contains(&s));
                    assert!((bmd(e) - measured.clamp(b_t, 1000.0)).abs() < 1e-9);
                }
            }
        }
        let share = median_by_region(&built, Region::Endplate, |e| v.cortical_share[e]);
        let expect = (800.0 - b_t) / (1000.0 - b_t);
        assert!((share - expect).abs() < 0.05, "{share} vs {expect}");
        let share = median_by_region(&built, Region::Cortical, |e| v.cortical_share[e]);
        assert!(share > 0.2 && share < 0.95, "{share}");
    }

    #[test]
    fn box_inside_the_body_in_z_and_native_voxels_also_work() {
        let ct = synthetic_ct(30.0, false);
        let mut p = CtParams::new(VoxelBox {
            min: [2, 2, 8],
            dims: Dims::new(56, 46, 20),
        });
        p.target_voxel_mm = None;
        let v = vertebra_from_ct(&ct, &p, &DensityRelations::default(), "cut").unwrap();
        // 0.5 mm voxels, the box cuts the body: its z range is all bone.
        assert_eq!(v.grid.voxel_size_mm, [0.5; 3]);
        assert_eq!(v.grid.dims.nz, 20);
        assert!((v.grid.origin_mm[2] - (ORIGIN[2] + 8.0 * 0.5)).abs() < 1e-9);
        assert!(v.region_counts().iter().all(|&c| c > 0));
    }

    #[test]
    fn box_outside_the_volume_thin_or_unset_is_an_invalid_box() {
        let ct = synthetic_ct(0.0, false);
        let d = DensityRelations::default();
        let cases = [
            VoxelBox {
                min: [50, 0, 0],
                dims: Dims::new(20, 50, 36),
            },
            VoxelBox {
                min: [usize::MAX, 0, 0],
                dims: Dims::new(20, 50, 36),
            },
            VoxelBox {
                min: [0, 0, 0],
                dims: Dims::new(60, 50, 3),
            },
        ];
        for b in cases {
            let err = vertebra_from_ct(&ct, &CtParams::new(b), &d, "t").unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, CtError::InvalidBox(_)), "{err:?}");
            assert!(msg.contains("[60, 50, 36]"), "{msg}");
            assert!(msg.contains(&format!("{:?}", b.dims.as_array())), "{msg}");
        }
        let err = vertebra_from_ct(&ct, &CtParams::default(), &d, "t").unwrap_err();
        assert!(err.to_string().contains("box_voxels"), "{err}");
        // 6 voxels at 0.5 mm become 3 at 1 mm.
        let err = vertebra_from_ct(
            &ct,
            &CtParams::new(VoxelBox {
                min: [0; 3],
                dims: Dims::new(60, 50, 6),
            }),
            &d,
            "t",
        )
        .unwrap_err();
        assert!(matches!(err, CtError::InvalidBox(_)), "{err:?}");
        assert!(err.to_string().contains("[30, 25, 3]"), "{err}");
    }

    #[test]
    fn too_few_bone_layers_is_an_invalid_box_and_a_sparse_tip_is_trimmed() {
        let d = DensityRelations::default();
        // z 0-12 (0-6 mm): bone only from 2 to 6 mm, 4 layers.
        let ct = synthetic_ct(30.0, false);
        let b = VoxelBox {
            min: [0; 3],
            dims: Dims::new(60, 50, 12),
        };
        let err = vertebra_from_ct(&ct, &CtParams::new(b), &d, "t").unwrap_err();
        assert!(matches!(err, CtError::InvalidBox(_)), "{err:?}");
        assert!(err.to_string().contains("spans only 4 layers"), "{err}");
        // A post sticking out above the superior endplate is dropped: the top layer is the
        // endplate, where the load enters.
        let ct = synthetic_ct(30.0, true);
        let v = vertebra_from_ct(&ct, &CtParams::new(whole(&ct)), &d, "t").unwrap();
        assert_eq!(v.grid.dims.nz, 14);
        let top = v
            .voxel
            .iter()
            .filter(|&&i| v.grid.dims.coords(i)[2] == 13)
            .count();
        assert!(top > 300, "{top}");
    }

    #[test]
    fn unusable_calibrations_are_rejected_with_the_reason() {
        let ct = synthetic_ct(30.0, false);
        let d = DensityRelations::default();
        let run = |slope: f64, intercept: f64, vol: &Volume| {
            let mut p = CtParams::new(whole(vol));
            p.calibration = HuCalibration {
                slope_mg_per_hu: slope,
                intercept_mg_cm3: intercept,
            };
            vertebra_from_ct(vol, &p, &d, "t").unwrap_err()
        };
        for slope in [0.0, f64::NAN, -0.8, 100.0] {
            let err = run(slope, 0.0, &ct);
            assert!(matches!(err, CtError::InvalidCalibration(_)), "{err:?}");
            assert!(err.to_string().contains("slope_mg_per_hu"), "{err}");
        }
        let err = run(0.8, f64::INFINITY, &ct);
        assert!(err.to_string().contains("intercept_mg_cm3"), "{err}");

        // Slope 8 passes the range check but puts soft tissue at 320 mg/cm³.
        let err = run(8.0, 0.0, &ct);
        assert!(matches!(err, CtError::InvalidCalibration(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("soft tissue") && msg.contains("HU"), "{msg}");
        // Stored values (HU + 1024) taken for HU: soft tissue at 0.8 * 1064 = 851 mg/cm³.
        let mut stored = ct.clone();
        let VoxelData::F32(v) = &mut stored.data else {
            unreachable!()
        };
        v.iter_mut().for_each(|x| *x += 1024.0);
        let err = run(0.8, 0.0, &stored);
        assert!(matches!(err, CtError::InvalidCalibration(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("soft tissue") && msg.contains("rescale"),
            "{msg}"
        );
        // A slope 16 times too small: the densest bone reads 60 mg/cm³.
        let err = run(0.05, 0.0, &ct);
        assert!(matches!(err, CtError::InvalidCalibration(_)), "{err:?}");
        assert!(err.to_string().contains("densest 1 %"), "{err}");
    }

    #[test]
    fn out_of_range_parameters_name_the_parameter() {
        let ct = synthetic_ct(0.0, false);
        let d = DensityRelations::default();
        let base = CtParams::new(whole(&ct));
        let cases: [(&str, CtParams); 5] = [
            (
                "bone_threshold_mg_cm3",
                CtParams {
                    bone_threshold_mg_cm3: -5.0,
                    ..base
                },
            ),
            (
                "shell_thickness_mm",
                CtParams {
                    shell_thickness_mm: f64::NAN,
                    ..base
                },
            ),
            (
                "cortical_bmd_mg_cm3",
                CtParams {
                    cortical_bmd_mg_cm3: 50.0,
                    ..base
                },
            ),
            (
                "target_voxel_mm",
                CtParams {
                    target_voxel_mm: Some(0.0),
                    ..base
                },
            ),
            (
                "smoothing_sigma_voxels",
                CtParams {
                    smoothing_sigma_voxels: -1.0,
                    ..base
                },
            ),
        ];
        for (name, p) in cases {
            let err = vertebra_from_ct(&ct, &p, &d, "t").unwrap_err();
            assert!(matches!(err, CtError::InvalidParameter(_)), "{err:?}");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn threshold_above_all_bone_is_no_bone_naming_the_threshold() {
        let ct = synthetic_ct(30.0, false);
        let mut p = CtParams::new(whole(&ct));
        p.bone_threshold_mg_cm3 = 1500.0;
        p.cortical_bmd_mg_cm3 = 1800.0;
        let err = vertebra_from_ct(&ct, &p, &DensityRelations::default(), "t").unwrap_err();
        assert!(matches!(err, CtError::NoBone(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("1500 mg/cm³") && msg.contains("calibration"),
            "{msg}"
        );
    }

    #[test]
    fn nifti_and_dicom_files_give_the_in_memory_model_and_errors_name_the_path() {
        let ct = synthetic_ct(30.0, false);
        let d = DensityRelations::default();
        let p = CtParams::new(whole(&ct));
        let reference = vertebra_from_ct(&ct, &p, &d, "memory").unwrap();
        let same = |v: &Vertebra| {
            assert_eq!(v.grid, reference.grid);
            assert_eq!(v.voxel, reference.voxel);
            assert_eq!(v.region, reference.region);
            assert_eq!(v.cortical_share, reference.cortical_share);
            assert_eq!(v.initial_volume_fraction, reference.initial_volume_fraction);
        };

        let dir = tempfile::tempdir().unwrap();
        let nii = dir.path().join("spine.nii.gz");
        crate::volume::save_volume(&ct, &nii).unwrap();
        let v = vertebra_from_ct_file(&nii, &p, &d).unwrap();
        same(&v);
        assert_eq!(v.source, nii.display().to_string());

        // A DICOM series of the same HU (stored = HU + 1024, rescale intercept -1024).
        let dcm = dir.path().join("series");
        std::fs::create_dir(&dcm).unwrap();
        let VoxelData::F32(hu) = &ct.data else {
            unreachable!()
        };
        let dims = ct.dims();
        let plane = dims.nx * dims.ny;
        for z in 0..dims.nz {
            let stored: Vec<i32> = hu[z * plane..(z + 1) * plane]
                .iter()
                .map(|&h| h as i32 + 1024)
                .collect();
            let spec = crate::volume::dicom::tests::SliceSpec {
                rows: dims.ny as u16,
                columns: dims.nx as u16,
                position: [ORIGIN[0], ORIGIN[1], ORIGIN[2] + 0.5 * z as f64],
                orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                pixel_spacing: [0.5, 0.5],
                bits: 16,
                signed: true,
                slope: 1.0,
                intercept: -1024.0,
                stored: &stored,
                transfer_syntax: dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN,
            };
            crate::volume::dicom::tests::write_slice(&dcm.join(format!("IM{z:03}")), &spec, z);
        }
        same(&vertebra_from_ct_file(&dcm, &p, &d).unwrap());

        // Errors name the path: a missing file, and a box that does not fit.
        let missing = dir.path().join("absent.nii");
        let err = vertebra_from_ct_file(&missing, &p, &d).unwrap_err();
        assert!(matches!(err, CtError::Volume(_)), "{err:?}");
        assert!(err.to_string().contains("absent.nii"), "{err}");
        let bad = CtParams::new(VoxelBox {
            min: [10, 0, 0],
            dims,
        });
        let err = vertebra_from_ct_file(&nii, &bad, &d).unwrap_err();
        assert!(matches!(err, CtError::InvalidBox(_)), "{err:?}");
        assert!(
            err.to_string().starts_with(&nii.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn slice_cavities_are_filled_but_open_bays_are_not() {
        // A 7 x 7 ring with a gap on the right edge at y = 5: the inside of the closed part
        // (one slice) is filled, the other slice's open bay stays empty.
        let d = Dims::new(7, 7, 2);
        let mut bone = vec![false; d.len()];
        for z in 0..2 {
            for i in 1..6 {
                for (x, y) in [(i, 1), (i, 5), (1, i), (5, i)] {
                    bone[d.index(x, y, z)] = true;
                }
            }
        }
        bone[d.index(3, 5, 1)] = false;
        fill_slice_cavities(d, &mut bone);
        assert!(bone[d.index(3, 3, 0)] && bone[d.index(2, 4, 0)]);
        assert!(!bone[d.index(3, 3, 1)] && !bone[d.index(0, 0, 0)]);
    }
}
