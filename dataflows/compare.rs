//! `cortexflow compare`: the organisation metrics of several analyses side by side.

use std::path::PathBuf;

use cortexflow::report::compare::write_comparison;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directories of `cortexflow map` (or analyses holding map/).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (files, table) = write_comparison(&a.dirs, &a.out)?;
    super::say_text(&table);
    files.iter().for_each(|f| say!("wrote {}", f.display()));
    Ok(())
}
