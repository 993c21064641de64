//! One store command as one dataflow: the writer prepares (creates the store, adds the
//! mask, stories and basis, edits the manifest), every worker plans the same update from
//! the store and feeds its share of the runs into the encoding dataflow, the fits and group
//! tests are gathered at worker 0 of process 0, and the writer finishes: it lists the new
//! runs, writes each refitted subject, then the group maps and the network mapping.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use indicatif::ProgressBar;
use timely::worker::Worker;

use crate::engine::cluster::{agree_or_say, first_error, Cluster};
use crate::engine::encoding::{Job, Plan};
use crate::engine::local_inputs::{self, NewRuns};
use crate::engine::budget::{self, Footprint, Shape};
use crate::engine::waves;
use crate::engine::stories::{self, StimulusSpec};
use crate::error::{bail, err, Result};
use crate::io::bids::{self, Run};
use crate::operators::{least, share, total, BlockFit, BlockKey};
use crate::progress;
use crate::io::nifti;
use crate::io::regions::{self, Regions};
use crate::stages::{group_mask, join};
use crate::store::{list, ConfoundsUsed, Layout, Recipe, RunEntry, Store, WriteLock};

/// The writer's part of a command before the dataflow (creating the store, the mask,
/// stories and basis, manifest edits).
pub type Prepare = Box<dyn FnOnce() -> Result<Vec<String>> + Send>;

/// What the writer of an update starts from: the lines so far, the new runs (with their
/// stories) and the subjects to refit.
pub struct Outcome {
    pub lines: Vec<String>,
    pub new: Vec<(Run, String)>,
    pub refit: BTreeSet<String>,
    /// The listings of new runs read by the processes that hold them (none on a shared
    /// file system: the writer reads them).
    pub listings: BTreeMap<String, Listing>,
}

/// Every worker's plan, from the store as the writer left it (or this process's copy of
/// it) and the BOLD files given, or the new runs every process gave (`found`, without a
/// shared file system); and the subjects of the group once the update is done (label
/// order).
fn plan(dir: &Path, bold: &[PathBuf], found: Option<NewRuns>, reduced: bool, bar: &ProgressBar, workers: usize) -> Result<(Plan, Outcome, Vec<String>, Shape)> {
    let store = Store::open_reader(dir)?;
    let (new, lines, listings, held) = match found {
        Some(f) => (f.new, f.lines, f.listings, f.held),
        None => {
            let (new, lines) = store.new_runs(bold)?;
            (new, lines, BTreeMap::new(), None)
        }
    };
    let (jobs, refit) = jobs(&store, &new, reduced);
    let group: Vec<String> = store.group_subjects_with(new.iter().map(|(r, _)| r.subject.as_str())).into_iter().collect();
    // With nothing to refit and the results fresh, the group is not rebuilt.
    let rebuild = !refit.is_empty() || store.manifest.results_epoch != store.manifest.epoch;
    let stored: Vec<(String, PathBuf)> = group
        .iter()
        .filter(|s| rebuild && !refit.contains(*s))
        .map(|s| {
            let beta = store.paths().subject_map(s, store.group_map());
            (s.clone(), beta)
        })
        .collect();
    let plan = Plan { jobs, stored, held, ..Plan::of_store(&store, bar)? };
    let runs = budget::runs_by_subject(store.manifest.runs.values().map(|r| r.subject.as_str()).chain(new.iter().map(|(r, _)| r.subject.as_str())));
    let shape = Shape::new(
        &store.recipe,
        plan.mask.as_ref(),
        store.manifest.stories.values().map(|s| s.scans).max().unwrap_or(0),
        refit.iter().map(|s| runs.get(s.as_str()).copied().unwrap_or(0)).max().unwrap_or(0),
        group.len(),
        workers,
    );
    let outcome = Outcome { lines, new, refit, listings };
    Ok((plan, outcome, group, shape))
}

/// Runs a store command on every worker of every process: the writer prepares, all agree,
/// every worker plans the same update, and the subjects to refit go through the fitting
/// dataflow in waves (see [`waves`]), each wave's fits written by the writer thread while
/// the next is fitted; the writer ends with the group and the map. Returns the lines to
/// print.
pub fn run_update(
    cluster: &Cluster,
    dir: &Path,
    stimuli: Option<StimulusSpec>,
    bold: Vec<PathBuf>,
    prepare: Prepare,
) -> Result<Vec<String>> {
    update(cluster, dir, stimuli, bold, false, prepare)
}

