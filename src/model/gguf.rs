//! Llama from a llama.cpp GGUF file: configuration and tokenizer from the metadata, weights
//! from the tensors. Quantised weights are dequantised to f32 at load when the whole model
//! then fits in 4 GiB; larger models (or `--dtype stored`) keep their blocks and dequantise
//! a chunk of rows before each product ([`super::stored::QuantizedMatrix`]). Either way the
//! products see the same f32 weights, so the taps equal a float32 forward of the
//! dequantised file, as transformers computes it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};

use super::dense::Dense;
use super::llama::{Config, Llama, Part, RopeLayout, RopeScaling, WeightSource};
use super::stored::{Embedding, QuantizedMatrix, WeightDtype};
use crate::error::{tensor_message, Error, Result};

mod tokenizer;

/// Dequantised models up to this many bytes of f32 weights run in f32.
const DEQUANTIZE_LIMIT: usize = 4 << 30;

/// Loads a Llama-architecture GGUF file, its quantised weights dequantised or not as
/// `dtype` says.
pub fn load(path: &Path, dtype: WeightDtype) -> Result<Llama> {
    let file_len = crate::io::regular_file(path)?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|e| {
        Error::format(
            path,
            format!("not a readable GGUF file: {}", tensor_message(&e)),
        )
    })?;
    check_tensor_sizes(path, &content, file_len)?;
    let meta = Meta {
        path,
        map: &content.metadata,
    };
    let arch = meta.string("general.architecture")?;
    if arch != "llama" {
        return Err(Error::format(
            path,
            format!("GGUF architecture '{arch}' is not supported (llama)"),
        ));
    }
    let heads = meta.usize("llama.attention.head_count")?;
    let hidden = meta.usize("llama.embedding_length")?;
    let cfg = Config {
        vocab_size: meta.array_len("tokenizer.ggml.tokens")?,
        hidden_size: hidden,
        intermediate_size: meta.usize("llama.feed_forward_length")?,
        num_hidden_layers: meta.usize("llama.block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: Some(meta.usize_or("llama.attention.head_count_kv", heads)?),
        head_dim: Some(meta.usize_or("llama.rope.dimension_count", hidden / heads.max(1))?),
        rms_norm_eps: meta.f64_or("llama.attention.layer_norm_rms_epsilon", 1e-5)?,
        rope_theta: meta.f64_or("llama.rope.freq_base", 10_000.0)?,
        rope_scaling: rope_scaling(&meta)?,
        rope_freq_factors: rope_freq_factors(path, &content, &mut reader)?,
        max_position_embeddings: meta.usize_or("llama.context_length", 2048)?,
        hidden_act: "silu".into(),
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        qkv_bias: false,
        o_bias: false,
        sliding_window: None,
        gemma: false,
    };
    cfg.validate(path)?;
    let tokenizer = tokenizer::from_metadata(&meta)?;
    let add_bos = meta
        .map
        .get("tokenizer.ggml.add_bos_token")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(true);
    let prefix = match (add_bos, meta.map.get("tokenizer.ggml.bos_token_id")) {
        (true, Some(v)) => vec![v.to_u32().map_err(|e| Error::format(path, e.to_string()))?],
        _ => Vec::new(),
    };
    let f32_bytes: usize = content
        .tensor_infos
        .values()
        .map(|t| t.shape.elem_count() * 4)
        .sum();
    let dequantize = match dtype {
        WeightDtype::Auto => f32_bytes <= DEQUANTIZE_LIMIT,
        WeightDtype::Stored => false,
        WeightDtype::F32 => true,
    };
    tracing::info!(
        "{}: {} weights",
        path.display(),
        if dequantize {
            "dequantised to f32"
        } else {
            "kept quantised"
        }
    );
    let source = GgufSource {
        content: &content,
        reader: RefCell::new(reader),
        dequantize,
    };
    let name = path
        .file_stem()
        .map_or("gguf".into(), |n| n.to_string_lossy().into_owned());
    Llama::build(
        name,
        path,
        cfg,
        &source,
        RopeLayout::Interleaved,
        tokenizer,
        prefix,
    )
}

