//! `cortexflow init`: a new analysis store for a recipe.

use std::path::PathBuf;

use cortexflow::store::{Recipe, Store, WriteLock};

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
    let recipe = Recipe::load(&a.recipe)?;
    let _lock = WriteLock::acquire(&a.store)?;
    let s = Store::init(&a.store, &recipe, a.mask.as_deref())?;
    super::say_text(&s.status());
    Ok(())
}
