//! The noise ceiling of a store: how much of each voxel's BOLD is shared by the subjects who
//! heard the same story (inter-subject correlation, see [`crate::kernels::isc`]), and the
//! encoding models' held-out r as a fraction of the best a model of the story can reach.
//!
//! Each run is cleaned exactly as it was for its statistics (smoothing, confounds, drift,
//! intercept), one run at a time; a story keeps one scans × voxels sum. Runs with censored
//! scans are left out (their scans no longer line up with the other subjects'), as are
//! stories heard by a single subject. The result depends only on the set of runs (summed
//! in run-key order), so an added then retracted run leaves it unchanged; it is computed
//! afresh by `cortexflow ceiling` and carries the store epoch it reflects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::JoinHandle;

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use ndarray::Axis;
use rayon::prelude::*;

use crate::engine::cleaned;
use crate::engine::encoding::{clean_stored, kept_scans, recipe_confounds, Plan};
use crate::error::{bail, Context, Result};
use crate::io::nifti::{self, Mask};
use crate::io::parquet::{write_table, Column};
use crate::kernels::isc::{ceiling, Isc, StorySums};
use crate::store::{check_clock, RunEntry, Store, StoryEntry};

/// Voxels whose ISC is above the cut are the "reliable" ones the summary speaks of. The
/// cut is 0.05 at the size of the study that chose it (`scripts/studies/ceiling_null.sh`:
/// null simulations of 6 subjects × 2 runs of 282 and 298 scans, 15 pairs × 580 scans,
/// where fewer than 1 voxel in 1,000 reaches it; README, "Noise ceiling"), and scales with
/// the null's spread elsewhere ([`default_min_isc`]).
pub const MIN_ISC: f64 = 0.05;
/// Pairs × scans of that study.
pub const STUDY_PAIR_SCANS: f64 = 15.0 * 580.0;

/// What the ceiling found, per voxel of the mask.
#[derive(Debug, Clone)]
pub struct Ceiling {
    /// Mean pairwise ISC (NaN where no story had two subjects).
    pub isc: Vec<f64>,
    /// The most subjects that shared a story at each voxel.
    pub subjects: Vec<u32>,
    /// Mean held-out r of the subjects' encoding models (NaN without cross-validation).
    pub cv_r: Vec<f64>,
    pub info: CeilingInfo,
}

/// `ceiling/ceiling.json`: what the maps were computed from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CeilingInfo {
    /// The store epoch the ceiling reflects.
    pub epoch: u64,
    /// Stories heard by at least two subjects, with the runs used.
    pub stories: BTreeMap<String, Vec<String>>,
    /// Runs left out, with why.
    pub left_out: BTreeMap<String, String>,
    pub min_isc: f64,
    /// Voxels with ISC above `min_isc`, and medians over them.
    pub reliable_voxels: usize,
    pub median_ceiling: Option<f64>,
    pub median_cv_r: Option<f64>,
    pub median_fraction: Option<f64>,
}

impl Ceiling {
    pub fn ceiling(&self) -> Vec<f64> {
        self.isc.iter().map(|&x| ceiling(x)).collect()
    }

    /// cv_r / ceiling over the voxels whose ISC passes the summary's cut (NaN elsewhere:
    /// below it the ceiling is mostly noise and the ratio meaningless).
    pub fn fraction(&self) -> Vec<f64> {
        let cut = self.info.min_isc;
        self.isc
            .iter()
            .zip(&self.cv_r)
            .map(|(&i, &r)| if i > cut && i > 0.0 { r / ceiling(i) } else { f64::NAN })
            .collect()
    }

    fn summarise(&mut self, min_isc: f64) {
        self.info.min_isc = min_isc;
        let reliable: Vec<usize> = (0..self.isc.len()).filter(|&v| self.isc[v] > min_isc).collect();
        let (c, f) = (self.ceiling(), self.fraction());
        let median_of = |values: &[f64]| median(reliable.iter().map(|&v| values[v]).filter(|x| x.is_finite()).collect());
        self.info.reliable_voxels = reliable.len();
        self.info.median_ceiling = median_of(&c);
        self.info.median_cv_r = median_of(&self.cv_r);
        self.info.median_fraction = median_of(&f);
    }

