//! `cortexflow demo`: the main job on the embedded default.

use std::path::PathBuf;

use clap::ValueEnum;
use cortexflow::engine::demo::{self, DemoModel};


#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DemoModelArg {
    /// all-MiniLM-L6-v2 (BERT family, 6 layers × 384).
    Minilm,
    /// SmolLM2-135M-Instruct, GGUF Q4_1 (Llama family, 30 layers × 576).
    Smollm2,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory (data/, store/, recipe.toml, report.html).
    #[arg(long, default_value = "cortexflow-demo")]
    pub out: PathBuf,
    /// The language model (its checkpoint from scripts/fetch-models).
    #[arg(long, value_enum, default_value = "minilm")]
    pub model: DemoModelArg,
    /// Number of subjects.
    #[arg(long, default_value_t = 6)]
    pub subjects: usize,
    /// Random seed of the simulation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let model = match a.model {
        DemoModelArg::Minilm => DemoModel::Minilm,
        DemoModelArg::Smollm2 => DemoModel::Smollm2,
    };
    say!("{}", demo::run(&a.out, model, a.subjects, a.seed)?);
    Ok(())
}
