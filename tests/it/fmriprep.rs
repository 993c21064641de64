//! Real-data inputs on the main path (issue 15): fMRIPrep derivatives discovered (spaces,
//! brain masks, confounds, events in the raw dataset), confounds and censoring in the
//! store, and recovery on `simulate --layout fmriprep`, whose artefacts act on the BOLD.

use std::path::{Path, PathBuf};

use cortexflow::engine::cluster::Cluster;
use cortexflow::engine::update::{self, RunRequest};
use cortexflow::io::{bids, stimulus};
use cortexflow::io::nifti::{self, Mask};
use cortexflow::stages::encode::reduce_run;
use cortexflow::stages::recovery;
use cortexflow::store::Recipe;
use ndarray::{Array2, Axis};

use super::common::{cortexflow_fails, ok, test_data};

fn simulate(out: &Path, subjects: usize, scans: Option<usize>, seed: u64, null: bool) {
    let (subjects, seed, scans) = (subjects.to_string(), seed.to_string(), scans.map(|s| s.to_string()));
    let mut args = vec!["simulate", "--layout", "fmriprep", "--out", out.to_str().unwrap(), "--subjects", &subjects, "--runs", "2", "--seed", &seed];
    if let Some(s) = &scans {
        args.extend(["--scans", s]);
    }
    if null {
        args.push("--null");
    }
    ok(&args);
}

fn recipe(text: &str) -> Recipe {
    toml::from_str(text).unwrap()
}

/// dataflows/fmriprep.toml's preprocessing at 16 atoms: fMRIPrep's cosines, 24 motion
/// parameters, aCompCor, scrubbing, 8 mm smoothing.
const WITH_CONFOUNDS: &str = "[basis]\natoms = 16\n[encoding]\nhigh_pass = 0.0\nsmoothing_fwhm = 8.0\n[confounds]\nstrategy = [\"high_pass\", \"motion\", \"compcor\", \"scrub\"]\n";
/// The same smoothing, no confounds.
const WITHOUT: &str = "[basis]\natoms = 16\n[encoding]\nsmoothing_fwhm = 8.0\n";

