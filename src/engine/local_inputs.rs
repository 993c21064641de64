//! A cluster without a shared file system (`--local-inputs`): each process holds only the
//! runs on its own disks, and process 0 alone holds the store, the only shared state.
//!
//! What would otherwise be read from a common store path travels in the dataflow:
//! 1. [`replicate`]: worker 0 sends the store files an update is planned from and a run
//!    is reduced against (manifest, recipe, mask, regions, every story's atoms) to every
//!    worker; the other processes write them to a private folder laid out as the store,
//!    so planning and reducing read them as they read a store, checksums included.
//! 2. [`gather_new_runs`]: each process names its runs (read there: name, clock,
//!    confounds) and every worker merges all processes' into the same list, with the
//!    process that holds each run; a run given to two processes is an error.
//! 3. Every run is reduced by a worker of the process that holds it, the stored runs'
//!    statistics are read by process 0's workers ([`Held::owner`]); a run reduced
//!    elsewhere sends its statistics file's bytes to the writer, which writes them into
//!    the store before it lists the run (`waves::fit_wave`).
//!
//! The bytes are those of the same update on a shared file system: the same jobs reach
//! the same fitting dataflow, and the statistics files are the same bytes.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use timely::worker::Worker;

use crate::engine::cluster::agree_or_say;
use crate::engine::update::Listing;
use crate::error::{bail, err, Error, Result};
use crate::io::bids::Run;
use crate::operators::share;
use crate::store::{Layout, Store};

/// Who holds which run: its process, and the workers a process has.
#[derive(Debug, Clone)]
pub struct Held {
    /// Run key → the process that holds its BOLD.
    pub holders: Arc<BTreeMap<String, usize>>,
    pub workers: usize,
}

