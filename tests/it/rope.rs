//! Rotary position embeddings against transformers (fixtures from
//! scripts/fixtures/make_rope_fixtures.py): tiny Llama checkpoints saved by transformers
//! with no scaling, linear scaling and Llama 3 scaling, whose taps cortexflow must
//! reproduce in a forward pass over 40 tokens; the inverse frequencies transformers derives
//! from more config.json variants; and a check that the comparison sees a wrong angle.
//!
//! Tolerance: both sides run float32 arithmetic in a different order (matrix products,
//! softmax, SiLU), and cortexflow derives the inverse frequencies in f64 where transformers
//! uses float32 (they agree to 3.2e-7 relative; the angles p·θ are float32 products on
//! both sides). The attention of these checkpoints is sharp on purpose, which amplifies
//! rounding: transformers' own float32 taps differ from a float64 run of the same model by
//! up to 5.5e-6 × RMS (the fixture script prints it). Measured here: worst |error| / RMS of
//! the tap 4.8e-6 (default), 4.3e-6 (linear), 6.0e-6 (llama3). The bound, 2e-5 × RMS, is
//! about four times float32's own error, while a wrong rotary angle moves the taps by
//! 6–10 × RMS (`a_wrong_rotary_angle_is_seen`).

use std::path::{Path, PathBuf};

use cortexflow::model::llama::Config;
use cortexflow::model::{self, Tap, TapRequest};

use super::common::{fixture_json, fixtures};

/// |ours − transformers| ≤ TOL × RMS of the transformers tap, for every value.
const TOL: f64 = 2e-5;

