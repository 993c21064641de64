//! `cortexflow ceiling`: the noise ceiling of a store's encoding models.

use std::path::PathBuf;

use cortexflow::stages::ceiling::{self, MIN_ISC};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store directory.
    pub store: PathBuf,
    /// The summary's medians are over voxels whose inter-subject correlation is above this.
    #[arg(long, default_value_t = MIN_ISC)]
    pub min_isc: f64,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    crate::print_lines(ceiling::run(&a.store, a.min_isc)?);
    Ok(())
}
