//! The analysis store: a directory that holds an analysis and updates it as data arrive.
//!
//! What lives where is in [`layout`]; what is in, in [`manifest`]; a run's statistics are
//! encoded by [`stats`]; the settings are the [`recipe`].
//!
//! Every result is a function of the *set* of ingested runs: a subject's statistics are
//! summed over its runs in key order, and group sums are exact, so ingesting runs in any
//! order, one by one or all at once, gives the same bytes, and retracting a run gives the
//! bytes of never having ingested it. Ingesting a run costs one run's reading and
//! reduction plus refits from statistics (its subject, then the group), not a pass over
//! the other runs.
//!
//! Crash safety: files are written atomically (temporary sibling, fsync, rename); a run's
//! statistics are written before the manifest lists it, and the manifest marks its subject
//! to refit and the results stale before any refit starts. A killed command therefore
//! leaves a readable store whose manifest says what is left to do, and the next command
//! finishes it (`status` shows it).

pub mod group_sums;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod recipe;
pub mod settings;
pub mod stats;
pub mod sums;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::Deserialize;

use crate::error::{bail, Context, Error, Result};
use crate::io::atomic::write_file_atomically;
use crate::io::bids::{self, Run};
use crate::io::nifti::{self, Mask};
use crate::io::regions::Regions;
use crate::io::parquet::{read_codes, read_responses, TR_KEY};
use crate::kernels::estimators::Estimator;
use crate::operators::{BlockError, BlockSums, GroupBlock};
use crate::stages::join::{self, SubjectFit};
use crate::stages::profiles::{self, Cached, SubjectMap};
use crate::stages::{basis, encode, group, mapping};

/// The noise ceiling's folder, relative to the store (see [`Layout::ceiling`]).
pub const CEILING: &str = "ceiling";

pub use layout::Layout;
pub use lock::WriteLock;
pub use manifest::{ConfoundsUsed, Manifest, RunEntry, StoryEntry, FORMAT};
pub use recipe::Recipe;
pub use sums::{Damage, Sums};

/// A BOLD run to ingest, with its story.
pub type NewRun = (Run, String);

/// An open store: its directory, recipe and manifest.
pub struct Store {
    pub dir: PathBuf,
    pub recipe: Recipe,
    pub manifest: Manifest,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not readable", path.display()))
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    write_file_atomically(path, |w| w.write_all(text.as_bytes()))?;
    Ok(())
}

impl Store {
    /// Creates a store for `recipe` (an existing store of the same recipe is reopened).
    /// The caller holds the store's [`WriteLock`].
    pub fn init(dir: &Path, recipe: &Recipe, mask: Option<&Path>) -> Result<Store> {
        recipe.check()?;
        require_lock(dir)?;
        if Layout::new(dir).manifest().is_file() {
            let store = Store::open(dir)?;
            if store.manifest.recipe != recipe.fingerprint() {
                bail!(
                    "{}: a store made with another recipe (fingerprint {}, this recipe {}); use a new directory",
                    dir.display(),
                    store.manifest.recipe,
                    recipe.fingerprint()
                );
            }
            let mut store = store;
            if let Some(m) = mask {
                store.set_mask(m)?;
            }
            return Ok(store);
        }
        // The mask is read before anything is written: a bad one leaves no half-made store.
        if let Some(m) = mask {
            nifti::read_mask(m)?;
        }
        let manifest = Manifest {
            format: FORMAT,
            cortexflow: env!("CARGO_PKG_VERSION").into(),
            recipe: recipe.fingerprint(),
            ..Manifest::default()
        };
        write_text(&Layout::new(dir).recipe(), &recipe.canonical())?;
        let mut store = Store {
            dir: absolute(dir),
            recipe: recipe.clone(),
            manifest,
        };
        if let Some(m) = mask {
            store.set_mask(m)?;
        }
        store.save()?;
        Ok(store)
    }

    /// Opens a store as its writer, refusing other formats and a recipe that does not
    /// match its manifest. The caller holds the store's [`WriteLock`].
    pub fn open(dir: &Path) -> Result<Store> {
        require_lock(dir)?;
        Self::open_reader(dir)
    }

    /// Opens a store to read it (while the writer may be writing).
    pub fn open_reader(dir: &Path) -> Result<Store> {
        let path = Layout::new(dir).manifest();
        if !path.is_file() {
            bail!(
                "{}: not a cortexflow store (no manifest.json; create one with `cortexflow init`)",
                dir.display()
            );
        }
        let manifest: Manifest = read_json(&path)?;
        if manifest.format == FORMAT {
            if let Some(name) = manifest.unsafe_name() {
                bail!(
                    "{}: {name} is not a safe name (letters, digits, '.', '_', '-'): the manifest is damaged or was edited by hand",
                    path.display()
                );
            }
        }
        if manifest.format != FORMAT {
            bail!(
                "{}: store format {} written by cortexflow {}; this cortexflow {} reads format {FORMAT}",
                dir.display(),
                manifest.format,
                manifest.cortexflow,
                env!("CARGO_PKG_VERSION")
            );
        }
        let recipe = Recipe::load(&Layout::new(dir).recipe())?;
        if recipe.fingerprint() != manifest.recipe {
            bail!(
                "{}: recipe.toml was changed after the store was made (fingerprint {} ≠ {})",
                dir.display(),
                recipe.fingerprint(),
                manifest.recipe
            );
        }
        Ok(Store {
            dir: absolute(dir),
            recipe,
            manifest,
        })
    }

    pub fn save(&self) -> Result<()> {
        write_text(
            &self.paths().manifest(),
            &serde_json::to_string_pretty(&self.manifest)?,
        )
    }

    pub fn mask_path(&self) -> PathBuf {
        self.paths().mask()
    }

    /// Where everything lives in this store.
    pub fn paths(&self) -> Layout {
        Layout::new(&self.dir)
    }

    /// Records the checksums of what is now at `path` (a file or folder of the store).
    pub fn seal(&mut self, path: &Path) -> Result<()> {
        sums::seal(&mut self.manifest.files, &self.dir, path)
    }

