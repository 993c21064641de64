//! Cleaned runs kept on disk from `cortexflow run`'s reduce pass for its noise ceiling.
//!
//! The ceiling needs each story's sum over every subject before it can correlate one
//! subject with the others, so it runs after the dataflow; without these files it reads,
//! gunzips, smooths and cleans every run a second time (2.6–2.9 s of a 13 s `run` at 2 mm).
//! While `run` holds the store's write lock it turns keeping on ([`keep_for_ceiling`]):
//! the reduce pass writes each run's cleaned series (kept scans × voxels, f64, then 1 or 0
//! a voxel for valid) to `STORE/.cleaned/<xxh64 of its key>.f64`, a [`keyed`] file, and
//! the ceiling reads it back instead of cleaning the run again. The values are the ones
//! the ceiling would compute, so its outputs are the same bytes.
//!
//! A file's key holds the BOLD file's path (as given: two links to one file are two runs),
//! size and modification time, the run's confounds (every value and the kept scans) and
//! the cleaning (high-pass, z-scoring, smoothing, the confound strategy, the mask): a run
//! changed meanwhile is cleaned again. A damaged or missing file is cleaned again too
//! (said in the log). Keeping only saves time, so nothing about it fails a command.
//!
//! Disk, not memory: nothing is kept on a file system in memory (tmpfs, ramfs), and a run
//! is kept only while the disk keeps, after it, half the space that was free when keeping
//! began and at least [`RESERVE`] — the store's own outputs, and other commands, need the
//! rest. The folder is removed when the command ends; after a kill or Ctrl-C, when the
//! next writer takes the store's lock.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use ndarray::Array2;
use twox_hash::XxHash64;

use crate::engine::encoding::Plan;
use crate::error::{Context, Error, Result};
use crate::io::atomic::Durability;
use crate::io::keyed;
use crate::stages::confounds::Confounds;
use crate::stages::encode::CleanSeries;
use crate::store::{Layout, WriteLock};

const MAGIC: &[u8; 8] = b"CFCLEAN1";

/// Where keeping is on, and the free bytes a kept file may not go below.
struct Keeper {
    dir: PathBuf,
    floor: u64,
}

/// Free space keeping never goes below: 1 GiB.
pub const RESERVE: u64 = 1 << 30;

/// Read-held by a kept file's whole write, so turning keeping off (the write lock) waits
/// for the files being written before it removes their folder: a command stopped by an
/// error (a lost peer) never has a worker write into a removed folder.
static KEEPER: RwLock<Option<Keeper>> = RwLock::new(None);

/// Keeping turned on for one store, whose write lock it holds; dropping it turns keeping
/// off, removes the files, then lets the lock go.
#[must_use = "keeping ends when this is dropped"]
pub struct Keeping {
    dir: PathBuf,
    _lock: WriteLock,
}

/// Takes the write lock of the store at `store` (re-entrant in this process: the commands
/// within take it again) and turns keeping on for it until the returned guard is dropped;
/// files left by a killed command are removed first. None, said in the log, where keeping
/// cannot start: the lock is held elsewhere (the command's own locking then says so, in
/// every process of a cluster), the folder is in memory, or `.cleaned` is there in a
/// folder that is not a store (not ours to remove).
pub fn keep_for_ceiling(store: &Path) -> Option<Keeping> {
    let started = || -> Result<Option<Keeping>> {
        let lock = WriteLock::acquire(store)?;
        let dir = Layout::new(store).cleaned();
        if std::fs::symlink_metadata(&dir).is_ok() {
            if !Layout::new(store).manifest().is_file() {
                tracing::info!("{}: not a store's, left alone; the noise ceiling cleans every run again", dir.display());
                return Ok(None);
            }
            remove(&dir)?;
        }
        std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let dir = dir.canonicalize().map_err(|e| Error::io(&dir, e))?;
        let keeping = Keeping { dir: dir.clone(), _lock: lock };
        let (free, in_memory) = free_bytes(&dir)?;
        if in_memory {
            tracing::info!("{}: a file system in memory; the noise ceiling cleans every run again", dir.display());
            return Ok(None);
        }
        let floor = (free / 2).max(RESERVE);
        tracing::debug!(dir = %dir.display(), floor_mb = floor / 1_000_000, "keeping cleaned runs for the noise ceiling");
        *KEEPER.write().unwrap_or_else(|e| e.into_inner()) = Some(Keeper { dir, floor });
        Ok(Some(keeping))
    };
    started().unwrap_or_else(|e| {
        tracing::info!("cleaned runs not kept ({e}); the noise ceiling cleans every run again");
        None
    })
}

