//! Confound strategies against nilearn 0.14's `load_confounds` and
//! `load_confounds_strategy` on the real fMRIPrep confounds files nilearn ships (fixture
//! made by scripts/fixtures/make_confounds_fixtures.py): every expansion of motion,
//! WM/CSF and global signal, the five CompCor kinds with all and 2 components, scrubbing
//! at several thresholds and segment lengths, demeaning on and off, and the three
//! presets.
//!
//! Tolerance: 1e-10 of max(1, |value|). Both sides copy the file's values and subtract a
//! mean over the kept scans; they differ only by the order of that sum (~1e-16).
//! Sample masks: identical. Where nilearn censors every scan (and returns NaN columns with a
//! warning), cortexflow refuses the run.

use cortexflow::io::confounds::{read_meta, read_table, sidecar, ConfoundsTable};
use cortexflow::stages::confounds::Strategy;

use super::common::{fixture_json, test_data};

/// nilearn's presets (`load_confounds_strategy`) as recipe settings: what the README shows.
fn preset(name: &str) -> Strategy {
    let toml = match name {
        "simple" => r#"strategy = ["high_pass", "motion", "wm_csf"]
motion = "full"
wm_csf = "basic""#,
        "scrubbing" => r#"strategy = ["high_pass", "motion", "wm_csf", "scrub"]
motion = "full"
wm_csf = "full"
scrub = 5
fd_threshold = 0.5
std_dvars_threshold = 1.5"#,
        "compcor" => r#"strategy = ["high_pass", "motion", "compcor"]
motion = "full"
compcor = "anat_combined"
n_compcor = "all""#,
        other => panic!("no preset {other}"),
    };
    toml::from_str(toml).unwrap()
}

fn table(file: &str) -> ConfoundsTable {
    read_table(&test_data().join("fixtures/confounds").join(file)).unwrap()
}

