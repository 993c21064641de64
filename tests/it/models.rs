//! Parity of the real checkpoints with PyTorch/transformers (fixtures from
//! scripts/fixtures/make_model_fixtures.py), and tokenisation parity.
//! Needs `scripts/fetch-models`; `.ci/run` fetches them and sets CORTEXFLOW_REQUIRE_MODELS=1
//! so these tests cannot be skipped there.

use std::path::{Path, PathBuf};

use cortexflow::model::{self, align, Tap, TapRequest};

use super::common::{fixture_json, fixtures};

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

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Runs the model on the fixture's ids and compares every layer and tap: per-tap sums over
/// all tokens and the full vectors of the stored rows, |ours − torch| ≤ tol·max|torch tap|.
fn check_parity(name: &str, model_rel: &str, tol: f64) {
    let Some(path) = model_path(model_rel) else {
        return;
    };
    let fx = fixture_json(&format!("models/{name}.json"));
    let blob = read_f32(&fixtures().join(format!("models/{name}.f32")));
    let m = model::load(&path).unwrap();
    let ids: Vec<u32> = fx["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();

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
    let mut offset = 0;
    let mut worst: f64 = 0.0;
    for stat in fx["stats"].as_array().unwrap() {
        let layer = stat["layer"].as_u64().unwrap() as usize;
        let tap: Tap = stat["tap"].as_str().unwrap().parse().unwrap();
        let width = stat["width"].as_u64().unwrap() as usize;
        let scale = stat["max_abs"].as_f64().unwrap();
        let out = outputs
            .iter()
            .find(|o| o.layer == layer && o.tap == tap)
            .unwrap();
        let values: Vec<Vec<f32>> = out.values.to_vec2().unwrap();
        assert_eq!(values.len(), ids.len());
        assert_eq!(values[0].len(), width, "{name} layer {layer} {tap:?} width");
        let sum: f64 = values.iter().flatten().map(|&v| v as f64).sum();
        let n = (ids.len() * width) as f64;
        assert!(
            (sum - stat["sum"].as_f64().unwrap()).abs() <= tol * scale * n.sqrt(),
            "{name} layer {layer} {tap:?}: sum {sum} vs {}",
            stat["sum"]
        );
        for &r in &rows {
            for (u, &ours) in values[r].iter().enumerate() {
                let theirs = blob[offset + u] as f64;
                let err = (ours as f64 - theirs).abs() / scale;
                worst = worst.max(err);
                assert!(err <= tol, "{name} layer {layer} {tap:?} token {r} unit {u}: {ours} vs {theirs} (scale {scale})");
            }
            offset += width;
        }
    }
    assert_eq!(offset, blob.len(), "{name}: fixture fully compared");
    eprintln!("{name}: worst |error| / tap scale = {worst:.2e} (tolerance {tol:.0e})");
}

/// MiniLM-L6 (BERT, float32 safetensors) against transformers: same float32 arithmetic in
/// a different order, so errors are ~1e-6 of the tap scale; the bound is 1e-4.
#[test]
fn minilm_taps_match_transformers() {
    check_parity("minilm", "all-MiniLM-L6-v2", 1e-4);
}

/// SmolLM2-135M from its GGUF file against transformers loading the same GGUF (weights
/// dequantised to float32 on both sides); 30 layers of float32 reassociation, bound 1e-3.
#[test]
fn smollm2_gguf_taps_match_transformers() {
    check_parity("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", 1e-3);
}
