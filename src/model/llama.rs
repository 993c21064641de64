//! Llama-line decoders (Llama 1, 2, 3, SmolLM, TinyLlama; Mistral; Qwen2; Gemma): RMSNorm,
//! rotary position embeddings (with Llama 3 / linear scaling), grouped-query attention,
//! and the gated feed-forward block down(act(gate(x)) ⊙ up(x)), whose input is ffn.inner
//! and output ffn.out. The `model_type`s differ only where their config.json says so:
//! Mistral's attention sees a sliding window of `sliding_window` keys; Qwen2's q, k and v
//! projections have biases (as Llama's four do with `attention_bias`); Gemma scales the
//! embeddings by √hidden, multiplies its norms by (1 + w) and gates with GELU (tanh form).
//! The same blocks are built from a Hugging Face folder (this file) or a GGUF file
//! ([`super::gguf`]) through a [`WeightSource`].
//!
//! Longer than the project's ~500 lines on purpose: one file per model family (as in
//! candle-transformers), its config.json rules (rotary settings with transformers'
//! precedence) beside the layers that use them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Module, Tensor};
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::attention::{attention, Mask};
use super::dense::{Dense, Stacked};
use super::norm::Norm;
use super::rope::Rope;
use super::stored::{Embedding, StoredMatrix, WeightDtype};
use super::{
    batch_tensor, candle_err, folder_tokenizer, run_layers, safetensors_files, Direction,
    LanguageModel, ModelDims, TapOutput, TapRequest,
};
use crate::error::{Error, Result};

/// The fields of a Llama `config.json` (Llama 1–3 style). The rotary settings are resolved
/// as transformers resolves them (see [`RawConfig`]): `rope_theta` and `rope_scaling` hold
/// the values transformers' LlamaRotaryEmbedding uses, whichever keys the file spells them with.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// None for the plain rotary embedding (rope_type "default").
    pub rope_scaling: Option<RopeScaling>,
    /// GGUF only: llama.cpp's `rope_freqs.weight`, one divisor per frequency (θ_i / f_i),
    /// the form in which llama.cpp's converter stores Llama 3 scaling. Never in config.json.
    pub rope_freq_factors: Option<Vec<f64>>,
    pub max_position_embeddings: usize,
    pub hidden_act: String,
    pub tie_word_embeddings: bool,
    /// Biases on the q, k, v projections (Qwen2; Llama's `attention_bias`).
    pub qkv_bias: bool,
    /// A bias on the output projection (Llama's `attention_bias`).
    pub o_bias: bool,
    /// Mistral: each query sees this many keys, itself included.
    pub sliding_window: Option<usize>,
    /// Gemma: RMSNorm multiplies by (1 + w), and the embeddings by √hidden_size.
    pub gemma: bool,
}

/// `config.json` as written: the rotary settings may sit in `rope_scaling` beside a
/// top-level `rope_theta` (transformers 4 and the Llama 3.1 checkpoints), or in
/// `rope_parameters` with `rope_theta` inside (what transformers ≥ 5 writes, with no
/// top-level `rope_theta` and no `rope_scaling`).
#[derive(Debug, Clone, Deserialize)]
struct RawConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    original_max_position_embeddings: Option<usize>,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    /// Absent: the family's default (silu; Gemma gelu_pytorch_tanh).
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default = "default_model_type")]
    model_type: String,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    /// Absent: Mistral's default of 4096 keys; null: no window.
    #[serde(default, deserialize_with = "present")]
    sliding_window: Option<Option<usize>>,
    /// Qwen2: sliding attention on the layers from `max_window_layers` on, when true.
    #[serde(default)]
    use_sliding_window: bool,
    /// Gemma: bidirectional attention is not a decoder's.
    #[serde(default)]
    use_bidirectional_attention: Option<bool>,
}

