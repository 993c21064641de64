//! The encoding dataflow of a store update: BOLD runs reduced to statistics, cut into
//! voxel blocks, and each subject's fit kept per (subject, block) by [`FitBlocks`].
//!
//! A one-shot command (`ingest`, `retract`, `status --refresh`, `run`) builds it once: the
//! runs to reduce and the stored runs of the subjects to refit are dealt out over all
//! workers of all processes by position, and the fits are gathered at worker 0 of
//! process 0, the one writer. `watch` keeps it alive and feeds one epoch per change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use cortexflow::io::bids::Run;
use cortexflow::io::nifti::{self, Mask};
use cortexflow::io::parquet::read_atoms;
use cortexflow::io::store::write_file_atomically;
use cortexflow::kernels::design::{self, RunInputs};
use cortexflow::kernels::glm::OlsFit;
use cortexflow::kernels::group::GroupTest;
use cortexflow::kernels::ridge_stats::RunStats;
use cortexflow::operators::{
    agree, BlockFit, BlockKey, BlockTest, FitBlocks, FitSettings, Floats, Gather, Gathered,
    GroupBlock, GroupBlocks, RunBlock, StatsBlock, SubjectBeta, BLOCK_VOXELS,
};
use differential_dataflow::input::{Input, InputSession};
use indicatif::ProgressBar;
use ndarray::{concatenate, Array1, Array2, Axis};
use timely::dataflow::operators::probe::Handle;
use timely::worker::Worker;

use crate::cluster::Cluster;
use crate::encode::{self, RidgeScores};
use crate::progress;
use crate::recipe::Recipe;
use crate::store::{decode_stats, encode_stats, Store};
use crate::stories::StimulusSpec;

/// One piece of input work: reduce a new run, or load a stored run's statistics.
#[derive(Debug, Clone)]
pub enum Job {
    Reduce { run: Run, story: String },
    Load { key: String, subject: String },
}

impl Job {
    fn key(&self) -> String {
        match self {
            Job::Reduce { run, .. } => run.key(),
            Job::Load { key, .. } => key.clone(),
        }
    }
    fn subject(&self) -> &str {
        match self {
            Job::Reduce { run, .. } => &run.subject,
            Job::Load { subject, .. } => subject,
        }
    }
}

/// What every worker needs to do its share.
pub struct Plan {
    pub dir: PathBuf,
    pub recipe: Recipe,
    /// The store's mask (read when there is one).
    pub mask: Option<Mask>,
    pub jobs: Vec<Job>,
    /// Subjects with runs that are not refitted: their β maps feed the group test.
    pub stored: Vec<String>,
    pub bar: ProgressBar,
}

/// Where a run's statistics live in the store: `runs/<run key>.stats`.
pub fn stats_path(dir: &Path, key: &str) -> PathBuf {
    dir.join("runs").join(format!("{key}.stats"))
}

/// The fit settings of a recipe.
pub fn fit_settings(recipe: &Recipe) -> FitSettings {
    let e = &recipe.encoding;
    FitSettings {
        cv: e.cv,
        alphas: if e.alphas.is_empty() {
            cortexflow::kernels::cv::alpha_grid(-2.0, 5.0, 10)
        } else {
            e.alphas.clone()
        },
    }
}

/// One run against its story's atoms, with its own cosine drift and intercept projected
/// out: the statistics of the atoms (Frisch–Waugh–Lovell), written to the store. Returns
/// the statistics, the number of absorbed nuisance columns and the valid voxels.
pub fn reduce(plan: &Plan, run: &Run, story: &str) -> Result<(RunStats, usize, Vec<bool>)> {
    let (_, atoms) = read_atoms(
        &plan
            .dir
            .join("basis/atoms")
            .join(format!("{story}.parquet")),
    )?;
    let header = nifti::read_header(&run.bold)?;
    let tr = header
        .tr
        .with_context(|| format!("{}: no repetition time in the header", run.bold.display()))?;
    let k = atoms.ncols();
    let inputs = [RunInputs {
        regressors: atoms,
        confounds: Array2::zeros((header.n_vols, 0)),
        tr,
    }];
    let hp = plan.recipe.encoding.high_pass;
    let (designs, _) = design::build(&inputs, (hp > 0.0).then_some(hp))?;
    let dm = &designs[0];
    let r = encode::reduce_run(
        &run.bold,
        &plan.dir.join("mask.nii.gz"),
        plan.mask.as_ref().expect("read for jobs"),
        dm,
        k,
        plan.recipe.encoding.zscore_bold,
        true,
    )?;
    let stats = r.residual.expect("asked for");
    let absorbed = dm.ncols() - k;
    let mut bytes = Vec::new();
    encode_stats(&stats, absorbed, &r.valid, &mut bytes);
    write_file_atomically(&stats_path(&plan.dir, &run.key()), |w| w.write_all(&bytes))?;
    Ok((stats, absorbed, r.valid))
}

