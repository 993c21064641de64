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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::engine::encoding::{clean_stored, Plan};
use crate::error::{bail, Result};
use crate::io::nifti::{self, Mask};
use crate::io::parquet::{write_table, Column};
use crate::kernels::isc::{ceiling, Isc, StorySums};
use crate::store::{RunEntry, Store};

/// Voxels whose ISC is above this are the "reliable" ones the summary speaks of. Chosen
/// by `scripts/studies/ceiling_null.sh`: on null simulations (no shared signal, 6 subjects
/// × 2 runs of 200 scans), fewer than 1 voxel in 1,000 reaches it (README, "Noise ceiling").
pub const MIN_ISC: f64 = 0.05;

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

    /// cv_r / ceiling where the ceiling is positive (NaN elsewhere).
    pub fn fraction(&self) -> Vec<f64> {
        self.ceiling()
            .iter()
            .zip(&self.cv_r)
            .map(|(&c, &r)| if c > 0.0 { r / c } else { f64::NAN })
            .collect()
    }

    fn summarise(&mut self, min_isc: f64) {
        let reliable: Vec<usize> = (0..self.isc.len()).filter(|&v| self.isc[v] > min_isc).collect();
        let (c, f) = (self.ceiling(), self.fraction());
        let median_of = |values: &[f64]| median(reliable.iter().map(|&v| values[v]).filter(|x| x.is_finite()).collect());
        self.info.min_isc = min_isc;
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
        "noise ceiling: {} stories heard by 2 or more subjects ({runs} runs), {} voxels with ISC > {}",
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

/// The runs of each story that enter the ceiling, and those left out with why.
fn story_runs(store: &Store) -> (StoryRuns, BTreeMap<String, String>) {
    let mut by_story = StoryRuns::new();
    let mut left_out = BTreeMap::new();
    for (key, run) in &store.manifest.runs {
        match &run.confounds {
            Some(c) if c.kept_scans != run.scans => {
                left_out.insert(key.clone(), format!("{} of {} scans kept after censoring", c.kept_scans, run.scans));
            }
            _ => by_story.entry(run.story.clone()).or_default().push((key.clone(), run.clone())),
        }
    }
    by_story.retain(|story, runs| {
        let subjects: std::collections::BTreeSet<&str> = runs.iter().map(|(_, r)| r.subject.as_str()).collect();
        if subjects.len() < 2 {
            for (key, _) in runs.iter() {
                left_out.insert(key.clone(), format!("the only subject with story '{story}'"));
            }
        }
        subjects.len() >= 2
    });
    (by_story, left_out)
}

/// The ceiling of the store's runs as they are now (`plan`: the store's, with no jobs).
pub fn compute(store: &Store, plan: &Plan, mask: &Mask, min_isc: f64, bar: &ProgressBar) -> Result<Ceiling> {
    let (by_story, left_out) = story_runs(store);
    bar.set_length(by_story.values().map(|r| r.len() as u64).sum());
    let mut isc = Isc::new(mask.len());
    let mut stories = BTreeMap::new();
    for (story, runs) in &by_story {
        let Some(clock) = store.manifest.stories.get(story) else {
            bail!("{}: runs of story '{story}', which the store does not hold", store.paths().manifest().display());
        };
        let mut sums = StorySums::new(clock.scans, mask.len());
        for (_, run) in runs {
            let cleaned = clean_stored(plan, &run.bold, story)?;
            if cleaned.yr.dim() != (clock.scans, mask.len()) {
                bail!(
                    "{}: cleaned to {} scans × {} voxels, but story '{story}' has {} scans and the mask {} voxels",
                    run.bold.display(),
                    cleaned.yr.nrows(),
                    cleaned.yr.ncols(),
                    clock.scans,
                    mask.len()
                );
            }
            sums.add(cleaned.yr.view(), &cleaned.valid);
            bar.inc(1);
        }
        isc.add_story(&sums);
        stories.insert(story.clone(), runs.iter().map(|(k, _)| k.clone()).collect());
    }
    let mut out = Ceiling {
        isc: isc.isc(),
        subjects: isc.subjects,
        cv_r: mean_cv_r(store, mask)?,
        info: CeilingInfo {
            epoch: store.manifest.epoch,
            stories,
            left_out,
            ..CeilingInfo::default()
        },
    };
    out.summarise(min_isc);
    Ok(out)
}

/// The mean over subjects of their held-out r (each subject's `cv_r` map, where finite).
fn mean_cv_r(store: &Store, mask: &Mask) -> Result<Vec<f64>> {
    let (mut sum, mut n) = (vec![0.0; mask.len()], vec![0u32; mask.len()]);
    for s in store.subjects() {
        let path = store.paths().subject_map(&s, "cv_r");
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
        nifti::write_map(&path, &mask.grid, &mask.volumes(&every, row.view()), None)?;
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
pub fn run(dir: &Path, min_isc: f64) -> Result<Vec<String>> {
    if !(min_isc.is_finite() && (-1.0..1.0).contains(&min_isc)) {
        bail!("--min-isc {min_isc}: expected a correlation in [-1, 1)");
    }
    let _lock = crate::store::WriteLock::acquire(dir)?;
    let mut store = Store::open(dir)?;
    if !store.paths().mask().is_file() {
        bail!("{}: the store has no mask yet: ingest BOLD runs first", dir.display());
    }
    let out = store.paths().ceiling();
    if story_runs(&store).0.is_empty() {
        // No ceiling rather than a stale one.
        store.rewrite(&out, |_| Ok(Vec::new()))?;
        return Ok(vec!["noise ceiling: none (no story was heard by 2 or more subjects)".into()]);
    }
    let mask = store.read_mask()?;
    let bar = crate::progress::bar(0, "noise ceiling");
    let plan = Plan {
        dir: store.dir.clone(),
        recipe: store.recipe.clone(),
        mask: Some(mask.clone()),
        regions: store.regions()?,
        jobs: Vec::new(),
        stored: Vec::new(),
        sums: Some(store.manifest.files.clone()),
        bar: bar.clone(),
    };
    let c = compute(&store, &plan, &mask, min_isc, &bar)?;
    bar.finish_and_clear();
    let files = store.rewrite(&out, |_| write(&c, &mask, &out))?;
    let mut lines = vec![c.headline()];
    lines.extend(c.info.left_out.iter().map(|(k, why)| format!("{k}: left out ({why})")));
    lines.extend(files.iter().map(|f| format!("wrote {}", f.display())));
    Ok(lines)
}
