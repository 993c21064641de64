//! Corpus scale (issue 17): what a `run` of the paper recipe (64 atoms) costs as the
//! number of subjects grows, whether workers and processes add speed, and what one
//! run's update costs in a large store, with the extrapolation to a Narratives-size
//! corpus. Everything is the `cortexflow` binary on one simulation (2 runs a subject,
//! `CORPUS_SCANS` scans a run), each command in its own process, timed by wall clock with
//! its peak RSS (wait4); the stage times come from its `CORTEXFLOW_LOG=info` lines.
//!
//! Settings (environment): `CORPUS_GRID` 2 (2 mm cortex, 65,984 voxels; the default) or 4
//! (4 mm, 8,268 voxels); `CORPUS_SUBJECTS` the subject counts (default 4,8,16,32);
//! `CORPUS_SPEEDUP` the count for the 1×1 / 1×2 / 2×1 comparison (default: the second);
//! `CORPUS_SCANS` (default 150); `CORPUS_SURROGATES` the spatial-null surrogates of the
//! mapping (default 1000, the paper recipe's; the mapping's cost does not depend on the
//! number of subjects, only on how many atoms have significant voxels); `CORPUS_BRAIN` a
//! subject count for a whole-brain 2 mm `run` (`simulate --extent brain`, 235,473 voxels;
//! default 0: skipped); `CORPUS_WATCH` 0 to skip `watch` ingesting the subjects one by one.
//!
//!     cargo bench --bench corpus
//!     CORPUS_GRID=4 CORPUS_SUBJECTS=4,8,16,32 cargo bench --bench corpus

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_cortexflow");

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// One command's wall seconds, peak RSS (MiB) and its log's stage seconds.
struct Measured {
    seconds: f64,
    /// User + system CPU seconds of the command (every thread).
    cpu_seconds: f64,
    peak_mib: f64,
    log: String,
}

/// User + system seconds of a `rusage`.
fn cpu_seconds(u: &libc::rusage) -> f64 {
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// User + system seconds of this process's reaped children so far (grandchildren included
/// once their parents have waited for them).
fn children_cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_CHILDREN with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    cpu_seconds(&usage)
}

impl Measured {
    /// Seconds logged on lines containing `what` (summed over them).
    fn stage(&self, what: &str) -> f64 {
        self.log
            .lines()
            .filter(|l| l.contains(what))
            .filter_map(|l| l.split("seconds=").nth(1)?.split_whitespace().next()?.parse::<f64>().ok())
            .sum()
    }

    /// The value of `name=` on the first log line containing `what` ("—" when absent).
    fn field(&self, what: &str, name: &str) -> String {
        let key = format!("{name}=");
        self.log
            .lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split(&key).nth(1)?.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "—".into())
    }
}

// The child is reaped by wait4, which `Child` does not know about.
#[allow(clippy::zombie_processes)]
fn measure(args: &[&str]) -> Measured {
    let log = tempfile::NamedTempFile::new().unwrap();
    let t = std::time::Instant::now();
    let child = Command::new(BIN)
        .args(args)
        .env("CORTEXFLOW_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("start cortexflow");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for the child just spawned (not yet reaped).
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let seconds = t.elapsed().as_secs_f64();
    let log = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(pid > 0 && status == 0, "{args:?} failed:\n{log}");
    Measured { seconds, cpu_seconds: cpu_seconds(&usage), peak_mib: usage.ru_maxrss as f64 / 1024.0, log }
}

/// `watch` on a folder that starts with 2 subjects (a `run` made the store from it), each
/// further subject of the simulation linked in when the previous update is done: the
/// seconds of each update (from the link to its lines; within one poll of 200 ms) and
/// the peak RSS of the watch process over its whole life.
// The child is reaped by wait4, which `Child` does not know about.
#[allow(clippy::zombie_processes)]
fn watch_one_by_one(sim: &Path, recipe: &str, most: usize, d: &Path) {
    use std::io::BufRead;
    let dir = d.join("watched");
    let store = d.join("watch-store");
    subset(sim, 2, &dir);
    ok(&["run", recipe, "--data", dir.to_str().unwrap(), "--out", store.to_str().unwrap(), "--no-ceiling"]);
    let updates = (most - 2).to_string();
    let mut child = Command::new(BIN)
        .args(["watch", store.to_str().unwrap(), dir.to_str().unwrap(), "--poll-ms", "200", "--updates", &updates])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start cortexflow watch");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut until = |what: &str| loop {
        let line = lines.next().expect("watch stopped early").unwrap();
        if line.contains(what) {
            break;
        }
    };
    // Its first update (what is there at the start) before the first subject comes.
    until("watching");
    let mut seconds = Vec::new();
    for i in 3..=most {
        let name = format!("sub-{i:02}");
        let t = std::time::Instant::now();
        std::os::unix::fs::symlink(sim.join(&name), dir.join(&name)).unwrap();
        // An update's lines come out together once it is written.
        until(&format!("{name}: 2 runs"));
        seconds.push(t.elapsed().as_secs_f64());
    }
    for _ in lines.by_ref() {}
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for the child just spawned (not yet reaped).
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(pid > 0 && status == 0, "watch failed: wait4 {pid}, status {status}");
    let peak = usage.ru_maxrss as f64 / 1024.0;
    println!("\n## `watch` ingesting subjects 3–{most} one by one (2 runs each)\n");
    println!("| subject | update s |");
    println!("|---|---|");
    for (i, s) in seconds.iter().enumerate() {
        println!("| {} | {s:.1} |", i + 3);
    }
    let (lo, hi) = seconds.iter().fold((f64::MAX, f64::MIN), |(l, h), &s| (l.min(s), h.max(s)));
    println!("\nwatch's peak over its life: {peak:.0} MiB; update seconds max/min {:.2}", hi / lo);
}