    /// One line for the command and the report.
    pub fn headline(&self) -> String {
        headline(&self.info)
    }
}

/// What a ceiling found, in one line.
pub fn headline(i: &CeilingInfo) -> String {
    let runs: usize = i.stories.values().map(Vec::len).sum();
    let mut line = format!(
        "noise ceiling: {} stories heard by 2 or more subjects ({runs} runs), {} voxels with ISC > {:.3}",
        i.stories.len(),
        i.reliable_voxels,
        i.min_isc
    );
    if let Some(c) = i.median_ceiling {
        line += &format!("; there median ceiling {c:.3}");
    }
    if let (Some(r), Some(f)) = (i.median_cv_r, i.median_fraction) {
        line += &format!(", median cv_r {r:.3}, median cv_r / ceiling {f:.2}");
    }
    line
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// Runs by story (key, entry).
type StoryRuns = BTreeMap<String, Vec<(String, RunEntry)>>;
/// Each run's kept scans, by run key.
type KeptScans = BTreeMap<String, Vec<usize>>;

/// The runs of each story heard by 2 or more subjects; the others left out with why.
fn story_runs(store: &Store) -> (StoryRuns, BTreeMap<String, String>) {
    let mut by_story = StoryRuns::new();
    for (key, run) in &store.manifest.runs {
        by_story.entry(run.story.clone()).or_default().push((key.clone(), run.clone()));
    }
    let mut left_out = BTreeMap::new();
    by_story.retain(|story, runs| keep_if_shared(story, runs, &mut left_out));
    (by_story, left_out)
}

/// Whether `runs` hold 2 or more subjects; if not, each is left out, with why.
fn keep_if_shared(story: &str, runs: &[(String, RunEntry)], left_out: &mut BTreeMap<String, String>) -> bool {
    let subjects: BTreeSet<&str> = runs.iter().map(|(_, r)| r.subject.as_str()).collect();
    if subjects.len() < 2 {
        for (key, _) in runs {
            left_out.insert(key.clone(), format!("the only subject with story '{story}' among the runs used"));
        }
    }
    subjects.len() >= 2
}

/// The scans of a story that every run kept after censoring (all of them without), so
/// that the subjects' series line up, and each run's kept scans by run key. A run whose
/// censoring would leave fewer than half the story's scans in common is left out (those
/// keeping fewest first).
fn common_scans(plan: &Plan, runs: &mut Vec<(String, RunEntry)>, scans: usize, left_out: &mut BTreeMap<String, String>) -> Result<(Vec<usize>, KeptScans)> {
    let mut kept = Vec::new();
    for (key, run) in runs.iter() {
        let k = kept_scans(plan, &run.bold).with_context(|| format!("run {key}"))?;
        kept.push(k.unwrap_or_else(|| (0..scans).collect()));
    }
    loop {
        let mut common: BTreeSet<usize> = (0..scans).collect();
        for k in &kept {
            common.retain(|t| k.binary_search(t).is_ok());
        }
        if 2 * common.len() >= scans || runs.is_empty() {
            let by_key = runs.iter().map(|(key, _)| key.clone()).zip(kept).collect();
            return Ok((common.into_iter().collect(), by_key));
        }
        let fewest = (0..kept.len()).min_by_key(|&i| kept[i].len()).expect("runs left");
        let (key, _) = runs.remove(fewest);
        left_out.insert(key, format!("censoring kept {} of {scans} scans, too few in common with the other runs", kept.remove(fewest).len()));
    }
}

/// Subjects × scans a story's pairs hold in all: the null spread of the ISC shrinks as
/// 1/√ of it.
fn pair_scans(stories: &[(usize, usize)]) -> f64 {
    stories.iter().map(|&(n, t)| (n * n.saturating_sub(1) / 2 * t) as f64).sum()
}

/// The default ISC cut of the summary: [`MIN_ISC`] at the size of the study that chose
/// it, scaled as the null's spread, 1/√(pairs × scans).
pub fn default_min_isc(pair_scans: f64) -> f64 {
    MIN_ISC * (STUDY_PAIR_SCANS / pair_scans.max(1.0)).sqrt()
}

/// One subject's cleaned series of a story over the `common` scans (its runs of the story
/// — sessions — averaged as z-scores), and the voxels valid in all of them.
fn subject_series(plan: &Plan, store: &Store, story: &str, runs: &[&(String, RunEntry)], (common, kept): (&[usize], &KeptScans), voxels: usize, bar: &ProgressBar) -> Result<(ndarray::Array2<f64>, Vec<bool>)> {
    let clock = store.manifest.stories[story];
    let mut sessions = StorySums::new(common.len(), voxels);
    for (key, run) in runs {
        let hint = || format!("run {key} (the noise ceiling reads its BOLD again: restore the file, or retract the run)");
        check_clock(&run.bold, story, &clock).with_context(hint)?;
        let kept = &kept[key];
        // What `run`'s reduce pass kept of it, else the run read and cleaned again.
        let confounds = recipe_confounds(plan, &run.bold).with_context(hint)?;
        let (yr, valid) = match cleaned::take(plan, &run.bold, confounds.as_ref(), kept.len(), voxels) {
            Some(kept) => kept,
            None => clean_stored(plan, &run.bold, confounds).map(|c| (c.yr, c.valid)).with_context(hint)?,
        };
        if yr.dim() != (kept.len(), voxels) {
            bail!("run {key}: cleaned to {} scans × {} voxels, expected {} × {voxels}", yr.nrows(), yr.ncols(), kept.len());
        }
        let Some(rows) = common.iter().map(|t| kept.binary_search(t).ok()).collect::<Option<Vec<usize>>>() else {
            bail!("run {key}: its confounds changed while the noise ceiling read them; run `cortexflow ceiling` again");
        };
        // Every scan common (no run of the story censored one): the series as it is.
        if rows.iter().copied().eq(0..yr.nrows()) {
            sessions.add(yr.view(), &valid);
        } else {
            sessions.add(yr.select(Axis(0), &rows).view(), &valid);
        }
        bar.inc(1);
    }
    let (sum, n) = sessions.into_parts();
    let valid = n.iter().map(|&k| k as usize == runs.len()).collect();
    Ok((sum, valid))
}

/// The ceiling of the store's runs as they are now (`plan`: the store's, with no jobs);
/// the summary's cut is `min_isc`, or [`default_min_isc`] of the data.
pub fn compute(store: &Store, plan: &Plan, mask: &Mask, min_isc: Option<f64>, bar: &ProgressBar) -> Result<Ceiling> {
    isc_of(store, plan, mask, bar)?.of_store(store, mask, min_isc)
}

/// The shared ISC of `store`: the one computed ahead for it ([`start_ahead`]) when its
/// runs and stories are still those it was computed from, else computed now.
fn isc_of(store: &Store, plan: &Plan, mask: &Mask, bar: &ProgressBar) -> Result<SharedIsc> {
    match take_ahead(store) {
        Some(isc) => Ok(isc),
        None => shared_isc(store, plan, mask, bar),
    }
}

/// The runs and stories a shared ISC was computed from.
type Snapshot = (BTreeMap<String, RunEntry>, BTreeMap<String, StoryEntry>);

/// A shared ISC being computed ahead, for the store at `dir`.
struct Ahead {
    dir: PathBuf,
    thread: JoinHandle<Result<(Snapshot, SharedIsc)>>,
}

static AHEAD: Mutex<Option<Ahead>> = Mutex::new(None);

/// Starts computing the shared ISC of the store at `dir` on a thread of its own, when
/// `run` keeps its cleaned runs (nothing otherwise). `run`'s writer calls it once every
/// run is listed, so the ISC, which reads the kept runs back, goes on beside the group
/// test and maps (whose single-threaded steps leave a core idle) instead of after them.
/// The ceiling then takes it ([`take_ahead`]); the values are the same.
pub fn start_ahead(dir: &Path) {
    // Checked and stored under the slot's lock: keeping that ends meanwhile (its
    // `forget_ahead` waits for the lock) finds this thread and waits for it.
    let mut slot = AHEAD.lock().unwrap_or_else(|e| e.into_inner());
    if !cleaned::is_keeping(dir) {
        return;
    }
    // One at a time: an earlier one (its thread never takes the slot) ends first.
    if let Some(earlier) = slot.take() {
        let _ = earlier.thread.join();
    }
    let owned = dir.to_path_buf();
    let thread = std::thread::spawn(move || -> Result<(Snapshot, SharedIsc)> {
        let store = Store::open_reader(&owned)?;
        let hidden = ProgressBar::hidden();
        let plan = Plan::of_store(&store, &hidden)?;
        let isc = shared_isc(&store, &plan, &store.read_mask()?, &hidden)?;
        Ok(((store.manifest.runs, store.manifest.stories), isc))
    });
    *slot = Some(Ahead { dir: dir.to_path_buf(), thread });
}

/// Waits for a shared ISC computed ahead and drops it (the command ends without its
/// ceiling, or starts another): its thread never outlives the cleaned runs it reads.
pub fn forget_ahead() {
    let ahead = AHEAD.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(a) = ahead {
        let _ = a.thread.join();
    }
}

/// The shared ISC computed ahead for `store`, if any, and only while the store has the
/// runs and stories it was computed from; otherwise None (said in the log) and the caller
/// computes it.
fn take_ahead(store: &Store) -> Option<SharedIsc> {
    let same = |a: &Path, b: &Path| a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b);
    // Another store's stays where it is, for its own ceiling.
    let ahead = {
        let mut slot = AHEAD.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(a) if same(&a.dir, &store.dir) => slot.take()?,
            _ => return None,
        }
    };
    match ahead.thread.join() {
        Ok(Ok(((runs, stories), isc))) if runs == store.manifest.runs && stories == store.manifest.stories => {
            tracing::info!("noise ceiling: the one begun beside the group is used");
            Some(isc)
        }
        Ok(Ok(_)) => {
            tracing::info!("the store's runs changed after the noise ceiling began ahead; computed again");
            None
        }
        Ok(Err(e)) => {
            tracing::info!("the noise ceiling computed ahead failed ({e}); computed again");
            None
        }
        Err(_) => None,
    }
}

