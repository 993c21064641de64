//! cortexflow: a streaming dataflow engine that finds brain-like functional organisation
//! inside language models.
//!
//! Layout (dependencies point one way, from the top down; nothing imports back up):
//! - [`engine`]: the dataflows over a store (cluster, encoding, stories, update, watch,
//!   demo);
//! - [`report`]: the HTML report and its figures, read from a store;
//! - [`store`]: the analysis store (layout, manifest, run statistics, recipe);
//! - [`stages`]: the analysis steps, typed inputs to typed results (responses, basis,
//!   encode, group, mapping, simulate, recovery);
//! - [`operators`]: timely/differential operators wrapping the kernels;
//! - [`kernels`]: pure numerics (HRF regressors, lasso, dictionary, GLM, ridge, …);
//! - [`io`]: NIfTI, stimuli, BIDS discovery, Parquet tables, atomic writes;
//! - [`model`]: language models with artificial-neuron taps.
//!
//! The `cortexflow` binary (`dataflows/`) parses the command line, makes one library call
//! per command and prints the result.

pub mod engine;
pub mod error;
pub mod io;
pub mod kernels;
pub mod model;
pub mod operators;
pub mod progress;
pub mod report;
pub mod stages;
pub mod store;

pub use error::{Error, Result};
