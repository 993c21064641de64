//! The analysis store (issue 7): incremental ingest equals one batch `run`, a retracted run
//! equals one never ingested, a killed `ingest` resumes to the same store, and bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cortexflow::engine::cluster::Cluster;
use cortexflow::engine::update::{self, IngestRequest};
use cortexflow::store::{Recipe, Store};

use super::common::{cortexflow_fails, kill_until_done, lpp_stimuli, model_recipe, ok, truth_responses};

/// A small simulated dataset (3 subjects × 2 runs × 100 scans) and a recipe with 8 atoms.
pub(super) fn dataset(dir: &Path) -> (PathBuf, PathBuf, Vec<String>) {
    let sim = dir.join("sim");
    ok(&[
        "simulate",
        "--out",
        sim.to_str().unwrap(),
        "--subjects",
        "3",
        "--runs",
        "2",
        "--scans",
        "100",
        "--seed",
        "5",
        "--jitter",
        "0",
    ]);
    let recipe = dir.join("recipe.toml");
    std::fs::write(
        &recipe,
        "description = \"store test\"\n[basis]\natoms = 8\n",
    )
    .unwrap();
    let mut bold: Vec<String> = (1..=3)
        .flat_map(|s| {
            (1..=2).map(move |r| format!("sub-0{s}/func/sub-0{s}_task-lpp_run-{r}_bold.nii.gz"))
        })
        .map(|p| sim.join(p).display().to_string())
        .collect();
    bold.sort();
    (sim, recipe, bold)
}

/// `run` on a simulation: its own responses.
pub(super) fn run_request(sim: &Path) -> update::RunRequest {
    update::RunRequest {
        data: sim.to_path_buf(),
        space: None,
        responses: Some(sim.join("truth/responses")),
        mask_threshold: 0.5,
    }
}

/// The dataset under `d` and a store `d/s` holding its stories and mask, no runs.
pub(super) fn dataset_and_store(d: &Path) -> (PathBuf, PathBuf, Vec<String>, PathBuf) {
    let (sim, recipe, bold) = dataset(d);
    let store = d.join("s");
    empty_store(&sim, &recipe, &store);
    (sim, recipe, bold, store)
}

/// A fresh store with the dataset's stories and mask, no runs.
pub(super) fn empty_store(sim: &Path, recipe: &Path, store: &Path) {
    let s = store.to_str().unwrap();
    ok(&[
        "init",
        "--recipe",
        recipe.to_str().unwrap(),
        "--mask",
        sim.join("mask.nii.gz").to_str().unwrap(),
        s,
    ]);
    let tables = truth_responses(sim, 2);
    ok(&[
        "ingest",
        s,
        "--responses",
        &tables.join(","),
        "--neurons",
        sim.join("truth/neurons.parquet").to_str().unwrap(),
    ]);
}