    /// Rewrites `parts` of the store with `write`, which returns what it wrote: the parts
    /// are named pending in the manifest first, and what was written is sealed when
    /// `write` succeeds (a file already there is not sealed anew: damage is never
    /// blessed). A command killed meanwhile leaves them pending: what it left is neither
    /// trusted nor sealed, and the store says which command to run again. A failure that
    /// left the parts as they were clears the mark.
    fn rewriting<T>(
        &mut self,
        parts: &[PathBuf],
        write: impl FnOnce(&mut Store) -> Result<(T, Vec<PathBuf>)>,
    ) -> Result<T> {
        // A part an earlier command was killed rewriting holds its leftovers: not trusted,
        // removed, and written again. Any other part must be intact before it is touched.
        let (interrupted, intact): (Vec<PathBuf>, Vec<PathBuf>) = parts
            .iter()
            .cloned()
            .partition(|p| self.pending_part(&sums::key(&self.dir, p)).is_some());
        for (key, _) in self.damage_under(&interrupted) {
            remove_all(&self.dir.join(&key))?;
            self.manifest.files.remove(&key);
        }
        if let Some((key, d)) = self.damage_under(&intact).into_iter().next() {
            bail!("{}: {d}; {}", self.dir.join(&key).display(), self.repair_of(&key));
        }
        let keys: Vec<String> = parts.iter().map(|p| sums::key(&self.dir, p)).collect();
        self.manifest.pending.extend(keys.iter().cloned());
        self.save()?;
        let outcome = write(self);
        let out = match outcome {
            Ok((out, written)) => {
                for path in &written {
                    self.seal(path)?;
                }
                out
            }
            Err(e) => {
                if self.damage_under(parts).is_empty() {
                    keys.iter().for_each(|k| {
                        self.manifest.pending.remove(k);
                    });
                    self.save()?;
                }
                return Err(e);
            }
        };
        for k in &keys {
            self.manifest.pending.remove(k);
        }
        self.save()?;
        Ok(out)
    }

    /// Rewrites a derived part of the store (a results folder nothing else is computed
    /// from, e.g. the noise ceiling) afresh with `write`: whatever was there — damaged,
    /// foreign or left by an interrupted command — is discarded first, the part is pending
    /// while written, then sealed (a part left empty loses its checksums).
    pub fn rewrite(&mut self, part: &Path, write: impl FnOnce(&mut Store) -> Result<Vec<PathBuf>>) -> Result<Vec<PathBuf>> {
        self.discard(part)?;
        self.rewriting(&[part.to_path_buf()], |store| {
            let files = write(store)?;
            Ok((files, vec![part.to_path_buf()]))
        })
    }

    /// Removes a derived part with its checksums and any pending mark.
    fn discard(&mut self, part: &Path) -> Result<()> {
        remove_all(part)?;
        let key = sums::key(&self.dir, part);
        self.manifest.files.retain(|k, _| !sums::is_under(k, &key));
        self.manifest.pending.retain(|k| !sums::is_under(k, &key));
        self.save()
    }

    /// Files under `parts` that differ from their sums, or that the store did not write.
    fn damage_under(&self, parts: &[PathBuf]) -> Vec<(String, Damage)> {
        let prefixes: Vec<String> = parts.iter().map(|p| sums::key(&self.dir, p)).collect();
        let under = |k: &str| prefixes.iter().any(|p| sums::is_under(k, p));
        let mut out: Vec<(String, Damage)> = self
            .manifest
            .files
            .iter()
            .filter(|(k, _)| under(k))
            .filter_map(|(k, sum)| sums::damage(&self.dir.join(k), sum).map(|d| (k.clone(), d)))
            .collect();
        for part in parts {
            for f in sums::files_in(part) {
                let k = sums::key(&self.dir, &f);
                if !self.manifest.files.contains_key(&k) {
                    out.push((k, Damage::Foreign));
                }
            }
        }
        out
    }

    /// The pending part `key` is under, if any.
    fn pending_part(&self, key: &str) -> Option<&String> {
        self.manifest.pending.iter().find(|p| sums::is_under(key, p))
    }

