//! Integration tests: the command line end to end, the solver against ParOSol on micro-CT,
//! and (feature `gui`) the app in a real window. One test binary with modules, to save link
//! time.

mod adapt_cli;
#[cfg(feature = "gui")]
mod app_window;
mod cli;
mod common;
mod fracture_cli;
mod gan_cli;
mod parosol;
mod remodel_cli;
mod run_cli;
