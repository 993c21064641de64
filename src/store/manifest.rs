//! The manifest: what a store holds (stories, runs), its epochs, the subjects left to
//! refit and the checksum of every file the store wrote. It is rewritten atomically after
//! every change, so a killed command leaves one that says what is left to do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::store::sums::Sums;

/// Version of the store layout; a store of another format is refused.
/// 3: stories carry their TR, files their checksums, and parts being rewritten are named.
pub const FORMAT: u32 = 3;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub cortexflow: String,
    pub recipe: String,
    /// Stories with atoms: name → their scan clock.
    pub stories: BTreeMap<String, StoryEntry>,
    /// Ingested runs by key (`sub-S/task-T/run-R`).
    pub runs: BTreeMap<String, RunEntry>,
    /// Subjects whose fit is older than their runs.
    pub dirty: BTreeSet<String>,
    /// Bumped by every change of the inputs.
    pub epoch: u64,
    /// The epoch the group and map results reflect.
    pub results_epoch: u64,
    /// Parts of the store (relative paths) a command started to rewrite and has not
    /// sealed yet: their files may differ from their sums until it has.
    #[serde(default)]
    pub pending: BTreeSet<String>,
    /// Size and checksum of every file the store wrote, by relative path.
    #[serde(default)]
    pub files: Sums,
}

/// A story's scan clock: its scan count and repetition time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StoryEntry {
    pub scans: usize,
    /// Seconds between scans, as recorded in the story's responses table.
    pub tr: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEntry {
    pub subject: String,
    pub story: String,
    pub bold: PathBuf,
    pub scans: usize,
}
