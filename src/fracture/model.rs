//! A fracture model: voxel elements on a grid, each made of one or two bone compartments
//! (e.g. cortical shell and trabecular bone of a macroscale element) that strain together
//! (in parallel, Voigt) and damage independently.

use super::FractureError;
use super::damage::ElementLaw;
use crate::volume::BoneMask;

/// One compartment of an element: its volume share and damage law.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Compartment {
    /// Share of the element volume, in (0, 1].
    pub share: f64,
    pub law: ElementLaw,
}

/// The material of one element: one or two compartments.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ElementMaterial {
    pub parts: [Option<Compartment>; 2],
}

impl ElementMaterial {
    /// A single-compartment element.
    pub fn single(law: ElementLaw) -> Self {
        Self {
            parts: [Some(Compartment { share: 1.0, law }), None],
        }
    }

    /// Undamaged element modulus (MPa): Σ share · E.
    pub fn modulus_mpa(&self) -> f64 {
        self.parts
            .iter()
            .flatten()
            .map(|c| c.share * c.law.young_modulus_mpa)
            .sum()
    }

    /// Secant element modulus (MPa) at compartment damages `d`.
    pub fn secant_modulus_mpa(&self, d: [f64; 2]) -> f64 {
        self.parts
            .iter()
            .zip(d)
            .filter_map(|(c, d)| c.map(|c| c.share * (1.0 - d) * c.law.young_modulus_mpa))
            .sum()
    }
}

/// The structure to break.
#[derive(Clone, Debug)]
pub struct FractureModel {
    /// The element grid and which voxels are elements (z = loading axis).
    pub mask: BoneMask,
    /// Grid index of each element, in grid order (z slowest), as the FE model numbers them.
    pub element_voxel: Vec<usize>,
    /// Material of each element.
    pub materials: Vec<ElementMaterial>,
    /// Poisson's ratio of every element.
    pub poisson_ratio: f64,
    /// What the model is, for reports.
    pub description: String,
}

impl FractureModel {
    /// Builds a model from a mask and one material per bone voxel, given in grid order.
    pub fn new(
        mask: BoneMask,
        materials: Vec<ElementMaterial>,
        poisson_ratio: f64,
        description: impl Into<String>,
    ) -> Result<Self, FractureError> {
        let element_voxel: Vec<usize> = mask
            .voxels
            .iter()
            .enumerate()
            .filter_map(|(i, &b)| b.then_some(i))
            .collect();
        if element_voxel.is_empty() {
            return Err(FractureError::InvalidParameter(
                "the model has no elements".into(),
            ));
        }
        if materials.len() != element_voxel.len() {
            return Err(FractureError::InvalidParameter(format!(
                "{} materials for {} elements",
                materials.len(),
                element_voxel.len()
            )));
        }
        if !(poisson_ratio.is_finite() && poisson_ratio > -1.0 && poisson_ratio < 0.5) {
            return Err(FractureError::InvalidParameter(format!(
                "Poisson's ratio must lie in (-1, 0.5), got {poisson_ratio}"
            )));
        }
        for (e, m) in materials.iter().enumerate() {
            let shares: f64 = m.parts.iter().flatten().map(|c| c.share).sum();
            let ok = m.parts[0].is_some()
                && m.parts
                    .iter()
                    .flatten()
                    .all(|c| c.share > 0.0 && c.share <= 1.0)
                && shares <= 1.0 + 1e-9
                && m.modulus_mpa() > 0.0;
            if !ok {
                return Err(FractureError::InvalidParameter(format!(
                    "element {e}: compartments need shares in (0, 1] summing to at most 1 and a \
                     positive modulus"
                )));
            }
        }
        Ok(Self {
            mask,
            element_voxel,
            materials,
            poisson_ratio,
            description: description.into(),
        })
    }

    pub fn element_count(&self) -> usize {
        self.element_voxel.len()
    }

    /// Element edge length used for the crack band: the cube root of the voxel volume (mm).
    pub fn element_size_mm(&self) -> f64 {
        self.mask.grid.voxel_volume_mm3().cbrt()
    }

    /// Cross-section of the grid box normal to z (mm²).
    pub fn box_area_mm2(&self) -> f64 {
        let e = self.mask.grid.extent_mm();
        e[0] * e[1]
    }

    /// Height of the grid box along z (mm).
    pub fn height_mm(&self) -> f64 {
        self.mask.grid.extent_mm()[2]
    }
}
