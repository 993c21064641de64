//! `cortexflow group`: random-effects group maps of every atom from the subjects' β maps.

use std::path::PathBuf;

use cortexflow::store::recipe::{EstimatorSetting, GroupSection};

fn defaults() -> GroupSection {
    GroupSection::default()
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory of `cortexflow encode` (holding sub-*/beta.nii.gz, or the
    /// --estimator's sub-*/beta_<estimator>.nii.gz).
    #[arg(long)]
    pub encode: PathBuf,
    /// The subjects' β to test: `ols` (sub-*/beta.nii.gz), or the `ridge` or `marginal` β that
    /// `encode --estimator` wrote (sub-*/beta_<estimator>.nii.gz).
    #[arg(long, default_value_t = defaults().estimator)]
    pub estimator: EstimatorSetting,
    /// The analysis mask given to `encode`.
    #[arg(long)]
    pub mask: PathBuf,
    /// FDR level (Benjamini–Hochberg, per atom map), in (0, 1).
    #[arg(long, default_value_t = defaults().fdr, conflicts_with_all = ["z_cut", "permutations"])]
    pub fdr: f64,
    /// Threshold |z| ≥ this value instead of FDR.
    #[arg(long)]
    pub z_cut: Option<f64>,
    /// Threshold by sign-flip permutations of the subjects' maps instead: this many, with
    /// the family-wise error of the maximum |t| at --fwer (nilearn's non_parametric_inference).
    #[arg(long, default_value_t = defaults().permutations, conflicts_with = "z_cut")]
    pub permutations: usize,
    /// Family-wise error level of --permutations.
    #[arg(long, default_value_t = defaults().fwer)]
    pub fwer: f64,
    /// Seed of the sign flips.
    #[arg(long, default_value_t = defaults().permutation_seed)]
    pub permutation_seed: u64,
    /// Drop significant clusters smaller than this many voxels (0 keeps all).
    #[arg(long, default_value_t = defaults().min_cluster)]
    pub min_cluster: usize,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

impl Args {
    /// The settings, checked as a recipe's are.
    pub fn section(&self) -> anyhow::Result<GroupSection> {
        let section = GroupSection {
            estimator: self.estimator,
            fdr: self.fdr,
            z_cut: self.z_cut,
            min_cluster: self.min_cluster,
            permutations: self.permutations,
            fwer: self.fwer,
            permutation_seed: self.permutation_seed,
        };
        section.check()?;
        Ok(section)
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let section = a.section()?;
    let summary = cortexflow::engine::group::run(&a.encode, &a.mask, &section, &a.out)?;
    summary.lines().iter().for_each(|l| say!("{l}"));
    summary.files.iter().for_each(|f| say!("wrote {}", f.display()));
    Ok(())
}
