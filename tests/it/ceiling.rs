//! The noise ceiling of a store against a brute-force computation from the runs' BOLD, and
//! its exactness under retraction.

use std::path::{Path, PathBuf};

use cortexflow::engine::cluster::Cluster;
use cortexflow::engine::update::{self, IngestRequest};
use cortexflow::io::nifti;
use cortexflow::stages::ceiling;
use cortexflow::store::Recipe;

use super::common::{cortexflow_fails, fixture_json, pearson, table_cells};
use super::store::{dataset, empty_store, run_request};

/// The columns of ceiling/voxels.parquet as numbers (read with the arrow reader).
fn voxels(store: &Path) -> Vec<Vec<f64>> {
    table_cells(&store.join("ceiling/voxels.parquet"))
        .into_iter()
        .map(|row| row.iter().map(|c| c.parse::<f64>().unwrap()).collect())
        .collect()
}

/// The ISC from sums against BrainIAK's pairwise r (scripts/fixtures/make_isc_fixtures.py):
/// 2 stories of 40 and 55 scans, 5 subjects with their own offsets and scales, a subject
/// missing one voxel in one story. Tolerance 1e-12: the same r, summed in another order.
#[test]
fn isc_matches_brainiak() {
    use cortexflow::kernels::isc::{Isc, StorySums};
    let f = fixture_json("isc/pairwise.json");
    let want: Vec<f64> = f["isc"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let mut isc = Isc::new(want.len());
    for story in f["stories"].as_array().unwrap() {
        let t = story["scans"].as_u64().unwrap() as usize;
        let mut sums = StorySums::new(t, want.len());
        for (subject, valid) in story["data"].as_array().unwrap().iter().zip(story["valid"].as_array().unwrap()) {
            let rows: Vec<f64> = subject.as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap())).collect();
            let y = ndarray::Array2::from_shape_vec((t, want.len()), rows).unwrap();
            let valid: Vec<bool> = valid.as_array().unwrap().iter().map(|b| b.as_bool().unwrap()).collect();
            sums.add(y.view(), &valid);
        }
        isc.add_story(&sums);
    }
    for (v, (got, want)) in isc.isc().iter().zip(&want).enumerate() {
        assert!((got - want).abs() < 1e-12, "voxel {v}: {got} vs BrainIAK {want}");
    }
}

/// With no drift model the cleaning is each run's mean removed (and a scale), which
/// Pearson's r ignores: the ISC must then be the mean over stories and subject pairs of
/// the raw BOLD's r, computed here from the NIfTI files (all stories have 100 scans, so
/// the weights are equal). Tolerance 1e-5 on r: the table stores f32. The cv_r column is
/// the subjects' mean cv_r map, the fraction cv_r / √ISC.
#[test]
fn ceiling_equals_pairwise_r_of_the_bold() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, recipe, bold) = dataset(d);
    std::fs::write(&recipe, "[basis]\natoms = 8\n[encoding]\nhigh_pass = 0.0\n").unwrap();
    let store = d.join("s");
    update::run_all(&Recipe::load(&recipe).unwrap(), &run_request(&sim), &store, &Cluster::default()).unwrap();
    let lines = ceiling::run(&store, None).unwrap();
    assert!(lines[0].starts_with("noise ceiling: 2 stories heard by 2 or more subjects (6 runs)"), "{lines:?}");

    // 3 subjects × 2 stories of 100 scans: 600 pair-scans, so the cut is 0.05·√(8700/600).
    let cut = ceiling::read_info(&store.join("ceiling")).unwrap().unwrap().min_isc;
    assert!((cut - 0.05 * (8700.0f64 / 600.0).sqrt()).abs() < 1e-12, "cut {cut}");
    let mask_path = sim.join("mask.nii.gz");
    let mask = nifti::read_mask(&mask_path).unwrap();
    let runs: Vec<_> = bold.iter().map(|b| nifti::read_bold(Path::new(b), Some((&mask_path, &mask))).unwrap().data).collect();
    let rows = voxels(&store);
    assert_eq!(rows.len(), mask.len());
    let cv_r: Vec<_> = (1..=3)
        .map(|s| mask.rows(&nifti::read_image(&store.join(format!("subjects/sub-0{s}/cv_r.nii.gz"))).unwrap()))
        .collect();
    let mut checked = 0;
    for (v, row) in rows.iter().enumerate() {
        let (subjects, isc, ceil, r, fraction) = (row[4], row[5], row[6], row[7], row[8]);
        let mut pairs = Vec::new();
        for story in 0..2 {
            // bold is sorted: sub-01 run-1, sub-01 run-2, sub-02 run-1, …
            let series: Vec<Vec<f64>> = (0..3).map(|s| runs[2 * s + story].column(v).iter().map(|&x| f64::from(x)).collect()).collect();
            if series.iter().any(|x| x.iter().all(|&y| y == x[0])) {
                continue;
            }
            for a in 0..3 {
                for b in a + 1..3 {
                    pairs.push(pearson(&series[a], &series[b]));
                }
            }
        }
        if pairs.len() < 6 {
            continue;
        }
        let want = pairs.iter().sum::<f64>() / pairs.len() as f64;
        assert!((isc - want).abs() < 1e-5, "voxel {v}: ISC {isc} vs {want}");
        assert_eq!(subjects, 3.0);
        assert!((ceil - want.max(0.0).sqrt()).abs() < 1e-5, "voxel {v}: ceiling {ceil}");
        let mean_r = cv_r.iter().map(|m| m[[0, v]]).sum::<f64>() / 3.0;
        assert!((r - mean_r).abs() < 1e-5, "voxel {v}: cv_r {r} vs {mean_r}");
        if isc > cut {
            assert!((fraction - mean_r / ceil).abs() < 1e-4 * (1.0 + fraction.abs()), "voxel {v}: fraction {fraction}");
        } else {
            assert!(fraction.is_nan(), "voxel {v}: a fraction below the ISC cut");
        }
        checked += 1;
    }
    assert!(checked > mask.len() / 2, "{checked} voxels checked of {}", mask.len());
}