/// One `rope_scaling` / `rope_parameters` dict as written.
#[derive(Debug, Clone, Default, Deserialize)]
struct RawRope {
    #[serde(default)]
    rope_type: Option<String>,
    /// The older spelling of `rope_type`.
    #[serde(default, rename = "type")]
    legacy_type: Option<String>,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    factor: Option<f64>,
    #[serde(default)]
    low_freq_factor: Option<f64>,
    #[serde(default)]
    high_freq_factor: Option<f64>,
    #[serde(default)]
    original_max_position_embeddings: Option<usize>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_positions() -> usize {
    2048
}
/// Some(value) for a key that is present, null included (serde's plain Option<Option<_>>
/// reads null as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<usize>>, D::Error> {
    Option::<usize>::deserialize(d).map(Some)
}
fn default_model_type() -> String {
    "llama".into()
}

impl TryFrom<RawConfig> for Config {
    type Error = String;

    /// The precedence of transformers 5 (`RotaryEmbeddingConfigMixin.convert_rope_params_to_dict`
    /// and `standardize_rope_params` in transformers/modeling_rope_utils.py): a non-empty
    /// `rope_scaling` wins over `rope_parameters`; `rope_theta` inside the dict wins over the
    /// top-level one, then 10000; `rope_type` wins over `type`, then "default"; for Llama 3
    /// a top-level `original_max_position_embeddings` wins over the dict's, then
    /// `max_position_embeddings`.
    fn try_from(raw: RawConfig) -> std::result::Result<Self, String> {
        let non_empty = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
                .cloned()
        };
        let (key, dict) = match (
            non_empty(&raw.rope_scaling),
            non_empty(&raw.rope_parameters),
        ) {
            (Some(d), _) => ("rope_scaling", Some(d)),
            (None, d) => ("rope_parameters", d),
        };
        let rope: RawRope = match dict {
            Some(d) => serde_json::from_value(d).map_err(|e| format!("{key}: {e}"))?,
            None => RawRope::default(),
        };
        let rope_type = rope
            .rope_type
            .or(rope.legacy_type)
            .unwrap_or_else(|| "default".into());
        let original_max_position_embeddings = if rope_type == "llama3" {
            raw.original_max_position_embeddings
                .or(rope.original_max_position_embeddings)
                .or(Some(raw.max_position_embeddings))
        } else {
            rope.original_max_position_embeddings
        };
        // Only Llama's MLP reads mlp_bias (transformers' Mistral, Qwen2 and Gemma ignore it).
        if raw.mlp_bias && raw.model_type == "llama" {
            return Err("mlp_bias = true is not supported (no Llama release uses it)".into());
        }
        let (qkv_bias, o_bias, sliding_window) = match raw.model_type.as_str() {
            "llama" => (raw.attention_bias, raw.attention_bias, None),
            // transformers' MistralConfig: 4096 when the key is absent, none when null.
            "mistral" => (false, false, raw.sliding_window.unwrap_or(Some(4096))),
            "qwen2" if raw.use_sliding_window => {
                return Err("use_sliding_window = true is not supported (Qwen2 releases leave it false)".into())
            }
            "qwen2" => (true, false, None),
            "gemma" if raw.use_bidirectional_attention == Some(true) => {
                return Err("use_bidirectional_attention = true is not supported (a decoder)".into())
            }
            "gemma" => (raw.attention_bias, raw.attention_bias, None),
            other => return Err(format!("model_type '{other}' is not of the Llama line")),
        };
        let gemma = raw.model_type == "gemma";
        // transformers' GemmaConfig reads the legacy "gelu" of the first releases as the tanh form.
        let hidden_act = match raw.hidden_act.as_deref() {
            None | Some("gelu") if gemma => "gelu_pytorch_tanh".to_string(),
            None => "silu".to_string(),
            Some(act) => act.to_string(),
        };
        if sliding_window == Some(0) {
            return Err("sliding_window = 0: a query must see at least itself".into());
        }
        let rope_scaling = (rope_type != "default").then_some(RopeScaling {
            rope_type,
            factor: rope.factor,
            low_freq_factor: rope.low_freq_factor,
            high_freq_factor: rope.high_freq_factor,
            original_max_position_embeddings,
        });
        Ok(Config {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads,
            head_dim: raw.head_dim,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta: rope
                .rope_theta
                .or(raw.rope_theta)
                .unwrap_or_else(default_theta),
            rope_scaling,
            rope_freq_factors: None,
            max_position_embeddings: raw.max_position_embeddings,
            hidden_act,
            tie_word_embeddings: raw.tie_word_embeddings,
            gemma,
            qkv_bias,
            o_bias,
            sliding_window,
        })
    }
}

