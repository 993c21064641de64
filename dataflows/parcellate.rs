//! `cortexflow parcellate`: BOLD runs to region time series.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cortexflow::io::atlas::read_label_names;
use cortexflow::stages::parcellate;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// BOLD runs (4-D NIfTI), comma-separated.
    #[arg(long, required = true, value_delimiter = ',')]
    pub bold: Vec<PathBuf>,
    /// The label image (atlas or parcellation; 0 is background), resampled onto each run's
    /// grid by nearest neighbour when its grid differs.
    #[arg(long)]
    pub labels: PathBuf,
    /// `label,name` lines naming the regions (the atlases' CSV form); unnamed regions are
    /// `region-<label>`.
    #[arg(long)]
    pub names: Option<PathBuf>,
    /// Output directory: one `<run>_timeseries.tsv` (+ `.json` with its TR) per run, under
    /// `sub-<S>/[ses-<X>/]func/` when the run has a BIDS name.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let names = match &a.names {
        Some(p) => {
            cortexflow::io::regular_file(p)?;
            read_label_names(p, &std::fs::read_to_string(p)?)?
        }
        None => BTreeMap::new(),
    };
    for p in parcellate::run(&a.bold, &a.labels, &names, &a.out)? {
        say!("{}: {} scans × {} regions", p.path.display(), p.scans, p.regions);
    }
    Ok(())
}