/// Every file of a store by relative path, except the manifest (its epochs count the
/// steps taken), group.json (it names the store's own mask path) and the lock file (it
/// names the last writer's process).
pub(super) fn contents(store: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                let hidden = p.file_name().unwrap().to_string_lossy().starts_with('.');
                if !hidden && rel != Path::new("manifest.json") && rel != Path::new("group/group.json") {
                    out.insert(rel, std::fs::read(&p).unwrap());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(store, store, &mut out);
    out
}

pub(super) fn assert_same(a: &Path, b: &Path) {
    let (ca, cb) = (contents(a), contents(b));
    assert_eq!(
        ca.keys().collect::<Vec<_>>(),
        cb.keys().collect::<Vec<_>>(),
        "same files"
    );
    for (k, v) in &ca {
        assert!(v == &cb[k], "{} differs", k.display());
    }
}

/// The store's one-shot commands in this process, through the library (the command line
/// is tested elsewhere; a separate process is the point only of the kill test).
fn ingest_bold(store: &Path, bold: &[String]) -> String {
    let req = IngestRequest {
        bold: bold.iter().map(PathBuf::from).collect(),
        ..IngestRequest::default()
    };
    update::ingest(&Cluster::default(), store, req)
        .unwrap_or_else(|e| panic!("{e}"))
        .join("\n")
}

fn retract(store: &Path, key: &str) -> String {
    update::retract(&Cluster::default(), store, key)
        .unwrap_or_else(|e| panic!("{e}"))
        .join("\n")
}

/// Runs ingested one at a time in a shuffled order give the bytes of `run` on all of
/// them; a retracted run gives the bytes of never ingesting it; re-ingesting is a no-op.
#[test]
fn incremental_equals_batch_and_retract_equals_never() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, recipe, bold) = dataset(d);
    let batch = d.join("batch");
    let r = Recipe::load(&recipe).unwrap();
    update::run_all(&r, &run_request(&sim), &batch, &Cluster::default()).unwrap();
    assert!(batch.join("map/atom_fbn.parquet").is_file());

    let inc = d.join("inc");
    empty_store(&sim, &recipe, &inc);
    // bold: sub-01 run-1, run-2, sub-02 run-1, run-2, sub-03 run-1, run-2. After the
    // second ingest the group (01, 03) has stored sums. An update uses them when they
    // need fewer maps read than adding every stored subject: the refitted subject's old
    // β, and sub-03 when sub-02's arrival moves it from position 1 (half B) to 2 (half A).
    // With two subjects, refitting one reads one map either way (the sums are not used).
    let mut said = Vec::new();
    for i in [4, 1, 5, 0, 3, 2] {
        said.push(ingest_bold(&inc, &bold[i..=i]));
    }
    assert!(!said[0].contains("stored sums") && !said[0].contains("sums rebuilt"), "{}", said[0]);
    for n in [1, 2, 3] {
        assert!(said[n].contains("group: sums rebuilt from 1 stored subject map(s)"), "update {n}: {}", said[n]);
    }
    for n in [4, 5] {
        let want = "group: updated from its stored sums (1 stored subject map(s) read)";
        assert!(said[n].contains(want), "update {n}: {want} not in {}", said[n]);
    }
    assert_same(&batch, &inc);
    let again = ingest_bold(&inc, &bold[0..1]);
    assert!(again.contains("already ingested (unchanged)"), "{again}");
    assert_same(&batch, &inc);

    // Retract sub-02's second run; compare with a store that never had it.
    let out = retract(&inc, "sub-02/task-lpp/run-2");
    assert!(out.contains("retracted"), "{out}");
    let never = d.join("never");
    empty_store(&sim, &recipe, &never);
    let without: Vec<String> = bold
        .iter()
        .filter(|b| !b.contains("sub-02_task-lpp_run-2"))
        .cloned()
        .collect();
    ingest_bold(&never, &without);
    assert_same(&never, &inc);
    let status = Store::open_reader(&inc).unwrap().status();
    assert!(
        status.contains("5 runs of 3 subjects") && status.contains("results: up to date"),
        "{status}"
    );
    // The size line adds up the files on disk: the 5 runs' statistics, each a fifth.
    let stats: u64 = contents(&inc).iter().filter(|(p, _)| p.starts_with("runs")).map(|(_, b)| b.len() as u64).sum();
    let human = |b: u64| cortexflow::io::human_bytes(u128::from(b));
    let want = format!("run statistics {} ({} each)", human(stats), human(stats / 5));
    assert!(status.contains(&want), "{want} not in {status}");

    // Retracting every run of a subject removes its fit (from the sums it would take its
    // old β out and move sub-03 back to half B: 2 maps, as many as adding 01 and 03, so
    // the sums are rebuilt); below 2 subjects, the group goes.
    let out = retract(&inc, "sub-02/task-lpp/run-1");
    assert!(out.contains("group: sums rebuilt from 2 stored subject map(s)"), "{out}");
    assert!(!inc.join("subjects/sub-02").exists());
    let two = d.join("two");
    empty_store(&sim, &recipe, &two);
    ingest_bold(&two, &bold.iter().filter(|b| !b.contains("sub-02_")).cloned().collect::<Vec<_>>());
    assert_same(&two, &inc);
    retract(&inc, "sub-03/task-lpp/run-1");
    let out = retract(&inc, "sub-03/task-lpp/run-2");
    assert!(out.contains("group maps need at least 2"), "{out}");
    assert!(!inc.join("group").exists() && !inc.join("map").exists());
}

