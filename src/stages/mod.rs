//! The analysis stages, typed inputs to typed results: each one a step of the method that a
//! command, the store or the engine runs.
//!
//! - [`responses`]: stories through a language model onto the scan clock;
//! - [`basis`]: temporal atoms and sparse codes of the AN responses;
//! - [`encode`]: voxel-wise encoding models of each subject's BOLD;
//! - [`group`]: random-effects group maps of every atom;
//! - [`mapping`]: atom maps matched to functional brain networks, AN sub-groups, metrics;
//! - [`ties`]: which ANs belong to which network ([`profiles`]: each subject's network
//!   profiles, cached);
//! - [`ceiling`]: the noise ceiling of a store (inter-subject correlation);
//! - [`compare`]: organisation metrics of several analyses side by side;
//! - [`population`], [`simulate`]: a synthetic dataset with planted structure;
//! - [`recovery`]: how well a store recovered what was planted;
//! - [`region_tables`]: the results of a store of region time series as tables.

pub mod artefacts;
pub mod basis;
pub mod ceiling;
pub mod confounds;
pub mod compare;
pub mod encode;
pub mod group;
pub mod group_mask;
pub mod join;
pub mod mapping;
pub mod parcellate;
pub mod population;
pub mod profiles;
pub mod recovery;
pub mod region_tables;
pub mod responses;
pub mod simulate;
pub mod ties;
pub mod voxel_model;
