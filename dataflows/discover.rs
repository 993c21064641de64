//! `cortexflow discover`: the runs, stimuli, confounds and masks of a BIDS-like dataset, of
//! fMRIPrep derivatives or of region time series.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset root (holding sub-*/ folders).
    pub dir: PathBuf,
    /// The space of fMRIPrep derivatives (`MNI152NLin2009cAsym`, or with a resolution
    /// `MNI152NLin2009cAsym:res-2`; `regions[:<atlas>]` for region time series), when runs
    /// come in several.
    #[arg(long)]
    pub space: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    super::say_text(&cortexflow::io::inspect::discover(&a.dir, a.space.as_deref())?);
    Ok(())
}
