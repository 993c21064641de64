//! `cortexflow run`: the whole analysis of a dataset into a new store.

use std::path::PathBuf;

use cortexflow::engine::update;
use cortexflow::stages::ceiling;
use cortexflow::store::Recipe;

use crate::cluster_args::ClusterArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe file.
    pub recipe: PathBuf,
    /// Dataset root: BIDS-like (sub-*/func/*_bold.nii.gz, as `simulate` writes), fMRIPrep
    /// derivatives (at the root or under derivatives/fmriprep), or region time series
    /// (sub-*/func/*_timeseries.tsv with a .json TR beside each, regions.tsv at the top).
    #[arg(long)]
    pub data: PathBuf,
    /// The space of fMRIPrep derivatives (`MNI152NLin2009cAsym`, `…:res-2`), or `regions`
    /// / `regions:<atlas>` for region time series, when the runs come in several.
    #[arg(long)]
    pub space: Option<String>,
    /// Folder of precomputed `responses` tables, one per story, with neurons.parquet beside
    /// the folder [default: the dataset's stimuli through the recipe's model; for a
    /// recipe without a model, a simulation's DATA/truth/responses].
    #[arg(long)]
    pub responses: Option<PathBuf>,
    /// Without DATA/mask.nii.gz: keep voxels in more than this fraction of the runs'
    /// brain masks (nilearn's intersect_masks).
    #[arg(long, default_value_t = cortexflow::stages::group_mask::DEFAULT_THRESHOLD)]
    pub mask_threshold: f64,
    /// Store directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Skip the noise ceiling (`cortexflow ceiling`), which reads every run's BOLD again.
    #[arg(long)]
    pub no_ceiling: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cluster = a.cluster.cluster()?;
    let recipe = Recipe::load(&a.recipe)?;
    let req = update::RunRequest {
        data: a.data,
        space: a.space,
        responses: a.responses,
        mask_threshold: a.mask_threshold,
    };
    crate::print_lines(update::run_all(&recipe, &req, &a.out, &cluster)?);
    if cluster.is_writer() && !a.no_ceiling {
        let lines = ceiling::run(&a.out, None)
            .map_err(|e| anyhow::anyhow!("the store is complete, but its noise ceiling failed: {e}"))?;
        crate::print_lines(lines);
    }
    Ok(())
}
