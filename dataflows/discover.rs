//! `cortexflow discover`: the runs, stimuli and mask of a BIDS-like dataset.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset root (holding sub-*/ folders).
    pub dir: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    print!("{}", cortexflow::io::inspect::discover(&a.dir)?);
    Ok(())
}
