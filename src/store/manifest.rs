//! The manifest: what a store holds (stories, runs), its epochs and the subjects left to
//! refit. It is rewritten atomically after every change, so a killed command leaves one
//! that says what is left to do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Version of the store layout; a store of another format is refused.
pub const FORMAT: u32 = 2;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub cortexflow: String,
    pub recipe: String,
    /// Stories with atoms: name → scans.
    pub stories: BTreeMap<String, usize>,
    /// Ingested runs by key (`sub-S/task-T/run-R`).
    pub runs: BTreeMap<String, RunEntry>,
    /// Subjects whose fit is older than their runs.
    pub dirty: BTreeSet<String>,
    /// Bumped by every change of the inputs.
    pub epoch: u64,
    /// The epoch the group and map results reflect.
    pub results_epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEntry {
    pub subject: String,
    pub story: String,
    pub bold: PathBuf,
    pub scans: usize,
}

