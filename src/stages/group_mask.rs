//! `cortexflow intersect-masks`: the group mask of subjects' brain masks (e.g. fMRIPrep's
//! `desc-brain_mask`), as nilearn's `intersect_masks` makes it (see
//! [`crate::kernels::masks`]), checked as nilearn checks them: each mask 3-D, of at most
//! two values one of which is 0 (NaN counts as 0), all on one grid.

use std::path::Path;

use ndarray::Array4;

use crate::error::{bail, Result};
use crate::io::nifti;
use crate::kernels::masks::intersect;

/// nilearn's `intersect_masks` default: a voxel in more than half of the masks.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// What the group mask holds.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMask {
    pub masks: usize,
    pub voxels: usize,
    /// Voxels in each input mask.
    pub per_mask: Vec<usize>,
}

/// A mask image as booleans (NIfTI order), refusing values nilearn would not read as a mask.
fn read_binary(path: &Path) -> Result<(nifti::Grid, Vec<bool>)> {
    let img = nifti::read_image(path)?;
    if img.data.dim().3 != 1 {
        bail!("{}: {} volumes; a brain mask is 3-D", path.display(), img.data.dim().3);
    }
    let values: Vec<f32> = img.data.t().iter().map(|&v| if v.is_nan() { 0.0 } else { v }).collect();
    let mut distinct: Vec<f32> = Vec::new();
    for &v in &values {
        if !distinct.contains(&v) {
            distinct.push(v);
            if distinct.len() > 2 {
                bail!(
                    "{}: holds the values {:?} and more; a mask holds 0 and one other value",
                    path.display(),
                    distinct
                );
            }
        }
    }
    if distinct.len() == 2 && !distinct.contains(&0.0) {
        bail!("{}: holds {distinct:?}; a mask's background must be 0", path.display());
    }
    Ok((img.header.grid, values.iter().map(|&v| v != 0.0).collect()))
}

/// Writes the group mask of `masks` to `out`: voxels in more than `threshold` of them
/// (0: union, 1: intersection), the largest connected component when `connected`.
pub fn run(masks: &[&Path], threshold: f64, connected: bool, out: &Path) -> Result<GroupMask> {
    if !(0.0..=1.0).contains(&threshold) {
        bail!("--threshold {threshold}: a fraction of the masks, in [0, 1]");
    }
    let Some(first) = masks.first() else {
        bail!("give at least one mask");
    };
    let mut grid = None;
    let mut read = Vec::new();
    for path in masks {
        let (g, m) = read_binary(path)?;
        match &grid {
            None => grid = Some(g),
            Some(ref_grid) => ref_grid.ensure_same(first, &g, path)?,
        }
        read.push(m);
    }
    let grid = grid.expect("one mask at least");
    let group = intersect(&read, grid.shape, threshold, connected);
    let voxels = group.iter().filter(|&&g| g).count();
    if voxels == 0 {
        bail!("no voxel is in more than {threshold} of the {} masks: the group mask would be empty", masks.len());
    }
    let [nx, ny, nz] = grid.shape;
    let data = Array4::from_shape_fn((nx, ny, nz, 1), |(x, y, z, _)| {
        if group[x + nx * (y + ny * z)] { 1.0 } else { 0.0 }
    });
    nifti::write_map(out, &grid, &data, None)?;
    Ok(GroupMask {
        masks: masks.len(),
        voxels,
        per_mask: read.iter().map(|m| m.iter().filter(|&&b| b).count()).collect(),
    })
}
