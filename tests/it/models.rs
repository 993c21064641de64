//! Parity of the real checkpoints with PyTorch/transformers (fixtures from
//! scripts/fixtures/make_model_fixtures.py), and tokenisation parity.
//! Needs `scripts/fetch-models`; `.ci/run` fetches them and sets CORTEXFLOW_REQUIRE_MODELS=1
//! so these tests cannot be skipped there.

use std::path::{Path, PathBuf};

use cortexflow::model::stored::WeightDtype;
use cortexflow::model::{self, align, Tap, TapRequest};

use super::common::{fixture_json, fixtures, json_ids, pearson, read_f32};

pub fn model_path(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(rel);
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CORTEXFLOW_REQUIRE_MODELS").is_none(),
        "{} missing: run scripts/fetch-models",
        p.display()
    );
    eprintln!(
        "note: {} not fetched (scripts/fetch-models); parity test not run",
        p.display()
    );
    None
}


/// Runs the model on the fixture's ids and compares every layer and tap with PyTorch's:
/// per-tap sums over all tokens and the full vectors of the stored rows. Errors are judged
/// against the tap's RMS over all tokens (from the fixture's sum of squares, computed by
/// PyTorch), not its max |value|: a few outlier units reach 300× the RMS (SmolLM2 layer 28
/// ffn.inner: max 2,366, RMS 7.5), and a bound on the max would let every ordinary unit
/// be wrong by a third of its typical size.
fn check_parity(name: &str, model_rel: &str, tol: f64) {
    check_parity_as(name, model_rel, WeightDtype::Auto, tol, tol)
}

