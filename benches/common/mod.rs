//! Shared by the comparison benches: each side runs in its own child process (ours: this
//! bench binary re-invoked with `--child`; the anchor: a Python script in benches/anchors),
//! reporting wall seconds and peak resident memory, so the two are measured alike.

use std::path::Path;
use std::process::Command;

pub mod story;

/// One measurement: wall seconds of the timed section, peak RSS of the whole process in MiB.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub seconds: f64,
    pub peak_mib: f64,
    /// The child's result summary `rows cols sum`, compared between the two sides.
    pub result: [f64; 3],
}

/// Peak resident set size of this process (VmHWM), in MiB.
pub fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Wall seconds and peak RSS (MiB, from wait4) of one child process run to its end.
#[allow(dead_code)]
// The child is reaped by wait4, which `Child` does not know about.
#[allow(clippy::zombie_processes)]
pub fn timed_process(cmd: &mut Command) -> (f64, f64) {
    let t = std::time::Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the child");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for the child just spawned (not yet reaped).
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(pid > 0 && status == 0, "{cmd:?} failed");
    (t.elapsed().as_secs_f64(), usage.ru_maxrss as f64 / 1024.0)
}

/// Runs a child that prints `rows cols sum` of its result, then `seconds peak_mib`.
pub fn run_child(cmd: &mut Command) -> Sample {
    let out = cmd.output().expect("start child");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Vec<f64>> = text
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|v| v.parse::<f64>().expect("numbers"))
                .collect()
        })
        .collect();
    let [result, timing] = &lines[lines.len() - 2..] else {
        panic!("child printed {text}")
    };
    Sample {
        seconds: timing[0],
        peak_mib: timing[1],
        result: [result[0], result[1], result[2]],
    }
}

/// The median-time sample of `n` runs.
pub fn median(mut runs: Vec<Sample>) -> Sample {
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    runs[runs.len() / 2]
}

/// How many times `compare` runs each side: `BENCH_REPEATS` if set (at least 1), else
/// `default`; a bench that asks for one run (its samples measured beforehand) keeps it.
/// On a busy shared machine more repeats narrow the medians.
pub fn repeats(default: usize) -> usize {
    if default <= 1 {
        return default;
    }
    std::env::var("BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(default, |n| n.max(1))
}

/// The fastest and slowest times of some samples.
fn range(runs: &[Sample]) -> (f64, f64) {
    let times = runs.iter().map(|s| s.seconds);
    (times.clone().fold(f64::INFINITY, f64::min), times.fold(0.0, f64::max))
}

/// Ours against the anchor, `repeats` times each (or `BENCH_REPEATS`), the two sides
/// alternated and each going first in every other round (ABBA), so that a machine getting
/// slower or faster meanwhile weighs on both alike; then the medians, their ranges and one
/// line with the ratio of the medians. Returns our median sample.
pub fn compare(
    what: &str,
    repeats: usize,
    rel_tol: f64,
    ours: impl Fn() -> Sample,
    anchor_name: &str,
    anchor: impl Fn() -> Sample,
) -> Sample {
    let (mut os, mut anchors) = (Vec::new(), Vec::new());
    for round in 0..self::repeats(repeats) {
        if round % 2 == 0 {
            os.push(ours());
            anchors.push(anchor());
        } else {
            anchors.push(anchor());
            os.push(ours());
        }
    }
    let (o_range, a_range) = (range(&os), range(&anchors));
    let (o, a) = (median(os), median(anchors));
    let same_sum = (o.result[2] - a.result[2]).abs() <= rel_tol * a.result[2].abs().max(1.0);
    assert!(
        o.result[..2] == a.result[..2] && same_sum,
        "results differ: cortexflow {:?}, anchor {:?}",
        o.result,
        a.result
    );
    println!("{what}");
    println!(
        "  cortexflow   {:>9.3} s  peak {:>8.1} MiB  (runs {:.3}–{:.3} s)",
        o.seconds, o.peak_mib, o_range.0, o_range.1
    );
    println!(
        "  {anchor_name:<12} {:>9.3} s  peak {:>8.1} MiB  (runs {:.3}–{:.3} s)",
        a.seconds, a.peak_mib, a_range.0, a_range.1
    );
    println!(
        "  ratio        {:>9.2}× faster, {:.2}× the anchor's peak memory",
        a.seconds / o.seconds,
        o.peak_mib / a.peak_mib
    );
    o
}

pub fn python_has(modules: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn anchor_script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/anchors")
        .join(name)
}