impl Held {
    /// The process whose workers do `job`: a new run's holder; process 0 (the store's) for
    /// anything read from the store.
    pub fn owner(&self, job: &crate::engine::encoding::Job) -> usize {
        match job {
            crate::engine::encoding::Job::Reduce { run, .. } => self.holders.get(&run.key()).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// The process of worker `index`.
    pub fn process_of(&self, index: usize) -> usize {
        index / self.workers.max(1)
    }
}

/// The store as this worker reads it: the store itself in process 0, a private copy of
/// the files an update needs elsewhere (removed when dropped).
pub struct Replica {
    pub dir: PathBuf,
    /// The copy and its maker's lock on it.
    _copy: Option<(tempfile::TempDir, std::fs::File)>,
}

/// The files of the store at `dir` that a worker needs to plan an update and reduce a
/// run, relative to the store.
fn needed(dir: &Path) -> Result<Vec<PathBuf>> {
    let store = Store::open_reader(dir)?;
    let paths = store.paths();
    let mut files = vec![paths.manifest(), paths.recipe()];
    files.extend([paths.mask(), paths.regions()].into_iter().filter(|p| p.is_file()));
    files.extend(store.manifest.stories.keys().map(|s| paths.atoms(s)).filter(|p| p.is_file()));
    files
        .iter()
        .map(|f| match f.strip_prefix(&store.dir) {
            Ok(rel) => Ok(rel.to_path_buf()),
            Err(_) => Err(err!("{}: not inside the store {}", f.display(), store.dir.display())),
        })
        .collect()
}

/// Sends the store's files from worker 0 to every worker (collective: every worker calls
/// it); each process but 0 writes them to a private folder. Every worker learns whether
/// all succeeded, and a failure elsewhere in the failing process's words.
pub fn replicate(worker: &mut Worker, dir: &Path, workers: usize) -> Result<Replica> {
    let read = match worker.index() {
        0 => needed(dir).and_then(|files| {
            files
                .into_iter()
                .map(|rel| {
                    let path = crate::store::absolute(dir).join(&rel);
                    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                    Ok((rel.to_string_lossy().into_owned(), bytes))
                })
                .collect::<Result<Vec<_>>>()
        }),
        _ => Ok(Vec::new()),
    };
    let read = agree_or_say(worker, read, workers, "could not read the store")?;
    let files = share(worker, read);
    let here = match worker.index() / workers.max(1) {
        0 => Ok(Replica { dir: dir.to_path_buf(), _copy: None }),
        _ => write_copy(std::env::temp_dir().as_path(), files.into_iter().map(|(_, f)| f).collect()),
    };
    agree_or_say(worker, here, workers, "could not copy the store's recipe, mask and atoms")
}

/// Folders of store copies are named with the process that made them (for a person
/// reading the temporary folder) and hold its lock (`flock` on [`OWNER`], dropped by the
/// kernel however the process ends): one left by a process killed, interrupted or stopped
/// by a lost peer is removed by the next copy made there. A lock, not a process id,
/// says whether its maker lives: ids repeat across PID namespaces sharing a /tmp.
const COPY_PREFIX: &str = "cortexflow-store-copy-";
const OWNER: &str = ".owner";

/// The copies this process made, removed when it stops on a lost peer.
static MADE: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// The files sent by worker 0, written under a new folder in `temp` (after removing the
/// copies whose makers have ended). Their names come from another process: each must stay
/// inside the folder.
fn write_copy(temp: &Path, files: Vec<(String, Vec<u8>)>) -> Result<Replica> {
    remove_stale_copies(temp);
    let copy = tempfile::Builder::new()
        .prefix(&format!("{COPY_PREFIX}{}-", std::process::id()))
        .tempdir_in(temp)
        .map_err(|e| err!("{}: cannot make a temporary folder for the store's files: {e}", temp.display()))?;
    // Locked before it is named `OWNER`, so a sweep never finds it unlocked.
    let (taking, owner) = (copy.path().join(".owner-taking"), copy.path().join(OWNER));
    let lock = std::fs::File::create(&taking).map_err(|e| Error::io(&taking, e))?;
    lock.try_lock().map_err(|e| err!("{}: cannot lock: {e}", taking.display()))?;
    std::fs::rename(&taking, &owner).map_err(|e| Error::io(&owner, e))?;
    MADE.lock().unwrap_or_else(|e| e.into_inner()).push(copy.path().to_path_buf());
    for (name, bytes) in files {
        let rel = Path::new(&name);
        if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) || name == OWNER {
            bail!("process 0 sent a store file named '{name}': not a path inside a store");
        }
        let path = copy.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
    }
    Ok(Replica { dir: copy.path().to_path_buf(), _copy: Some((copy, lock)) })
}

/// Removes this process's store copies: it is stopping while its workers, which own them,
/// are stuck on a lost peer.
pub fn remove_own_copies() {
    for dir in MADE.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Removes the store copies in `temp` whose maker has ended: their lock can be taken
/// (best effort: another user's cannot be removed, and is left).
fn remove_stale_copies(temp: &Path) {
    let Ok(entries) = std::fs::read_dir(temp) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let ours = entry.file_name().to_str().is_some_and(|n| n.starts_with(COPY_PREFIX));
        if !ours || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let ended = std::fs::File::open(entry.path().join(OWNER)).is_ok_and(|f| f.try_lock().is_ok());
        if ended {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The new runs of an update, from every process.
#[derive(Debug, Clone, Default)]
pub struct NewRuns {
    /// (run, story), in run order.
    pub new: Vec<(Run, String)>,
    /// Runs already in the store, one line each.
    pub lines: Vec<String>,
    pub listings: BTreeMap<String, Listing>,
    pub held: Option<Held>,
}

/// A process's new runs as it sends them: (run, story, listing), and its lines.
type Named = (Vec<(Run, String, Listing)>, Vec<String>);

/// This process's runs `bold` (named, clocked and listed here, against the store copy at
/// `dir`) and every other process's, merged alike at every worker (collective). Paths are
/// made absolute where they are read, so the manifest records the holder's path.
pub fn gather_new_runs(worker: &mut Worker, dir: &Path, bold: &[PathBuf], workers: usize) -> Result<NewRuns> {
    let named = || -> Result<Named> {
        let store = Store::open_reader(dir)?;
        let bold: Vec<PathBuf> = bold.iter().map(|p| crate::store::absolute(p)).collect();
        let (new, lines) = store.new_runs(&bold)?;
        let listed = new
            .into_iter()
            .map(|(run, story)| {
                let listing = Listing::of(&store.recipe, &run)?;
                Ok((run, story, listing))
            })
            .collect::<Result<_>>()?;
        Ok((listed, lines))
    };
    // One worker of each process names its runs.
    let named = match worker.index() % workers.max(1) {
        0 => named(),
        _ => Ok(Default::default()),
    };
    let named = agree_or_say(worker, named, workers, "could not read its runs")?;
    let all = share(worker, vec![named]);
    // Every worker merges the same lists: all succeed or all fail alike.
    merge(all.into_iter().map(|(w, n)| (w / workers.max(1), n)).collect(), workers)
}

/// Every process's runs in one list, in run order; a run held by two processes is refused.
fn merge(named: Vec<(usize, Named)>, workers: usize) -> Result<NewRuns> {
    let mut runs: Vec<(Run, String, Listing, usize)> = Vec::new();
    let mut lines = Vec::new();
    for (process, (new, said)) in named {
        runs.extend(new.into_iter().map(|(r, s, l)| (r, s, l, process)));
        lines.extend(said);
    }
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = runs.windows(2).find(|w| w[0].0.key() == w[1].0.key()) {
        bail!(
            "run {} is given to process {} ({}) and to process {} ({}): give each run to one process",
            w[0].0.key(),
            w[0].3,
            w[0].0.bold.display(),
            w[1].3,
            w[1].0.bold.display()
        );
    }
    let holders = runs.iter().map(|(r, _, _, p)| (r.key(), *p)).collect();
    let listings = runs.iter().map(|(r, _, l, _)| (r.key(), l.clone())).collect();
    Ok(NewRuns {
        new: runs.into_iter().map(|(r, s, _, _)| (r, s)).collect(),
        lines,
        listings,
        held: Some(Held { holders: Arc::new(holders), workers }),
    })
}

/// The bytes of the statistics file of each run in `keys` that this worker reduced into
/// its store copy (a process other than 0): read, then removed from the copy.
pub fn take_stats(dir: &Path, keys: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
    keys.iter()
        .map(|key| {
            let path = Layout::new(dir).stats(key);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let _ = std::fs::remove_file(&path);
            Ok((key.clone(), bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::encoding::{Job, Plan};

    fn run(subject: &str, r: &str) -> Run {
        crate::io::bids::parse_bold_name(Path::new(&format!("/h/sub-{subject}_task-lpp_run-{r}_bold.nii.gz"))).unwrap()
    }

    fn listing() -> Listing {
        Listing { scans: 10, confounds: None }
    }

    #[test]
    fn names_from_another_process_stay_inside_the_copy() {
        for bad in ["../escape", "/etc/passwd", "", "runs/../../x", ".", OWNER] {
            let e = write_copy(&std::env::temp_dir(), vec![(bad.to_string(), b"x".to_vec())]).err().map(|e| e.to_string());
            assert!(e.as_deref().is_some_and(|e| e.contains("not a path inside a store")), "{bad}: {e:?}");
        }
        let ok = write_copy(&std::env::temp_dir(), vec![("basis/atoms/lpp.parquet".into(), b"atoms".to_vec())]).unwrap();
        assert_eq!(std::fs::read(ok.dir.join("basis/atoms/lpp.parquet")).unwrap(), b"atoms");
    }

    #[test]
    fn copies_whose_maker_ended_are_removed_and_live_ones_kept() {
        let temp = tempfile::tempdir().unwrap();
        let copy = |name: &str| {
            let d = temp.path().join(format!("{COPY_PREFIX}{name}"));
            std::fs::create_dir_all(d.join("basis")).unwrap();
            d
        };
        // Ended: its lock file is there, nobody holds it (whatever the id in its name).
        let ended = copy(&format!("{}-abc", std::process::id()));
        std::fs::write(ended.join(OWNER), b"").unwrap();
        // Alive: another open file holds the lock (flock conflicts within a process too).
        let alive = copy("1-abc");
        let held = std::fs::File::create(alive.join(OWNER)).unwrap();
        held.try_lock().unwrap();
        // Being made (no lock file yet), and a file of the same prefix: left.
        let unnamed = copy("2-abc");
        std::fs::write(temp.path().join(format!("{COPY_PREFIX}3-file")), b"x").unwrap();
        let made = write_copy(temp.path(), vec![("recipe.toml".into(), b"r".to_vec())]).unwrap();
        assert!(!ended.exists(), "the copy of an ended process is left");
        assert!(alive.exists() && unnamed.exists() && temp.path().join(format!("{COPY_PREFIX}3-file")).exists());
        assert!(made.dir.join("recipe.toml").is_file());
        // A second sweep keeps the live copy just made.
        remove_stale_copies(temp.path());
        assert!(made.dir.join(OWNER).is_file());
        drop(made);
        assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 3);
        drop(held);
        remove_stale_copies(temp.path());
        assert!(!alive.exists(), "the lock is free once its holder closes it");
    }

    #[test]
    fn runs_merge_in_run_order_with_their_holders_and_a_run_held_twice_is_refused() {
        let named = vec![
            (0, (vec![(run("02", "1"), "s".into(), listing())], vec!["sub-01/task-lpp/run-1: already ingested (unchanged)".into()])),
            (1, (vec![(run("03", "1"), "s".into(), listing()), (run("01", "2"), "s".into(), listing())], Vec::new())),
        ];
        let m = merge(named.clone(), 2).unwrap();
        let keys: Vec<String> = m.new.iter().map(|(r, _)| r.key()).collect();
        assert_eq!(keys, ["sub-01/task-lpp/run-2", "sub-02/task-lpp/run-1", "sub-03/task-lpp/run-1"]);
        let held = m.held.unwrap();
        assert_eq!(held.holders.values().copied().collect::<Vec<_>>(), [1, 0, 1]);
        assert_eq!(m.lines.len(), 1);
        let mut twice = named;
        twice[0].1 .0.push((run("03", "1"), "s".into(), listing()));
        let e = merge(twice, 2).unwrap_err().to_string();
        assert!(e.contains("run sub-03/task-lpp/run-1 is given to process 0") && e.contains("and to process 1"), "{e}");
    }

    #[test]
    fn each_job_goes_to_one_worker_of_the_process_that_holds_it() {
        let jobs: Vec<Job> = (1..=7)
            .map(|i| Job::Reduce { run: run(&format!("{i:02}"), "1"), story: "s".into() })
            .chain((1..=3).map(|i| Job::Load { key: format!("sub-0{i}/task-lpp/run-2"), subject: format!("0{i}") }))
            .collect();
        let holders: BTreeMap<String, usize> = (1..=7).map(|i| (format!("sub-{i:02}/task-lpp/run-1"), i % 3)).collect();
        let mut plan = Plan {
            dir: PathBuf::new(),
            recipe: crate::store::Recipe::default(),
            mask: None,
            regions: None,
            jobs: Vec::new(),
            stored: Vec::new(),
            sums: None,
            bar: indicatif::ProgressBar::hidden(),
            held: None,
        };
        let (workers, processes) = (2, 3);
        let peers = workers * processes;
        for held in [false, true] {
            plan.held = held.then(|| Held { holders: Arc::new(holders.clone()), workers });
            for wave in 0..3 {
                let mut taken = vec![0; jobs.len()];
                for index in 0..peers {
                    for job in plan.dealt(&jobs, wave, index, peers) {
                        let at = jobs.iter().position(|j| std::ptr::eq(j, job)).unwrap();
                        taken[at] += 1;
                        if let Some(h) = &plan.held {
                            assert_eq!(h.process_of(index), h.owner(job), "{job:?} at worker {index}");
                        }
                    }
                }
                assert!(taken.iter().all(|&t| t == 1), "held {held}, wave {wave}: {taken:?}");
            }
        }
    }

    #[test]
    fn a_wave_takes_subjects_from_every_process_in_turn() {
        let jobs: Vec<Job> = ["01", "02", "03", "04", "05"]
            .iter()
            .map(|s| Job::Reduce { run: run(s, "1"), story: "s".into() })
            .chain([Job::Load { key: "sub-06/task-lpp/run-1".into(), subject: "06".into() }])
            .collect();
        // 01, 02, 05 and 06 (stored runs only) are process 0's; 03 and 04 process 1's.
        let holders = [("01", 0), ("02", 0), ("03", 1), ("04", 1), ("05", 0)].map(|(s, p)| (format!("sub-{s}/task-lpp/run-1"), p));
        let held = Held { holders: Arc::new(holders.into_iter().collect()), workers: 1 };
        let waves = crate::engine::waves::waves(&jobs, 2, Some(&held));
        let subjects: Vec<Vec<&str>> = waves.iter().map(|w| w.subjects.iter().map(String::as_str).collect()).collect();
        assert_eq!(subjects, [vec!["01", "03"], vec!["02", "04"], vec!["05", "06"]]);
        let shared = crate::engine::waves::waves(&jobs, 2, None);
        assert_eq!(shared[0].subjects.iter().map(String::as_str).collect::<Vec<_>>(), ["01", "02"]);
    }
}
