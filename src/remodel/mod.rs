//! Macroscale mechano-biological remodeling of a vertebra (design §1.1, §2).
pub mod calibration;
pub mod cells;
pub mod ct;
pub mod density;
pub mod law;
pub mod output;
pub mod scenario;
pub mod simulation;
pub mod surface;
pub mod vertebra;
