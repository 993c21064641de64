//! The story windows the model benches feed both sides: the first tokens of Le Petit
//! Prince's section 1, cut into equal windows with the model's specials.
#![allow(dead_code)] // each bench binary uses part of `common`

use std::path::Path;

use cortexflow::io::stimulus::read_stimulus;
use cortexflow::model::{align, LanguageModel};

/// The first `tokens` token ids of LPP section 1 (words joined as `responses` joins them).
pub fn story_ids(m: &dyn LanguageModel, tokens: usize) -> Vec<u32> {
    let stim = read_stimulus(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/stimuli/lpp-en/lppEN_section1.TextGrid"),
        None,
    )
    .unwrap();
    let words: Vec<String> = stim.words.into_iter().map(|w| w.text).collect();
    let mut ids = align::tokenize_words(m.tokenizer(), &words).unwrap().ids;
    ids.truncate(tokens);
    ids
}

/// Those ids in windows of `window` tokens as the model sees them (specials included).
pub fn windows(m: &dyn LanguageModel, tokens: usize, window: usize) -> Vec<Vec<u32>> {
    let (pre, post) = m.window_specials();
    story_ids(m, tokens)
        .chunks(window)
        .map(|c| [pre.clone(), c.to_vec(), post.clone()].concat())
        .collect()
}
