//! Tiny seeded-weight BERT and Llama checkpoints, written by the tests themselves
//! (config.json, tokenizer.json, model.safetensors), so the model code is exercised with no
//! download, and checked against hand-written float64 forward passes; and bad model inputs.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use cortexflow::model::align::plan_windows;
use cortexflow::model::extract::{word_activations, NeuronLayout, Pooling, RunOptions};
use cortexflow::model::stored::WeightDtype;
use cortexflow::model::{self, Direction, Tap, TapRequest};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde_json::json;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::Tokenizer;

use super::common::{cortexflow_fails, test_data};

const WORDS: [&str; 12] = [
    "[UNK]", "[CLS]", "[SEP]", "the", "little", "prince", "drew", "a", "sheep", "boa", "once", "i",
];

fn write_tokenizer(dir: &Path) {
    let vocab: tokenizers::models::bpe::Vocab = WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i as u32))
        .collect();
    let mut tok = Tokenizer::new(
        WordLevel::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .build()
            .unwrap(),
    );
    tok.with_pre_tokenizer(Some(Whitespace {}));
    tok.save(dir.join("tokenizer.json"), false).unwrap();
}

/// A checkpoint's tensors: name → (shape, row-major values).
type Weights = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Seeded weights (candle's CPU `randn` cannot be seeded): N(0, 0.2²), norm gains 1 + N(0, 0.2²)
/// so that no layer is close to zero.
fn seeded(tensors: Vec<(String, Vec<usize>)>, seed: u64) -> Weights {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    tensors
        .into_iter()
        .map(|(name, shape)| {
            let gain = name.ends_with("LayerNorm.weight") || name.ends_with("layernorm.weight");
            let values = (0..shape.iter().product())
                .map(|_| f32::from(gain) + 0.2 * rng.sample::<f32, _>(StandardNormal))
                .collect();
            (name, (shape, values))
        })
        .collect()
}

fn save(dir: &Path, config: serde_json::Value, weights: &Weights) {
    save_as(dir, config, weights, DType::F32);
}

/// Writes the checkpoint with every tensor in `dtype`.
fn save_as(dir: &Path, config: serde_json::Value, weights: &Weights, dtype: DType) {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    write_tokenizer(dir);
    let map: HashMap<String, Tensor> = weights
        .iter()
        .map(|(n, (s, v))| {
            let t = Tensor::from_vec(v.clone(), s.as_slice(), &Device::Cpu).unwrap();
            (n.clone(), t.to_dtype(dtype).unwrap())
        })
        .collect();
    candle_core::safetensors::save(&map, dir.join("model.safetensors")).unwrap();
}

/// The weights as `dtype` holds them (rounded to nearest), back in f32.
fn rounded(weights: &Weights, dtype: DType) -> Weights {
    weights
        .iter()
        .map(|(n, (s, v))| {
            let t = Tensor::from_vec(v.clone(), v.len(), &Device::Cpu).unwrap();
            let back = t.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
            (n.clone(), (s.clone(), back.to_vec1().unwrap()))
        })
        .collect()
}

fn tiny_bert(dir: &Path) -> Weights {
    let (h, f, v) = (8, 12, WORDS.len());
    let mut t = vec![
        ("embeddings.word_embeddings.weight".into(), vec![v, h]),
        ("embeddings.position_embeddings.weight".into(), vec![32, h]),
        ("embeddings.token_type_embeddings.weight".into(), vec![2, h]),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for l in 0..2 {
        let p = format!("encoder.layer.{l}");
        for (name, shape) in [
            ("attention.self.query", vec![h, h]),
            ("attention.self.key", vec![h, h]),
            ("attention.self.value", vec![h, h]),
            ("attention.output.dense", vec![h, h]),
            ("intermediate.dense", vec![f, h]),
            ("output.dense", vec![h, f]),
        ] {
            t.push((format!("{p}.{name}.bias"), vec![shape[0]]));
            t.push((format!("{p}.{name}.weight"), shape));
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            t.push((format!("{p}.{ln}.weight"), vec![h]));
            t.push((format!("{p}.{ln}.bias"), vec![h]));
        }
    }
    let cfg = json!({"model_type": "bert", "vocab_size": v, "hidden_size": h, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "intermediate_size": f, "hidden_act": "gelu", "max_position_embeddings": 32, "type_vocab_size": 2, "layer_norm_eps": 1e-12});
    let w = seeded(t, 1);
    save(dir, cfg, &w);
    w
}

/// q_proj and k_proj are zero: every attention score is 0, so each token attends uniformly
/// to itself and the tokens before it whatever the rotary angles, and the reference needs
/// no RoPE (checked in src/model/llama.rs against the GGUF layout).
fn tiny_llama(dir: &Path) -> Weights {
    tiny_llama_as(dir, DType::F32)
}

/// The tiny Llama written in `dtype`; returns the weights as written (rounded to it).
fn tiny_llama_as(dir: &Path, dtype: DType) -> Weights {
    let (h, f, v, hd) = (8, 12, WORDS.len(), 2);
    let mut t = vec![("model.embed_tokens.weight".into(), vec![v, h])];
    for l in 0..3 {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj", vec![4 * hd, h]),
            ("self_attn.k_proj", vec![2 * hd, h]),
            ("self_attn.v_proj", vec![2 * hd, h]),
            ("self_attn.o_proj", vec![h, 4 * hd]),
            ("mlp.gate_proj", vec![f, h]),
            ("mlp.up_proj", vec![f, h]),
            ("mlp.down_proj", vec![h, f]),
        ] {
            t.push((format!("{p}.{name}.weight"), shape));
        }
        t.push((format!("{p}.input_layernorm.weight"), vec![h]));
        t.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
    }
    let cfg = json!({"model_type": "llama", "vocab_size": v, "hidden_size": h, "intermediate_size": f, "num_hidden_layers": 3,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": hd, "max_position_embeddings": 64,
                     "rope_theta": 10000.0, "rope_scaling": {"type": "linear", "factor": 2.0}});
    let mut w = seeded(t, 2);
    for (name, (_, values)) in w.iter_mut() {
        if name.ends_with("q_proj.weight") || name.ends_with("k_proj.weight") {
            values.fill(0.0);
        }
    }
    save_as(dir, cfg, &w, dtype);
    rounded(&w, dtype)
}

/// Per layer: (ffn.out rows, ffn.inner rows), one row per token.
type Taps = Vec<(Vec<Vec<f64>>, Vec<Vec<f64>>)>;

/// W·x (+ b) with W stored (out × in) as PyTorch's nn.Linear.
fn linear(w: &Weights, name: &str, x: &[f64], bias: bool) -> Vec<f64> {
    let (shape, m) = &w[&format!("{name}.weight")];
    assert_eq!(shape[1], x.len(), "{name}");
    (0..shape[0])
        .map(|o| {
            let dot: f64 = (0..x.len()).map(|i| m[o * x.len() + i] as f64 * x[i]).sum();
            dot + if bias {
                w[&format!("{name}.bias")].1[o] as f64
            } else {
                0.0
            }
        })
        .collect()
}

fn layer_norm(w: &Weights, name: &str, x: &[f64]) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let (g, b) = (
        &w[&format!("{name}.weight")].1,
        &w[&format!("{name}.bias")].1,
    );
    (0..x.len())
        .map(|i| (x[i] - mean) / (var + 1e-12).sqrt() * g[i] as f64 + b[i] as f64)
        .collect()
}

