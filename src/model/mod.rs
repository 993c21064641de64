//! Language models with artificial-neuron taps, one file per family: [`bert`] (BERT and
//! RoBERTa encoders, safetensors), [`gpt2`] (GPT-2 decoders), [`llama`] (the Llama line:
//! Llama 1–3, Mistral, Qwen2, Gemma; safetensors) and [`gguf`] (Llama from a llama.cpp GGUF file). Each exposes a forward pass that returns, per requested
//! layer, the feed-forward taps:
//!
//! - `ffn.out`: the output of the FFN's second linear layer (before the residual add);
//! - `ffn.inner`: that layer's input, after the activation (GELU, or SiLU(gate)⊙up).
//!
//! An artificial neuron (AN) is (layer, tap, unit). The forward pass stops after the last
//! requested layer and keeps only the requested taps.

pub mod align;
mod attention;
pub mod bert;
mod dense;
pub mod extract;
pub mod gguf;
pub mod gpt2;
pub mod llama;
mod norm;
mod ops;
mod rope;
pub mod stored;

use std::path::Path;

use candle_core::Tensor;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use stored::WeightDtype;

/// A tap point inside a transformer layer's feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tap {
    FfnOut,
    FfnInner,
}

impl Tap {
    pub const ALL: [Tap; 2] = [Tap::FfnOut, Tap::FfnInner];

    pub fn name(self) -> &'static str {
        match self {
            Tap::FfnOut => "ffn.out",
            Tap::FfnInner => "ffn.inner",
        }
    }

    /// Small integer code used in AN ids.
    pub fn code(self) -> u64 {
        match self {
            Tap::FfnOut => 0,
            Tap::FfnInner => 1,
        }
    }
}

impl std::str::FromStr for Tap {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "ffn.out" => Ok(Tap::FfnOut),
            "ffn.inner" => Ok(Tap::FfnInner),
            other => Err(Error::Invalid(format!(
                "unknown tap '{other}': expected ffn.out or ffn.inner"
            ))),
        }
    }
}

/// The stable id of an AN: layer in bits 40.., tap in bits 32..40, unit in bits 0..32.
pub fn an_id(layer: usize, tap: Tap, unit: usize) -> u64 {
    ((layer as u64) << 40) | (tap.code() << 32) | unit as u64
}

/// Which layers and taps to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapRequest {
    /// Sorted, distinct, 0-based.
    pub layers: Vec<usize>,
    /// Sorted, distinct.
    pub taps: Vec<Tap>,
}

impl TapRequest {
    pub fn new(mut layers: Vec<usize>, mut taps: Vec<Tap>) -> Self {
        layers.sort_unstable();
        layers.dedup();
        taps.sort_unstable();
        taps.dedup();
        TapRequest { layers, taps }
    }

    pub fn wants(&self, layer: usize) -> bool {
        self.layers.binary_search(&layer).is_ok()
    }

    /// The last layer the forward pass has to run.
    pub fn last_layer(&self) -> Option<usize> {
        self.layers.last().copied()
    }

    /// Errors if a layer is beyond the model's depth.
    pub fn check(&self, model: &dyn LanguageModel) -> Result<()> {
        match self.layers.iter().find(|&&l| l >= model.n_layers()) {
            Some(l) => Err(Error::Invalid(format!(
                "layer {l} requested but {} has {} layers (0..{})",
                model.name(),
                model.n_layers(),
                model.n_layers() - 1
            ))),
            None if self.layers.is_empty() || self.taps.is_empty() => {
                Err(Error::Invalid("no layer or no tap requested".into()))
            }
            None => Ok(()),
        }
    }
}

/// One tap of one layer: (batch × tokens × width) from `forward_batch`, (tokens × width)
/// from `forward_taps`; f32.
#[derive(Debug, Clone)]
pub struct TapOutput {
    pub layer: usize,
    pub tap: Tap,
    pub values: Tensor,
}

/// Whether the model reads both directions (encoder) or only left context (decoder);
/// this decides how a long story is cut into context windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Encoder,
    Decoder,
}

/// The sizes every model family shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelDims {
    pub layers: usize,
    /// Width of the residual stream (= ffn.out).
    pub hidden: usize,
    /// Width of the FFN's inner layer (= ffn.inner).
    pub ffn: usize,
    /// The most tokens one forward pass accepts, special tokens included.
    pub max_positions: usize,
}

/// A language model whose feed-forward taps can be read.
pub trait LanguageModel {
    /// Short name (folder or file stem), used in the `neurons` table.
    fn name(&self) -> &str;
    fn dims(&self) -> ModelDims;
    fn direction(&self) -> Direction;

    fn n_layers(&self) -> usize {
        self.dims().layers
    }
    /// Number of units of a tap (hidden size for ffn.out, FFN size for ffn.inner).
    fn tap_width(&self, tap: Tap) -> usize {
        match tap {
            Tap::FfnOut => self.dims().hidden,
            Tap::FfnInner => self.dims().ffn,
        }
    }
    /// The most tokens one forward pass accepts, special tokens included.
    fn max_positions(&self) -> usize {
        self.dims().max_positions
    }
    fn tokenizer(&self) -> &Tokenizer;
    /// Ids to put before / after every window (e.g. BERT's [CLS] / [SEP], a Llama BOS).
    fn window_specials(&self) -> (Vec<u32>, Vec<u32>);
    /// Runs the model on a batch of windows of token ids (specials included), all of one
    /// length, and returns the requested taps as (batch × tokens × width) tensors.
    fn forward_batch(&self, batch: &[Vec<u32>], request: &TapRequest) -> Result<Vec<TapOutput>>;

