//! Vertebral compression fracture with continuum damage (design §1.4, §2 "Fracture").
//!
//! - [`damage`]: the isotropic, strain-based damage law with exponential softening and
//!   crack-band regularisation.
//! - [`model`]: a voxel structure whose elements hold one or two bone compartments.
//! - [`solver`]: quasi-static displacement control through rigid plates, secant iteration with
//!   increment cutting, the load–displacement curve and its measures.
//! - [`vertebra`]: the macroscale vertebra at the pre-flight, end-of-flight and recovered
//!   states of the `spaceflight-215` run, with density-dependent stiffness and strength.
//! - [`micro`]: tissue-level damage in a voxel model of a trabecular cube.
//! - [`calibration`]: the fit of the two vertebral parameters to the published result.
//! - [`output`]: CSV, PNG and VTK files of a run.
//!
//! Units: lengths mm, forces N, stresses MPa, energies mJ (= N·mm) unless a name says
//! otherwise (`_kn`, `_j`).

pub mod calibration;
pub mod damage;
pub mod micro;
pub mod model;
pub mod output;
pub mod solver;
pub mod vertebra;

pub use damage::{DamageParams, ElementLaw};
pub use model::{Compartment, ElementMaterial, FractureModel};
pub use solver::{
    CurvePoint, DamageSnapshot, EndPoint, FractureControl, FractureParams, FractureResult,
    LoadDirection, run_to_failure,
};

use crate::fe::FeError;
use crate::remodel::simulation::RemodelError;
use crate::remodel::vertebra::VertebraError;

/// Errors of the fracture module.
#[derive(Debug, thiserror::Error)]
pub enum FractureError {
    #[error("invalid fracture parameter: {0}")]
    InvalidParameter(String),
    #[error("finite-element solve failed: {0}")]
    Fe(#[from] FeError),
    #[error("macroscale run failed: {0}")]
    Remodel(#[from] RemodelError),
    #[error("vertebra model: {0}")]
    Vertebra(#[from] VertebraError),
    #[error("fracture run cancelled")]
    Cancelled,
    #[error("calibration failed: {0}")]
    Calibration(String),
}

#[cfg(test)]
mod tests;
