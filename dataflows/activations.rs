//! `cortexflow activations`: token-level activations of a model's taps, for inspection.

use std::path::PathBuf;

use cortexflow::stages::responses;

use super::tap_args::TapArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub taps: TapArgs,
    /// A stimulus (.TextGrid, .tsv, .csv) or a plain text file (.txt, split at white space).
    #[arg(long, alias = "stimulus", value_name = "FILE")]
    pub text: PathBuf,
    /// TextGrid tier holding the words [default: the first interval tier].
    #[arg(long)]
    pub tier: Option<String>,
    /// Output Parquet file.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    for f in responses::activations(&a.taps.options()?, &a.text, a.tier.as_deref(), &a.out)? {
        say!("wrote {}", f.display());
    }
    Ok(())
}