    /// One window: the requested taps as (tokens × width), rows aligned with `ids`.
    fn forward_taps(&self, ids: &[u32], request: &TapRequest) -> Result<Vec<TapOutput>> {
        self.forward_batch(&[ids.to_vec()], request)?
            .into_iter()
            .map(|o| {
                Ok(TapOutput {
                    values: o
                        .values
                        .squeeze(0)
                        .map_err(|e| Error::Invalid(e.to_string()))?,
                    ..o
                })
            })
            .collect()
    }
}

/// Loads a model: a folder with `config.json` (`model_type` bert, roberta, gpt2, llama,
/// mistral, qwen2 or gemma),
/// `tokenizer.json` and `*.safetensors`, or a `.gguf` file (architecture llama); f16/bf16
/// Llama weights stay in their mapped files ([`stored`]).
pub fn load(path: &Path) -> Result<Box<dyn LanguageModel>> {
    load_as(path, WeightDtype::Auto)
}

/// [`load`] with the weights' in-memory dtype chosen (`F32`: every weight copied to f32).
pub fn load_as(path: &Path, dtype: WeightDtype) -> Result<Box<dyn LanguageModel>> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return Ok(Box::new(gguf::load(path, dtype)?));
    }
    if !path.is_dir() {
        return Err(Error::format(
            path,
            "not a model folder (config.json, tokenizer.json, *.safetensors) nor a .gguf file",
        ));
    }
    let config_path = path.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(&config_path, format!("invalid JSON: {e}")))?;
    match value.get("model_type").and_then(|v| v.as_str()) {
        Some("bert" | "roberta") => Ok(Box::new(bert::Bert::load(path, &text)?)),
        Some("gpt2") => Ok(Box::new(gpt2::Gpt2::load(path, &text)?)),
        Some("llama" | "mistral" | "qwen2" | "gemma") => Ok(Box::new(llama::Llama::load(path, &text, dtype)?)),
        Some(other) => Err(Error::format(&config_path, format!("model_type '{other}' is not supported (supported: bert, roberta, gpt2, llama, mistral, qwen2, gemma; or a llama GGUF file)"))),
        None => Err(Error::format(&config_path, "no model_type field")),
    }
}

/// Converts a candle error into a library error about `path`.
pub(crate) fn candle_err(path: &Path) -> impl Fn(candle_core::Error) -> Error + '_ {
    move |e| {
        let msg = crate::error::tensor_message(&e);
        Error::format(path, format!("model error: {msg}"))
    }
}

/// The safetensors files of a model folder, sorted.
pub(crate) fn safetensors_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::format(
            dir,
            "no *.safetensors weights in the model folder",
        ));
    }
    Ok(files)
}

/// Reads `tokenizer.json` of a model folder, without padding or truncation (some
/// packaged tokenizers pad every input to a fixed length).
pub(crate) fn folder_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Err(Error::format(dir, "the model folder has no tokenizer.json"));
    }
    let mut tok = Tokenizer::from_file(&path)
        .map_err(|e| Error::format(&path, format!("cannot read tokenizer: {e}")))?;
    tok.with_padding(None);
    tok.with_truncation(None)
        .map_err(|e| Error::format(&path, e.to_string()))?;
    Ok(tok)
}

/// Runs `blocks` in order from hidden state `x` up to the last requested layer and keeps
/// the requested taps; `forward` returns (next state, ffn.inner, ffn.out), each (b, t, ·).
pub(crate) fn run_layers<B>(
    blocks: &[B],
    request: &TapRequest,
    mut x: Tensor,
    forward: impl Fn(&B, &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)>,
) -> candle_core::Result<Vec<TapOutput>> {
    let mut out = Vec::new();
    let Some(last) = request.last_layer() else {
        return Ok(out);
    };
    for (layer, block) in blocks.iter().enumerate().take(last + 1) {
        let (next, inner, ffn_out) = forward(block, &x)?;
        if request.wants(layer) {
            for &tap in &request.taps {
                let values = match tap {
                    Tap::FfnOut => &ffn_out,
                    Tap::FfnInner => &inner,
                };
                out.push(TapOutput {
                    layer,
                    tap,
                    values: values.clone(),
                });
            }
        }
        x = next;
        crate::progress::layer_done(layer + 1, last + 1);
    }
    Ok(out)
}

/// The (batch × tokens) id tensor of equal-length windows, checked against the model's
/// vocabulary and positions so bad ids are errors rather than index panics.
pub(crate) fn batch_tensor(
    batch: &[Vec<u32>],
    vocab: usize,
    positions: usize,
    name: &str,
) -> Result<Tensor> {
    let t = batch.first().map_or(0, Vec::len);
    if t == 0 || batch.iter().any(|w| w.len() != t) {
        return Err(Error::Invalid(format!(
            "{name}: a batch needs non-empty windows of one length"
        )));
    }
    if t > positions {
        return Err(Error::Invalid(format!(
            "{t} tokens exceed the {positions} positions of {name}"
        )));
    }
    if let Some(bad) = batch.iter().flatten().find(|&&i| i as usize >= vocab) {
        return Err(Error::Invalid(format!(
            "token id {bad} is outside the vocabulary of {name}"
        )));
    }
    let flat: Vec<u32> = batch.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (batch.len(), t), &candle_core::Device::Cpu)
        .map_err(|e| Error::Invalid(e.to_string()))
}

/// max |a − b| over all elements (for the tests of the model ops).
#[cfg(test)]
fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar())
        .expect("same shapes")
}

/// The bit patterns of a tensor's f32 values (for the model ops' bit-for-bit tests).
#[cfg(test)]
fn tensor_bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("f32 values")
        .iter()
        .map(|v| v.to_bits())
        .collect()
}