/// The part of a ceiling that depends only on the runs and how they are cleaned, not on
/// the atoms: stores of several models over the same runs share it.
pub struct SharedIsc {
    isc: Vec<f64>,
    subjects: Vec<u32>,
    stories: BTreeMap<String, Vec<String>>,
    left_out: BTreeMap<String, String>,
    /// Subjects in the ceiling (whose cv_r it averages).
    used: BTreeSet<String>,
    /// Subjects × scans of each story, for the default cut.
    sizes: Vec<(usize, usize)>,
}

/// Reads and cleans every run of a story heard by two or more subjects, once.
pub fn shared_isc(store: &Store, plan: &Plan, mask: &Mask, bar: &ProgressBar) -> Result<SharedIsc> {
    let (mut by_story, mut left_out) = story_runs(store);
    bar.set_length(by_story.values().map(|r| r.len() as u64).sum());
    let mut isc = Isc::new(mask.len());
    let (mut stories, mut sizes, mut used) = (BTreeMap::new(), Vec::new(), BTreeSet::new());
    for (story, runs) in by_story.iter_mut() {
        let Some(clock) = store.manifest.stories.get(story) else {
            bail!("{}: runs of story '{story}', which the store does not hold", store.paths().manifest().display());
        };
        let (common, kept) = common_scans(plan, runs, clock.scans, &mut left_out)?;
        if !keep_if_shared(story, runs, &mut left_out) {
            continue;
        }
        let mut by_subject: BTreeMap<&str, Vec<&(String, RunEntry)>> = BTreeMap::new();
        runs.iter().for_each(|r| by_subject.entry(r.1.subject.as_str()).or_default().push(r));
        let mut sums = StorySums::new(common.len(), mask.len());
        let subjects: Vec<_> = by_subject.iter().collect();
        // As many subjects cleaned at once as there are threads (so memory holds that many
        // series, not one per subject), then summed in subject order (the same bytes on
        // any thread count).
        for chunk in subjects.chunks(rayon::current_num_threads().max(1)) {
            let series: Vec<_> = chunk
                .par_iter()
                .map(|(_, runs)| subject_series(plan, store, story, runs, (&common, &kept), mask.len(), bar))
                .collect::<Result<_>>()?;
            for ((subject, _), (y, valid)) in chunk.iter().zip(series) {
                sums.add(y.view(), &valid);
                used.insert(subject.to_string());
            }
        }
        isc.add_story(&sums);
        sizes.push((by_subject.len(), common.len()));
        stories.insert(story.clone(), runs.iter().map(|(k, _)| k.clone()).collect());
    }
    Ok(SharedIsc { isc: isc.isc(), subjects: isc.subjects, stories, left_out, used, sizes })
}

