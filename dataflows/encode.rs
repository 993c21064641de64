//! `cortexflow encode`: voxel-wise encoding models of each subject's BOLD, the atoms as
//! fixed regressors.

use std::path::PathBuf;

use cortexflow::stages::encode;
use cortexflow::store::recipe::{EncodingSection, EstimatorSetting, GroupSection};

fn defaults() -> EncodingSection {
    EncodingSection::default()
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Atoms files (from `cortexflow basis`), one per run in run order, comma-separated.
    #[arg(long, required = true, value_delimiter = ',')]
    pub regressors: Vec<PathBuf>,
    /// BOLD runs (4D NIfTI), all subjects, comma-separated or repeated.
    #[arg(long, required = true, value_delimiter = ',')]
    pub bold: Vec<PathBuf>,
    /// Analysis mask on the BOLD grid.
    #[arg(long)]
    pub mask: PathBuf,
    /// Confounds TSVs (numeric columns with a header), one per BOLD run in the same order.
    #[arg(long, value_delimiter = ',')]
    pub confounds: Vec<PathBuf>,
    /// Ridge penalties, comma-separated [default: 10 values log-spaced from 1e-2 to 1e5].
    #[arg(long, value_delimiter = ',')]
    pub alphas: Vec<f64>,
    /// High-pass cut-off of the cosine drift basis, in Hz (0 for an intercept only).
    #[arg(long, default_value_t = defaults().high_pass)]
    pub high_pass: f64,
    /// z-score each voxel's BOLD within each run (`--zscore false` to keep its units).
    #[arg(long, default_value_t = defaults().zscore_bold, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub zscore: bool,
    /// OLS only: skip the cross-validated ridge (needed with a single run).
    #[arg(long)]
    pub no_cv: bool,
    /// Smooth each BOLD volume with a Gaussian of this FWHM in mm (as nilearn's
    /// smooth_img) before masking; none by default.
    #[arg(long)]
    pub smoothing_fwhm: Option<f64>,
    /// The group estimator whose β is also written (sub-*/beta_<estimator>.nii.gz, for
    /// `group --estimator`): `marginal` (each atom alone with the nuisance), `ridge` (at each
    /// voxel's cross-validated α) or `ols` (beta.nii.gz only).
    #[arg(long, default_value_t = GroupSection::default().estimator)]
    pub estimator: EstimatorSetting,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

impl Args {
    /// The settings, checked as a recipe's are.
    pub fn options(&self) -> anyhow::Result<encode::EncodeOptions> {
        let section = EncodingSection {
            alphas: self.alphas.clone(),
            high_pass: self.high_pass,
            zscore_bold: self.zscore,
            cv: !self.no_cv,
            smoothing_fwhm: self.smoothing_fwhm,
        };
        section.check()?;
        if self.estimator == EstimatorSetting::Ridge && self.no_cv {
            anyhow::bail!("--estimator ridge takes the cross-validated ridge's β: drop --no-cv");
        }
        Ok(encode::EncodeOptions {
            estimator: self.estimator.into(),
            alphas: section.alpha_grid(),
            high_pass: (section.high_pass > 0.0).then_some(section.high_pass),
            zscore: section.zscore_bold,
            cv: section.cv,
            smoothing_fwhm: section.smoothing_fwhm,
        })
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (files, lines) = cortexflow::engine::encode::run(
        &a.regressors,
        &a.bold,
        &a.mask,
        &a.confounds,
        &a.options()?,
        &a.out,
    )?;
    lines.iter().for_each(|l| say!("{l}"));
    files.iter().for_each(|f| say!("wrote {}", f.display()));
    Ok(())
}
