//! `cortexflow run`: the whole analysis of a dataset into a new store; with several
//! recipes, a store a recipe (model) from one pass over the BOLD, and their comparison.

use std::path::{Path, PathBuf};

use cortexflow::engine::{cleaned, many, update};
use cortexflow::report::compare::write_comparison;
use cortexflow::stages::ceiling;
use cortexflow::store::Recipe;

use super::cluster_args::ClusterArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe file; several to compare models on the dataset: a store each, named by the
    /// recipe's file stem under --out, each BOLD run read once for all, and
    /// OUT/compare/ (as `cortexflow compare`). Their cleaning settings (encoding.high_pass,
    /// zscore_bold, smoothing_fwhm, [confounds]) must agree.
    #[arg(required = true)]
    pub recipes: Vec<PathBuf>,
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
    /// Store directory (with several recipes: the folder of their stores).
    #[arg(long)]
    pub out: PathBuf,
    /// Skip the noise ceiling (`cortexflow ceiling`), which reads every run's BOLD again.
    #[arg(long)]
    pub no_ceiling: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cluster = a.cluster.cluster()?.running("run");
    let req = update::RunRequest {
        data: a.data.clone(),
        space: a.space.clone(),
        responses: a.responses.clone(),
        mask_threshold: a.mask_threshold,
    };
    if !cluster.reads_every_run() && a.recipes.len() > 1 {
        anyhow::bail!("--local-inputs takes one recipe: run the models one at a time");
    }
    if let [one] = a.recipes.as_slice() {
        let recipe = Recipe::load(one)?;
        let keeping = keep_cleaned(&a, &cluster, &a.out);
        super::print_lines(update::run_all(&recipe, &req, &a.out, &cluster)?);
        ceiling_of(&a, &cluster, std::slice::from_ref(&a.out))?;
        drop(keeping);
        reads_said();
        return Ok(());
    }
    let recipes = a
        .recipes
        .iter()
        .map(|p| Ok((stem(p)?, Recipe::load(p)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let keeping = keep_cleaned(&a, &cluster, &a.out.join(&recipes[0].0));
    let done = many::run_many(&recipes, &req, &a.out, &cluster)?;
    super::print_lines(done.lines);
    ceiling_of(&a, &cluster, &done.stores)?;
    drop(keeping);
    if cluster.is_writer() {
        let compare = a.out.join(many::COMPARE);
        std::fs::create_dir_all(&compare)?;
        let (files, table) = write_comparison(&done.stores, &compare)?;
        super::say_text(&table);
        files.iter().for_each(|f| say!("wrote {}", f.display()));
    }
    reads_said();
    Ok(())
}

/// The BOLD runs this process read (to reduce them and for the noise ceiling), in the log:
/// what `benches/many_models.rs` counts.
fn reads_said() {
    tracing::info!(bold_reads = cortexflow::engine::encoding::bold_reads(), "BOLD runs read by this process");
}

/// The writer keeps the runs it cleans for the noise ceiling (in the store its reduce pass
/// names first: the only one, or the first recipe's), unless --no-ceiling.
fn keep_cleaned(a: &Args, cluster: &cortexflow::engine::cluster::Cluster, store: &Path) -> Option<cleaned::Keeping> {
    (cluster.is_writer() && !a.no_ceiling && cluster.reads_every_run()).then(|| cleaned::keep_for_ceiling(store)).flatten()
}

/// The noise ceiling of the stores (one read of each run for all), unless --no-ceiling.
fn ceiling_of(a: &Args, cluster: &cortexflow::engine::cluster::Cluster, stores: &[PathBuf]) -> anyhow::Result<()> {
    if cluster.is_writer() && !cluster.reads_every_run() && !a.no_ceiling {
        say!("noise ceiling: not computed (--local-inputs: it correlates every run, and the runs are on their processes' disks; `cortexflow ceiling STORE` where all are readable)");
        return Ok(());
    }
    if cluster.is_writer() && !a.no_ceiling {
        let what = match stores.len() {
            1 => "the store is complete, but its noise ceiling failed",
            _ => "the stores are complete, but their noise ceiling failed",
        };
        let lines = ceiling::run_shared(stores, None).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        super::print_lines(lines);
    }
    Ok(())
}

/// A recipe's name: its file stem, which names its store under --out.
fn stem(path: &Path) -> anyhow::Result<String> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("{}: a recipe file needs a name (its stem names its store)", path.display()))
}