impl SharedIsc {
    /// The ceiling of `store` (whose runs these are): its subjects' held-out r against the
    /// shared ISC.
    pub fn of_store(&self, store: &Store, mask: &Mask, min_isc: Option<f64>) -> Result<Ceiling> {
        let mut out = Ceiling {
            isc: self.isc.clone(),
            subjects: self.subjects.clone(),
            cv_r: mean_cv_r(store, mask, &self.used)?,
            info: CeilingInfo {
                epoch: store.manifest.epoch,
                stories: self.stories.clone(),
                left_out: self.left_out.clone(),
                ..CeilingInfo::default()
            },
        };
        out.summarise(min_isc.unwrap_or_else(|| default_min_isc(pair_scans(&self.sizes))));
        Ok(out)
    }
}

/// The mean over the `subjects` in the ceiling of their held-out r (each subject's `cv_r`
/// map, where finite).
fn mean_cv_r(store: &Store, mask: &Mask, subjects: &BTreeSet<String>) -> Result<Vec<f64>> {
    let (mut sum, mut n) = (vec![0.0; mask.len()], vec![0u32; mask.len()]);
    for s in subjects {
        let path = store.paths().subject_map(s, "cv_r");
        if !path.is_file() {
            continue;
        }
        store.verify_file(&path)?;
        let image = nifti::read_image(&path)?;
        if !image.header.grid.matches(&mask.grid, 1e-4) {
            bail!("{}: not on the grid of the store's mask", path.display());
        }
        for (v, &x) in mask.rows(&image).row(0).iter().enumerate() {
            if x.is_finite() {
                sum[v] += x;
                n[v] += 1;
            }
        }
    }
    Ok(sum.iter().zip(&n).map(|(s, &k)| if k > 0 { s / f64::from(k) } else { f64::NAN }).collect())
}

