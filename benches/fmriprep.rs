//! The cost of real-data preprocessing in `run`: the same fMRIPrep-style derivatives
//! (`simulate --layout fmriprep`: 6 subjects × 2 runs of 285/301 scans, 8,268 voxels on
//! the 4 mm grid, 16 atoms) analysed plainly, with 6 mm smoothing, with confounds and
//! scrubbing (24 motion parameters, aCompCor, fMRIPrep's cosines, censoring), and with
//! both. Each is the `cortexflow` binary in its own process, timed by wall clock with its
//! peak RSS (wait4); medians of 3. The budget (issue 15): ≤ 1.25× the plain time, and a
//! peak no more than one volume (the 45 × 54 × 45 grid in float64, 0.8 MiB) above it, plus
//! the allocator's noise. What memory grows with: the masked voxels × scans of one run and
//! the fits, not the number of confound columns or censored scans.

#[allow(dead_code)]
mod common;

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cortexflow");

fn median(mut xs: Vec<(f64, f64)>) -> (f64, f64) {
    xs.sort_by(|a, b| a.0.total_cmp(&b.0));
    xs[xs.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = d.join("sim");
    let s = |p: &Path| p.display().to_string();
    let (t, _) = common::timed_process(Command::new(BIN).args([
        "simulate", "--out", &s(&sim), "--layout", "fmriprep", "--subjects", "6", "--runs", "2", "--seed", "1",
    ]));
    println!("simulated 6 subjects × 2 runs of derivatives in {t:.1} s");
    let conditions = [
        ("plain", "[encoding]\nhigh_pass = 0.01\n"),
        ("smoothing 6 mm", "[encoding]\nsmoothing_fwhm = 6.0\n"),
        ("confounds + scrubbing", "[encoding]\nhigh_pass = 0.0\n[confounds]\nstrategy = [\"high_pass\", \"motion\", \"compcor\", \"scrub\"]\n"),
        ("both", "[encoding]\nhigh_pass = 0.0\nsmoothing_fwhm = 6.0\n[confounds]\nstrategy = [\"high_pass\", \"motion\", \"compcor\", \"scrub\"]\n"),
    ];
    let mut base = None;
    println!("| condition | wall (median of 3) | × plain | peak RSS | Δ peak |");
    println!("|---|---|---|---|---|");
    for (name, section) in conditions {
        let recipe = d.join("recipe.toml");
        std::fs::write(&recipe, format!("description = \"{name}\"\n[basis]\natoms = 16\n{section}")).unwrap();
        let runs: Vec<(f64, f64)> = (0..3)
            .map(|i| {
                let out = d.join(format!("store{i}"));
                let r = common::timed_process(Command::new(BIN).args(["run", &s(&recipe), "--data", &s(&sim), "--out", &s(&out)]));
                std::fs::remove_dir_all(&out).unwrap();
                r
            })
            .collect();
        let (secs, peak) = median(runs);
        let (b_secs, b_peak) = *base.get_or_insert((secs, peak));
        println!("| {name} | {secs:.2} s | {:.2}× | {peak:.0} MiB | {:+.1} MiB |", secs / b_secs, peak - b_peak);
    }
}
