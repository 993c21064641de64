//! Many models, one pass over the BOLD: `run` with several recipes makes one store a
//! recipe (its own model, taps, layers and basis) from one dataset, and reads and cleans
//! each run once for all of them.
//!
//! The cleaning of a run (smoothing, censoring, confounds, drift, intercept) does not
//! depend on the atoms (Frisch–Waugh–Lovell: the BOLD is cleaned of the nuisance alone,
//! and each model's atoms are projected off the same nuisance), so the recipes must agree
//! on it ([`check_same_cleaning`]); the rest may differ. The pass writes each store's
//! statistics of each run; each store's update then fits them as `run` would have, so
//! every store holds the bytes a `run` of its recipe alone writes (tests/it/many.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::cluster::Cluster;
use crate::engine::encoding::{bold_reads, reduce_into, Plan};
use crate::engine::update::{self, DatasetRun, RunRequest};
use crate::error::{bail, err, Result};
use crate::io::bids::Run;
use crate::operators::{agree, total};
use crate::progress;
use crate::store::{Layout, Recipe, Store, WriteLock};

/// What a run of several recipes did: the lines to print, the stores (one a recipe, in
/// order) and the BOLD runs read to reduce them (all processes together).
pub struct ManyRun {
    pub lines: Vec<String>,
    pub stores: Vec<PathBuf>,
    pub bold_reads: u64,
}

/// `run` of several named recipes on one dataset: `OUT/<name>/` a store each. Every
/// recipe, model path and existing store is checked before any store is touched, and the
/// writer holds every store's lock from the first store made to the last fit.
pub fn run_many(recipes: &[(String, Recipe)], req: &RunRequest, out: &Path, cluster: &Cluster) -> Result<ManyRun> {
    check_names(recipes)?;
    check_same_cleaning(recipes)?;
    if Layout::new(out).manifest().is_file() {
        bail!("--out {}: a store; with several recipes --out is the folder of their stores (OUT/<recipe>/)", out.display());
    }
    if req.responses.is_some() {
        if let Some((name, _)) = recipes.iter().find(|(_, r)| r.model.path.is_some()) {
            bail!("--responses gives every recipe the same responses, but recipe '{name}' names a model (model.path): leave out --responses so that each model reads the dataset's stimuli");
        }
    }
    let dataset = DatasetRun::open(req)?;
    let stores: Vec<PathBuf> = recipes.iter().map(|(name, _)| out.join(name)).collect();
    for ((name, recipe), dir) in recipes.iter().zip(&stores) {
        let said = |e: crate::error::Error| err!("recipe '{name}': {e}");
        dataset.check(recipe, cluster).map_err(said)?;
        if let Some(model) = recipe.model.path.as_ref().filter(|p| !p.exists()) {
            bail!("recipe '{name}': model.path {}: no such file or folder", model.display());
        }
        if Layout::new(dir).manifest().is_file() && Store::open_reader(dir).map_err(said)?.manifest.recipe != recipe.fingerprint() {
            bail!("recipe '{name}': {} is a store made with another recipe; use a new --out", dir.display());
        }
    }
    let _held = match cluster.is_writer() {
        true => stores.iter().map(|d| WriteLock::acquire(d)).collect::<Result<Vec<_>>>()?,
        false => Vec::new(),
    };
    let mut lines = Vec::new();
    for ((name, recipe), dir) in recipes.iter().zip(&stores) {
        // The store, its mask and its stories (through its model), with no runs yet.
        let (stimuli, prepare) = dataset.new_store(recipe, req, dir)?;
        let made = update::run_update(cluster, dir, stimuli, Vec::new(), prepare).map_err(|e| err!("recipe '{name}': {e}"))?;
        lines.extend(made.into_iter().map(|l| format!("{name}: {l}")));
    }
    let (new, bold_reads) = reduce_for_stores(cluster, &stores, &dataset.bold)?;
    lines.push(format!("{new} new BOLD runs read and cleaned once each for {} models ({bold_reads} reads)", stores.len()));
    for ((name, _), dir) in recipes.iter().zip(&stores) {
        let fitted = update::run_update_reduced(cluster, dir, dataset.bold.clone()).map_err(|e| err!("recipe '{name}': {e}"))?;
        lines.extend(fitted.into_iter().map(|l| format!("{name}: {l}")));
    }
    Ok(ManyRun { lines, stores, bold_reads })
}

