//! Paths and helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cortexflow::model::{Tap, TapRequest};

/// The project's real test data, vendored under `tests/data` with each source's
/// licence note (`ATTRIBUTION.md` beside the files), in the layout of the team's shared
/// data folder: `stimuli/`, `atlases/`, `fmri/`.
pub fn test_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures")
}

pub fn fixture_json(name: &str) -> serde_json::Value {
    let path = fixtures().join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// A little-endian float32 fixture file (as the fixture scripts write them).
pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A JSON array of token ids.
pub fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

/// Runs the `cortexflow` binary.
pub fn cortexflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cortexflow"))
        .args(args)
        .output()
        .expect("run cortexflow")
}

/// Runs `cortexflow` expecting success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = cortexflow(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `cortexflow` expecting failure; returns stderr and checks it is one clean error.
pub fn cortexflow_fails(args: &[&str]) -> String {
    let out = cortexflow(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1 for {args:?}, stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic for {args:?}: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors.len(),
        1,
        "one error line expected for {args:?}: {stderr}"
    );
    errors[0].to_string()
}

/// Runs a Python check script when Python with the named modules is available. In CI
/// (`CORTEXFLOW_REQUIRE_PYTHON=1`, set by `.ci/run`) a missing module is a failure;
/// elsewhere the check is reported as not run.
pub fn python_check(script: &str, args: &[&Path]) -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/checks")
        .join(script);
    let probe = Command::new("python3")
        .args(["-c", "import numpy, nibabel, pyarrow"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(std::env::var_os("CORTEXFLOW_REQUIRE_PYTHON").is_none(), "python3 with numpy, nibabel and pyarrow is required (CORTEXFLOW_REQUIRE_PYTHON is set)");
        eprintln!(
            "note: {} not run: python3 with numpy, nibabel, pyarrow not found",
            script.display()
        );
        return false;
    }
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// |a − b| ≤ tol·max(1, |b|).
pub fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

/// The record batches of a Parquet file, read with the arrow reader (not cortexflow's).
pub fn record_batches(path: &Path) -> impl Iterator<Item = arrow_array::RecordBatch> {
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap()
    .map(|b| b.unwrap())
}

/// Every row of a Parquet table with its scalar cells rendered as text (`null` for nulls;
/// list columns are skipped), read with the arrow reader rather than cortexflow's own.
pub fn table_cells(path: &Path) -> Vec<Vec<String>> {
    use arrow_array::{
        Array, BooleanArray, Float32Array, Float64Array, Int32Array, StringArray, UInt16Array,
        UInt32Array, UInt64Array,
    };
    use arrow_schema::DataType;
    let mut rows = Vec::new();
    for batch in record_batches(path) {
        for r in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .filter(|c| !matches!(c.data_type(), DataType::FixedSizeList(..)))
                    .map(|c| {
                        if c.is_null(r) {
                            return "null".to_string();
                        }
                        let a = c.as_any();
                        macro_rules! cell {
                            ($($t:ty),*) => {
                                $(if let Some(v) = a.downcast_ref::<$t>() {
                                    return v.value(r).to_string();
                                })*
                            };
                        }
                        cell!(
                            StringArray,
                            BooleanArray,
                            UInt16Array,
                            UInt32Array,
                            UInt64Array,
                            Int32Array,
                            Float32Array,
                            Float64Array
                        );
                        panic!("{}: column type {:?}", path.display(), c.data_type())
                    })
                    .collect(),
            );
        }
    }
    rows
}

/// The simulator's ground-truth responses tables of runs 1..=runs, as CLI arguments.
pub fn truth_responses(sim: &Path, runs: usize) -> Vec<String> {
    (1..=runs)
        .map(|r| {
            sim.join(format!("truth/responses/task-lpp_run-{r}.parquet"))
                .display()
                .to_string()
        })
        .collect()
}

/// A recipe reading stories with `model` (MiniLM's ffn.out of layers 4–5, 8 atoms), under
/// `dir`.
pub fn model_recipe(dir: &Path, model: &Path) -> PathBuf {
    let path = dir.join("model.toml");
    std::fs::write(
        &path,
        format!(
            "[model]\npath = \"{}\"\ntaps = [\"ffn.out\"]\nlayers = \"4-5\"\n[basis]\natoms = 8\n",
            model.display()
        ),
    )
    .unwrap();
    path
}

