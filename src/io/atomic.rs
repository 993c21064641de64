//! Atomic file writes: every output is written to a temporary file in the same directory,
//! flushed to disk, then renamed over the destination. A killed run therefore leaves either
//! the old file or the new one, never a torn one.

use std::fs::{self, File};
use std::io::{BufWriter, Write};

use super::direct::DirectWriter;
use super::written::{self, Summing, Written};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The temporary sibling of `dest`: same directory (so the rename is atomic on one file
/// system) and same extension chain (so format writers that look at `.nii.gz` still work).
pub fn temp_sibling(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".tmp-{}-{}", std::process::id(), name))
}

/// Runs `write` against a temporary path, fsyncs it and renames it to `dest`.
/// The temporary file is removed if `write` fails.
pub fn write_atomically<F>(dest: &Path, write: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    unsynced(dest, |tmp| write(tmp).map(|()| None))?.finish()
}

/// Whether an atomic write waits for the disk before its rename: outputs do; scratch that
/// a crash may lose (and whose checksum tells a torn file) need not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Disk,
    PageCache,
}

/// A file written to the temporary sibling of its destination, not yet synced nor renamed:
/// [`Unsynced::finish`] does both, as [`write_atomically`] does at once, so that the wait
/// for the disk can overlap other work. Dropped unfinished, the temporary is removed.
#[must_use = "the file is not in place until finished"]
pub struct Unsynced {
    /// None once in place.
    tmp: Option<PathBuf>,
    dest: PathBuf,
    /// The sum of the bytes written, where the writer took it: entered in
    /// [`written`]'s registry once the file is in place.
    sum: Option<Written>,
}

impl Unsynced {
    /// Waits for the disk, then renames the file over its destination.
    pub fn finish(self) -> Result<()> {
        self.finish_with(Durability::Disk)
    }

    fn finish_with(mut self, durability: Durability) -> Result<()> {
        if let Some(tmp) = &self.tmp {
            if durability == Durability::Disk {
                File::open(tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io(tmp, e))?;
            }
            let written = self.sum.and_then(|_| written::stamp(tmp));
            fs::rename(tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
            if let Some((sum, written)) = self.sum.zip(written) {
                written::record(&self.dest, sum, written);
            }
        }
        // In place: nothing left for drop to remove.
        self.tmp = None;
        Ok(())
    }
}

impl Drop for Unsynced {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// Runs `write` against the temporary sibling of `dest`; the file is in place once
/// [`Unsynced::finish`]ed. The temporary file is removed if `write` fails.
fn unsynced<F>(dest: &Path, write: F) -> Result<Unsynced>
where
    F: FnOnce(&Path) -> Result<Option<Written>>,
{
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    // Made first, so that its drop removes what a failed `write` leaves.
    let tmp = temp_sibling(dest);
    let mut file = Unsynced { tmp: Some(tmp.clone()), dest: dest.to_path_buf(), sum: None };
    file.sum = write(&tmp)?;
    Ok(file)
}

/// Atomically writes bytes produced by `fill` through a buffered writer.
pub fn write_file_atomically<F>(dest: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    write_file_with(dest, Durability::Disk, fill)
}

/// [`write_file_atomically`], synced to the disk or not.
pub fn write_file_with<F>(dest: &Path, durability: Durability, fill: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    unsynced_file(dest, durability, fill)?.finish_with(durability)
}

/// The bytes `fill` produces in an [`Unsynced`] file, to be synced to the disk: a large
/// one around the page cache ([`DirectWriter`]), its sum taken as written ([`written`]).
pub fn write_file_unsynced<F>(dest: &Path, fill: F) -> Result<Unsynced>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    unsynced_file(dest, Durability::Disk, fill)
}

/// Files bound for the disk skip the page cache when large ([`DirectWriter`]) and their
/// sum is taken as written; scratch kept in the page cache (to be read back soon, never
/// sealed) goes through it.
fn unsynced_file<F>(dest: &Path, durability: Durability, fill: F) -> Result<Unsynced>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    unsynced(dest, |tmp| {
        let file = File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        let written = |out: &mut dyn Write| fill(out).and_then(|()| out.flush()).map_err(|e| Error::io(dest, e));
        match durability {
            Durability::Disk => {
                let mut out = Summing::new(DirectWriter::new(file));
                written(&mut out)?;
                Ok(Some(out.sum()))
            }
            Durability::PageCache => written(&mut BufWriter::new(file)).map(|()| None),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_destination_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("table.tsv");
        write_file_atomically(&dest, |w| w.write_all(b"old")).unwrap();
        let failed = write_file_atomically(&dest, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("killed"))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file must be cleaned up");
    }

    /// An unsynced file is not at its destination until finished, and one dropped
    /// unfinished leaves only the old file.
    #[test]
    fn unsynced_files_land_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sums.bin");
        write_file_atomically(&dest, |w| w.write_all(b"old")).unwrap();
        let pending = write_file_unsynced(&dest, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        pending.finish().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        drop(write_file_unsynced(&dest, |w| w.write_all(b"lost")).unwrap());
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "the temporary of a dropped file is removed");
    }
}
