//! slipway-core: the contracts between Slipway's steps and the logic behind them.
//!
//! Every Lambda in `functions/` is a thin shell over a function of this crate, so the same
//! code runs in Lambda, in the `slipway` CLI and in tests.

pub mod aws;
pub mod config;
pub mod error;
pub mod input;
pub mod model;
pub mod state;
pub mod steps;

pub use error::StepError;