fn rms_norm(w: &Weights, name: &str, x: &[f64]) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let g = &w[&format!("{name}.weight")].1;
    (0..x.len())
        .map(|i| x[i] / (ms + 1e-6).sqrt() * g[i] as f64)
        .collect()
}

fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// BERT as transformers' BertModel computes it, in float64: embeddings (token type 0) →
/// LayerNorm; per layer, 2-head softmax attention over all tokens, residual + LayerNorm,
/// GELU (erf) FFN, residual + LayerNorm.
fn bert_reference(w: &Weights, ids: &[u32]) -> Taps {
    let row = |name: &str, r: usize| -> Vec<f64> {
        let (s, v) = &w[name];
        v[r * s[1]..(r + 1) * s[1]]
            .iter()
            .map(|&x| x as f64)
            .collect()
    };
    let mut x: Vec<Vec<f64>> = ids
        .iter()
        .enumerate()
        .map(|(p, &id)| {
            let e = add(
                &add(
                    &row("embeddings.word_embeddings.weight", id as usize),
                    &row("embeddings.position_embeddings.weight", p),
                ),
                &row("embeddings.token_type_embeddings.weight", 0),
            );
            layer_norm(w, "embeddings.LayerNorm", &e)
        })
        .collect();
    let (heads, d) = (2, 4);
    let mut taps = Vec::new();
    for l in 0..2 {
        let p = |s: &str| format!("encoder.layer.{l}.{s}");
        let proj = |name: &str| -> Vec<Vec<f64>> {
            x.iter().map(|r| linear(w, &p(name), r, true)).collect()
        };
        let (q, k, v) = (
            proj("attention.self.query"),
            proj("attention.self.key"),
            proj("attention.self.value"),
        );
        let mut ctx = vec![vec![0.0; heads * d]; x.len()];
        for h in 0..heads {
            let hs = h * d..(h + 1) * d;
            for i in 0..x.len() {
                let scores: Vec<f64> = (0..x.len())
                    .map(|j| hs.clone().map(|c| q[i][c] * k[j][c]).sum::<f64>() / (d as f64).sqrt())
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in hs.clone() {
                    ctx[i][c] = (0..x.len()).map(|j| e[j] / z * v[j][c]).sum();
                }
            }
        }
        let (mut outs, mut inners, mut next) = (Vec::new(), Vec::new(), Vec::new());
        for (xi, ci) in x.iter().zip(&ctx) {
            let a = linear(w, &p("attention.output.dense"), ci, true);
            let x1 = layer_norm(w, &p("attention.output.LayerNorm"), &add(&a, xi));
            let inner: Vec<f64> = linear(w, &p("intermediate.dense"), &x1, true)
                .iter()
                .map(|&u| 0.5 * u * (1.0 + libm::erf(u / std::f64::consts::SQRT_2)))
                .collect();
            let out = linear(w, &p("output.dense"), &inner, true);
            next.push(layer_norm(w, &p("output.LayerNorm"), &add(&out, &x1)));
            outs.push(out);
            inners.push(inner);
        }
        taps.push((outs, inners));
        x = next;
    }
    taps
}