impl Drop for Keeping {
    fn drop(&mut self) {
        // A ceiling computed ahead still reading the files finishes first.
        crate::stages::ceiling::forget_ahead();
        *KEEPER.write().unwrap_or_else(|e| e.into_inner()) = None;
        if let Err(e) = remove(&self.dir) {
            tracing::warn!("{e}");
        }
    }
}

/// Removes a cleaned-runs folder (never through a symlink: one is removed as a link).
pub fn remove(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(dir).with_context(|| format!("{}: cannot remove the cleaned runs", dir.display())),
        Ok(_) => std::fs::remove_file(dir).map_err(|e| Error::io(dir, e)),
        Err(_) => Ok(()),
    }
}

/// Bytes an unprivileged process may still write on the file system of `dir`, and whether
/// that file system lives in memory (tmpfs, ramfs).
fn free_bytes(dir: &Path) -> Result<(u64, bool)> {
    use std::os::unix::ffi::OsStrExt;
    const TMPFS: i64 = 0x0102_1994;
    const RAMFS: i64 = 0x8584_58f6;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| Error::format(dir, "a path with a NUL byte"))?;
    // SAFETY: all-zero bytes are a valid statfs, which the call then fills; `path` is
    // NUL-terminated.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut s) } != 0 {
        return Err(Error::io(dir, std::io::Error::last_os_error()));
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    let (kind, free) = (s.f_type as i64, (s.f_bavail as u64).saturating_mul(s.f_bsize as u64));
    Ok((free, kind == TMPFS || kind == RAMFS))
}

/// What a run's cleaned series depends on, in words (`confounds`: the run's, under the
/// recipe's strategy).
fn key(plan: &Plan, bold: &Path, confounds: Option<&Confounds>) -> Option<String> {
    let meta = std::fs::metadata(bold).ok()?;
    let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    let e = &plan.recipe.encoding;
    let mask = plan.mask.as_ref().map(|m| {
        let bytes: Vec<u8> = m.linear.iter().flat_map(|&i| (i as u64).to_le_bytes()).collect();
        XxHash64::oneshot(0, &bytes)
    });
    let regions = plan.regions.as_ref().map(|r| r.names.join("\t"));
    let confounds = confounds.map(|c| {
        let bits: Vec<u8> = c.columns.iter().flatten().flat_map(|x| x.to_bits().to_le_bytes()).collect();
        (c.names.join("\t"), XxHash64::oneshot(0, &bits), c.keep.clone())
    });
    Some(format!(
        "bold {}\nsize {}\nmodified {modified}\nhigh_pass {:?} zscore_bold {:?} smoothing_fwhm {:?}\nstrategy {:?}\nconfounds {confounds:?}\nmask {mask:?}\nregions {regions:?}\n",
        std::path::absolute(bold).ok()?.display(),
        meta.len(),
        e.high_pass,
        e.zscore_bold,
        e.smoothing_fwhm,
        plan.recipe.confounds,
    ))
}

/// The folder of the cleaned runs when keeping is on for the store at `store`.
fn folder_of(store: &Path) -> Option<PathBuf> {
    keeper_of(&KEEPER.read().unwrap_or_else(|e| e.into_inner()), store).map(|k| k.dir.clone())
}

/// `keeper` when it keeps the runs of the store at `store`.
fn keeper_of<'a>(keeper: &'a Option<Keeper>, store: &Path) -> Option<&'a Keeper> {
    let on = keeper.as_ref()?;
    (Layout::new(store).cleaned().canonicalize().ok()? == on.dir).then_some(on)
}

/// Whether keeping is on for the store at `store` (checked before a key is made).
pub fn is_keeping(store: &Path) -> bool {
    folder_of(store).is_some()
}

/// The file of `key` when keeping is on for the store at `store`.
fn file_of(store: &Path, key: &str) -> Option<PathBuf> {
    Some(folder_of(store)?.join(file_name(key)))
}

