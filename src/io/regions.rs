//! Region time series: a run given as a table of scans × named regions (BIDS derivatives'
//! `…_timeseries.tsv`, or `.csv`, or `.parquet`; what `cortexflow parcellate`, nilearn's maskers and
//! XCP-D write) with its clock in the sidecar `…_timeseries.json` (`RepetitionTime` in
//! seconds, or `SamplingFrequency` in Hz), and a dataset's `regions.tsv` naming each
//! region's network (columns `region` and `network`).
//!
//! In a store the regions stand where voxels stand: region i is voxel 2i of a line of
//! 2R − 1 voxels 1 mm apart, so no two regions are neighbours. Statistics, fits, the group
//! test and its maps apply unchanged, a cluster is one region, and the networks of
//! `regions.tsv` become a label atlas on that line for the mapping.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ndarray::{Array2, Array4};

use super::affine::Affine;
use super::nifti::{Grid, Mask, PLAUSIBLE_TR_S};
use super::table::{self, NumericTable};
use crate::error::{Error, Result};

/// The most regions a dataset may name (fine parcellations have a few thousand).
pub const MAX_REGIONS: usize = 100_000;
/// The largest region table read (a float in text is ~10 bytes: 128 MiB holds 1.3·10⁷
/// values, e.g. 1,000 regions × 13,000 scans; parsed, at most 1 GiB).
const MAX_RUN_BYTES: u64 = 128 << 20;
const MAX_LIST_BYTES: u64 = 16 << 20;

/// The name of a region dataset's region → network table, at its root.
pub const REGIONS_FILE: &str = "regions.tsv";

/// The region list of a dataset's runs in `space`: for `regions:<A>`, `atlas-<A>_regions.tsv`
/// when there is one (a dataset parcellated by several atlases), else `regions.tsv`.
pub fn list_for(root: &Path, space: Option<&str>) -> Option<PathBuf> {
    let atlas = space.and_then(|s| s.strip_prefix("regions:"));
    let own = atlas.map(|a| root.join(format!("atlas-{a}_{REGIONS_FILE}")));
    own.into_iter().chain([root.join(REGIONS_FILE)]).find(|p| p.is_file())
}

/// The name endings of a region table.
pub const SUFFIXES: [&str; 3] = ["_timeseries.tsv", "_timeseries.csv", "_timeseries.parquet"];

/// Whether `path` names a run of region time series: `…_timeseries.tsv`, `.csv` or
/// `.parquet`, other than fMRIPrep's confounds table (`…_desc-confounds_timeseries.tsv`).
pub fn is_region_run(path: &Path) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return false;
    };
    SUFFIXES.iter().any(|s| name.ends_with(s)) && !name.contains("desc-confounds_")
}

/// The regions of a dataset, in the order of its `regions.tsv` (the order of the store's
/// maps and tables), and the network each belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Regions {
    pub names: Vec<String>,
    pub networks: Vec<String>,
}

