//! The encoding dataflow of a store update: BOLD runs reduced to statistics, cut into
//! voxel blocks, and each subject's fit kept per (subject, block) by [`FitBlocks`].
//!
//! A one-shot command (`ingest`, `retract`, `status --refresh`, `run`) builds it once: the
//! runs to reduce and the stored runs of the subjects to refit are dealt out over all
//! workers of all processes by position, and the fits are gathered at worker 0 of
//! process 0, the one writer. `watch` keeps it alive and feeds one epoch per change. The
//! `encode` and `group` commands run it too, on runs or β maps given outside a store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use differential_dataflow::input::{Input, InputSession};
use indicatif::ProgressBar;
use ndarray::Array2;
use timely::dataflow::operators::probe::Handle;
use timely::worker::Worker;

use crate::error::{bail, Context, Result};
use crate::io::atomic::write_file_atomically;
use crate::io::bids::Run;
use crate::io::nifti::{self, Mask};
use crate::io::regions::{self, Regions};
use crate::io::parquet::{read_atoms, read_tr};
use crate::kernels::design::{self, RunInputs};
use crate::kernels::ridge_stats::RunStats;
use crate::operators::{
    BlockError, BlockFit, BlockKey, FitBlocks, FitSettings, Floats, Gather, Gathered, GroupBlock,
    GroupBlocks, RunBlock, StatsBlock, SubjectBeta, BLOCK_VOXELS,
};
use crate::stages::confounds::{self, Confounds};
use crate::stages::encode;
use crate::store::stats::{decode_stats, encode_stats};
use crate::store::sums::{verify_file, Sums};
use crate::store::{Layout, Recipe, Store};

/// One piece of input work: reduce a new run into the store, reduce a run given with its
/// own atoms and confounds (the `encode` command: nothing is stored), or load a stored
/// run's statistics.
#[derive(Debug, Clone)]
pub enum Job {
    Reduce { run: Run, story: String },
    /// A new run whose statistics are in the store already, not yet listed (written by a
    /// pass that read it once for several stores).
    Reduced { run: Run, story: String },
    Given(GivenRun),
    Load { key: String, subject: String },
}

/// A BOLD run with its atoms table, optional confounds TSV and analysis mask.
#[derive(Debug, Clone)]
pub struct GivenRun {
    /// Orders the subject's runs (their statistics are summed in key order).
    pub key: String,
    pub subject: String,
    pub bold: PathBuf,
    pub atoms: PathBuf,
    pub confounds: Option<PathBuf>,
    pub mask: PathBuf,
}

impl Job {
    pub fn key(&self) -> String {
        match self {
            Job::Reduce { run, .. } | Job::Reduced { run, .. } => run.key(),
            Job::Given(g) => g.key.clone(),
            Job::Load { key, .. } => key.clone(),
        }
    }
    pub fn subject(&self) -> &str {
        match self {
            Job::Reduce { run, .. } | Job::Reduced { run, .. } => &run.subject,
            Job::Given(g) => &g.subject,
            Job::Load { subject, .. } => subject,
        }
    }
}

/// What every worker needs to do its share.
#[derive(Clone)]
pub struct Plan {
    pub dir: PathBuf,
    pub recipe: Recipe,
    /// The store's mask (read when there is one).
    pub mask: Option<Mask>,
    /// The regions of a store of region time series, in the order of its mask.
    pub regions: Option<Regions>,
    pub jobs: Vec<Job>,
    /// Subjects with runs that are not refitted: their β maps feed the group test.
    pub stored: Vec<(String, PathBuf)>,
    /// The store's checksums: every stored file is verified before it is read (none for
    /// runs and maps given outside a store).
    pub sums: Option<Sums>,
    pub bar: ProgressBar,
    /// Without a shared file system: which process holds each new run.
    pub held: Option<crate::engine::local_inputs::Held>,
}