/// The name of the cleaned file of `key`.
fn file_name(key: &str) -> String {
    format!("{:016x}.f64", XxHash64::oneshot(0, key.as_bytes()))
}

/// Bytes of a cleaned file of `scans` × `voxels`.
fn size(scans: usize, voxels: usize) -> u64 {
    (scans as u64 * voxels as u64 + voxels as u64) * 8 + 4096
}

/// Keeps the cleaned series of the run at `bold` (cleaned with `confounds`) when keeping
/// is on for `plan`'s store and the disk has room. Never fails the command: a file that
/// cannot be written is said in the log, and the ceiling cleans that run again.
pub fn keep(plan: &Plan, bold: &Path, confounds: Option<&Confounds>, series: &CleanSeries) {
    if !is_keeping(&plan.dir) {
        return;
    }
    if let Some(key) = key(plan, bold, confounds) {
        put(&plan.dir, &key, &series.yr, &series.valid);
    }
}

/// The cleaned series (`scans` × `voxels`) and valid voxels of the run at `bold` (with
/// `confounds`), when `plan`'s store kept it; the file is removed once read. None when
/// there is none, or it cannot be used (said in the log): the caller cleans the run again.
pub fn take(plan: &Plan, bold: &Path, confounds: Option<&Confounds>, scans: usize, voxels: usize) -> Option<(Array2<f64>, Vec<bool>)> {
    if !is_keeping(&plan.dir) {
        return None;
    }
    get(&plan.dir, &key(plan, bold, confounds)?, scans, voxels)
}

fn put(store: &Path, key: &str, yr: &Array2<f64>, valid: &[bool]) {
    // Held until the file is written ([`KEEPER`] says why).
    let keeper = KEEPER.read().unwrap_or_else(|e| e.into_inner());
    let Some(&Keeper { ref dir, floor }) = keeper_of(&keeper, store) else { return };
    let path = dir.join(file_name(key));
    let (scans, voxels) = yr.dim();
    // Several workers may pass this check at once: each kept file is a small part of the
    // floor, which is at least half of what was free.
    let room = free_bytes(dir).is_ok_and(|(free, _)| free.saturating_sub(size(scans, voxels)) >= floor);
    if !room {
        tracing::debug!(file = %path.display(), "cleaned run not kept: the disk would keep less than half the space free when the command began");
        return;
    }
    let yr = yr.as_standard_layout();
    let valid: Vec<f64> = valid.iter().map(|&v| f64::from(u8::from(v))).collect();
    let values = [yr.as_slice().expect("standard layout"), &valid[..]];
    if let Err(e) = keyed::write(&path, Durability::PageCache, (MAGIC, key), &[scans as u64, voxels as u64], &values) {
        tracing::warn!("{e}: the noise ceiling cleans this run again");
    }
}

