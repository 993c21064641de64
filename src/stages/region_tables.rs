//! The tables of a store of region time series: its subject and group maps (one voxel per
//! region, see [`crate::io::regions`]) read back as one row per region and atom, with the
//! region's name and network, so that region results are read as tables, not as images.

use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::error::Result;
use crate::io::nifti::{self, Mask};
use crate::io::parquet::{write_table, Column};
use crate::io::regions::Regions;

/// The maps `names` of `dir` on `mask`: each volumes × regions.
fn maps(dir: &Path, mask: &Mask, names: &[&str]) -> Result<Vec<Array2<f64>>> {
    names
        .iter()
        .map(|n| Ok(mask.rows(&nifti::read_image(&dir.join(format!("{n}.nii.gz")))?)))
        .collect()
}

/// Rows of every (atom, region) pair, atoms outer: the first columns of both tables.
fn pairs(regions: &Regions, atoms: usize) -> (Vec<u32>, Vec<String>, Vec<String>) {
    let r = regions.names.len();
    let atom = (0..atoms * r).map(|i| (i / r) as u32).collect();
    let name = (0..atoms * r).map(|i| regions.names[i % r].clone()).collect();
    let network = (0..atoms * r).map(|i| regions.networks[i % r].clone()).collect();
    (atom, name, network)
}

/// Every (atom, region) value of a volumes × regions map, in [`pairs`] order.
fn flat(map: &Array2<f64>) -> Column {
    Column::F32(map.iter().map(|&v| v as f32).collect())
}

/// `region_fits.parquet` in a subject's folder, from its maps there.
pub fn write_subject(dir: &Path, subject: &str, regions: &Regions, mask: &Mask) -> Result<PathBuf> {
    let [beta, t, z, cv_r] = <[_; 4]>::try_from(maps(dir, mask, &["beta", "t", "z", "cv_r"])?).expect("four maps");
    let (atom, region, network) = pairs(regions, beta.nrows());
    let rows = atom.len();
    let cv_r: Vec<f32> = (0..rows).map(|i| cv_r[[0, i % regions.names.len()]] as f32).collect();
    let path = dir.join("region_fits.parquet");
    write_table(
        &path,
        "region_fits",
        None,
        vec![
            Column::Utf8(vec![subject.to_string(); rows]),
            Column::Utf8(region),
            Column::Utf8(network),
            Column::U32(atom),
            flat(&beta),
            flat(&t),
            flat(&z),
            Column::F32(cv_r),
        ],
    )?;
    Ok(path)
}

/// `region_group.parquet` in the group folder, from the group maps there.
pub fn write_group(dir: &Path, regions: &Regions, mask: &Mask) -> Result<PathBuf> {
    let [mean, t, z, p, sig] =
        <[_; 5]>::try_from(maps(dir, mask, &["mean_beta", "t", "z", "p", "thresholded_z"])?).expect("five maps");
    let (atom, region, network) = pairs(regions, mean.nrows());
    let path = dir.join("region_group.parquet");
    write_table(
        &path,
        "region_group",
        None,
        vec![
            Column::U32(atom),
            Column::Utf8(region),
            Column::Utf8(network),
            flat(&mean),
            flat(&t),
            flat(&z),
            flat(&p),
            Column::Bool(sig.iter().map(|&v| v != 0.0).collect()),
        ],
    )?;
    Ok(path)
}