fn ok(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().expect("run cortexflow");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The first `n` subjects of a simulation, as a dataset of links.
fn subset(sim: &Path, n: usize, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    for e in std::fs::read_dir(sim).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let keep = match name.strip_prefix("sub-") {
            Some(id) => id.parse::<usize>().is_ok_and(|i| i <= n),
            None => true,
        };
        if keep {
            std::os::unix::fs::symlink(&p, out.join(&name)).unwrap();
        }
    }
}

/// Every result file's size and hash (the manifest, recipe and lock name paths and times).
/// Streamed: a child's peak RSS counts the parent's at the time it was spawned (Linux
/// keeps the high-water mark across exec), so this process must stay small.
fn contents(store: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
    use std::hash::Hasher;
    use std::io::Read;
    let mut out = BTreeMap::new();
    let mut stack = vec![store.to_path_buf()];
    let mut buffer = vec![0u8; 1 << 16];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(store).unwrap().to_path_buf();
            let skip = ["manifest.json", "recipe.toml", ".lock", "group.json"]
                .iter()
                .any(|s| rel.file_name().is_some_and(|f| f == *s));
            if p.is_dir() {
                stack.push(p);
            } else if !skip {
                let mut file = std::fs::File::open(&p).unwrap();
                let mut hash = twox_hash::XxHash64::with_seed(0);
                let mut size = 0;
                loop {
                    let n = file.read(&mut buffer).unwrap();
                    if n == 0 {
                        break;
                    }
                    hash.write(&buffer[..n]);
                    size += n as u64;
                }
                out.insert(rel, (size, hash.finish()));
            }
        }
    }
    out
}

fn same(a: &Path, b: &Path) -> bool {
    contents(a) == contents(b)
}