pub fn job_blocks(plan: &Plan, job: &Job) -> Result<Vec<(BlockKey, RunBlock)>> {
    let mask = plan.mask.as_ref().expect("read for jobs");
    let (stats, absorbed, valid) = match job {
        Job::Reduce { run, story } => reduce(plan, run, story)?,
        Job::Load { key, .. } => decode_stats(&stats_path(&plan.dir, key))?,
    };
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

/// The dataflow: runs in, per-block fits gathered at worker 0.
pub struct Engine {
    /// Runs' statistics by (subject, block).
    pub runs: InputSession<u64, (BlockKey, RunBlock), isize>,
    /// β blocks of subjects that are not refitted (read from their maps).
    pub betas: InputSession<u64, (u32, SubjectBeta), isize>,
    pub fits: Gathered<(BlockKey, BlockFit)>,
    pub group: Gathered<(u32, Result<GroupBlock, String>)>,
    probes: [Handle<u64>; 2],
}

impl Engine {
    /// runs → fit_blocks → (β blocks, with the stored subjects' β) → group_blocks; fits and
    /// group tests gathered at worker 0.
    pub fn build(worker: &mut Worker, settings: FitSettings) -> Engine {
        worker.dataflow::<u64, _, _>(|scope| {
            let (runs, run_blocks) = scope.new_collection();
            let (betas, stored) = scope.new_collection();
            let fits = run_blocks.fit_blocks(settings);
            let fitted = fits
                .clone()
                .flat_map(|((subject, block), fit)| fit.beta_block(&subject).map(|b| (block, b)));
            let (group, group_probe) = fitted.concat(stored).group_blocks().gather();
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
        let mine: Vec<&Job> = plan.jobs.iter().skip(index).step_by(peers).collect();
        plan.bar.inc_length(mine.len() as u64);
        for job in mine {
            for record in job_blocks(plan, job)? {
                self.runs.insert(record);
            }
            plan.bar.inc(1);
        }
        for subject in plan.stored.iter().skip(index).step_by(peers) {
            for record in stored_beta(plan, subject)? {
                self.betas.insert(record);
            }
        }
        Ok(())
    }

    /// Advances both inputs to `epoch`.
    pub fn advance_to(&mut self, epoch: u64) {
        self.runs.advance_to(epoch);
        self.betas.advance_to(epoch);
        self.runs.flush();
        self.betas.flush();
    }

    /// Steps until everything before the inputs' current epoch has reached worker 0.
    pub fn settle(&mut self, worker: &mut Worker) {
        let time = *self.runs.time();
        while self.probes.iter().any(|p| p.less_than(&time)) {
            worker.step();
        }
    }

    /// Closes the inputs and steps until the dataflow is done.
    pub fn finish(
        self,
        worker: &mut Worker,
    ) -> (
        Gathered<(BlockKey, BlockFit)>,
        Gathered<(u32, Result<GroupBlock, String>)>,
    ) {
        let Engine {
            runs,
            betas,
            fits,
            group,
            probes,
        } = self;
        runs.close();
        betas.close();
        worker.step_while(|| probes.iter().any(|p| !p.done()));
        (fits, group)
    }
}

/// A stored subject's β map cut into blocks, as the group operator takes it.
fn stored_beta(plan: &Plan, subject: &str) -> Result<Vec<(u32, SubjectBeta)>> {
    let mask = plan.mask.as_ref().expect("read for stored subjects");
    let path = plan.dir.join(format!("subjects/sub-{subject}/beta.nii.gz"));
    let beta = mask.rows(&nifti::read_image(&path)?);
    let (k, v) = beta.dim();
    Ok((0..v.div_ceil(BLOCK_VOXELS))
        .map(|b| {
            let cols: Vec<usize> = (b * BLOCK_VOXELS..((b + 1) * BLOCK_VOXELS).min(v)).collect();
            let values = cortexflow::operators::columns(&beta, &cols);
            (b as u32, (subject.to_string(), k as u32, Floats(values)))
        })
        .collect())
}

/// The writer's part of a command before the dataflow (creating the store, the mask,
/// stories and basis, manifest edits).
pub type Prepare = Box<dyn FnOnce() -> Result<Vec<String>> + Send>;

/// What worker 0 of process 0 hands back for the writer to finish the update.
pub struct Outcome {
    pub lines: Vec<String>,
    pub new: Vec<(Run, String)>,
    pub refit: BTreeSet<String>,
    pub fits: Vec<(BlockKey, BlockFit)>,
    /// The group test of every block over every subject with runs.
    pub group: Vec<(u32, Result<GroupBlock, String>)>,
}

/// Every worker's plan, from the store as the writer left it and the BOLD files given.
fn plan(dir: &Path, bold: &[PathBuf], bar: &ProgressBar) -> Result<(Plan, Outcome)> {
    let store = Store::open_reader(dir)?;
    let (new, lines) = store.new_runs(bold)?;
    let (jobs, refit) = store.jobs(&new);
    let stored: Vec<String> = store
        .subjects()
        .into_iter()
        .filter(|s| !refit.contains(s))
        .collect();
    let mask_path = dir.join("mask.nii.gz");
    let mask = if mask_path.is_file() {
        Some(nifti::read_mask(&mask_path)?)
    } else {
        None
    };
    let plan = Plan {
        dir: dir.to_path_buf(),
        recipe: store.recipe.clone(),
        mask,
        jobs,
        stored,
        bar: bar.clone(),
    };
    let outcome = Outcome {
        lines,
        new,
        refit,
        fits: Vec::new(),
        group: Vec::new(),
    };
    Ok((plan, outcome))
}

/// Runs a store command on every worker of every process: the writer prepares, all agree,
/// every worker plans the same update and feeds its share of the runs, the fits are
/// gathered, and the writer finishes (lists the new runs, writes the refitted subjects,
/// the group and the map). Returns the lines to print.
pub fn run_update(
    cluster: &Cluster,
    dir: &Path,
    stimuli: Option<StimulusSpec>,
    bold: Vec<PathBuf>,
    prepare: Prepare,
) -> Result<Vec<String>> {
    let prepare = Mutex::new(Some(prepare));
    let bar = progress::bar(0, "reducing runs");
    let (dir_w, bar_w) = (dir.to_path_buf(), bar.clone());
    let results = cluster.execute(move |worker| -> std::result::Result<Option<Outcome>, String> {
        let first = worker.index() == 0;
        let prepared = match first {
            true => prepare.lock().expect("not poisoned").take().expect("runs once")(),
            false => Ok(Vec::new()),
        };
        if !agree(worker, prepared.is_ok()) {
            return Err(prepared.err().map_or(
                "stopped: the writer (process 0) failed; see its error".into(),
                |e| format!("{e:#}"),
            ));
        }
        let mut lines = prepared.expect("agreed");
        if let Some(spec) = &stimuli {
            lines.extend(crate::stories::ingest(worker, &dir_w, spec)?);
        }
        let planned = plan(&dir_w, &bold, &bar_w);
        if !agree(worker, planned.is_ok()) {
            return Err(planned.err().map_or(
                "stopped: another worker could not read the store (every process needs the same store directory)".into(),
                |e| format!("{e:#}"),
            ));
        }
        let (plan, mut outcome) = planned.expect("agreed");
        let mut engine = Engine::build(worker, fit_settings(&plan.recipe));
        let fed = engine.feed(&plan, worker.index(), worker.peers());
        let (fits, group) = engine.finish(worker);
        fed.map_err(|e| format!("{e:#}"))?;
        if !first {
            return Ok(None);
        }
        outcome.fits = fits.take();
        outcome.group = group.take();
        lines.append(&mut outcome.lines);
        outcome.lines = lines;
        Ok(Some(outcome))
    })?;
    bar.finish_and_clear();
    let mut outcome = None;
    for r in results {
        if let Some(o) = r.map_err(anyhow::Error::msg)? {
            outcome = Some(o);
        }
    }
    match outcome {
        Some(o) => Store::open(dir)?.finish(o),
        None => Ok(vec![format!(
            "process {}: did its share of the work; process 0 writes the results",
            cluster.process
        )]),
    }
}

/// A subject's fit over the whole mask, joined from its blocks.
pub struct SubjectFit {
    pub runs: usize,
    pub valid: Vec<usize>,
    pub ols: OlsFit,
    pub ridge: Option<RidgeScores>,
}

/// Joins each subject's blocks; checks every block is there, from the same runs.
pub fn join_subjects(
    fits: &[(BlockKey, BlockFit)],
    voxels: usize,
) -> Result<BTreeMap<String, SubjectFit>> {
    let mut by_subject: BTreeMap<&str, Vec<(u32, &BlockFit)>> = BTreeMap::new();
    for ((s, b), f) in fits {
        by_subject.entry(s).or_default().push((*b, f));
    }
    let blocks = voxels.div_ceil(BLOCK_VOXELS);
    let mut out = BTreeMap::new();
    for (subject, mut parts) in by_subject {
        parts.sort_by_key(|p| p.0);
        if parts.len() != blocks || parts.iter().any(|p| p.1.runs != parts[0].1.runs) {
            bail!("sub-{subject}: the fits of some voxel blocks are missing or stale (a worker failed?)");
        }
        if let Some(e) = parts.iter().find_map(|p| p.1.error.as_ref()) {
            bail!("sub-{subject}: {e}");
        }
        let f0 = parts[0].1;
        let k = f0.k as usize;
        let valid: Vec<usize> = parts
            .iter()
            .flat_map(|(b, f)| {
                f.voxels
                    .iter()
                    .map(move |&v| *b as usize * BLOCK_VOXELS + v as usize)
            })
            .collect();
        let matrix = |get: fn(&BlockFit) -> &Vec<f64>| -> Array2<f64> {
            let views: Vec<Array2<f64>> = parts
                .iter()
                .map(|(_, f)| {
                    Array2::from_shape_vec((k, f.voxels.len()), get(f).clone()).expect("k × v")
                })
                .collect();
            concatenate(Axis(1), &views.iter().map(|a| a.view()).collect::<Vec<_>>())
                .expect("same k")
        };
        let vector = |get: fn(&BlockFit) -> Option<&Vec<f64>>| -> Option<Array1<f64>> {
            let parts: Option<Vec<f64>> = parts
                .iter()
                .map(|(_, f)| get(f).cloned())
                .collect::<Option<Vec<Vec<f64>>>>()
                .map(|v| v.concat());
            parts.map(Array1::from)
        };
        let ols = OlsFit {
            beta: matrix(|f| &f.beta.0),
            t: matrix(|f| &f.t.0),
            sigma2: vector(|f| Some(&f.sigma2.0)).expect("always"),
            dof: f0.dof as usize,
            condition: f0.condition.0[0],
        };
        let ridge = f0.ridge.is_some().then(|| RidgeScores {
            alpha: vector(|f| f.ridge.as_ref().map(|r| &r.0 .0)).expect("every block"),
            cv_r: vector(|f| f.ridge.as_ref().map(|r| &r.1 .0)).expect("every block"),
            cv_r2: vector(|f| f.ridge.as_ref().map(|r| &r.2 .0)).expect("every block"),
        });
        out.insert(
            subject.to_string(),
            SubjectFit {
                runs: f0.runs as usize,
                valid,
                ols,
                ridge,
            },
        );
    }
    Ok(out)
}

/// The group tests over the whole mask, joined from the blocks: (subjects, all, halves).
pub fn join_group(
    blocks: &[(u32, Result<GroupBlock, String>)],
    voxels: usize,
) -> Result<(usize, GroupTest, [GroupTest; 2])> {
    let mut parts: Vec<(u32, &GroupBlock)> = Vec::new();
    for (b, g) in blocks {
        parts.push((
            *b,
            g.as_ref().map_err(|e| anyhow::anyhow!("group test: {e}"))?,
        ));
    }
    parts.sort_by_key(|p| p.0);
    let complete = parts.len() == voxels.div_ceil(BLOCK_VOXELS)
        && parts.iter().enumerate().all(|(i, p)| p.0 as usize == i)
        && parts
            .iter()
            .all(|p| p.1.subjects == parts[0].1.subjects && p.1.atoms == parts[0].1.atoms);
    if !complete {
        bail!("the group test of some voxel blocks is missing or stale (a worker failed?)");
    }
    let atoms = parts[0].1.atoms as usize;
    let join = |pick: fn(&GroupBlock) -> &BlockTest| -> GroupTest {
        let matrix = |get: fn(&BlockTest) -> &Vec<f64>| -> Array2<f64> {
            let views: Vec<Array2<f64>> = parts
                .iter()
                .map(|(_, g)| {
                    Array2::from_shape_vec((atoms, g.voxels as usize), get(pick(g)).clone())
                        .expect("atoms × voxels")
                })
                .collect();
            concatenate(Axis(1), &views.iter().map(|a| a.view()).collect::<Vec<_>>())
                .expect("same atoms")
        };
        let n: Vec<Array2<u32>> = parts
            .iter()
            .map(|(_, g)| {
                Array2::from_shape_vec((atoms, g.voxels as usize), pick(g).n.clone())
                    .expect("atoms × voxels")
            })
            .collect();
        GroupTest {
            n: concatenate(Axis(1), &n.iter().map(|a| a.view()).collect::<Vec<_>>())
                .expect("same atoms"),
            mean: matrix(|t| &t.mean.0),
            t: matrix(|t| &t.t.0),
            p: matrix(|t| &t.p.0),
            z: matrix(|t| &t.z.0),
        }
    };
    Ok((
        parts[0].1.subjects as usize,
        join(|g| &g.all),
        [join(|g| &g.half_a), join(|g| &g.half_b)],
    ))
}
