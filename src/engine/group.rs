//! `cortexflow group` through the engine: the subjects' β maps of an `encode` output enter
//! the encoding dataflow's group operator exactly as a store's stored subjects do, and the
//! joined test is thresholded and written by the same stage. One fitting path: the command
//! and the store cannot drift apart.

use std::path::{Path, PathBuf};

use crate::engine::encoding::{run_once, Plan};
use crate::error::{bail, Result};
use crate::io::nifti;
use crate::stages::group::{self, GroupSummary};
use crate::stages::join;
use crate::store::recipe::GroupSection;
use crate::store::Recipe;

/// The group maps of the subjects under `encode_dir` (sub-*/beta.nii.gz, or the β map of
/// the section's estimator) on `mask_path`.
pub fn run(
    encode_dir: &Path,
    mask_path: &Path,
    section: &GroupSection,
    out: &Path,
) -> Result<GroupSummary> {
    let opt = &section.options();
    let maps = group::subject_maps(encode_dir, opt.estimator)?;
    if maps.len() < 2 {
        bail!(
            "{}: a group test needs at least 2 subjects, found {}",
            encode_dir.display(),
            maps.len()
        );
    }
    let mask = nifti::read_mask(mask_path)?;
    if mask.is_empty() {
        bail!("{}: the mask has no voxels", mask_path.display());
    }
    same_atoms(&maps)?;
    let plan = Plan {
        dir: encode_dir.to_path_buf(),
        recipe: Recipe {
            group: section.clone(),
            ..Recipe::default()
        },
        mask: Some(mask.clone()),
        regions: None,
        jobs: Vec::new(),
        stored: maps.clone(),
        sums: None,
        bar: indicatif::ProgressBar::hidden(),

        held: None,
    };
    let (_, blocks) = run_once(plan)?;
    let (n, test, halves) = join::join_group(blocks, mask.len())?;
    let labels: Vec<String> = maps.iter().map(|(l, _)| l.clone()).collect();
    if n != labels.len() {
        bail!("the group test has {n} subjects, the folder {}", labels.len());
    }
    // Halves (subjects alternately in label order) need two subjects each.
    let halves = (n >= 4).then_some(&halves);
    let thresholded = group::threshold(&mask, &test, halves, opt);
    group::write_results(&mask, mask_path, &labels, &test, &thresholded, opt, out)
}

/// Every subject's β map has the first one's number of atoms (its volumes).
fn same_atoms(maps: &[(String, PathBuf)]) -> Result<()> {
    let atoms = nifti::read_header(&maps[0].1)?.n_vols;
    for (_, path) in &maps[1..] {
        let n = nifti::read_header(path)?.n_vols;
        if n != atoms {
            bail!(
                "{}: {n} volumes, the first subject has {atoms} atoms",
                path.display()
            );
        }
    }
    Ok(())
}
