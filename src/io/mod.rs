//! Readers and writers: leaves of the dependency graph, no numerics beyond decoding.

pub mod activation_cache;
pub mod affine;
pub mod atlas;
pub mod bids;
pub mod nifti;
pub mod parquet;
pub mod schema;
pub mod stimulus;
pub mod atomic;
pub mod embedded;
pub mod gzip;
pub mod inspect;
pub mod keyed;
pub mod name;
pub mod pages;
pub mod confounds;
pub mod direct;
pub mod written;
pub mod regions;
pub mod table;

use std::path::Path;

use crate::error::{Error, Result};

/// A run's number of scans and TR (s): from a NIfTI header (the TR checked as
/// [`nifti::ImageHeader::bold_tr`] does), or from a region table and its sidecar.
pub fn run_clock(path: &Path) -> Result<(usize, f64)> {
    if regions::is_region_run(path) {
        let run = regions::read_run(path)?;
        return Ok((run.table.rows, run.tr));
    }
    let header = nifti::read_header(path)?;
    Ok((header.n_vols, header.bold_tr()?))
}

/// The length of `path` when it is a regular file that can be read; otherwise an error in
/// words: no such file, a directory, or not a regular file (a device such as /dev/zero or
/// a FIFO, which would be read forever or block). Checked before any reader opens it.
pub fn regular_file(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::format(path, "is a directory"));
    }
    if !meta.is_file() {
        return Err(Error::format(
            path,
            "is not a regular file (a device, FIFO or socket cannot be read as data)",
        ));
    }
    if meta.len() == 0 {
        return Err(Error::format(path, "file is empty"));
    }
    Ok(meta.len())
}

/// Memory (bytes) a reader may allocate at once: what the system says is available
/// (MemAvailable in /proc/meminfo), less where the process's cgroup (v2) allows less, or
/// 8 GiB where neither can be read. Readers check the size a header declares against it
/// before allocating, so a forged header is an error, not an allocation abort or a
/// memory kill.
pub fn affordable_memory() -> u64 {
    const FALLBACK: u64 = 8 << 30;
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let available = read("/proc/meminfo").and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    // "max" (no limit) does not parse, and leaves the system's figure.
    let number = |p: &str| read(p).and_then(|t| t.trim().parse::<u64>().ok());
    let cgroup = number("/sys/fs/cgroup/memory.max")
        .map(|max| max.saturating_sub(number("/sys/fs/cgroup/memory.current").unwrap_or(0)));
    match (available, cgroup) {
        (Some(a), Some(c)) => a.min(c),
        (a, c) => a.or(c).unwrap_or(FALLBACK),
    }
}

/// Bytes as a person reads them (e.g. "2.3 GB").
pub fn human_bytes(bytes: u128) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < units.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_file_says_what_the_path_is_instead() {
        let dir = tempfile::tempdir().unwrap();
        let e = regular_file(dir.path()).unwrap_err().to_string();
        assert!(e.ends_with(": is a directory"), "{e}");
        let e = regular_file(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.starts_with("/dev/zero: is not a regular file"), "{e}");
        let e = regular_file(&dir.path().join("none")).unwrap_err().to_string();
        assert!(e.ends_with("none: no such file"), "{e}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(regular_file(&empty).unwrap_err().to_string().ends_with("file is empty"));
        std::fs::write(&empty, b"x").unwrap();
        assert_eq!(regular_file(&empty).unwrap(), 1);
    }

    #[test]
    fn sizes_read_as_a_person_reads_them() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(2_300_000_000), "2.3 GB");
        assert!(affordable_memory() > 0);
    }
}
