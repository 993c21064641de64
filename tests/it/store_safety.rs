//! A store that cannot be corrupted (issue 14): one writer at a time, and every file the
//! store wrote checked against its checksum.
//!
//! - Concurrency: 50 seeded pairs of writers (`ingest`, `retract`, `status --refresh`,
//!   `watch`) started together on one store: each completes or is refused at once, and
//!   the store ends byte for byte as a serial replay of the commands that completed.
//! - Corruption: 21 kinds of damage × the store commands: `status` names the file and
//!   fails, no command exits 0 with altered results, `report` refuses, and `status
//!   --refresh` rebuilds every rebuildable file byte for byte (and names the others).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::common::{cortexflow, kill_until_done, ok, Lcg};
use super::store::{assert_same, contents, dataset, dataset_and_store, empty_store};

fn run_key(bold: &str) -> String {
    let name = Path::new(bold).file_name().unwrap().to_string_lossy().into_owned();
    let (s, rest) = name.strip_prefix("sub-").unwrap().split_once("_task-").unwrap();
    let (t, rest) = rest.split_once("_run-").unwrap();
    let r = rest.strip_suffix("_bold.nii.gz").unwrap();
    format!("sub-{s}/task-{t}/run-{r}")
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

/// A writer command of the concurrency test, on a store given at run time.
#[derive(Debug, Clone, Copy)]
enum Writer {
    Ingest(usize),
    Retract(usize),
    Refresh,
    /// `watch` of a folder holding one run, stopping after its start-up update.
    Watch(usize),
}

impl Writer {
    fn args(&self, store: &Path, bold: &[String], watch_dirs: &[PathBuf]) -> Vec<String> {
        let s = store.display().to_string();
        match self {
            Writer::Ingest(i) => vec!["ingest".into(), s, "--bold".into(), bold[*i].clone()],
            Writer::Retract(i) => vec!["retract".into(), s, "--run".into(), run_key(&bold[*i])],
            Writer::Refresh => vec!["status".into(), s, "--refresh".into()],
            Writer::Watch(i) => vec![
                "watch".into(),
                s,
                watch_dirs[*i].display().to_string(),
                "--updates".into(),
                "0".into(),
            ],
        }
    }
    fn run(&self) -> Option<usize> {
        match self {
            Writer::Ingest(i) | Writer::Retract(i) | Writer::Watch(i) => Some(*i),
            Writer::Refresh => None,
        }
    }
}

fn spawn(args: &[String]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_cortexflow"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn concurrent_writers_complete_or_are_refused_and_equal_a_serial_replay() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, recipe, bold) = dataset(d);
    let (live, replay) = (d.join("live"), d.join("replay"));
    empty_store(&sim, &recipe, &live);
    copy_dir(&live, &replay);
    let watch_dirs: Vec<PathBuf> = bold
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let w = d.join(format!("watch-{i}"));
            std::fs::create_dir_all(&w).unwrap();
            std::os::unix::fs::symlink(b, w.join(Path::new(b).file_name().unwrap())).unwrap();
            w
        })
        .collect();
    let mut rng = Lcg(14);
    let mut inside = std::collections::BTreeSet::new();
    let (mut completed, mut refused) = (0, 0);
    for pair in 0..50 {
        // Two writers of different runs, so that their serial order cannot matter.
        let mut pick = |taken: Option<usize>| loop {
            let i = rng.below(bold.len() as u64) as usize;
            let w = match rng.below(4) {
                0 => Writer::Ingest(i),
                1 if inside.contains(&i) => Writer::Retract(i),
                2 => Writer::Refresh,
                3 => Writer::Watch(i),
                _ => continue,
            };
            if w.run().is_none() || w.run() != taken {
                break w;
            }
        };
        let a = pick(None);
        let b = pick(a.run());
        let mut children = vec![(a, spawn(&a.args(&live, &bold, &watch_dirs)), Instant::now(), None)];
        std::thread::sleep(Duration::from_millis(rng.below(40)));
        children.push((b, spawn(&b.args(&live, &bold, &watch_dirs)), Instant::now(), None));
        // Each child's own running time, to see that a refusal comes at once.
        while children.iter().any(|c| c.3.is_none()) {
            for (_, child, start, took) in children.iter_mut().filter(|c| c.3.is_none()) {
                if child.try_wait().unwrap().is_some() {
                    *took = Some(start.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for (w, child, _, took) in children {
            let out: Output = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stderr.contains("panicked"), "{stderr}");
            if out.status.success() {
                completed += 1;
                let args = w.args(&replay, &bold, &watch_dirs);
                ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
                match w {
                    Writer::Ingest(i) | Writer::Watch(i) => {
                        inside.insert(i);
                    }
                    Writer::Retract(i) => {
                        inside.remove(&i);
                    }
                    Writer::Refresh => {}
                }
            } else {
                refused += 1;
                assert!(
                    stderr.contains("is being written by process"),
                    "pair {pair}: {w:?} failed otherwise than by a refusal: {stderr}"
                );
                let took = took.expect("waited for");
                assert!(took < Duration::from_secs(2), "pair {pair}: {w:?} was refused after {took:?}");
            }
        }
    }
    println!("50 pairs: {completed} commands completed, {refused} refused");
    assert!(refused > 0, "no pair overlapped: the test does not test the lock");
    ok(&["status", live.to_str().unwrap()]);
    assert_same(&live, &replay);
}

#[test]
fn a_refused_writer_fails_at_once_and_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, _, bold, store) = dataset_and_store(d);
    let s = store.to_str().unwrap();
    let folder = d.join("incoming");
    std::fs::create_dir_all(&folder).unwrap();
    // `watch` holds the lock for its whole life.
    let mut watch = spawn(&["watch".into(), s.into(), folder.display().to_string(), "--poll-ms".into(), "100".into()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(store.join(".lock")).unwrap_or_default().contains("watch") {
        assert!(Instant::now() < deadline, "watch did not take the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    for args in [
        vec!["ingest", s, "--bold", &bold[0]],
        vec!["retract", s, "--run", "sub-01/task-lpp/run-1"],
        vec!["status", s, "--refresh"],
    ] {
        let t = Instant::now();
        let out = cortexflow(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was not refused");
        assert!(stderr.contains("is being written by process") && stderr.contains("watch"), "{stderr}");
        assert!(t.elapsed() < Duration::from_secs(3), "{args:?} took {:?} to be refused", t.elapsed());
    }
    // Readers still read.
    let status = ok(&["status", s]);
    assert!(status.contains("being written by"), "{status}");
    watch.kill().unwrap();
    watch.wait().unwrap();
    // The kernel released the lock with the process: the next writer proceeds.
    ok(&["ingest", s, "--bold", &bold[0]]);
    ok(&["status", s]);
}

/// One kind of damage done to a file of a store.
#[derive(Debug, Clone, Copy)]
enum Harm {
    Truncate,
    FlipByte,
    Delete,
    Empty,
    Append,
    /// Replaced by the file of the same name of another subject.
    Swap,
    /// Replaced by a directory of the same name.
    Directory,
}

fn harm(store: &Path, rel: &str, how: Harm) {
    let path = store.join(rel);
    let bytes = std::fs::read(&path).unwrap();
    match how {
        Harm::Truncate => std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap(),
        Harm::FlipByte => {
            let mut b = bytes.clone();
            let i = b.len() * 2 / 3;
            b[i] ^= 0x5a;
            std::fs::write(&path, b).unwrap();
        }
        Harm::Delete => std::fs::remove_file(&path).unwrap(),
        Harm::Empty => std::fs::write(&path, b"").unwrap(),
        Harm::Append => {
            let mut b = bytes.clone();
            b.extend_from_slice(b"garbage");
            std::fs::write(&path, b).unwrap();
        }
        Harm::Swap => {
            let other = rel.replace("sub-02", "sub-03");
            std::fs::copy(store.join(other), &path).unwrap();
        }
        Harm::Directory => {
            std::fs::remove_file(&path).unwrap();
            std::fs::create_dir(&path).unwrap();
        }
    }
}

fn first_file(dir: &Path, suffix: &str) -> String {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    files.sort();
    files.remove(0)
}

fn outcome(args: &[&str]) -> (bool, String) {
    let out = cortexflow(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "{args:?}: {text}");
    (out.status.success(), text)
}

/// After a command that exited 0 on a damaged store, every file equals the one the same
/// command makes on the intact store, but the damaged file if the command left it alone.
fn results_not_altered(got: &Path, want: &Path, damaged: &str) {
    let (g, w) = (contents(got), contents(want));
    for (k, v) in &w {
        if k == Path::new(damaged) && g.get(k) != Some(v) {
            continue;
        }
        assert!(g.get(k) == Some(v), "{}: altered after a command that exited 0 ({damaged} damaged)", k.display());
    }
}

#[test]
fn damage_is_found_named_and_repaired_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, recipe, bold) = dataset(d);
    // The intact store holds five runs; the sixth is ingested by the matrix.
    let clean = d.join("clean");
    empty_store(&sim, &recipe, &clean);
    let c = clean.to_str().unwrap();
    ok(&["ingest", c, "--bold", &bold[..5].join(",")]);
    let retracted = "sub-01/task-lpp/run-1";
    let (after_ingest, after_retract) = (d.join("after-ingest"), d.join("after-retract"));
    copy_dir(&clean, &after_ingest);
    ok(&["ingest", after_ingest.to_str().unwrap(), "--bold", &bold[5]]);
    copy_dir(&clean, &after_retract);
    ok(&["retract", after_retract.to_str().unwrap(), "--run", retracted]);
    // A third story, extending the basis (it reads the codes, writes atoms and responses).
    let story = d.join("task-lpp_run-3.parquet");
    rewritten_table(&sim.join("truth/responses/task-lpp_run-1.parquet"), &story, "task-lpp_run-3", true);
    let story_s = story.display().to_string();
    let after_story = d.join("after-story");
    copy_dir(&clean, &after_story);
    ok(&["ingest", after_story.to_str().unwrap(), "--responses", &story_s]);
    let group = format!("group/{}", first_file(&clean.join("group"), ".nii.gz"));
    let map = format!("map/{}", first_file(&clean.join("map"), ".parquet"));
    let stats = "runs/sub-02/task-lpp/run-1.stats";
    let beta = "subjects/sub-02/beta.nii.gz";
    let kinds: Vec<(&str, Harm)> = vec![
        (stats, Harm::Truncate),
        (stats, Harm::FlipByte),
        (stats, Harm::Delete),
        (stats, Harm::Empty),
        (stats, Harm::Swap),
        (beta, Harm::Truncate),
        (beta, Harm::FlipByte),
        (beta, Harm::Delete),
        (beta, Harm::Swap),
        ("subjects/sub-02/cv_r.nii.gz", Harm::Append),
        (&group, Harm::FlipByte),
        (&group, Harm::Delete),
        (&map, Harm::Truncate),
        (&map, Harm::FlipByte),
        ("basis/codes.parquet", Harm::FlipByte),
        ("basis/codes.parquet", Harm::Delete),
        ("basis/atoms/task-lpp_run-2.parquet", Harm::FlipByte),
        ("mask.nii.gz", Harm::FlipByte),
        ("neurons.parquet", Harm::Truncate),
        ("responses/task-lpp_run-1.parquet", Harm::Append),
        ("subjects/sub-02/t.nii.gz", Harm::Directory),
    ];
    assert_eq!(kinds.len(), 21);
    for (n, (rel, how)) in kinds.iter().enumerate() {
        let what = format!("{rel} {how:?}");
        let work = d.join(format!("kind-{n}"));
        copy_dir(&clean, &work);
        harm(&work, rel, *how);
        let w = work.to_str().unwrap();
        // `status` finds and names it, and fails.
        let (fine, text) = outcome(&["status", w]);
        assert!(!fine && text.contains(rel), "{what}: status did not name it: {text}");
        // `report` refuses a damaged store.
        let (fine, text) = outcome(&["report", w, "--out", d.join("r.html").to_str().unwrap()]);
        assert!(!fine && text.contains(rel), "{what}: report: {text}");
        // ingest (a run, a story) and retract: an error naming the file, or results equal
        // to the intact store's after the same command (a story's ingest never seals
        // damage it did not write).
        for (args, want) in [
            (vec!["ingest", "STORE", "--bold", &bold[5]], &after_ingest),
            (vec!["retract", "STORE", "--run", retracted], &after_retract),
            (vec!["ingest", "STORE", "--responses", &story_s], &after_story),
        ] {
            let copy = d.join(format!("kind-{n}-{}-{}", args[0], args[2]));
            copy_dir(&work, &copy);
            let args: Vec<&str> = args.iter().map(|a| if *a == "STORE" { copy.to_str().unwrap() } else { a }).collect();
            let (fine, text) = outcome(&args);
            let name = Path::new(rel).file_name().unwrap().to_string_lossy();
            if fine {
                results_not_altered(&copy, want, rel);
            } else {
                assert!(text.contains(&*name), "{what}: {} failed without naming it: {text}", args[0]);
            }
        }
        // `status --refresh` rebuilds what the statistics make, and names the rest.
        let rebuildable = ["subjects/", "group/", "map/"].iter().any(|p| rel.starts_with(p));
        let (fine, text) = outcome(&["status", w, "--refresh"]);
        if rebuildable {
            assert!(fine, "{what}: refresh failed: {text}");
            assert_same(&work, &clean);
        } else {
            assert!(!fine && text.contains(rel), "{what}: refresh: {text}");
            let says = if rel.starts_with("runs/") { "re-ingest" } else { "cannot be rebuilt" };
            assert!(text.contains(says), "{what}: {text}");
        }
    }
}

/// A responses table of the dataset rewritten with another story name, or without its TR.
fn rewritten_table(from: &Path, to: &Path, story: &str, tr: bool) {
    use cortexflow::io::parquet::{read_responses, tr_metadata, write_table_with, Column};
    let t = read_responses(from).unwrap();
    let (n, scans) = t.values.dim();
    let meta = tr_metadata(t.tr.unwrap());
    write_table_with(
        to,
        "responses",
        Some(scans),
        vec![
            Column::U64(t.an_ids.clone()),
            Column::Utf8(vec![story.into(); n]),
            Column::OptU16(t.delays.clone()),
            Column::F32List { size: scans, values: t.values.iter().copied().collect() },
        ],
        if tr { &meta } else { &[] },
    )
    .unwrap();
}

/// The BOLD file `from` with its header's TR (pixdim[4], bytes 92..96) set to `tr`.
fn with_tr(from: &str, to: &Path, tr: f32) {
    use std::io::{Read, Write};
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(from).unwrap()).read_to_end(&mut raw).unwrap();
    raw[92..96].copy_from_slice(&tr.to_le_bytes());
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(to).unwrap(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap();
}

/// The findings of issue 14 about the store's inputs, one by one.
#[test]
fn names_clocks_pairings_and_atom_counts_are_checked() {
    use super::common::cortexflow_fails;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, recipe, bold, store) = dataset_and_store(d);
    let s = store.to_str().unwrap();
    let table = sim.join("truth/responses/task-lpp_run-1.parquet");
    // A story name is never a path: not in the store, not beside `basis`'s output.
    for story in ["../../x", "../neurons", ".hidden", "a/b"] {
        let bad = d.join("bad.parquet");
        rewritten_table(&table, &bad, story, true);
        let e = cortexflow_fails(&["ingest", s, "--responses", bad.to_str().unwrap()]);
        assert!(e.contains("is not a safe file name"), "{story}: {e}");
        let out = d.join("basis-out");
        let e = cortexflow_fails(&["basis", "--responses", bad.to_str().unwrap(), "--atoms", "2", "--out", out.to_str().unwrap()]);
        assert!(e.contains("is not a safe file name"), "{story}: {e}");
    }
    assert!(!d.join("x.parquet").exists() && !store.parent().unwrap().join("x.parquet").exists());
    ok(&["status", s]);
    // A table that does not record its TR cannot be checked against the runs.
    let no_tr = d.join("task-lpp_run-9.parquet");
    rewritten_table(&table, &no_tr, "task-lpp_run-9", false);
    let e = cortexflow_fails(&["ingest", s, "--responses", no_tr.to_str().unwrap()]);
    assert!(e.contains("records no TR"), "{e}");
    // A run at another TR, with the story's scan count.
    let fast = d.join("sub-04_task-lpp_run-1_bold.nii.gz");
    with_tr(&bold[0], &fast, 1.0);
    let e = cortexflow_fails(&["ingest", s, "--bold", fast.to_str().unwrap()]);
    assert!(e.contains("TR 1 s, but story 'task-lpp_run-1' was made at TR 2 s"), "{e}");
    // Two files of one run key.
    let copy = d.join("sub-01_task-lpp_run-1_bold.nii.gz");
    std::fs::copy(&bold[0], &copy).unwrap();
    let e = cortexflow_fails(&["ingest", s, "--bold", &format!("{},{}", bold[0], copy.display())]);
    assert!(e.contains("are both run sub-01/task-lpp/run-1"), "{e}");
    // `encode` pairs runs and regressors by story: the order given does not matter, and a
    // run whose story has no regressors while the others' do is refused.
    let atoms = |r: u32| store.join(format!("basis/atoms/task-lpp_run-{r}.parquet")).display().to_string();
    let mask = sim.join("mask.nii.gz").display().to_string();
    let encode = |regressors: String, out: &Path| {
        cortexflow(&["encode", "--regressors", &regressors, "--bold", &format!("{},{}", bold[0], bold[1]), "--mask", &mask, "--out", out.to_str().unwrap()])
    };
    let (right, swapped) = (d.join("enc-right"), d.join("enc-swapped"));
    assert!(encode(format!("{},{}", atoms(1), atoms(2)), &right).status.success());
    assert!(encode(format!("{},{}", atoms(2), atoms(1)), &swapped).status.success());
    for map in ["beta", "cv_r"] {
        let f = format!("sub-01/{map}.nii.gz");
        assert_eq!(std::fs::read(right.join(&f)).unwrap(), std::fs::read(swapped.join(&f)).unwrap(), "{f}");
    }
    let out = encode(format!("{},{}", atoms(1), atoms(1)), &d.join("enc-bad"));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("story 'task-lpp_run-2' is in none of the regressors"), "{e}");
    // `map` refuses the codes of a basis with another number of atoms than the group's.
    ok(&["ingest", s, "--bold", &bold.join(",")]);
    let b4 = d.join("basis-4");
    let tables = super::common::truth_responses(&sim, 2).join(",");
    ok(&["basis", "--responses", &tables, "--atoms", "4", "--out", b4.to_str().unwrap()]);
    let m = d.join("map-out");
    let e = cortexflow_fails(&["map", "--group", store.join("group").to_str().unwrap(), "--codes", b4.join("codes.parquet").to_str().unwrap(), "--out", m.to_str().unwrap()]);
    assert!(e.contains("its basis has 4 atoms") && e.contains("have 8"), "{e}");
    assert!(!m.join("atom_fbn.parquet").exists(), "nothing written by a refused map");
    // A store that could not be made leaves no directory behind.
    let never = d.join("never");
    let e = cortexflow_fails(&["init", "--recipe", recipe.to_str().unwrap(), "--mask", d.join("no-mask.nii.gz").to_str().unwrap(), never.to_str().unwrap()]);
    assert!(e.contains("no-mask.nii.gz"), "{e}");
    assert!(!never.exists(), "a failed init left {}", never.display());
}

