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
    /// The confounds table the run was reduced with, and the scans its censoring kept
    /// (absent without a confounds strategy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confounds: Option<ConfoundsUsed>,
}

/// Which confounds a run was reduced with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfoundsUsed {
    /// None when only dummy scans were dropped (no table read).
    pub table: Option<PathBuf>,
    pub kept_scans: usize,
}

impl Manifest {
    /// The first name in the manifest that is not safe as a path (a run key, subject,
    /// story, part or file of the store), if any. Names become paths (a retracted run's
    /// statistics are deleted, a dirty subject's folder rewritten), so a damaged or
    /// hand-edited manifest must never reach outside the store.
    pub fn unsafe_name(&self) -> Option<String> {
        use crate::io::name::is_valid;
        let relative = |p: &str| p.split('/').all(is_valid);
        let runs = self.runs.iter().find_map(|(key, r)| {
            let ok = relative(key) && is_valid(&r.subject) && is_valid(&r.story);
            (!ok).then(|| format!("run '{key}'"))
        });
        runs.or_else(|| {
            let stories = self.stories.keys().find(|s| !is_valid(s)).map(|s| format!("story '{s}'"));
            let dirty = self.dirty.iter().find(|s| !is_valid(s)).map(|s| format!("subject '{s}'"));
            let pending = self.pending.iter().find(|p| !relative(p)).map(|p| format!("part '{p}'"));
            let files = self.files.keys().find(|p| !relative(p)).map(|p| format!("file '{p}'"));
            stories.or(dirty).or(pending).or(files)
        })
        .map(|n| n.chars().take(120).collect())
    }
}
