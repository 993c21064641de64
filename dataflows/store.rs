//! The analysis store: a directory that holds an analysis and updates it as data arrive.
//!
//! ```text
//! STORE/manifest.json        what is in (stories, runs), epochs, subjects to refit
//! STORE/recipe.toml          the settings (canonical TOML); its fingerprint is in the manifest
//! STORE/mask.nii.gz          the analysis mask
//! STORE/responses/, neurons.parquet, basis/      the ANs and the basis (one version)
//! STORE/runs/sub-S/<story>.stats                 one BOLD run reduced to statistics
//! STORE/subjects/sub-S/{beta,t,z,cv_r,…}.nii.gz  each subject's fit
//! STORE/group/, STORE/map/                       group maps, networks, sub-groups, metrics
//! ```
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

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cortexflow::io::bids::{self, Run};
use cortexflow::io::nifti::{self, Mask};
use cortexflow::io::parquet::read_responses;
use cortexflow::io::store::write_file_atomically;
use cortexflow::kernels::group::Threshold;
use cortexflow::kernels::lasso::LassoAlgorithm;
use cortexflow::kernels::ridge_stats::RunStats;
use cortexflow::operators::GroupBlock;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::recipe::Recipe;
use crate::{basis, encode, group, ingest, map};

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
        if dir.join("manifest.json").is_file() {
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
        write_text(&dir.join("recipe.toml"), &recipe.canonical())?;
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
        let path = dir.join("manifest.json");
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
        let recipe = Recipe::load(&dir.join("recipe.toml"))?;
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

    fn save(&self) -> Result<()> {
        write_text(
            &self.dir.join("manifest.json"),
            &serde_json::to_string_pretty(&self.manifest)?,
        )
    }

    fn mask_path(&self) -> PathBuf {
        self.dir.join("mask.nii.gz")
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
            let dest = self
                .dir
                .join("responses")
                .join(format!("{}.parquet", r.story));
            let bytes =
                std::fs::read(t).with_context(|| format!("{}: cannot read", t.display()))?;
            write_file_atomically(&dest, |w| w.write_all(&bytes))?;
            new.push((r.story, r.values.ncols(), dest));
        }
        if let Some(n) = neurons {
            cortexflow::io::parquet::read_neurons(n)?;
            let bytes =
                std::fs::read(n).with_context(|| format!("{}: cannot read", n.display()))?;
            write_file_atomically(&self.dir.join("neurons.parquet"), |w| w.write_all(&bytes))?;
        }
        if new.is_empty() {
            return Ok(lines);
        }
        let files: Vec<PathBuf> = new.iter().map(|n| n.2.clone()).collect();
        let basis_dir = self.dir.join("basis");
        let summary = if basis_dir.join("codes.parquet").is_file() {
            basis::extend(&basis_dir, &files)?
        } else {
            basis::run(&files, &self.basis_options(), &basis_dir)?
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

    fn basis_options(&self) -> basis::BasisOptions {
        let b = &self.recipe.basis;
        basis::BasisOptions {
            method: if b.method == "pca" {
                basis::Method::Pca
            } else {
                basis::Method::Odl
            },
            odl: cortexflow::kernels::dictionary::OdlOptions {
                atoms: b.atoms,
                lambda: b.lambda,
                positive_codes: b.positive,
                batch: b.batch,
                max_epochs: b.epochs,
                seed: b.seed,
                lasso: if b.lasso == "lars" {
                    LassoAlgorithm::Lars
                } else {
                    LassoAlgorithm::CoordinateDescent
                },
                ..Default::default()
            },
        }
    }

    /// The story of a BOLD run: `task-T_run-R`, as `simulate` and BIDS stimuli name it.
    fn story_of(run: &Run) -> String {
        format!("task-{}_run-{}", run.task, run.run)
    }

    /// The new runs among `bold` (already-ingested ones are skipped, and said so), with
    /// their stories, which must be in.
    pub fn new_runs(&self, bold: &[PathBuf]) -> Result<(Vec<(Run, String)>, Vec<String>)> {
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

    /// The input work of an update: reduce the new runs, load the stored runs of every
    /// subject to refit (theirs and the dirty ones); and those subjects.
    pub fn jobs(&self, new: &[(Run, String)]) -> (Vec<ingest::Job>, BTreeSet<String>) {
        let mut refit: BTreeSet<String> = self.manifest.dirty.clone();
        refit.extend(new.iter().map(|(r, _)| r.subject.clone()));
        let mut jobs: Vec<ingest::Job> = new
            .iter()
            .map(|(run, story)| ingest::Job::Reduce {
                run: run.clone(),
                story: story.clone(),
            })
            .collect();
        jobs.extend(
            self.manifest
                .runs
                .iter()
                .filter(|(_, r)| refit.contains(&r.subject))
                .map(|(key, r)| ingest::Job::Load {
                    key: key.clone(),
                    subject: r.subject.clone(),
                }),
        );
        (jobs, refit)
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
        let path = ingest::stats_path(&self.dir, key);
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

    /// The writer's end of an update: lists the new runs (their statistics are written),
    /// marks their subjects to refit, writes each refitted subject from its gathered
    /// blocks, then the group and the map.
    pub fn finish(&mut self, outcome: ingest::Outcome) -> Result<Vec<String>> {
        let ingest::Outcome {
            mut lines,
            new,
            refit,
            fits,
            group,
        } = outcome;
        for (run, story) in new {
            let key = run.key();
            if !ingest::stats_path(&self.dir, &key).is_file() {
                bail!("{key}: its statistics were not written (did another process fail?)");
            }
            let scans = nifti::read_header(&run.bold)?.n_vols;
            lines.push(format!("{key}: {scans} scans ingested"));
            let entry = RunEntry {
                subject: run.subject.clone(),
                story,
                bold: run.bold.clone(),
                scans,
            };
            self.manifest.runs.insert(key, entry);
            self.manifest.epoch += 1;
        }
        self.manifest.dirty.extend(refit.iter().cloned());
        self.save()?;
        if refit.is_empty() && self.manifest.results_epoch == self.manifest.epoch {
            return Ok(lines);
        }
        let mask = nifti::read_mask(&self.mask_path())?;
        let mut subjects = ingest::join_subjects(&fits, mask.len())?;
        for subject in refit {
            let fit = subjects.remove(&subject);
            let expected = self
                .manifest
                .runs
                .values()
                .filter(|r| r.subject == subject)
                .count();
            if fit.as_ref().map_or(0, |f| f.runs) != expected {
                bail!("sub-{subject}: fitted from fewer runs than the store lists (did a worker fail?)");
            }
            lines.push(self.write_subject(&subject, fit, &mask)?);
            self.manifest.dirty.remove(&subject);
            self.save()?;
        }
        lines.extend(self.refresh_results(&group)?);
        Ok(lines)
    }

    /// Writes the group maps from the dataflow's group tests, then the map, when stale.
    fn refresh_results(
        &mut self,
        group: &[(u32, Result<GroupBlock, String>)],
    ) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        if self.manifest.results_epoch == self.manifest.epoch {
            return Ok(lines);
        }
        let subjects = self.subjects();
        let (group_dir, map_dir) = (self.dir.join("group"), self.dir.join("map"));
        if subjects.len() >= 2 {
            let g = &self.recipe.group;
            let opt = group::GroupOptions {
                threshold: g.z_cut.map_or(Threshold::Fdr(g.fdr), Threshold::ZCut),
                min_cluster: g.min_cluster,
            };
            let mask = nifti::read_mask(&self.mask_path())?;
            let (n, test, halves) = ingest::join_group(group, mask.len())?;
            if n != subjects.len() {
                bail!(
                    "the group test has {n} subjects, the store {} (did a worker fail?)",
                    subjects.len()
                );
            }
            let labels: Vec<String> = subjects.iter().cloned().collect();
            let halves = (subjects.len() >= 4).then_some(&halves);
            let (_, group_lines) = group::write_results(
                &mask,
                &self.mask_path(),
                &labels,
                &test,
                halves,
                &opt,
                &group_dir,
            )?;
            lines.push(group_lines[0].clone());
            let opt = self.map_options()?;
            let neurons = self.dir.join("neurons.parquet");
            let s = map::run(
                &group_dir,
                &self.dir.join("basis/codes.parquet"),
                neurons.is_file().then_some(neurons.as_path()),
                &opt,
                &map_dir,
            )?;
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

    /// The recipe's settings of the network mapping.
    pub fn map_options(&self) -> Result<map::MapOptions> {
        let m = &self.recipe.map;
        Ok(map::MapOptions {
            atlas: m.atlas.clone(),
            atlas_threshold: m.atlas_threshold,
            sphere_radius_mm: m.sphere_radius,
            score: clap::ValueEnum::from_str(&m.score, true).map_err(anyhow::Error::msg)?,
            assign_threshold: m.assign_threshold,
        })
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
    fn write_subject(
        &self,
        subject: &str,
        fit: Option<ingest::SubjectFit>,
        mask: &Mask,
    ) -> Result<String> {
        let dir = self.dir.join("subjects").join(format!("sub-{subject}"));
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

/// The binary layout of a run's statistics: magic, then u64 k, v, n, absorbed, then f64 LE
/// gram (k·k), xty (k·v, row-major), sum_x (k), sum_y (v), sum_y2 (v), then v validity bytes.
const MAGIC: &[u8; 8] = b"CFSTATS1";

pub fn encode_stats(s: &RunStats, absorbed: usize, valid: &[bool], out: &mut Vec<u8>) {
    let (k, v) = s.xty.dim();
    out.extend_from_slice(MAGIC);
    for n in [k, v, s.n, absorbed] {
        out.extend_from_slice(&(n as u64).to_le_bytes());
    }
    let floats = s
        .gram
        .iter()
        .chain(s.xty.iter())
        .chain(s.sum_x.iter())
        .chain(s.sum_y.iter())
        .chain(s.sum_y2.iter());
    for x in floats {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.extend(valid.iter().map(|&b| b as u8));
}

pub fn decode_stats(path: &Path) -> Result<(RunStats, usize, Vec<bool>)> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("{}: cannot read run statistics", path.display()))?;
    let bad = |what: &str| {
        anyhow::anyhow!(
            "{}: {what} (not run statistics of this cortexflow)",
            path.display()
        )
    };
    if bytes.len() < 40 || &bytes[..8] != MAGIC {
        return Err(bad("bad header"));
    }
    let word = |i: usize| {
        u64::from_le_bytes(bytes[8 + 8 * i..16 + 8 * i].try_into().expect("8 bytes")) as usize
    };
    let (k, v, n, absorbed) = (word(0), word(1), word(2), word(3));
    let floats = k * k + k * v + k + 2 * v;
    if bytes.len() != 40 + 8 * floats + v {
        return Err(bad("wrong size"));
    }
    let f: Vec<f64> = bytes[40..40 + 8 * floats]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let (gram, rest) = f.split_at(k * k);
    let (xty, rest) = rest.split_at(k * v);
    let (sum_x, rest) = rest.split_at(k);
    let (sum_y, sum_y2) = rest.split_at(v);
    let stats = RunStats {
        gram: Array2::from_shape_vec((k, k), gram.to_vec())?,
        xty: Array2::from_shape_vec((k, v), xty.to_vec())?,
        sum_x: Array1::from(sum_x.to_vec()),
        sum_y: Array1::from(sum_y.to_vec()),
        sum_y2: Array1::from(sum_y2.to_vec()),
        n,
    };
    let valid = bytes[40 + 8 * floats..].iter().map(|&b| b != 0).collect();
    Ok((stats, absorbed, valid))
}

/// `run`: a store from a whole dataset (BIDS-like, as `simulate` writes): the mask, the
/// stories' responses (`responses_dir`, with its neurons.parquet beside it) and every run.
pub fn run_all(
    recipe: &Recipe,
    data: &Path,
    responses_dir: &Path,
    out: &Path,
    cluster: &Cluster,
) -> Result<Vec<String>> {
    let ds = bids::discover(data)?;
    let mask = ds
        .mask
        .clone()
        .with_context(|| format!("{}: no mask.nii[.gz] at the top", data.display()))?;
    let tables: Vec<PathBuf> = list(responses_dir, ".parquet")?;
    let neurons = responses_dir
        .parent()
        .map(|p| p.join("neurons.parquet"))
        .filter(|p| p.is_file());
    let bold: Vec<PathBuf> = ds.runs.iter().map(|r| r.bold.clone()).collect();
    let (recipe, dir) = (recipe.clone(), out.to_path_buf());
    let prepare: ingest::Prepare = Box::new(move || {
        let mut store = Store::init(&dir, &recipe, Some(&mask))?;
        store.ingest_responses(&tables, neurons.as_deref())
    });
    ingest::run_update(cluster, out, None, bold, prepare)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_statistics_round_trip_and_corruption_is_an_error() {
        let x = Array2::from_shape_fn((9, 3), |(t, j)| (t * (j + 1)) as f64 % 7.0);
        let y = Array2::from_shape_fn((9, 4), |(t, j)| ((t + j) % 5) as f64 - 2.0);
        let s = RunStats::from_block(x.view(), y.view());
        let mut bytes = Vec::new();
        encode_stats(&s, 2, &[true, false, true, true], &mut bytes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.stats");
        std::fs::write(&path, &bytes).unwrap();
        let (back, absorbed, valid) = decode_stats(&path).unwrap();
        assert_eq!(back, s);
        assert_eq!(absorbed, 2);
        assert_eq!(valid, vec![true, false, true, true]);
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(decode_stats(&path)
            .unwrap_err()
            .to_string()
            .contains("wrong size"));
    }
}
