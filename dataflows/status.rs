//! `cortexflow status`: what a store holds, whether its results are up to date, and
//! whether every file it wrote is intact (checked against the manifest's checksums).

use std::path::PathBuf;

use cortexflow::engine::update;
use cortexflow::store::{check_files, FileCheck, Store};

use super::cluster_args::ClusterArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store directory.
    pub store: PathBuf,
    /// Bring stale results up to date (after an interrupted command) and rebuild damaged
    /// subject maps, group maps and network assignments from the runs' statistics.
    #[arg(long)]
    pub refresh: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cluster = a.cluster.cluster()?.running("status --refresh");
    if a.refresh {
        super::print_lines(update::refresh(&cluster, &a.store)?);
    }
    if !cluster.is_writer() {
        return Ok(());
    }
    super::say_text(&Store::open_reader(&a.store)?.status());
    let (lines, damaged) = match check_files(&a.store, false)? {
        FileCheck::Busy(writer) => {
            say!("files: not verified now: the store is being written by {writer}");
            return Ok(());
        }
        FileCheck::Done { lines, problems } => (lines, problems),
    };
    super::say_text(&lines);
    if damaged > 0 {
        anyhow::bail!(
            "{}: {damaged} damaged file(s) or interrupted part(s); see above for what repairs each",
            a.store.display()
        );
    }
    Ok(())
}