/// The stimuli of a simulated dataset's first `runs` LPP sections.
pub fn lpp_stimuli(sim: &Path, runs: usize) -> Vec<String> {
    (1..=runs)
        .map(|i| {
            sim.join(format!("stimuli/task-lpp_run-{i}.tsv"))
                .display()
                .to_string()
        })
        .collect()
}

/// A small seeded generator (a test must choose the same moments and commands on every
/// machine).
pub struct Lcg(pub u64);

impl Lcg {
    /// The next value in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Runs `cortexflow args` and kills it at seeded random moments within `full_ms` until a
/// run completes on its own, calling `after_kill` after each kill; after `tries` kills, one
/// run goes to the end. Returns the number of kills.
pub fn kill_until_done(args: &[String], seed: u64, full_ms: u64, tries: usize, after_kill: impl Fn()) -> usize {
    use std::process::Stdio;
    let mut rng = Lcg(seed);
    for kills in 0..tries {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cortexflow"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.below(full_ms.max(10))));
        if child.try_wait().unwrap().is_some_and(|s| s.success()) {
            return kills;
        }
        child.kill().ok();
        child.wait().unwrap();
        after_kill();
    }
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    tries
}

/// `simulate` (seed, subjects × 2 runs, no jitter) into DIR/sim, then `run` of the shipped
/// recipe `dataflows/<recipe>.toml` on it (with the simulator's responses) into DIR/store;
/// returns the recipe and the two folders.
pub fn simulated_store(dir: &Path, seed: u64, subjects: usize, recipe: &str) -> (cortexflow::store::Recipe, PathBuf, PathBuf) {
    use cortexflow::engine::cluster::Cluster;
    use cortexflow::engine::update::{self, RunRequest};
    let (sim, store) = (dir.join("sim"), dir.join("store"));
    let (seed, subjects) = (seed.to_string(), subjects.to_string());
    ok(&["simulate", "--out", sim.to_str().unwrap(), "--seed", &seed, "--subjects", &subjects, "--runs", "2", "--jitter", "0"]);
    let recipe = cortexflow::store::Recipe::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("dataflows/{recipe}.toml"))).unwrap();
    let req = RunRequest {
        data: sim.clone(),
        space: None,
        responses: Some(sim.join("truth/responses")),
        mask_threshold: 0.5,
    };
    update::run_all(&recipe, &req, &store, &Cluster::default()).unwrap();
    (recipe, sim, store)
}

/// Pearson r of two series, two-pass (the brute-force reference of the tests).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "series lengths");
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let syy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    sxy / (sxx * syy).sqrt()
}

/// The worst |ours − transformers| / RMS over every layer, tap, token and unit of the
/// tap fixture `dir/name.{json,f32}` (the layout of make_rope_fixtures.py), running the
/// checkpoint in `folder` (the fixture's own, or an altered copy).
pub fn tap_error(dir: &Path, name: &str, folder: &Path) -> f64 {
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap(),
    )
    .unwrap();
    let blob = read_f32(&dir.join(format!("{name}.f32")));
    let ids = json_ids(&fx["ids"]);
    let layers = fx["layers"].as_u64().unwrap() as usize;
    let m = cortexflow::model::load(folder).unwrap();
    assert_eq!(m.n_layers(), layers);
    let request = TapRequest::new((0..layers).collect(), Tap::ALL.to_vec());
    let outputs = m.forward_taps(&ids, &request).unwrap();
    let mut offset = 0;
    let mut worst: f64 = 0.0;
    for layer in 0..layers {
        for tap in [Tap::FfnOut, Tap::FfnInner] {
            let width = m.tap_width(tap);
            let n = ids.len() * width;
            let theirs = &blob[offset..offset + n];
            offset += n;
            let rms = (theirs.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64).sqrt();
            let ours: Vec<f32> = outputs
                .iter()
                .find(|o| o.layer == layer && o.tap == tap)
                .unwrap()
                .values
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(ours.len(), n, "{name} layer {layer} {tap:?}: shape");
            let err = ours
                .iter()
                .zip(theirs)
                .map(|(&a, &b)| (a as f64 - b as f64).abs())
                .fold(0.0, f64::max)
                / rms;
            worst = worst.max(err);
        }
    }
    assert_eq!(offset, blob.len(), "{name}: fixture fully compared");
    worst
}

/// A copy of the checkpoint folder `src` (model.safetensors, tokenizer.json) whose
/// config.json is changed by `edit`.
pub fn altered_checkpoint(src: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}