#[test]
fn strategies_equal_nilearn_load_confounds() {
    let fixture = fixture_json("confounds_nilearn.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 105);
    let mut worst = 0f64;
    let (mut censored, mut all_censored) = (0, 0);
    for case in cases {
        let file = case["file"].as_str().unwrap();
        let t = table(file);
        let json = match file.starts_with("test-v21") {
            true => sidecar(&t.path),
            false => test_data().join("fixtures/confounds/test_desc-confounds_regressors.json"),
        };
        let meta = read_meta(&json).unwrap();
        let strategy: Strategy = match case["kind"].as_str().unwrap() {
            "load_confounds_strategy" => preset(case["params"]["denoise_strategy"].as_str().unwrap()),
            _ => serde_json::from_value(case["params"].clone()).unwrap(),
        };
        let what = format!("{file} {}", case["params"]);
        assert!(case.get("error").is_none(), "{what}: nilearn refused it");
        if case.get("all_censored").is_some() {
            // nilearn warns and returns NaN columns; a run with no scan left is refused.
            let e = strategy.select(&t, meta.as_ref()).unwrap_err().to_string();
            assert!(e.contains("every one of its"), "{what}: {e}");
            all_censored += 1;
            continue;
        }
        let got = strategy.select(&t, meta.as_ref()).unwrap_or_else(|e| panic!("{what}: {e}"));
        let names: Vec<String> = case["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
        assert_eq!(got.names, names, "{what}: columns");
        for (c, want) in case["values"].as_array().unwrap().iter().enumerate() {
            for (s, w) in want.as_array().unwrap().iter().enumerate() {
                let w = w.as_f64().unwrap();
                let err = (got.columns[c][s] - w).abs() / w.abs().max(1.0);
                worst = worst.max(err);
                assert!(err <= 1e-10, "{what}: {} at scan {s}: {} vs {w}", names[c], got.columns[c][s]);
            }
        }
        let mask: Option<Vec<usize>> = case["sample_mask"].as_array().map(|m| m.iter().map(|i| i.as_u64().unwrap() as usize).collect());
        censored += usize::from(mask.is_some());
        assert_eq!(got.keep, mask, "{what}: sample mask");
    }
    // The fixture exercises censoring, not only regressors.
    assert!(censored > 40 && all_censored > 0, "{censored} cases censor scans, {all_censored} all");
    eprintln!("confounds: {} cases, worst relative difference {worst:.1e}", cases.len());
}

#[test]
fn missing_columns_and_bad_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub-01_task-x_desc-confounds_timeseries.tsv");
    std::fs::write(&path, "trans_x\ttrans_y\tframewise_displacement\n1\t2\tn/a\n2\t3\t0.1\n3\t4\t0.9\n").unwrap();
    let t = read_table(&path).unwrap();
    let s: Strategy = toml::from_str("strategy = [\"motion\"]\nmotion = \"basic\"").unwrap();
    let e = s.select(&t, None).unwrap_err().to_string();
    assert!(e.contains("trans_z") && e.contains("rot_z") && e.contains("motion"), "{e}");
    let s: Strategy = toml::from_str("strategy = [\"scrub\"]").unwrap();
    let e = s.select(&t, None).unwrap_err().to_string();
    assert!(e.contains("std_dvars"), "{e}");
    let s: Strategy = toml::from_str("strategy = [\"high_pass\", \"compcor\"]").unwrap();
    let e = s.select(&t, None).unwrap_err().to_string();
    assert!(e.contains("sidecar"), "{e}");
    let s: Strategy = toml::from_str("strategy = [\"compcor\"]").unwrap();
    assert!(s.check().unwrap_err().to_string().contains("high_pass"));

    for (text, expect) in [
        ("a\tb\n1\tx\n", "'x' is not a number"),
        ("a\ta\n1\t2\n", "appears twice"),
        ("TransX\tb\n1\t2\n", "CamelCase"),
        ("1.5\t2\n1\t2\n", "header row"),
        ("a\tb\n1\t2\t3\n", "line 2"),
    ] {
        std::fs::write(&path, text).unwrap();
        let e = read_table(&path).unwrap_err().to_string();
        assert!(e.contains(expect) && e.contains("confounds_timeseries.tsv"), "{text:?}: {e}");
    }
    // A value that is n/a past the first scan is not silently filled.
    std::fs::write(&path, "global_signal\n1\n2\nn/a\n4\n").unwrap();
    let s: Strategy = toml::from_str("strategy = [\"global_signal\"]").unwrap();
    let e = s.select(&read_table(&path).unwrap(), None).unwrap_err().to_string();
    assert!(e.contains("scan 2") && e.contains("global_signal"), "{e}");
    // Everything censored.
    std::fs::write(&path, "non_steady_state_outlier00\tnon_steady_state_outlier01\n1\t0\n0\t1\n").unwrap();
    let s: Strategy = toml::from_str("strategy = [\"non_steady_state\"]").unwrap();
    let e = s.select(&read_table(&path).unwrap(), None).unwrap_err().to_string();
    assert!(e.contains("every one of its 2 scans"), "{e}");
}

#[test]
fn dummy_scans_are_censored_and_excluded_from_the_mean() {
    let t = table("no_nonsteady_desc-confounds_regressors.tsv");
    let s: Strategy = toml::from_str("strategy = [\"wm_csf\"]\ndummy_scans = 4").unwrap();
    let got = s.select(&t, None).unwrap();
    assert_eq!(got.keep, Some((4..t.rows).collect()));
    for col in &got.columns {
        let mean: f64 = col[4..].iter().sum::<f64>() / (t.rows - 4) as f64;
        assert!(mean.abs() < 1e-9, "mean over kept scans {mean}");
    }
}

#[test]
fn a_bold_run_finds_its_confounds_file() {
    use cortexflow::io::confounds::beside;
    let dir = tempfile::tempdir().unwrap();
    let bold = dir.path().join("sub-01_ses-a_task-x_run-2_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz");
    std::fs::write(&bold, b"").unwrap();
    assert_eq!(beside(&bold).unwrap(), None);
    let other = dir.path().join("sub-01_ses-a_task-x_run-1_desc-confounds_timeseries.tsv");
    std::fs::write(&other, "a\n1\n").unwrap();
    assert_eq!(beside(&bold).unwrap(), None, "another run's file");
    let mine = dir.path().join("sub-01_ses-a_task-x_run-2_desc-confounds_timeseries.tsv");
    std::fs::write(&mine, "a\n1\n").unwrap();
    assert_eq!(beside(&bold).unwrap(), Some(mine.clone()));
    let old = dir.path().join("sub-01_ses-a_task-x_run-2_desc-confounds_regressors.tsv");
    std::fs::write(&old, "a\n1\n").unwrap();
    let e = beside(&bold).unwrap_err().to_string();
    assert!(e.contains("equally"), "{e}");
}
