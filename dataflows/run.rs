//! `cortexflow run`: the whole analysis of a dataset into a new store.

use std::path::PathBuf;

use cortexflow::engine::update;
use cortexflow::store::Recipe;

use crate::cluster_args::ClusterArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe file.
    pub recipe: PathBuf,
    /// Dataset root (sub-*/func/*_bold.nii.gz and mask.nii.gz, as `simulate` writes).
    #[arg(long)]
    pub data: PathBuf,
    /// Folder of `responses` tables, one per story, with neurons.parquet beside the
    /// folder [default: DATA/truth/responses, the simulator's ANs].
    #[arg(long)]
    pub responses: Option<PathBuf>,
    /// Store directory.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cluster = a.cluster.cluster()?;
    let recipe = Recipe::load(&a.recipe)?;
    let responses = a.responses.unwrap_or_else(|| a.data.join("truth/responses"));
    crate::print_lines(update::run_all(&recipe, &a.data, &responses, &a.out, &cluster)?);
    Ok(())
}
