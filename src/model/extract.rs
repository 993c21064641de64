//! Running a model over a whole story: context windows, token-level taps, and word-level
//! activations (the mean, or the last, of each word's tokens). Results leave as ndarray
//! matrices; candle tensors stay inside this module.

use ndarray::{s, Array2};

use super::align::{plan_windows, tokenize_words, StoryTokens, Window};
use super::{an_id, LanguageModel, Tap, TapRequest};
use crate::error::{Error, Result};

/// How a word's activation is made from its tokens'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Last,
}

/// The ANs of a request, in column order: for each layer, for each tap, every unit.
#[derive(Debug, Clone)]
pub struct NeuronLayout {
    /// (layer, tap, first column, width).
    pub blocks: Vec<(usize, Tap, usize, usize)>,
    pub n_columns: usize,
}

impl NeuronLayout {
    pub fn new(model: &dyn LanguageModel, request: &TapRequest) -> Self {
        let mut blocks = Vec::new();
        let mut col = 0;
        for &layer in &request.layers {
            for &tap in &request.taps {
                let w = model.tap_width(tap);
                blocks.push((layer, tap, col, w));
                col += w;
            }
        }
        NeuronLayout {
            blocks,
            n_columns: col,
        }
    }

    /// (an_id, layer, tap, unit) of every column.
    pub fn neurons(&self) -> impl Iterator<Item = (u64, usize, Tap, usize)> + '_ {
        self.blocks.iter().flat_map(|&(layer, tap, _, w)| {
            (0..w).map(move |u| (an_id(layer, tap, u), layer, tap, u))
        })
    }

    fn column(&self, layer: usize, tap: Tap) -> Option<(usize, usize)> {
        self.blocks
            .iter()
            .find(|b| b.0 == layer && b.1 == tap)
            .map(|b| (b.2, b.3))
    }
}

/// Settings of a story run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub request: TapRequest,
    /// Story tokens per window (special tokens excluded).
    pub context: usize,
    /// Windows per forward pass (larger matrix products; memory grows with it).
    pub batch: usize,
    pub pooling: Pooling,
}

/// The story's forward passes: windows of one length, `batch` at a time, in story order.
/// The batches depend only on the story and the settings, so whoever runs a batch
/// computes the same numbers for it.
pub fn batches(
    model: &dyn LanguageModel,
    story: &StoryTokens,
    opt: &RunOptions,
) -> Result<Vec<Vec<Window>>> {
    opt.request.check(model)?;
    let (prefix, suffix) = model.window_specials();
    let room = model
        .max_positions()
        .saturating_sub(prefix.len() + suffix.len());
    if opt.context == 0 || opt.context > room {
        return Err(Error::Invalid(format!(
            "--context {} must be between 1 and {room} for {} ({} positions less special tokens)",
            opt.context,
            model.name(),
            model.max_positions()
        )));
    }
    let windows = plan_windows(story.ids.len(), opt.context, model.direction());
    // Windows of one length share a forward pass (all but a lone short story's are `context` long).
    Ok(windows
        .chunk_by(|a, b| a.end - a.start == b.end - b.start)
        .flat_map(|group| group.chunks(opt.batch.max(1)).map(|c| c.to_vec()))
        .collect())
}