    /// What to run again to finish an interrupted rewrite of `part`.
    fn redo(part: &str) -> &'static str {
        match part {
            CEILING => "run `cortexflow ceiling STORE` again",
            "mask.nii.gz" => "give the mask again (`cortexflow ingest STORE --mask M` or `cortexflow init … --mask M STORE`)",
            _ => "ingest the stories again (`cortexflow ingest STORE --responses … --neurons …` or `--stimulus …`)",
        }
    }

    /// Checks a file of the store against its checksum before it is read.
    pub fn verify_file(&self, path: &Path) -> Result<()> {
        self.not_pending(path)?;
        sums::verify_file(&self.manifest.files, &self.dir, path)
    }

    /// A file of the store to read once, checked as it is read ([`sums::CheckedRead`]).
    pub fn checked_read(&self, path: &Path) -> Result<sums::CheckedRead> {
        self.not_pending(path)?;
        sums::CheckedRead::open(&self.manifest.files, &self.dir, path)
    }

    /// An error when `path` is in a part of the store a command did not finish rewriting.
    fn not_pending(&self, path: &Path) -> Result<()> {
        match self.pending_part(&sums::key(&self.dir, path)) {
            Some(part) => bail!("{}: was being rewritten by a command that did not finish; {}", path.display(), Self::redo(part)),
            None => Ok(()),
        }
    }

    /// The store's mask, verified.
    pub fn read_mask(&self) -> Result<Mask> {
        self.verify_file(&self.mask_path())?;
        nifti::read_mask(&self.mask_path())
    }

    /// Every damaged file (relative path and how), leaving out pending parts of an
    /// interrupted command (said apart). Unless `strict`, also the parts the next update
    /// rewrites anyway: subjects to refit and stale group and map results (a command
    /// killed while writing them leaves them half-written, which is not damage).
    pub fn damaged(&self, strict: bool) -> Vec<(String, Damage)> {
        let m = &self.manifest;
        let mut rewriting: Vec<String> = m.pending.iter().cloned().collect();
        if !strict {
            rewriting.extend(self.to_rewrite());
        }
        let mut out: Vec<(String, Damage)> = m
            .files
            .iter()
            .filter(|(k, _)| !rewriting.iter().any(|p| sums::is_under(k, p)))
            .filter_map(|(k, sum)| sums::damage(&self.dir.join(k), sum).map(|d| (k.clone(), d)))
            .collect();
        // Files the store needs whose checksum is not in the manifest.
        for k in self.required() {
            if !m.files.contains_key(&k) && !rewriting.iter().any(|p| sums::is_under(&k, p)) {
                out.push((k, Damage::Unsealed));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The files the manifest implies (relative paths): the mask once runs are in, each
    /// story's responses and atoms and the codes, each run's statistics, and each subject's
    /// β map.
    fn required(&self) -> Vec<String> {
        let (m, p) = (&self.manifest, self.paths());
        let mut out: Vec<PathBuf> = Vec::new();
        if !m.runs.is_empty() {
            out.push(p.mask());
        }
        if !m.stories.is_empty() {
            out.push(p.codes());
        }
        for story in m.stories.keys() {
            out.push(p.responses_of(story));
            out.push(p.atoms(story));
        }
        out.extend(m.runs.keys().map(|k| p.stats(k)));
        out.extend(self.subjects().iter().map(|s| p.subject_map(s, "beta")));
        let group = self.group_map();
        if group != "beta" {
            out.extend(self.group_subjects().iter().map(|s| p.subject_map(s, group)));
        }
        out.iter().map(|f| sums::key(&self.dir, f)).collect()
    }

    /// The parts the next update rewrites: the folders of subjects to refit, and the group
    /// and map results when they are stale.
    fn to_rewrite(&self) -> Vec<String> {
        let m = &self.manifest;
        let mut out: Vec<String> =
            m.dirty.iter().map(|s| sums::key(&self.dir, &self.paths().subject(s))).collect();
        if m.results_epoch != m.epoch {
            out.extend(["group".to_string(), "map".to_string()]);
        }
        out
    }

    /// What a damaged file needs: rebuilt from the statistics by `status --refresh`, or
    /// re-ingested (a run's statistics), or the store remade (its inputs).
    pub fn repair_of(&self, key: &str) -> String {
        if key.starts_with("subjects/") || sums::is_under(key, "group") || sums::is_under(key, "map") {
            return "rebuilt from the runs' statistics by `cortexflow status --refresh`".into();
        }
        if sums::is_under(key, CEILING) {
            return "computed again by `cortexflow ceiling STORE`".into();
        }
        if let Some((run, entry)) = self
            .manifest
            .runs
            .iter()
            .find(|(r, _)| sums::key(&self.dir, &self.paths().stats(r)) == key)
        {
            return format!(
                "re-ingest it: `cortexflow retract STORE --run {run}`, then `cortexflow ingest STORE --bold {}`",
                entry.bold.display()
            );
        }
        "an input of the store (mask, stories, basis): cannot be rebuilt; make a new store".into()
    }

    /// Prepares `status --refresh`: damaged subject maps and group/map results are marked
    /// for rebuilding; damage that cannot be rebuilt (statistics, inputs) is an error that
    /// says what to do.
    pub fn mark_damage_for_rebuild(&mut self) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        // The noise ceiling is derived from the runs' BOLD, not the statistics: a damaged or
        // interrupted one is removed, to be computed again by `cortexflow ceiling`.
        let ceiling = self.paths().ceiling();
        let interrupted = self.manifest.pending.contains(CEILING);
        let (ceiling_damage, damaged): (Vec<_>, Vec<_>) = self.damaged(true).into_iter().partition(|(k, _)| sums::is_under(k, CEILING));
        if interrupted || !ceiling_damage.is_empty() {
            self.discard(&ceiling)?;
            lines.push(format!("{CEILING}/: {}; removed: `cortexflow ceiling STORE` computes it again", if interrupted { "interrupted" } else { "damaged" }));
        }
        if let Some(part) = self.manifest.pending.first() {
            bail!(
                "{}: {part} was being rewritten when a command stopped; {} (--refresh rebuilds results, not inputs)",
                self.dir.display(),
                Self::redo(part)
            );
        }
        let mut fatal = Vec::new();
        for (key, d) in &damaged {
            if let Some(rest) = key.strip_prefix("subjects/sub-") {
                let subject = rest.split('/').next().unwrap_or(rest).to_string();
                lines.push(format!("{key}: {d}; refitting sub-{subject}"));
                self.manifest.dirty.insert(subject);
            } else if sums::is_under(key, "group") || sums::is_under(key, "map") {
                lines.push(format!("{key}: {d}; rebuilding the group and map results"));
                self.manifest.results_epoch = self.manifest.epoch.wrapping_sub(1);
            } else {
                fatal.push(format!("{key}: {d}: {}", self.repair_of(key)));
            }
        }
        if !fatal.is_empty() {
            bail!(
                "{}: {} damaged file(s) cannot be rebuilt from the statistics: {}",
                self.dir.display(),
                fatal.len(),
                fatal.join("; ")
            );
        }
        if !lines.is_empty() {
            self.save()?;
        }
        Ok(lines)
    }

    /// The regions of a store of region time series (none for a store of images).
    pub fn regions(&self) -> Result<Option<Regions>> {
        let path = self.paths().regions();
        if !path.is_file() {
            return Ok(None);
        }
        self.verify_file(&path)?;
        Ok(Some(Regions::read(&path)?))
    }

    /// Makes this a store of region time series by recording its region list (and their
    /// networks), the order of its maps; the caller sets the line the regions stand on as
    /// the mask. Another list once runs are in is refused.
    pub fn set_regions(&mut self, regions: &Regions) -> Result<()> {
        if self.regions()?.as_ref() == Some(regions) {
            return Ok(());
        }
        if !self.manifest.runs.is_empty() {
            bail!(
                "the dataset's region list differs from the store's ({}), and runs are already in: analyse it in another store",
                self.paths().regions().display()
            );
        }
        let dest = self.paths().regions();
        self.rewriting(std::slice::from_ref(&dest), |_| {
            regions.write(&dest)?;
            Ok(((), vec![dest.clone()]))
        })
    }

    /// Copies the analysis mask in; a different mask once runs are in is refused.
    pub fn set_mask(&mut self, path: &Path) -> Result<()> {
        let mask = nifti::read_mask(path)?;
        let interrupted = self.manifest.pending.contains("mask.nii.gz");
        if self.mask_path().is_file() && !interrupted {
            let old = self.read_mask()?;
            if old.linear == mask.linear && old.grid.matches(&mask.grid, 1e-4) {
                return Ok(());
            }
            if !self.manifest.runs.is_empty() {
                bail!(
                    "{}: differs from the store's mask, and runs are already in",
                    path.display()
                );
            }
        }
        let all: Vec<usize> = (0..mask.len()).collect();
        let ones = Array2::from_elem((1, mask.len()), 1.0);
        let dest = self.mask_path();
        self.rewriting(std::slice::from_ref(&dest), |_| {
            nifti::write_masked(&dest, &mask, &all, ones.view(), None)?;
            Ok(((), vec![dest.clone()]))
        })
    }

    /// Adds stories from `responses` tables (and their `neurons` table): the first stories
    /// learn the basis, later ones extend it in time with the codes held fixed. Every
    /// table is read and checked before anything is written.
    pub fn ingest_responses(
        &mut self,
        tables: &[PathBuf],
        neurons: Option<&Path>,
    ) -> Result<Vec<String>> {
        let p = self.paths();
        let fresh = self.manifest.stories.is_empty();
        // Extending holds the codes fixed: every coded AN must be in each new story.
        let coded: Option<BTreeSet<u64>> = match fresh {
            true => None,
            false => {
                // Raw: an interrupted extension leaves basis/ pending, but never touches the
                // codes, which keep the sum of the basis they belong to.
                sums::verify_file(&self.manifest.files, &self.dir, &p.codes())?;
                Some(read_codes(&p.codes())?.an_ids.into_iter().collect())
            }
        };
        let mut lines = Vec::new();
        let mut new: Vec<(String, StoryEntry, &PathBuf)> = Vec::new();
        for t in tables {
            let r = read_responses(t)?;
            if self.manifest.stories.contains_key(&r.story) {
                lines.push(format!("story '{}' is already in (unchanged)", r.story));
                continue;
            }
            if let Some((_, _, first)) = new.iter().find(|n| n.0 == r.story) {
                bail!("{}: story '{}' is also in {}; one table per story", t.display(), r.story, first.display());
            }
            let Some(tr) = r.tr else {
                bail!(
                    "{}: records no TR (Parquet metadata {TR_KEY}); the store checks each BOLD run's TR against its story's (tables made by `cortexflow responses` or `simulate` record it)",
                    t.display()
                );
            };
            if let Some(coded) = &coded {
                let have: BTreeSet<u64> = r.an_ids.iter().copied().collect();
                let missing = coded.difference(&have).count();
                if missing > 0 {
                    bail!(
                        "{}: {missing} of the store's {} coded ANs are not in this story (responses of another model or tap?)",
                        t.display(),
                        coded.len()
                    );
                }
            }
            let scans = r.values.ncols();
            new.push((r.story, StoryEntry { scans, tr }, t));
        }
        if let Some(n) = neurons {
            crate::io::parquet::read_neurons(n)?;
        }
        if new.is_empty() && neurons.is_none() {
            return Ok(lines);
        }
        let parts = [p.responses(), p.neurons(), p.basis()];
        let summary = self.rewriting(&parts, |store| {
            let inputs: Vec<PathBuf> = new.iter().map(|n| n.2.clone()).collect();
            let mut written = Vec::new();
            // The manifest says whether a basis exists: what a killed first ingest left in
            // basis/ is neither extended nor trusted, but learned again.
            let summary = if inputs.is_empty() {
                None
            } else if fresh {
                remove_all(&p.basis())?;
                let learned = basis::run(&inputs, &store.recipe.basis.options(), &p.basis());
                if learned.is_err() {
                    remove_all(&p.basis())?;
                }
                written.push(p.basis());
                Some(learned?)
            } else {
                let s = basis::extend(&p.basis(), &inputs)?;
                written.extend(s.files.iter().cloned());
                Some(s)
            };
            for (story, _, t) in &new {
                let dest = p.responses_of(story);
                copy_file(t, &dest)?;
                written.push(dest);
            }
            if let Some(n) = neurons {
                copy_file(n, &p.neurons())?;
                written.push(p.neurons());
            }
            Ok((summary, written))
        })?;
        let Some(summary) = summary else {
            return Ok(lines);
        };
        lines.extend(summary.lines);
        for (story, entry, _) in new {
            lines.push(format!("story '{story}': {} scans at TR {} s", entry.scans, entry.tr));
            self.manifest.stories.insert(story, entry);
        }
        self.manifest.epoch += 1;
        self.save()?;
        Ok(lines)
    }

    /// The story of a BOLD run: `task-T_run-R`, as `simulate` and BIDS stimuli name it.
    pub fn story_of(run: &Run) -> String {
        format!("task-{}_run-{}", run.task, run.run)
    }

    /// The new runs among `bold` (already-ingested ones are skipped, and said so), with
    /// their stories, which must be in.
    pub fn new_runs(&self, bold: &[PathBuf]) -> Result<(Vec<NewRun>, Vec<String>)> {
        let mut runs: Vec<Run> = bold
            .iter()
            .map(|p| {
                bids::parse_bold_name(p).with_context(|| {
                    format!(
                        "{}: not a BIDS BOLD name (sub-<S>_task-<T>[_run-<R>]_bold.nii[.gz])",
                        p.display()
                    )
                })
            })
            .collect::<Result<_>>()?;
        runs.sort();
        if let Some(w) = runs.windows(2).find(|w| w[0].key() == w[1].key()) {
            bail!(
                "{} and {} are both run {}: give one file per run",
                w[0].bold.display(),
                w[1].bold.display(),
                w[0].key()
            );
        }
        if !runs.is_empty() && !self.mask_path().is_file() {
            bail!("{}: no analysis mask yet; give --mask", self.dir.display());
        }
        let (mut new, mut lines) = (Vec::new(), Vec::new());
        for run in runs {
            let key = run.key();
            if self.manifest.runs.contains_key(&key) {
                lines.push(format!("{key}: already ingested (unchanged)"));
                continue;
            }
            let story = Self::story_of(&run);
            let Some(clock) = self.manifest.stories.get(&story) else {
                bail!("{key}: no story '{story}' in the store; ingest its stimulus or responses first");
            };
            check_clock(&run.bold, &story, clock)?;
            new.push((run, story));
        }
        Ok((new, lines))
    }

    /// Takes a run out of the manifest (its subject to refit), then deletes its statistics.
    pub fn retract_entry(&mut self, key: &str) -> Result<Vec<String>> {
        let Some(entry) = self.manifest.runs.remove(key) else {
            bail!(
                "{}: no run '{key}' in the store (runs look like sub-01/task-lpp/run-1; `cortexflow status` lists them)",
                self.dir.display()
            );
        };
        let path = self.paths().stats(key);
        self.manifest.files.remove(&sums::key(&self.dir, &path));
        self.manifest.dirty.insert(entry.subject.clone());
        self.manifest.epoch += 1;
        self.save()?;
        let mut lines = vec![format!("{key}: retracted")];
        // The manifest no longer lists the file: a failure to delete it leaves an orphan,
        // said, not a half-done retraction.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => lines.push(format!(
                "note: {}; no longer part of the store, delete it by hand",
                Error::io(&path, e)
            )),
            _ => {}
        }
        Ok(lines)
    }

    /// Writes the group maps from the dataflow's group tests, then the map, when stale.
    pub fn refresh_results(
        &mut self,
        group: Vec<(u32, Result<GroupBlock, BlockError>)>,
        sums: Option<Vec<Vec<u8>>>,
    ) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        if self.manifest.results_epoch == self.manifest.epoch {
            return Ok(lines);
        }
        let subjects = self.group_subjects();
        let out_of_group: Vec<String> = self.subjects().difference(&subjects).map(|s| format!("sub-{s}")).collect();
        if !out_of_group.is_empty() {
            lines.push(format!(
                "{}: one run each, out of the group until a second arrives (group.estimator = ridge takes the cross-validated ridge's β)",
                out_of_group.join(", ")
            ));
        }
        let (group_dir, map_dir) = (self.paths().group(), self.paths().map());
        let an_atom = self.paths().codes().with_file_name("an_atom.parquet");
        if self.recipe.map.ties == crate::stages::ties::TieRule::Course && self.paths().codes().is_file() && !an_atom.is_file() {
            // Refused before the old results are removed: a store whose basis predates the table.
            bail!(
                "{}: not found — this store's basis was learned before cortexflow kept each AN's correlation with the atoms, which the recipe's map.ties = \"course\" needs; analyse the data into a new store",
                an_atom.display()
            );
        }
        // Written afresh, as a subject's folder is.
        remove_all(&group_dir)?;
        remove_all(&map_dir)?;
        // The group's sums wait for the disk beside the maps, and are in place before the
        // group is sealed.
        let mut sums_behind = None;
        if subjects.len() >= 2 {
            let started = std::time::Instant::now();
            let opt = self.recipe.group.options();
            let mask = self.read_mask()?;
            // The blocks are dropped as they are joined, the joined maps once written
            // and mapped.
            let labels: Vec<String> = subjects.iter().cloned().collect();
            // The sums first (then dropped), so they are not held with the joined maps.
            // Only sums of a complete group (every block tested over every subject) are
            // kept; otherwise the join below says what is wrong.
            let complete = group.len() == mask.len().div_ceil(crate::operators::BLOCK_VOXELS)
                && group.iter().all(|(_, r)| r.as_ref().is_ok_and(|g| g.subjects as usize == labels.len()));
            if let (Some(members), true) = (sums, complete) {
                let atoms = group.iter().find_map(|(_, r)| r.as_ref().ok().map(|g| g.atoms as usize));
                sums_behind = self.write_group_sums(&labels, atoms.unwrap_or(0), mask.len(), &members)?.map(group_sums::Pending::finish_behind).transpose()?;
            }
            let (n, mut test, halves) = join::join_group(group, mask.len())?;
            if n != subjects.len() {
                bail!(
                    "the group test has {n} subjects, the store {} (did a worker fail?)",
                    subjects.len()
                );
            }
            tracing::info!(seconds = started.elapsed().as_secs_f64(), "group sums written, blocks joined");
            let started = std::time::Instant::now();
            let group_opt = opt;
            let mut thresholded = group::threshold(&mask, &test, (subjects.len() >= 4).then_some(&halves), &group_opt);
            drop(halves);
            // z, the mean β and the thresholded z are written as f32: rounded here, the
            // files are the same, and the mapping reads what they hold (but for the sign
            // of a zero, which a file read gives as +0 and nothing in the mapping reads).
            for map in [&mut test.z, &mut test.mean, &mut thresholded.thresholded_z] {
                map.mapv_inplace(|v| f64::from(v as f32));
            }
            let mut opt = self.recipe.map.options();
            let regions = self.regions()?;
            // Without regions (whose tables are made from the written maps) the mapping
            // borrows them and runs beside their writing.
            let in_memory = regions.is_none().then(|| mapping::GroupMaps {
                mask: mask.clone(),
                z: test.z.view().into(),
                sig: thresholded.thresholded_z.view().into(),
                beta: test.mean.view().into(),
                split: thresholded.split_dice.clone(),
                dir: group_dir.clone(),
            });
            let write = || {
                let summary = group::write_results(&mask, &self.mask_path(), &labels, &test, &thresholded, &group_opt, &group_dir);
                tracing::info!(seconds = started.elapsed().as_secs_f64(), "group maps written");
                summary
            };
            let (summary, mapped) = match in_memory {
                Some(maps) => std::thread::scope(|s| {
                    let mapped = s.spawn(|| self.map_networks(maps, &opt, &subjects, &map_dir));
                    let summary = write();
                    (summary, mapped.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                }),
                None => {
                    let summary = write()?;
                    drop(test);
                    let regions = regions.expect("a region store");
                    crate::stages::region_tables::write_group(&group_dir, &regions, &mask)?;
                    // The networks are those of the region list, as a label atlas on its line.
                    let atlas = self.paths().region_atlas();
                    let (image, names) = regions.network_atlas();
                    nifti::write_map(&atlas, &regions.grid(), &image, None)?;
                    write_text(&atlas.with_file_name("region_networks.csv"), &names)?;
                    opt.atlas = atlas.to_string_lossy().into_owned();
                    let mapped = mapping::GroupMaps::read(&group_dir).and_then(|maps| self.map_networks(maps, &opt, &subjects, &map_dir));
                    (Ok(summary), mapped)
                }
            };
            let (summary, s) = (summary?, mapped?);
            lines.push(summary.headline());
            lines.extend(summary.notes.iter().cloned());
            lines.push(s.assignment.to_string());
            lines.extend(s.lines);
        } else {
            // Too few subjects for a group: no group results rather than stale ones.
            lines.push(format!(
                "{} subject(s) in the group: group maps need at least 2",
                subjects.len()
            ));
        }
        if self.paths().regions().is_file() {
            // The group and the mapping count voxels; here each is a region.
            lines = lines.iter().map(|l| l.replace(" voxels", " regions").replace(" voxel", " region")).collect();
        }
        sums_behind.map_or(Ok(()), group_sums::Behind::wait)?;
        self.seal(&group_dir)?;
        self.seal(&map_dir)?;
        self.manifest.results_epoch = self.manifest.epoch;
        self.save()?;
        Ok(lines)
    }

    /// The network mapping of the group maps `group` into `out`, with the store's basis,
    /// neurons and subjects' maps (each checked against the manifest before it is read).
    fn map_networks(&self, group: mapping::GroupMaps, opt: &mapping::MapOptions, subjects: &BTreeSet<String>, out: &Path) -> Result<mapping::MapSummary> {
        let started = std::time::Instant::now();
        let neurons = self.paths().neurons();
        self.verify_file(&self.paths().codes())?;
        let an_atom = self.paths().codes().with_file_name("an_atom.parquet");
        if an_atom.is_file() {
            self.verify_file(&an_atom)?;
        }
        if neurons.is_file() {
            self.verify_file(&neurons)?;
        }
        let cache = self.paths().profile_cache();
        let subject_maps: Vec<SubjectMap> = subjects
            .iter()
            .map(|s| SubjectMap {
                path: self.paths().subject_map(s, self.group_map()),
                cache: self.group_map_checksum(s).map(|sum| Cached { file: cache.join(format!("sub-{s}.json")), map_xxh64: sum.to_string() }),
            })
            .collect();
        profiles::prune(&cache, &subject_maps);
        let mapped = mapping::run(
            group,
            &self.paths().codes(),
            neurons.is_file().then_some(neurons.as_path()),
            (&subject_maps, &|map: &Path| self.verify_file(map)),
            opt,
            out,
        )?;
        tracing::info!(seconds = started.elapsed().as_secs_f64(), "networks mapped");
        Ok(mapped)
    }

    /// Keeps the group's sums under group/ with the checksum of each subject's map as it
    /// entered them (sealed with the group). Skipped (the next update adds every subject
    /// again) when a subject's map has no checksum.
    fn write_group_sums(&self, subjects: &[String], atoms: usize, voxels: usize, members: &[Vec<u8>]) -> Result<Option<group_sums::Pending>> {
        let map = self.group_map();
        let sums: Option<Vec<(String, String)>> = subjects.iter().map(|s| self.group_map_checksum(s).map(|x| (s.clone(), x.to_string()))).collect();
        let Some(sums) = sums else {
            return Ok(None);
        };
        let index = group_sums::SumsIndex::new(map, atoms, voxels, sums);
        group_sums::write(&self.paths().group(), &index, members).map(Some)
    }

    /// The index of the group's sums as the last update left them, when they can be
    /// trusted: present and intact, of this store's map and `voxels`, and every subject's
    /// map still the one that entered. None otherwise — the update then adds every
    /// subject again, which is always right.
    pub fn trusted_group_sums(&self, voxels: usize) -> Option<group_sums::SumsIndex> {
        let group = self.paths().group();
        if !group_sums::index_path(&group).is_file() {
            return None;
        }
        let attempt = || -> Result<Option<group_sums::SumsIndex>> {
            self.verify_file(&group_sums::index_path(&group))?;
            let index = group_sums::read_index(&group)?;
            let map = self.group_map();
            let fresh = index.describes(map, voxels) && index.subjects.iter().all(|(s, xxh)| self.group_map_checksum(s) == Some(xxh.as_str()));
            Ok(fresh.then_some(index))
        };
        attempt().unwrap_or_else(|e| {
            tracing::warn!("the group's stored sums are not used ({e}); every subject is added again");
            None
        })
    }

    /// The checksum the manifest holds for `subject`'s map that enters the group.
    fn group_map_checksum(&self, subject: &str) -> Option<&str> {
        let key = sums::key(&self.dir, &self.paths().subject_map(subject, self.group_map()));
        self.manifest.files.get(&key).map(|f| f.xxh64.as_str())
    }

    /// The blocks of the trusted sums `index` (checked against their checksum as read).
    pub fn group_sums_blocks(&self, index: &group_sums::SumsIndex) -> Result<Vec<BlockSums>> {
        let path = group_sums::data_path(&self.paths().group());
        let mut input = self.checked_read(&path)?;
        let blocks = group_sums::read_blocks(&mut input, &path, index);
        input.finish()?;
        blocks
    }

    /// Subjects in the group test: every subject with runs, except under the ridge
    /// estimator those with a single run (no cross-validated α, so no ridge β yet).
    pub fn group_subjects(&self) -> BTreeSet<String> {
        self.group_subjects_with(std::iter::empty())
    }

    /// The group's subjects once runs of `new_runs`' subjects (one entry per run) are added.
    pub fn group_subjects_with<'a>(&'a self, new_runs: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
        let mut runs: std::collections::BTreeMap<&str, usize> = Default::default();
        for s in self.manifest.runs.values().map(|r| r.subject.as_str()).chain(new_runs) {
            *runs.entry(s).or_default() += 1;
        }
        let ridge = self.recipe.group.estimator == crate::store::recipe::EstimatorSetting::Ridge;
        runs.into_iter()
            .filter(|&(_, n)| !ridge || n >= 2)
            .map(|(s, _)| s.to_string())
            .collect()
    }

    /// The name of the subject map the group test takes (`beta`, `beta_ridge`, …).
    pub fn group_map(&self) -> &'static str {
        Estimator::from(self.recipe.group.estimator).map_name()
    }

    /// Subjects with at least one run.
    pub fn subjects(&self) -> BTreeSet<String> {
        self.manifest
            .runs
            .values()
            .map(|r| r.subject.clone())
            .collect()
    }

    /// Writes a subject's maps from its joined fit, or removes them when no run is left,
    /// and records their checksums.
    pub fn write_subject(
        &mut self,
        subject: &str,
        fit: Option<SubjectFit>,
        mask: &Mask,
    ) -> Result<String> {
        let dir = self.paths().subject(subject);
        // Written afresh: whatever was there (a damaged map, a directory in a file's
        // place, a foreign file) goes, and the folder holds exactly what is sealed.
        remove_all(&dir)?;
        let Some(fit) = fit else {
            self.seal(&dir)?;
            return Ok(format!("sub-{subject}: no runs left, fit removed"));
        };
        let k = fit.ols.beta.nrows();
        let left_out = self.group_map() != "beta" && fit.group_beta.is_none();
        let group = fit.group_beta.as_ref().map(|b| (self.group_map(), b));
        let maps = encode::write_subject_maps(&dir, mask, &fit.valid, &fit.ols, k, fit.ridge, group)?;
        if let Some(regions) = self.regions()? {
            crate::stages::region_tables::write_subject(&dir, subject, &regions, mask)?;
        }
        self.seal(&dir)?;
        let unit = if self.paths().regions().is_file() { "regions" } else { "voxels" };
        Ok(format!(
            "sub-{subject}: {} runs, {} {unit} fitted, median cv_r {:.3}{}",
            fit.runs,
            fit.valid.len(),
            maps.median_r,
            match left_out {
                true => "; out of the group until it has 2 runs (group.estimator = ridge takes the cross-validated ridge's β)",
                false => "",
            }
        ))
    }

    /// What is in, and what is stale.
    pub fn status(&self) -> String {
        let m = &self.manifest;
        let mut out = format!(
            "store {} (format {}, cortexflow {}, recipe {})\n",
            self.dir.display(),
            m.format,
            m.cortexflow,
            m.recipe
        );
        out.push_str(&format!(
            "{} stories: {}\n",
            m.stories.len(),
            m.stories.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
        out.push_str(&format!(
            "{} runs of {} subjects (epoch {})\n",
            m.runs.len(),
            self.subjects().len(),
            m.epoch
        ));
        out.push_str(&self.size_line());
        for (key, r) in &m.runs {
            let confounds = match &r.confounds {
                None => String::new(),
                Some(c) => format!(
                    "; {} scans kept{}",
                    c.kept_scans,
                    c.table.as_ref().map_or(String::new(), |t| format!(", confounds {}", t.display()))
                ),
            };
            out.push_str(&format!(
                "  {key}: {} scans, {}{confounds}\n",
                r.scans,
                r.bold.display()
            ));
        }
        if m.dirty.is_empty() && m.results_epoch == m.epoch {
            out.push_str("results: up to date\n");
        } else {
            out.push_str(&format!(
                "results: stale (subjects to refit: {}; group and map at epoch {} of {}); the next ingest, retract or `cortexflow status --refresh` brings them up to date\n",
                if m.dirty.is_empty() { "none".into() } else { m.dirty.iter().cloned().collect::<Vec<_>>().join(", ") },
                m.results_epoch,
                m.epoch
            ));
        }
        match crate::stages::ceiling::read_info(&self.paths().ceiling()) {
            Ok(Some(c)) if c.epoch == m.epoch => out.push_str("noise ceiling: up to date\n"),
            Ok(Some(c)) => out.push_str(&format!(
                "noise ceiling: stale (of epoch {} of {}); `cortexflow ceiling STORE` computes it again\n",
                c.epoch, m.epoch
            )),
            Ok(None) => {}
            Err(e) => out.push_str(&format!("noise ceiling: unreadable ({e})\n")),
        }
        out
    }

    /// What the store's files weigh, from their sealed sizes: in all, per run (its
    /// statistics) and per subject (its fits), and by part.
    fn size_line(&self) -> String {
        use crate::io::human_bytes;
        let sizes = sums::sizes(&self.manifest.files);
        let bytes = |part: &str| sizes.get(part).map_or(0, |s| s.1);
        let total: u64 = sizes.values().map(|s| s.1).sum();
        let files: usize = sizes.values().map(|s| s.0).sum();
        let (runs, subjects) = (self.manifest.runs.len() as u64, self.subjects().len() as u64);
        let each = |b: u64, n: u64| b.checked_div(n).map_or(String::new(), |e| format!(" ({} each)", human_bytes(u128::from(e))));
        let results = bytes("group") + bytes("map") + bytes(CEILING);
        format!(
            "size: {} in {files} files: run statistics {}{}, subject fits {}{}, group, map and ceiling {}, stories, basis and mask {}\n",
            human_bytes(u128::from(total)),
            human_bytes(u128::from(bytes("runs"))),
            each(bytes("runs"), runs),
            human_bytes(u128::from(bytes("subjects"))),
            each(bytes("subjects"), subjects),
            human_bytes(u128::from(results)),
            human_bytes(u128::from(total - bytes("runs") - bytes("subjects") - results)),
        ) + &self.leftover_line()
    }

    /// The cleaned runs an interrupted `run` left (`.cleaned/`, not a store file), if any.
    fn leftover_line(&self) -> String {
        let files = sums::files_in(&self.paths().cleaned());
        if files.is_empty() {
            return String::new();
        }
        let bytes: u64 = files.iter().filter_map(|f| std::fs::symlink_metadata(f).ok()).map(|m| m.len()).sum();
        format!(
            "left by an interrupted run: {} of cleaned runs in {} (not part of the store; the next command that writes the store removes them)\n",
            crate::io::human_bytes(u128::from(bytes)),
            self.paths().cleaned().display()
        )
    }

    /// Verifies every file against its checksum, and names the damaged files and the parts
    /// an interrupted command left half-rewritten: the lines to print and how
    /// many problems there are. `strict` checks the parts the next update rewrites too.
    pub fn integrity(&self, strict: bool) -> (String, usize) {
        let damaged = self.damaged(strict);
        let pending = &self.manifest.pending;
        let mut out = String::new();
        for part in pending {
            out.push_str(&format!(
                "interrupted: {part} was being rewritten when a command stopped; {}\n",
                Self::redo(part)
            ));
        }
        if damaged.is_empty() && pending.is_empty() {
            let n = self.manifest.files.len();
            out.push_str(&format!("files: {n} checksummed, all intact"));
            let skipped = self.to_rewrite();
            if !strict && !skipped.is_empty() {
                out.push_str(&format!(
                    " but {} (not checked: the next update rewrites them)",
                    skipped.join(", ")
                ));
            }
            out.push('\n');
            return (out, 0);
        }
        if !damaged.is_empty() {
            out.push_str(&format!("damaged: {} file(s)\n", damaged.len()));
        }
        for (key, d) in &damaged {
            out.push_str(&format!("  {key}: {d}; {}\n", self.repair_of(key)));
        }
        (out, damaged.len() + pending.len())
    }
}

/// Files of `dir` ending in `suffix`, sorted.
pub fn list(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    Ok(out)
}


/// Refuses to write a store without holding its lock (a programming error, said plainly).
fn require_lock(dir: &Path) -> Result<()> {
    if !WriteLock::is_held(dir) {
        bail!(
            "{}: opened for writing without its write lock (a cortexflow bug: please report it)",
            dir.display()
        );
    }
    Ok(())
}

/// Copies `src` into the store at `dest` (atomically).
fn copy_file(src: &Path, dest: &Path) -> Result<()> {
    let bytes = std::fs::read(src).with_context(|| format!("{}: cannot read", src.display()))?;
    write_file_atomically(dest, |w| w.write_all(&bytes))
}

/// Seconds two TRs may differ by and still be one clock (headers store f32 seconds, or
/// milliseconds).
pub const TR_TOLERANCE: f64 = 1e-3;

/// Checks a BOLD run's header against its story's clock: the same TR (within
/// [`TR_TOLERANCE`]) and the same number of scans.
pub fn check_clock(bold: &Path, story: &str, clock: &StoryEntry) -> Result<()> {
    let scans = check_tr(bold, story, clock.tr)?;
    if scans != clock.scans {
        bail!(
            "{}: {} scans, but story '{story}' has {} (check the run and the story's --n-scans)",
            bold.display(),
            scans,
            clock.scans
        );
    }
    Ok(())
}

/// Checks a run's TR (NIfTI header, or a region table's sidecar) against the TR its story
/// was made at; returns the run's number of scans.
pub fn check_tr(bold: &Path, story: &str, story_tr: f64) -> Result<usize> {
    let (scans, tr) = match crate::io::regions::is_region_run(bold) {
        true => crate::io::run_clock(bold)?,
        // A header without a TR: say which clock it should have had.
        false => crate::io::run_clock(bold).with_context(|| format!("story '{story}' was made at TR {story_tr} s"))?,
    };
    if (tr - story_tr).abs() > TR_TOLERANCE {
        bail!(
            "{}: TR {tr} s, but story '{story}' was made at TR {story_tr} s (its regressors would be on another clock)",
            bold.display()
        );
    }
    Ok(scans)
}

/// `path` made absolute against the working directory (symlinks kept), so that what the
/// store records (its own paths, BOLD files) reads the same from any directory.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Removes a folder of the store (or whatever stands at its path), if anything does.
fn remove_all(path: &Path) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let removed = match meta.is_dir() {
        true => std::fs::remove_dir_all(path),
        false => std::fs::remove_file(path),
    };
    removed.with_context(|| format!("{}: cannot remove", path.display()))
}