/// Reads and cleans each of `bold` that is new to the stores once, reduces it against
/// each store's atoms of its story and writes the statistics into each store (not listed
/// yet: [`update::run_update_reduced`] lists and fits them), each run into the stores it
/// is new to. The runs are dealt over every worker of every process, once the writer
/// holds every store's lock. Returns the runs new to any store and the BOLD reads of all
/// processes.
pub fn reduce_for_stores(cluster: &Cluster, stores: &[PathBuf], bold: &[PathBuf]) -> Result<(u64, u64)> {
    let bar = progress::bar(0, &format!("reading runs for {} models", stores.len()));
    let (stores_w, bold_w, bar_w) = (stores.to_vec(), bold.to_vec(), bar.clone());
    // The count is the process's: its first worker says it once all of them are done.
    let (before, local) = (bold_reads(), cluster.workers);
    let results = cluster.execute(move |worker| -> Result<(u64, u64)> {
        let locks = match worker.index() {
            0 => stores_w.iter().map(|d| WriteLock::acquire(d)).collect::<Result<Vec<_>>>(),
            _ => Ok(Vec::new()),
        };
        // Nobody reads the stores before the writer holds them.
        if !agree(worker, locks.is_ok()) {
            return Err(locks.err().unwrap_or_else(|| err!("stopped: the writer (process 0) could not lock the stores; see its error")));
        }
        let _held = locks.expect("agreed");
        let planned = (|| {
            let opened = stores_w.iter().map(|d| Store::open_reader(d)).collect::<Result<Vec<_>>>()?;
            let plans = opened.iter().map(|s| Plan::of_store(s, &bar_w)).collect::<Result<Vec<_>>>()?;
            Ok((plans, new_to_each(&opened, &bold_w)?))
        })();
        if !agree(worker, planned.is_ok()) {
            return Err(planned.err().unwrap_or_else(|| err!("stopped: another worker could not open the stores")));
        }
        let (plans, new) = planned.expect("agreed");
        let (index, peers) = (worker.index(), worker.peers());
        let mine: Vec<_> = new.iter().skip(index).step_by(peers).collect();
        bar_w.inc_length(mine.len() as u64);
        let mut done = Ok(());
        for (run, story, into) in mine {
            let into: Vec<&Plan> = into.iter().map(|&i| &plans[i]).collect();
            if let Err(e) = reduce_into(&into, run, story) {
                done = Err(e);
                break;
            }
            bar_w.inc(1);
        }
        if !agree(worker, done.is_ok()) {
            return Err(done.err().unwrap_or_else(|| err!("stopped: another worker failed; see its error")));
        }
        let read = match worker.index() % local {
            0 => bold_reads() - before,
            _ => 0,
        };
        Ok((new.len() as u64, total(worker, read)))
    })?;
    bar.finish_and_clear();
    Ok(crate::engine::cluster::all_ok(results)?.into_iter().next().unwrap_or((0, 0)))
}

/// Each run of `bold` new to one or more of the stores, with its story and those stores
/// (after an interrupted `run`, some stores may list runs the others do not yet).
fn new_to_each(stores: &[Store], bold: &[PathBuf]) -> Result<Vec<(Run, String, Vec<usize>)>> {
    let mut runs: BTreeMap<String, (Run, String, Vec<usize>)> = BTreeMap::new();
    for (i, store) in stores.iter().enumerate() {
        for (run, story) in store.new_runs(bold)?.0 {
            runs.entry(run.key()).or_insert_with(|| (run, story, Vec::new())).2.push(i);
        }
    }
    Ok(runs.into_values().collect())
}

/// Refuses recipes that clean runs differently: the shared pass cleans each run once.
pub fn check_same_cleaning(recipes: &[(String, Recipe)]) -> Result<()> {
    let Some((first, a)) = recipes.first() else {
        return Ok(());
    };
    for (name, b) in &recipes[1..] {
        let (ea, eb) = (&a.encoding, &b.encoding);
        let differs = [
            ("encoding.high_pass", ea.high_pass != eb.high_pass),
            ("encoding.zscore_bold", ea.zscore_bold != eb.zscore_bold),
            ("encoding.smoothing_fwhm", ea.smoothing_fwhm != eb.smoothing_fwhm),
            ("confounds", a.confounds != b.confounds),
        ];
        if let Some((field, _)) = differs.iter().find(|(_, d)| *d) {
            bail!(
                "recipes '{first}' and '{name}' clean BOLD differently ({field}): models compared in one run share how runs are cleaned; run them separately"
            );
        }
    }
    Ok(())
}

/// The folder under OUT of the stores' comparison.
pub const COMPARE: &str = "compare";

/// Store names (the recipes' file stems) become folders under OUT: safe, distinct names.
fn check_names(recipes: &[(String, Recipe)]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for (name, _) in recipes {
        crate::io::name::check("recipe", name).map_err(|e| err!("{e} (it names the recipe's store under --out)"))?;
        if name == COMPARE {
            bail!("recipe name '{COMPARE}': OUT/{COMPARE}/ holds the comparison of the stores; rename the recipe file");
        }
        if !seen.insert(name.as_str()) {
            bail!("two recipes are named '{name}': each names its store's folder under --out, so rename one file");
        }
    }
    Ok(())
}
