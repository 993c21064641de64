//! The dataflow across workers and processes (issue 7): 1 process × 1 worker, 1 × 2 and
//! 2 processes × 1 worker on 127.0.0.1 write identical stores; an unreachable peer is a
//! clear error within the connect timeout; `watch` takes a run copied into its folder and
//! updates the network assignments without a restart.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{cortexflow, cortexflow_fails, lpp_stimuli, model_recipe, ok};
use super::store::assert_same;

fn simulate(out: &Path, subjects: &str, scans: &str, snr: &str) {
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

fn recipe(dir: &Path, atoms: usize) -> String {
    let path = dir.join("recipe.toml");
    std::fs::write(
        &path,
        format!("description = \"cluster test\"\n[basis]\natoms = {atoms}\n"),
    )
    .unwrap();
    path.display().to_string()
}

/// Two ports nobody listens on now, next to each other.
fn free_ports() -> u16 {
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

/// Atoms assigned to a network, from the last map summary in a log
/// ("16 atoms against 7 networks of yeo7 (…): N assigned").
fn assigned(log: &str) -> usize {
    let line = log
        .lines()
        .filter(|l| l.ends_with(" assigned"))
        .last()
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

fn copy_dir(from: &Path, to: &Path) {
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
