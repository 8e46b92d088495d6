//! # osteolab: the simulation core
//!
//! Multiscale simulation of vertebral bone loss and recovery after Vemparala et al. (2025,
//! Int J Numer Method Biomed Eng, doi 10.1002/cnm.70097). This crate knows nothing of windows,
//! Bevy or egui: the app (`src/app`, feature `gui`) and the command line are consumers of it.
//!
//! - [`volume`]: voxel grids, readers and writers, segmentation.
//! - [`morph`]: trabecular morphometry (BoneJ / Scanco conventions).
//! - [`fe`]: matrix-free voxel micro-FE with a multigrid-preconditioned CG solver.
//! - [`fracture`]: vertebral compression to failure with continuum damage.
//! - [`shapeopt`]: level-set adaptation of a trabecular structure to a BV/TV target.
//! - [`multiscale`]: the macroscale run driving the microstructure through checkpoints.
//! - [`mesh`]: surface extraction and exporters.
//! - [`runner`]: the simulation thread (commands in, events and snapshots out).
//! - [`sample_data`]: where tests and benchmarks find the shared micro-CT sample.

// Index loops mirror the formulas (K[i][j], B[m][i]) in the numerical code; iterator
// rewrites would obscure them.
#![allow(clippy::needless_range_loop)]

pub mod atomic;
pub mod fe;
pub mod fracture;
pub mod gan;
pub mod mesh;
pub mod morph;
pub mod multiscale;
pub mod plot;
pub mod remodel;
pub mod rng;
pub mod runner;
pub mod sample_data;
pub mod shapeopt;
pub mod synthetic;
pub mod volume;
