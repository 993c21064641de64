//! Discovery of a BIDS-like dataset: `sub-<S>/[ses-<X>/]func/sub-<S>_[ses-<X>_]task-<T>_run-<R>_bold.nii[.gz]`,
//! or a table of region time series `…_timeseries.tsv` (`.csv`; see [`crate::io::regions`],
//! a "space" of its own: `regions`, or `regions:<atlas>`, with `regions.tsv` at the top),
//! each run's words in `sub-<S>/func/…_events.tsv` (BIDS events with a `word` column) or,
//! shared by all subjects, `stimuli/task-<T>_run-<R>.{TextGrid,tsv,csv}`, and an optional
//! analysis mask `mask.nii[.gz]` at the top.
//!
//! fMRIPrep derivatives are read the same way, at the root or under
//! `derivatives/fmriprep/` of a raw dataset (whose events then give the words): runs are
//! `…_space-<SP>[_res-<N>]_desc-preproc_bold.nii.gz`, one space chosen (`--space SP` or
//! `SP:res-N`, as fMRIPrep's `--output-spaces` writes it) when there are several; each
//! run's `…_desc-brain_mask.nii.gz` is its subject's brain mask and its
//! `…_desc-confounds_timeseries.tsv` (+ `.json`) its confounds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One fMRI run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Run {
    pub subject: String,
    pub session: Option<String>,
    pub task: String,
    pub run: String,
    pub bold: PathBuf,
    /// The template space of a derivative (`MNI152NLin2009cAsym`, `…:res-2`); none in raw data.
    pub space: Option<String>,
    /// The run's timed words, when found.
    pub stimulus: Option<PathBuf>,
}

impl Run {
    /// `sub-S/task-T/run-R` (with `ses-X/` when present): the run's key in the store.
    pub fn key(&self) -> String {
        let ses = self
            .session
            .as_ref()
            .map(|s| format!("ses-{s}/"))
            .unwrap_or_default();
        format!(
            "sub-{}/{ses}task-{}/run-{}",
            self.subject, self.task, self.run
        )
    }
}

/// What was found under a dataset root.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    /// Where the BOLD runs are: the root, or its `derivatives/fmriprep`.
    pub func_root: PathBuf,
    pub runs: Vec<Run>,
    pub mask: Option<PathBuf>,
    /// The runs' own brain masks (fMRIPrep's `desc-brain_mask`), for a group mask.
    pub brain_masks: Vec<PathBuf>,
    /// The region → network list (`regions.tsv` at the root) of runs of region time series.
    pub regions: Option<PathBuf>,
    /// Human-readable notes on what is missing or inconsistent.
    pub missing: Vec<String>,
}

const STIM_EXTS: [&str; 4] = ["TextGrid", "tsv", "csv", "textgrid"];

/// Walks `root` (or its `derivatives/fmriprep`) and pairs every BOLD run with its
/// stimulus; `space` chooses among the template spaces of derivatives.
pub fn discover(root: &Path, space: Option<&str>) -> Result<Dataset> {
    if !root.is_dir() {
        return Err(Error::format(root, "not a directory"));
    }
    let fmriprep = root.join("derivatives").join("fmriprep");
    let func_root = match has_subjects(&fmriprep)? {
        true => fmriprep,
        false => root.to_path_buf(),
    };
    let mut runs = Vec::new();
    for sub_dir in list_dir(&func_root)?.into_iter().filter(|p| dir_named(p, "sub-")) {
        let mut func_dirs = vec![sub_dir.join("func")];
        for ses in list_dir(&sub_dir)?
            .into_iter()
            .filter(|p| dir_named(p, "ses-"))
        {
            func_dirs.push(ses.join("func"));
        }
        for func in func_dirs.into_iter().filter(|d| d.is_dir()) {
            for file in list_dir(&func)? {
                if let Some(run) = parse_bold_name(&file) {
                    runs.push(run);
                }
            }
        }
    }
    let runs = in_space(root, runs, space)?;
    let mut runs = runs;
    runs.sort();
    let mut missing = Vec::new();
    for run in &mut runs {
        run.stimulus = find_stimulus(root, &func_root, run);
        if run.stimulus.is_none() {
            missing.push(format!(
                "{}: no stimulus (looked for {} and stimuli/task-{}_run-{}.{{TextGrid,tsv,csv}})",
                run.key(),
                events_name(run),
                run.task,
                run.run
            ));
        }
    }
    // Runs that some subjects have and others lack.
    let subjects: BTreeSet<&str> = runs.iter().map(|r| r.subject.as_str()).collect();
    let mut per_run: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    for r in &runs {
        per_run
            .entry((r.task.clone(), r.run.clone()))
            .or_default()
            .insert(r.subject.as_str());
    }
    for ((task, run), have) in &per_run {
        for s in subjects.difference(have) {
            missing.push(format!(
                "sub-{s}: no BOLD for task-{task} run-{run}, which other subjects have"
            ));
        }
    }
    if runs.is_empty() {
        missing.push(format!(
            "no sub-*/func/*_task-*_run-*_bold.nii[.gz] (nor *_timeseries.tsv) under {}",
            root.display()
        ));
    }
    let mask = ["mask.nii.gz", "mask.nii"]
        .iter()
        .map(|m| root.join(m))
        .find(|p| p.is_file());
    let brain_masks = runs.iter().filter_map(brain_mask).collect();
    let regions = crate::io::regions::list_for(root, runs.first().and_then(|r| r.space.as_deref()));
    Ok(Dataset {
        root: root.to_path_buf(),
        func_root,
        runs,
        mask,
        brain_masks,
        regions,
        missing,
    })
}