impl Plan {
    /// The plan of `store` with no work yet: its recipe, mask, regions and checksums.
    pub fn of_store(store: &Store, bar: &ProgressBar) -> Result<Plan> {
        let mask = match store.paths().mask().is_file() {
            true => Some(store.read_mask()?),
            false => None,
        };
        Ok(Plan {
            dir: store.dir.clone(),
            recipe: store.recipe.clone(),
            mask,
            regions: store.regions()?,
            jobs: Vec::new(),
            stored: Vec::new(),
            sums: Some(store.manifest.files.clone()),
            bar: bar.clone(),
            held: None,
        })
    }

    /// The jobs worker `index` of `peers` takes in wave `wave`. On a shared file system, the
    /// positions ≡ index + wave (mod peers): each wave starts its dealing one worker
    /// further, so worker 0 (which also gathers the fits) does not always take the most.
    /// Without one ([`Plan::held`]), each job goes to the workers of the process that
    /// holds its files, dealt among them alike.
    pub fn dealt<'a>(&self, jobs: &'a [Job], wave: usize, index: usize, peers: usize) -> Vec<&'a Job> {
        let Some(held) = &self.held else {
            return jobs.iter().skip((index + wave) % peers.max(1)).step_by(peers.max(1)).collect();
        };
        let w = held.workers.max(1);
        let mut seen = vec![0usize; peers.div_ceil(w)];
        jobs.iter()
            .filter(|job| {
                let owner = held.owner(job);
                let Some(at) = seen.get_mut(owner) else { return false };
                let position = *at;
                *at += 1;
                owner * w + (position + wave) % w == index
            })
            .collect()
    }

    /// Checks a stored file against the store's checksums before it is read.
    fn verified<'a>(&self, path: &'a Path) -> Result<&'a Path> {
        if let Some(sums) = &self.sums {
            verify_file(sums, &self.dir, path)?;
        }
        Ok(path)
    }
}

/// The fit settings of a recipe.
pub fn fit_settings(recipe: &Recipe) -> FitSettings {
    FitSettings {
        cv: recipe.encoding.cv,
        alphas: recipe.encoding.alpha_grid(),
        estimator: recipe.group.estimator.into(),
    }
}

/// One run against its atoms, with its own confounds, cosine drift and intercept projected
/// out and its censored scans left out: the statistics of the atoms (Frisch–Waugh–Lovell),
/// the number of absorbed nuisance columns and the valid voxels.
fn reduce_against(
    plan: &Plan,
    bold: &Path,
    mask_path: &Path,
    atoms: Array2<f64>,
    confounds: Option<Confounds>,
) -> Result<(RunStats, usize, Vec<bool>)> {
    let r = clean_run(plan, bold, mask_path, confounds)?.reduce(atoms)?;
    Ok((r.stats, r.absorbed, r.valid))
}

/// BOLD runs read since the process started: what a comparison of models counts to show
/// that it reads each run once.
static BOLD_READS: AtomicU64 = AtomicU64::new(0);

/// How many BOLD runs (images or region time series) this process has read for reduction
/// or the noise ceiling.
pub fn bold_reads() -> u64 {
    BOLD_READS.load(Ordering::Relaxed)
}

