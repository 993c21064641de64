//! `cortexflow watch STORE DIR`: updates the store as BOLD runs appear in (or disappear
//! from) a folder.
//!
//! Start-up brings the store up to date with what DIR holds (one ordinary update). Each
//! change found by polling is then one update of its own, as `ingest` and `retract` make
//! them: the runs whose file was deleted from DIR are retracted, the new ones reduced, only
//! the subjects concerned are refitted (their stored statistics read back), and the group
//! and the network assignments rewritten. Nothing stays in memory between changes, so a
//! watch that lives for months holds no more than one update does.
//! A file is taken once its size has stayed the same over two polls (a copy in progress
//! is left alone); a file that cannot be read is reported once and retried when it changes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{bail, Context, Result};
use crate::io::bids::{self, Run};

use crate::engine::cluster::Cluster;
use crate::engine::update;
use crate::store::{Store, WriteLock};

/// Settings of `watch`.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub poll: Duration,
    /// Stop after this many updates (run for ever without).
    pub updates: Option<usize>,
}

/// BOLD files under `dir` (any depth) with the sizes of their files: the BOLD's, plus its
/// confounds table's and sidecar's when there are any, so that a run is taken up once
/// those have finished arriving too, and a run that failed for want of them is tried again
/// when they come.
fn scan(dir: &Path) -> Result<BTreeMap<PathBuf, u64>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).with_context(|| format!("{}: cannot list", d.display()))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if bids::parse_bold_name(&p).is_some() {
                if let Ok(m) = e.metadata() {
                    let size = |f: &Path| std::fs::metadata(f).map_or(0, |m| m.len());
                    let confounds = crate::io::confounds::beside(&p)
                        .ok()
                        .flatten()
                        .map_or(0, |c| size(&c) + size(&crate::io::confounds::sidecar(&c)));
                    // A region table's clock is in its sidecar: the run is complete with it.
                    let clock = match crate::io::regions::is_region_run(&p) {
                        true => size(&crate::io::regions::sidecar(&p)),
                        false => 0,
                    };
                    out.insert(p, m.len() + confounds + clock);
                }
            }
        }
    }
    Ok(out)
}

fn say(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
}

/// The new runs among the stable files, each checked on its own: a file that cannot be
/// ingested (not a BIDS name, no story for it) is said and remembered as failed at its
/// size, and the others go on (a changed size is tried again). Two files of one run key
/// (a raw and a preprocessed copy, or two folders) give the run once: the first by path.
fn admit(
    store: &Store,
    stable: &[PathBuf],
    seen: &BTreeMap<PathBuf, u64>,
    failed: &mut BTreeMap<PathBuf, u64>,
) -> Vec<(Run, String)> {
    let mut new: Vec<(Run, String)> = Vec::new();
    for path in stable {
        match store.new_runs(std::slice::from_ref(path)) {
            Ok((runs, _)) => {
                for (run, story) in runs {
                    if new.iter().any(|(r, _)| r.key() == run.key()) {
                        say(&[format!("skipped: {} is run {} again", path.display(), run.key())]);
                    } else {
                        new.push((run, story));
                    }
                }
            }
            Err(e) => {
                say(&[format!("skipped: {e:#}")]);
                failed.insert(path.clone(), seen.get(path).copied().unwrap_or(0));
            }
        }
    }
    new
}

pub fn watch(store_dir: &Path, dir: &Path, opt: &WatchOptions, cluster: &Cluster) -> Result<()> {
    if cluster.processes > 1 {
        bail!("watch runs in one process (use -w for more workers)");
    }
    // One writer: the lock is held for watch's whole life, so an `ingest` or `retract`
    // meanwhile is refused instead of being lost from the manifest.
    let _lock = WriteLock::acquire(store_dir)?;
    // Absolute, as the manifest records BOLD files: a run is gone only if its recorded
    // path is under DIR and no longer there, whatever directory watch was started from.
    let dir = &crate::store::absolute(dir);
    let present: Vec<PathBuf> = scan(dir)?.into_keys().collect();
    say(&update::run_update(cluster, store_dir, None, present, Box::new(|| Ok(Vec::new())))?);
    say(&[format!(
        "watching {} (every {} ms; Ctrl-C stops)",
        dir.display(),
        opt.poll.as_millis()
    )]);
    let mut seen: BTreeMap<PathBuf, u64> = scan(dir)?;
    let mut failed: BTreeMap<PathBuf, u64> = BTreeMap::new();
    let mut updates = 0;
    while opt.updates.is_none_or(|n| updates < n) {
        std::thread::sleep(opt.poll);
        let now = scan(dir)?;
        // The manifest as stored, re-read under the lock at every poll.
        let store = Store::open_reader(store_dir)?;
        let stable: Vec<PathBuf> = now
            .iter()
            .filter(|(p, &size)| size > 0 && seen.get(*p) == Some(&size))
            .filter(|(p, &size)| failed.get(*p) != Some(&size))
            .map(|(p, _)| p.clone())
            .collect();
        // Runs whose file under DIR was deleted.
        let gone: Vec<String> = store
            .manifest
            .runs
            .iter()
            .filter(|(_, r)| r.bold.starts_with(dir) && !now.contains_key(&r.bold))
            .map(|(k, _)| k.clone())
            .collect();
        seen = now;
        let new = admit(&store, &stable, &seen, &mut failed);
        if new.is_empty() && gone.is_empty() {
            continue;
        }
        say(&apply(cluster, store_dir, new, gone, &seen, &mut failed)?);
        updates += 1;
    }
    Ok(())
}

