//! cortexflow: a streaming dataflow engine that finds brain-like functional organisation
//! inside language models.
//!
//! Layout (dependencies point one way: kernels ← operators ← dataflows; model and io are
//! leaves):
//! - [`kernels`]: pure numerics (HRF regressors, noise processes, …);
//! - [`io`]: NIfTI, stimuli, BIDS discovery, Parquet tables, atomic writes;
//! - [`model`]: language models with artificial-neuron taps;
//! - [`operators`]: timely/differential operators wrapping the kernels.

pub mod error;
pub mod io;
pub mod kernels;
pub mod model;
pub mod operators;

pub use error::{Error, Result};