/// [`run_update`] of new runs whose statistics are already in the store (written, not yet
/// listed, by [`crate::engine::many::reduce_for_stores`], which read each run once for
/// several stores): they are read from there instead of from their BOLD.
pub fn run_update_reduced(cluster: &Cluster, dir: &Path, bold: Vec<PathBuf>) -> Result<Vec<String>> {
    update(cluster, dir, None, bold, true, Box::new(|| Ok(Vec::new())))
}

fn update(
    cluster: &Cluster,
    dir: &Path,
    stimuli: Option<StimulusSpec>,
    bold: Vec<PathBuf>,
    reduced: bool,
    prepare: Prepare,
) -> Result<Vec<String>> {
    let prepare = Mutex::new(Some(prepare));
    // The writer (worker 0 of process 0) holds the store's lock from before it prepares
    // until it has finished.
    let lock: Arc<Mutex<Option<WriteLock>>> = Arc::default();
    let bar = progress::bar(0, "reducing runs");
    let (dir_w, bar_w, lock_w) = (dir.to_path_buf(), bar.clone(), lock.clone());
    let (limit, workers, local) = (cluster.memory_limit, cluster.workers, cluster.local_inputs);
    let command = cluster.command.clone();
    let results = cluster.execute(move |worker| -> Result<Option<Vec<String>>> {
        let first = worker.index() == 0;
        // Every process must run the same mode: their dataflows differ.
        let locals = total(worker, local as u64);
        if locals != 0 && locals != worker.peers() as u64 {
            bail!("--local-inputs is given to some processes and not to others: give it to all or none");
        }
        same_command(worker, &command, workers)?;
        let prepared = match first {
            true => WriteLock::acquire(&dir_w).and_then(|held| {
                *lock_w.lock().expect("not poisoned") = Some(held);
                prepare.lock().expect("not poisoned").take().expect("runs once")()
            }),
            false => Ok(Vec::new()),
        };
        let mut lines = agree_or_say(worker, prepared, workers, "(the writer) failed")?;
        // Without a shared file system only process 0 has the stories' stimuli (and the
        // store): the others take part in the forward passes' dataflow without batches.
        let stories = match local {
            true => total(worker, stimuli.is_some() as u64) > 0,
            false => stimuli.is_some(),
        };
        let in_store = !local || worker.index() < workers;
        match (&stimuli, stories) {
            (Some(spec), true) if in_store => lines.extend(stories::ingest(worker, &dir_w, spec, local.then_some(workers))?),
            (_, true) => stories::take_part(worker)?,
            (_, false) => {}
        }
        let replica = match local {
            true => Some(local_inputs::replicate(worker, &dir_w, workers)?),
            false => None,
        };
        let dir_r = replica.as_ref().map_or(dir_w.as_path(), |r| r.dir.as_path());
        let found = match local {
            true => Some(local_inputs::gather_new_runs(worker, dir_r, &bold, workers)?),
            false => None,
        };
        let planned = plan(dir_r, &bold, found, reduced, &bar_w, workers);
        let what = match local {
            true => "could not plan the update",
            false => "could not read the store (every process needs the same store directory, or give --local-inputs)",
        };
        let (plan, mut outcome, group, shape) = agree_or_say(worker, planned, workers, what)?;
        lines.append(&mut outcome.lines);
        outcome.lines = lines;
        // Every process sizes the waves under its own limit; all take the smallest.
        // A wave of ⌈workers / runs a subject⌉ subjects gives every worker a run to reduce
        // (and their blocks are fitted on every worker): more subjects add memory, not speed.
        // Without a shared file system a process reduces only its own subjects' runs: a
        // wave takes that many subjects from each process.
        let most = match &plan.held {
            None => worker.peers().div_ceil(shape.runs_per_subject.max(1) as usize),
            Some(h) => worker.peers().div_ceil(h.workers.max(1)) * h.workers.div_ceil(shape.runs_per_subject.max(1) as usize),
        };
        let sized = Footprint::of(shape).subjects_per_wave(limit, most, shape);
        let per_wave = least(worker, sized.as_ref().map_or(0, |&n| n as u64)) as usize;
        if per_wave == 0 {
            return Err(sized.err().unwrap_or_else(|| err!("stopped: another process's --memory-limit cannot hold one subject; see its error")));
        }
        tracing::info!(subjects_per_wave = per_wave, "memory budget {}", budget::human(limit));
        let started = std::time::Instant::now();
        let waves = waves::waves(&plan.jobs, per_wave, plan.held.as_ref());
        let peers = worker.peers();
        let mine: usize = waves.iter().enumerate().map(|(i, w)| plan.dealt(&w.jobs, i, worker.index(), peers).len()).sum();
        plan.bar.inc_length(mine as u64);
        let writer = first.then(|| waves::Writer::spawn(plan.clone(), outcome, group));
        for (i, wave) in waves.into_iter().enumerate() {
            let fitted = waves::fit_wave(worker, &plan, &wave.jobs, i);
            // All agree before the writer sees a wave, so it never gets an incomplete one.
            let healthy = writer.as_ref().is_none_or(waves::Writer::healthy);
            let mine = match (&fitted, healthy) {
                (Err(e), _) => Some(e.to_string()),
                // The writer's own words come when it is stopped.
                (Ok(_), false) => Some("stopped: the writer (process 0) failed; see its error".into()),
                (Ok(_), true) => None,
            };
            if let Some((process, text)) = first_error(worker, mine, workers) {
                let stopped = writer.map(waves::Writer::abort);
                return Err(match (fitted, stopped) {
                    (Err(e), _) => e,
                    (Ok(_), Some(Err(e))) if !e.to_string().starts_with("stopped:") => e,
                    _ if text.starts_with("stopped:") => err!("{text}"),
                    _ => err!("stopped: process {process} failed: {text}"),
                });
            }
            if let Some(w) = &writer {
                // A writer that stopped says why at the next wave, or when it is finished.
                let (fits, shipped) = fitted.expect("agreed");
                w.write(wave.subjects, fits, shipped);
            }
        }
        tracing::info!(worker = worker.index(), seconds = started.elapsed().as_secs_f64(), "dataflow done: runs reduced, subjects fitted");
        writer.map(waves::Writer::finish).transpose()
    })?;
    bar.finish_and_clear();
    let _held = lock.lock().expect("not poisoned").take();
    let out = crate::engine::cluster::all_ok(results)?.into_iter().flatten().next_back();
    Ok(out.unwrap_or_else(|| {
        vec![format!(
            "process {}: did its share of the work; process 0 writes the results",
            cluster.process
        )]
    }))
}

