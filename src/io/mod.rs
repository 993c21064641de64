//! Readers and writers: leaves of the dependency graph, no numerics beyond decoding.

pub mod affine;
pub mod atlas;
pub mod bids;
pub mod nifti;
pub mod parquet;
pub mod schema;
pub mod stimulus;
pub mod atomic;
pub mod embedded;
pub mod inspect;

use std::path::Path;

use crate::error::{Error, Result};

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
/// (MemAvailable in /proc/meminfo), or 8 GiB where that cannot be read. Readers check the
/// size a header declares against it before allocating, so a forged header is an error,
/// not an allocation abort or a memory kill.
pub fn affordable_memory() -> u64 {
    const FALLBACK: u64 = 8 << 30;
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(FALLBACK, |kb| kb * 1024)
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