/// One forward pass over a batch of windows: each window's kept tokens × the layout's
/// columns.
pub fn forward_windows(
    model: &dyn LanguageModel,
    story: &StoryTokens,
    chunk: &[Window],
    opt: &RunOptions,
    layout: &NeuronLayout,
) -> Result<Vec<Array2<f32>>> {
    let (prefix, suffix) = model.window_specials();
    let batch: Vec<Vec<u32>> = chunk
        .iter()
        .map(|w| {
            prefix
                .iter()
                .chain(&story.ids[w.start..w.end])
                .chain(&suffix)
                .copied()
                .collect()
        })
        .collect();
    let outputs = model.forward_batch(&batch, &opt.request)?;
    let mut out = Vec::with_capacity(chunk.len());
    for (b, window) in chunk.iter().enumerate() {
        let first = prefix.len() + window.keep.start - window.start;
        let n = window.keep.len();
        let mut rows = Array2::<f32>::zeros((n, layout.n_columns));
        for o in &outputs {
            let (col, w) = layout
                .column(o.layer, o.tap)
                .ok_or_else(|| Error::Invalid("model returned an unrequested tap".into()))?;
            let values: Vec<f32> = o
                .values
                .get(b)
                .and_then(|t| t.narrow(0, first, n))
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .map_err(|e| {
                    let msg = crate::error::tensor_message(&e);
                    Error::Invalid(format!("{}: {msg}", model.name()))
                })?;
            let block = ndarray::ArrayView2::from_shape((n, w), &values)
                .map_err(|e| Error::Invalid(e.to_string()))?;
            rows.slice_mut(s![.., col..col + w]).assign(&block);
        }
        out.push(rows);
    }
    Ok(out)
}

/// Runs `model` over the story's tokens window by window and hands each window's kept
/// tokens to `visit(story, kept range, rows)`: `rows` is kept × n_columns in the layout's
/// column order. `progress` gets the number of tokens done after each window.
pub fn run_story(
    model: &dyn LanguageModel,
    story: &StoryTokens,
    opt: &RunOptions,
    layout: &NeuronLayout,
    mut visit: impl FnMut(&Window, Array2<f32>) -> Result<()>,
    mut progress: impl FnMut(usize),
) -> Result<()> {
    // Each batch's freed buffers are the next one's (io::pages).
    let _held = crate::io::pages::hold_freed_pages();
    for chunk in batches(model, story, opt)? {
        for (window, rows) in chunk
            .iter()
            .zip(forward_windows(model, story, &chunk, opt, layout)?)
        {
            visit(window, rows)?;
            progress(window.keep.end);
        }
    }
    Ok(())
}

/// Word activations from token rows given in token order: the mean (or the last) of each
/// word's tokens; words without a token stay zero.
pub struct WordPooler {
    sums: Array2<f32>,
    counts: Vec<u32>,
    pooling: Pooling,
}

impl WordPooler {
    pub fn new(n_words: usize, n_columns: usize, pooling: Pooling) -> Self {
        WordPooler {
            sums: Array2::zeros((n_words, n_columns)),
            counts: vec![0; n_words],
            pooling,
        }
    }

    /// Adds the row of a token of word `word`.
    pub fn add(&mut self, word: usize, row: ndarray::ArrayView1<f32>) {
        let mut dst = self.sums.row_mut(word);
        match self.pooling {
            Pooling::Mean => dst += &row,
            Pooling::Last => dst.assign(&row),
        }
        self.counts[word] += 1;
    }

    /// The word activations, and the number of words that got no token.
    pub fn finish(mut self) -> (Array2<f32>, usize) {
        if self.pooling == Pooling::Mean {
            for (mut row, &c) in self.sums.rows_mut().into_iter().zip(&self.counts) {
                if c > 1 {
                    row /= c as f32;
                }
            }
        }
        let empty = self.counts.iter().filter(|&&c| c == 0).count();
        (self.sums, empty)
    }
}

/// Word activations of a story: n_words × n_columns, plus the number of words that got no
/// token (their row is zero).
pub fn word_activations(
    model: &dyn LanguageModel,
    words: &[String],
    opt: &RunOptions,
    layout: &NeuronLayout,
    progress: impl FnMut(usize),
) -> Result<(Array2<f32>, usize)> {
    let story = tokenize_words(model.tokenizer(), words)?;
    let mut pooler = WordPooler::new(words.len(), layout.n_columns, opt.pooling);
    run_story(
        model,
        &story,
        opt,
        layout,
        |window, rows| {
            for (r, t) in window.keep.clone().enumerate() {
                pooler.add(story.word_of[t], rows.row(r));
            }
            Ok(())
        },
        progress,
    )?;
    Ok(pooler.finish())
}
