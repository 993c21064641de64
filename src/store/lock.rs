//! One writer per store: an advisory lock on `STORE/.lock`, held for a whole command.
//!
//! The lock is `flock(2)` (through [`std::fs::File::try_lock`]): the kernel drops it when
//! the holder's process ends, however it ends, so a killed writer never leaves a store
//! locked. A second writer fails at once, naming the holder (the file holds its process id
//! and command line). Readers (`status` without `--refresh`, `report`) take no lock.
//!
//! Within one process the lock is re-entrant: a command that holds it (say `watch`) can
//! run the update steps that also ask for it. Only the holder deletes the temporaries a
//! killed writer left, so a second writer can no longer delete the first one's files.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{bail, Context, Error, Result};

/// A lock this process holds: the open lock file, how many guards are alive, and whether
/// taking it created the store's directory.
struct Held {
    _file: File,
    guards: usize,
    /// The folders taking the lock created, deepest first.
    created: Vec<PathBuf>,
}

/// Stores this process holds the lock of.
static HELD: Mutex<BTreeMap<PathBuf, Held>> = Mutex::new(BTreeMap::new());

/// The write lock of one store; released when the last guard of this process is dropped.
#[derive(Debug)]
pub struct WriteLock {
    key: PathBuf,
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.join(".lock")
}

/// What the holder wrote in the lock file: process id and command line, cut to one line.
/// A holder that has just taken the lock may not have written it yet: wait a little.
fn holder(dir: &Path) -> String {
    for _ in 0..50 {
        let text = std::fs::read_to_string(lock_path(dir)).unwrap_or_default();
        let line = text.lines().next().unwrap_or("").trim();
        if !line.is_empty() {
            return line.chars().take(200).collect();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    "a process that has not said which".into()
}

/// The store's canonical path (the directory is created), and the folders that creating
/// it made, deepest first.
fn key_of(dir: &Path) -> Result<(PathBuf, Vec<PathBuf>)> {
    let missing: Vec<PathBuf> = dir.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.exists()).map(Path::to_path_buf).collect();
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the store", dir.display()))?;
    let key = dir
        .canonicalize()
        .with_context(|| format!("{}: cannot resolve the store's path", dir.display()))?;
    let created = missing
        .iter()
        .filter_map(|m| m.canonicalize().ok())
        .collect();
    Ok((key, created))
}

impl WriteLock {
    /// Takes the store's write lock (creating the directory), or fails at once when
    /// another process holds it. The first taker in this process deletes the temporary
    /// files (`.tmp-*`) and cleaned runs (`.cleaned/`) a killed writer left.
    pub fn acquire(dir: &Path) -> Result<WriteLock> {
        let (key, created) = key_of(dir)?;
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = held.get_mut(&key) {
            h.guards += 1;
            return Ok(WriteLock { key });
        }
        let path = lock_path(&key);
        let mut file = open_lock_file(&path, true)?;
        // A reader's probe (`status`) holds the lock for an instant: a few short retries
        // keep it from refusing a writer.
        let mut tries = 0;
        let locked = loop {
            match file.try_lock() {
                Err(std::fs::TryLockError::WouldBlock) if tries < 5 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other,
            }
        };
        match locked {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "store {} is being written by {}; one writer at a time: try again when it ends (reading with `cortexflow status` works meanwhile)",
                dir.display(),
                holder(&key)
            ),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        // The file locked must still be the one at the path: a failed command removes the
        // lock file of a store that never got a manifest, and a writer that opened it just
        // before would otherwise hold the lock of a deleted file beside a new one.
        if !same_file(&file, &path) {
            bail!(
                "store {}: its lock file changed while it was being taken (another command just ended); try again",
                dir.display()
            );
        }
        let command: Vec<String> = std::env::args().collect();
        let line = format!("process {} ({})\n", std::process::id(), command.join(" "));
        file.set_len(0)
            .and_then(|()| file.write_all(line.as_bytes()))
            .map_err(|e| Error::io(&path, e))?;
        // Only a store's own temporaries, and only once it is a store: a typo naming a
        // home folder must not delete other programs' `.tmp-*` files.
        if key.join("manifest.json").is_file() {
            remove_temporaries(&key)?;
            crate::engine::cleaned::remove(&super::Layout::new(&key).cleaned())?;
        }
        let h = Held {
            _file: file,
            guards: 1,
            created,
        };
        held.insert(key.clone(), h);
        Ok(WriteLock { key })
    }

    /// Whether this process holds the write lock of `dir`.
    pub fn is_held(dir: &Path) -> bool {
        let Ok(key) = dir.canonicalize() else {
            return false;
        };
        HELD.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&key)
    }
}