fn get(store: &Path, key: &str, scans: usize, voxels: usize) -> Option<(Array2<f64>, Vec<bool>)> {
    let path = file_of(store, key)?;
    let values = scans.checked_mul(voxels)?.checked_add(voxels)?;
    let read = keyed::read::<f64>(&path, MAGIC, key, 2, values);
    let _ = std::fs::remove_file(&path);
    let entry = match read {
        Ok(Some(e)) if e.counts == [scans as u64, voxels as u64] => e,
        Ok(None) => return None,
        Ok(Some(e)) => {
            tracing::warn!("{}: a cleaned run of {:?} scans × voxels, expected {scans} × {voxels}; cleaning it again", path.display(), e.counts);
            return None;
        }
        Err(why) => {
            tracing::warn!("{}: cleaned run not used ({why}); cleaning it again", path.display());
            return None;
        }
    };
    let mut values = entry.values;
    let valid = values.split_off(scans * voxels).iter().map(|&v| v == 1.0).collect();
    Some((Array2::from_shape_vec((scans, voxels), values).expect("length checked"), valid))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key names one run cleaned one way: two links to one BOLD file are two runs (their
    /// confounds tables may differ), and other confounds or another recipe's cleaning are
    /// another key.
    #[test]
    fn keys_tell_links_confounds_and_cleaning_apart() {
        let dir = tempfile::tempdir().unwrap();
        let bold = dir.path().join("a_bold.nii.gz");
        std::fs::write(&bold, b"scans").unwrap();
        let link = dir.path().join("b_bold.nii.gz");
        std::os::unix::fs::symlink(&bold, &link).unwrap();
        let mut plan = Plan {
            dir: dir.path().to_path_buf(),
            recipe: crate::store::Recipe::default(),
            mask: None,
            regions: None,
            jobs: Vec::new(),
            stored: Vec::new(),
            sums: None,
            bar: indicatif::ProgressBar::hidden(),
            held: None,
        };
        let confounds = Confounds { names: vec!["x".into()], columns: vec![vec![0.5, 1.0]], keep: None };
        let mut other = confounds.clone();
        other.columns[0][1] = 1.5;
        let base = key(&plan, &bold, Some(&confounds)).unwrap();
        assert_eq!(base, key(&plan, &bold, Some(&confounds)).unwrap());
        assert_ne!(base, key(&plan, &link, Some(&confounds)).unwrap(), "a link is its own run");
        assert_ne!(base, key(&plan, &bold, Some(&other)).unwrap(), "other confound values");
        assert_ne!(base, key(&plan, &bold, None).unwrap(), "no confounds");
        other = confounds.clone();
        other.keep = Some(vec![0]);
        assert_ne!(base, key(&plan, &bold, Some(&other)).unwrap(), "other scans kept");
        plan.recipe.encoding.smoothing_fwhm = Some(6.0);
        assert_ne!(base, key(&plan, &bold, Some(&confounds)).unwrap(), "other smoothing");
    }

    /// The one test that turns keeping on (it is process-wide): a series reads back bit
    /// for bit once, and every file that cannot be used is a miss, never an error.
    #[test]
    fn kept_runs_read_back_once_and_damage_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let (store, other) = (dir.path().join("s"), dir.path().join("o"));
        std::fs::create_dir_all(&other).unwrap();
        let yr = Array2::from_shape_fn((7, 5), |(t, v)| (t as f64 * 0.37 - v as f64).sin() / 3.0);
        let valid = vec![true, false, true, true, false];
        let bits = |a: &Array2<f64>| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        put(&store, "run a", &yr, &valid);
        assert!(get(&store, "run a", 7, 5).is_none(), "keeping is off");
        std::fs::create_dir_all(Layout::new(&store).cleaned().join("left")).unwrap();
        std::fs::write(store.join("manifest.json"), "{}").unwrap();
        let keeping = keep_for_ceiling(&store).unwrap();
        let folder = Layout::new(&store).cleaned();
        assert!(!folder.join("left").exists(), "a killed command's files go first");
        put(&store, "run a", &yr, &valid);
        put(&other, "run a", &yr, &valid);
        assert!(get(&other, "run a", 7, 5).is_none(), "another store's runs are not kept");
        let (back, v) = get(&store, "run a", 7, 5).unwrap();
        assert_eq!((bits(&back), v), (bits(&yr), valid.clone()));
        assert!(get(&store, "run a", 7, 5).is_none(), "read once");
        put(&store, "run a", &yr, &valid);
        assert!(get(&store, "run a", 5, 7).is_none(), "another shape");
        assert!(get(&store, "run b", 7, 5).is_none(), "another key");
        put(&store, "run a", &yr, &valid);
        let file = file_of(&store, "run a").unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[100] ^= 4;
        std::fs::write(&file, bytes).unwrap();
        assert!(get(&store, "run a", 7, 5).is_none(), "damaged");
        KEEPER.write().unwrap().as_mut().unwrap().floor = u64::MAX;
        put(&store, "run a", &yr, &valid);
        assert!(!file.exists(), "no room: not kept");
        // A file still being written (the read guard a put holds) holds the folder.
        let writing = KEEPER.read().unwrap();
        let ending = std::thread::spawn(move || drop(keeping));
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(folder.exists(), "the folder waits for the file being written");
        drop(writing);
        ending.join().unwrap();
        assert!(!folder.exists(), "removed when keeping ends");
        // In a folder that is not a store, a `.cleaned` is someone else's: left alone.
        std::fs::create_dir_all(other.join(".cleaned")).unwrap();
        std::fs::write(other.join(".cleaned/notes.txt"), "mine").unwrap();
        assert!(keep_for_ceiling(&other).is_none());
        assert!(other.join(".cleaned/notes.txt").is_file());
    }
}