fn rope_dir() -> PathBuf {
    fixtures().join("rope")
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The worst |ours − transformers| / RMS over every layer, tap, token and unit of the
/// fixture `name`, running the checkpoint in `folder` (the fixture's own, or an altered copy).
fn worst_error(name: &str, folder: &Path) -> f64 {
    let fx = fixture_json(&format!("rope/{name}.json"));
    let blob = read_f32(&rope_dir().join(format!("{name}.f32")));
    let ids: Vec<u32> = fx["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let layers = fx["layers"].as_u64().unwrap() as usize;
    let m = model::load(folder).unwrap();
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

fn check_taps(name: &str) {
    let worst = worst_error(name, &rope_dir().join(name));
    eprintln!("rope {name}: worst |error| / tap RMS = {worst:.2e} (tolerance {TOL:.0e})");
    assert!(
        worst <= TOL,
        "rope {name}: taps differ from transformers by {worst:.3e} × RMS (tolerance {TOL:.0e})"
    );
}

#[test]
fn taps_match_transformers_without_rope_scaling() {
    check_taps("default");
}

#[test]
fn taps_match_transformers_with_linear_rope_scaling() {
    check_taps("linear");
}

/// The Llama 3 checkpoint's four frequencies fall in all three bands (kept, blended,
/// divided by the factor) and the 40 tokens run past its original context of 32.
#[test]
fn taps_match_transformers_with_llama3_rope_scaling() {
    check_taps("llama3");
}

/// |ours − transformers| / transformers over the inverse frequencies; transformers
/// computes them in float32 (a few roundings of 6e-8 each), cortexflow in f64.
fn inv_freq_error(name: &str, config: &serde_json::Value, theirs: &serde_json::Value) -> f64 {
    let cfg: Config = serde_json::from_value(config.clone())
        .unwrap_or_else(|e| panic!("{name}: config not read: {e}"));
    cfg.validate(Path::new(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let ours = cfg.inv_freq();
    let theirs: Vec<f64> = theirs
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(ours.len(), theirs.len(), "{name}: number of frequencies");
    ours.iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs() / b.abs())
        .fold(0.0, f64::max)
}

/// The angles θ_i that transformers derives (LlamaRotaryEmbedding.inv_freq) for the three
/// checkpoints and for config.json variants: rope_parameters as transformers 5 writes it,
/// the legacy rope_scaling/rope_theta/"type" keys, which of them wins, the fallbacks of
/// Llama 3's original_max_position_embeddings, and Llama 3.1 8B's settings.
#[test]
fn inverse_frequencies_match_transformers() {
    let mut worst: f64 = 0.0;
    for name in ["default", "linear", "llama3"] {
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(rope_dir().join(name).join("config.json")).unwrap(),
        )
        .unwrap();
        let fx = fixture_json(&format!("rope/{name}.json"));
        let err = inv_freq_error(name, &config, &fx["inv_freq"]);
        assert!(err <= 1e-6, "{name}: inv_freq off by {err:.2e} (relative)");
        worst = worst.max(err);
    }
    let cases = fixture_json("rope/inv_freq_cases.json");
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        assert_eq!(case["attention_scaling"].as_f64(), Some(1.0), "{name}");
        let err = inv_freq_error(name, &case["config"], &case["inv_freq"]);
        assert!(err <= 1e-6, "{name}: inv_freq off by {err:.2e} (relative)");
        worst = worst.max(err);
    }
    eprintln!("rope inv_freq: worst relative error {worst:.2e} (tolerance 1e-6)");
}

/// A copy of fixture checkpoint `name` whose config.json has `rope_parameters` replaced.
fn altered(name: &str, rope_parameters: serde_json::Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = rope_dir().join(name);
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["rope_parameters"] = rope_parameters;
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

/// The comparison is not blind to the rotary embedding (as a comparison of two cortexflow
/// paths that rotate q and k alike can be): running a checkpoint with no rotation (linear
/// factor 1e12, angles ≈ 0), without its scaling, or with one Llama 3 parameter changed
/// moves the taps far outside the tolerance.
#[test]
fn a_wrong_rotary_angle_is_seen() {
    let llama3 = |theta: f64, factor: f64, low: f64, high: f64, orig: u64| {
        serde_json::json!({"rope_type": "llama3", "rope_theta": theta, "factor": factor,
            "low_freq_factor": low, "high_freq_factor": high, "original_max_position_embeddings": orig})
    };
    let wrong = [
        (
            "default",
            "no rotation",
            serde_json::json!({"rope_type": "linear", "rope_theta": 10000.0, "factor": 1e12}),
        ),
        (
            "linear",
            "scaling dropped",
            serde_json::json!({"rope_type": "default", "rope_theta": 10000.0}),
        ),
        (
            "llama3",
            "scaling dropped",
            serde_json::json!({"rope_type": "default", "rope_theta": 100.0}),
        ),
        ("llama3", "factor 4", llama3(100.0, 4.0, 1.0, 4.0, 32)),
        (
            "llama3",
            "high_freq_factor 2",
            llama3(100.0, 8.0, 1.0, 2.0, 32),
        ),
        (
            "llama3",
            "original context 64",
            llama3(100.0, 8.0, 1.0, 4.0, 64),
        ),
    ];
    for (name, what, rope) in wrong {
        let dir = altered(name, rope);
        let err = worst_error(name, dir.path());
        eprintln!("rope {name} with {what}: {err:.2e} × RMS");
        assert!(
            err > 1000.0 * TOL,
            "rope {name} with {what}: only {err:.2e} × RMS from transformers' taps"
        );
    }
}

/// A Llama 3 dict without one of its required numbers is refused (transformers fails on
/// it too) rather than filled with a guess; one without original_max_position_embeddings
/// loads, with max_position_embeddings in its place as in transformers (see the
/// `llama3_no_original` case above).
#[test]
fn an_incomplete_llama3_rope_config_is_refused() {
    let dir = altered(
        "llama3",
        serde_json::json!({"rope_type": "llama3", "rope_theta": 100.0, "factor": 8.0, "low_freq_factor": 1.0}),
    );
    let e = model::load(dir.path()).err().expect("refused").to_string();
    assert!(
        e.contains("rope_scaling type 'llama3' needs 'high_freq_factor'"),
        "{e}"
    );
    let dir = altered(
        "linear",
        serde_json::json!({"rope_type": "linear", "rope_theta": 10000.0}),
    );
    let e = model::load(dir.path()).err().expect("refused").to_string();
    assert!(e.contains("needs 'factor'"), "{e}");
}
