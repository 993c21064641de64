//! Byte-identical outputs: the sha256 of every output file of `demo --seed 0` and of
//! `run dataflows/paper.toml` on a fixed simulation, recorded before the application moved
//! into the library (tests/data/golden/output-sha256*.txt, one per SIMD level, made by scripts/output-hashes),
//! must not change when behaviour is meant to stay. A gzip file is hashed by its
//! decompressed contents (what a reader gets), so the compressor's framing may change.
//!
//! The model's and faer's kernels dispatch on the CPU's SIMD extensions at run time, so the
//! bytes are promised on a CPU with the recorded extensions; elsewhere the check says so
//! and is skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::ok;

/// One record per SIMD level: `output-sha256*.txt`, each opening with its `# simd` line.
const RECORDS: &str = "tests/data/golden";
/// Files that hold absolute paths or times (planted.json names the model's checkpoint),
/// or the checksums of compressed files (sums.json: of the subjects' maps, which change
/// with the compressor's framing).
const UNSTABLE: [&str; 7] = [".lock", "manifest.json", "recipe.toml", "report.html", "group.json", "planted.json", "sums.json"];

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

/// What a record promises under `prefix/`: each file's hash, and the file endings the
/// record leaves out (its `# skip ENDING: why` lines).
struct Record {
    hashes: BTreeMap<String, String>,
    skip: Vec<String>,
}

/// The record of this CPU's SIMD level, or None (with a note) if there is none.
fn recorded(prefix: &str) -> Option<Record> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(RECORDS);
    let mut levels = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the records of output hashes") {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("output-sha256") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let level = text.lines().next().and_then(|l| l.strip_prefix("# simd ")).expect("a '# simd' first line").to_string();
        if level != simd() {
            levels.push(level);
            continue;
        }
        let skip = text.lines().filter_map(|l| l.strip_prefix("# skip ")).map(|l| l.split(':').next().unwrap_or_default().to_string()).collect();
        let hashes = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once("  "))
            .filter(|(_, p)| p.starts_with(&format!("{prefix}/")))
            .map(|(h, p)| (p.to_string(), h.to_string()))
            .collect();
        return Some(Record { hashes, skip });
    }
    eprintln!("golden outputs skipped: recorded on CPUs with {levels:?}, this one has [{}]", simd());
    None
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && p.ends_with("cache") {
            // The store's caches (each subject's network profiles) name the checksums of
            // compressed maps; what they hold is tested where they are made.
            continue;
        } else if p.is_dir() {
            files(&p, out);
        } else if !UNSTABLE.iter().any(|u| p.ends_with(u)) {
            out.push(p);
        }
    }
}

/// Every output file under `root` has its recorded hash (as `prefix/<path>`), and no file
/// is missing or new.
pub fn check_outputs(root: &Path, prefix: &str) {
    let Some(Record { hashes: expected, skip }) = recorded(prefix) else {
        return;
    };
    let mut paths = Vec::new();
    files(root, &mut paths);
    paths.retain(|p| !skip.iter().any(|s| p.to_string_lossy().ends_with(s.as_str())));
    let actual: BTreeMap<String, String> = paths
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            (format!("{prefix}/{rel}"), sha256(p))
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

/// The sha256 of a file's bytes, or of its decompressed contents for a gzip file.
fn sha256(path: &Path) -> String {
    let script = match path.extension().is_some_and(|e| e == "gz") {
        true => "gzip -dc \"$1\" | sha256sum",
        false => "sha256sum < \"$1\"",
    };
    let out = Command::new("sh").args(["-c", script, "sh"]).arg(path).output().expect("sha256sum");
    assert!(out.status.success(), "hashing {}", path.display());
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap_or_default().to_string()
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
