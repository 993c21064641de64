//! BERT encoders (BERT, MiniLM, …; RoBERTa) from a Hugging Face folder, written on
//! `candle_nn` layers with the checkpoint's tensor names so the FFN internals can be tapped:
//! `encoder.layer.N.intermediate.dense` → GELU (erf) = ffn.inner,
//! `encoder.layer.N.output.dense` = ffn.out.
//!
//! RoBERTa is BERT with `<s>`/`</s>` around a window and positions counted from
//! `pad_token_id + 1`, a pad token keeping position `pad_token_id` (transformers'
//! `create_position_ids_from_input_ids`).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, VarBuilder};
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::attention::{attention, Mask};
use super::dense::{dense, Dense, Stacked};
use super::norm::Norm;
use super::{
    batch_tensor, candle_err, folder_tokenizer, run_layers, safetensors_files, Direction,
    LanguageModel, ModelDims, TapOutput, TapRequest,
};
use crate::error::{Error, Result};

/// The fields of `config.json` a BERT forward pass needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_position")]
    pub position_embedding_type: String,
    #[serde(default = "default_model_type")]
    pub model_type: String,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

impl Config {
    /// RoBERTa's padding index, from which its positions count; None for BERT.
    fn padding_idx(&self) -> Option<u32> {
        (self.model_type == "roberta").then(|| self.pad_token_id.unwrap_or(1))
    }

    /// The most tokens a window may have: RoBERTa's first pad_token_id + 1 positions are
    /// not used by text.
    fn max_tokens(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.padding_idx().map_or(0, |p| p as usize + 1))
    }
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position() -> String {
    "absolute".into()
}
fn default_model_type() -> String {
    "bert".into()
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    padding_idx: Option<u32>,
}

impl Embeddings {
    fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Embeddings {
            word: embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("word_embeddings"))?,
            position: embedding(
                cfg.max_position_embeddings,
                cfg.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            token_type: embedding(
                cfg.type_vocab_size,
                cfg.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            norm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
            padding_idx: cfg.padding_idx(),
        })
    }

    /// Position ids of a (b, t) batch: 0..t for BERT; for RoBERTa p + (count of non-pad
    /// tokens up to and including this one) for a non-pad token, p for a pad token.
    fn positions(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let Some(p) = self.padding_idx else {
            return Tensor::arange(0u32, t as u32, ids.device())?
                .unsqueeze(0)?
                .repeat((b, 1));
        };
        let rows: Vec<Vec<u32>> = ids.to_vec2()?;
        let positions: Vec<u32> = rows
            .iter()
            .flat_map(|row| {
                row.iter().scan(0u32, move |seen, &id| {
                    Some(if id == p {
                        p
                    } else {
                        *seen += 1;
                        p + *seen
                    })
                })
            })
            .collect();
        Tensor::from_vec(positions, (b, t), ids.device())
    }

    fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let types = ids.zeros_like()?;
        let x = self
            .word
            .forward(ids)?
            .add(&self.position.forward(&self.positions(ids)?)?)?
            .add(&self.token_type.forward(&types)?)?;
        self.norm.forward(&x)
    }
}

struct Layer {
    /// query, key and value.
    qkv: Stacked,
    attn_out: Dense,
    attn_norm: Norm,
    intermediate: Dense,
    output: Dense,
    out_norm: Norm,
    heads: usize,
}

impl Layer {
    fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
        let att = vb.pp("attention");
        Ok(Layer {
            qkv: Stacked::new(vec![
                dense(h, h, att.pp("self.query"))?,
                dense(h, h, att.pp("self.key"))?,
                dense(h, h, att.pp("self.value"))?,
            ])?,
            attn_out: dense(h, h, att.pp("output.dense"))?,
            attn_norm: Norm::layer(h, cfg.layer_norm_eps, att.pp("output.LayerNorm"))?,
            intermediate: dense(h, f, vb.pp("intermediate.dense"))?,
            output: dense(f, h, vb.pp("output.dense"))?,
            out_norm: Norm::layer(h, cfg.layer_norm_eps, vb.pp("output.LayerNorm"))?,
            heads: cfg.num_attention_heads,
        })
    }

    /// Returns (next hidden state, ffn.inner, ffn.out), each (1, t, ·).
    fn forward(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        // (b, heads, t, d) views; the fused attention reads them strided.
        let [q, k, v] = self.qkv.heads(x, x.dim(2)? / self.heads)?;
        let ctx = attention(&q, &k, &v, Mask::Full)?;
        let x = self.attn_norm.forward_of_sum(&self.attn_out.forward(&ctx)?, x)?;
        let inner = self.intermediate.forward(&x)?;
        super::ops::gelu_erf_in_place(&inner)?;
        let out = self.output.forward(&inner)?;
        let next = self.out_norm.forward_of_sum(&out, &x)?;
        Ok((next, inner, out))
    }
}