/// Rotary scaling, resolved from `rope_scaling` or `rope_parameters` of config.json.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeScaling {
    /// "linear" or "llama3" ([`Config::validate`] refuses others).
    pub rope_type: String,
    /// Required by both types.
    pub factor: Option<f64>,
    /// Llama 3 only, required.
    pub low_freq_factor: Option<f64>,
    /// Llama 3 only, required.
    pub high_freq_factor: Option<f64>,
    /// Llama 3: always set once resolved (falls back to max_position_embeddings).
    pub original_max_position_embeddings: Option<usize>,
}

impl Config {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Errors for configurations this implementation does not compute faithfully.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |m: String| Err(Error::format(path, m));
        if self.vocab_size == 0 || self.hidden_size == 0 || self.intermediate_size == 0 {
            return bad(format!(
                "vocab_size {}, hidden_size {} and intermediate_size {} must all be positive",
                self.vocab_size, self.hidden_size, self.intermediate_size
            ));
        }
        if self.hidden_act != "silu" && self.hidden_act != "gelu_pytorch_tanh" {
            return bad(format!(
                "hidden_act '{}' is not supported (silu, gelu_pytorch_tanh)",
                self.hidden_act
            ));
        }
        if self.num_attention_heads == 0
            || self.kv_heads() == 0
            || !self.num_attention_heads.is_multiple_of(self.kv_heads())
        {
            return bad(format!(
                "{} attention heads are not a multiple of {} key/value heads",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "head_dim {} must be even for rotary embeddings",
                self.head_dim()
            ));
        }
        if let Some(s) = &self.rope_scaling {
            let required: &[(&str, bool)] = match s.rope_type.as_str() {
                "default" => &[],
                "linear" => &[("factor", s.factor.is_some())],
                "llama3" => &[
                    ("factor", s.factor.is_some()),
                    ("low_freq_factor", s.low_freq_factor.is_some()),
                    ("high_freq_factor", s.high_freq_factor.is_some()),
                ],
                other => {
                    return bad(format!(
                        "rope_scaling type '{other}' is not supported (llama3, linear)"
                    ))
                }
            };
            if let Some((key, _)) = required.iter().find(|(_, present)| !present) {
                return bad(format!("rope_scaling type '{}' needs '{key}'", s.rope_type));
            }
        }
        if let Some(f) = &self.rope_freq_factors {
            if f.len() != self.head_dim() / 2 || f.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
                return bad(format!(
                    "rope_freqs has {} factors, expected {} positive ones (head_dim / 2)",
                    f.len(),
                    self.head_dim() / 2
                ));
            }
        }
        Ok(())
    }

    /// Rotary inverse frequencies θ_i = base^(−2i/d), rescaled as `rope_scaling` says:
    /// linear divides them by `factor`; Llama 3 follows transformers'
    /// `_compute_llama3_parameters` (transformers/modeling_rope_utils.py, after Meta's
    /// `apply_scaling`): wavelengths 2π/θ below original_ctx/high_freq_factor are kept,
    /// those above original_ctx/low_freq_factor divided by `factor`, and those between
    /// blended, (1 − s)·θ/factor + s·θ with s = (original_ctx/wavelength − low)/(high − low).
    /// Computed in f64; transformers computes in float32, and the two agree to ~4e-7 relative
    /// (tests/it/rope.rs).
    pub fn inv_freq(&self) -> Vec<f64> {
        let scaled = self.scaled_inv_freq();
        match &self.rope_freq_factors {
            // llama.cpp's rope: θ_i is divided by freq_factors[i].
            Some(f) => scaled.iter().zip(f).map(|(t, f)| t / f).collect(),
            None => scaled,
        }
    }

    fn scaled_inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim();
        let base: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / self.rope_theta.powf(2.0 * i as f64 / d as f64))
            .collect();
        let Some(s) = &self.rope_scaling else {
            return base;
        };
        let factor = s.factor.unwrap_or(1.0);
        match s.rope_type.as_str() {
            "linear" => base.iter().map(|f| f / factor).collect(),
            "llama3" => {
                let old = s
                    .original_max_position_embeddings
                    .unwrap_or(self.max_position_embeddings) as f64;
                let (low, high) = (
                    s.low_freq_factor.unwrap_or(1.0),
                    s.high_freq_factor.unwrap_or(4.0),
                );
                let (low_wl, high_wl) = (old / low, old / high);
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wl {
                            f
                        } else if wavelen > low_wl {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
            _ => base,
        }
    }
}