fn has_subjects(dir: &Path) -> Result<bool> {
    Ok(dir.is_dir() && list_dir(dir)?.iter().any(|p| dir_named(p, "sub-")))
}

/// How `--space` names runs without a space entity.
pub const NATIVE: &str = "native";

/// The runs of one space: the one there is, or the one asked for; an error listing the
/// spaces found otherwise.
fn in_space(root: &Path, runs: Vec<Run>, space: Option<&str>) -> Result<Vec<Run>> {
    // A run without a space entity is in its own (native, boldref) space: raw data, or
    // fMRIPrep's native-space outputs.
    let space_of = |r: &Run| r.space.clone().unwrap_or_else(|| NATIVE.into());
    let spaces: BTreeSet<String> = runs.iter().map(space_of).collect();
    let listed = spaces.iter().cloned().collect::<Vec<_>>().join(", ");
    match space {
        Some(want) => {
            let chosen: Vec<Run> = runs.into_iter().filter(|r| space_of(r) == want).collect();
            if chosen.is_empty() {
                return Err(Error::format(
                    root,
                    format!("no runs in space '{want}'; the runs found are in: {listed}"),
                ));
            }
            Ok(chosen)
        }
        None if spaces.len() > 1 => Err(Error::format(
            root,
            format!("runs in {} spaces ({listed}): choose one with --space", spaces.len()),
        )),
        None => Ok(runs),
    }
}

/// A derivative run's brain mask: its name with `desc-brain_mask` for `desc-preproc_bold`.
pub fn brain_mask(run: &Run) -> Option<PathBuf> {
    let name = run.bold.file_name()?.to_string_lossy().into_owned();
    let stem = name.split("_desc-preproc_bold.nii").next().filter(|s| s.len() < name.len())?;
    let ext = if name.ends_with(".gz") { "nii.gz" } else { "nii" };
    Some(run.bold.with_file_name(format!("{stem}_desc-brain_mask.{ext}"))).filter(|p| p.is_file())
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    out.sort();
    Ok(out)
}

fn dir_named(p: &Path, prefix: &str) -> bool {
    p.is_dir()
        && p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
}

/// How `--space` names runs of region time series (`regions`, or `regions:<atlas>` when
/// the name carries an `atlas-` or `seg-` entity).
pub const REGIONS: &str = "regions";