impl Regions {
    /// Reads a `regions.tsv`: a header naming `region` and `network` columns (others are
    /// ignored), then one row per region; names unique and not empty.
    pub fn read(path: &Path) -> Result<Regions> {
        let bytes = super::regular_file(path)?;
        if bytes > MAX_LIST_BYTES {
            return Err(Error::format(path, format!("{bytes} bytes: larger than a region list may be (at most {MAX_LIST_BYTES})")));
        }
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(b'\t')
            .from_path(path)
            .map_err(|e| Error::format(path, format!("cannot read as a TSV table: {e}")))?;
        let header = rdr.headers().map_err(|e| Error::format(path, format!("no header row: {e}")))?.clone();
        let col = |name: &str| {
            header.iter().position(|h| h.trim().eq_ignore_ascii_case(name)).ok_or_else(|| {
                Error::format(path, format!("no '{name}' column (the header has {:?}): a region list names each region and its network", header.iter().collect::<Vec<_>>()))
            })
        };
        let (rc, nc) = (col("region")?, col("network")?);
        let (mut names, mut networks, mut seen) = (Vec::new(), Vec::new(), BTreeSet::new());
        for (i, rec) in rdr.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| Error::format(path, format!("line {line}: {e}")))?;
            let (region, network) = (rec.get(rc).unwrap_or("").trim(), rec.get(nc).unwrap_or("").trim());
            if region.is_empty() || network.is_empty() {
                return Err(Error::format(path, format!("line {line}: a region and its network must both be named")));
            }
            if !seen.insert(region.to_string()) {
                return Err(Error::format(path, format!("line {line}: region '{region}' is listed twice")));
            }
            if names.len() == MAX_REGIONS {
                return Err(Error::format(path, format!("more than {MAX_REGIONS} regions")));
            }
            names.push(region.to_string());
            networks.push(network.to_string());
        }
        if names.is_empty() {
            return Err(Error::format(path, "lists no region"));
        }
        Ok(Regions { names, networks })
    }

    /// Writes the list as read (`region`, `network`), atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        super::atomic::write_file_atomically(path, |w| {
            writeln!(w, "region\tnetwork")?;
            for (r, n) in self.names.iter().zip(&self.networks) {
                writeln!(w, "{r}\t{n}")?;
            }
            Ok(())
        })
    }

    /// The line the regions stand on: 2R − 1 voxels 1 mm apart, region i at voxel 2i.
    pub fn grid(&self) -> Grid {
        let eye = Affine([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]);
        Grid::with_affine([2 * self.names.len() - 1, 1, 1], eye)
    }

    /// `value(i)` at region i's voxel, 0 between regions.
    fn volume(&self, value: impl Fn(usize) -> f32) -> Array4<f32> {
        Array4::from_shape_fn((2 * self.names.len() - 1, 1, 1, 1), |(x, ..)| if x % 2 == 0 { value(x / 2) } else { 0.0 })
    }

    /// The regions as a mask image on [`grid`](Self::grid).
    pub fn mask_volume(&self) -> Array4<f32> {
        self.volume(|_| 1.0)
    }

    /// The regions as a mask (mask index i = region i).
    pub fn mask(&self) -> Mask {
        let grid = self.grid();
        Mask::from_volume(&grid, self.mask_volume().index_axis(ndarray::Axis(3), 0), |v| v != 0.0)
    }

    /// The networks as a label atlas on [`grid`](Self::grid): label n (networks in name
    /// order, from 1) at each region of network n; with its `label,name` CSV.
    pub fn network_atlas(&self) -> (Array4<f32>, String) {
        let labels: BTreeMap<&str, usize> = self
            .networks
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, i + 1))
            .collect();
        let image = self.volume(|i| labels[self.networks[i].as_str()] as f32);
        let csv = std::iter::once("label,name".to_string())
            .chain(labels.iter().map(|(n, l)| format!("{l},{n}")))
            .collect::<Vec<_>>()
            .join("\n");
        (image, csv + "\n")
    }
}

/// Recipe settings that mean nothing for regions are refused before anything is written:
/// smoothing (regions have no space to smooth in) and a cluster extent above one region.
pub fn check_recipe(recipe: &crate::store::Recipe) -> Result<()> {
    if let Some(fwhm) = recipe.encoding.smoothing_fwhm {
        return Err(Error::Invalid(format!(
            "encoding.smoothing_fwhm = {fwhm}: region time series have no space to smooth in; analyse regions with a recipe without it (dataflows/regions.toml)"
        )));
    }
    if recipe.group.min_cluster > 1 {
        return Err(Error::Invalid(format!(
            "group.min_cluster = {}: each region is a cluster of its own; set 0 for region time series",
            recipe.group.min_cluster
        )));
    }
    Ok(())
}

/// A run of region time series: its table and TR.
#[derive(Debug, Clone)]
pub struct RegionRun {
    pub table: NumericTable,
    pub tr: f64,
}

/// The sidecar holding a region table's clock: the same name ending in `.json`.
pub fn sidecar(path: &Path) -> PathBuf {
    path.with_extension("json")
}

/// Reads a region table (tab-separated; comma-separated for `.csv`; Parquet of numeric
/// columns for `.parquet`) and its TR.
pub fn read_run(path: &Path) -> Result<RegionRun> {
    let tr = read_tr(path)?;
    let what = "a region time-series table";
    let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    let table = match ext.as_str() {
        "parquet" => table::read_parquet(path, MAX_RUN_BYTES, MAX_REGIONS, what)?,
        "csv" => table::read(path, b',', MAX_RUN_BYTES, MAX_REGIONS, what)?,
        _ => table::read(path, b'\t', MAX_RUN_BYTES, MAX_REGIONS, what)?,
    };
    if table.rows < 2 {
        return Err(Error::format(path, format!("{} scans: a run needs at least 2", table.rows)));
    }
    Ok(RegionRun { table, tr })
}

