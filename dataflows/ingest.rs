//! `cortexflow ingest`: stories, BOLD runs or a whole dataset into a store.

use std::path::PathBuf;

use cortexflow::engine::stories::StimulusSpec;
use cortexflow::engine::update::{self, IngestRequest};

use super::cluster_args::ClusterArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store directory.
    pub store: PathBuf,
    /// Responses tables (one story each), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub responses: Vec<PathBuf>,
    /// The neurons table of those responses.
    #[arg(long)]
    pub neurons: Option<PathBuf>,
    /// Stimuli (timed words: TextGrid, TSV or CSV), comma-separated: streamed through
    /// the recipe's model into responses, one story each, named after the file.
    #[arg(long, value_delimiter = ',')]
    pub stimulus: Vec<PathBuf>,
    /// With --stimulus: repetition time in seconds.
    #[arg(long, requires = "stimulus")]
    pub tr: Option<f64>,
    /// With --stimulus: scans per run, one value or one per stimulus.
    #[arg(long, value_delimiter = ',', requires = "stimulus")]
    pub n_scans: Vec<usize>,
    /// BOLD runs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub bold: Vec<PathBuf>,
    /// Every run of a BIDS-like dataset, fMRIPrep derivatives or region time series (and
    /// its mask.nii.gz, the group mask of its runs' brain masks, or its regions.tsv, if the
    /// store has none).
    #[arg(long)]
    pub bids: Option<PathBuf>,
    /// With --bids: the space of its derivatives (`MNI152NLin2009cAsym[:res-2]`, or
    /// `regions[:<atlas>]`).
    #[arg(long, requires = "bids")]
    pub space: Option<String>,
    /// With --bids and no mask: keep voxels in more than this fraction of the runs' brain
    /// masks (nilearn's intersect_masks).
    #[arg(long, default_value_t = cortexflow::stages::group_mask::DEFAULT_THRESHOLD, requires = "bids")]
    pub mask_threshold: f64,
    /// Analysis mask, if the store has none yet.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cluster = a.cluster.cluster()?.running("ingest");
    let stimuli = match (a.stimulus.is_empty(), a.tr, a.n_scans.is_empty()) {
        (true, _, _) => None,
        (false, Some(tr), false) if !(tr.is_finite() && tr > 0.0) => {
            // Said before the store is opened, so a typo changes nothing in it.
            anyhow::bail!("--tr {tr}: a positive number of seconds")
        }
        (false, Some(_), false) if a.n_scans.iter().any(|&n| n < 2) => {
            anyhow::bail!("--n-scans {:?}: at least 2 scans per run", a.n_scans)
        }
        (false, Some(tr), false) => Some(StimulusSpec {
            files: a.stimulus,
            tr,
            scans: a.n_scans,
            names: Vec::new(),
        }),
        _ => anyhow::bail!("--stimulus needs --tr and --n-scans (the fMRI clock of those runs)"),
    };
    let req = IngestRequest {
        responses: a.responses,
        neurons: a.neurons,
        stimuli,
        bold: a.bold,
        bids: a.bids,
        space: a.space,
        mask: a.mask,
        mask_threshold: a.mask_threshold,
    };
    super::print_lines(update::ingest(&cluster, &a.store, req)?);
    Ok(())
}