/// The input work of an update: reduce the new runs (or, when `reduced`, read the
/// statistics a shared pass wrote for them), load the stored runs of every subject to
/// refit (theirs and the dirty ones); and those subjects.
pub fn jobs(store: &Store, new: &[(Run, String)], reduced: bool) -> (Vec<Job>, BTreeSet<String>) {
    let mut refit: BTreeSet<String> = store.manifest.dirty.clone();
    refit.extend(new.iter().map(|(r, _)| r.subject.clone()));
    let mut jobs: Vec<Job> = new
        .iter()
        .map(|(run, story)| {
            let (run, story) = (run.clone(), story.clone());
            match reduced {
                true => Job::Reduced { run, story },
                false => Job::Reduce { run, story },
            }
        })
        .collect();
    jobs.extend(
        store.manifest
            .runs
            .iter()
            .filter(|(_, r)| refit.contains(&r.subject))
            .map(|(key, r)| Job::Load {
                key: key.clone(),
                subject: r.subject.clone(),
            }),
    );
    (jobs, refit)
}



/// What the manifest lists of a new run beside its name and story: its scans and the
/// confounds it was reduced with. Read where the run's files are (another process's, in a
/// cluster without a shared file system).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Listing {
    pub scans: usize,
    pub confounds: Option<ConfoundsUsed>,
}