fn main() {
    let grid = env_or("CORPUS_GRID", "2");
    let counts: Vec<usize> = env_or("CORPUS_SUBJECTS", "4,8,16,32")
        .split(',')
        .map(|c| c.trim().parse().expect("CORPUS_SUBJECTS: numbers"))
        .collect();
    let speedup_n: usize = env_or("CORPUS_SPEEDUP", &counts.get(1).unwrap_or(&counts[0]).to_string()).parse().unwrap();
    let scans = env_or("CORPUS_SCANS", "150");
    let surrogates = env_or("CORPUS_SURROGATES", "1000");
    let most = *counts.iter().chain([&speedup_n]).max().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |p: &Path| p.display().to_string();
    let sim = d.join("sim");
    let grid_arg = format!("{grid}mm");
    println!("simulating {most} subjects × 2 runs × {scans} scans at {grid} mm …");
    ok(&["simulate", "--out", &s(&sim), "--grid", &grid_arg, "--subjects", &most.to_string(), "--runs", "2", "--scans", &scans, "--seed", "17"]);
    let paper = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/paper.toml")).unwrap();
    let recipe = d.join("recipe.toml");
    std::fs::write(&recipe, paper.replace("surrogates = 1000", &format!("surrogates = {surrogates}"))).unwrap();
    let r = s(&recipe);
    let run = |n: usize, name: &str, extra: &[&str]| -> (Measured, PathBuf) {
        let data = d.join(format!("data{n}"));
        if !data.exists() {
            subset(&sim, n, &data);
        }
        let out = d.join(name);
        let mut args = vec!["run", r.as_str(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-ceiling"];
        // The tables name their layout: one worker unless a row says otherwise (the default
        // is every core).
        if !extra.contains(&"-w") {
            args.extend(["-w", "1"]);
        }
        args.extend(extra);
        let m = measure(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>().iter().map(String::as_str).collect::<Vec<_>>());
        (m, out)
    };

    println!("\n## `run` as subjects grow ({grid} mm, 64 atoms, 1 process × 1 worker)\n");
    println!("| subjects | wall s | reduce + fit s | per subject s | group maps s | mapping s | peak MiB | store MB |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for &n in &counts {
        let (m, out) = run(n, &format!("s{n}"), &[]);
        let fit = m.stage("dataflow done");
        let store_mb = contents(&out).values().map(|v| v.0).sum::<u64>() as f64 / 1e6;
        println!(
            "| {n} | {:.1} | {fit:.1} | {:.2} | {:.1} | {:.1} | {:.0} | {store_mb:.0} |",
            m.seconds,
            fit / n as f64,
            m.stage("group maps written"),
            m.stage("networks mapped"),
            m.peak_mib
        );
        rows.push((n, m, fit, store_mb));
    }
    let peaks: Vec<f64> = rows.iter().map(|r| r.1.peak_mib).collect();
    let per: Vec<f64> = rows.iter().map(|r| r.2 / r.0 as f64).collect();
    let ratio = |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max) / v.iter().cloned().fold(f64::MAX, f64::min);
    println!("\npeak memory max/min: {:.2}; reduce + fit per subject max/min: {:.2}", ratio(&peaks), ratio(&per));

    if env_or("CORPUS_WATCH", "1") == "1" {
        watch_one_by_one(&sim, &r, most, d);
    }

    println!("\n## workers and processes ({speedup_n} subjects)\n");
    let (one, one_dir) = run(speedup_n, "x11", &[]);
    let (two_w, w_dir) = run(speedup_n, "x12", &["-w", "2"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster-local");
    let data = d.join(format!("data{speedup_n}"));
    let p_dir = d.join("x21");
    let cpu_before = children_cpu_seconds();
    let t = std::time::Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .args(["2", "--"])
        .arg(BIN)
        // One worker a process: the script passes `-w` (1 unless told otherwise).
        .args(["run", &r, "--data", &s(&data), "--out", &s(&p_dir), "--no-ceiling"])
        .env("CORTEXFLOW_LOG", "info")
        .output()
        .unwrap();
    let two_p = t.elapsed().as_secs_f64();
    let two_p_cpu = children_cpu_seconds() - cpu_before;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p_log = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let p_log: String = p_log.lines().filter(|l| l.starts_with("[process 0]")).collect::<Vec<_>>().join("\n");
    let p_fit = Measured { seconds: two_p, cpu_seconds: two_p_cpu, peak_mib: f64::NAN, log: p_log }.stage("dataflow done");
    // Cores busy = CPU seconds / wall seconds. One worker is not one core: rayon runs the
    // statistics, the fits and the maps on every core, and the writer thread overlaps the
    // next wave. So 1 × 1 already keeps `busy` cores working, and a layout that spends no
    // fewer CPU seconds cannot finish more than cores / busy times sooner. (Those seconds
    // include threads spinning briefly before they sleep, so a layout that wasted less
    // could beat the bound; the layouts measured here spend more, not less.)
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let busy = |m: &Measured| m.cpu_seconds / m.seconds;
    println!("| layout | wall s | speed-up | cores busy | reduce + fit s | speed-up | same bytes as 1×1 |");
    println!("|---|---|---|---|---|---|---|");
    let f1 = one.stage("dataflow done");
    let f2 = two_w.stage("dataflow done") / 2.0;
    println!("| 1 process × 1 worker | {:.1} | 1.00 | {:.2} | {f1:.1} | 1.00 | — |", one.seconds, busy(&one));
    println!("| 1 process × 2 workers | {:.1} | {:.2} | {:.2} | {f2:.1} | {:.2} | {} |", two_w.seconds, one.seconds / two_w.seconds, busy(&two_w), f1 / f2, same(&one_dir, &w_dir));
    println!("| 2 processes × 1 worker | {two_p:.1} | {:.2} | {:.2} | {p_fit:.1} | {:.2} | {} |", one.seconds / two_p, two_p_cpu / two_p, f1 / p_fit, same(&one_dir, &p_dir));
    println!(
        "\n1 × 1 kept {:.2} of this machine's {cores:.0} cores busy ({:.1} CPU s in {:.1} s): a layout that spends as many CPU seconds can be at most {:.2}× faster than it",
        busy(&one),
        one.cpu_seconds,
        one.seconds,
        cores / busy(&one)
    );

    println!("\n## one run's update in a store of {} subjects\n", counts.last().unwrap());
    let big = d.join(format!("s{}", counts.last().unwrap()));
    let last = format!("sub-{:02}/task-lpp/run-2", counts.last().unwrap());
    let bold = std::fs::canonicalize(sim.join(format!("sub-{0:02}/func/sub-{0:02}_task-lpp_run-2_bold.nii.gz", counts.last().unwrap()))).unwrap();
    // The last subject's run: under the ridge estimator the subject leaves the group and
    // comes back, and no other subject changes half. sub-02's: every later subject moves
    // to the other half, so its map is read (the worst case of the stored sums).
    let retract = measure(&["retract", &s(&big), "--run", &last]);
    let ingest = measure(&["ingest", &s(&big), "--bold", &s(&bold)]);
    let second = std::fs::canonicalize(sim.join("sub-02/func/sub-02_task-lpp_run-2_bold.nii.gz")).unwrap();
    let retract_2 = measure(&["retract", &s(&big), "--run", "sub-02/task-lpp/run-2"]);
    let ingest_2 = measure(&["ingest", &s(&big), "--bold", &s(&second)]);
    let reduce = ingest.stage("run read and reduced");
    println!("| update | wall s | × reducing the run | stored maps read | reading them s | reduce + fit s | group maps s | mapping s | peak MiB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (what, m) in [("retract (last subject)", &retract), ("ingest (last subject)", &ingest), ("retract (sub-02)", &retract_2), ("ingest (sub-02)", &ingest_2)] {
        println!(
            "| {what} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
            m.seconds,
            m.seconds / reduce,
            m.field("group sums: stored maps read", "maps"),
            m.stage("group sums: stored maps read"),
            m.stage("dataflow done"),
            m.stage("group maps written"),
            m.stage("networks mapped"),
            m.peak_mib
        );
    }
    println!("reducing the run alone: {reduce:.2} s");

    let brain: usize = env_or("CORPUS_BRAIN", "0").parse().expect("CORPUS_BRAIN: a number");
    if brain > 0 {
        let wb = d.join("brain");
        println!("\nsimulating {brain} subjects × 2 runs × {scans} scans, whole brain at 2 mm …");
        let sim_m = measure(&["simulate", "--out", &s(&wb), "--grid", "2mm", "--extent", "brain", "--subjects", &brain.to_string(), "--runs", "2", "--scans", &scans, "--seed", "17"]);
        let m = measure(&["run", &r, "--data", &s(&wb), "--out", &s(&d.join("brain-store")), "--no-ceiling"]);
        println!("\n## whole brain, 2 mm (235,473 voxels), {brain} subjects, 1 × 1\n");
        println!("| step | wall s | peak MiB |");
        println!("|---|---|---|");
        println!("| simulate | {:.1} | {:.0} |", sim_m.seconds, sim_m.peak_mib);
        println!("| run | {:.1} | {:.0} |", m.seconds, m.peak_mib);
    }

    // Narratives: 345 subjects, 891 runs of ~300 scans. Reduction scales with scans × voxels,
    // a subject's fit with its runs; the group maps and the mapping are paid once.
    let (n_last, m_last, fit_last, store_last) = rows.last().unwrap();
    let per_subject = fit_last / *n_last as f64;
    let reduce_per_run = rows.last().map(|r| r.1.stage("run read and reduced") / (2 * r.0) as f64).unwrap();
    let fit_per_subject = per_subject - 2.0 * reduce_per_run;
    let scans_scale = 300.0 / scans.parse::<f64>().unwrap();
    let once = m_last.stage("group maps written") + m_last.stage("networks mapped");
    let hours = |nodes: f64| (891.0 * reduce_per_run * scans_scale + 345.0 * fit_per_subject * 891.0 / 690.0) / nodes / 3600.0 + once / 3600.0;
    let store_per_subject = store_last / *n_last as f64;
    println!("\n## extrapolation to Narratives (345 subjects, 891 runs, ~300 scans; {grid} mm, 64 atoms)\n");
    println!("measured: {reduce_per_run:.2} s to read and reduce a run of {scans} scans, {fit_per_subject:.2} s to fit a subject of 2 runs, {once:.0} s of group maps and mapping, {store_per_subject:.1} MB of store a subject, peak {:.0} MiB", m_last.peak_mib);
    println!("| nodes (2 cores each) | hours | peak memory per node |");
    println!("|---|---|---|");
    for nodes in [1.0, 4.0, 16.0] {
        println!("| {nodes} | {:.1} | {:.0} MiB (flat in subjects) |", hours(nodes), m_last.peak_mib);
    }
    println!("store: ~{:.0} GB ({store_per_subject:.1} MB a subject of 2 runs × 891/690)", 345.0 * store_per_subject * 891.0 / 690.0 / 1e3);
}