/// [`check_parity`] with the weights held as `dtype` says, the max |error| of a stored
/// row's unit bounded by `tol`·RMS and the RMS error of a tap's stored rows by
/// `tol_rms`·RMS.
fn check_parity_as(name: &str, model_rel: &str, dtype: WeightDtype, tol: f64, tol_rms: f64) {
    let Some(path) = model_path(model_rel) else {
        return;
    };
    let fx = fixture_json(&format!("models/{name}.json"));
    let blob = read_f32(&fixtures().join(format!("models/{name}.f32")));
    let m = model::load_as(&path, dtype).unwrap();
    let ids = json_ids(&fx["ids"]);

    // Tokenisation: the story as words gives transformers' ids (plus the window specials).
    let words: Vec<String> = fx["text"]
        .as_str()
        .unwrap()
        .split(' ')
        .map(String::from)
        .collect();
    let story = align::tokenize_words(m.tokenizer(), &words).unwrap();
    let (pre, post) = if fx["add_special_tokens"].as_bool().unwrap() {
        m.window_specials()
    } else {
        (vec![], vec![])
    };
    assert_eq!(
        [pre, story.ids.clone(), post].concat(),
        ids,
        "{name}: token ids"
    );

    let request = TapRequest::new((0..m.n_layers()).collect(), Tap::ALL.to_vec());
    let outputs = m.forward_taps(&ids, &request).unwrap();
    let rows: Vec<usize> = fx["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let stats = fx["stats"].as_array().unwrap();
    assert_eq!(
        stats.len(),
        2 * m.n_layers(),
        "{name}: a stat per layer and tap"
    );
    let mut offset = 0;
    let (mut worst, mut worst_sum, mut worst_rms): (f64, f64, f64) = (0.0, 0.0, 0.0);
    for stat in stats {
        let layer = stat["layer"].as_u64().unwrap() as usize;
        let tap: Tap = stat["tap"].as_str().unwrap().parse().unwrap();
        let width = stat["width"].as_u64().unwrap() as usize;
        let out = outputs
            .iter()
            .find(|o| o.layer == layer && o.tap == tap)
            .unwrap();
        let values: Vec<Vec<f32>> = out.values.to_vec2().unwrap();
        assert_eq!(values.len(), ids.len());
        assert_eq!(values[0].len(), width, "{name} layer {layer} {tap:?} width");
        let n = (ids.len() * width) as f64;
        let rms = (stat["sum_sq"].as_f64().unwrap() / n).sqrt();
        let sum: f64 = values.iter().flatten().map(|&v| v as f64).sum();
        let sum_err = (sum - stat["sum"].as_f64().unwrap()).abs() / (rms * n.sqrt());
        worst_sum = worst_sum.max(sum_err);
        assert!(
            sum_err <= tol,
            "{name} layer {layer} {tap:?}: sum {sum} vs {} (|Δ| = {sum_err:.2e}·RMS·√n)",
            stat["sum"]
        );
        // Every unit of the stored rows: max |ours − torch| ≤ tol·RMS of the tap.
        let (mut max_abs, mut sq, mut at) = (0.0f64, 0.0f64, (0, 0, 0.0, 0.0));
        for &r in &rows {
            assert!(offset + width <= blob.len(), "{name}: fixture too short");
            for (u, &ours) in values[r].iter().enumerate() {
                let theirs = blob[offset + u] as f64;
                let e = (ours as f64 - theirs).abs();
                sq += e * e;
                if e > max_abs {
                    (max_abs, at) = (e, (r, u, ours, theirs));
                }
            }
            offset += width;
        }
        let rms_err = (sq / (rows.len() * width) as f64).sqrt();
        worst = worst.max(max_abs / rms);
        worst_rms = worst_rms.max(rms_err / rms);
        assert!(
            rms_err <= tol_rms * rms,
            "{name} layer {layer} {tap:?}: RMS error {rms_err:.3e} = {:.2e}·RMS > {tol_rms:.0e}·RMS",
            rms_err / rms
        );
        assert!(
            max_abs <= tol * rms,
            "{name} layer {layer} {tap:?}: max |error| {max_abs:.3e} = {:.2e}·RMS > {tol:.0e}·RMS \
             (token {} unit {}: {} vs {}); RMS error {rms_err:.3e}, tap RMS {rms:.3e}",
            max_abs / rms,
            at.0,
            at.1,
            at.2,
            at.3
        );
    }
    assert_eq!(offset, blob.len(), "{name}: fixture fully compared");
    eprintln!(
        "{name} ({dtype:?}): worst max |error| / tap RMS {worst:.2e}, RMS error / tap RMS \
         {worst_rms:.2e}, sum error / (RMS·√n) {worst_sum:.2e} (tolerances {tol:.0e}, {tol_rms:.0e})"
    );
}

// Tolerances, in units of the tap's RMS. Both sides compute in float32 (PyTorch's float64
// copy of its float32 taps is exact), in a different summation order and with different
// exp/erf approximations; the error is a few ulp of each unit's own value, so it is largest
// in the outlier units at 100–300× the RMS. The sums (float64 over float32 values) are
// judged against RMS·√n with the same tolerance.

/// MiniLM-L6 (BERT, float32 safetensors) against transformers. Measured: worst max |error|
/// 1.0e-4·RMS (layer 2 ffn.out, in a unit at 160× the RMS: ~7 ulp of its value), worst RMS
/// error 2.5e-6·RMS, sums 4.9e-5·RMS·√n; bound 5e-4, 5× the worst.
#[test]
fn minilm_taps_match_transformers() {
    check_parity("minilm", "all-MiniLM-L6-v2", 5e-4);
}

/// SmolLM2-135M from its GGUF file against transformers loading the same GGUF (Q4_1
/// dequantised to the same float32 weights on both sides, so dequantisation adds nothing;
/// 30 layers of float32 reassociation add up). Measured: worst max |error| 3.7e-4·RMS
/// (layer 2 ffn.inner, a unit at 200× the RMS), worst RMS error 5.7e-6·RMS, sums
/// 1.1e-5·RMS·√n; bound 2e-3, 5× the worst. (Bounded by the max |tap| instead, layer 28
/// ffn.inner would have let every unit be off by 31% of its RMS.)
#[test]
fn smollm2_gguf_taps_match_transformers() {
    check_parity("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", 2e-3);
}

/// The same GGUF kept quantised (`--dtype stored`): its blocks stay in memory and a chunk
/// of rows is dequantised before each product, to the same f32 weights, so the bound is
/// the dequantised one.
#[test]
fn smollm2_gguf_kept_quantised_matches_transformers() {
    check_parity_as("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", WeightDtype::Stored, 2e-3, 2e-3);
}

pub fn read_rows(path: &Path) -> Vec<(Vec<String>, Vec<f64>)> {
    use arrow_array::{
        Array, FixedSizeListArray, Float32Array, StringArray, UInt16Array, UInt32Array, UInt64Array,
    };
    let mut rows = Vec::new();
    for batch in super::common::record_batches(path) {
        for r in 0..batch.num_rows() {
            let mut keys = Vec::new();
            let mut values = Vec::new();
            for c in batch.columns() {
                let a = c.as_any();
                if let Some(v) = a.downcast_ref::<FixedSizeListArray>() {
                    let f = v.value(r);
                    values = f
                        .as_any()
                        .downcast_ref::<Float32Array>()
                        .unwrap()
                        .values()
                        .iter()
                        .map(|&x| x as f64)
                        .collect();
                } else if let Some(v) = a.downcast_ref::<StringArray>() {
                    keys.push(v.value(r).to_string());
                } else if let Some(v) = a.downcast_ref::<UInt64Array>() {
                    keys.push(v.value(r).to_string());
                } else if let Some(v) = a.downcast_ref::<UInt32Array>() {
                    keys.push(v.value(r).to_string());
                } else if let Some(v) = a.downcast_ref::<UInt16Array>() {
                    keys.push(if v.is_null(r) {
                        "null".into()
                    } else {
                        v.value(r).to_string()
                    });
                }
            }
            rows.push((keys, values));
        }
    }
    rows
}

/// `responses` equals the nilearn-style regressor (kernel checked against nilearn in
/// tests/it/hrf.rs) of the word means of `activations`' token rows, with several context
/// windows in play: the two commands agree on tokens, words, windows and pooling.
#[test]
fn responses_are_regressors_of_word_mean_activations() {
    use cortexflow::kernels::hrf::{frame_times, EventDesign, RegressorOptions};
    let Some(model) = model_path("all-MiniLM-L6-v2") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let words = cortexflow::io::stimulus::read_stimulus(
        &super::common::test_data().join("stimuli/lpp-en/lppEN_section1.TextGrid"),
        None,
    )
    .unwrap()
    .words;
    let words = &words[..150];
    let stim = dir.path().join("cut.tsv");
    cortexflow::io::stimulus::write_tsv(&stim, words).unwrap();
    let n_scans = (words.last().unwrap().onset / 2.0) as usize + 10;
    let (m, s, o) = (
        model.to_str().unwrap(),
        stim.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    );
    let acts = dir.path().join("acts.parquet");
    let common = [
        "--model",
        m,
        "--layers",
        "1,4",
        "--taps",
        "ffn.out",
        "--context",
        "48",
    ];
    let run = |args: Vec<&str>| {
        assert!(
            super::common::cortexflow(&args).status.success(),
            "{args:?}"
        )
    };
    run([
        &["activations", "--text", s, "--out", acts.to_str().unwrap()][..],
        &common,
    ]
    .concat());
    let n_str = n_scans.to_string();
    run([
        &[
            "responses",
            "--stimulus",
            s,
            "--tr",
            "2",
            "--n-scans",
            &n_str,
            "--out",
            o,
        ][..],
        &common,
    ]
    .concat());

    // Word means per layer from the token rows (keys: token, token_text, word, layer, tap).
    let mut sums: HashMap<(usize, usize), (Vec<f64>, usize)> = HashMap::new();
    for (keys, values) in read_rows(&acts) {
        let (word, layer): (usize, usize) = (keys[2].parse().unwrap(), keys[3].parse().unwrap());
        let e = sums
            .entry((layer, word))
            .or_insert((vec![0.0; values.len()], 0));
        assert_eq!(e.0.len(), values.len(), "layer {layer}: row width");
        e.0.iter_mut().zip(&values).for_each(|(a, b)| *a += b);
        e.1 += 1;
    }
    let onsets: Vec<f64> = words.iter().map(|w| w.onset).collect();
    let design = EventDesign::new(
        &onsets,
        &vec![0.0; onsets.len()],
        &frame_times(n_scans, 2.0, 0.0),
        &RegressorOptions::default(),
    )
    .unwrap()
    .remove(0);
    let rows = read_rows(&dir.path().join("responses/cut.parquet"));
    assert_eq!(rows.len(), 2 * 384);
    let mut worst: f64 = 0.0;
    for (keys, values) in rows.iter().step_by(37) {
        let id: u64 = keys[0].parse().unwrap();
        let (layer, unit) = ((id >> 40) as usize, (id & 0xFFFF_FFFF) as usize);
        let amps = ndarray::Array2::from_shape_fn((words.len(), 1), |(w, _)| {
            let (s, n) = &sums[&(layer, w)];
            s[unit] / *n as f64
        });
        let expected = design.apply(amps.view());
        let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert_eq!(values.len(), expected.nrows(), "AN {id}: scans");
        for (a, b) in values.iter().zip(expected.column(0)) {
            worst = worst.max((a - b).abs() / scale);
        }
    }
    // float32 storage of activations and regressors: 1e-5 of the peak.
    assert!(worst < 1e-5, "worst relative difference {worst}");
}

use std::collections::HashMap;

/// `simulate --model` plants the model's own AN responses: truth/responses equals what
/// `cortexflow responses` computes for the same stimulus, and each planted time course is
/// the z-scored mean response of the group's ANs, which really share a time course.
#[test]
fn simulate_with_a_model_plants_its_own_responses() {
    let Some(model) = model_path("all-MiniLM-L6-v2") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let m = model.to_str().unwrap();
    let ok = |args: &[&str]| assert!(super::common::cortexflow(args).status.success(), "{args:?}");
    ok(&[
        "simulate",
        "--out",
        sim.to_str().unwrap(),
        "--subjects",
        "1",
        "--runs",
        "1",
        "--scans",
        "120",
        "--model",
        m,
        "--model-layers",
        "2,5",
    ]);
    let planted: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sim.join("truth/planted.json")).unwrap())
            .unwrap();
    assert_eq!(planted["model"], "all-MiniLM-L6-v2");
    assert_eq!(planted["n_neurons"], 2 * 384);
    let out = dir.path().join("resp");
    ok(&[
        "responses",
        "--model",
        m,
        "--layers",
        "2,5",
        "--taps",
        "ffn.out",
        "--stimulus",
        sim.join("stimuli/task-lpp_run-1.tsv").to_str().unwrap(),
        "--tr",
        "2",
        "--n-scans",
        "120",
        "--out",
        out.to_str().unwrap(),
    ]);
    let truth: HashMap<String, Vec<f64>> =
        read_rows(&sim.join("truth/responses/task-lpp_run-1.parquet"))
            .into_iter()
            .map(|(k, v)| (k[0].clone(), v))
            .collect();
    let ours = read_rows(&out.join("responses/task-lpp_run-1.parquet"));
    assert_eq!(ours.len(), truth.len());
    for (keys, values) in &ours {
        assert_eq!(&truth[&keys[0]], values, "AN {}", keys[0]);
    }
    let courses = read_rows(&sim.join("truth/timecourses/task-lpp_run-1.parquet"));
    for (g, net) in planted["networks"].as_array().unwrap().iter().enumerate() {
        let ids: Vec<String> = net["an_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 24);
        let mean: Vec<f64> = (0..120)
            .map(|t| ids.iter().map(|id| truth[id][t]).sum::<f64>() / 24.0)
            .collect();
        let r = pearson(&mean, &courses[g].1);
        assert!(
            r > 0.99999,
            "course {g} is the group's mean response (r = {r})"
        );
        // Members follow the group's course: mean member–course correlation well above 0.
        let member_r: f64 = ids
            .iter()
            .map(|id| pearson(&truth[id], &courses[g].1))
            .sum::<f64>()
            / 24.0;
        assert!(member_r > 0.5, "group {g}: mean member r = {member_r}");
    }
}