/// Sums that cannot be trusted are not used: damaged bytes (the checksum differs), or a
/// subject map changed behind them (a killed update); the group is rebuilt from every
/// stored map instead, to the same bytes.
#[test]
fn untrusted_group_sums_are_rebuilt_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, recipe, bold, inc) = dataset_and_store(d);
    ingest_bold(&inc, &bold);
    let data = inc.join("group/sums.bin");
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&data, &bytes).unwrap();
    let out = retract(&inc, "sub-02/task-lpp/run-2");
    assert!(out.contains("group: sums rebuilt from 2 stored subject map(s)"), "{out}");
    let never = d.join("never");
    empty_store(&sim, &recipe, &never);
    ingest_bold(&never, &bold.iter().filter(|b| !b.contains("sub-02_task-lpp_run-2")).cloned().collect::<Vec<_>>());
    assert_same(&never, &inc);
    // The index names each subject's map checksum as it entered: edit one entry, and the
    // sums no longer describe the maps.
    let index = inc.join("group/sums.json");
    let text = std::fs::read_to_string(&index).unwrap();
    let edited = text.replacen("\"01\",\n      \"", "\"01\",\n      \"0", 1);
    assert_ne!(edited, text, "{text}");
    std::fs::write(&index, edited).unwrap();
    let out = ingest_bold(&inc, &bold[3..=3]);
    assert!(out.contains("group: sums rebuilt from 2 stored subject map(s)"), "{out}");
    // A map rewritten and sealed after the sums (as a command killed between a subject's
    // maps and the group leaves it): same values, other bytes (gzip level 9), so its
    // checksum is not the one the sums name. The sums are not used, and the result is
    // still exact.
    let lock = cortexflow::store::WriteLock::acquire(&inc).unwrap();
    let mut store = Store::open(&inc).unwrap();
    let map = store.paths().subject_map("01", store.group_map());
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(std::fs::File::open(&map).unwrap()), &mut raw).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    std::fs::write(&map, gz.finish().unwrap()).unwrap();
    store.seal(&map).unwrap();
    store.save().unwrap();
    drop(lock);
    let out = retract(&inc, "sub-02/task-lpp/run-2");
    assert!(out.contains("group: sums rebuilt from 2 stored subject map(s)"), "{out}");
    // The group and the mapping equal the store that never had the run (sums.json names
    // the re-gzipped map's checksum, so it differs by that).
    let (want, got) = (contents(&never), contents(&inc));
    for (k, v) in want.iter().filter(|(k, _)| (k.starts_with("group") || k.starts_with("map")) && k.as_path() != Path::new("group/sums.json")) {
        assert!(got.get(k) == Some(v), "{} differs", k.display());
    }
}