/// Llama as transformers' LlamaModel computes it, in float64, for zero q/k weights:
/// RMSNorm (ε 1e-6, the config's default) → attention = the mean of the values of tokens
/// 0..=i (key/value head h/2 for query head h: 4 heads on 2), o_proj, residual; RMSNorm →
/// down(SiLU(gate)·up), residual.
fn llama_reference(w: &Weights, ids: &[u32]) -> Taps {
    let (hidden, hd) = (8, 2);
    let emb = &w["model.embed_tokens.weight"].1;
    let mut x: Vec<Vec<f64>> = ids
        .iter()
        .map(|&id| {
            emb[id as usize * hidden..(id as usize + 1) * hidden]
                .iter()
                .map(|&v| v as f64)
                .collect()
        })
        .collect();
    let mut taps = Vec::new();
    for l in 0..3 {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        let v: Vec<Vec<f64>> = x
            .iter()
            .map(|r| {
                linear(
                    w,
                    &p("self_attn.v_proj"),
                    &rms_norm(w, &p("input_layernorm"), r),
                    false,
                )
            })
            .collect();
        let (mut outs, mut inners, mut next) = (Vec::new(), Vec::new(), Vec::new());
        for (i, xi) in x.iter().enumerate() {
            let ctx: Vec<f64> = (0..4 * hd)
                .map(|c| {
                    let kv = (c / hd) / 2 * hd + c % hd;
                    (0..=i).map(|j| v[j][kv]).sum::<f64>() / (i + 1) as f64
                })
                .collect();
            let x1 = add(xi, &linear(w, &p("self_attn.o_proj"), &ctx, false));
            let n = rms_norm(w, &p("post_attention_layernorm"), &x1);
            let (g, u) = (
                linear(w, &p("mlp.gate_proj"), &n, false),
                linear(w, &p("mlp.up_proj"), &n, false),
            );
            let inner: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let out = linear(w, &p("mlp.down_proj"), &inner, false);
            next.push(add(&x1, &out));
            outs.push(out);
            inners.push(inner);
        }
        taps.push((outs, inners));
        x = next;
    }
    taps
}

