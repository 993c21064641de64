//! From timed words to model tokens and back: the story is read as one continuous text
//! (words joined by single spaces), tokenised once with byte offsets, and every token is
//! assigned to the word its characters come from. Long stories are cut into context
//! windows; each token's activation is taken from one window (see [`plan_windows`]).

use tokenizers::Tokenizer;

use super::Direction;
use crate::error::{Error, Result};

/// The tokens of a story and the word each belongs to.
#[derive(Debug, Clone)]
pub struct StoryTokens {
    pub ids: Vec<u32>,
    pub texts: Vec<String>,
    /// Index of the word each token belongs to.
    pub word_of: Vec<usize>,
    pub n_words: usize,
}

/// Tokenises `words` as one text and maps tokens to words by byte offsets. A token that
/// overlaps no word (pure whitespace) is given to the next word.
pub fn tokenize_words(tokenizer: &Tokenizer, words: &[String]) -> Result<StoryTokens> {
    let mut text = String::new();
    let mut spans = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        spans.push((text.len(), text.len() + w.len()));
        text.push_str(w);
    }
    let enc = tokenizer
        .encode(text.as_str(), false)
        .map_err(|e| Error::Invalid(format!("tokenizer failed: {e}")))?;
    let mut word_of = Vec::with_capacity(enc.len());
    let mut w = 0;
    for &(start, end) in enc.get_offsets() {
        // Tokens come in text order, so the word index only moves forward.
        while w + 1 < spans.len() && spans[w].1 <= start {
            w += 1;
        }
        let overlaps = start < spans[w].1 && end > spans[w].0;
        word_of.push(if overlaps || start < spans[w].0 {
            w
        } else {
            (w + 1).min(spans.len() - 1)
        });
    }
    Ok(StoryTokens {
        ids: enc.get_ids().to_vec(),
        texts: enc.get_tokens().to_vec(),
        word_of,
        n_words: words.len(),
    })
}

/// A window of story tokens [start, end) and the tokens whose activations it provides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub start: usize,
    pub end: usize,
    pub keep: std::ops::Range<usize>,
}

/// Cuts `n` tokens into windows of at most `context` tokens, `context/2` apart (the last
/// aligned to the end). Each token is kept from the window where it has the most context:
/// decoders, the most tokens to its left; encoders, the most on its poorer side
/// (min(left, right)). Ties go to the earlier window. The kept ranges partition 0..n.
pub fn plan_windows(n: usize, context: usize, direction: Direction) -> Vec<Window> {
    let context = context.max(1);
    if n <= context {
        return vec![Window {
            start: 0,
            end: n,
            keep: 0..n,
        }];
    }
    let stride = (context / 2).max(1);
    let mut starts: Vec<usize> = (0..)
        .map(|k| k * stride)
        .take_while(|&s| s + context < n)
        .collect();
    starts.push(n - context);
    let score = |i: usize, s: usize| match direction {
        Direction::Decoder => i - s,
        Direction::Encoder => (i - s).min(s + context - 1 - i),
    };
    let mut owner = vec![0usize; n];
    for (i, o) in owner.iter_mut().enumerate() {
        let mut best: Option<(usize, usize)> = None;
        for (k, &s) in starts.iter().enumerate() {
            if i >= s && i < s + context && best.is_none_or(|(_, b)| score(i, s) > b) {
                best = Some((k, score(i, s)));
            }
        }
        *o = best.map_or(0, |(k, _)| k);
    }
    starts
        .iter()
        .enumerate()
        .filter_map(|(k, &s)| {
            let first = owner.iter().position(|&o| o == k)?;
            let last = owner.iter().rposition(|&o| o == k)?;
            Some(Window {
                start: s,
                end: s + context,
                keep: first..last + 1,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_partition(ws: &[Window], n: usize, context: usize) {
        let mut next = 0;
        for w in ws {
            assert_eq!(w.keep.start, next, "kept ranges are contiguous");
            assert!(
                w.start <= w.keep.start
                    && w.keep.end <= w.end
                    && w.end - w.start <= context
                    && w.end <= n
            );
            next = w.keep.end;
        }
        assert_eq!(next, n);
    }

    /// Brute force: no returned window gives a kept token more context than its own.
    #[test]
    fn windows_partition_tokens_and_maximise_context() {
        for n in [1, 5, 64, 65, 100, 257, 1000] {
            for context in [8, 31, 64, 128] {
                for dir in [Direction::Encoder, Direction::Decoder] {
                    let ws = plan_windows(n, context, dir);
                    check_partition(&ws, n, context);
                    let score = |i: usize, w: &Window| match dir {
                        Direction::Decoder => i - w.start,
                        Direction::Encoder => (i - w.start).min(w.end - 1 - i),
                    };
                    for w in &ws {
                        for i in w.keep.clone() {
                            for other in ws.iter().filter(|o| o.start <= i && i < o.end) {
                                assert!(
                                    score(i, other) <= score(i, w),
                                    "n={n} c={context} {dir:?}: token {i}"
                                );
                            }
                            if dir == Direction::Decoder {
                                assert!(
                                    i - w.start >= (context / 2).min(i),
                                    "token {i} keeps ≥ context/2 left tokens"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