fn run(recipe_text: &str, data: &Path, out: &Path) -> Vec<String> {
    let req = RunRequest {
        data: data.to_path_buf(),
        space: None,
        responses: None,
        mask_threshold: 0.5,
    };
    update::run_all(&recipe(recipe_text), &req, out, &Cluster::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// A run with censored scans is the run with those scans removed: its statistics equal, bit
/// for bit, those of a BOLD file and design holding only the kept scans (real EPI data).
#[test]
fn censored_scans_make_a_run_with_fewer_rows() {
    let src = test_data().join("fmri/nitime/fmri1.nii.gz");
    let img = nifti::read_image(&src).unwrap();
    let mask = Mask::full(&img.header.grid);
    let t = img.data.dim().3;
    let keep: Vec<usize> = (0..t).filter(|s| ![0, 1, 7, 8, 20, 33].contains(s)).collect();
    let dm = Array2::from_shape_fn((t, 5), |(s, c)| match c {
        4 => 1.0,
        _ => ((s * (c + 3)) as f64 * 0.37).sin() + 0.1 * c as f64,
    });
    let dir = tempfile::tempdir().unwrap();
    let fewer = dir.path().join("fewer.nii.gz");
    nifti::write_map(&fewer, &img.header.grid, &img.data.select(Axis(3), &keep), Some(1.35)).unwrap();
    for (zscore, fwhm) in [(true, None), (false, None), (true, Some(5.0))] {
        let a = reduce_run(&src, (&src, &mask), &dm, 2, Some(&keep), zscore, fwhm).unwrap();
        let b = reduce_run(&fewer, (&fewer, &mask), &dm.select(Axis(0), &keep), 2, None, zscore, fwhm).unwrap();
        assert_eq!(a.valid, b.valid);
        assert_eq!(a.stats.n, keep.len());
        assert_eq!((&a.stats.gram, &a.stats.xty, &a.stats.sum_y2), (&b.stats.gram, &b.stats.xty, &b.stats.sum_y2));
    }
    let all: Vec<usize> = (0..3).collect();
    let e = reduce_run(&src, (&src, &mask), &dm, 2, Some(&all), true, None).err().unwrap().to_string();
    assert!(e.contains("3 scans left after censoring, not more than the design's 5 columns"), "{e}");
}

/// On fMRIPrep-style derivatives at the default jitter with 6 subjects, the recipe's
/// confounds, scrubbing and smoothing assign every planted network to its Yeo network and
/// nothing else; the same smoothing without confounds does not (the non-steady-state
/// scans, motion, spikes and physiological noise make false maps and misses).
#[test]
fn confounds_recover_the_planted_networks_on_derivatives() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    simulate(&sim, 6, None, 1, false);
    let with = dir.path().join("with");
    let lines = run(WITH_CONFOUNDS, &sim, &with).join("\n");
    assert!(lines.contains("group mask:"), "{lines}");
    let scores = recovery::score(&sim, &with).unwrap();
    let wrong = recovery::false_assignments(&sim, &with).unwrap();
    let shown: Vec<String> = scores.iter().map(|s| s.line()).collect();
    assert!(scores.iter().all(|s| !s.atoms.is_empty()), "{shown:#?}");
    assert!(wrong.is_empty(), "{wrong:?}");

    let without = dir.path().join("without");
    run(WITHOUT, &sim, &without);
    let scores = recovery::score(&sim, &without).unwrap();
    let wrong = recovery::false_assignments(&sim, &without).unwrap();
    let missed = scores.iter().filter(|s| s.atoms.is_empty()).count();
    assert!(!wrong.is_empty() || missed > 0, "without confounds every network was found and nothing else");
}

/// fMRIPrep derivatives under `derivatives/fmriprep` of a raw dataset whose events give
/// the words: two spaces need a choice (the error lists them), brain masks make the group
/// mask, and `run` streams the stories through the recipe's model (no --responses).
#[test]
fn derivatives_in_a_raw_dataset_run_without_responses() {
    let Some(model) = super::models::model_path("all-MiniLM-L6-v2") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    simulate(&sim, 2, Some(60), 3, false);
    // A raw dataset with events, its derivatives in two spaces.
    let root = dir.path().join("ds");
    let deriv = root.join("derivatives/fmriprep");
    for s in ["01", "02"] {
        let func = deriv.join(format!("sub-{s}/func"));
        std::fs::create_dir_all(&func).unwrap();
        std::fs::create_dir_all(root.join(format!("sub-{s}/func"))).unwrap();
        for f in std::fs::read_dir(sim.join(format!("sub-{s}/func"))).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_str().unwrap().to_string();
            if name.ends_with("_events.tsv") {
                // Events belong to the raw dataset.
                std::fs::copy(&f, root.join(format!("sub-{s}/func/{name}"))).unwrap();
                continue;
            }
            std::fs::copy(&f, func.join(&name)).unwrap();
            if name.contains("MNI152NLin6Asym") {
                std::fs::copy(&f, func.join(name.replace("space-MNI152NLin6Asym_res-4", "space-T1w"))).unwrap();
            }
        }
    }
    let e = bids::discover(&root, None).unwrap_err().to_string();
    assert!(e.contains("2 spaces") && e.contains("MNI152NLin6Asym:res-4") && e.contains("T1w") && e.contains("--space"), "{e}");
    let e = bids::discover(&root, Some("MNI152NLin2009cAsym")).unwrap_err().to_string();
    assert!(e.contains("no runs in space 'MNI152NLin2009cAsym'") && e.contains("T1w"), "{e}");
    let ds = bids::discover(&root, Some("MNI152NLin6Asym:res-4")).unwrap();
    assert_eq!(ds.runs.len(), 4);
    assert_eq!(ds.brain_masks.len(), 4);
    // The words come from the raw dataset's events, beside the raw runs.
    assert!(ds.runs.iter().all(|r| r.stimulus.as_ref().is_some_and(|s| s.starts_with(&root) && !s.starts_with(&deriv))), "{ds}");
    let text = ds.to_string();
    assert!(text.contains("confounds=") && !text.contains("confounds=none"), "{text}");

    let text = format!(
        "[model]\npath = \"{}\"\ntaps = [\"ffn.out\"]\nlayers = \"4-5\"\n[basis]\natoms = 8\n{}",
        model.display(),
        "[encoding]\nhigh_pass = 0.0\ncv = false\n[confounds]\nstrategy = [\"high_pass\", \"motion\", \"wm_csf\", \"scrub\"]\n"
    );
    let out = dir.path().join("store");
    let req = RunRequest {
        data: root.clone(),
        space: Some("MNI152NLin6Asym:res-4".into()),
        responses: None,
        mask_threshold: 0.5,
    };
    let lines = update::run_all(&recipe(&text), &req, &out, &Cluster::default()).unwrap_or_else(|e| panic!("{e}")).join("\n");
    assert!(lines.contains("all-MiniLM-L6-v2") && lines.contains("2 stories"), "{lines}");
    assert!(lines.contains("sub-02/task-lpp/run-2: 60 scans ingested"), "{lines}");
    assert!(out.join("responses/task-lpp_run-1.parquet").is_file());

    // A subject whose events hold other words for the same story is not fitted against
    // the first subject's words.
    let events = root.join("sub-02/func/sub-02_task-lpp_run-2_events.tsv");
    let text = std::fs::read_to_string(&events).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(1, 2);
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let ds = bids::discover(&root, Some("MNI152NLin6Asym:res-4")).unwrap();
    let e = update::dataset_stimuli(&ds).unwrap_err().to_string();
    assert!(e.contains("story 'task-lpp_run-2'") && e.contains("different words") && e.contains("sub-02_task-lpp_run-2_events.tsv"), "{e}");

    // fMRIPrep's native-space outputs have no space entity: `--space native`.
    let func = deriv.join("sub-01/func");
    let mni = func.join("sub-01_task-lpp_run-1_space-MNI152NLin6Asym_res-4_desc-preproc_bold.nii.gz");
    std::fs::copy(&mni, func.join("sub-01_task-lpp_run-1_desc-preproc_bold.nii.gz")).unwrap();
    let e = bids::discover(&root, None).unwrap_err().to_string();
    assert!(e.contains("3 spaces") && e.contains("native"), "{e}");
    assert_eq!(bids::discover(&root, Some("native")).unwrap().runs.len(), 1);
}

