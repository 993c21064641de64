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

pub mod layout;
pub mod manifest;
pub mod recipe;
pub mod settings;
pub mod stats;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::Deserialize;

use crate::error::{bail, Context, Result};
use crate::io::atomic::write_file_atomically;
use crate::io::bids::{self, Run};
use crate::io::nifti::{self, Mask};
use crate::io::parquet::read_responses;
use crate::operators::{BlockError, GroupBlock};
use crate::stages::join::{self, SubjectFit};
use crate::stages::{basis, encode, group, mapping};

pub use layout::Layout;
pub use manifest::{Manifest, RunEntry, FORMAT};
pub use recipe::Recipe;

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
    pub fn init(dir: &Path, recipe: &Recipe, mask: Option<&Path>) -> Result<Store> {
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
            return Ok(store);
        }
        let manifest = Manifest {
            format: FORMAT,
            cortexflow: env!("CARGO_PKG_VERSION").into(),
            recipe: recipe.fingerprint(),
            ..Manifest::default()
        };
        write_text(&Layout::new(dir).recipe(), &recipe.canonical())?;
        let store = Store {
            dir: dir.to_path_buf(),
            recipe: recipe.clone(),
            manifest,
        };
        if let Some(m) = mask {
            store.set_mask(m)?;
        }
        store.save()?;
        Ok(store)
    }

    /// Opens a store as its writer (deleting temporaries a killed writer left), refusing
    /// other formats and a recipe that does not match its manifest.
    pub fn open(dir: &Path) -> Result<Store> {
        let store = Self::open_reader(dir)?;
        remove_temporaries(dir)?;
        Ok(store)
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
            dir: dir.to_path_buf(),
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

    /// Copies the analysis mask in; a different mask once runs are in is refused.
    pub fn set_mask(&self, path: &Path) -> Result<()> {
        let mask = nifti::read_mask(path)?;
        if mask.is_empty() {
            bail!("{}: the mask has no voxels", path.display());
        }
        if self.mask_path().is_file() {
            let old = nifti::read_mask(&self.mask_path())?;
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
        nifti::write_map(
            &self.mask_path(),
            &mask.grid,
            &mask.volumes(&all, ones.view()),
            None,
        )?;
        Ok(())
    }

    /// Adds stories from `responses` tables (and their `neurons` table): the first stories
    /// learn the basis, later ones extend it in time with the codes held fixed.
    pub fn ingest_responses(
        &mut self,
        tables: &[PathBuf],
        neurons: Option<&Path>,
    ) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        let mut new = Vec::new();
        for t in tables {
            let r = read_responses(t)?;
            if self.manifest.stories.contains_key(&r.story) {
                lines.push(format!("story '{}' is already in (unchanged)", r.story));
                continue;
            }
            let dest = self.paths().responses().join(format!("{}.parquet", r.story));
            let bytes =
                std::fs::read(t).with_context(|| format!("{}: cannot read", t.display()))?;
            write_file_atomically(&dest, |w| w.write_all(&bytes))?;
            new.push((r.story, r.values.ncols(), dest));
        }
        if let Some(n) = neurons {
            crate::io::parquet::read_neurons(n)?;
            let bytes =
                std::fs::read(n).with_context(|| format!("{}: cannot read", n.display()))?;
            write_file_atomically(&self.paths().neurons(), |w| w.write_all(&bytes))?;
        }
        if new.is_empty() {
            return Ok(lines);
        }
        let files: Vec<PathBuf> = new.iter().map(|n| n.2.clone()).collect();
        let basis_dir = self.paths().basis();
        let summary = if self.paths().codes().is_file() {
            basis::extend(&basis_dir, &files)?
        } else {
            basis::run(&files, &self.recipe.basis.options(), &basis_dir)?
        };
        lines.extend(summary.lines);
        for (story, scans, _) in new {
            lines.push(format!("story '{story}': {scans} scans"));
            self.manifest.stories.insert(story, scans);
        }
        self.manifest.epoch += 1;
        self.save()?;
        Ok(lines)
    }

    /// The story of a BOLD run: `task-T_run-R`, as `simulate` and BIDS stimuli name it.
    fn story_of(run: &Run) -> String {
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
        runs.dedup_by_key(|r| r.key());
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
            if !self.manifest.stories.contains_key(&story) {
                bail!("{key}: no story '{story}' in the store; ingest its stimulus or responses first");
            }
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
        self.manifest.dirty.insert(entry.subject.clone());
        self.manifest.epoch += 1;
        self.save()?;
        let path = self.paths().stats(key);
        std::fs::remove_file(&path)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .with_context(|| format!("{}: cannot remove", path.display()))?;
        Ok(vec![format!("{key}: retracted")])
    }

    /// Writes the group maps from the dataflow's group tests, then the map, when stale.
    pub fn refresh_results(
        &mut self,
        group: &[(u32, Result<GroupBlock, BlockError>)],
    ) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        if self.manifest.results_epoch == self.manifest.epoch {
            return Ok(lines);
        }
        let subjects = self.subjects();
        let (group_dir, map_dir) = (self.paths().group(), self.paths().map());
        if subjects.len() >= 2 {
            let opt = self.recipe.group.options();
            let mask = nifti::read_mask(&self.mask_path())?;
            let (n, test, halves) = join::join_group(group, mask.len())?;
            if n != subjects.len() {
                bail!(
                    "the group test has {n} subjects, the store {} (did a worker fail?)",
                    subjects.len()
                );
            }
            let labels: Vec<String> = subjects.iter().cloned().collect();
            let halves = (subjects.len() >= 4).then_some(&halves);
            let summary = group::write_results(
                &mask,
                &self.mask_path(),
                &labels,
                &test,
                halves,
                &opt,
                &group_dir,
            )?;
            lines.push(summary.headline());
            let opt = self.recipe.map.options();
            let neurons = self.paths().neurons();
            let s = mapping::run(
                &group_dir,
                &self.paths().codes(),
                neurons.is_file().then_some(neurons.as_path()),
                &opt,
                &map_dir,
            )?;
            lines.push(s.assignment.to_string());
            lines.extend(s.lines);
        } else {
            // Too few subjects for a group: no group results rather than stale ones.
            for d in [&group_dir, &map_dir] {
                if d.exists() {
                    std::fs::remove_dir_all(d)
                        .with_context(|| format!("{}: cannot remove", d.display()))?;
                }
            }
            lines.push(format!(
                "{} subject(s): group maps need at least 2",
                subjects.len()
            ));
        }
        self.manifest.results_epoch = self.manifest.epoch;
        self.save()?;
        Ok(lines)
    }

    /// Subjects with at least one run.
    pub fn subjects(&self) -> BTreeSet<String> {
        self.manifest
            .runs
            .values()
            .map(|r| r.subject.clone())
            .collect()
    }

    /// Writes a subject's maps from its joined fit, or removes them when no run is left.
    pub fn write_subject(
        &self,
        subject: &str,
        fit: Option<SubjectFit>,
        mask: &Mask,
    ) -> Result<String> {
        let dir = self.paths().subject(subject);
        let Some(fit) = fit else {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("{}: cannot remove", dir.display()))?;
            }
            return Ok(format!("sub-{subject}: no runs left, fit removed"));
        };
        let k = fit.ols.beta.nrows();
        let maps = encode::write_subject_maps(&dir, mask, &fit.valid, &fit.ols, k, fit.ridge)?;
        Ok(format!(
            "sub-{subject}: {} runs, {} voxels fitted, median cv_r {:.3}",
            fit.runs,
            fit.valid.len(),
            maps.median_r
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
        for (key, r) in &m.runs {
            out.push_str(&format!(
                "  {key}: {} scans, {}\n",
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
        out
    }
}

/// Deletes the temporary files a killed writer left (`.tmp-*`; a store has one writer at a
/// time).
fn remove_temporaries(dir: &Path) -> Result<()> {
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?
    {
        let path = entry?.path();
        if path.is_dir() {
            remove_temporaries(&path)?;
        } else if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
        {
            std::fs::remove_file(&path)
                .with_context(|| format!("{}: cannot remove", path.display()))?;
        }
    }
    Ok(())
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