impl Listing {
    /// The listing of `run` under `recipe` (its header, and its confounds table beside it).
    pub fn of(recipe: &Recipe, run: &Run) -> Result<Listing> {
        let (scans, _) = crate::io::run_clock(&run.bold)?;
        let confounds = crate::stages::confounds::of_run(&recipe.confounds, &run.bold, scans)?
            .map(|c| -> Result<ConfoundsUsed> {
                let table = match recipe.confounds.strategy.is_empty() {
                    true => None,
                    false => crate::io::confounds::beside(&run.bold)?.map(|t| crate::store::absolute(&t)),
                };
                Ok(ConfoundsUsed { table, kept_scans: c.keep.map_or(scans, |k| k.len()) })
            })
            .transpose()?;
        Ok(Listing { scans, confounds })
    }
}

/// Lists new runs in the manifest (their statistics, written by the workers, are sealed)
/// and marks `refit` to be refitted; one line per run. `listed`: the listings read by the
/// process that holds a run (the others are read here).
pub fn list_runs(store: &mut Store, new: Vec<(Run, String)>, refit: &BTreeSet<String>, listed: &BTreeMap<String, Listing>) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for (run, story) in new {
        let key = run.key();
        let stats = store.paths().stats(&key);
        if !stats.is_file() {
            bail!("{key}: its statistics were not written (did another process fail?)");
        }
        store.seal(&stats)?;
        let Listing { scans, confounds: used } = match listed.get(&key) {
            Some(l) => l.clone(),
            None => Listing::of(&store.recipe, &run)?,
        };
        let censored = match scans - used.as_ref().map_or(scans, |u| u.kept_scans) {
            0 => String::new(),
            n => format!(" ({n} censored)"),
        };
        lines.push(format!("{key}: {scans} scans ingested{censored}"));
        let entry = RunEntry {
            subject: run.subject.clone(),
            story,
            bold: crate::store::absolute(&run.bold),
            scans,
            confounds: used,
        };
        store.manifest.runs.insert(key, entry);
        store.manifest.epoch += 1;
    }
    store.manifest.dirty.extend(refit.iter().cloned());
    store.save()?;
    Ok(lines)
}

/// Writes each of `subjects` from its blocks among `fits` (removing the maps of one with no
/// runs left), each sealed and taken off the dirty list as it is written.
pub fn write_fits(store: &mut Store, fits: Vec<(BlockKey, BlockFit)>, subjects: &[String]) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    if subjects.is_empty() {
        return Ok(lines);
    }
    let mask = store.read_mask()?;
    let mut joined = join::join_subjects(fits, mask.len())?;
    for subject in subjects {
        let fit = joined.remove(subject);
        let expected = store.manifest.runs.values().filter(|r| &r.subject == subject).count();
        if fit.as_ref().map_or(0, |f| f.runs) != expected {
            bail!("sub-{subject}: fitted from fewer runs than the store lists (did a worker fail?)");
        }
        lines.push(store.write_subject(subject, fit, &mask)?);
        store.manifest.dirty.remove(subject);
        store.save()?;
    }
    Ok(lines)
}

/// Refuses processes given different commands (collective): one `retract`ing another run
/// than process 0 would see its run dropped without a word, one `ingest`ing while process 0
/// `run`s would join a dataflow it does not mean.
fn same_command(worker: &mut Worker, command: &str, workers: usize) -> Result<()> {
    if worker.peers() <= workers {
        return Ok(());
    }
    let mine = match worker.index() % workers.max(1) {
        0 => vec![command.to_string()],
        _ => Vec::new(),
    };
    let all = share(worker, mine);
    let process = |w: usize| w / workers.max(1);
    match all.iter().find(|(_, c)| *c != all[0].1) {
        Some((w, other)) => bail!(
            "process {} was given `{other}` and process {} `{}`: every process runs the same command",
            process(*w),
            process(all[0].0),
            all[0].1
        ),
        None => Ok(()),
    }
}

/// What `run` reads: the dataset, which space of its derivatives, where its stories come
/// from, and the threshold of a group mask made from the runs' brain masks.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub data: PathBuf,
    pub space: Option<String>,
    /// Folder of `responses` tables (neurons.parquet beside it); `None`: the dataset's
    /// stimuli through the recipe's model, or a simulation's `truth/responses` when the
    /// recipe names no model.
    pub responses: Option<PathBuf>,
    pub mask_threshold: f64,
}

