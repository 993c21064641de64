//! Byte-identical outputs: the sha256 of every output file of `demo --seed 0` and of
//! `run dataflows/paper.toml` on a fixed simulation, recorded before the application moved
//! into the library (tests/data/golden/output-sha256.txt, made by scripts/output-hashes),
//! must not change when behaviour is meant to stay.
//!
//! The model's and faer's kernels dispatch on the CPU's SIMD extensions at run time, so the
//! bytes are promised on a CPU with the recorded extensions; elsewhere the check says so
//! and is skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::ok;

const RECORD: &str = "tests/data/golden/output-sha256.txt";
/// Files that hold absolute paths or times (planted.json names the model's checkpoint).
const UNSTABLE: [&str; 6] = [".lock", "manifest.json", "recipe.toml", "report.html", "group.json", "planted.json"];

/// The SIMD extensions present, as scripts/output-hashes lists them.
fn simd() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    ["sse4_2", "avx", "avx2", "fma", "avx512f"]
        .into_iter()
        .filter(|f| flags.contains(f))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The recorded hashes under `prefix/`, or None on a CPU of another SIMD level.
fn recorded(prefix: &str) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(RECORD))
        .expect("the record of output hashes");
    let first = text.lines().next().unwrap_or_default();
    let level = first.strip_prefix("# simd ").expect("a '# simd' first line");
    if level != simd() {
        eprintln!("golden outputs skipped: recorded on a CPU with [{level}], this one has [{}]", simd());
        return None;
    }
    Some(
        text.lines()
            .skip(1)
            .filter_map(|l| l.split_once("  "))
            .filter(|(_, p)| p.starts_with(&format!("{prefix}/")))
            .map(|(h, p)| (p.to_string(), h.to_string()))
            .collect(),
    )
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if !UNSTABLE.iter().any(|u| p.ends_with(u)) {
            out.push(p);
        }
    }
}

/// Every output file under `root` has its recorded hash (as `prefix/<path>`), and no file
/// is missing or new.
pub fn check_outputs(root: &Path, prefix: &str) {
    let Some(expected) = recorded(prefix) else {
        return;
    };
    let mut paths = Vec::new();
    files(root, &mut paths);
    let out = Command::new("sha256sum").args(&paths).output().expect("sha256sum");
    assert!(out.status.success());
    let actual: BTreeMap<String, String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(h, p)| {
            let rel = Path::new(p).strip_prefix(root).unwrap().display().to_string();
            (format!("{prefix}/{rel}"), h.to_string())
        })
        .collect();
    let differ: std::collections::BTreeSet<&String> = expected
        .keys()
        .chain(actual.keys())
        .filter(|k| expected.get(*k) != actual.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} outputs differ from the record (or are missing/new): {differ:?}",
        differ.len(),
        expected.len()
    );
}

#[test]
fn the_paper_recipe_writes_the_recorded_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, store) = (dir.path().join("sim"), dir.path().join("paper"));
    let sim_s = sim.to_str().unwrap();
    ok(&["simulate", "--out", sim_s, "--seed", "7", "--subjects", "3", "--runs", "2", "--scans", "120"]);
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/paper.toml");
    ok(&["run", recipe.to_str().unwrap(), "--data", sim_s, "--out", store.to_str().unwrap()]);
    check_outputs(&store, "paper");
}