/// The TR (s) from a region table's sidecar: `RepetitionTime`, or 1 / `SamplingFrequency`.
pub fn read_tr(path: &Path) -> Result<f64> {
    let json = sidecar(path);
    let missing = || {
        Error::format(path, format!("no TR: its sidecar {} must give RepetitionTime (s) or SamplingFrequency (Hz)", json.display()))
    };
    if !json.exists() {
        return Err(missing());
    }
    let bytes = super::regular_file(&json)?;
    if bytes > MAX_LIST_BYTES {
        return Err(Error::format(&json, format!("{bytes} bytes: too large for a sidecar")));
    }
    let text = std::fs::read_to_string(&json).map_err(|e| Error::io(&json, e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::format(&json, format!("not JSON: {e}")))?;
    if !value.is_object() {
        return Err(Error::format(&json, "not a JSON object of sidecar fields"));
    }
    let number = |key: &str| -> Result<Option<f64>> {
        value
            .get(key)
            .map(|v| v.as_f64().ok_or_else(|| Error::format(&json, format!("{key} is not a number"))))
            .transpose()
    };
    let tr = match (number("RepetitionTime")?, number("SamplingFrequency")?) {
        (Some(t), Some(f)) if (t * f - 1.0).abs() > 1e-6 => {
            return Err(Error::format(&json, format!("RepetitionTime {t} s and SamplingFrequency {f} Hz disagree (one is 1 / the other)")));
        }
        (Some(t), _) => t,
        (None, Some(f)) if f > 0.0 => 1.0 / f,
        (None, Some(f)) => return Err(Error::format(&json, format!("SamplingFrequency {f} Hz: must be positive"))),
        (None, None) => return Err(missing()),
    };
    if !(tr.is_finite() && PLAUSIBLE_TR_S.contains(&tr)) {
        return Err(Error::format(&json, format!("a TR of {tr} s is outside {PLAUSIBLE_TR_S:?} s")));
    }
    Ok(tr)
}

impl RegionRun {
    /// The run's values, scans × regions in the order of `regions`: the file must hold
    /// exactly the regions listed (in any order). Missing values stay NaN (the region is
    /// left out of this run's fit, as a non-finite voxel is).
    pub fn in_order(&self, regions: &Regions) -> Result<Array2<f32>> {
        let path = &self.table.path;
        let at: BTreeMap<&str, usize> = self.table.names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let absent: Vec<&str> = regions.names.iter().filter(|n| !at.contains_key(n.as_str())).map(String::as_str).collect();
        let listed: BTreeSet<&str> = regions.names.iter().map(String::as_str).collect();
        let extra: Vec<&str> = self.table.names.iter().filter(|n| !listed.contains(n.as_str())).map(String::as_str).collect();
        if !absent.is_empty() || !extra.is_empty() {
            let few = |v: &[&str]| v.iter().take(5).map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
            return Err(Error::format(
                path,
                format!(
                    "its regions differ from the store's region list (regions.tsv, {} regions): {} missing ({}), {} not listed ({})",
                    regions.names.len(),
                    absent.len(),
                    few(&absent),
                    extra.len(),
                    few(&extra)
                ),
            ));
        }
        let columns: Vec<&Vec<f64>> = regions.names.iter().map(|n| &self.table.columns[at[n.as_str()]]).collect();
        let gaps: Vec<&str> = regions
            .names
            .iter()
            .zip(&columns)
            .filter(|(_, c)| c.iter().any(|v| !v.is_finite()))
            .map(|(n, _)| n.as_str())
            .collect();
        if !gaps.is_empty() {
            // Said, not refused: a region with a gap is left out of this run, as a voxel is.
            tracing::warn!(
                "{}: {} region(s) with missing or non-finite values ({}{}) are left out of this run's fit, and so of its subject's",
                path.display(),
                gaps.len(),
                gaps.iter().take(5).map(|g| format!("'{g}'")).collect::<Vec<_>>().join(", "),
                if gaps.len() > 5 { ", …" } else { "" }
            );
        }
        Ok(Array2::from_shape_fn((self.table.rows, columns.len()), |(t, r)| columns[r][t] as f32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_atlas_may_have_its_own_list() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(list_for(root, Some("regions")), None);
        std::fs::write(root.join(REGIONS_FILE), "region\tnetwork\n").unwrap();
        std::fs::write(root.join("atlas-Gordon_regions.tsv"), "region\tnetwork\n").unwrap();
        assert_eq!(list_for(root, Some("regions:Gordon")), Some(root.join("atlas-Gordon_regions.tsv")));
        assert_eq!(list_for(root, Some("regions:Schaefer")), Some(root.join(REGIONS_FILE)));
        assert_eq!(list_for(root, Some("regions")), Some(root.join(REGIONS_FILE)));
    }

    #[test]
    fn regions_stand_apart_on_their_line() {
        let r = Regions { names: vec!["a".into(), "b".into(), "c".into()], networks: vec!["N2".into(), "N1".into(), "N2".into()] };
        let ijk: Vec<[usize; 3]> = r.mask().ijk().collect();
        assert_eq!(ijk, [[0, 0, 0], [2, 0, 0], [4, 0, 0]]);
        let (atlas, csv) = r.network_atlas();
        let labels: Vec<f32> = (0..5).map(|x| atlas[[x, 0, 0, 0]]).collect();
        assert_eq!(labels, [2.0, 0.0, 1.0, 0.0, 2.0]);
        assert_eq!(csv, "label,name\n1,N1\n2,N2\n");
    }
}
