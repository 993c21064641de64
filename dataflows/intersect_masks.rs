//! `cortexflow intersect-masks`: a group mask from subjects' brain masks.

use std::path::PathBuf;

use cortexflow::stages::group_mask;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Brain masks (3-D, on one grid), comma-separated.
    #[arg(long, required = true, value_delimiter = ',')]
    pub masks: Vec<PathBuf>,
    /// Keep a voxel in more than this fraction of the masks (0: union, 1: intersection).
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// Keep every component, not only the largest connected one.
    #[arg(long)]
    pub all_components: bool,
    /// The group mask to write (.nii.gz).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let masks: Vec<&std::path::Path> = a.masks.iter().map(PathBuf::as_path).collect();
    let g = group_mask::run(&masks, a.threshold, !a.all_components, &a.out)?;
    say!(
        "{}: {} voxels in more than {} of {} masks (each held {:?})",
        a.out.display(),
        g.voxels,
        a.threshold,
        g.masks,
        g.per_mask
    );
    Ok(())
}
