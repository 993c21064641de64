//! The dataflow across workers and processes (issue 7): 1 process × 1 worker, 1 × 2 and
//! 2 processes × 1 worker on 127.0.0.1 write identical stores; an unreachable peer is a
//! clear error within the connect timeout; `watch` takes a run copied into its folder and
//! updates the network assignments without a restart; a peer killed mid-`run` stops the
//! survivor with one line, and the run resumes (issue 17).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{cortexflow, cortexflow_fails, lpp_stimuli, model_recipe, ok};
use super::store::assert_same;

pub(super) fn simulate(out: &Path, subjects: &str, scans: &str, snr: &str) {
    ok(&[
        "simulate",
        "--out",
        out.to_str().unwrap(),
        "--subjects",
        subjects,
        "--runs",
        "2",
        "--scans",
        scans,
        "--seed",
        "3",
        "--jitter",
        "0",
        "--snr",
        snr,
    ]);
}

pub(super) fn recipe(dir: &Path, atoms: usize) -> String {
    let path = dir.join("recipe.toml");
    std::fs::write(
        &path,
        format!("description = \"cluster test\"\n[basis]\natoms = {atoms}\n"),
    )
    .unwrap();
    path.display().to_string()
}

/// Two ports nobody listens on now, next to each other.
pub(super) fn free_ports() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if a < 65000 && TcpListener::bind(("127.0.0.1", a + 1)).is_ok() {
            return a;
        }
    }
}

