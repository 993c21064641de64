//! `cortexflow group`: random-effects group maps of every atom from the subjects' β maps.

use std::path::PathBuf;

use cortexflow::store::recipe::GroupSection;

fn defaults() -> GroupSection {
    GroupSection::default()
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory of `cortexflow encode` (holding sub-*/beta.nii.gz).
    #[arg(long)]
    pub encode: PathBuf,
    /// The analysis mask given to `encode`.
    #[arg(long)]
    pub mask: PathBuf,
    /// FDR level (Benjamini–Hochberg, per atom map), in (0, 1).
    #[arg(long, default_value_t = defaults().fdr, conflicts_with = "z_cut")]
    pub fdr: f64,
    /// Threshold |z| ≥ this value instead of FDR.
    #[arg(long)]
    pub z_cut: Option<f64>,
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
            fdr: self.fdr,
            z_cut: self.z_cut,
            min_cluster: self.min_cluster,
        };
        section.check()?;
        Ok(section)
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let opt = a.section()?.options();
    let summary = cortexflow::engine::group::run(&a.encode, &a.mask, &opt, &a.out)?;
    summary.lines().iter().for_each(|l| println!("{l}"));
    summary.files.iter().for_each(|f| println!("wrote {}", f.display()));
    Ok(())
}