/// Every tensor's declared extent against the file, before any is read: a truncated
/// download fails at once, naming the first tensor it cut, instead of after the layers
/// before it were loaded (and never by an allocation sized from a forged shape).
fn check_tensor_sizes(path: &Path, content: &Content, file_len: u64) -> Result<()> {
    let mut infos: Vec<_> = content.tensor_infos.iter().collect();
    infos.sort_by_key(|(_, t)| t.offset);
    for (name, t) in infos {
        let bad = |msg: String| Error::format(path, format!("tensor '{name}': {msg}"));
        let (block, bytes_per_block) = (t.ggml_dtype.block_size(), t.ggml_dtype.type_size());
        let elems = t
            .shape
            .dims()
            .iter()
            .try_fold(1u128, |n, &d| n.checked_mul(d as u128))
            .filter(|&n| n <= u64::MAX as u128)
            .ok_or_else(|| bad(format!("shape {:?} is too large", t.shape.dims())))?;
        if elems % block as u128 != 0 {
            return Err(bad(format!(
                "{elems} elements are not whole blocks of {block} ({:?})",
                t.ggml_dtype
            )));
        }
        let size = elems / block as u128 * bytes_per_block as u128;
        let start = content.tensor_data_offset as u128 + t.offset as u128;
        if start + size > file_len as u128 {
            return Err(bad(format!(
                "declares {size} bytes at offset {start}, the file holds {file_len} bytes (truncated?)"
            )));
        }
    }
    Ok(())
}

/// Errors when a weight is NaN or infinite: corrupt tensor bytes would otherwise run as
/// NaN activations through every later layer without a word. One pass per tensor, once,
/// at load.
fn ensure_finite(name: &str, t: &Tensor) -> candle_core::Result<()> {
    let values = t
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?;
    let bad = values.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        candle_core::bail!(
            "tensor '{name}': {bad} of {} weights are NaN or infinite after dequantisation (corrupt tensor data?)",
            values.len()
        );
    }
    Ok(())
}

/// Rotary scaling from the metadata as llama.cpp writes it: `llama.rope.scaling.type`
/// ("none" or "linear", with `llama.rope.scaling.factor`), or the older
/// `llama.rope.scale_linear`. Llama 3 scaling is not metadata but `rope_freqs.weight`.
fn rope_scaling(meta: &Meta) -> Result<Option<RopeScaling>> {
    let linear = |factor: f64| {
        Some(RopeScaling {
            rope_type: "linear".into(),
            factor: Some(factor),
            low_freq_factor: None,
            high_freq_factor: None,
            original_max_position_embeddings: None,
        })
    };
    let key = "llama.rope.scaling.type";
    match meta.map.get(key) {
        Some(v) => match meta.typed(key, v.to_string().cloned())?.as_str() {
            "none" => Ok(None),
            "linear" => Ok(linear(meta.f64_or("llama.rope.scaling.factor", 1.0)?)),
            other => Err(Error::format(
                meta.path,
                format!("GGUF rope scaling type '{other}' is not supported (none, linear)"),
            )),
        },
        None if meta.map.contains_key("llama.rope.scale_linear") => {
            Ok(linear(meta.f64_or("llama.rope.scale_linear", 1.0)?))
        }
        None => Ok(None),
    }
}

/// `rope_freqs.weight`: the per-frequency divisors in which llama.cpp's converter stores
/// Llama 3 rotary scaling (θ_i / f_i); absent for unscaled models.
fn rope_freq_factors(
    path: &Path,
    content: &Content,
    reader: &mut BufReader<File>,
) -> Result<Option<Vec<f64>>> {
    const NAME: &str = "rope_freqs.weight";
    if !content.tensor_infos.contains_key(NAME) {
        return Ok(None);
    }
    let values = content
        .tensor(reader, NAME, &Device::Cpu)
        .and_then(|t| t.dequantize(&Device::Cpu))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| Error::format(path, format!("{NAME}: {}", tensor_message(&e))))?;
    Ok(Some(values.into_iter().map(f64::from).collect()))
}