/// Every group option keeps updates exact: with each estimator, and with sign-flip
/// permutations, runs ingested one at a time equal one batch `run`, and (where the recipe
/// a retracted run equals one never ingested. Under the ridge estimator a subject with
/// one run stays out of the group until its second arrives.
#[test]
fn every_group_option_keeps_updates_exact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, recipe, bold) = dataset(d);
    let base = std::fs::read_to_string(&recipe).unwrap();
    for (name, group) in [
        ("ols-permutations", "estimator = \"ols\"\npermutations = 99\npermutation_seed = 3\n"),
        ("marginal", "estimator = \"marginal\"\n"),
        ("ridge", "estimator = \"ridge\"\n"),
    ] {
        let recipe = d.join(format!("{name}.toml"));
        std::fs::write(&recipe, format!("{base}[group]\n{group}")).unwrap();
        let batch = d.join(format!("{name}-batch"));
        let r = Recipe::load(&recipe).unwrap();
        update::run_all(&r, &run_request(&sim), &batch, &Cluster::default()).unwrap();
        let inc = d.join(format!("{name}-inc"));
        empty_store(&sim, &recipe, &inc);
        for i in [3, 0, 5, 1, 4, 2] {
            ingest_bold(&inc, &bold[i..=i]);
        }
        assert_same(&batch, &inc);
        let out = retract(&inc, "sub-02/task-lpp/run-2");
        if name == "ridge" {
            assert!(out.contains("sub-02: 1 runs") && out.contains("out of the group"), "{out}");
            let info = std::fs::read_to_string(inc.join("group/group.json")).unwrap();
            assert!(!info.contains("\"02\""), "{info}");
        }
        let never = d.join(format!("{name}-never"));
        empty_store(&sim, &recipe, &never);
        let without: Vec<String> = bold.iter().filter(|b| !b.contains("sub-02_task-lpp_run-2")).cloned().collect();
        ingest_bold(&never, &without);
        assert_same(&never, &inc);
    }
    // Permutations leave their family-wise p beside the maps, and the rule in group.json.
    let info = std::fs::read_to_string(d.join("ols-permutations-batch/group/group.json")).unwrap();
    assert!(info.contains("max-t fwer 0.05 (99 sign flips)") && info.contains("\"estimator\": \"ols\""), "{info}");
    assert!(d.join("ols-permutations-batch/group/p_fwer.nii.gz").is_file());
    assert!(d.join("marginal-batch/subjects/sub-01/beta_marginal.nii.gz").is_file());
}

/// `ingest` killed with SIGKILL at pseudo-random moments (several seeds), then restarted
/// until it succeeds, ends with the store of an uninterrupted ingest; between kills the
/// store always opens (`status` works).
#[test]
fn a_killed_ingest_resumes_to_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, recipe, bold) = dataset(d);
    let whole = d.join("whole");
    empty_store(&sim, &recipe, &whole);
    let started = std::time::Instant::now();
    ok(&["ingest", whole.to_str().unwrap(), "--bold", &bold.join(",")]);
    let full_ms = started.elapsed().as_millis() as u64;
    for seed in 1..=4u64 {
        let store = d.join(format!("killed-{seed}"));
        empty_store(&sim, &recipe, &store);
        let args: Vec<String> = ["ingest", store.to_str().unwrap(), "--bold", &bold.join(",")]
            .map(String::from)
            .to_vec();
        let readable = || {
            let status = ok(&["status", store.to_str().unwrap()]);
            assert!(status.contains("runs of"), "{status}");
        };
        let kills = kill_until_done(&args, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), full_ms, 6, readable);
        println!("seed {seed}: {kills} kills");
        assert_same(&whole, &store);
    }
}