/// One change as one update: the gone runs retracted as the writer prepares, the new runs
/// ingested. When that fails before any run is listed (and nothing was to be retracted),
/// the failure may be one new run's: each is then tried alone, so a file that cannot be
/// ingested fails alone (said, and remembered at its size until it changes). Any other
/// failure stops `watch` with its error.
fn apply(
    cluster: &Cluster,
    store_dir: &Path,
    new: Vec<(Run, String)>,
    gone: Vec<String>,
    seen: &BTreeMap<PathBuf, u64>,
    failed: &mut BTreeMap<PathBuf, u64>,
) -> Result<Vec<String>> {
    let bold: Vec<PathBuf> = new.iter().map(|(r, _)| r.bold.clone()).collect();
    let (dir, retracting) = (store_dir.to_path_buf(), !gone.is_empty());
    let retract: update::Prepare = Box::new(move || {
        let mut store = Store::open(&dir)?;
        let mut lines = Vec::new();
        for key in &gone {
            lines.extend(store.retract_entry(key)?);
        }
        Ok(lines)
    });
    let error = match update::run_update(cluster, store_dir, None, bold, retract) {
        Ok(lines) => return Ok(lines),
        Err(e) => e,
    };
    let listed = Store::open_reader(store_dir)?.manifest.runs;
    if retracting || new.is_empty() || new.iter().any(|(r, _)| listed.contains_key(&r.key())) {
        return Err(error);
    }
    let mut lines = Vec::new();
    let mut single = (new.len() == 1).then(|| format!("{error:#}"));
    for (run, _) in &new {
        let result = match single.take() {
            Some(e) => Err(e),
            None => update::run_update(cluster, store_dir, None, vec![run.bold.clone()], Box::new(|| Ok(Vec::new())))
                .map_err(|e| format!("{e:#}")),
        };
        match result {
            Ok(l) => lines.extend(l),
            Err(e) => {
                lines.push(format!("{}: not ingested: {e}", run.key()));
                failed.insert(run.bold.clone(), seen.get(&run.bold).copied().unwrap_or(0));
            }
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Recipe;

    /// A run's confounds count in what `watch` sees of it: their arrival changes it.
    #[test]
    fn confounds_arriving_change_what_a_run_looks_like() {
        let dir = tempfile::tempdir().unwrap();
        let bold = dir.path().join("sub-01_task-x_run-1_space-MNI_desc-preproc_bold.nii.gz");
        std::fs::write(&bold, [0u8; 100]).unwrap();
        assert_eq!(scan(dir.path()).unwrap()[&bold], 100);
        std::fs::write(dir.path().join("sub-01_task-x_run-1_desc-confounds_timeseries.tsv"), "a\n1\n").unwrap();
        assert_eq!(scan(dir.path()).unwrap()[&bold], 104);
        std::fs::write(dir.path().join("sub-01_task-x_run-1_desc-confounds_timeseries.json"), "{}").unwrap();
        assert_eq!(scan(dir.path()).unwrap()[&bold], 106);
    }

    /// One file that cannot be ingested does not keep the good ones out.
    #[test]
    fn a_bad_file_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mask = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/stimuli/lpp-en/mask_lpp_en.nii.gz");
        let _lock = WriteLock::acquire(&dir.path().join("s")).unwrap();
        let mut store = Store::init(&dir.path().join("s"), &Recipe::default(), Some(&mask)).unwrap();
        let clock = crate::store::StoryEntry { scans: 10, tr: 2.0 };
        store.manifest.stories.insert("task-lpp_run-1".into(), clock);
        let good = dir.path().join("sub-01_task-lpp_run-1_bold.nii.gz");
        let m = crate::io::nifti::read_mask(&mask).unwrap();
        let bold = ndarray::Array4::<f32>::zeros((m.grid.shape[0], m.grid.shape[1], m.grid.shape[2], 10));
        crate::io::nifti::write_map(&good, &m.grid, &bold, Some(2.0)).unwrap();
        let no_story = dir.path().join("sub-01_task-lpp_run-2_bold.nii.gz");
        let not_bids = dir.path().join("scan_bold.nii.gz");
        let again = dir.path().join("sub-01_task-lpp_run-1_desc-preproc_bold.nii.gz");
        std::fs::copy(&good, &again).unwrap();
        let stable = vec![no_story.clone(), good.clone(), not_bids.clone(), again];
        let seen: BTreeMap<PathBuf, u64> = stable.iter().map(|p| (p.clone(), 7)).collect();
        let mut failed = BTreeMap::new();
        let new = admit(&store, &stable, &seen, &mut failed);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].0.bold, good);
        assert_eq!(failed.keys().cloned().collect::<Vec<_>>(), vec![not_bids, no_story]);
    }
}