/// `run`: a store from a whole dataset (BIDS-like or fMRIPrep derivatives): the mask, the
/// stories and every run.
pub fn run_all(recipe: &Recipe, req: &RunRequest, out: &Path, cluster: &Cluster) -> Result<Vec<String>> {
    if cluster.local_inputs && !cluster.is_writer() {
        if req.responses.is_some() {
            bail!("--responses goes to process 0, which holds the store (--local-inputs)");
        }
        // This process's runs only: the store, its mask and stories are process 0's.
        return run_update(cluster, out, None, local_runs(req)?, Box::new(|| Ok(Vec::new())));
    }
    // A process that stops before the cluster connects leaves the others waiting: say what
    // a cluster without a shared file system needs.
    let before_connecting = |e: crate::error::Error| match cluster.processes > 1 && !cluster.local_inputs {
        true => err!("{e}\n(every process reads the whole dataset and the store; where they are not on a file system all share, give every process --local-inputs)"),
        false => e,
    };
    // The dataset lives until the update ends: a mask made from its runs is a temporary file.
    let (dataset, stimuli, prepare) = prepare_run(recipe, req, out, cluster).map_err(before_connecting)?;
    run_update(cluster, out, stimuli, dataset.bold.clone(), prepare)
}

/// What `run` does before the processes connect: the dataset opened and checked, the
/// store's preparation planned.
fn prepare_run(recipe: &Recipe, req: &RunRequest, out: &Path, cluster: &Cluster) -> Result<(DatasetRun, Option<StimulusSpec>, Prepare)> {
    let holds_stores = || -> Result<bool> {
        let entries = std::fs::read_dir(out).map_err(|e| crate::error::Error::io(out, e))?;
        Ok(entries.filter_map(|e| e.ok()).any(|e| Layout::new(&e.path()).manifest().is_file()))
    };
    if out.is_dir() && !Layout::new(out).manifest().is_file() && holds_stores()? {
        bail!("--out {}: a folder of stores (a comparison's?), not a store: give one a store of its own", out.display());
    }
    let dataset = DatasetRun::open(req)?;
    if !cluster.reads_every_run() && dataset.ds.mask.is_none() && dataset.regions.is_none() {
        bail!(
            "{}: no mask.nii[.gz] at the top: with --local-inputs a group mask would see only this process's brain masks; put the analysis mask there (`cortexflow intersect-masks` over every run's brain mask)",
            req.data.display()
        );
    }
    dataset.check(recipe, cluster)?;
    let (stimuli, prepare) = dataset.new_store(recipe, req, out)?;
    Ok((dataset, stimuli, prepare))
}

/// The BOLD runs of the dataset of `req` on this process's disks (a process other than 0
/// without a shared file system).
fn local_runs(req: &RunRequest) -> Result<Vec<PathBuf>> {
    let ds = bids::discover(&req.data, req.space.as_deref())?;
    Ok(ds.runs.iter().map(|r| r.bold.clone()).collect())
}

/// A dataset opened for `run`: its runs, its analysis mask (kept while the command runs)
/// and, for region time series, its regions.
pub struct DatasetRun {
    ds: bids::Dataset,
    mask: MaskFile,
    mask_line: Option<String>,
    regions: Option<Regions>,
    pub bold: Vec<PathBuf>,
}

impl DatasetRun {
    pub fn open(req: &RunRequest) -> Result<DatasetRun> {
        let ds = bids::discover(&req.data, req.space.as_deref())?;
        if ds.runs.is_empty() {
            bail!("{}: no BOLD runs ({})", req.data.display(), ds.missing.join("; "));
        }
        let (mask, mask_line, regions) = dataset_mask(&ds, req.mask_threshold)?;
        let bold = ds.runs.iter().map(|r| r.bold.clone()).collect();
        Ok(DatasetRun { ds, mask, mask_line, regions, bold })
    }

    /// Refuses a recipe that cannot analyse these runs (image settings on region time
    /// series) or whose update cannot fit the memory limit even a subject at a time.
    pub fn check(&self, recipe: &Recipe, cluster: &Cluster) -> Result<()> {
        if self.regions.is_some() {
            regions::check_recipe(recipe)?;
        }
        check_budget(recipe, &self.ds, self.mask.path(), cluster)
    }