/// Largest |ours − reference| over all values, after checking the shapes agree.
fn max_diff(ours: &[Vec<f32>], theirs: &[Vec<f64>], what: &str) -> f64 {
    assert_eq!(ours.len(), theirs.len(), "{what}: rows");
    let mut worst: f64 = 0.0;
    for (a, b) in ours.iter().zip(theirs) {
        assert_eq!(a.len(), b.len(), "{what}: width");
        for (&a, &b) in a.iter().zip(b) {
            worst = worst.max((a as f64 - b).abs());
        }
    }
    worst
}

/// Tolerance against the float64 references: float32 arithmetic on values below 1.5 (RMS
/// 0.1–0.3), sums over at most 12 terms, 2–3 layers, A&S erf (1.5e-7) and a polynomial exp
/// (2 ulp). Measured worst: 4.0e-7 (BERT), 2.1e-7 (Llama), a few ulp; bound 2e-6, 5× that.
const TINY_TOL: f64 = 2e-6;

/// Loads, checks widths, compares every layer and tap of one forward pass with the float64
/// reference, and runs a 30-word story through windows of 8 tokens, 3 per batch: each word
/// (one token each) gets the reference's row of the window that keeps it.
fn run_tiny(dir: &Path, inner: usize, reference: impl Fn(&[u32]) -> Taps) {
    let m = model::load(dir).unwrap();
    assert_eq!(m.tap_width(Tap::FfnOut), 8);
    assert_eq!(m.tap_width(Tap::FfnInner), inner);

    // One pass over every word of the vocabulary, all layers.
    let ids: Vec<u32> = (1..WORDS.len() as u32).rev().collect();
    let all = TapRequest::new((0..m.n_layers()).collect(), Tap::ALL.to_vec());
    let outputs = m.forward_taps(&ids, &all).unwrap();
    let want = reference(&ids);
    assert_eq!(outputs.len(), 2 * want.len());
    let mut worst: f64 = 0.0;
    for o in &outputs {
        let ours: Vec<Vec<f32>> = o.values.to_vec2().unwrap();
        let theirs = match o.tap {
            Tap::FfnOut => &want[o.layer].0,
            Tap::FfnInner => &want[o.layer].1,
        };
        let d = max_diff(&ours, theirs, &format!("layer {} {:?}", o.layer, o.tap));
        assert!(
            d <= TINY_TOL,
            "layer {} {:?}: max |error| {d:e}",
            o.layer,
            o.tap
        );
        worst = worst.max(d);
    }

    let words: Vec<String> = (0..30).map(|i| WORDS[3 + i % 9].to_string()).collect();
    let request = TapRequest::new(vec![0, 1], Tap::ALL.to_vec());
    let layout = NeuronLayout::new(m.as_ref(), &request);
    let opt = RunOptions {
        request,
        context: 8,
        batch: 3,
        pooling: Pooling::Mean,
    };
    let mut seen = 0;
    let (acts, empty) =
        word_activations(m.as_ref(), &words, &opt, &layout, |done| seen = done).unwrap();
    assert_eq!(seen, 30, "progress reaches every token");
    assert_eq!(empty, 0);
    assert_eq!(acts.dim(), (30, 2 * (8 + inner)));
    assert!(acts.iter().all(|v| v.is_finite()) && acts.iter().any(|&v| v != 0.0));
    // The reference, window by window: the window plan is align's (unit-tested there), the
    // numbers are the float64 forward of the window's ids with the model's specials.
    let story: Vec<u32> = words
        .iter()
        .map(|w| WORDS.iter().position(|v| v == w).unwrap() as u32)
        .collect();
    let (pre, post) = m.window_specials();
    let mut expected: Vec<Vec<f64>> = Vec::new();
    for win in plan_windows(story.len(), 8, m.direction()) {
        let ids = [&pre[..], &story[win.start..win.end], &post[..]].concat();
        let taps = reference(&ids);
        for t in win.keep {
            // Columns: for each layer, for each tap (ffn.out, then ffn.inner), every unit.
            let r = pre.len() + t - win.start;
            expected.push(
                taps[..2]
                    .iter()
                    .flat_map(|(out, inner)| out[r].iter().chain(&inner[r]).copied())
                    .collect(),
            );
        }
    }
    let ours: Vec<Vec<f32>> = acts.rows().into_iter().map(|r| r.to_vec()).collect();
    let d = max_diff(&ours, &expected, "word activations");
    assert!(d <= TINY_TOL, "word activations: max |error| {d:e}");
    worst = worst.max(d);
    eprintln!("{}: worst |error| against float64 {worst:.2e}", m.name());

    // A layer past the model's depth is refused.
    let bad = RunOptions {
        request: TapRequest::new(vec![7], vec![Tap::FfnOut]),
        ..opt
    };
    assert!(word_activations(m.as_ref(), &words, &bad, &layout, |_| ())
        .unwrap_err()
        .to_string()
        .contains("layer 7"));
}

