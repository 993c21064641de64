//! Checksums of the files a store writes, kept in its manifest: size and xxHash64 of the
//! bytes, keyed by the path relative to the store (`/`-separated).
//!
//! xxHash64 is not cryptographic: it guards against accidents (a truncated copy, a flipped
//! byte, a file from another store), not against an adversary who edits the manifest too.
//! It reads at memory speed, so `status` can verify a whole store.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hasher;
use std::io::Read;
#[cfg(test)]
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use twox_hash::XxHash64;

use crate::error::{Error, Result};

/// Size and checksum of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    pub bytes: u64,
    /// xxHash64 (seed 0) of the bytes, 16 hex digits.
    pub xxh64: String,
}

/// Every sealed file of a store: relative path → sum.
pub type Sums = BTreeMap<String, FileSum>;

/// How a file differs from its sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    Missing,
    /// Shorter than it was written (a cut copy, a full disk).
    Truncated { bytes: u64, expected: u64 },
    /// Longer than it was written.
    Grown { bytes: u64, expected: u64 },
    /// Same size, other bytes.
    Altered,
    /// Not a regular file any more (a directory or a link in its place).
    NotAFile,
    /// The store needs it, but the manifest holds no checksum for it.
    Unsealed,
    /// In a part of the store, but not written by it.
    Foreign,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Missing => write!(f, "missing"),
            Damage::Truncated { bytes, expected } => {
                write!(f, "truncated ({bytes} of {expected} bytes)")
            }
            Damage::Grown { bytes, expected } => {
                write!(f, "grown ({bytes} bytes, written as {expected})")
            }
            Damage::Altered => write!(f, "altered (its checksum differs from the one written)"),
            Damage::NotAFile => write!(f, "not a regular file"),
            Damage::Unsealed => write!(f, "has no checksum in the manifest (a damaged or edited manifest)"),
            Damage::Foreign => write!(f, "was not written by the store (move it out)"),
        }
    }
}

/// The sum of the file at `path`, read in chunks (no whole-file buffer).
pub fn sum_file(path: &Path) -> Result<FileSum> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = XxHash64::with_seed(0);
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileSum {
        bytes,
        xxh64: format!("{:016x}", hasher.finish()),
    })
}

/// How the file at `path` differs from `sum`, if it does.
pub fn damage(path: &Path, sum: &FileSum) -> Option<Damage> {
    size_damage(path, sum).or_else(|| match sum_file(path) {
        Ok(s) if s == *sum => None,
        Ok(_) => Some(Damage::Altered),
        Err(_) => Some(Damage::Missing),
    })
}

/// How the file at `path` differs from `sum` in what its metadata shows: missing, not a
/// file, or of another size.
fn size_damage(path: &Path, sum: &FileSum) -> Option<Damage> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return Some(Damage::Missing),
    };
    if !meta.is_file() {
        return Some(Damage::NotAFile);
    }
    let (bytes, expected) = (meta.len(), sum.bytes);
    if bytes < expected {
        return Some(Damage::Truncated { bytes, expected });
    }
    if bytes > expected {
        return Some(Damage::Grown { bytes, expected });
    }
    None
}

/// A file of the store read once, its checksum taken on the way, where
/// [`verify_file`] then a read would read it twice. Nothing read may be trusted before
/// [`CheckedRead::finish`] says the bytes were the ones written.
pub struct CheckedRead {
    file: std::fs::File,
    hasher: XxHash64,
    bytes: u64,
    sum: FileSum,
    path: PathBuf,
}

impl CheckedRead {
    /// Opens `path` for reading against its recorded sum: the errors of [`verify_file`]
    /// for a file the manifest does not know, or of the wrong kind or size.
    pub fn open(sums: &Sums, dir: &Path, path: &Path) -> Result<CheckedRead> {
        let Some(sum) = sums.get(&key(dir, path)) else {
            return Err(Error::format(path, "not a file this store wrote (no checksum in its manifest)"));
        };
        if let Some(d) = size_damage(path, sum) {
            return Err(damaged(path, d));
        }
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(CheckedRead { file, hasher: XxHash64::with_seed(0), bytes: 0, sum: sum.clone(), path: path.to_path_buf() })
    }

