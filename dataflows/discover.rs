//! `cortexflow discover`: the runs, stimuli, confounds and masks of a BIDS-like dataset or
//! of fMRIPrep derivatives.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset root (holding sub-*/ folders).
    pub dir: PathBuf,
    /// The space of fMRIPrep derivatives (`MNI152NLin2009cAsym`, or with a resolution
    /// `MNI152NLin2009cAsym:res-2`), when runs come in several.
    #[arg(long)]
    pub space: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    print!("{}", cortexflow::io::inspect::discover(&a.dir, a.space.as_deref())?);
    Ok(())
}