/// Writes `ceiling.json`, the maps (isc, ceiling, fraction) and `voxels.parquet` under
/// `out`; returns the files.
pub fn write(c: &Ceiling, mask: &Mask, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let every: Vec<usize> = (0..mask.len()).collect();
    let (ceil, fraction) = (c.ceiling(), c.fraction());
    let mut files = Vec::new();
    for (name, values) in [("isc", &c.isc), ("ceiling", &ceil), ("fraction", &fraction)] {
        let path = out.join(format!("{name}.nii.gz"));
        let row = ndarray::Array2::from_shape_vec((1, values.len()), values.clone()).expect("one row");
        nifti::write_masked(&path, mask, &every, row.view(), None)?;
        files.push(path);
    }
    let ijk: Vec<[usize; 3]> = mask.ijk().collect();
    let f32s = |v: &[f64]| Column::F32(v.iter().map(|&x| x as f32).collect());
    let table = out.join("voxels.parquet");
    write_table(
        &table,
        "ceiling",
        None,
        vec![
            Column::U32(every.iter().map(|&v| v as u32).collect()),
            Column::U16(ijk.iter().map(|p| p[0] as u16).collect()),
            Column::U16(ijk.iter().map(|p| p[1] as u16).collect()),
            Column::U16(ijk.iter().map(|p| p[2] as u16).collect()),
            Column::U32(c.subjects.clone()),
            f32s(&c.isc),
            f32s(&ceil),
            f32s(&c.cv_r),
            f32s(&fraction),
        ],
    )?;
    files.push(table);
    let info = out.join("ceiling.json");
    let text = serde_json::to_string_pretty(&c.info).expect("plain data");
    crate::io::atomic::write_file_atomically(&info, |w| w.write_all(text.as_bytes()))?;
    files.push(info);
    Ok(files)
}