#[test]
fn one_worker_two_workers_and_two_processes_write_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = d.join("sim");
    simulate(&sim, "3", "100", "0.5");
    let r = recipe(d, 8);
    let data = sim.to_str().unwrap();
    let store = |name: &str| d.join(name).display().to_string();
    ok(&["run", &r, "--data", data, "--out", &store("w1")]);
    ok(&["run", &r, "--data", data, "--out", &store("w2"), "-w", "2"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster-local");
    let out = Command::new("bash")
        .arg(&script)
        .args(["2", "--port", &free_ports().to_string(), "--"])
        .arg(env!("CARGO_BIN_EXE_cortexflow"))
        .args(["run", &r, "--data", data, "--out", &store("p2")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("[process 1] process 1: did its share"),
        "{text}"
    );
    assert!(text.contains("[process 0] sub-03: 2 runs"), "{text}");
    assert_same(&d.join("w1"), &d.join("w2"));
    assert_same(&d.join("w1"), &d.join("p2"));
    // A memory limit that cannot hold one subject is refused before any work.
    let e = cortexflow_fails(&["run", &r, "--data", data, "--out", &store("tiny"), "--memory-limit", "2M"]);
    assert!(e.contains("memory limit 2 MB: fitting one subject (2 runs of up to 100 scans") && e.contains("--memory-limit"), "{e}");
    assert!(!d.join("tiny").exists(), "nothing written");
    let e = cortexflow_fails(&["run", &r, "--data", data, "--out", &store("tiny"), "--memory-limit", "lots"]);
    assert!(e.contains("memory size 'lots'"), "{e}");
}

#[test]
fn an_unreachable_peer_is_a_clear_error_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_ports();
    let hosts = d.join("hosts");
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{port}\n127.0.0.1:{}\n", port + 1),
    )
    .unwrap();
    let store = d.join("s");
    let r = recipe(d, 8);
    ok(&["init", "--recipe", &r, store.to_str().unwrap()]);
    let started = Instant::now();
    let e = cortexflow_fails(&[
        "status",
        store.to_str().unwrap(),
        "--refresh",
        "-n",
        "2",
        "-p",
        "0",
        "-h",
        hosts.to_str().unwrap(),
        "--connect-timeout",
        "2",
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        e.contains(&format!(
            "no answer from process 1 at 127.0.0.1:{}",
            port + 1
        )),
        "{e}"
    );
    // Processes given different -w: the one with fewer workers says what to check.
    let cf = env!("CARGO_BIN_EXE_cortexflow");
    let cluster = |p: &str, w: &str| ["status", store.to_str().unwrap(), "--refresh", "-n", "2", "-p", p, "-w", w, "-h", hosts.to_str().unwrap(), "--connect-timeout", "20"].map(String::from);
    let other = std::process::Command::new(cf).args(cluster("1", "2")).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let e = cortexflow_fails(&cluster("0", "1").iter().map(String::as_str).collect::<Vec<_>>());
    let _ = other.wait_with_output();
    assert!(e.contains("lost process 1") && e.contains("(was every process given the same -w and -n?)"), "{e}");
    // A hostfile with too few lines, and cluster options on a command that does not compute.
    std::fs::write(&hosts, "127.0.0.1:1\n").unwrap();
    let e = cortexflow_fails(&[
        "status",
        store.to_str().unwrap(),
        "--refresh",
        "-n",
        "2",
        "-h",
        hosts.to_str().unwrap(),
    ]);
    assert!(e.contains("1 addresses for -n 2 processes"), "{e}");
    // Cluster options on a command that does not compute are a usage error (clap's exit 2).
    let o = cortexflow(&["schema", "-w", "2"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("unexpected argument '-w'"), "{e}");
}

/// A run that cannot be read, among others reduced by two workers: the command fails with
/// that run's own error (not another worker's "stopped: …"), writes no group, and the
/// store stays readable.
#[test]
fn a_bad_run_among_two_workers_is_named_and_no_group_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = d.join("sim");
    simulate(&sim, "4", "100", "0.5");
    let bad = sim.join("sub-03/func/sub-03_task-lpp_run-2_bold.nii.gz");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let r = recipe(d, 8);
    let store = d.join("s");
    let e = cortexflow_fails(&["run", &r, "--data", sim.to_str().unwrap(), "--out", store.to_str().unwrap(), "-w", "2"]);
    assert!(e.contains("sub-03_task-lpp_run-2_bold.nii.gz") && !e.contains("stopped:"), "{e}");
    assert!(!store.join("group").join("z.nii.gz").exists(), "no group from a partial update");
    let status = cortexflow(&["status", store.to_str().unwrap()]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
}

/// Two network namespaces joined by a veth pair, as two hosts on one link (removed on
/// drop); None where this machine does not allow making them (not root).
struct TwoHosts {
    names: [String; 2],
    addresses: [String; 2],
}

impl TwoHosts {
    fn new() -> Option<TwoHosts> {
        let id = std::process::id() % 10_000;
        let names = [format!("cfa{id}"), format!("cfb{id}")];
        let (va, vb) = (format!("cfva{id}"), format!("cfvb{id}"));
        let net = 1 + id % 250;
        let addresses = [format!("10.{net}.77.1"), format!("10.{net}.77.2")];
        let hosts = TwoHosts { names, addresses };
        let [a, b] = &hosts.names;
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", a],
            vec!["netns", "add", b],
            vec!["link", "add", &va, "type", "veth", "peer", "name", &vb],
            vec!["link", "set", &va, "netns", a],
            vec!["link", "set", &vb, "netns", b],
        ];
        let a_cidr = format!("{}/24", hosts.addresses[0]);
        let b_cidr = format!("{}/24", hosts.addresses[1]);
        let inside: Vec<Vec<&str>> = vec![
            vec!["-n", a, "addr", "add", &a_cidr, "dev", &va],
            vec!["-n", b, "addr", "add", &b_cidr, "dev", &vb],
            vec!["-n", a, "link", "set", &va, "up"],
            vec!["-n", b, "link", "set", &vb, "up"],
            vec!["-n", a, "link", "set", "lo", "up"],
            vec!["-n", b, "link", "set", "lo", "up"],
        ];
        let all_ok = steps.iter().chain(&inside).all(|args| {
            Command::new("ip").args(args).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
        });
        all_ok.then_some(hosts)
    }

    /// `cmd` run inside host `i`'s namespace.
    fn command(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i], program]);
        c
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// kill -9 of one of two processes mid-`run` (each in its own network namespace where the
/// machine allows it: separate addresses, as on separate hosts; else both on 127.0.0.1):
/// the survivor stops within the connect timeout with one line naming the lost process and
/// its address, no panic; the store stays readable with the waves already written; the
/// same command again reduces only the runs not yet in the store and ends with the store a
/// single uninterrupted run writes.
#[test]
fn a_lost_peer_stops_the_survivor_with_one_line_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = d.join("sim");
    simulate(&sim, "10", "120", "0.5");
    let r = recipe(d, 8);
    let data = sim.to_str().unwrap();
    let (reference, store) = (d.join("reference"), d.join("resumed"));
    ok(&["run", &r, "--data", data, "--out", reference.to_str().unwrap()]);
    let hosts = TwoHosts::new();
    if hosts.is_none() {
        eprintln!("no network namespaces on this machine (needs root): both processes on 127.0.0.1");
    }
    let port = free_ports();
    let addresses: Vec<String> = match &hosts {
        Some(h) => h.addresses.iter().map(|a| format!("{a}:{port}")).collect(),
        None => vec![format!("127.0.0.1:{port}"), format!("127.0.0.1:{}", port + 1)],
    };
    let hostfile = d.join("hosts");
    std::fs::write(&hostfile, addresses.join("\n") + "\n").unwrap();
    let start = |i: usize| {
        let bin = env!("CARGO_BIN_EXE_cortexflow");
        let mut c = match &hosts {
            Some(h) => h.command(i, bin),
            None => Command::new(bin),
        };
        let p = i.to_string();
        c.args(["run", &r, "--data", data, "--out", store.to_str().unwrap(), "-n", "2", "-p", &p])
            .args(["-h", hostfile.to_str().unwrap(), "--connect-timeout", "20"])
            .env("CORTEXFLOW_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let listed = || -> usize {
        std::fs::read_to_string(store.join("manifest.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|m| m["runs"].as_object().map(|r| r.len()))
            .unwrap_or(0)
    };
    let (p0, mut p1) = (start(0), start(1));
    // The first wave written, the others still to come: process 1 goes.
    let waited = Instant::now();
    while listed() == 0 && waited.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(10));
    }
    p1.kill().unwrap();
    let killed = Instant::now();
    let out = p0.wait_with_output().unwrap();
    let _ = p1.wait();
    let before = listed();
    assert!((1..20).contains(&before), "the kill came mid-run: {before} of 20 runs listed");
    assert!(killed.elapsed() < Duration::from_secs(20), "the survivor took {:?}", killed.elapsed());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("group tested"), "a partial update tests no group: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("lost process 1 at {}", addresses[1])) && last.contains("run the same command again"),
        "{err}"
    );
    let status = cortexflow(&["status", store.to_str().unwrap()]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    // Again, to the end: only the runs not listed are reduced.
    let (p0, p1) = (start(0), start(1));
    let outs = [p0.wait_with_output().unwrap(), p1.wait_with_output().unwrap()];
    let mut reduced = 0;
    for o in &outs {
        let text = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{text}");
        reduced += text.matches("run read and reduced").count();
    }
    assert_eq!(reduced, 20 - before, "runs reduced on resuming");
    assert_same(&reference, &store);
}