    /// Reads what the caller left unread, then compares the checksum: the error of
    /// [`verify_file`] for an altered file. Call it also when the caller's reading
    /// failed: damage is the better explanation of a failure.
    pub fn finish(mut self) -> Result<()> {
        std::io::copy(&mut self, &mut std::io::sink()).map_err(|e| Error::io(&self.path, e))?;
        let read = FileSum { bytes: self.bytes, xxh64: format!("{:016x}", self.hasher.finish()) };
        match read == self.sum {
            true => Ok(()),
            false => Err(damaged(&self.path, Damage::Altered)),
        }
    }
}

impl Read for CheckedRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.write(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The error for a damaged file.
fn damaged(path: &Path, d: Damage) -> Error {
    Error::format(path, format!("{d}; `cortexflow status STORE` lists the damage and what repairs it"))
}

/// The files under `path` (itself, if a file), skipping temporaries and the lock.
fn files_under(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if meta.is_file() {
        out.push(path.to_path_buf());
    } else if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
            let p = entry.map_err(|e| Error::io(path, e))?.path();
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !hidden {
                files_under(&p, out)?;
            }
        }
    }
    Ok(())
}

/// The files under `path` (itself, if a file; temporaries and hidden files left out).
pub fn files_in(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let _ = files_under(path, &mut out);
    out
}

