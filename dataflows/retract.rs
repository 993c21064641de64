//! `cortexflow retract`: a run out of a store, as if it had never been ingested.

use std::path::PathBuf;

use cortexflow::engine::update;

use super::cluster_args::ClusterArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store directory.
    pub store: PathBuf,
    /// The run, as sub-<S>/task-<T>/run-<R> (`status` lists them).
    #[arg(long)]
    pub run: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cluster = a.cluster.cluster()?.running(format!("retract --run {}", a.run));
    super::print_lines(update::retract(&cluster, &a.store, &a.run)?);
    Ok(())
}
