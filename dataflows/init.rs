//! `cortexflow init`: a new analysis store for a recipe.

use std::path::PathBuf;

use cortexflow::store::{Recipe, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe file (dataflows/paper.toml, dataflows/demo.toml, or your own).
    #[arg(long)]
    pub recipe: PathBuf,
    /// Analysis mask (can also be given at the first `ingest`).
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Store directory.
    pub store: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let s = Store::init(&a.store, &Recipe::load(&a.recipe)?, a.mask.as_deref())?;
    print!("{}", s.status());
    Ok(())
}