/// A run read (smoothed when the recipe says so), censored and cleaned of its own
/// confounds, cosine drift and intercept: the one read any number of models' atoms are
/// then reduced against ([`encode::CleanSeries::reduce`]).
pub fn clean_run(plan: &Plan, bold: &Path, mask_path: &Path, confounds: Option<Confounds>) -> Result<encode::CleanSeries> {
    let region_run = match regions::is_region_run(bold) {
        true => Some(regions::read_run(bold)?),
        false => None,
    };
    let (n, tr) = match &region_run {
        Some(run) => (run.table.rows, run.tr),
        None => {
            let header = nifti::read_header(bold)?;
            (header.n_vols, header.bold_tr()?)
        }
    };
    let inputs = [RunInputs {
        regressors: Array2::zeros((n, 0)),
        confounds: confounds.as_ref().map_or_else(|| Array2::zeros((n, 0)), |c| c.matrix(n)),
        tr,
    }];
    let hp = plan.recipe.encoding.high_pass;
    let (mut designs, _) = design::build(&inputs, (hp > 0.0).then_some(hp))?;
    let nuisance = designs.pop().expect("one run, one design");
    let keep = confounds.as_ref().and_then(|c| c.keep.as_deref());
    let zscore = plan.recipe.encoding.zscore_bold;
    let fwhm = plan.recipe.encoding.smoothing_fwhm;
    let r = match (region_run, &plan.regions) {
        (Some(run), Some(regions)) => {
            regions::check_recipe(&plan.recipe).with_context(|| bold.display().to_string())?;
            encode::clean_series(bold, run.in_order(regions)?.mapv(f64::from), nuisance, keep, zscore)?
        }
        (Some(_), None) => bail!(
            "{}: a run of region time series, but the store holds images: make a store from a dataset of region time series (with its {})",
            bold.display(),
            regions::REGIONS_FILE
        ),
        (None, Some(_)) => bail!(
            "{}: an image, but the store holds region time series: analyse images in another store",
            bold.display()
        ),
        (None, None) => {
            let mask = plan.mask.as_ref().expect("read for jobs");
            let b = encode::read_smoothed::<f64>(bold, (mask_path, mask), fwhm)?;
            encode::clean_series(bold, b.data, nuisance, keep, zscore)?
        }
    };
    BOLD_READS.fetch_add(1, Ordering::Relaxed);
    Ok(r)
}

/// The scans a run keeps after the recipe's censoring (None: all of them).
pub fn kept_scans(plan: &Plan, bold: &Path) -> Result<Option<Vec<usize>>> {
    Ok(recipe_confounds(plan, bold)?.and_then(|c| c.keep))
}

/// A stored run's cleaned series, as it was reduced at ingest (the recipe's smoothing,
/// `confounds` — the run's under its strategy —, drift and intercept): what the noise
/// ceiling correlates across subjects.
pub fn clean_stored(plan: &Plan, bold: &Path, confounds: Option<Confounds>) -> Result<encode::CleanSeries> {
    clean_run(plan, bold, &Layout::new(&plan.dir).mask(), confounds)
}

/// The run's confounds under the recipe's strategy (its fMRIPrep table beside it).
pub fn recipe_confounds(plan: &Plan, bold: &Path) -> Result<Option<Confounds>> {
    let (scans, _) = crate::io::run_clock(bold)?;
    confounds::of_run(&plan.recipe.confounds, bold, scans)
}

/// A new run against its story's atoms in the store; its statistics are written there.
pub fn reduce(plan: &Plan, run: &Run, story: &str) -> Result<(RunStats, usize, Vec<bool>)> {
    let mut each = reduce_into(&[plan], run, story)?;
    Ok(each.pop().expect("one store, one reduction"))
}

/// A new run against its story's atoms in each of the stores of `plans`, which clean
/// runs alike (one mask, smoothing, confounds and drift: see
/// [`crate::engine::many::check_same_cleaning`]): read and cleaned once, then reduced
/// against each store's atoms, its statistics written in each.
pub fn reduce_into(plans: &[&Plan], run: &Run, story: &str) -> Result<Vec<(RunStats, usize, Vec<bool>)>> {
    let Some(first) = plans.first() else {
        return Ok(Vec::new());
    };
    let atoms = plans
        .iter()
        .map(|plan| Ok(read_atoms(plan.verified(&Layout::new(&plan.dir).atoms(story))?)?.1))
        .collect::<Result<Vec<_>>>()?;
    let confounds = recipe_confounds(first, &run.bold)?;
    let series = clean_run(first, &run.bold, &Layout::new(&first.dir).mask(), confounds.clone())?;
    super::cleaned::keep(first, &run.bold, confounds.as_ref(), &series);
    plans
        .iter()
        .zip(atoms)
        .map(|(plan, atoms)| {
            let r = series.reduce(atoms)?;
            let path = Layout::new(&plan.dir).stats(&run.key());
            write_file_atomically(&path, |w| encode_stats(&r.stats, r.absorbed, &r.valid, w))?;
            Ok((r.stats, r.absorbed, r.valid))
        })
        .collect()
}

