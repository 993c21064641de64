//! Discovery of a BIDS-like dataset: `sub-<S>/[ses-<X>/]func/sub-<S>_[ses-<X>_]task-<T>_run-<R>_bold.nii[.gz]`,
//! each run's words in `sub-<S>/func/…_events.tsv` (BIDS events with a `word` column) or,
//! shared by all subjects, `stimuli/task-<T>_run-<R>.{TextGrid,tsv,csv}`, and an optional
//! analysis mask `mask.nii[.gz]` at the top.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One fMRI run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Run {
    pub subject: String,
    pub session: Option<String>,
    pub task: String,
    pub run: String,
    pub bold: PathBuf,
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
    pub runs: Vec<Run>,
    pub mask: Option<PathBuf>,
    /// Human-readable notes on what is missing or inconsistent.
    pub missing: Vec<String>,
}

const STIM_EXTS: [&str; 4] = ["TextGrid", "tsv", "csv", "textgrid"];

/// Walks `root` and pairs every BOLD run with its stimulus.
pub fn discover(root: &Path) -> Result<Dataset> {
    if !root.is_dir() {
        return Err(Error::format(root, "not a directory"));
    }
    let mut runs = Vec::new();
    for sub_dir in list_dir(root)?.into_iter().filter(|p| dir_named(p, "sub-")) {
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
    runs.sort();
    let mut missing = Vec::new();
    for run in &mut runs {
        run.stimulus = find_stimulus(root, run);
        if run.stimulus.is_none() {
            missing.push(format!(
                "{}: no stimulus (looked for {} and stimuli/task-{}_run-{}.{{TextGrid,tsv,csv}})",
                run.key(),
                events_path(run).display(),
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
            "no sub-*/func/*_task-*_run-*_bold.nii[.gz] under {}",
            root.display()
        ));
    }
    let mask = ["mask.nii.gz", "mask.nii"]
        .iter()
        .map(|m| root.join(m))
        .find(|p| p.is_file());
    Ok(Dataset {
        root: root.to_path_buf(),
        runs,
        mask,
        missing,
    })
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

/// Entities of a `…_bold.nii[.gz]` file name, as key → value.
pub fn parse_bold_name(path: &Path) -> Option<Run> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let stem = name
        .strip_suffix("_bold.nii.gz")
        .or_else(|| name.strip_suffix("_bold.nii"))?;
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
    Some(Run {
        subject: entities.get("sub")?.to_string(),
        session: entities.get("ses").map(|s| s.to_string()),
        task: entities.get("task")?.to_string(),
        run: entities.get("run").unwrap_or(&"1").to_string(),
        bold: path.to_path_buf(),
        stimulus: None,
    })
}

fn events_path(run: &Run) -> PathBuf {
    let name = run
        .bold
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.split("_bold.nii").next().unwrap_or(&name);
    run.bold.with_file_name(format!("{stem}_events.tsv"))
}

fn find_stimulus(root: &Path, run: &Run) -> Option<PathBuf> {
    let events = events_path(run);
    if events.is_file() {
        return Some(events);
    }
    STIM_EXTS
        .iter()
        .map(|ext| {
            root.join("stimuli")
                .join(format!("task-{}_run-{}.{ext}", run.task, run.run))
        })
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
        match &self.mask {
            Some(m) => writeln!(f, "  mask: {}", m.display())?,
            None => writeln!(
                f,
                "  mask: none (mask.nii[.gz] not found; give one with --mask)"
            )?,
        }
        for r in &self.runs {
            let stim = r
                .stimulus
                .as_ref()
                .map_or("MISSING".to_string(), |s| s.display().to_string());
            writeln!(
                f,
                "  {}  bold={}  stimulus={stim}",
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
