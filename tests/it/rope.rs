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
use cortexflow::model;

use super::common::{altered_checkpoint, fixture_json, fixtures, tap_error};

/// |ours − transformers| ≤ TOL × RMS of the transformers tap, for every value.
const TOL: f64 = 2e-5;

fn rope_dir() -> PathBuf {
    fixtures().join("rope")
}


/// The worst |ours − transformers| / RMS of the rope fixture `name` (see
/// [`tap_error`]), running the checkpoint in `folder`.
fn worst_error(name: &str, folder: &Path) -> f64 {
    tap_error(&rope_dir(), name, folder)
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
    altered_checkpoint(&rope_dir().join(name), |config| {
        config["rope_parameters"] = rope_parameters
    })
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

/// A llama.cpp-style GGUF file of fixture checkpoint `name`: q/k rows permuted per head
/// as llama.cpp's converter does (so rotary pairs are adjacent), float32 tensors, a
/// stand-in byte-level BPE vocabulary, the rotary base from config.json, and the given
/// rotary metadata and `rope_freqs.weight`.
pub(super) fn gguf_of(
    name: &str,
    dir: &Path,
    rope_meta: Vec<(&str, candle_core::quantized::gguf_file::Value)>,
    rope_freqs: Option<Vec<f32>>,
) -> PathBuf {
    use candle_core::quantized::gguf_file::{write, Value};
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    let src = rope_dir().join(name);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let int = |k: &str| config[k].as_u64().unwrap() as u32;
    let (heads, kv_heads, layers) = (
        int("num_attention_heads"),
        int("num_key_value_heads"),
        int("num_hidden_layers"),
    );
    let hf = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let permute = |w: &Tensor, heads: u32| {
        let (out, inp) = w.dims2().unwrap();
        let hd = out / heads as usize;
        w.reshape((heads as usize, 2, hd / 2, inp))
            .and_then(|w| w.transpose(1, 2))
            .and_then(|w| w.reshape((out, inp)))
            .and_then(|w| w.contiguous())
            .unwrap()
    };
    let mut tensors: Vec<(String, Tensor)> = vec![(
        "token_embd.weight".into(),
        hf["model.embed_tokens.weight"].clone(),
    )];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        for (gguf, hf_name) in [
            ("attn_q", "self_attn.q_proj"),
            ("attn_k", "self_attn.k_proj"),
            ("attn_v", "self_attn.v_proj"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_gate", "mlp.gate_proj"),
            ("ffn_up", "mlp.up_proj"),
            ("ffn_down", "mlp.down_proj"),
            ("attn_norm", "input_layernorm"),
            ("ffn_norm", "post_attention_layernorm"),
        ] {
            let w = &hf[&format!("{p}.{hf_name}.weight")];
            let w = match gguf {
                "attn_q" => permute(w, heads),
                "attn_k" => permute(w, kv_heads),
                _ => w.clone(),
            };
            tensors.push((format!("blk.{l}.{gguf}.weight"), w));
        }
    }
    if let Some(f) = rope_freqs {
        let n = f.len();
        tensors.push((
            "rope_freqs.weight".into(),
            Tensor::from_vec(f, n, &Device::Cpu).unwrap(),
        ));
    }
    let q: Vec<(String, QTensor)> = tensors
        .into_iter()
        .map(|(n, t)| (n, QTensor::quantize(&t, GgmlDType::F32).unwrap()))
        .collect();
    let vocab = config["vocab_size"].as_u64().unwrap();
    let mut meta: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.attention.head_count", Value::U32(heads)),
        ("llama.attention.head_count_kv", Value::U32(kv_heads)),
        ("llama.embedding_length", Value::U32(int("hidden_size"))),
        (
            "llama.feed_forward_length",
            Value::U32(int("intermediate_size")),
        ),
        ("llama.block_count", Value::U32(layers)),
        ("llama.rope.dimension_count", Value::U32(int("head_dim"))),
        (
            "llama.context_length",
            Value::U32(int("max_position_embeddings")),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(config["rms_norm_eps"].as_f64().unwrap() as f32),
        ),
        (
            "llama.rope.freq_base",
            Value::F32(config["rope_parameters"]["rope_theta"].as_f64().unwrap() as f32),
        ),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array((0..vocab).map(|i| Value::String(format!("w{i}"))).collect()),
        ),
        ("tokenizer.ggml.merges", Value::Array(vec![])),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
    ];
    meta.extend(rope_meta);
    let path = dir.join(format!("{name}.gguf"));
    let mut f = std::fs::File::create(&path).unwrap();
    write(
        &mut f,
        &meta.iter().map(|(k, v)| (*k, v)).collect::<Vec<_>>(),
        &q.iter().map(|(n, t)| (n.as_str(), t)).collect::<Vec<_>>(),
    )
    .unwrap();
    path
}

/// The GGUF path (interleaved rotary pairs, settings from GGUF metadata) against
/// transformers: linear scaling as `llama.rope.scaling.type`/`factor`, and Llama 3
/// scaling as llama.cpp's converter stores it, `rope_freqs.weight` = θ_i / scaled θ_i
/// (here from transformers' own scaled θ, so cortexflow's Llama 3 formula plays no part).
/// Without the tensor the Llama 3 taps are far off: it is read, not ignored.
#[test]
fn gguf_rope_scaling_matches_transformers() {
    use candle_core::quantized::gguf_file::Value;
    let dir = tempfile::tempdir().unwrap();

    let linear = gguf_of(
        "linear",
        dir.path(),
        vec![
            ("llama.rope.scaling.type", Value::String("linear".into())),
            ("llama.rope.scaling.factor", Value::F32(2.0)),
        ],
        None,
    );
    let err = worst_error("linear", &linear);
    eprintln!("rope linear from GGUF: worst |error| / tap RMS = {err:.2e}");
    assert!(err <= TOL, "linear GGUF: {err:.3e} × RMS");

    let fx = fixture_json("rope/llama3.json");
    let scaled: Vec<f64> = fx["inv_freq"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let d = 2 * scaled.len();
    let factors: Vec<f32> = scaled
        .iter()
        .enumerate()
        .map(|(i, s)| (100f64.powf(-2.0 * i as f64 / d as f64) / s) as f32)
        .collect();
    // One frequency of each band: kept (1), blended (between), divided by the factor (8).
    let near = |a: f32, b: f32| (a - b).abs() < 1e-5;
    assert!(
        near(factors[0], 1.0) && factors[1] > 1.5 && factors[1] < 7.5 && near(factors[2], 8.0),
        "{factors:?}"
    );
    let llama3 = gguf_of("llama3", dir.path(), vec![], Some(factors));
    let err = worst_error("llama3", &llama3);
    eprintln!("rope llama3 from GGUF (rope_freqs): worst |error| / tap RMS = {err:.2e}");
    assert!(err <= TOL, "llama3 GGUF: {err:.3e} × RMS");

    let unscaled = gguf_of("llama3", dir.path(), vec![], None);
    let err = worst_error("llama3", &unscaled);
    assert!(
        err > 1000.0 * TOL,
        "llama3 GGUF without rope_freqs: only {err:.3e} × RMS"
    );

    let yarn = gguf_of(
        "linear",
        dir.path(),
        vec![("llama.rope.scaling.type", Value::String("yarn".into()))],
        None,
    );
    let e = model::load(&yarn).err().expect("refused").to_string();
    assert!(
        e.contains("GGUF rope scaling type 'yarn' is not supported"),
        "{e}"
    );
}