    /// The stories of a new store of `recipe` at `dir` (stimuli through its model, or
    /// `responses` tables) and the writer's preparation of it: the store made with the
    /// mask and regions, the tables ingested.
    pub fn new_store(&self, recipe: &Recipe, req: &RunRequest, dir: &Path) -> Result<(Option<StimulusSpec>, Prepare)> {
        let simulated = req.data.join("truth/responses");
        let (responses, stimuli) = match (&req.responses, &recipe.model.path) {
            (Some(dir), _) => (Some(dir.clone()), None),
            (None, Some(_)) => {
                // A bad cache setting is said before any store is made.
                crate::io::activation_cache::ActivationCache::from_env()?;
                (None, Some(dataset_stimuli(&self.ds)?))
            }
            (None, None) if simulated.is_dir() => (Some(simulated), None),
            (None, None) => bail!(
                "the recipe names no model (model.path) to read the dataset's stimuli: set one, or give --responses with precomputed tables"
            ),
        };
        let (tables, neurons) = match &responses {
            Some(dir) => (list(dir, ".parquet")?, dir.parent().map(|p| p.join("neurons.parquet")).filter(|p| p.is_file())),
            None => (Vec::new(), None),
        };
        let (recipe, dir, mask) = (recipe.clone(), dir.to_path_buf(), self.mask.path().to_path_buf());
        let (regions, mask_line) = (self.regions.clone(), self.mask_line.clone());
        let prepare: Prepare = Box::new(move || {
            let mut store = Store::init(&dir, &recipe, Some(&mask))?;
            if let Some(r) = &regions {
                store.set_regions(r)?;
            }
            let mut lines: Vec<String> = mask_line.into_iter().collect();
            if !tables.is_empty() {
                lines.extend(store.ingest_responses(&tables, neurons.as_deref())?);
            }
            Ok(lines)
        });
        Ok((stimuli, prepare))
    }
}

/// Refuses, before any work, a dataset whose update cannot fit in the memory limit even one
/// subject at a time (the update checks again once the store is made).
fn check_budget(recipe: &Recipe, ds: &bids::Dataset, mask: &Path, cluster: &Cluster) -> Result<()> {
    let mut scans = 0;
    for run in &ds.runs {
        scans = scans.max(crate::io::run_clock(&run.bold)?.0);
    }
    let runs = budget::runs_by_subject(ds.runs.iter().map(|r| r.subject.as_str()));
    let most = runs.values().copied().max().unwrap_or(0);
    let shape = Shape::new(recipe, Some(&nifti::read_mask(mask)?), scans, most, runs.len(), cluster.workers);
    Footprint::of(shape).subjects_per_wave(cluster.memory_limit, 1, shape).map(|_| ())
}

/// The analysis mask of a dataset: its `mask.nii[.gz]`, or the group mask of its runs'
/// brain masks (voxels in more than `threshold` of them, nilearn's `intersect_masks`),
/// written to a temporary file the store copies; and a line saying which. For runs of
/// region time series, the line of its regions (`regions.tsv`) and the regions.
fn dataset_mask(ds: &bids::Dataset, threshold: f64) -> Result<(MaskFile, Option<String>, Option<Regions>)> {
    let temporary = |what: &str| {
        tempfile::Builder::new()
            .prefix(&format!("cortexflow-{what}-"))
            .suffix(".nii.gz")
            .tempfile()
            .map_err(|e| err!("cannot make a temporary file for the {what}: {e}"))
    };
    let region_runs = ds.runs.iter().filter(|r| regions::is_region_run(&r.bold)).count();
    if region_runs > 0 {
        if region_runs < ds.runs.len() {
            bail!("{}: runs of images and of region time series together; choose one with --space", ds.root.display());
        }
        let Some(list) = &ds.regions else {
            bail!(
                "{}: runs of region time series need {} at the dataset's root (columns region and network: each region's network, for the mapping)",
                ds.root.display(),
                regions::REGIONS_FILE
            );
        };
        let r = Regions::read(list)?;
        let tmp = temporary("regions")?;
        nifti::write_map(tmp.path(), &r.grid(), &r.mask_volume(), None)?;
        let networks: std::collections::BTreeSet<&String> = r.networks.iter().collect();
        let line = format!(
            "regions: {} regions of {} networks ({}; the mapping uses these networks, not map.atlas)",
            r.names.len(),
            networks.len(),
            list.display()
        );
        return Ok((MaskFile::Made(tmp), Some(line), Some(r)));
    }
    if let Some(m) = &ds.mask {
        return Ok((MaskFile::Given(m.clone()), None, None));
    }
    if ds.brain_masks.is_empty() {
        bail!(
            "{}: no mask.nii[.gz] at the top and no brain masks beside the runs (…_desc-brain_mask.nii.gz); give a mask",
            ds.root.display()
        );
    }
    let tmp = temporary("group-mask")?;
    let masks: Vec<&Path> = ds.brain_masks.iter().map(PathBuf::as_path).collect();
    let g = group_mask::run(&masks, threshold, true, tmp.path())?;
    let line = format!(
        "group mask: {} voxels in more than {threshold} of the runs' {} brain masks",
        g.voxels, g.masks
    );
    Ok((MaskFile::Made(tmp), Some(line), None))
}