/// The derivatives' stories start 6 s into each run: the events beside each run hold the
/// transcript of stimuli/ (the story's own time) moved by that onset, as BIDS events; the
/// dataset's stimuli are those events, and a raw layout writes none.
#[test]
fn simulated_derivatives_start_the_story_into_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    simulate(&sim, 1, Some(40), 4, false);
    let story = stimulus::read_stimulus(&sim.join("stimuli/task-lpp_run-1.tsv"), None).unwrap();
    let events_path = sim.join("sub-01/func/sub-01_task-lpp_run-1_events.tsv");
    let events = stimulus::read_stimulus(&events_path, None).unwrap();
    assert!(std::fs::read_to_string(&events_path).unwrap().starts_with("onset\tduration\t"));
    assert_eq!(story.words.len(), events.words.len());
    assert!(story.words.iter().all(|w| w.onset + 6.0 < 80.0));
    for (a, b) in story.words.iter().zip(&events.words) {
        assert_eq!(a.text, b.text);
        assert!((b.onset - a.onset - 6.0).abs() < 1e-9 && (b.offset - a.offset - 6.0).abs() < 1e-9);
    }
    let planted: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sim.join("truth/planted.json")).unwrap()).unwrap();
    assert_eq!(planted["runs"][0]["stimulus_onset"], 6.0);
    let ds = bids::discover(&sim, None).unwrap();
    let spec = update::dataset_stimuli(&ds).unwrap();
    assert_eq!(spec.files[0], events_path);

    let raw = dir.path().join("raw");
    ok(&["simulate", "--out", raw.to_str().unwrap(), "--subjects", "1", "--runs", "1", "--scans", "40"]);
    assert!(!raw.join("sub-01/func/sub-01_task-lpp_run-1_events.tsv").exists());
    let e = cortexflow_fails(&["simulate", "--out", raw.to_str().unwrap(), "--stimulus-onset=-1"]);
    assert!(e.contains("--stimulus-onset -1"), "{e}");
}

