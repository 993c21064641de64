//! Peak memory of `cortexflow responses` on a Llama-shape checkpoint of ~1.2 billion
//! parameters in bf16 safetensors (Llama 3.2 1B's shapes: 16 layers, hidden 2,048, FFN
//! 8,192, 32 heads / 8 KV heads, vocabulary 128,256), against the checkpoint's size on
//! disk: with the weights kept as stored (the default) and copied to f32 (`--dtype f32`).
//!
//! The weights are random (uniform with the std 0.02 of Llama's initializer; norms 1), so
//! the bench needs no download; what it measures (pages touched, f32 copies, scratch) does
//! not depend on the values. The checkpoint (2.47 GB) is written once into
//! target/bench-data/ and reused. The story is the first 300 words of Le Petit Prince's
//! section 1 through a word-level tokenizer of its own vocabulary, every layer tapped.

#[allow(dead_code)] // timed_process only: the child is our own CLI
mod common;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use cortexflow::io::stimulus::{read_stimulus, write_tsv};

const BIN: &str = env!("CARGO_BIN_EXE_cortexflow");

const LAYERS: usize = 16;
const HIDDEN: usize = 2048;
const FFN: usize = 8192;
const HEADS: usize = 32;
const KV_HEADS: usize = 8;
const VOCAB: usize = 128_256;
const WORDS: usize = 300;
const TR: f64 = 2.0;

/// (name, shape) of every tensor, in file order.
fn tensors() -> Vec<(String, Vec<usize>)> {
    let hd = HIDDEN / HEADS;
    let mut t = vec![("model.embed_tokens.weight".to_string(), vec![VOCAB, HIDDEN])];
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj", vec![HEADS * hd, HIDDEN]),
            ("self_attn.k_proj", vec![KV_HEADS * hd, HIDDEN]),
            ("self_attn.v_proj", vec![KV_HEADS * hd, HIDDEN]),
            ("self_attn.o_proj", vec![HIDDEN, HEADS * hd]),
            ("mlp.gate_proj", vec![FFN, HIDDEN]),
            ("mlp.up_proj", vec![FFN, HIDDEN]),
            ("mlp.down_proj", vec![HIDDEN, FFN]),
            ("input_layernorm", vec![HIDDEN]),
            ("post_attention_layernorm", vec![HIDDEN]),
        ] {
            t.push((format!("{p}.{name}.weight"), shape));
        }
    }
    t.push(("model.norm.weight".to_string(), vec![HIDDEN]));
    t
}

/// Writes model.safetensors tensor by tensor (the format: an 8-byte little-endian header
/// length, the JSON header padded with spaces to a multiple of 8, then the data), so the
/// bench never holds the checkpoint in memory.
fn write_weights(path: &Path) -> std::io::Result<u64> {
    let tensors = tensors();
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in &tensors {
        let bytes = 2 * shape.iter().product::<usize>();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::Value::Object(header).to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = BufWriter::with_capacity(1 << 22, std::fs::File::create(path)?);
    out.write_all(&(text.len() as u64).to_le_bytes())?;
    out.write_all(text.as_bytes())?;
    // xorshift64*: uniform on ±0.02·√3 (std 0.02), rounded to bf16 by truncation.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let bound = 0.02f32 * 3f32.sqrt();
    let mut buf = Vec::with_capacity(1 << 20);
    for (name, shape) in &tensors {
        let norm = name.ends_with("norm.weight");
        let mut left = shape.iter().product::<usize>();
        while left > 0 {
            let n = left.min(1 << 19);
            buf.clear();
            for _ in 0..n {
                let v = if norm {
                    1.0f32
                } else {
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    let u = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
                    (2.0 * u - 1.0) * bound
                };
                buf.extend_from_slice(&((v.to_bits() >> 16) as u16).to_le_bytes());
            }
            out.write_all(&buf)?;
            left -= n;
        }
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(8 + text.len() as u64 + offset as u64)
}

/// A word-level tokenizer over `words` (ids 0.. in first-seen order, `<unk>` last).
fn write_tokenizer(dir: &Path, words: &[String]) {
    use tokenizers::models::wordlevel::WordLevel;
    let mut vocab = std::collections::HashMap::new();
    for w in words {
        let next = vocab.len() as u32;
        vocab.entry(w.clone()).or_insert(next);
    }
    let unk = vocab.len() as u32;
    vocab.insert("<unk>".to_string(), unk);
    let mut tok = tokenizers::Tokenizer::new(
        WordLevel::builder()
            .vocab(vocab.into_iter().collect::<tokenizers::models::bpe::Vocab>())
            .unk_token("<unk>".into())
            .build()
            .unwrap(),
    );
    tok.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
    tok.save(dir.join("tokenizer.json"), false).unwrap();
}

/// The checkpoint folder, written on first use (into a `.part` folder renamed at the end).
fn checkpoint(words: &[String]) -> (PathBuf, u64) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    let dir = root.join("llama-1b-bf16");
    if !dir.is_dir() {
        let part = root.join("llama-1b-bf16.part");
        let _ = std::fs::remove_dir_all(&part);
        std::fs::create_dir_all(&part).unwrap();
        eprintln!("writing a 1.24B-parameter bf16 checkpoint into {}", dir.display());
        write_weights(&part.join("model.safetensors")).unwrap();
        let config = serde_json::json!({
            "model_type": "llama", "vocab_size": VOCAB, "hidden_size": HIDDEN,
            "intermediate_size": FFN, "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
            "max_position_embeddings": 131_072, "rms_norm_eps": 1e-5, "rope_theta": 500_000.0,
            "tie_word_embeddings": true, "torch_dtype": "bfloat16"});
        std::fs::write(part.join("config.json"), config.to_string()).unwrap();
        write_tokenizer(&part, words);
        std::fs::rename(&part, &dir).unwrap();
    }
    let size = std::fs::metadata(dir.join("model.safetensors")).unwrap().len();
    (dir, size)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/stimuli/lpp-en");
    let mut words = read_stimulus(&data.join("lppEN_section1.TextGrid"), None).unwrap().words;
    words.truncate(WORDS);
    let texts: Vec<String> = words.iter().map(|w| w.text.clone()).collect();
    let (model, size) = checkpoint(&texts);
    let size_mib = size as f64 / (1u64 << 20) as f64;

    let work = tempfile::tempdir().unwrap();
    let story = work.path().join("story.tsv");
    write_tsv(&story, &words).unwrap();
    let end = words.last().map_or(0.0, |w| w.offset);
    let scans = (end / TR).ceil() as usize + 10;

    println!("checkpoint: {size_mib:.0} MiB bf16 on disk; story: {WORDS} words, {scans} scans, 16 layers × ffn.out");
    println!("| weights | wall s | peak RSS MiB | peak / checkpoint |");
    println!("|---|---|---|---|");
    for dtype in ["stored", "f32"] {
        let out = work.path().join(dtype);
        let (secs, peak) = common::timed_process(Command::new(BIN).args([
            "responses",
            "--model",
            &model.to_string_lossy(),
            "--stimulus",
            &story.to_string_lossy(),
            "--tr",
            &TR.to_string(),
            "--n-scans",
            &scans.to_string(),
            "--dtype",
            dtype,
            "--out",
            &out.to_string_lossy(),
        ]));
        println!("| {dtype} | {secs:.1} | {peak:.0} | {:.2}× |", peak / size_mib);
    }
}
