//! Model families besides BERT and Llama against transformers (fixtures from
//! scripts/fixtures/make_family_fixtures.py): tiny Mistral (sliding window 8 over 40
//! tokens), Qwen2 (q, k, v biases), Gemma (scaled embeddings, (1 + w) norms, GELU gate),
//! RoBERTa (positions from the pad id + 1, a pad token in the ids) and GPT-2 (Conv1D
//! weights, learned positions, gelu_new) checkpoints saved by transformers, whose taps
//! cortexflow must reproduce, every layer and both taps.
//!
//! Tolerance: as tests/it/rope.rs (same sizes and sharp attention), 2e-5 of each tap's
//! RMS, 2–10 times float32's own error here (transformers float32 against float64: 1.9e-6
//! to 1.1e-5, Gemma the largest, printed by the fixture script; measured here 2.4e-6 to
//! 7.7e-6); dropping a family's own feature (the window, the biases, the position offset,
//! Gemma's scalings) moves the taps by 5–9 × RMS, which the tests check.

use std::path::PathBuf;

use super::common::{altered_checkpoint, fixtures, tap_error};

const TOL: f64 = 2e-5;

fn dir() -> PathBuf {
    fixtures().join("families")
}

fn check(name: &str) {
    let worst = tap_error(&dir(), name, &dir().join(name));
    eprintln!("{name}: worst |error| / tap RMS = {worst:.2e} (tolerance {TOL:.0e})");
    assert!(worst <= TOL, "{name}: {worst:.3e} × RMS from transformers' taps");
}

/// The error with the checkpoint's config.json edited, which must be far above TOL.
fn check_sensitive(name: &str, what: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let altered = altered_checkpoint(&dir().join(name), edit);
    let err = tap_error(&dir(), name, altered.path());
    eprintln!("{name} with {what}: {err:.2e} × RMS");
    assert!(err > 1000.0 * TOL, "{name} with {what}: only {err:.2e} × RMS");
}

#[test]
fn mistral_taps_match_transformers() {
    check("mistral");
    check_sensitive("mistral", "no sliding window", |c| c["sliding_window"] = serde_json::Value::Null);
}

#[test]
fn qwen2_taps_match_transformers() {
    check("qwen2");
    // Read as a Llama: the q, k, v biases are left out.
    check_sensitive("qwen2", "its biases dropped", |c| c["model_type"] = "llama".into());
}

#[test]
fn gemma_taps_match_transformers() {
    check("gemma");
    // Read as a Llama with Gemma's gate: no embedding scale, no (1 + w).
    check_sensitive("gemma", "read as a Llama", |c| c["model_type"] = "llama".into());
}

#[test]
fn roberta_taps_match_transformers() {
    check("roberta");
    check_sensitive("roberta", "positions counted from 1", |c| c["pad_token_id"] = 0.into());
}

#[test]
fn gpt2_taps_match_transformers() {
    check("gpt2");
}
