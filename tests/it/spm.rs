//! SentencePiece tokenizers from GGUF metadata (Llama 1/2 style) against transformers.
//! The fixture (scripts/fixtures/make_spm_fixtures.py) trains a 1,000-piece SentencePiece
//! BPE model with Llama's settings on Le Petit Prince, writes it into a tiny Llama GGUF,
//! and records the ids transformers' tokenizer (built from that GGUF's metadata, as for a
//! llama.cpp-converted Llama 2) gives each of the nine LPP sections and some edge strings.
//! Token ids are integers: equality is exact.

use cortexflow::io::stimulus::read_stimulus;
use cortexflow::model::{self, align, Tap, TapRequest};

use super::common::{fixture_json, fixtures, test_data};

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn sentencepiece_gguf_tokenizes_as_transformers() {
    let fixture = fixture_json("spm/ids.json");
    let m = model::load(&fixtures().join("spm/tiny-spm-llama.gguf")).unwrap();
    let tok = m.tokenizer();
    assert_eq!(
        tok.get_vocab_size(true),
        fixture["vocab"].as_u64().unwrap() as usize
    );
    // BOS before every window, as the file's add_bos_token says.
    assert_eq!(m.window_specials(), (vec![1], vec![]));

    // The nine sections, read and joined as `responses` reads a story.
    let mut tokens = 0;
    for (i, section) in fixture["sections"].as_array().unwrap().iter().enumerate() {
        let path = test_data().join(format!("stimuli/lpp-en/lppEN_section{}.TextGrid", i + 1));
        let words: Vec<String> = read_stimulus(&path, None)
            .unwrap()
            .words
            .into_iter()
            .map(|w| w.text)
            .collect();
        assert_eq!(words.join(" "), section["text"].as_str().unwrap(), "section {}", i + 1);
        let story = align::tokenize_words(tok, &words).unwrap();
        assert_eq!(story.ids, ids_of(&section["ids"]), "section {}", i + 1);
        // The alignment is exact: each word's tokens decode to the word itself.
        let mut first = 0;
        for (w, word) in words.iter().enumerate() {
            let end = first + story.word_of[first..].iter().take_while(|&&o| o == w).count();
            let text = tok.decode(&story.ids[first..end], false).unwrap();
            assert_eq!(text.trim_start(), word, "section {} word {w}", i + 1);
            first = end;
        }
        assert_eq!(first, story.ids.len());
        tokens += story.ids.len();
    }
    assert!(tokens > 20_000, "{tokens}");

    // Runs of spaces, digits, byte fallback, literal special tokens, tabs and newlines.
    for edge in fixture["edge"].as_array().unwrap() {
        let text = edge["text"].as_str().unwrap();
        let ours = tok.encode(text, false).unwrap();
        assert_eq!(ours.get_ids(), ids_of(&edge["ids"]), "{text:?}");
    }
    let with = &fixture["with_specials"];
    let ours = tok.encode(with["text"].as_str().unwrap(), true).unwrap();
    assert_eq!(ours.get_ids(), ids_of(&with["ids"]));

    // The file is a model too: a forward pass over a section's first window.
    let ids: Vec<u32> = [vec![1], ids_of(&fixture["sections"][0]["ids"])[..40].to_vec()].concat();
    let taps = m
        .forward_taps(&ids, &TapRequest::new(vec![0], vec![Tap::FfnOut]))
        .unwrap();
    let values: Vec<Vec<f32>> = taps[0].values.to_vec2().unwrap();
    assert_eq!((values.len(), values[0].len()), (41, 8));
    assert!(values.iter().flatten().all(|v| v.is_finite()));
}
