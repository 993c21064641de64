//! GPT-2 decoders from a Hugging Face folder: learned absolute positions, pre-norm blocks
//! with LayerNorm, one fused q/k/v projection, and the feed-forward block
//! c_proj(gelu_new(c_fc(x))), whose input is ffn.inner and output ffn.out. GPT-2 stores
//! its projections as `Conv1D` weights (in × out), transposed here to (out × in) at load.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{embedding, Embedding, VarBuilder};
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::attention::{attention, Mask};
use super::dense::Dense;
use super::norm::Norm;
use super::{
    batch_tensor, candle_err, folder_tokenizer, run_layers, safetensors_files, Direction,
    LanguageModel, ModelDims, TapOutput, TapRequest,
};
use crate::error::{Error, Result};

/// The fields of a GPT-2 `config.json` (transformers' `GPT2Config` names and defaults).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// FFN width; None means 4 × n_embd.
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_act")]
    pub activation_function: String,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "yes")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub add_cross_attention: bool,
}

fn default_act() -> String {
    "gelu_new".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}

impl Config {
    fn ffn(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Errors for configurations this implementation does not compute faithfully.
    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |m: String| Err(Error::format(path, m));
        if !matches!(self.activation_function.as_str(), "gelu_new" | "gelu_pytorch_tanh") {
            return bad(format!(
                "activation_function '{}' is not supported (gelu_new)",
                self.activation_function
            ));
        }
        if !self.scale_attn_weights || self.scale_attn_by_inverse_layer_idx || self.add_cross_attention {
            return bad("only GPT-2's own attention is supported (scale_attn_weights true, scale_attn_by_inverse_layer_idx and add_cross_attention false)".into());
        }
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return bad("n_embd must be a multiple of n_head".into());
        }
        Ok(())
    }
}

/// A `Conv1D` (in × out weight, out bias) as a dense projection.
fn conv1d(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Dense> {
    let weight = vb.get((in_dim, out_dim), "weight")?.t()?.contiguous()?;
    Dense::new(&weight, Some(&vb.get(out_dim, "bias")?))
}

struct Block {
    ln_1: Norm,
    c_attn: Dense,
    attn_proj: Dense,
    ln_2: Norm,
    c_fc: Dense,
    c_proj: Dense,
    heads: usize,
}

impl Block {
    fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (h, f, eps) = (cfg.n_embd, cfg.ffn(), cfg.layer_norm_epsilon);
        Ok(Block {
            ln_1: Norm::layer(h, eps, vb.pp("ln_1"))?,
            c_attn: conv1d(h, 3 * h, vb.pp("attn.c_attn"))?,
            attn_proj: conv1d(h, h, vb.pp("attn.c_proj"))?,
            ln_2: Norm::layer(h, eps, vb.pp("ln_2"))?,
            c_fc: conv1d(h, f, vb.pp("mlp.c_fc"))?,
            c_proj: conv1d(f, h, vb.pp("mlp.c_proj"))?,
            heads: cfg.n_head,
        })
    }

    /// Returns (next hidden state, ffn.inner, ffn.out).
    fn forward(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (b, t, h) = x.dims3()?;
        let d = h / self.heads;
        let qkv = self.c_attn.forward(&self.ln_1.forward(x)?)?;
        // (b, t, 3h) → q, k, v as (b, heads, t, d) views; the fused attention reads them strided.
        let part = |i: usize| {
            qkv.narrow(2, i * h, h)?
                .reshape((b, t, self.heads, d))?
                .transpose(1, 2)
        };
        let ctx = attention(&part(0)?, &part(1)?, &part(2)?, Mask::Causal)?;
        let (x, n) = self.ln_2.forward_sum(x, &self.attn_proj.forward(&ctx)?)?;
        let inner = super::ops::gelu_tanh(&self.c_fc.forward(&n)?)?;
        let out = self.c_proj.forward(&inner)?;
        let next = super::ops::add(&x, &out)?;
        Ok((next, inner, out))
    }
}

/// A GPT-2 decoder with FFN taps.
pub struct Gpt2 {
    name: String,
    path: PathBuf,
    cfg: Config,
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<Block>,
    tokenizer: Tokenizer,
}

impl Gpt2 {
    /// Loads `dir` (config.json text already read as `config`); weights are copied to f32.
    pub fn load(dir: &Path, config: &str) -> Result<Self> {
        let config_path = dir.join("config.json");
        let cfg: Config = serde_json::from_str(config)
            .map_err(|e| Error::format(&config_path, format!("not a GPT-2 config: {e}")))?;
        cfg.validate(&config_path)?;
        let tokenizer = folder_tokenizer(dir)?;
        let files = safetensors_files(dir)?;
        let err = candle_err(&files[0]);
        // SAFETY: the weights are memory-mapped read-only; the files must not change while loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }
            .map_err(&err)?;
        // GPT2Model saves bare names; GPT2LMHeadModel prefixes "transformer.".
        let vb = if vb.contains_tensor("transformer.wte.weight") {
            vb.pp("transformer")
        } else {
            vb
        };
        let wte = embedding(cfg.vocab_size, cfg.n_embd, vb.pp("wte")).map_err(&err)?;
        let wpe = embedding(cfg.n_positions, cfg.n_embd, vb.pp("wpe")).map_err(&err)?;
        let blocks = (0..cfg.n_layer)
            .map(|i| Block::new(&cfg, vb.pp(format!("h.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(&err)?;
        let name = dir
            .file_name()
            .map_or("gpt2".into(), |n| n.to_string_lossy().into_owned());
        Ok(Gpt2 {
            name,
            path: dir.to_path_buf(),
            cfg,
            wte,
            wpe,
            blocks,
            tokenizer,
        })
    }
}

impl LanguageModel for Gpt2 {
    fn name(&self) -> &str {
        &self.name
    }
    fn dims(&self) -> ModelDims {
        ModelDims {
            layers: self.cfg.n_layer,
            hidden: self.cfg.n_embd,
            ffn: self.cfg.ffn(),
            max_positions: self.cfg.n_positions,
        }
    }
    fn direction(&self) -> Direction {
        Direction::Decoder
    }
    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    /// None: GPT-2's tokenizer adds no special token (transformers' default).
    fn window_specials(&self) -> (Vec<u32>, Vec<u32>) {
        (Vec::new(), Vec::new())
    }

    fn forward_batch(&self, batch: &[Vec<u32>], request: &TapRequest) -> Result<Vec<TapOutput>> {
        let err = candle_err(&self.path);
        if request.last_layer().is_none() {
            return Ok(Vec::new());
        }
        let input = batch_tensor(batch, self.cfg.vocab_size, self.cfg.n_positions, &self.name)?;
        let t = input.dim(1).map_err(&err)?;
        let x = Tensor::arange(0u32, t as u32, &Device::Cpu)
            .and_then(|p| self.wpe.forward(&p))
            .and_then(|pos| self.wte.forward(&input)?.broadcast_add(&pos))
            .map_err(&err)?;
        run_layers(&self.blocks, request, x, |block, x| block.forward(x)).map_err(&err)
    }
}