/// The run a file name describes: a `…_bold.nii[.gz]` image, or a `…_timeseries.tsv`
/// (`.csv`) table of region time series.
pub fn parse_bold_name(path: &Path) -> Option<Run> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let regions = crate::io::regions::is_region_run(path);
    let stem = match regions {
        true => crate::io::regions::SUFFIXES.iter().find_map(|s| name.strip_suffix(s))?,
        false => name.strip_suffix("_bold.nii.gz").or_else(|| name.strip_suffix("_bold.nii"))?,
    };
    let pairs: Vec<(&str, &str)> = stem.split('_').filter_map(|kv| kv.split_once('-')).collect();
    let entities: BTreeMap<&str, &str> = pairs.iter().copied().collect();
    if entities.len() != pairs.len() {
        // An entity given twice (sub-x_…_sub-y): which subject is meant is not for us to guess.
        return None;
    }
    let labels = ["sub", "ses", "task", "run"].map(|k| entities.get(k));
    if labels.iter().flatten().any(|l| !crate::io::name::is_valid(l)) {
        // A label becomes a folder of the store: never a path.
        return None;
    }
    if !regions && entities.get("desc").is_some_and(|d| *d != "preproc") {
        // Another derivative of the run (fMRIPrep's `desc-smoothAROMAnonaggr`, …).
        return None;
    }
    let space = match regions {
        true => Some(match entities.get("atlas").or_else(|| entities.get("seg")) {
            Some(atlas) => format!("{REGIONS}:{atlas}"),
            None => REGIONS.to_string(),
        }),
        false => entities.get("space").map(|sp| match entities.get("res") {
            Some(res) => format!("{sp}:res-{res}"),
            None => sp.to_string(),
        }),
    };
    Some(Run {
        subject: entities.get("sub")?.to_string(),
        session: entities.get("ses").map(|s| s.to_string()),
        task: entities.get("task")?.to_string(),
        run: entities.get("run").unwrap_or(&"1").to_string(),
        bold: path.to_path_buf(),
        space,
        stimulus: None,
    })
}

/// The run's BIDS events file name: its entities up to the run's, without the space,
/// resolution, description and atlas of a derivative.
fn events_name(run: &Run) -> String {
    let name = run
        .bold
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = ["_bold.nii", "_timeseries."].iter().fold(name.as_str(), |n, end| n.split(end).next().unwrap_or(n));
    let raw: Vec<&str> = stem
        .split('_')
        .filter(|e| !["space-", "res-", "desc-", "atlas-", "seg-"].iter().any(|p| e.starts_with(p)))
        .collect();
    format!("{}_events.tsv", raw.join("_"))
}

/// Events beside the run, then at the same place in the raw dataset (for derivatives
/// under `derivatives/fmriprep`), then the shared `stimuli/` folder.
fn find_stimulus(root: &Path, func_root: &Path, run: &Run) -> Option<PathBuf> {
    let name = events_name(run);
    let beside = run.bold.with_file_name(&name);
    let raw = run
        .bold
        .parent()
        .and_then(|d| d.strip_prefix(func_root).ok())
        .map(|rel| root.join(rel).join(&name));
    let shared = STIM_EXTS.iter().map(|ext| {
        root.join("stimuli")
            .join(format!("task-{}_run-{}.{ext}", run.task, run.run))
    });
    std::iter::once(beside)
        .chain(raw)
        .chain(shared)
        .find(|p| p.is_file())
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subjects: BTreeSet<&str> = self.runs.iter().map(|r| r.subject.as_str()).collect();
        writeln!(
            f,
            "dataset {}: {} subjects, {} runs",
            self.root.display(),
            subjects.len(),
            self.runs.len()
        )?;
        if self.func_root != self.root {
            writeln!(f, "  runs from: {}", self.func_root.display())?;
        }
        let region_runs = self.runs.iter().any(|r| crate::io::regions::is_region_run(&r.bold));
        match (&self.mask, self.brain_masks.len()) {
            _ if region_runs => match &self.regions {
                Some(list) => writeln!(f, "  regions and their networks: {}", list.display())?,
                None => writeln!(f, "  regions: MISSING (regions.tsv with region and network columns, at the top)")?,
            },
            (Some(m), _) => writeln!(f, "  mask: {}", m.display())?,
            (None, 0) => writeln!(
                f,
                "  mask: none (mask.nii[.gz] not found; give one with --mask)"
            )?,
            (None, n) => writeln!(f, "  mask: none at the top; the group mask of the runs' {n} brain masks")?,
        }
        for r in &self.runs {
            let stim = r
                .stimulus
                .as_ref()
                .map_or("MISSING".to_string(), |s| s.display().to_string());
            let confounds = match crate::io::confounds::beside(&r.bold) {
                Ok(Some(c)) => c.display().to_string(),
                Ok(None) => "none".into(),
                Err(e) => format!("ERROR {e}"),
            };
            writeln!(
                f,
                "  {}  bold={}  stimulus={stim}  confounds={confounds}",
                r.key(),
                r.bold.display()
            )?;
        }
        for m in &self.missing {
            writeln!(f, "  missing: {m}")?;
        }
        Ok(())
    }
}