/// A BERT encoder with FFN taps.
pub struct Bert {
    name: String,
    path: PathBuf,
    cfg: Config,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    tokenizer: Tokenizer,
    cls_sep: (u32, u32),
}

impl Bert {
    /// Loads `dir` (config.json text already read as `config`).
    pub fn load(dir: &Path, config: &str) -> Result<Self> {
        let config_path = dir.join("config.json");
        let cfg: Config = serde_json::from_str(config)
            .map_err(|e| Error::format(&config_path, format!("not a BERT config: {e}")))?;
        if cfg.padding_idx().is_some_and(|p| p as usize >= cfg.max_position_embeddings) {
            return Err(Error::format(&config_path, "pad_token_id must be below max_position_embeddings"));
        }
        if cfg.hidden_act != "gelu" {
            return Err(Error::format(
                &config_path,
                format!("hidden_act '{}' is not supported (gelu)", cfg.hidden_act),
            ));
        }
        if cfg.position_embedding_type != "absolute" {
            return Err(Error::format(
                &config_path,
                format!(
                    "position_embedding_type '{}' is not supported (absolute)",
                    cfg.position_embedding_type
                ),
            ));
        }
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(Error::format(
                &config_path,
                "hidden_size must be a multiple of num_attention_heads",
            ));
        }
        let tokenizer = folder_tokenizer(dir)?;
        let files = safetensors_files(dir)?;
        // SAFETY: the weights are memory-mapped read-only; the files must not change while loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }
            .map_err(candle_err(&files[0]))?;
        // Checkpoints saved from BertModel have bare names; BertFor* ones prefix "bert."
        // (RobertaFor*: "roberta.").
        let prefix = cfg.model_type.as_str();
        let vb = if vb.contains_tensor(&format!("{prefix}.embeddings.word_embeddings.weight")) {
            vb.pp(prefix)
        } else {
            vb
        };
        let embeddings =
            Embeddings::new(&cfg, vb.pp("embeddings")).map_err(candle_err(&files[0]))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(&cfg, vb.pp(format!("encoder.layer.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(candle_err(&files[0]))?;
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| Error::format(dir.join("tokenizer.json"), format!("no {t} token")))
        };
        let cls_sep = match cfg.padding_idx() {
            Some(_) => (id("<s>")?, id("</s>")?),
            None => (id("[CLS]")?, id("[SEP]")?),
        };
        let name = dir
            .file_name()
            .map_or("bert".into(), |n| n.to_string_lossy().into_owned());
        Ok(Bert {
            name,
            path: dir.to_path_buf(),
            cfg,
            embeddings,
            layers,
            tokenizer,
            cls_sep,
        })
    }
}

impl LanguageModel for Bert {
    fn name(&self) -> &str {
        &self.name
    }
    fn dims(&self) -> ModelDims {
        ModelDims {
            layers: self.cfg.num_hidden_layers,
            hidden: self.cfg.hidden_size,
            ffn: self.cfg.intermediate_size,
            max_positions: self.cfg.max_tokens(),
        }
    }
    fn direction(&self) -> Direction {
        Direction::Encoder
    }
    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    fn window_specials(&self) -> (Vec<u32>, Vec<u32>) {
        (vec![self.cls_sep.0], vec![self.cls_sep.1])
    }

    fn forward_batch(&self, batch: &[Vec<u32>], request: &TapRequest) -> Result<Vec<TapOutput>> {
        let err = candle_err(&self.path);
        if request.last_layer().is_none() {
            return Ok(Vec::new());
        }
        let input = batch_tensor(batch, self.cfg.vocab_size, self.cfg.max_tokens(), &self.name)?;
        let x = self.embeddings.forward(&input).map_err(&err)?;
        run_layers(&self.layers, request, x, |block, x| block.forward(x)).map_err(&err)
    }
}