/// The parts of a Llama block, named independently of the file format.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    AttnNorm,
    Q,
    K,
    V,
    O,
    FfnNorm,
    Gate,
    Up,
    Down,
}

/// Where weights come from: a safetensors folder or a GGUF file.
pub trait WeightSource {
    /// Projection of `part` in `layer`, mapping `in_dim` → `out_dim`, with a bias or not.
    fn proj(
        &self,
        layer: usize,
        part: Part,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> candle_core::Result<Dense>;
    /// Norm weight vector of `part` in `layer`.
    fn norm(&self, layer: usize, part: Part, dim: usize) -> candle_core::Result<Tensor>;
    /// The token embedding matrix (vocab × hidden).
    fn embedding(&self, vocab: usize, hidden: usize) -> candle_core::Result<Embedding>;
}

/// Weight order of rotary pairs: Hugging Face checkpoints rotate (x_i, x_{i+d/2});
/// llama.cpp permutes q/k rows so GGUF files rotate adjacent pairs (x_2i, x_2i+1).
/// Both give the same attention, so the taps agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    Halves,
    Interleaved,
}

pub(crate) struct Block {
    attn_norm: Norm,
    /// q, k and v.
    qkv: Stacked,
    o: Dense,
    ffn_norm: Norm,
    gate: Dense,
    up: Dense,
    down: Dense,
    head_dim: usize,
    mask: Mask,
    gelu_gate: bool,
}

impl Block {
    pub(crate) fn new(
        cfg: &Config,
        src: &dyn WeightSource,
        layer: usize,
    ) -> candle_core::Result<Self> {
        let (h, f, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
        // Gemma's (1 + w), added in f32 as transformers adds it before multiplying.
        let norm = |part: Part| -> candle_core::Result<Norm> {
            let w = src.norm(layer, part, h)?;
            let w = if cfg.gemma { (w + 1.0)? } else { w };
            Norm::rms(&w, cfg.rms_norm_eps)
        };
        Ok(Block {
            attn_norm: norm(Part::AttnNorm)?,
            qkv: Stacked::new(vec![
                src.proj(layer, Part::Q, h, nh * hd, cfg.qkv_bias)?,
                src.proj(layer, Part::K, h, nkv * hd, cfg.qkv_bias)?,
                src.proj(layer, Part::V, h, nkv * hd, cfg.qkv_bias)?,
            ])?,
            o: src.proj(layer, Part::O, nh * hd, h, cfg.o_bias)?,
            ffn_norm: norm(Part::FfnNorm)?,
            gate: src.proj(layer, Part::Gate, h, f, false)?,
            up: src.proj(layer, Part::Up, h, f, false)?,
            down: src.proj(layer, Part::Down, f, h, false)?,
            head_dim: hd,
            mask: cfg.sliding_window.map_or(Mask::Causal, Mask::Sliding),
            gelu_gate: cfg.hidden_act == "gelu_pytorch_tanh",
        })
    }

    /// Returns (next hidden state, ffn.inner, ffn.out).
    fn forward(&self, x: &Tensor, rope: &Rope) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let n = self.attn_norm.forward(x)?;
        // (b, heads, t, d) views of the projections' output; q and k rotated where they lie.
        let [q, k, v] = self.qkv.heads(&n, self.head_dim)?;
        let (q, k) = (rope.apply(&q)?, rope.apply(&k)?);
        let ctx = attention(&q, &k, &v, self.mask)?;
        let (x, n) = self.ffn_norm.forward_sum(x, &self.o.forward(&ctx)?)?;
        let (gate, up) = (self.gate.forward(&n)?, self.up.forward(&n)?);
        let inner = if self.gelu_gate {
            (super::ops::gelu_tanh(&gate)? * up)?
        } else {
            super::ops::swiglu_into_up(&gate, &up)?;
            up
        };
        let out = self.down.forward(&inner)?;
        let next = super::ops::add(&x, &out)?;
        Ok((next, inner, out))
    }
}