/// A mask given by the dataset, or made for this command.
enum MaskFile {
    Given(PathBuf),
    Made(tempfile::NamedTempFile),
}

impl MaskFile {
    fn path(&self) -> &Path {
        match self {
            MaskFile::Given(p) => p,
            MaskFile::Made(t) => t.path(),
        }
    }
}

/// Whether two files hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let read = |p: &Path| {
        crate::io::regular_file(p)?;
        std::fs::read(p).map_err(|e| crate::error::Error::io(p, e))
    };
    Ok(read(a)? == read(b)?)
}

/// The dataset's stories as stimuli for the recipe's model: one per `task-T_run-R`, its
/// words from the first of its runs that has a stimulus, its clock from the runs' BOLD
/// headers (which must agree: one TR for the dataset, one scan count per story).
pub fn dataset_stimuli(ds: &bids::Dataset) -> Result<StimulusSpec> {
    let mut stories: std::collections::BTreeMap<String, (Option<PathBuf>, usize, PathBuf)> = Default::default();
    let mut tr: Option<(f64, PathBuf)> = None;
    for run in &ds.runs {
        let (n_vols, run_tr) = crate::io::run_clock(&run.bold)?;
        match &tr {
            None => tr = Some((run_tr, run.bold.clone())),
            Some((t, first)) if (t - run_tr).abs() > crate::store::TR_TOLERANCE => bail!(
                "{} has a TR of {run_tr} s and {} one of {t} s: a store holds runs of one clock; ingest them into separate stores",
                run.bold.display(),
                first.display()
            ),
            Some(_) => {}
        }
        let story = Store::story_of(run);
        let entry = stories
            .entry(story.clone())
            .or_insert((None, n_vols, run.bold.clone()));
        if entry.1 != n_vols {
            bail!(
                "story '{story}': {} has {} scans and {} has {}; every run of a story needs the same scans",
                run.bold.display(),
                n_vols,
                entry.2.display(),
                entry.1
            );
        }
        match (&entry.0, &run.stimulus) {
            (None, Some(s)) => entry.0 = Some(s.clone()),
            // One story, one word sequence: a subject's or session's own events with other
            // words would be fitted against the first run's.
            (Some(first), Some(s)) if first != s && !same_bytes(first, s)? => bail!(
                "story '{story}': {} and {} hold different words; a store holds one stimulus per story (task and run), so analyse runs with other words in another store",
                first.display(),
                s.display()
            ),
            _ => {}
        }
    }
    let (tr, _) = tr.expect("runs are not empty");
    let mut spec = StimulusSpec { files: Vec::new(), tr, scans: Vec::new(), names: Vec::new() };
    for (story, (stimulus, scans, _)) in stories {
        let Some(file) = stimulus else {
            bail!(
                "story '{story}': none of its runs has a stimulus (events.tsv with a word column beside a run, or stimuli/{story}.TextGrid)"
            );
        };
        spec.files.push(file);
        spec.scans.push(scans);
        spec.names.push(story);
    }
    Ok(spec)
}

