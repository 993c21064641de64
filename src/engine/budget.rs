//! The memory budget of an update: how many subjects are fitted at once (a wave), from
//! what one subject in flight and the group's running sums cost, so that a corpus of any
//! size runs in the memory given — or is refused before any work, saying what it needs.
//!
//! The costs are counted from the arrays that exist at once (bytes, f64 = 8):
//! - group sums, kept for the whole update: n (4) + Σq (16) + Σq² (16) per atom × voxel,
//!   over all subjects and half A: 72·k·V; the tests made from them at the end (n and four
//!   f64 maps for the whole group, p and z for each half): 68·k·V. Each block's sums are
//!   dropped once tested (their encoded copy, for the store, is ~55% of them), and the
//!   joined maps replace the blocks as they are copied, so 140·k·V bounds the group phase;
//! - a run being reduced, one per worker: its masked scans, read straight into f64,
//!   8·T·V (censored scans dropped and the residual made in place), and its statistics,
//!   8·k·V, held twice (the run's and its blocks');
//! - a subject in flight: its runs' statistics in the fitting operator (8·k·V a run) and
//!   its fit (β, t and the group's β, 8·3k·V, plus per-voxel scores) four times: in the
//!   operator's output, gathered at worker 0, handed to the writer, joined over the mask
//!   for writing (the join moves the blocks out, so this is an upper bound).
//!
//! - the writer: the stored subjects' β maps it reads first, one per rayon thread, each
//!   read a grid volume at a time into the mask's voxels in f64, 4·G + 8·k·V; later, maps
//!   written one grid volume at a time (4·G each).
//!
//! With permutations each subject's β also stays until the end (8·k·V a subject).

use std::collections::BTreeMap;

use crate::error::{bail, Result};
use crate::io::nifti::Mask;
use crate::store::Recipe;

/// What an update's parts cost in memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Held for the whole update whatever the wave.
    pub fixed: u64,
    /// Each subject fitted at once.
    pub per_subject: u64,
}

/// The shape of an update: atoms k, voxels V, the longest run's scans T, the most runs a
/// subject has, worker threads in this process, and whether subjects' β are kept (permutations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub atoms: u64,
    pub voxels: u64,
    /// Voxels of the whole grid (maps are written on it).
    pub grid: u64,
    pub scans: u64,
    pub runs_per_subject: u64,
    pub workers: u64,
    pub subjects: u64,
    pub keep_betas: bool,
}

impl Shape {
    /// An update under `recipe` on `voxels` voxels whose longest run has `scans` scans,
    /// fitting subjects of up to `runs_per_subject` runs, `subjects` in the group.
    /// (No mask yet: nothing to fit.)
    pub fn new(recipe: &Recipe, mask: Option<&Mask>, scans: usize, runs_per_subject: u64, subjects: usize, workers: usize) -> Shape {
        Shape {
            atoms: recipe.basis.atoms as u64,
            voxels: mask.map_or(0, |m| m.len()) as u64,
            grid: mask.map_or(0, |m| m.grid.shape.iter().product::<usize>()) as u64,
            scans: scans as u64,
            runs_per_subject,
            workers: workers as u64,
            subjects: subjects as u64,
            keep_betas: recipe.group.permutations().is_some(),
        }
    }
}

/// How many runs each subject has, from one subject label per run.
pub fn runs_by_subject<'a>(labels: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, u64> {
    let mut runs = BTreeMap::new();
    for s in labels {
        *runs.entry(s).or_default() += 1;
    }
    runs
}

impl Footprint {
    pub fn of(s: Shape) -> Footprint {
        let kv = s.atoms * s.voxels;
        let reading = s.workers * (8 * s.scans * s.voxels + 16 * kv);
        let kept = if s.keep_betas { 8 * kv * s.subjects } else { 0 };
        let threads = rayon::current_num_threads() as u64;
        let writer = threads * (4 * s.grid + 8 * kv);
        Footprint {
            fixed: 72 * kv + 68 * kv + reading + writer + kept,
            per_subject: s.runs_per_subject * 8 * kv + 4 * (24 * kv + 32 * s.voxels),
        }
    }

    /// The subjects to fit at once under `limit`: as many as fit, at most `most` (more
    /// brings no speed once every worker has a run to reduce); an error when not even one
    /// fits, naming what the update needs.
    pub fn subjects_per_wave(&self, limit: u64, most: usize, shape: Shape) -> Result<usize> {
        let room = limit.saturating_sub(self.fixed);
        let fit = (room / self.per_subject.max(1)) as usize;
        if fit == 0 {
            bail!(
                "memory limit {}: fitting one subject ({} runs of up to {} scans, {} voxels, {} atoms) needs about {} besides {} for the group's sums and the runs being read ({} workers); give --memory-limit {} or more, fewer workers (-w), or fewer atoms",
                human(limit),
                shape.runs_per_subject,
                shape.scans,
                shape.voxels,
                shape.atoms,
                human(self.per_subject),
                human(self.fixed),
                shape.workers,
                human(self.fixed + self.per_subject),
            );
        }
        Ok(fit.min(most.max(1)))
    }
}

/// Bytes in words (GB = 10⁹ bytes, as `--memory-limit` reads them).
pub fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.2} GB", b as f64 / 1e9),
        b => format!("{:.0} MB", b as f64 / 1e6),
    }
}

/// Reads a size: bytes, or a number with K, M, G or T (powers of 1000; KiB, MiB, GiB,
/// TiB: powers of 1024), e.g. `1.5G`, `800MB`, `2GiB`.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "K" | "KB" => 1e3,
        "M" | "MB" => 1e6,
        "G" | "GB" => 1e9,
        "T" | "TB" => 1e12,
        "KIB" => 1024.0,
        "MIB" => 1024f64.powi(2),
        "GIB" => 1024f64.powi(3),
        "TIB" => 1024f64.powi(4),
        _ => bail!("memory size '{text}': the unit must be one of B, K, M, G, T (or KiB, MiB, GiB, TiB)"),
    };
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .ok_or_else(|| crate::error::err!("memory size '{text}': expected a positive number with a unit, e.g. 4G or 800M"))?;
    Ok((value * scale).min(u64::MAX as f64) as u64)
}

/// The default budget: half the machine's memory (MemTotal in /proc/meminfo), or 4 GB
/// where that cannot be read.
pub fn default_limit() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024 / 2)
        })
        .unwrap_or(4_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_their_units() {
        assert_eq!(parse_size("1500000").unwrap(), 1_500_000);
        assert_eq!(parse_size("1.5G").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("800 MB").unwrap(), 800_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 * 1024 * 1024 * 1024);
        for bad in ["", "G", "-1G", "1.5X", "nanG", "0"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn waves_fill_the_budget_and_refuse_what_cannot_fit() {
        let shape = Shape { atoms: 64, voxels: 65_984, grid: 91 * 109 * 91, scans: 150, runs_per_subject: 2, workers: 2, subjects: 32, keep_betas: false };
        let f = Footprint::of(shape);
        assert_eq!(f.subjects_per_wave(f.fixed + 3 * f.per_subject, 8, shape).unwrap(), 3);
        assert_eq!(f.subjects_per_wave(u64::MAX, 2, shape).unwrap(), 2);
        let e = f.subjects_per_wave(f.fixed, 2, shape).unwrap_err().to_string();
        assert!(e.contains("memory limit") && e.contains("--memory-limit"), "{e}");
    }
}