/// A recipe with confounds needs each run's table, with a row per scan; bad settings are
/// refused before anything is read.
#[test]
fn confounds_errors_name_the_run_and_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    simulate(&sim, 1, Some(100), 4, false);
    let func = sim.join("sub-01/func");
    let tsv = func.join("sub-01_task-lpp_run-2_desc-confounds_timeseries.tsv");
    let text = std::fs::read_to_string(&tsv).unwrap();
    std::fs::write(&tsv, text.lines().take(90).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let r = dir.path().join("r.toml");
    std::fs::write(&r, WITH_CONFOUNDS).unwrap();
    let e = cortexflow_fails(&["run", r.to_str().unwrap(), "--data", sim.to_str().unwrap(), "--responses", sim.join("truth/responses").to_str().unwrap(), "--out", dir.path().join("s1").to_str().unwrap()]);
    assert!(e.contains("89 rows, but its BOLD run has 100 scans") && e.contains("run-2"), "{e}");
    // A constant confound (demeaned to round-off) and a column the others span are dropped,
    // as nilearn drops them, not a failure of the whole run.
    let full = text.lines().map(|l| l.split('\t').map(String::from).collect::<Vec<_>>()).collect::<Vec<_>>();
    let col = |name: &str| full[0].iter().position(|h| h == name).unwrap();
    let (tx, ty, tz) = (col("trans_x"), col("trans_y"), col("trans_z"));
    let edited: Vec<String> = full
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut row = row.clone();
            if i > 0 {
                row[tx] = "0.1".into();
                let y: f64 = row[ty].parse().unwrap();
                row[tz] = (2.0 * y).to_string();
            }
            row.join("\t")
        })
        .collect();
    std::fs::write(&tsv, edited.join("\n") + "\n").unwrap();
    std::fs::write(&r, "[basis]\natoms = 6\n[confounds]\nstrategy = [\"motion\"]\nmotion = \"basic\"\n").unwrap();
    let lines = ok(&["run", r.to_str().unwrap(), "--data", sim.to_str().unwrap(), "--out", dir.path().join("s0").to_str().unwrap()]);
    assert!(lines.contains("sub-01/task-lpp/run-2: 100 scans ingested (2 censored)"), "{lines}");
    // The store says which table each run was reduced with and what censoring kept.
    let status = ok(&["status", dir.path().join("s0").to_str().unwrap()]);
    assert!(status.contains("98 scans kept, confounds") && status.contains("run-2_desc-confounds_timeseries.tsv"), "{status}");
    std::fs::write(&r, WITH_CONFOUNDS).unwrap();
    std::fs::remove_file(&tsv).unwrap();
    let e = cortexflow_fails(&["run", r.to_str().unwrap(), "--data", sim.to_str().unwrap(), "--out", dir.path().join("s2").to_str().unwrap()]);
    assert!(e.contains("run-2_space-MNI152NLin6Asym_res-4_desc-preproc_bold.nii.gz") && e.contains("there is none beside it"), "{e}");
    std::fs::write(&r, "[confounds]\nstrategy = [\"high_pass\"]\n").unwrap();
    let e = cortexflow_fails(&["run", r.to_str().unwrap(), "--data", sim.to_str().unwrap(), "--out", dir.path().join("s3").to_str().unwrap()]);
    assert!(e.contains("encoding.high_pass = 0.01") && e.contains("two drift models"), "{e}");
    std::fs::write(&r, "[confounds]\nstrategy = [\"ica_aroma\"]\n").unwrap();
    let e = cortexflow_fails(&["run", r.to_str().unwrap(), "--data", sim.to_str().unwrap(), "--out", dir.path().join("s4").to_str().unwrap()]);
    assert!(e.contains("ica_aroma"), "{e}");
}

/// A derivatives store: a run retracted gives the bytes of never ingesting it, with
/// confounds and censoring on.
#[test]
fn retracting_a_censored_run_equals_never_ingesting_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = d.join("sim");
    simulate(&sim, 2, Some(80), 6, false);
    let text = format!("{WITH_CONFOUNDS}[group]\nfdr = 0.2\n").replace("atoms = 16", "atoms = 6");
    let bold: Vec<PathBuf> = bids::discover(&sim, None).unwrap().runs.into_iter().map(|r| r.bold).collect();
    let one = d.join("one");
    run(&text, &sim, &one);
    update::retract(&Cluster::default(), &one, "sub-02/task-lpp/run-1").unwrap();
    // The same dataset without that run, into a store given the first store's mask (the
    // group mask is made from the runs' brain masks, one of which is gone).
    let never = d.join("never");
    let r = d.join("r.toml");
    std::fs::write(&r, &text).unwrap();
    ok(&["init", "--recipe", r.to_str().unwrap(), "--mask", one.join("mask.nii.gz").to_str().unwrap(), never.to_str().unwrap()]);
    let req = update::IngestRequest {
        responses: (1..=2).map(|i| sim.join(format!("truth/responses/task-lpp_run-{i}.parquet"))).collect(),
        neurons: Some(sim.join("truth/neurons.parquet")),
        bold: bold.into_iter().filter(|b| !b.to_string_lossy().contains("sub-02_task-lpp_run-1")).collect(),
        ..update::IngestRequest::default()
    };
    update::ingest(&Cluster::default(), &never, req).unwrap_or_else(|e| panic!("{e}"));
    super::store::assert_same(&one, &never);
}