#[test]
fn tiny_bert_loads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let w = tiny_bert(dir.path());
    assert_eq!(
        model::load(dir.path()).unwrap().direction(),
        Direction::Encoder
    );
    run_tiny(dir.path(), 12, |ids| bert_reference(&w, ids));
}

#[test]
fn tiny_llama_loads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let w = tiny_llama(dir.path());
    assert_eq!(
        model::load(dir.path()).unwrap().direction(),
        Direction::Decoder
    );
    run_tiny(dir.path(), 12, |ids| llama_reference(&w, ids));
}

/// bf16 and f16 checkpoints, their matrices kept as stored (the default): the taps equal
/// the float64 forward of the rounded weights within the f32 tolerance, and equal by bits
/// the taps of the same checkpoint copied to f32 at load (`--dtype f32`): half → f32 is
/// exact, and a matrix this small is one chunk, so the products are the same.
#[test]
fn tiny_llama_in_half_precision() {
    for dtype in [DType::BF16, DType::F16] {
        let dir = tempfile::tempdir().unwrap();
        let w = tiny_llama_as(dir.path(), dtype);
        run_tiny(dir.path(), 12, |ids| llama_reference(&w, ids));
        let ids: Vec<u32> = (1..WORDS.len() as u32).collect();
        let all = TapRequest::new(vec![0, 1, 2], Tap::ALL.to_vec());
        let taps = |d: WeightDtype| -> Vec<Vec<Vec<f32>>> {
            let m = model::load_as(dir.path(), d).unwrap();
            let out = m.forward_taps(&ids, &all).unwrap();
            out.iter().map(|o| o.values.to_vec2().unwrap()).collect()
        };
        assert_eq!(taps(WeightDtype::Stored), taps(WeightDtype::F32), "{dtype:?}");
    }
}

mod bad_input {
    use super::*;

