//! The cost of an update: ingesting one more BOLD run into a store that holds R runs
//! (R = 1..8), against ingesting the same R + 1 runs into an empty store at once (what a
//! tool without incremental state does on every new run). Both are the `cortexflow`
//! binary on the same simulated data (4 subjects × 3 runs × 150 scans, 8,268 voxels,
//! 16 atoms), each in its own process, timed by wall clock with its peak RSS (wait4).
//! The stories and the basis are in every store beforehand, so both sides do only the
//! encoding work: reduce runs, refit subjects, group maps, network assignment.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cortexflow");

fn cortexflow(args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run cortexflow");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Wall seconds and peak RSS (MiB) of one `cortexflow` process.
fn timed(args: &[&str]) -> (f64, f64) {
    common::timed_process(Command::new(BIN).args(args))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = d.join("sim");
    let s = |p: &Path| p.display().to_string();
    cortexflow(&[
        "simulate",
        "--out",
        &s(&sim),
        "--subjects",
        "4",
        "--runs",
        "3",
        "--scans",
        "150",
        "--seed",
        "1",
        "--jitter",
        "0",
    ]);
    let recipe = d.join("recipe.toml");
    std::fs::write(
        &recipe,
        "description = \"update bench\"\n[basis]\natoms = 16\n",
    )
    .unwrap();
    // The template: stories and basis in, no runs.
    let template = d.join("template");
    cortexflow(&[
        "init",
        "--recipe",
        &s(&recipe),
        "--mask",
        &s(&sim.join("mask.nii.gz")),
        &s(&template),
    ]);
    let tables: Vec<String> = (1..=3)
        .map(|i| s(&sim.join(format!("truth/responses/task-lpp_run-{i}.parquet"))))
        .collect();
    cortexflow(&[
        "ingest",
        &s(&template),
        "--responses",
        &tables.join(","),
        "--neurons",
        &s(&sim.join("truth/neurons.parquet")),
    ]);
    // Runs in arrival order: subjects round-robin, so every store of 2+ runs has a group.
    let runs: Vec<PathBuf> = (1..=3)
        .flat_map(|r| (1..=4).map(move |sub| (sub, r)))
        .map(|(sub, r)| {
            sim.join(format!(
                "sub-0{sub}/func/sub-0{sub}_task-lpp_run-{r}_bold.nii.gz"
            ))
        })
        .collect();
    let list = |n: usize| runs[..n].iter().map(|p| s(p)).collect::<Vec<_>>().join(",");

    println!("update cost: one more run into a store of R runs, against R + 1 runs at once");
    println!(
        "{:>3} {:>14} {:>10} {:>10} {:>10} {:>8}",
        "R", "incremental s", "peak MiB", "batch s", "peak MiB", "ratio"
    );
    // R runs in, then run R + 1 (index R) ingested alone.
    for (r, next) in runs.iter().enumerate().take(9).skip(1) {
        let inc = d.join(format!("inc{r}"));
        copy_dir(&template, &inc);
        cortexflow(&["ingest", &s(&inc), "--bold", &list(r)]);
        let (ti, mi) = timed(&["ingest", &s(&inc), "--bold", &s(next)]);
        let batch = d.join(format!("batch{r}"));
        copy_dir(&template, &batch);
        let (tb, mb) = timed(&["ingest", &s(&batch), "--bold", &list(r + 1)]);
        println!(
            "{r:>3} {ti:>14.3} {mi:>10.1} {tb:>10.3} {mb:>10.1} {:>7.2}×",
            tb / ti
        );
    }
}
