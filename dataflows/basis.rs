//! `cortexflow basis`: K temporal atoms of the AN responses and the ANs' sparse codes.

use std::path::PathBuf;

use cortexflow::stages::basis;
use cortexflow::store::recipe::{BasisSection, LassoSetting, MethodSetting};

fn defaults() -> BasisSection {
    BasisSection::default()
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Responses files (one per story, as written by `cortexflow responses`), repeat the
    /// option or separate with commas.
    #[arg(long, required = true, value_delimiter = ',')]
    pub responses: Vec<PathBuf>,
    /// Basis method.
    #[arg(long, value_enum, default_value_t = defaults().method)]
    pub method: MethodSetting,
    /// Number of atoms K.
    #[arg(long, default_value_t = defaults().atoms)]
    pub atoms: usize,
    /// Sparsity penalty λ of ½‖x − D·a‖² + λ‖a‖₁ (samples have unit norm).
    #[arg(long, default_value_t = defaults().lambda)]
    pub lambda: f64,
    /// Lasso solver for the codes: coordinate descent or LARS (same solutions).
    #[arg(long, value_enum, default_value_t = defaults().lasso)]
    pub lasso: LassoSetting,
    /// Constrain codes to be non-negative.
    #[arg(long, default_value_t = defaults().positive)]
    pub positive: bool,
    /// Most passes over the ANs.
    #[arg(long, default_value_t = defaults().epochs)]
    pub epochs: usize,
    /// Stop when the mean objective of a pass changes by less than this fraction.
    #[arg(long, default_value_t = defaults().options().odl.tol)]
    pub tol: f64,
    /// ANs per mini-batch.
    #[arg(long, default_value_t = defaults().batch)]
    pub batch: usize,
    /// Random seed (initial atoms, sample order): the same seed gives the same basis.
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: u64,
    /// Instead of fitting, extend the atoms of the basis in --out to the stories of
    /// --responses with the codes held fixed (least squares; earlier stories untouched).
    #[arg(long)]
    pub extend: bool,
    /// Output directory (with --extend: the existing basis).
    #[arg(long)]
    pub out: PathBuf,
}

impl Args {
    /// The settings; the basis stage checks the recipe's settings before anything is
    /// written, saying them as options, and `--tol` (not a recipe setting) is checked here.
    pub fn options(&self) -> anyhow::Result<basis::BasisOptions> {
        let section = BasisSection {
            method: self.method,
            atoms: self.atoms,
            lambda: self.lambda,
            lasso: self.lasso,
            positive: self.positive,
            epochs: self.epochs,
            batch: self.batch,
            seed: self.seed,
        };
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            anyhow::bail!("--tol {}: a fraction ≥ 0", self.tol);
        }
        let mut opt = section.options();
        opt.odl.tol = self.tol;
        Ok(opt)
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let summary = if a.extend {
        basis::extend(&a.out, &a.responses)?
    } else {
        basis::run(&a.responses, &a.options()?, &a.out)?
    };
    summary.lines.iter().for_each(|l| say!("{l}"));
    for f in &summary.files {
        say!("wrote {}", f.display());
    }
    Ok(())
}