    fn load_error(path: &Path) -> String {
        match model::load(path) {
            Ok(_) => panic!("{} should not load", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_model_folder_missing_a_file() {
        let dir = tempfile::tempdir().unwrap();
        tiny_bert(dir.path());
        std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
        assert!(load_error(dir.path()).contains("no tokenizer.json"));
        write_tokenizer(dir.path());
        std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
        assert!(load_error(dir.path()).contains("no *.safetensors"));
        std::fs::remove_file(dir.path().join("config.json")).unwrap();
        assert!(load_error(dir.path()).contains("config.json"));
        // A weight file that lacks a tensor names it.
        let dir = tempfile::tempdir().unwrap();
        tiny_llama(dir.path());
        let cfg = std::fs::read_to_string(dir.path().join("config.json"))
            .unwrap()
            .replace("\"num_hidden_layers\":3", "\"num_hidden_layers\":4");
        std::fs::write(dir.path().join("config.json"), cfg).unwrap();
        assert!(
            load_error(dir.path()).contains("model.layers.3"),
            "{}",
            load_error(dir.path())
        );
    }

    #[test]
    fn an_unsupported_architecture() {
        let dir = tempfile::tempdir().unwrap();
        tiny_bert(dir.path());
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"model_type": "t5", "num_layers": 2}"#,
        )
        .unwrap();
        assert!(load_error(dir.path()).contains("model_type 't5' is not supported"));
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        assert!(load_error(dir.path()).contains("invalid JSON"));
        tiny_llama(dir.path());
        let cfg = std::fs::read_to_string(dir.path().join("config.json"))
            .unwrap()
            .replace("linear", "yarn");
        std::fs::write(dir.path().join("config.json"), cfg).unwrap();
        assert!(load_error(dir.path()).contains("rope_scaling type 'yarn' is not supported"));
    }

    #[test]
    fn a_gguf_of_another_architecture() {
        use candle_core::quantized::gguf_file::{write, Value};
        use candle_core::quantized::{GgmlDType, QTensor};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gpt2.gguf");
        let w = QTensor::quantize(
            &Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
            GgmlDType::F32,
        )
        .unwrap();
        let arch = Value::String("gpt2".into());
        let mut f = std::fs::File::create(&path).unwrap();
        write(
            &mut f,
            &[("general.architecture", &arch)],
            &[("token_embd.weight", &w)],
        )
        .unwrap();
        drop(f);
        assert!(load_error(&path).contains("GGUF architecture 'gpt2' is not supported"));
        std::fs::write(&path, b"GGUF but not really").unwrap();
        assert!(load_error(&path).contains("not a readable GGUF file"));
    }

    #[test]
    fn a_stimulus_whose_words_do_not_fit_the_scans() {
        let dir = tempfile::tempdir().unwrap();
        tiny_bert(dir.path());
        let stim = test_data().join("stimuli/lpp-en/lppEN_section1.TextGrid");
        let e = cortexflow_fails(&[
            "responses",
            "--model",
            dir.path().to_str().unwrap(),
            "--stimulus",
            stim.to_str().unwrap(),
            "--tr",
            "2",
            "--n-scans",
            "100",
            "--out",
            dir.path().join("out").to_str().unwrap(),
        ]);
        assert!(
            e.contains("lppEN_section1.TextGrid")
                && e.contains("start at or after the end of the scans"),
            "{e}"
        );
        let e = cortexflow_fails(&[
            "responses",
            "--model",
            dir.path().to_str().unwrap(),
            "--stimulus",
            stim.to_str().unwrap(),
            "--tr",
            "2",
            "--n-scans",
            "300,300",
            "--out",
            "x",
        ]);
        assert!(e.contains("--n-scans gives 2 values for 1 stimuli"), "{e}");
        let e = cortexflow_fails(&[
            "activations",
            "--model",
            dir.path().to_str().unwrap(),
            "--text",
            stim.to_str().unwrap(),
            "--taps",
            "ffn.mid",
            "--out",
            "x",
        ]);
        assert!(e.contains("unknown tap 'ffn.mid'"), "{e}");
        let e = cortexflow_fails(&[
            "activations",
            "--model",
            dir.path().to_str().unwrap(),
            "--text",
            stim.to_str().unwrap(),
            "--context",
            "100",
            "--out",
            "x",
        ]);
        assert!(e.contains("--context 100 must be between 1 and 30"), "{e}");
    }
}