/// A killed `init --mask` or first `ingest --responses` (which learns the basis) is
/// finished by running the same command again, to the bytes of an uninterrupted store:
/// what the killed command left in basis/ is learned again, never extended or sealed.
#[test]
fn killed_init_and_first_stories_are_finished_by_running_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, recipe, _) = dataset(d);
    let clean = d.join("clean");
    let t = std::time::Instant::now();
    empty_store(&sim, &recipe, &clean);
    let full_ms = t.elapsed().as_millis() as u64;
    let init = |s: &Path| -> Vec<String> {
        ["init", "--recipe", recipe.to_str().unwrap(), "--mask", sim.join("mask.nii.gz").to_str().unwrap(), s.to_str().unwrap()]
            .map(String::from)
            .to_vec()
    };
    let stories = |s: &Path| -> Vec<String> {
        let tables = super::common::truth_responses(&sim, 2).join(",");
        ["ingest", s.to_str().unwrap(), "--responses", &tables, "--neurons", sim.join("truth/neurons.parquet").to_str().unwrap()]
            .map(String::from)
            .to_vec()
    };
    let mut kills = 0;
    for seed in 1..=5u64 {
        let store = d.join(format!("killed-{seed}"));
        // After each kill `status` answers, without panicking (it may say "interrupted").
        let answers = || assert!(!outcome(&["status", store.to_str().unwrap()]).1.is_empty());
        kills += kill_until_done(&init(&store), seed, full_ms / 3, 4, answers);
        kills += kill_until_done(&stories(&store), seed * 7, full_ms, 6, answers);
        ok(&["status", store.to_str().unwrap()]);
        assert_same(&clean, &store);
    }
    println!("{kills} kills, every store finished to the clean bytes");
    assert!(kills > 0, "no command was killed: the test does not test resumption");
}