/// `run` keeps the runs its reduce pass cleans for its noise ceiling: each BOLD run is read
/// once (the process's own count), the ceiling is the same bytes as `cortexflow ceiling`
/// makes by reading and cleaning every run again, and no cleaned run is left behind.
#[test]
fn run_reads_each_run_once_for_its_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, recipe, bold) = dataset(d);
    let run = |out: &Path, extra: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_cortexflow"))
            .args(["run", recipe.to_str().unwrap(), "--data", sim.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .args(extra)
            .env("CORTEXFLOW_LOG", "info")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{stderr}");
        assert!(!out.join(".cleaned").exists(), "cleaned runs left in {}", out.display());
        stderr
    };
    let reads = |log: &str| log.lines().find_map(|l| l.split("bold_reads=").nth(1).map(str::to_string)).unwrap();
    let (kept, again) = (d.join("kept"), d.join("again"));
    let log = run(&kept, &[]);
    assert_eq!(reads(&log), bold.len().to_string());
    assert!(log.contains("noise ceiling: the one begun beside the group is used"), "{log}");
    assert_eq!(reads(&run(&again, &["--no-ceiling"])), bold.len().to_string());
    super::common::ok(&["ceiling", again.to_str().unwrap()]);
    for name in ["isc.nii.gz", "ceiling.nii.gz", "fraction.nii.gz", "voxels.parquet", "ceiling.json"] {
        let read = |store: &Path| std::fs::read(store.join("ceiling").join(name)).unwrap();
        assert!(read(&kept) == read(&again), "ceiling/{name} differs");
    }
    // What a killed `run` leaves is said by `status` (not a store file: no damage) and goes
    // when the next writer takes the lock.
    std::fs::create_dir(kept.join(".cleaned")).unwrap();
    std::fs::write(kept.join(".cleaned/0123456789abcdef.f64"), vec![0u8; 3000]).unwrap();
    let status = super::common::ok(&["status", kept.to_str().unwrap()]);
    assert!(status.contains("left by an interrupted run: 3.0 kB of cleaned runs"), "{status}");
    super::common::ok(&["status", "--refresh", kept.to_str().unwrap()]);
    assert!(!kept.join(".cleaned").exists());
}