/// Who is writing the store at `dir` now, if another process is (a reader's probe: the
/// lock is taken and released at once when it is free).
pub fn writer(dir: &Path) -> Option<String> {
    let file = open_lock_file(&lock_path(dir), false).ok()?;
    match file.try_lock() {
        Ok(()) => None,
        Err(std::fs::TryLockError::WouldBlock) => Some(holder(dir)),
        Err(_) => None,
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        let Some(h) = held.get_mut(&self.key) else {
            return;
        };
        h.guards -= 1;
        if h.guards > 0 {
            return;
        }
        let created = h.created.clone();
        // A command that failed before the store had a manifest leaves no half-made store:
        // the lock file goes (unlinked while still locked, so no one can lock it after it
        // is released), and the folders taking the lock created, when empty.
        let unmade = !self.key.join("manifest.json").exists();
        if unmade {
            let _ = std::fs::remove_file(lock_path(&self.key));
        }
        // Closing the file releases the flock.
        held.remove(&self.key);
        if unmade {
            for dir in created {
                if std::fs::remove_dir(&dir).is_err() {
                    break;
                }
            }
        }
    }
}

/// Whether the open `file` is the file now at `path` (same device and inode).
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Opens the lock file without following a symlink and without blocking on a FIFO
/// (`create` for a writer), refusing anything but a regular file.
fn open_lock_file(path: &Path, create: bool) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .create(create)
        .truncate(false)
        .read(true)
        .write(create)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let regular = file.metadata().map_err(|e| Error::io(path, e))?.is_file();
    if !regular {
        return Err(Error::format(path, "is not a regular file (the store's lock file must be one)"));
    }
    Ok(file)
}

/// Deletes the temporary files a killed writer left (`.tmp-*`) in the store's folders,
/// never following a symlink out of it.
fn remove_temporaries(dir: &Path) -> Result<()> {
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?
    {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            remove_temporaries(&path)?;
        } else if kind.is_file()
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
        {
            std::fs::remove_file(&path)
                .with_context(|| format!("{}: cannot remove", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reentrant_in_one_process_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.json"), "{}").unwrap();
        let a = WriteLock::acquire(dir.path()).unwrap();
        let b = WriteLock::acquire(dir.path()).unwrap();
        assert!(WriteLock::is_held(dir.path()));
        drop(a);
        assert!(WriteLock::is_held(dir.path()));
        drop(b);
        assert!(!WriteLock::is_held(dir.path()));
        // Another open file description is refused while one holds the flock.
        let f = File::open(lock_path(dir.path())).unwrap();
        f.try_lock().unwrap();
        let e = WriteLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is being written by process"), "{e}");
    }

    /// What a killed writer left goes when the next one takes the lock: its temporaries
    /// and cleaned runs, never through a symlink.
    #[test]
    fn the_first_taker_removes_what_a_killed_writer_left() {
        let dir = tempfile::tempdir().unwrap();
        let (store, outside) = (dir.path().join("s"), dir.path().join("outside"));
        let cleaned = super::super::Layout::new(&store).cleaned();
        std::fs::create_dir_all(&cleaned).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(store.join("manifest.json"), "{}").unwrap();
        std::fs::write(cleaned.join("00ff.f64"), "a run").unwrap();
        std::fs::write(store.join(".tmp-1-a.bin"), "partial").unwrap();
        std::fs::write(outside.join("keep.f64"), "not the store's").unwrap();
        drop(WriteLock::acquire(&store).unwrap());
        assert!(!cleaned.exists() && !store.join(".tmp-1-a.bin").exists());
        std::os::unix::fs::symlink(&outside, &cleaned).unwrap();
        drop(WriteLock::acquire(&store).unwrap());
        assert!(cleaned.symlink_metadata().is_err(), "the link goes");
        assert!(outside.join("keep.f64").is_file(), "what it pointed to stays");
    }

    #[test]
    fn a_store_that_never_got_a_manifest_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("new");
        drop(WriteLock::acquire(&store).unwrap());
        assert!(!store.exists(), "the directory the lock created is removed");
        std::fs::create_dir(&store).unwrap();
        drop(WriteLock::acquire(&store).unwrap());
        assert!(store.is_dir() && !lock_path(&store).exists(), "a directory the user made stays");
    }
}