/// A Llama decoder with FFN taps.
pub struct Llama {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) cfg: Config,
    pub(crate) embedding: Embedding,
    pub(crate) blocks: Vec<Block>,
    pub(crate) rope: Rope,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) prefix: Vec<u32>,
}

/// Hugging Face tensor names, in memory-mapped safetensors files.
struct SafetensorsSource {
    files: Arc<MmapedSafetensors>,
    dtype: WeightDtype,
}

impl SafetensorsSource {
    /// A tensor converted to an f32 copy, checked against the shape the config implies.
    fn f32_tensor(&self, name: &str, shape: &[usize]) -> candle_core::Result<Tensor> {
        let t = self.files.load(name, &Device::Cpu)?;
        if t.dims() != shape {
            candle_core::bail!("tensor '{name}' has shape {:?}, expected {shape:?}", t.dims());
        }
        t.to_dtype(DType::F32)
    }

    /// A (rows × cols) matrix kept as stored when it is f16/bf16 and the dtype allows.
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> candle_core::Result<Option<StoredMatrix>> {
        match self.dtype {
            WeightDtype::Auto | WeightDtype::Stored => StoredMatrix::find(&self.files, name, rows, cols),
            WeightDtype::F32 => Ok(None),
        }
    }
}

impl WeightSource for SafetensorsSource {
    fn proj(
        &self,
        layer: usize,
        part: Part,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> candle_core::Result<Dense> {
        let name = match part {
            Part::Q => "self_attn.q_proj",
            Part::K => "self_attn.k_proj",
            Part::V => "self_attn.v_proj",
            Part::O => "self_attn.o_proj",
            Part::Gate => "mlp.gate_proj",
            Part::Up => "mlp.up_proj",
            Part::Down => "mlp.down_proj",
            Part::AttnNorm | Part::FfnNorm => candle_core::bail!("{part:?} is a norm"),
        };
        let full = format!("model.layers.{layer}.{name}");
        let bias = bias
            .then(|| self.f32_tensor(&format!("{full}.bias"), &[out_dim]))
            .transpose()?;
        let weight = format!("{full}.weight");
        match self.matrix(&weight, out_dim, in_dim)? {
            Some(stored) => Dense::from_rows(Box::new(stored), bias.as_ref()),
            None => Dense::new(&self.f32_tensor(&weight, &[out_dim, in_dim])?, bias.as_ref()),
        }
    }
    fn norm(&self, layer: usize, part: Part, dim: usize) -> candle_core::Result<Tensor> {
        let name = match part {
            Part::AttnNorm => "input_layernorm",
            _ => "post_attention_layernorm",
        };
        self.f32_tensor(&format!("model.layers.{layer}.{name}.weight"), &[dim])
    }
    fn embedding(&self, vocab: usize, hidden: usize) -> candle_core::Result<Embedding> {
        let name = "model.embed_tokens.weight";
        Ok(match self.matrix(name, vocab, hidden)? {
            Some(stored) => Embedding::Rows(Box::new(stored)),
            None => Embedding::F32(self.f32_tensor(name, &[vocab, hidden])?),
        })
    }
}

impl Llama {
    /// Loads a Hugging Face Llama folder (config.json text already read as `config`).
    /// f16 and bf16 matrices stay in the mapped files unless `dtype` is `F32`; the norms
    /// (and f32 checkpoints) are copied to f32.
    pub fn load(dir: &Path, config: &str, dtype: WeightDtype) -> Result<Self> {
        let config_path = dir.join("config.json");
        let cfg: Config = serde_json::from_str(config)
            .map_err(|e| Error::format(&config_path, format!("not a Llama config: {e}")))?;
        cfg.validate(&config_path)?;
        let tokenizer = folder_tokenizer(dir)?;
        let files = safetensors_files(dir)?;
        // SAFETY: the weights are memory-mapped read-only; the files must not change while loaded.
        let files = unsafe { MmapedSafetensors::multi(&files) }.map_err(candle_err(&files[0]))?;
        let prefix = tokenizer
            .encode("", true)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default();
        let name = dir
            .file_name()
            .map_or("llama".into(), |n| n.to_string_lossy().into_owned());
        Self::build(
            name,
            dir,
            cfg,
            &SafetensorsSource {
                files: Arc::new(files),
                dtype,
            },
            RopeLayout::Halves,
            tokenizer,
            prefix,
        )
    }

