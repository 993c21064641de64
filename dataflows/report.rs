//! `cortexflow report`: one self-contained HTML report of one or more stores.

use std::path::PathBuf;

use cortexflow::store::Layout;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store directories (the first is reported in full).
    #[arg(required = true)]
    pub stores: Vec<PathBuf>,
    /// Output file [default: STORE/report.html].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write every figure to this folder (figNN.svg, figNN.png).
    #[arg(long)]
    pub figures: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let out = a.out.unwrap_or_else(|| Layout::new(&a.stores[0]).report());
    let r = cortexflow::report::run(&a.stores, &out, a.figures.as_deref())?;
    r.notes.iter().for_each(|n| say!("note: {n}"));
    say!("wrote {} ({} figures)", r.path.display(), r.figures);
    Ok(())
}