/// A noise ceiling begun ahead (by `run`'s writer, once every run is listed, beside the
/// group) serves only the runs it was begun on: when the store's runs differ by the time
/// the ceiling is written, it is computed again, to the bytes of a ceiling computed afresh.
#[test]
fn a_ceiling_begun_ahead_serves_only_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, recipe, _) = dataset(d);
    let r = Recipe::load(&recipe).unwrap();
    let store = d.join("store");
    let keeping = cortexflow::engine::cleaned::keep_for_ceiling(&store).expect("keeping on");
    update::run_all(&r, &run_request(&sim), &store, &Cluster::default()).unwrap();
    // A run taken out of the manifest behind the computation's back.
    let manifest = store.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["runs"].as_object_mut().unwrap().remove("sub-03/task-lpp/run-2").unwrap();
    std::fs::write(&manifest, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let lines = ceiling::run(&store, None).unwrap();
    drop(keeping);
    assert!(lines[0].contains("(5 runs)"), "{lines:?}");
    let files = ["isc.nii.gz", "ceiling.nii.gz", "fraction.nii.gz", "voxels.parquet", "ceiling.json"];
    let read = || files.map(|f| std::fs::read(store.join("ceiling").join(f)).unwrap());
    let ahead = read();
    ceiling::run(&store, None).unwrap();
    for (f, (a, b)) in files.iter().zip(ahead.iter().zip(read())) {
        assert!(*a == b, "ceiling/{f} differs from the one computed afresh");
    }
}

/// The ceiling depends only on the runs in the store: after a retraction it is the one of
/// a store that never had the run, byte for byte (ceiling.json differs only in its epoch);
/// a story left with one subject is left out, and says so. A stale ceiling is reported by
/// `status`.
#[test]
fn retracted_ceiling_equals_never() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, recipe, bold) = dataset(d);
    let r = Recipe::load(&recipe).unwrap();
    let (all, never) = (d.join("all"), d.join("never"));
    update::run_all(&r, &run_request(&sim), &all, &Cluster::default()).unwrap();
    ceiling::run(&all, None).unwrap();
    let status = cortexflow::store::Store::open_reader(&all).unwrap().status();
    assert!(status.contains("noise ceiling: up to date"), "{status}");
    for key in ["sub-02/task-lpp/run-2", "sub-03/task-lpp/run-2"] {
        update::retract(&Cluster::default(), &all, key).unwrap();
    }
    let status = cortexflow::store::Store::open_reader(&all).unwrap().status();
    assert!(status.contains("noise ceiling: stale"), "{status}");
    let lines = ceiling::run(&all, None).unwrap();
    assert!(lines.iter().any(|l| l == "sub-01/task-lpp/run-2: left out (the only subject with story 'task-lpp_run-2' among the runs used)"), "{lines:?}");
    assert!(lines[0].contains("1 stories heard by 2 or more subjects (3 runs)"), "{lines:?}");

    empty_store(&sim, &recipe, &never);
    let without: Vec<PathBuf> = bold.iter().filter(|b| !b.contains("sub-02_task-lpp_run-2") && !b.contains("sub-03_task-lpp_run-2")).map(PathBuf::from).collect();
    let req = IngestRequest { bold: without, ..IngestRequest::default() };
    update::ingest(&Cluster::default(), &never, req).unwrap();
    ceiling::run(&never, None).unwrap();
    for f in ["isc.nii.gz", "ceiling.nii.gz", "fraction.nii.gz", "voxels.parquet"] {
        let (a, b) = (std::fs::read(all.join("ceiling").join(f)).unwrap(), std::fs::read(never.join("ceiling").join(f)).unwrap());
        assert!(a == b, "{f} differs");
    }

    // A damaged ceiling is computed again; one with no story left to share is removed with
    // its checksums, and the store stays whole.
    std::fs::write(all.join("ceiling/ceiling.json"), "{").unwrap();
    let status = cortexflow::store::Store::open_reader(&all).unwrap().integrity(false).0;
    assert!(status.contains("computed again by `cortexflow ceiling STORE`"), "{status}");
    ceiling::run(&all, None).unwrap();
    assert_eq!(cortexflow::store::Store::open_reader(&all).unwrap().integrity(false).1, 0);
    update::retract(&Cluster::default(), &all, "sub-02/task-lpp/run-1").unwrap();
    update::retract(&Cluster::default(), &all, "sub-03/task-lpp/run-1").unwrap();
    let lines = ceiling::run(&all, None).unwrap();
    assert!(lines[0].starts_with("noise ceiling: none"), "{lines:?}");
    assert!(!all.join("ceiling").exists());
    let (text, problems) = cortexflow::store::Store::open_reader(&all).unwrap().integrity(false);
    assert_eq!(problems, 0, "{text}");
}

/// Bad requests are one clear error each.
#[test]
fn ceiling_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = cortexflow_fails(&["ceiling", dir.path().to_str().unwrap()]);
    assert!(e.contains("not a cortexflow store"), "{e}");
    let e = cortexflow_fails(&["ceiling", dir.path().to_str().unwrap(), "--min-isc", "2"]);
    assert!(e.contains("--min-isc 2: expected a correlation in [-1, 1)"), "{e}");
}