/// What `ingest` adds to a store: stories (as responses tables with their neurons table,
/// or stimuli through the recipe's model) and BOLD runs (listed, or every run of a BIDS
/// dataset), with the analysis mask if the store has none.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    pub responses: Vec<PathBuf>,
    pub neurons: Option<PathBuf>,
    pub stimuli: Option<StimulusSpec>,
    pub bold: Vec<PathBuf>,
    pub bids: Option<PathBuf>,
    /// With `bids`: the space of its derivatives.
    pub space: Option<String>,
    pub mask: Option<PathBuf>,
    /// With `bids` and no mask: the group mask's threshold over the runs' brain masks.
    pub mask_threshold: f64,
}

impl Default for IngestRequest {
    fn default() -> Self {
        IngestRequest {
            responses: Vec::new(),
            neurons: None,
            stimuli: None,
            bold: Vec::new(),
            bids: None,
            space: None,
            mask: None,
            mask_threshold: group_mask::DEFAULT_THRESHOLD,
        }
    }
}

/// Adds stories and runs to the store at `dir` and brings its results up to date.
pub fn ingest(cluster: &Cluster, dir: &Path, req: IngestRequest) -> Result<Vec<String>> {
    let IngestRequest {
        responses,
        neurons,
        stimuli,
        mut bold,
        bids,
        space,
        mut mask,
        mask_threshold,
    } = req;
    if cluster.local_inputs && !cluster.is_writer() {
        if !responses.is_empty() || neurons.is_some() || stimuli.is_some() || mask.is_some() {
            bail!("--responses, --neurons, --stimulus and --mask go to process 0, which holds the store (--local-inputs)");
        }
        if let Some(root) = &bids {
            bold.extend(bids::discover(root, space.as_deref())?.runs.into_iter().map(|r| r.bold));
        }
        return run_update(cluster, dir, None, bold, Box::new(|| Ok(Vec::new())));
    }
    let (mut made_mask, mut regions) = (None, None);
    if let Some(root) = &bids {
        let ds = bids::discover(root, space.as_deref())?;
        bold.extend(ds.runs.iter().map(|r| r.bold.clone()));
        let store = Store::open_reader(dir)?;
        if mask.is_none() && !store.mask_path().is_file() {
            let (m, _, r) = dataset_mask(&ds, mask_threshold)?;
            mask = Some(m.path().to_path_buf());
            (made_mask, regions) = (Some(m), r);
        } else if let Some(list) = ds.runs.iter().any(|r| regions::is_region_run(&r.bold)).then_some(ds.regions.as_ref()).flatten() {
            // The dataset's list must be the store's (set_regions refuses another).
            regions = Some(Regions::read(list)?);
        }
        if regions.is_some() {
            regions::check_recipe(&store.recipe)?;
        }
    }
    // Without a shared file system the runs may all be on the other processes.
    if responses.is_empty() && bold.is_empty() && stimuli.is_none() && !cluster.local_inputs {
        bail!("nothing to ingest: give --stimulus, --responses, --bold or --bids");
    }
    let store_dir = dir.to_path_buf();
    let prepare: Prepare = Box::new(move || {
        let _made = made_mask;
        let mut s = Store::open(&store_dir)?;
        if let Some(m) = &mask {
            s.set_mask(m)?;
        }
        if let Some(r) = &regions {
            s.set_regions(r)?;
        }
        if responses.is_empty() {
            return Ok(Vec::new());
        }
        s.ingest_responses(&responses, neurons.as_deref())
    });
    run_update(cluster, dir, stimuli, bold, prepare)
}

/// Takes the run `key` (`sub-S/task-T/run-R`) out of the store: its results become those
/// of never having ingested it.
pub fn retract(cluster: &Cluster, dir: &Path, key: &str) -> Result<Vec<String>> {
    let (store_dir, key) = (dir.to_path_buf(), key.to_string());
    let prepare: Prepare = Box::new(move || Store::open(&store_dir)?.retract_entry(&key));
    run_update(cluster, dir, None, Vec::new(), prepare)
}

/// Brings stale results up to date (after an interrupted command) and rebuilds damaged
/// subject maps and group results from the statistics; damage that cannot be rebuilt is
/// an error naming each file and what to do.
pub fn refresh(cluster: &Cluster, dir: &Path) -> Result<Vec<String>> {
    let store_dir = dir.to_path_buf();
    let prepare: Prepare = Box::new(move || Store::open(&store_dir)?.mark_damage_for_rebuild());
    run_update(cluster, dir, None, Vec::new(), prepare)
}