    pub(crate) fn build(
        name: String,
        path: &Path,
        cfg: Config,
        src: &dyn WeightSource,
        layout: RopeLayout,
        tokenizer: Tokenizer,
        prefix: Vec<u32>,
    ) -> Result<Self> {
        let err = candle_err(path);
        let embedding = src
            .embedding(cfg.vocab_size, cfg.hidden_size)
            .map_err(&err)?;
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| Block::new(&cfg, src, i))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(&err)?;
        let rope = Rope::new(&cfg.inv_freq(), cfg.max_position_embeddings, layout).map_err(&err)?;
        Ok(Llama {
            name,
            path: path.to_path_buf(),
            cfg,
            embedding,
            blocks,
            rope,
            tokenizer,
            prefix,
        })
    }
}

impl LanguageModel for Llama {
    fn name(&self) -> &str {
        &self.name
    }
    fn dims(&self) -> ModelDims {
        ModelDims {
            layers: self.cfg.num_hidden_layers,
            hidden: self.cfg.hidden_size,
            ffn: self.cfg.intermediate_size,
            max_positions: self.cfg.max_position_embeddings,
        }
    }
    fn direction(&self) -> Direction {
        Direction::Decoder
    }
    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    fn window_specials(&self) -> (Vec<u32>, Vec<u32>) {
        (self.prefix.clone(), Vec::new())
    }