/// The statistics a shared pass wrote for a new run (not in the store's checksums until
/// the update lists it), checked against the store's atoms of its story.
fn reduced_stats(plan: &Plan, run: &Run, story: &str) -> Result<(RunStats, usize, Vec<bool>)> {
    let paths = Layout::new(&plan.dir);
    let stats = decode_stats(&paths.stats(&run.key()))?;
    let (_, atoms) = read_atoms(plan.verified(&paths.atoms(story))?)?;
    if stats.0.gram.nrows() != atoms.ncols() {
        bail!(
            "{}: statistics of {} atoms, but the store's atoms of story '{story}' are {}: written for another store? run the command again",
            paths.stats(&run.key()).display(),
            stats.0.gram.nrows(),
            atoms.ncols()
        );
    }
    Ok(stats)
}

/// A run given with its atoms (and confounds: every column of the file given, or else the
/// recipe's strategy): reduced, not stored.
fn reduce_given(plan: &Plan, g: &GivenRun) -> Result<(RunStats, usize, Vec<bool>)> {
    let (story, atoms) = read_atoms(&g.atoms)?;
    if let Some(tr) = read_tr(&g.atoms)? {
        crate::store::check_tr(&g.bold, &story, tr)?;
    }
    let confounds = match &g.confounds {
        Some(path) => Some(confounds::given(path, nifti::read_header(&g.bold)?.n_vols)?),
        None => recipe_confounds(plan, &g.bold)?,
    };
    reduce_against(plan, &g.bold, &g.mask, atoms, confounds)
        .with_context(|| format!("story '{story}'"))
}

pub fn job_blocks(plan: &Plan, job: &Job) -> Result<Vec<(BlockKey, RunBlock)>> {
    let mask = plan.mask.as_ref().expect("read for jobs");
    let started = std::time::Instant::now();
    let (stats, absorbed, valid) = match job {
        Job::Reduce { run, story } => reduce(plan, run, story)?,
        Job::Given(g) => reduce_given(plan, g)?,
        Job::Load { key, .. } => decode_stats(plan.verified(&Layout::new(&plan.dir).stats(key))?)?,
        Job::Reduced { run, story } => reduced_stats(plan, run, story)?,
    };
    let what = if matches!(job, Job::Load { .. } | Job::Reduced { .. }) { "stored statistics read" } else { "run read and reduced" };
    tracing::info!(run = %job.key(), seconds = started.elapsed().as_secs_f64(), "{what}");
    if valid.len() != mask.len() {
        bail!(
            "{}: statistics of {} voxels, the store's mask has {}",
            job.key(),
            valid.len(),
            mask.len()
        );
    }
    let key = job.key();
    Ok(StatsBlock::split(&stats, absorbed, &valid)
        .into_iter()
        .map(|(b, block)| ((job.subject().to_string(), b), (key.clone(), block)))
        .collect())
}

/// A subject's fit of one block, as the dataflow gathers it.
pub type FitRecord = (BlockKey, BlockFit);

/// A block's group test (or why there is none), as the dataflow gathers it.
pub type GroupRecord = (u32, Result<GroupBlock, BlockError>);

/// The dataflow: runs in, per-block fits gathered at worker 0.
pub struct Engine {
    /// Runs' statistics by (subject, block).
    pub runs: InputSession<u64, (BlockKey, RunBlock), isize>,
    /// β blocks of subjects that are not refitted (read from their maps).
    pub betas: InputSession<u64, (u32, SubjectBeta), isize>,
    pub fits: Gathered<(BlockKey, BlockFit)>,
    pub group: Gathered<(u32, Result<GroupBlock, BlockError>)>,
    probes: [Handle<u64>; 2],
}

