//! A cluster without a shared file system (issue 17, `--local-inputs`): two processes,
//! each with only its own subjects' runs, process 0 alone with the store. Where this
//! machine allows mount namespaces (root), each process runs in its own with the other's
//! folder hidden under an empty tmpfs, as on two hosts with their own disks; the store
//! must be the bytes one process writes over every run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::cluster::{copy_dir, free_ports, recipe, simulate};
use super::common::{model_recipe, ok};
use super::store::assert_same;

/// Two "hosts": folders `h0` (the store's) and `h1`, each process started in its own.
struct Hosts {
    root: PathBuf,
    /// Whether each process runs with the other host's folder hidden.
    hidden: bool,
}

impl Hosts {
    fn new(root: &Path) -> Hosts {
        let hidden = Command::new("unshare")
            .args(["-m", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !hidden {
            eprintln!("no mount namespaces on this machine (needs root): each process could read the other's folder");
        }
        Hosts { root: root.to_path_buf(), hidden }
    }

    /// Hosts under `root` with the dataset `sim` split: `remote` subjects' runs on host 1
    /// (`h1/data`), the rest (mask, stimuli, truth) on host 0 (`h0/data`).
    fn split(root: &Path, sim: &Path, remote: &[&str]) -> Hosts {
        let hosts = Hosts::new(root);
        let (h0, h1) = (hosts.dir(0), hosts.dir(1));
        copy_dir(sim, &h0.join("data"));
        std::fs::create_dir_all(h1.join("data")).unwrap();
        for s in remote {
            std::fs::rename(h0.join("data").join(s), h1.join("data").join(s)).unwrap();
        }
        std::fs::copy(sim.join("dataset_description.json"), h1.join("data/dataset_description.json")).unwrap();
        if hosts.hidden {
            let seen = hosts.wrapped(1, "ls").arg("-A").arg(&h0).output().unwrap();
            assert!(seen.status.success() && seen.stdout.is_empty(), "host 1 sees host 0's folder: {seen:?}");
        }
        hosts
    }

    fn dir(&self, host: usize) -> PathBuf {
        self.root.join(format!("h{host}"))
    }

    /// `program` run in host's folder, the other host's hidden where the machine allows.
    fn wrapped(&self, host: usize, program: &str) -> Command {
        let mut c = match self.hidden {
            true => {
                let mut c = Command::new("unshare");
                let hide = "mount -t tmpfs cortexflow-hidden \"$1\" && shift && exec \"$@\"";
                c.args(["-m", "--propagation", "private", "sh", "-c", hide, "sh"]);
                c.arg(self.dir(1 - host)).arg(program);
                c
            }
            false => Command::new(program),
        };
        c.current_dir(self.dir(host));
        c
    }

    /// `cortexflow args` as process `host` of two, in host's folder (the other hidden).
    fn command(&self, host: usize, hostfile: &Path, args: &[&str]) -> Command {
        let index = host.to_string();
        let cluster = ["-n", "2", "-p", &index, "-h", hostfile.to_str().unwrap(), "-w", "1", "--local-inputs"];
        let mut c = self.wrapped(host, env!("CARGO_BIN_EXE_cortexflow"));
        let temp = self.temp(host);
        std::fs::create_dir_all(&temp).unwrap();
        c.args(args).args(cluster).env("CORTEXFLOW_LOG", "info").env("TMPDIR", temp);
        c
    }

    /// The host's temporary folder (where process 1 copies the store's files).
    fn temp(&self, host: usize) -> PathBuf {
        self.dir(host).join("tmp")
    }

    /// Runs `p0` on host 0 and `p1` on host 1 together; their outputs (stdout + stderr).
    fn run(&self, p0: &[&str], p1: &[&str]) -> (Output, Output) {
        let port = free_ports();
        let hostfile = self.root.join("hosts");
        std::fs::write(&hostfile, format!("127.0.0.1:{port}\n127.0.0.1:{}\n", port + 1)).unwrap();
        let second = self.command(1, &hostfile, p1).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let first = self.command(0, &hostfile, p0).output().unwrap();
        (first, second.wait_with_output().unwrap())
    }

    /// [`Hosts::run`], both expected to fail: process 0's stderr.
    fn refused(&self, p0: &[&str], p1: &[&str]) -> String {
        let (a, b) = self.run(p0, p1);
        let said = String::from_utf8_lossy(&a.stderr).into_owned();
        assert!(!a.status.success() && !b.status.success(), "{said}");
        said
    }

    /// [`Hosts::run`], both expected to succeed: their stdout and stderr.
    fn ok(&self, p0: &[&str], p1: &[&str]) -> [String; 2] {
        let (a, b) = self.run(p0, p1);
        let text = |o: &Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(a.status.success() && b.status.success(), "process 0:\n{}\nprocess 1:\n{}", text(&a), text(&b));
        [text(&a), text(&b)]
    }
}

/// The manifest's runs without their BOLD paths (which name each host's folder).
fn runs(store: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(store.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let runs = m["runs"].as_object_mut().unwrap();
    runs.values_mut().for_each(|r| {
        r.as_object_mut().unwrap().remove("bold");
    });
    m["runs"].take()
}

fn bold_reads(log: &str) -> Option<usize> {
    let at = log.find("bold_reads=")? + "bold_reads=".len();
    log[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `run`, `retract` and `ingest` across two processes that each hold two of four subjects
/// give the bytes of `run` in one process over all of them; each process reads only its
/// own runs; a run given to both, or the option given to one, is refused.
#[test]
fn without_a_shared_file_system_each_process_reads_only_its_own_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = d.join("sim");
    simulate(&sim, "4", "100", "0.5");
    let r = recipe(d, 8);
    let reference = d.join("reference");
    ok(&["run", &r, "--data", sim.to_str().unwrap(), "--out", reference.to_str().unwrap(), "--no-ceiling"]);
    let hosts = Hosts::split(d, &sim, &["sub-03", "sub-04"]);
    let (h0, h1) = (hosts.dir(0), hosts.dir(1));
    let [p0, p1] = hosts.ok(&["run", &r, "--data", "data", "--out", "store"], &["run", &r, "--data", "data", "--out", "store"]);
    assert!(p0.contains("noise ceiling: not computed (--local-inputs"), "{p0}");
    assert!(p1.contains("process 1: did its share of the work"), "{p1}");
    assert_eq!((bold_reads(&p0), bold_reads(&p1)), (Some(4), Some(4)), "each reads its own 4 runs:\n{p0}\n{p1}");
    assert!(!h1.join("store").exists(), "process 1 writes no store");
    let store = h0.join("store");
    assert_same(&reference, &store);
    assert_eq!(runs(&reference), runs(&store));
    // Each run's BOLD as its holder names it, in its holder's folder (both gave `data`).
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(store.join("manifest.json")).unwrap()).unwrap();
    for (key, host) in [("sub-01/task-lpp/run-1", &h0), ("sub-03/task-lpp/run-2", &h1)] {
        let (s, r) = (&key[..6], &key[key.len() - 1..]);
        let bold = host.join(format!("data/{s}/func/{s}_task-lpp_run-{r}_bold.nii.gz"));
        assert_eq!(manifest["runs"][key]["bold"].as_str(), bold.to_str(), "{key}");
    }
    let copies = || std::fs::read_dir(hosts.temp(1)).unwrap().count();
    assert_eq!(copies(), 0, "process 1 leaves its copy of the store's files");

    // A run held by process 1 retracted (its subject refitted from the statistics process 1
    // sent at `run`, read in process 0), then ingested again from process 1.
    let key = "sub-04/task-lpp/run-2";
    hosts.ok(&["retract", "store", "--run", key], &["retract", "store", "--run", key]);
    let retracted = d.join("retracted");
    copy_dir(&reference, &retracted);
    ok(&["retract", retracted.to_str().unwrap(), "--run", key]);
    assert_same(&retracted, &store);
    let bold = "data/sub-04/func/sub-04_task-lpp_run-2_bold.nii.gz";
    hosts.ok(&["ingest", "store"], &["ingest", "store", "--bold", bold]);
    assert_same(&reference, &store);
    assert_eq!(runs(&reference), runs(&store));

    // The same run given to both processes is named with both, and nothing changes.
    hosts.ok(&["retract", "store", "--run", key], &["retract", "store", "--run", key]);
    std::fs::create_dir_all(h0.join("data/sub-04/func")).unwrap();
    std::fs::copy(h1.join(bold), h0.join(bold)).unwrap();
    let said = hosts.refused(&["ingest", "store", "--bold", bold], &["ingest", "store", "--bold", bold]);
    let (b0, b1) = (h0.join(bold), h1.join(bold));
    let both = format!("run {key} is given to process 0 ({}) and to process 1 ({}): give each run to one process", b0.display(), b1.display());
    assert!(said.contains(&both), "{said}");
    assert_same(&retracted, &store);

    // A run process 1 cannot read stops both, process 0 saying why in process 1's words.
    let missing = "data/sub-05/func/sub-05_task-lpp_run-1_bold.nii.gz";
    let said = hosts.refused(&["ingest", "store"], &["ingest", "store", "--bold", missing]);
    assert!(said.contains("stopped: process 1 could not read its runs: ") && said.contains(missing), "{said}");
    assert_same(&retracted, &store);
    assert_eq!(copies(), 0);

    // A run process 1 cannot reduce (its data cut short) stops both, process 0 saying why
    // in process 1's words.
    let cut = "data/sub-05/func/sub-05_task-lpp_run-1_bold.nii.gz";
    std::fs::create_dir_all(h1.join("data/sub-05/func")).unwrap();
    let whole = std::fs::read(h1.join("data/sub-03/func/sub-03_task-lpp_run-1_bold.nii.gz")).unwrap();
    std::fs::write(h1.join(cut), &whole[..whole.len() / 2]).unwrap();
    let said = hosts.refused(&["ingest", "store"], &["ingest", "store", "--bold", cut]);
    assert!(said.contains("stopped: process 1 failed: ") && said.contains(cut), "{said}");
    assert_same(&retracted, &store);
    assert_eq!(copies(), 0);

    // Processes given different commands are refused by both, and nothing changes.
    let said = hosts.refused(&["retract", "store", "--run", "sub-01/task-lpp/run-1"], &["retract", "store", "--run", "sub-03/task-lpp/run-1"]);
    let differ = "process 1 was given `retract --run sub-03/task-lpp/run-1` and process 0 `retract --run sub-01/task-lpp/run-1`: every process runs the same command";
    assert!(said.contains(differ), "{said}");
    let said = hosts.refused(&["ingest", "store"], &["status", "--refresh", "store"]);
    assert!(said.contains("process 1 was given `status --refresh` and process 0 `ingest`"), "{said}");
    assert_same(&retracted, &store);

    // --local-inputs on one process only is refused by both.
    let port = free_ports();
    let hostfile = d.join("hosts");
    std::fs::write(&hostfile, format!("127.0.0.1:{port}\n127.0.0.1:{}\n", port + 1)).unwrap();
    let cf = env!("CARGO_BIN_EXE_cortexflow");
    let cluster = |i: &str| ["-n", "2", "-p", i, "-h", hostfile.to_str().unwrap(), "-w", "1"].map(String::from);
    let other = Command::new(cf).args(["status", "--refresh", "store"]).args(cluster("1")).current_dir(&h0).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mine = Command::new(cf).args(["status", "--refresh", "store", "--local-inputs"]).args(cluster("0")).current_dir(&h0).output().unwrap();
    let other = other.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&mine.stderr);
    assert!(!mine.status.success() && said.contains("--local-inputs is given to some processes and not to others"), "{said}");
    assert!(!other.status.success());
}

/// `run` with a model: the stories go through the model on process 0's workers (process 1
/// has no stimuli and no model files to read), and the store is the bytes of one process.
#[test]
fn without_a_shared_file_system_the_stories_run_on_process_zero() {
    let Some(model) = super::models::model_path("all-MiniLM-L6-v2") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = d.join("sim");
    simulate(&sim, "3", "100", "0.5");
    let r = model_recipe(d, &model);
    let r = r.to_str().unwrap();
    let reference = d.join("reference");
    ok(&["run", r, "--data", sim.to_str().unwrap(), "--out", reference.to_str().unwrap(), "--no-ceiling"]);
    let hosts = Hosts::split(d, &sim, &["sub-03"]);
    let [p0, p1] = hosts.ok(&["run", r, "--data", "data", "--out", "store"], &["run", r, "--data", "data", "--out", "store"]);
    assert!(p0.contains("2 stories, 1227 tokens through the model"), "{p0}");
    assert_eq!((bold_reads(&p0), bold_reads(&p1)), (Some(4), Some(2)), "{p0}\n{p1}");
    assert_same(&reference, &hosts.dir(0).join("store"));
}