#[test]
fn store_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, _, bold, store) = dataset_and_store(d);
    let s = store.to_str().unwrap();
    let e = cortexflow_fails(&["retract", s, "--run", "sub-09/task-lpp/run-1"]);
    assert!(e.contains("no run 'sub-09/task-lpp/run-1'"), "{e}");
    // Another recipe on the same directory.
    let other = d.join("other.toml");
    std::fs::write(&other, "[basis]\natoms = 9\n").unwrap();
    let e = cortexflow_fails(&["init", "--recipe", other.to_str().unwrap(), s]);
    assert!(e.contains("a store made with another recipe"), "{e}");
    // A store of another format.
    let manifest = std::fs::read_to_string(store.join("manifest.json")).unwrap();
    std::fs::write(
        store.join("manifest.json"),
        manifest.replace("\"format\": 3", "\"format\": 99"),
    )
    .unwrap();
    let e = cortexflow_fails(&["status", s]);
    assert!(e.contains("store format 99"), "{e}");
    std::fs::write(store.join("manifest.json"), &manifest).unwrap();
    // A BOLD run whose story is not in.
    let stray = d.join("sub-01_task-other_run-1_bold.nii.gz");
    std::fs::copy(&bold[0], &stray).unwrap();
    let e = cortexflow_fails(&["ingest", s, "--bold", stray.to_str().unwrap()]);
    assert!(e.contains("no story 'task-other_run-1'"), "{e}");
    let e = cortexflow_fails(&["ingest", s]);
    assert!(e.contains("nothing to ingest"), "{e}");
    let e = cortexflow_fails(&["status", d.join("nowhere").to_str().unwrap()]);
    assert!(e.contains("not a cortexflow store"), "{e}");
    // A bad recipe.
    std::fs::write(&other, "[basis]\nmethod = \"svd\"\n").unwrap();
    let e = cortexflow_fails(&[
        "init",
        "--recipe",
        other.to_str().unwrap(),
        d.join("t").to_str().unwrap(),
    ]);
    assert!(
        e.contains("other.toml:2: not a valid recipe") && e.contains("unknown variant `svd`"),
        "{e}"
    );
    // A checked value: the error names the setting, and says it once (no repeated cause).
    std::fs::write(&other, "[group]\nfdr = 2.0\n").unwrap();
    let e = cortexflow_fails(&["init", "--recipe", other.to_str().unwrap(), d.join("t").to_str().unwrap()]);
    assert_eq!(e.matches("group.fdr = 2").count(), 1, "{e}");
}

/// `ingest --stimulus` streams the stories through the recipe's model (real MiniLM):
/// the store's responses and neurons tables are those of the `responses` command with
/// the same settings, and the runs then ingest as usual.
#[test]
fn ingest_stimulus_runs_the_recipes_model() {
    let Some(model) = super::models::model_path("all-MiniLM-L6-v2") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, _, bold) = dataset(d);
    let recipe = model_recipe(d, &model);
    let store = d.join("s");
    let s = store.to_str().unwrap();
    let mask = sim.join("mask.nii.gz");
    ok(&[
        "init",
        "--recipe",
        recipe.to_str().unwrap(),
        "--mask",
        mask.to_str().unwrap(),
        s,
    ]);
    let stimuli = lpp_stimuli(&sim, 2);
    let out = ok(&[
        "ingest",
        s,
        "--stimulus",
        &stimuli.join(","),
        "--tr",
        "2",
        "--n-scans",
        "100",
        "--bold",
        &bold[..2].join(","),
    ]);
    assert!(out.contains("sub-01: 2 runs"), "{out}");
    let reference = d.join("ref");
    ok(&[
        "responses",
        "--model",
        model.to_str().unwrap(),
        "--taps",
        "ffn.out",
        "--layers",
        "4-5",
        "--stimulus",
        &stimuli.join(","),
        "--tr",
        "2",
        "--n-scans",
        "100",
        "--out",
        reference.to_str().unwrap(),
    ]);
    for story in ["task-lpp_run-1", "task-lpp_run-2"] {
        let name = format!("responses/{story}.parquet");
        assert!(
            std::fs::read(store.join(&name)).unwrap()
                == std::fs::read(reference.join(&name)).unwrap(),
            "{name} differs"
        );
    }
    assert!(
        std::fs::read(store.join("neurons.parquet")).unwrap()
            == std::fs::read(reference.join("neurons.parquet")).unwrap()
    );
    let e = cortexflow_fails(&["ingest", s, "--stimulus", &stimuli[0], "--n-scans", "100"]);
    assert!(e.contains("--stimulus needs --tr"), "{e}");
}