/// Atoms assigned to a network, from the last map summary in a log
/// ("16 atoms against 7 networks of yeo7 (…): N assigned").
fn assigned(log: &str) -> usize {
    let line = log
        .lines()
        .rfind(|l| l.ends_with(" assigned"))
        .expect("a map summary");
    line.rsplit(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn watch_ingests_a_copied_run_and_updates_the_assignments() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = d.join("sim");
    // SNR 1: three subjects assign nothing, four assign at least three atoms.
    simulate(&sim, "4", "150", "1");
    let r = recipe(d, 16);
    // The batch result on all four subjects, to compare with at the end (`watch` leaves
    // the noise ceiling to `cortexflow ceiling`).
    ok(&[
        "run",
        &r,
        "--data",
        sim.to_str().unwrap(),
        "--out",
        d.join("batch").to_str().unwrap(),
        "--no-ceiling",
    ]);
    let store = d.join("s");
    let s = store.to_str().unwrap();
    ok(&[
        "init",
        "--recipe",
        &r,
        "--mask",
        sim.join("mask.nii.gz").to_str().unwrap(),
        s,
    ]);
    let tables: Vec<String> = (1..=2)
        .map(|i| {
            sim.join(format!("truth/responses/task-lpp_run-{i}.parquet"))
                .display()
                .to_string()
        })
        .collect();
    ok(&[
        "ingest",
        s,
        "--responses",
        &tables.join(","),
        "--neurons",
        sim.join("truth/neurons.parquet").to_str().unwrap(),
    ]);
    // Three subjects in the watched folder at start: too few for any assignment.
    let watched = d.join("incoming");
    std::fs::create_dir(&watched).unwrap();
    for sub in ["sub-01", "sub-02", "sub-03"] {
        copy_dir(&sim.join(sub), &watched.join(sub));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_cortexflow"))
        .args([
            "watch",
            s,
            watched.to_str().unwrap(),
            "--poll-ms",
            "200",
            "--updates",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.starts_with("watching") {
            break;
        }
    }
    assert!(log.contains("sub-03: 2 runs"), "{log}");
    assert_eq!(assigned(&log), 0, "{log}");
    // The fourth subject arrives: both runs in one rename, as a finished copy would.
    copy_dir(&sim.join("sub-04"), &d.join("sub-04"));
    std::fs::rename(d.join("sub-04"), watched.join("sub-04")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "watch did not finish its update");
        std::thread::sleep(Duration::from_millis(100));
    };
    lines.for_each(|l| {
        log.push_str(&l.unwrap());
        log.push('\n');
    });
    assert!(status.success(), "{log}");
    assert!(
        log.contains("sub-04/task-lpp/run-2: 150 scans ingested"),
        "{log}"
    );
    assert!(assigned(&log) >= 3, "{log}");
    assert_same(&d.join("batch"), &store);
}

pub(super) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            copy_dir(&p, &to.join(p.file_name().unwrap()));
        } else {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// `ingest --stimulus` deals the model's forward passes over the workers and processes;
/// the pooled words, the responses, the basis and every fit are the same bytes as with one
/// worker (real MiniLM, two layers).
#[test]
fn the_model_forward_across_workers_and_processes_gives_the_same_store() {
    let Some(model) = super::models::model_path("all-MiniLM-L6-v2") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = d.join("sim");
    simulate(&sim, "2", "100", "0.5");
    let recipe = model_recipe(d, &model);
    let stimuli = lpp_stimuli(&sim, 2);
    let mask = sim.join("mask.nii.gz");
    let ingest = |store: &Path| -> Vec<String> {
        ok(&[
            "init",
            "--recipe",
            recipe.to_str().unwrap(),
            "--mask",
            mask.to_str().unwrap(),
            store.to_str().unwrap(),
        ]);
        [
            "ingest",
            store.to_str().unwrap(),
            "--stimulus",
            &stimuli.join(","),
            "--tr",
            "2",
            "--n-scans",
            "100",
            "--bids",
            sim.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let one = ingest(&d.join("one"));
    let out = ok(&one.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.contains("2 stories, 1227 tokens through the model"),
        "{out}"
    );
    let mut two = ingest(&d.join("two"));
    two.extend(["-w".to_string(), "2".to_string()]);
    ok(&two.iter().map(String::as_str).collect::<Vec<_>>());
    let procs = ingest(&d.join("procs"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster-local");
    let out = Command::new("bash")
        .arg(&script)
        .args(["2", "--port", &free_ports().to_string(), "--"])
        .arg(env!("CARGO_BIN_EXE_cortexflow"))
        .args(&procs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_same(&d.join("one"), &d.join("two"));
    assert_same(&d.join("one"), &d.join("procs"));
}