/// `ceiling/ceiling.json` of a store, if it has one.
pub fn read_info(dir: &Path) -> Result<Option<CeilingInfo>> {
    let path = dir.join("ceiling.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| crate::error::Error::format(&path, e.to_string()))
}

/// `cortexflow ceiling STORE`: computes the store's noise ceiling afresh, as its writer
/// (a second writer is refused), and writes it under `STORE/ceiling/`. Returns the lines
/// to print.
pub fn run(dir: &Path, min_isc: Option<f64>) -> Result<Vec<String>> {
    run_shared(&[dir.to_path_buf()], min_isc)
}

/// The noise ceilings of stores that hold the same runs cleaned the same way (one store a
/// model, as `run` makes when it compares models): each run is read once for all of them.
/// Each store is locked as its writer for the whole command. Returns the lines to print,
/// each store's under its name when there are several.
pub fn run_shared(dirs: &[PathBuf], min_isc: Option<f64>) -> Result<Vec<String>> {
    if let Some(m) = min_isc.filter(|m| !(m.is_finite() && (-1.0..1.0).contains(m))) {
        bail!("--min-isc {m}: expected a correlation in [-1, 1)");
    }
    let mut locks = Vec::new();
    let mut stores = Vec::new();
    for dir in dirs {
        locks.push(crate::store::WriteLock::acquire(dir)?);
        let store = Store::open(dir)?;
        if !store.paths().mask().is_file() {
            bail!("{}: the store has no mask yet: ingest BOLD runs first", dir.display());
        }
        let m = &store.manifest;
        if !m.dirty.is_empty() || m.results_epoch != m.epoch {
            // The fraction is of the current fits or none.
            bail!("{}: its results are stale (an interrupted command): run `cortexflow status --refresh STORE` first", dir.display());
        }
        stores.push(store);
    }
    let Some(first) = stores.first() else {
        return Ok(Vec::new());
    };
    for other in &stores[1..] {
        same_runs(first, other)?;
    }
    let (shared, left_out) = story_runs(first);
    let mut lines = Vec::new();
    let several = stores.len() > 1;
    let name = |s: &Store| if several { format!("{}: ", s.dir.display()) } else { String::new() };
    if shared.is_empty() {
        // No ceiling rather than a stale one.
        for store in &mut stores {
            let out = store.paths().ceiling();
            store.rewrite(&out, |_| Ok(Vec::new()))?;
            lines.push(format!("{}noise ceiling: none (no story was heard by 2 or more subjects; {} runs)", name(store), store.manifest.runs.len()));
        }
        lines.extend(left_out.iter().map(|(k, why)| format!("{k}: left out ({why})")));
        return Ok(lines);
    }
    let mask = first.read_mask()?;
    let bar = crate::progress::bar(0, "noise ceiling");
    let plan = Plan::of_store(first, &bar)?;
    let started = std::time::Instant::now();
    let isc = isc_of(first, &plan, &mask, &bar)?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), stores = stores.len(), "noise ceiling computed");
    bar.finish_and_clear();
    for store in &mut stores {
        let c = isc.of_store(store, &mask, min_isc)?;
        let out = store.paths().ceiling();
        let files = store.rewrite(&out, |_| write(&c, &mask, &out))?;
        let mut store_lines = vec![format!("{}{}", name(store), c.headline())];
        store_lines.extend(c.info.left_out.iter().map(|(k, why)| format!("{k}: left out ({why})")));
        if plan.regions.is_some() {
            store_lines = store_lines.iter().map(|l| l.replace(" voxels", " regions")).collect();
        }
        store_lines.extend(files.iter().map(|f| format!("wrote {}", f.display())));
        lines.extend(store_lines);
    }
    Ok(lines)
}

/// Refuses to share one ceiling between stores whose runs, mask or cleaning differ.
fn same_runs(a: &Store, b: &Store) -> Result<()> {
    let keys = |s: &Store| s.manifest.runs.iter().map(|(k, r)| (k.clone(), r.bold.clone())).collect::<Vec<_>>();
    let cleaning = |s: &Store| (s.recipe.encoding.high_pass, s.recipe.encoding.zscore_bold, s.recipe.encoding.smoothing_fwhm, s.recipe.confounds.clone());
    if keys(a) != keys(b) || cleaning(a) != cleaning(b) || a.read_mask()?.linear != b.read_mask()?.linear {
        bail!(
            "{} and {}: one noise ceiling is shared only by stores of the same runs, mask and cleaning; run `cortexflow ceiling` on each",
            a.dir.display(),
            b.dir.display()
        );
    }
    Ok(())
}