impl Engine {
    /// runs → fit_blocks → (β blocks, with the stored subjects' β) → group_blocks, under
    /// `recipe`'s encoding and group settings; fits and group tests gathered at worker 0.
    pub fn build(worker: &mut Worker, recipe: &Recipe) -> Engine {
        let settings = fit_settings(recipe);
        let tests = recipe.group.block_tests();
        worker.dataflow::<u64, _, _>(|scope| {
            let (runs, run_blocks) = scope.new_collection();
            let (betas, stored) = scope.new_collection();
            let fits = run_blocks.fit_blocks(settings);
            let fitted = fits
                .clone()
                .flat_map(|((subject, block), fit)| fit.beta_block(&subject).map(|b| (block, b)));
            let (group, group_probe) = fitted.concat(stored).group_blocks(tests).gather();
            let (fits, fits_probe) = fits.gather();
            Engine {
                runs,
                betas,
                fits,
                group,
                probes: [fits_probe, group_probe],
            }
        })
    }

    /// Feeds this worker's share of the plan (positions ≡ its index mod peers): the runs'
    /// statistics, then the stored β of the subjects that are not refitted. An error stops
    /// the feeding but not the dataflow, so no worker is left waiting.
    pub fn feed(&mut self, plan: &Plan, index: usize, peers: usize) -> Result<()> {
        let mine = plan.dealt(&plan.jobs, 0, index, peers);
        plan.bar.inc_length(mine.len() as u64);
        feed_jobs(plan, &mine, &mut self.runs)?;
        for (subject, beta) in plan.stored.iter().skip(index).step_by(peers) {
            for record in stored_beta(plan, subject, beta)? {
                self.betas.insert(record);
            }
        }
        Ok(())
    }

    /// Closes the inputs and steps until the dataflow is done.
    pub fn finish(self, worker: &mut Worker) -> (Gathered<(BlockKey, BlockFit)>, Gathered<GroupRecord>) {
        let Engine {
            runs,
            betas,
            fits,
            group,
            probes,
        } = self;
        runs.close();
        betas.close();
        worker.step_or_park_while(None, || probes.iter().any(|p| !p.done()));
        (fits, group)
    }
}

/// Feeds this worker's share of the jobs ([`Plan::dealt`]), each run's statistics cut
/// into blocks, counting them on the plan's progress bar as they are done (the caller sets
/// its length).
pub fn feed_jobs(plan: &Plan, mine: &[&Job], input: &mut InputSession<u64, (BlockKey, RunBlock), isize>) -> Result<()> {
    for job in mine {
        for record in job_blocks(plan, job)? {
            input.insert(record);
        }
        plan.bar.inc(1);
    }
    Ok(())
}

/// Runs `plan` once in this process (one worker) and returns worker 0's gathered fits and
/// group tests: the `encode` and `group` commands, outside a store.
pub fn run_once(plan: Plan) -> Result<(Vec<FitRecord>, Vec<GroupRecord>)> {
    let plan = std::sync::Arc::new(plan);
    let results = crate::engine::cluster::Cluster::default().execute(move |worker| -> Result<_> {
        let mut engine = Engine::build(worker, &plan.recipe);
        let fed = engine.feed(&plan, worker.index(), worker.peers());
        let (fits, group) = engine.finish(worker);
        fed?;
        Ok((fits.take(), group.take()))
    })?;
    results
        .into_iter()
        .next()
        .ok_or_else(|| crate::error::err!("the encoding dataflow returned nothing"))?
}

/// A stored subject's β map cut into blocks, as the group operator takes it.
pub fn stored_beta(plan: &Plan, subject: &str, path: &Path) -> Result<Vec<(u32, SubjectBeta)>> {
    let mask = plan.mask.as_ref().expect("read for stored subjects");
    let beta = nifti::read_map_rows(plan.verified(path)?, mask)?;
    let (k, v) = beta.dim();
    Ok((0..v.div_ceil(BLOCK_VOXELS))
        .map(|b| {
            let cols: Vec<usize> = (b * BLOCK_VOXELS..((b + 1) * BLOCK_VOXELS).min(v)).collect();
            let values = crate::operators::columns(&beta, &cols);
            (b as u32, (subject.to_string(), k as u32, Floats(values)))
        })
        .collect())
}