/// Typed access to GGUF metadata with errors that name the file and key.
struct Meta<'a> {
    path: &'a Path,
    map: &'a HashMap<String, Value>,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Result<&Value> {
        self.map
            .get(key)
            .ok_or_else(|| Error::format(self.path, format!("GGUF metadata has no '{key}'")))
    }
    fn typed<T>(&self, key: &str, v: candle_core::Result<T>) -> Result<T> {
        v.map_err(|e| {
            Error::format(
                self.path,
                format!("GGUF metadata '{key}': {}", tensor_message(&e)),
            )
        })
    }
    fn string(&self, key: &str) -> Result<String> {
        self.typed(key, self.get(key)?.to_string().cloned())
    }
    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key)?;
        self.typed(key, v.to_u64().or_else(|_| v.to_u32().map(u64::from)))
            .map(|v| v as usize)
    }
    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.map.contains_key(key) {
            self.usize(key)
        } else {
            Ok(default)
        }
    }
    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.map.get(key) {
            Some(v) => self.typed(key, v.to_f32().map(f64::from).or_else(|_| v.to_f64())),
            None => Ok(default),
        }
    }
    fn array_len(&self, key: &str) -> Result<usize> {
        Ok(self.typed(key, self.get(key)?.to_vec())?.len())
    }
    fn strings(&self, key: &str) -> Result<Vec<String>> {
        let items = self.typed(key, self.get(key)?.to_vec())?;
        items
            .iter()
            .map(|v| self.typed(key, v.to_string().cloned()))
            .collect()
    }
}

/// GGUF tensor names (`blk.N.attn_q.weight`, …).
struct GgufSource<'a> {
    content: &'a Content,
    reader: RefCell<BufReader<File>>,
    dequantize: bool,
}

impl GgufSource<'_> {
    fn tensor(&self, name: &str) -> candle_core::Result<candle_core::quantized::QTensor> {
        self.content
            .tensor(&mut *self.reader.borrow_mut(), name, &Device::Cpu)
    }
}

impl WeightSource for GgufSource<'_> {
    fn proj(
        &self,
        layer: usize,
        part: Part,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> candle_core::Result<Dense> {
        if bias {
            candle_core::bail!("projection biases are not read from GGUF files");
        }
        let name = match part {
            Part::Q => "attn_q",
            Part::K => "attn_k",
            Part::V => "attn_v",
            Part::O => "attn_output",
            Part::Gate => "ffn_gate",
            Part::Up => "ffn_up",
            Part::Down => "ffn_down",
            Part::AttnNorm | Part::FfnNorm => candle_core::bail!("{part:?} is a norm"),
        };
        let full = format!("blk.{layer}.{name}.weight");
        let q = self.tensor(&full)?;
        if q.shape().dims() != [out_dim, in_dim] {
            candle_core::bail!(
                "{full} has shape {:?}, expected [{out_dim}, {in_dim}]",
                q.shape()
            );
        }
        let dense = q.dequantize(&Device::Cpu)?;
        ensure_finite(&full, &dense)?;
        if self.dequantize {
            Dense::new(&dense, None)
        } else {
            drop(dense);
            Dense::from_rows(Box::new(QuantizedMatrix::new(q)?), None)
        }
    }
    fn norm(&self, layer: usize, part: Part, dim: usize) -> candle_core::Result<Tensor> {
        let name = match part {
            Part::AttnNorm => "attn_norm",
            _ => "ffn_norm",
        };
        let full = format!("blk.{layer}.{name}.weight");
        let t = self.tensor(&full)?.dequantize(&Device::Cpu)?;
        if t.dims() != [dim] {
            candle_core::bail!("{full} has shape {:?}, expected [{dim}]", t.shape());
        }
        ensure_finite(&full, &t)?;
        Ok(t)
    }
    fn embedding(&self, vocab: usize, hidden: usize) -> candle_core::Result<Embedding> {
        let q = self.tensor("token_embd.weight")?;
        let t = q.dequantize(&Device::Cpu)?;
        if t.dims() != [vocab, hidden] {
            candle_core::bail!(
                "token_embd.weight has shape {:?}, expected [{vocab}, {hidden}]",
                t.shape()
            );
        }
        ensure_finite("token_embd.weight", &t)?;
        if self.dequantize {
            Ok(Embedding::F32(t))
        } else {
            drop(t);
            Ok(Embedding::Rows(Box::new(QuantizedMatrix::new(q)?)))
        }
    }
}