/// `--stimulus-onset S` (a recipe's `model.stimulus_onset`): the responses equal, value for
/// value, those of the same words moved S seconds later in the file (real MiniLM).
#[test]
fn a_stimulus_onset_moves_every_word() {
    use cortexflow::io::stimulus::{read_stimulus, write_tsv, Word};
    let Some(model) = model_path("all-MiniLM-L6-v2") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let words = read_stimulus(&super::common::test_data().join("stimuli/lpp-en/lppEN_section1.TextGrid"), None).unwrap().words;
    let words = &words[..80];
    let moved: Vec<Word> = words
        .iter()
        .map(|w| Word { text: w.text.clone(), onset: w.onset + 7.5, offset: w.offset + 7.5 })
        .collect();
    std::fs::create_dir_all(d.join("a")).unwrap();
    std::fs::create_dir_all(d.join("b")).unwrap();
    write_tsv(&d.join("a/story.tsv"), words).unwrap();
    write_tsv(&d.join("b/story.tsv"), &moved).unwrap();
    let n = ((words.last().unwrap().onset + 7.5) / 2.0) as usize + 10;
    let n = n.to_string();
    let run = |stim: &str, out: &str, onset: &str| {
        super::common::ok(&[
            "responses", "--model", model.to_str().unwrap(), "--layers", "2", "--stimulus", stim, "--tr", "2",
            "--n-scans", &n, "--stimulus-onset", onset, "--out", out,
        ]);
    };
    run(d.join("a/story.tsv").to_str().unwrap(), d.join("oa").to_str().unwrap(), "7.5");
    run(d.join("b/story.tsv").to_str().unwrap(), d.join("ob").to_str().unwrap(), "0");
    let read = |p: &Path| cortexflow::io::parquet::read_responses(p).unwrap();
    let (a, b) = (read(&d.join("oa/responses/story.parquet")), read(&d.join("ob/responses/story.parquet")));
    assert_eq!(a.an_ids, b.an_ids);
    assert!(a.values.iter().any(|&v| v != 0.0));
    assert_eq!(a.values, b.values);
    let e = super::common::cortexflow_fails(&["responses", "--model", model.to_str().unwrap(), "--stimulus", d.join("a/story.tsv").to_str().unwrap(), "--tr", "2", "--n-scans", &n, "--stimulus-onset=-1", "--out", d.join("oc").to_str().unwrap()]);
    assert!(e.contains("stimulus_onset = -1"), "{e}");
}
