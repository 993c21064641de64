//! `cortexflow ceiling`: the noise ceiling of a store's encoding models.

use std::path::PathBuf;

use cortexflow::stages::ceiling;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store directory.
    pub store: PathBuf,
    /// The summary's medians, and the fraction map, are over voxels whose inter-subject
    /// correlation is above this [default: 0.05 at 15 subject pairs × 580 scans, scaled as
    /// 1/√(pairs × scans) of the data].
    #[arg(long)]
    pub min_isc: Option<f64>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    super::print_lines(ceiling::run(&a.store, a.min_isc)?);
    Ok(())
}
