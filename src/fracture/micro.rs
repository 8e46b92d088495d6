//! Micro-resolved compression of a trabecular cube with tissue-level damage (issue 6 §4).
//!
//! Every bone voxel is one element of homogeneous tissue: E = 10 GPa, ν = 0.3 (the usual
//! effective tissue modulus of voxel micro-FE, van Rietbergen et al. 1995), and the damage law
//! of [`super::damage`] with tissue yield strains of 1.0 % in compression and 0.6 % in
//! tension, the values Niebur et al. (2000, J Biomech 33:1575) back-calculated for trabecular
//! tissue (1.01 % and 0.60 %) from high-resolution FE of bovine tibial specimens and close to
//! those of Bayraktar et al. (2004, J Biomech 37:27) for human femoral trabecular tissue. The
//! tissue fracture energy, 0.5 N/mm (= 0.5 kJ/m²), is of the order measured for human cortical
//! bone (Zioupos & Currey 1998, Bone 22:57); with the crack band it sets how fast a voxel
//! softens. Damage is capped at 0.999 (0.1 % residual stiffness, which keeps the operator
//! positive definite): a broken strut carries next to nothing, so the cube's load falls after
//! its peak. With the earlier cap of 0.9 every failed voxel kept carrying load at growing
//! strain, a hardening plateau: the 64³ micro-CT core's load still rose at 1.8 % strain after
//! 1.5 hours (BENCHMARKS.md). The cube is compressed between a fixed bottom and a sliding rigid
//! top plate.

use serde::Serialize;

use super::FractureError;
use super::damage::DamageParams;
use super::model::{ElementMaterial, FractureModel};
use super::solver::{CurvePoint, FractureParams, FractureResult};
use crate::volume::BoneMask;

/// Tissue properties of a micro-resolved model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TissueParams {
    pub young_modulus_mpa: f64,
    pub poisson_ratio: f64,
    pub damage: DamageParams,
}

impl Default for TissueParams {
    fn default() -> Self {
        Self {
            young_modulus_mpa: 10_000.0,
            poisson_ratio: 0.3,
            damage: DamageParams {
                yield_strain_compression: 0.010,
                yield_strain_tension: 0.006,
                fracture_energy_n_per_mm: 0.5,
                reference_modulus_mpa: 10_000.0,
                max_damage: 0.999,
            },
        }
    }
}

/// The fracture model of a segmented trabecular cube.
pub fn micro_model(mask: &BoneMask, tissue: &TissueParams) -> Result<FractureModel, FractureError> {
    let h = mask.grid.voxel_volume_mm3().cbrt();
    let law = tissue.damage.element_law(tissue.young_modulus_mpa, h)?;
    let n = mask.count();
    FractureModel::new(
        mask.clone(),
        vec![ElementMaterial::single(law); n],
        tissue.poisson_ratio,
        format!(
            "trabecular cube {}×{}×{} at {:.4} mm, BV/TV {:.3}",
            mask.grid.dims.nx,
            mask.grid.dims.ny,
            mask.grid.dims.nz,
            h,
            mask.bv_tv()
        ),
    )
}

/// Secant iterations allowed per increment of a micro-resolved run. When a strut snaps through,
/// the iteration follows the cascade to the broken state (see the solver's Aitken relaxation),
/// which took up to 49 iterations on the 64³ micro-CT core (BENCHMARKS.md, "Micro-resolved
/// core"); the vertebra's 25 would cut the step there instead, and a snap-through does not go
/// away with a smaller step.
pub const MICRO_MAX_ITERATIONS: usize = 60;

/// `params` for a micro-resolved model: at least [`MICRO_MAX_ITERATIONS`] iterations.
pub fn micro_run_params(params: &FractureParams) -> FractureParams {
    FractureParams {
        max_iterations: params.max_iterations.max(MICRO_MAX_ITERATIONS),
        ..*params
    }
}

/// Offset of the apparent yield point, as a strain (0.2 %).
pub const YIELD_OFFSET_STRAIN: f64 = 0.002;

/// Apparent measures of a cube compression.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ApparentMeasures {
    /// Peak load / box cross-section (MPa).
    pub apparent_strength_mpa: f64,
    /// Plate displacement at the peak / box height.
    pub strain_at_peak: f64,
    /// Initial stiffness · height / box cross-section (MPa).
    pub apparent_modulus_mpa: f64,
    /// Apparent yield stress by the 0.2 % offset rule (MPa): where the stress-strain curve
    /// crosses the initial elastic line shifted by [`YIELD_OFFSET_STRAIN`], the definition of
    /// nonlinear micro-FE studies of trabecular bone (Niebur et al. 2000, J Biomech 33:1575;
    /// Bayraktar et al. 2004, J Biomech 37:27). `None` when the curve never crosses it.
    pub offset_yield_strength_mpa: Option<f64>,
    /// Apparent strain at that yield point.
    pub offset_yield_strain: Option<f64>,
}

/// The first crossing of the curve `F(w)` with the line `k · (w − w_offset)`, linearly
/// interpolated between curve points: `(w, F)` there, or `None` if the curve stays above it.
pub fn offset_yield_point(
    curve: &[CurvePoint],
    stiffness_n_per_mm: f64,
    offset_mm: f64,
) -> Option<(f64, f64)> {
    let gap = |p: &CurvePoint| p.load_n - stiffness_n_per_mm * (p.displacement_mm - offset_mm);
    let first_below = curve.iter().position(|p| gap(p) <= 0.0)?;
    let b = &curve[first_below];
    if first_below == 0 {
        return Some((b.displacement_mm, b.load_n));
    }
    let a = &curve[first_below - 1];
    let (ga, gb) = (gap(a), gap(b));
    let t = ga / (ga - gb);
    Some((
        a.displacement_mm + t * (b.displacement_mm - a.displacement_mm),
        a.load_n + t * (b.load_n - a.load_n),
    ))
}

/// Apparent strength, strain at peak and modulus of a run on `model`.
pub fn apparent_measures(model: &FractureModel, result: &FractureResult) -> ApparentMeasures {
    let area = model.box_area_mm2();
    let height = model.height_mm();
    let yield_point = offset_yield_point(
        &result.curve,
        result.stiffness_n_per_mm,
        YIELD_OFFSET_STRAIN * height,
    );
    ApparentMeasures {
        apparent_strength_mpa: result.peak_load_n / area,
        strain_at_peak: result.displacement_at_peak_mm / height,
        apparent_modulus_mpa: result.stiffness_n_per_mm * height / area,
        offset_yield_strength_mpa: yield_point.map(|(_, f)| f / area),
        offset_yield_strain: yield_point.map(|(w, _)| w / height),
    }
}
