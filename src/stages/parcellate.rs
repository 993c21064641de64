//! `cortexflow parcellate`: each BOLD run reduced to region time series by a label image
//! (an atlas or parcellation), written as `<run>_timeseries.tsv` (scans × regions, a header
//! of region names; under `sub-S/func/` for BIDS-named runs, with the TR in a sidecar
//! `.json`, so the output is a dataset `run` reads), as nilearn's `NiftiLabelsMasker(strategy="mean")` with its default
//! `resampling_target="data"`: the labels are resampled onto each run's grid by nearest
//! neighbour, and labels that no voxel carries after that are left out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{bail, Result};
use crate::io::atomic::write_file_atomically;
use crate::io::nifti::{self, Mask};
use crate::kernels::parcels::Regions;

/// The largest label read exactly (2²⁴, float32's last exact whole number run).
const MAX_LABEL: f32 = 16_777_216.0;

/// What one run became.
#[derive(Debug, Clone)]
pub struct Parcellated {
    pub path: PathBuf,
    pub scans: usize,
    pub regions: usize,
}

/// The labels of a label image on `grid`, checked: whole non-negative numbers.
fn labels_on_grid(labels: &Path, image: &nifti::Image, grid: &nifti::Grid) -> Result<(Mask, Vec<u32>)> {
    let volume = nifti::labels_on(image, grid);
    // Labels pass through float32, exact for whole numbers up to 2²⁴ only: beyond it two
    // labels could merge.
    if let Some(bad) = volume.iter().find(|&&v| !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= MAX_LABEL)) {
        bail!("{}: holds the value {bad}; a label image holds whole numbers from 0 (the background) to {MAX_LABEL}", labels.display());
    }
    let mask = Mask::from_volume(grid, volume.view(), |v| v > 0.0);
    let per_voxel = mask.ijk().map(|[i, j, k]| volume[[i, j, k]] as u32).collect();
    Ok((mask, per_voxel))
}

/// The output name of a run: its BIDS stem without `_bold` (and a derivative's
/// `desc-preproc`), then `_timeseries.tsv`.
pub fn timeseries_name(bold: &Path) -> String {
    let name = bold.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name
        .strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))
        .unwrap_or(&name);
    let stem = stem.strip_suffix("_bold").unwrap_or(stem);
    let stem = stem.strip_suffix("_desc-preproc").unwrap_or(stem);
    format!("{stem}_timeseries.tsv")
}

/// Where a run's table goes under the output folder: `sub-<S>/[ses-<X>/]func` for a
/// BIDS-named run (so the output is a dataset of region time series), else the folder itself.
fn bids_folder(bold: &Path) -> PathBuf {
    match crate::io::bids::parse_bold_name(bold) {
        Some(run) => {
            let ses = run.session.map(|s| PathBuf::from(format!("ses-{s}"))).unwrap_or_default();
            PathBuf::from(format!("sub-{}", run.subject)).join(ses).join("func")
        }
        None => PathBuf::new(),
    }
}

/// Writes each run's region time series under `out` (with its TR in a JSON sidecar); `names` maps labels to region names
/// (`region-<label>` for a label it does not name).
pub fn run(bold: &[PathBuf], labels: &Path, names: &BTreeMap<u32, String>, out: &Path) -> Result<Vec<Parcellated>> {
    let image = nifti::read_image(labels)?;
    if image.data.dim().3 != 1 {
        bail!("{}: {} volumes; a label image is 3-D", labels.display(), image.data.dim().3);
    }
    // Names become column headers: one line of tab-separated, distinct names.
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for (&label, name) in names {
        if name.is_empty() || name.contains(['\t', '\n', '\r']) {
            bail!("--names: label {label} is named {name:?}; a region name is not empty and holds no tab or line break (it becomes a column name)");
        }
        if let Some(other) = seen.insert(name, label) {
            bail!("--names: labels {other} and {label} are both named '{name}'; region names must differ (they become column names)");
        }
    }
    let mut names_out = std::collections::BTreeMap::new();
    for path in bold {
        if let Some(other) = names_out.insert(timeseries_name(path), path) {
            bail!(
                "{} and {} would both be written as {}: give runs with distinct names",
                other.display(),
                path.display(),
                timeseries_name(path)
            );
        }
    }
    let mut done = Vec::new();
    for path in bold {
        let header = nifti::read_header(path)?;
        let (mask, per_voxel) = labels_on_grid(labels, &image, &header.grid)?;
        if mask.is_empty() {
            bail!("{}: no voxel of {} carries a label on this run's grid", labels.display(), path.display());
        }
        let y = nifti::read_bold(path, Some((labels, &mask)))?.data;
        let regions = Regions::new(&per_voxel);
        let means = regions.means(y.view());
        let dest = out.join(bids_folder(path)).join(timeseries_name(path));
        let header_row: Vec<String> = regions
            .labels
            .iter()
            .map(|l| names.get(l).cloned().unwrap_or_else(|| format!("region-{l}")))
            .collect();
        write_file_atomically(&dest, |w| {
            writeln!(w, "{}", header_row.join("\t"))?;
            for row in means.rows() {
                let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
                writeln!(w, "{}", cells.join("\t"))?;
            }
            Ok(())
        })?;
        // The clock beside it, as BIDS derivatives give it, for `run` and `ingest`.
        if let Ok(tr) = header.bold_tr() {
            let json = crate::io::regions::sidecar(&dest);
            write_file_atomically(&json, |w| writeln!(w, "{{\n  \"RepetitionTime\": {tr}\n}}"))?;
        }
        done.push(Parcellated { path: dest, scans: means.nrows(), regions: means.ncols() });
    }
    Ok(done)
}