    fn forward_batch(&self, batch: &[Vec<u32>], request: &TapRequest) -> Result<Vec<TapOutput>> {
        let err = candle_err(&self.path);
        if request.last_layer().is_none() {
            return Ok(Vec::new());
        }
        let input = batch_tensor(
            batch,
            self.cfg.vocab_size,
            self.cfg.max_position_embeddings,
            &self.name,
        )?;
        let (b, t) = input.dims2().map_err(&err)?;
        let ids: Vec<u32> = batch.iter().flatten().copied().collect();
        let x = self
            .embedding
            .lookup(&ids)
            .and_then(|e| e.reshape((b, t, self.cfg.hidden_size)))
            .and_then(|e| match self.cfg.gemma {
                // √hidden rounded to f32, as transformers' embed_scale buffer holds it.
                true => e * f64::from((self.cfg.hidden_size as f64).sqrt() as f32),
                false => Ok(e),
            })
            .map_err(&err)?;
        run_layers(&self.blocks, request, x, |block, x| {
            block.forward(x, &self.rope)
        })
        .map_err(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Tap;
    use super::*;
    use std::collections::HashMap;

    fn tiny_config() -> Config {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 32, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8},
            "max_position_embeddings": 64
        }))
        .unwrap()
    }

    fn random_weights(cfg: &Config) -> HashMap<String, Tensor> {
        let dev = Device::Cpu;
        let (h, f, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
        let mut w = HashMap::new();
        let mut add = |name: String, shape: &[usize]| {
            w.insert(name, Tensor::randn(0f32, 0.3, shape, &dev).unwrap());
        };
        add("model.embed_tokens.weight".into(), &[cfg.vocab_size, h]);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            add(
                format!("{p}.self_attn.q_proj.weight"),
                &[cfg.num_attention_heads * hd, h],
            );
            add(
                format!("{p}.self_attn.k_proj.weight"),
                &[cfg.kv_heads() * hd, h],
            );
            add(
                format!("{p}.self_attn.v_proj.weight"),
                &[cfg.kv_heads() * hd, h],
            );
            add(
                format!("{p}.self_attn.o_proj.weight"),
                &[h, cfg.num_attention_heads * hd],
            );
            add(format!("{p}.mlp.gate_proj.weight"), &[f, h]);
            add(format!("{p}.mlp.up_proj.weight"), &[f, h]);
            add(format!("{p}.mlp.down_proj.weight"), &[h, f]);
            add(format!("{p}.input_layernorm.weight"), &[h]);
            add(format!("{p}.post_attention_layernorm.weight"), &[h]);
        }
        w
    }

    /// llama.cpp's conversion permutes q/k rows per head, (2, d/2) → (d/2, 2), so that
    /// interleaved rotary pairs equal Hugging Face's half-split pairs.
    fn permute_rows(w: &Tensor, heads: usize) -> Tensor {
        let (out, inp) = w.dims2().unwrap();
        let hd = out / heads;
        w.reshape((heads, 2, hd / 2, inp))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((out, inp))
            .unwrap()
            .contiguous()
            .unwrap()
    }

    fn build(cfg: &Config, weights: HashMap<String, Tensor>, layout: RopeLayout) -> Llama {
        // Through a file, as a checkpoint is read (the mapping outlives the file's name).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        candle_core::safetensors::save(&weights, &path).unwrap();
        let files = unsafe { MmapedSafetensors::new(&path) }.unwrap();
        let tok = Tokenizer::new(tokenizers::models::wordlevel::WordLevel::default());
        Llama::build(
            "tiny".into(),
            Path::new("tiny"),
            cfg.clone(),
            &SafetensorsSource {
                files: Arc::new(files),
                dtype: WeightDtype::Stored,
            },
            layout,
            tok,
            vec![],
        )
        .unwrap()
    }

    /// The largest |a − b| over the taps, relative to the largest |a| of each tap.
    fn taps_rel_diff(a: &[super::super::TapOutput], b: &[super::super::TapOutput]) -> f32 {
        assert_eq!(a.len(), b.len());
        let max_abs = |t: &Tensor| {
            t.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        a.iter()
            .zip(b)
            .map(|(x, y)| max_abs(&(&x.values - &y.values).unwrap()) / max_abs(&x.values))
            .fold(0.0, f32::max)
    }

    /// The GGUF path (interleaved rotary pairs on permuted q/k weights) computes the same
    /// taps as the Hugging Face path, with grouped-query attention. This checks the layouts
    /// against each other only: the rotary angles themselves are checked against
    /// transformers in tests/it/rope.rs. Since permuting the rows of q and k alike leaves
    /// q·k unchanged when no rotation is applied, the equality alone would also hold with
    /// RoPE removed; the wrong pairing (half-split rotation of the permuted weights) must
    /// therefore differ, which it does only if rotations are applied.
    #[test]
    fn interleaved_rope_on_permuted_weights_equals_half_split_rope() {
        let cfg = tiny_config();
        let weights = random_weights(&cfg);
        let mut permuted = weights.clone();
        for l in 0..cfg.num_hidden_layers {
            for (name, heads) in [
                ("q_proj", cfg.num_attention_heads),
                ("k_proj", cfg.kv_heads()),
            ] {
                let key = format!("model.layers.{l}.self_attn.{name}.weight");
                permuted.insert(key.clone(), permute_rows(&weights[&key], heads));
            }
        }
        let hf = build(&cfg, weights, RopeLayout::Halves);
        let gg = build(&cfg, permuted.clone(), RopeLayout::Interleaved);
        let wrong = build(&cfg, permuted, RopeLayout::Halves);
        let ids: Vec<u32> = (0..20).map(|i| (i * 7 % 32) as u32).collect();
        let req = TapRequest::new(vec![0, 1], Tap::ALL.to_vec());
        let reference = hf.forward_taps(&ids, &req).unwrap();
        assert_eq!(reference.len(), 4);
        let same = taps_rel_diff(&reference, &gg.forward_taps(&ids, &req).unwrap());
        assert!(
            same <= 1e-5,
            "interleaved layout: {same:e} of the tap scale"
        );
        let off = taps_rel_diff(&reference, &wrong.forward_taps(&ids, &req).unwrap());
        assert!(
            off > 1e-2,
            "half-split rotation of permuted weights should differ, got {off:e}: are rotations applied?"
        );
    }

    /// Closed form of the Llama 3 rule with original context 8: θ₀ = 1 has wavelength 2π,
    /// between 8/4 and 8/1, so it is blended with s = (8/2π − 1)/(4 − 1); θ₁ = 500000^(−1/2)
    /// has wavelength ≈ 4443 > 8, so it is divided by the factor 8.
    /// transformers' defaults for keys a config.json leaves out: Mistral's window is 4096
    /// when `sliding_window` is absent and none when it is null; Gemma gates with the tanh
    /// GELU when `hidden_act` is absent; a zero width is refused.
    #[test]
    fn family_defaults_follow_transformers() {
        let base = serde_json::json!({"vocab_size": 32, "hidden_size": 16, "intermediate_size": 24,
            "num_hidden_layers": 2, "num_attention_heads": 4});
        let with = |extra: serde_json::Value| -> Config {
            let mut c = base.clone();
            c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::from_value(c).unwrap()
        };
        let mistral = serde_json::json!({"model_type": "mistral"});
        assert_eq!(with(mistral).sliding_window, Some(4096));
        let no_window = serde_json::json!({"model_type": "mistral", "sliding_window": null});
        assert_eq!(with(no_window).sliding_window, None);
        let window = serde_json::json!({"model_type": "mistral", "sliding_window": 8});
        assert_eq!(with(window).sliding_window, Some(8));
        assert_eq!(with(serde_json::json!({"model_type": "gemma"})).hidden_act, "gelu_pytorch_tanh");
        assert_eq!(with(serde_json::json!({})).hidden_act, "silu");
        let empty = with(serde_json::json!({"intermediate_size": 0}));
        let e = empty.validate(Path::new("config.json")).unwrap_err().to_string();
        assert!(e.contains("intermediate_size 0"), "{e}");
    }

    #[test]
    fn llama3_frequency_scaling() {
        let f = tiny_config().inv_freq();
        let s = (8.0 / (2.0 * std::f64::consts::PI) - 1.0) / 3.0;
        assert!((f[0] - ((1.0 - s) / 8.0 + s)).abs() < 1e-15, "{}", f[0]);
        assert!(
            (f[1] - 500000f64.powf(-0.5) / 8.0).abs() < 1e-15,
            "{}",
            f[1]
        );
    }

    /// A token that is not in the vocabulary is an error, not a panic.
    #[test]
    fn out_of_vocabulary_ids_are_errors() {
        let cfg = tiny_config();
        let m = build(&cfg, random_weights(&cfg), RopeLayout::Halves);
        let req = TapRequest::new(vec![0], vec![Tap::FfnOut]);
        assert!(m.forward_taps(&[1, 99], &req).is_err());
        assert!(
            m.forward_batch(&[vec![1, 2], vec![3]], &req).is_err(),
            "ragged batch"
        );
    }
}
