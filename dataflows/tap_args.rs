//! The options of the commands that run a language model.

use std::path::PathBuf;

use cortexflow::model::stored::WeightDtype;
use cortexflow::stages::responses::{parse_layers, TapOptions};
use cortexflow::store::recipe::{ModelSection, PoolingSetting};

fn defaults() -> ModelSection {
    ModelSection::default()
}

#[derive(Debug, clap::Args)]
pub struct TapArgs {
    /// Model: a Hugging Face folder (config.json with model_type bert, roberta, gpt2,
    /// llama, mistral, qwen2 or gemma,
    /// tokenizer.json, *.safetensors) or a llama GGUF file. scripts/fetch-models puts
    /// MiniLM-L6 and SmolLM2-135M in models/.
    #[arg(long)]
    pub model: PathBuf,
    /// Taps, comma-separated: ffn.out (output of the FFN's second linear layer) and/or
    /// ffn.inner (its input, after GELU or SiLU(gate)⊙up).
    #[arg(long, value_delimiter = ',', default_value = super::default_text(defaults().taps.join(",")))]
    pub taps: Vec<String>,
    /// Layers (0-based): `all`, or indices and ranges such as 0,3,6-11.
    #[arg(long, default_value_t = defaults().layers)]
    pub layers: String,
    /// Story tokens per context window (special tokens excluded). Windows overlap by
    /// half; an encoder keeps each token from the window where it is most central, a
    /// decoder from the one with the most left context.
    #[arg(long, default_value_t = defaults().context)]
    pub context: usize,
    /// Context windows per forward pass: larger batches make larger matrix products
    /// (faster) and hold batch × context × taps activations in memory.
    #[arg(long, default_value_t = TapOptions::BATCH)]
    pub batch: usize,
    /// How a word's activation is made from its tokens'.
    #[arg(long, value_enum, default_value_t = defaults().pooling)]
    pub pooling: PoolingSetting,
    /// In-memory dtype of the Llama line's weights: `auto` keeps f16/bf16 safetensors in
    /// their mapped files (memory ≈ the checkpoint's size) and dequantises a GGUF to f32
    /// when it fits in 4 GiB; `stored` also keeps GGUF weights quantised; `f32` copies
    /// every weight to f32 at load (for parity work). BERT, RoBERTa and GPT-2 are always
    /// copied to f32.
    #[arg(long, value_enum, default_value_t = WeightDtype::Auto)]
    pub dtype: WeightDtype,
}

impl TapArgs {
    /// The settings, checked before any model or stimulus is read.
    pub fn options(&self) -> anyhow::Result<TapOptions> {
        if self.context == 0 {
            anyhow::bail!("--context 0: at least 1 token");
        }
        if self.batch == 0 {
            anyhow::bail!("--batch 0: at least 1 window");
        }
        Ok(TapOptions {
            model: self.model.clone(),
            taps: self
                .taps
                .iter()
                .map(|t| t.parse())
                .collect::<Result<_, _>>()?,
            layers: parse_layers(&self.layers)?,
            context: self.context,
            batch: self.batch,
            pooling: self.pooling.into(),
            dtype: self.dtype,
        })
    }
}
