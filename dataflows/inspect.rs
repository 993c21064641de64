//! `cortexflow inspect`: what a NIfTI image or a stimulus file holds.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files to inspect.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// TextGrid tier holding the words [default: the first interval tier].
    #[arg(long)]
    pub tier: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    for f in &a.files {
        say!("{}", cortexflow::io::inspect::inspect(f, a.tier.as_deref())?);
    }
    Ok(())
}
