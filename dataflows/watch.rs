//! `cortexflow watch`: a store kept up to date with a folder.

use std::path::PathBuf;

use cortexflow::engine::watch::{self, WatchOptions};

use super::cluster_args::ClusterArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store directory.
    pub store: PathBuf,
    /// Folder to watch (any depth; BIDS names sub-<S>_task-<T>[_run-<R>]_bold.nii[.gz]).
    pub dir: PathBuf,
    /// Polling interval in milliseconds (a file is taken once its size holds for one
    /// interval).
    #[arg(long, default_value_t = 1000)]
    pub poll_ms: u64,
    /// Stop after this many updates [default: run until stopped].
    #[arg(long)]
    pub updates: Option<usize>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let opt = WatchOptions {
        poll: std::time::Duration::from_millis(a.poll_ms.max(10)),
        updates: a.updates,
    };
    watch::watch(&a.store, &a.dir, &opt, &a.cluster.cluster()?)?;
    Ok(())
}