/// The hostile review's findings: a typo naming a folder that is not a store deletes
/// nothing; a manifest naming paths outside the store is refused; the lock file is never
/// followed through a symlink; watch started elsewhere does not take relative paths for
/// deleted runs; a missing checksum is named.
#[test]
fn writers_stay_inside_their_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, recipe, _) = dataset(d);
    // Not a store: its `.tmp-*` files (and those behind a symlink) are not ours to delete.
    let home = d.join("home");
    std::fs::create_dir_all(home.join("sub")).unwrap();
    let outside = d.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    for f in [home.join(".tmp-editor"), home.join("sub/.tmp-build"), outside.join(".tmp-x")] {
        std::fs::write(f, "keep").unwrap();
    }
    std::os::unix::fs::symlink(&outside, home.join("link")).unwrap();
    let h = home.to_str().unwrap();
    for args in [vec!["retract", h, "--run", "sub-01/task-lpp/run-1"], vec!["status", h, "--refresh"]] {
        let (fine, text) = outcome(&args);
        assert!(!fine && text.contains("not a cortexflow store"), "{text}");
    }
    for f in [home.join(".tmp-editor"), home.join("sub/.tmp-build"), outside.join(".tmp-x")] {
        assert!(f.is_file(), "{} was deleted", f.display());
    }
    assert!(!home.join(".lock").exists(), "a lock file left in a folder that is not a store");
    // Runs ingested with paths relative to one folder; watch started from another.
    let store = d.join("s");
    empty_store(&sim, &recipe, &store);
    let rel: Vec<String> = (1..=3).map(|s| format!("sim/sub-0{s}/func/sub-0{s}_task-lpp_run-1_bold.nii.gz")).collect();
    let o = Command::new(env!("CARGO_BIN_EXE_cortexflow"))
        .current_dir(d)
        .args(["ingest", store.to_str().unwrap(), "--bold", &rel.join(",")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("sim")).unwrap();
    let mut watch = Command::new(env!("CARGO_BIN_EXE_cortexflow"))
        .current_dir(&elsewhere)
        .args(["watch", store.to_str().unwrap(), "sim", "--poll-ms", "100", "--updates", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Watching has begun once it says so (start-up done); then ten polls must find nothing
    // gone (with the bug, the first poll retracts every run and watch exits after 1 update).
    let mut out = std::io::BufReader::new(watch.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("watching") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0, "watch ended before watching");
    }
    std::thread::sleep(Duration::from_millis(1000));
    assert!(watch.try_wait().unwrap().is_none(), "watch made an update: it took runs for gone");
    watch.kill().ok();
    watch.wait().unwrap();
    let status = ok(&["status", store.to_str().unwrap()]);
    assert!(status.contains("3 runs of 3 subjects"), "watch retracted runs it did not own: {status}");
    // The lock file is never followed through a symlink.
    let precious = d.join("precious.txt");
    std::fs::write(&precious, "precious").unwrap();
    std::fs::remove_file(store.join(".lock")).ok();
    std::os::unix::fs::symlink(&precious, store.join(".lock")).unwrap();
    let (fine, text) = outcome(&["status", store.to_str().unwrap(), "--refresh"]);
    assert!(!fine && text.contains(".lock"), "{text}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious");
    std::fs::remove_file(store.join(".lock")).unwrap();
    // A manifest naming a path outside the store is refused, and deletes nothing.
    let victim = d.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let manifest = store.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["dirty"] = serde_json::json!(["01/../../../victim"]);
    std::fs::write(&manifest, m.to_string()).unwrap();
    let (fine, out) = outcome(&["status", store.to_str().unwrap(), "--refresh"]);
    assert!(!fine && out.contains("is not a safe name"), "{out}");
    assert!(victim.is_dir());
    // A checksum taken out of the manifest: status names the file instead of "all intact".
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["files"].as_object_mut().unwrap().remove("subjects/sub-02/beta.nii.gz").unwrap();
    std::fs::write(&manifest, m.to_string()).unwrap();
    let (fine, out) = outcome(&["status", store.to_str().unwrap()]);
    assert!(!fine && out.contains("subjects/sub-02/beta.nii.gz: has no checksum"), "{out}");
    ok(&["status", store.to_str().unwrap(), "--refresh"]);
    ok(&["status", store.to_str().unwrap()]);
}
