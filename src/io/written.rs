//! What this process wrote: the size and xxHash64 of each large file, taken from its bytes
//! as they were written, so that a store seals its outputs without reading them back.
//!
//! Reading a 2 mm run's outputs back to checksum them (~500 MB) cost as much as a tenth
//! of `run`'s CPU time. A file is entered when its atomic write puts it in place, with
//! the stamp it has then (inode, length, modification time); [`take`] gives its sum only
//! while the file at that path still has that stamp, so a file replaced or rewritten
//! since by anything else is read back, as every file was before.

use std::collections::HashMap;
use std::hash::Hasher;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use twox_hash::XxHash64;

/// Files below this size are read back (cheap), so the registry holds only a few large
/// ones.
pub const MIN_BYTES: u64 = 1 << 20;
/// Entries kept at most (files written outside a store are never taken).
const MAX_ENTRIES: usize = 1 << 14;

/// The size and xxHash64 (seed 0) of a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub xxh64: u64,
}

/// What identifies one version of a file: a rewrite in place changes its length or
/// modification time, a replacement its inode, and anything that sets the modification
/// time back (`touch -r`, `rsync -t`) the change time. (A rewrite of the same length
/// within one tick of the file system's clock, between a write and its seal, would go
/// unseen: the manifest then holds the sum of what cortexflow wrote, and `status` calls
/// the file altered; never the reverse.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    /// The same file with the same contents, whatever its change time (a rename sets it).
    fn same_contents(&self, other: &Stamp) -> bool {
        (self.dev, self.ino, self.len, self.mtime_ns) == (other.dev, other.ino, other.len, other.mtime_ns)
    }
}

/// The stamp of the regular file at `path` (not following a link).
pub fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok().filter(|m| m.is_file())?;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    Some(Stamp { dev: m.dev(), ino: m.ino(), len: m.len(), mtime_ns: ns(m.mtime(), m.mtime_nsec()), ctime_ns: ns(m.ctime(), m.ctime_nsec()) })
}

static REGISTRY: Mutex<Option<HashMap<PathBuf, (Stamp, Written)>>> = Mutex::new(None);

/// Enters the file now at `path` as holding `sum` (what was written to it), if large and
/// still the file stamped `written` before its rename (so another writer's file renamed
/// over it meanwhile is not taken for ours); keyed by its canonical path, so any
/// spelling of the path finds it.
pub fn record(path: &Path, sum: Written, written: Stamp) {
    if sum.bytes < MIN_BYTES || written.len != sum.bytes {
        return;
    }
    let Some((key, stamp)) = std::fs::canonicalize(path).ok().zip(stamp(path).filter(|s| s.same_contents(&written))) else {
        return;
    };
    let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let map = registry.get_or_insert_with(HashMap::new);
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, (stamp, sum));
}

/// The sum of what this process wrote at `path`, if the file there is still that one;
/// the entry is removed either way.
pub fn take(path: &Path) -> Option<Written> {
    let key = std::fs::canonicalize(path).ok()?;
    let (was, sum) = REGISTRY.lock().unwrap_or_else(|p| p.into_inner()).as_mut()?.remove(&key)?;
    (stamp(path) == Some(was)).then_some(sum)
}

/// A writer that hashes and counts the bytes it passes on.
pub struct Summing<W: Write> {
    inner: W,
    hasher: XxHash64,
    bytes: u64,
}

impl<W: Write> Summing<W> {
    pub fn new(inner: W) -> Summing<W> {
        Summing { inner, hasher: XxHash64::with_seed(0), bytes: 0 }
    }

    /// The sum of the bytes passed on so far.
    pub fn sum(&self) -> Written {
        Written { bytes: self.bytes, xxh64: self.hasher.finish() }
    }
}

impl<W: Write> Write for Summing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.write(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sum of a large file is given back while the file is the one written, and not
    /// after it was rewritten in place (same length) or replaced.
    #[test]
    fn sums_are_given_only_for_the_file_written() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![3u8; MIN_BYTES as usize + 5];
        let sum_of = |bytes: &[u8]| {
            let mut s = Summing::new(Vec::new());
            s.write_all(bytes).unwrap();
            assert_eq!(s.inner, bytes);
            s.sum()
        };
        let mut h = XxHash64::with_seed(0);
        h.write(&data);
        assert_eq!(sum_of(&data), Written { bytes: data.len() as u64, xxh64: h.finish() });

        let path = dir.path().join("a");
        std::fs::write(&path, &data).unwrap();
        record(&path, sum_of(&data), stamp(&path).unwrap());
        assert_eq!(take(&path), Some(sum_of(&data)));
        assert_eq!(take(&path), None, "taken once");

        record(&path, sum_of(&data), stamp(&path).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut other = data.clone();
        other[7] = 4;
        std::fs::write(&path, &other).unwrap();
        assert_eq!(take(&path), None, "rewritten in place");

        record(&path, sum_of(&other), stamp(&path).unwrap());
        let moved = dir.path().join("b");
        std::fs::write(&moved, &other).unwrap();
        std::fs::rename(&moved, &path).unwrap();
        assert_eq!(take(&path), None, "replaced by another file");

        // A file renamed over ours between its write and its record is not taken for it.
        let before = stamp(&path).unwrap();
        std::fs::write(&moved, &other).unwrap();
        std::fs::rename(&moved, &path).unwrap();
        record(&path, sum_of(&other), before);
        assert_eq!(take(&path), None, "another file renamed over it before the record");

        // Setting the modification time back after an edit is seen by the change time.
        record(&path, sum_of(&other), stamp(&path).unwrap());
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        (&f).write_all(&data).unwrap();
        f.set_modified(mtime).unwrap();
        assert_eq!(take(&path), None, "edited, its modification time set back");

        let small = dir.path().join("small");
        std::fs::write(&small, b"xy").unwrap();
        record(&small, sum_of(b"xy"), stamp(&small).unwrap());
        assert_eq!(take(&small), None, "small files are read back");
    }
}
