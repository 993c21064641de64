//! `cortexflow status`: what a store holds, and whether its results are up to date.

use std::path::PathBuf;

use cortexflow::engine::update;
use cortexflow::store::Store;

use crate::cluster_args::ClusterArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store directory.
    pub store: PathBuf,
    /// Bring stale results up to date (after an interrupted command).
    #[arg(long)]
    pub refresh: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cluster = a.cluster.cluster()?;
    if a.refresh {
        crate::print_lines(update::refresh(&cluster, &a.store)?);
    }
    if cluster.is_writer() {
        print!("{}", Store::open_reader(&a.store)?.status());
    }
    Ok(())
}
