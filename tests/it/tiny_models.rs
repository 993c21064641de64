//! Tiny random-weight BERT and Llama checkpoints, written by the tests themselves
//! (config.json, tokenizer.json, model.safetensors), so the model code is exercised with no
//! download; and bad model inputs.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use cortexflow::model::extract::{word_activations, NeuronLayout, Pooling, RunOptions};
use cortexflow::model::{self, Tap, TapRequest};
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

fn save(dir: &Path, config: serde_json::Value, tensors: Vec<(String, Vec<usize>)>) {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    write_tokenizer(dir);
    let map: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(n, s)| (n, Tensor::randn(0f32, 0.2, s, &Device::Cpu).unwrap()))
        .collect();
    candle_core::safetensors::save(&map, dir.join("model.safetensors")).unwrap();
}

fn tiny_bert(dir: &Path) {
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
    save(dir, cfg, t);
}

fn tiny_llama(dir: &Path) {
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
    save(dir, cfg, t);
}

/// Loads, checks widths, and runs a 30-word story through windows of 8 tokens.
fn run_tiny(dir: &Path, inner: usize) {
    let m = model::load(dir).unwrap();
    assert_eq!(m.tap_width(Tap::FfnOut), 8);
    assert_eq!(m.tap_width(Tap::FfnInner), inner);
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
    tiny_bert(dir.path());
    run_tiny(dir.path(), 12);
}

#[test]
fn tiny_llama_loads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    tiny_llama(dir.path());
    run_tiny(dir.path(), 12);
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
            r#"{"model_type": "gpt2", "n_layer": 2}"#,
        )
        .unwrap();
        assert!(load_error(dir.path()).contains("model_type 'gpt2' is not supported"));
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