/// The key of `path` in the sums of the store at `dir`.
pub fn key(dir: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(dir).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether `key` is `prefix` or below it.
pub fn is_under(key: &str, prefix: &str) -> bool {
    key == prefix || key.strip_prefix(prefix).is_some_and(|r| r.starts_with('/'))
}

/// Records the sums of what is now at `path` (a file or a folder of the store at `dir`),
/// replacing those recorded below it: a removed file or folder loses its entries. A large
/// file this process wrote and nothing has touched since is not read again: its sum was
/// taken as it was written ([`crate::io::written`]).
pub fn seal(sums: &mut Sums, dir: &Path, path: &Path) -> Result<()> {
    let prefix = key(dir, path);
    sums.retain(|k, _| !is_under(k, &prefix));
    let mut files = Vec::new();
    files_under(path, &mut files)?;
    for f in files {
        let sum = match crate::io::written::take(&f) {
            Some(w) => FileSum { bytes: w.bytes, xxh64: format!("{:016x}", w.xxh64) },
            None => sum_file(&f)?,
        };
        sums.insert(key(dir, &f), sum);
    }
    Ok(())
}

/// Files and bytes of the sealed files under each top-level part of the store (`runs`,
/// `subjects`, `group`, …; a file at the top is a part of its own).
pub fn sizes(sums: &Sums) -> BTreeMap<&str, (usize, u64)> {
    let mut out: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for (key, sum) in sums {
        let part = key.split('/').next().unwrap_or(key);
        let e = out.entry(part).or_default();
        e.0 += 1;
        e.1 += sum.bytes;
    }
    out
}

/// Checks one file against its recorded sum before it is read: an error naming it when
/// it is damaged or was never written by the store.
pub fn verify_file(sums: &Sums, dir: &Path, path: &Path) -> Result<()> {
    let k = key(dir, path);
    let Some(sum) = sums.get(&k) else {
        return Err(Error::format(
            path,
            "not a file this store wrote (no checksum in its manifest)",
        ));
    };
    damage(path, sum).map_or(Ok(()), |d| Err(damaged(path, d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_matches_the_reference_vectors() {
        // From the xxHash specification's test suite (seed 0).
        assert_eq!(XxHash64::oneshot(0, b""), 0xef46db3751d8e999);
        assert_eq!(XxHash64::oneshot(0, b"a"), 0xd24ec4f1a98c6e5b);
    }

    /// A checked read passes the bytes through and accepts them only when they are the
    /// ones written: whole or partly read, altered, cut, unknown to the manifest.
    #[test]
    fn a_checked_read_sees_what_verify_sees() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = d.join("a.bin");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&a, &bytes).unwrap();
        let mut sums = Sums::new();
        seal(&mut sums, d, &a).unwrap();
        let mut read = CheckedRead::open(&sums, d, &a).unwrap();
        let mut back = Vec::new();
        read.read_to_end(&mut back).unwrap();
        assert_eq!(back, bytes);
        read.finish().unwrap();
        let mut part = CheckedRead::open(&sums, d, &a).unwrap();
        part.read_exact(&mut [0u8; 1000]).unwrap();
        part.finish().unwrap();
        let mut altered = bytes.clone();
        altered[2_500_000] ^= 1;
        std::fs::write(&a, &altered).unwrap();
        let e = CheckedRead::open(&sums, d, &a).unwrap().finish().unwrap_err().to_string();
        assert!(e.contains("altered") && e.contains("a.bin"), "{e}");
        std::fs::write(&a, &bytes[..10]).unwrap();
        let e = CheckedRead::open(&sums, d, &a).err().unwrap().to_string();
        assert!(e.contains("truncated"), "{e}");
        let e = CheckedRead::open(&sums, d, &d.join("b.bin")).err().unwrap().to_string();
        assert!(e.contains("no checksum in its manifest"), "{e}");
    }

    #[test]
    fn seal_records_and_verify_finds_each_damage() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("g")).unwrap();
        std::fs::write(d.join("g/a.bin"), b"hello world").unwrap();
        std::fs::write(d.join("g/.tmp-1-a.bin"), b"partial").unwrap();
        let mut sums = Sums::new();
        seal(&mut sums, d, &d.join("g")).unwrap();
        assert_eq!(sums.keys().collect::<Vec<_>>(), ["g/a.bin"]);
        let a = d.join("g/a.bin");
        verify_file(&sums, d, &a).unwrap();
        std::fs::write(&a, b"hello World").unwrap();
        assert_eq!(damage(&a, &sums["g/a.bin"]), Some(Damage::Altered));
        std::fs::write(&a, b"hello").unwrap();
        assert!(matches!(damage(&a, &sums["g/a.bin"]), Some(Damage::Truncated { bytes: 5, expected: 11 })));
        std::fs::remove_file(&a).unwrap();
        assert_eq!(damage(&a, &sums["g/a.bin"]), Some(Damage::Missing));
        assert!(verify_file(&sums, d, &a).unwrap_err().to_string().contains("missing"));
        seal(&mut sums, d, &d.join("g")).unwrap();
        assert!(sums.is_empty(), "a removed file loses its sum");
    }

    /// A large file written atomically is sealed from the sum taken as it was written,
    /// which equals the sum read back; one rewritten in place since is read back, so a
    /// stale sum is never recorded.
    #[test]
    fn large_files_are_sealed_from_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let data: Vec<u8> = (0..3 << 20).map(|k: u32| (k % 253) as u8).collect();
        let (a, b) = (d.join("g/a.bin"), d.join("g/b.bin"));
        for path in [&a, &b] {
            crate::io::atomic::write_file_atomically(path, |w| w.write_all(&data)).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut altered = data.clone();
        altered[12345] ^= 1;
        std::fs::OpenOptions::new().write(true).open(&b).unwrap().write_all(&altered).unwrap();
        let mut sums = Sums::new();
        seal(&mut sums, d, &d.join("g")).unwrap();
        assert_eq!(sums["g/a.bin"], sum_file(&a).unwrap());
        assert_eq!(sums["g/b.bin"], sum_file(&b).unwrap(), "b read back");
        assert_ne!(sums["g/b.bin"], sums["g/a.bin"]);
    }
}