/// What a reader's check of a store's files found.
#[derive(Debug, Clone, PartialEq)]
pub enum FileCheck {
    /// A writer is at work (or started during the check): files were not judged.
    Busy(String),
    /// The lines to print and how many problems (damaged files, interrupted parts).
    Done { lines: String, problems: usize },
}

/// Verifies the files of the store at `dir` as a reader (no lock): when a writer holds
/// the store, or one changed the manifest while the files were hashed, nothing is judged,
/// so a write in progress is never reported as damage. `strict` as in
/// [`Store::integrity`].
pub fn check_files(dir: &Path, strict: bool) -> Result<FileCheck> {
    if let Some(w) = lock::writer(dir) {
        return Ok(FileCheck::Busy(w));
    }
    let manifest = Layout::new(dir).manifest();
    let before = std::fs::read(&manifest).map_err(|e| Error::io(&manifest, e))?;
    let (lines, problems) = Store::open_reader(dir)?.integrity(strict);
    if problems > 0 {
        let after = std::fs::read(&manifest).map_err(|e| Error::io(&manifest, e))?;
        if after != before {
            return Ok(FileCheck::Busy("a writer that started meanwhile".into()));
        }
        if let Some(w) = lock::writer(dir) {
            return Ok(FileCheck::Busy(w));
        }
    }
    Ok(FileCheck::Done { lines, problems })
}
