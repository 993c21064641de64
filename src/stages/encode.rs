//! The encoding stage's parts: the atoms as fixed regressors of voxel-wise models of each
//! subject's BOLD. A run is reduced to statistics against its design (atoms, confounds,
//! its cosine drift and intercept) with the nuisance columns projected out of atoms and
//! BOLD (Frisch–Waugh–Lovell); the fits (OLS β, t, z per atom; ridge with a per-voxel α
//! chosen by leave-one-run-out cross-validation) run in the encoding dataflow
//! (`engine::encoding`), and the maps and voxel_fits table are written here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{bail, Result};
use crate::io::nifti::{self, Mask};
use crate::io::parquet::{read_atoms, write_table, Column};
use crate::kernels::column_stats::{self, ColumnStats};
use crate::kernels::cv::RidgeCvFit;
use crate::kernels::design::{nuisance_basis, project_out, project_out_in_place};
use crate::kernels::estimators::Estimator;
use crate::kernels::glm::OlsFit;
use crate::kernels::ridge_stats::RunStats;
use crate::kernels::smooth::{radius, Gaussian3d, FWHM_OVER_SIGMA};
use ndarray::{s, Array1, Array2, Axis};



/// Settings of `encode`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeOptions {
    pub alphas: Vec<f64>,
    pub high_pass: Option<f64>,
    pub zscore: bool,
    pub cv: bool,
    /// Gaussian smoothing FWHM in mm, applied to each volume as it is read.
    pub smoothing_fwhm: Option<f64>,
    /// The group estimator whose β is written beside the OLS maps (`beta_<estimator>`).
    pub estimator: Estimator,
}

/// A BOLD run and its optional confounds file.
pub type RunFiles = (PathBuf, Option<PathBuf>);

/// One subject's fitted voxels: (subject, mask indices, alpha, cv_r, cv_r2).
pub type FittedVoxels = (String, Vec<usize>, Array1<f64>, Array1<f64>, Array1<f64>);

/// Runs of each subject: BOLD files (with their confounds) by subject label, in run order.
pub fn subjects(bold: &[PathBuf], confounds: &[PathBuf]) -> Result<BTreeMap<String, Vec<RunFiles>>> {
    if !confounds.is_empty() && confounds.len() != bold.len() {
        bail!("--confounds gives {} files for {} BOLD runs: give one per run, in the same order, or none", confounds.len(), bold.len());
    }
    let mut out: BTreeMap<String, Vec<RunFiles>> = BTreeMap::new();
    for (i, b) in bold.iter().enumerate() {
        let name = b
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(subject) = name.split('_').find_map(|e| e.strip_prefix("sub-")) else {
            bail!(
                "{}: no sub-<label> in the file name, so its subject is unknown (name BOLD runs sub-<S>_task-<T>_run-<R>_bold.nii.gz)",
                b.display()
            );
        };
        let subject = subject.to_string();
        out.entry(subject)
            .or_default()
            .push((b.clone(), confounds.get(i).cloned()));
    }
    Ok(out)
}

/// One run reduced to statistics: of the atoms and the BOLD with the run's nuisance columns
/// (drift, intercept, confounds) projected out of both (Frisch–Waugh–Lovell: the atoms'
/// OLS coefficients are those of the full design).
pub struct Reduced {
    pub stats: RunStats,
    /// Nuisance columns absorbed: the rank of the run's nuisance (collinear and negligible
    /// columns dropped).
    pub absorbed: usize,
    /// Voxels that are finite and not constant in this run.
    pub valid: Vec<bool>,
}

/// A run's masked BOLD, each volume first smoothed by a Gaussian of `fwhm` mm when given
/// (nilearn's `smooth_img`, see [`Gaussian3d`]).
pub fn read_smoothed<T: nifti::BoldValue>(path: &Path, mask: (&Path, &Mask), fwhm: Option<f64>) -> Result<nifti::MaskedBold<T>> {
    let Some(fwhm) = fwhm else {
        return nifti::read_bold_as(path, Some(mask), None::<&fn(&mut [f32], &mut Vec<f32>)>);
    };
    let linear = mask.1.grid.affine.linear();
    let shape = mask.1.grid.shape;
    for (axis, sigma) in Gaussian3d::sigmas(fwhm, linear).into_iter().enumerate() {
        // A kernel far longer than the axis blurs it flat: the affine's voxel size is wrong.
        let r = radius(sigma);
        if !(r.is_finite() && r <= 4.0 * shape[axis] as f64) {
            bail!(
                "{}: a {fwhm} mm FWHM is {sigma:.3e} voxels along axis {axis} of its {} (the affine's voxel size there is {:.3e} mm): check the affine",
                mask.0.display(),
                shape[axis],
                fwhm / (FWHM_OVER_SIGMA * sigma)
            );
        }
    }
    let gaussian = Gaussian3d::new(fwhm, linear);
    // Only the part of the grid around the mask is filtered: the mask's values are the same.
    let region = gaussian.region(shape, mask.1.linear.iter().copied());
    nifti::read_bold_as(path, Some(mask), Some(&|buf: &mut [f32], scratch: &mut Vec<f32>| gaussian.apply_within(buf, shape, &region, scratch)))
}

/// Reads one BOLD run inside `mask` and reduces it against its design `dm` (atoms in the
/// first `k` columns), keeping only the scans `keep` when given. Constant or non-finite
/// voxels are zeroed (and marked invalid) so they cannot disturb anything before the caller
/// drops them; `zscore` standardises each voxel's residual (after the nuisance columns).
pub fn reduce_run(
    path: &Path,
    mask: (&Path, &Mask),
    dm: &Array2<f64>,
    k: usize,
    keep: Option<&[usize]>,
    zscore: bool,
    smoothing_fwhm: Option<f64>,
) -> Result<Reduced> {
    let b = read_smoothed::<f64>(path, mask, smoothing_fwhm)?;
    let c = clean_data(path, b.data, dm, k, keep, zscore)?;
    Ok(Reduced {
        stats: RunStats::from_f64(c.xr.view(), c.yr.view()),
        absorbed: c.absorbed,
        valid: c.valid,
    })
}

/// A run's atoms and BOLD with its nuisance columns projected out (censored scans left
/// out), before they are reduced to statistics.
pub struct Cleaned {
    /// Kept scans × atoms.
    pub xr: Array2<f64>,
    /// Kept scans × voxels (standardised per voxel when asked; invalid voxels zero).
    pub yr: Array2<f64>,
    pub absorbed: usize,
    pub valid: Vec<bool>,
}

/// The cleaning of [`reduce_run`] on a run already read (`data`: scans × voxels, or
/// regions, of `path`, its f32 values in f64), its series kept.
pub fn clean_data(
    path: &Path,
    data: Array2<f64>,
    dm: &Array2<f64>,
    k: usize,
    keep: Option<&[usize]>,
    zscore: bool,
) -> Result<Cleaned> {
    let series = clean_series(path, data, dm.slice(s![.., k..]).to_owned(), keep, zscore)?;
    let xr = series.atoms(dm.slice(s![.., ..k]).to_owned())?;
    Ok(series.into_cleaned(xr))
}

/// A run's BOLD with its nuisance projected out, and the basis of that nuisance: what the
/// atoms of any number of models are then reduced against, so that comparing models reads
/// and cleans each run once ([`CleanSeries::atoms`]).
pub struct CleanSeries {
    path: PathBuf,
    /// Orthonormal basis of the kept scans' nuisance columns (kept scans × rank).
    q: Array2<f64>,
    /// The run's scans before censoring, and those kept.
    scans: usize,
    keep: Option<Vec<usize>>,
    /// Columns of the nuisance design (before its rank is taken).
    nuisance_columns: usize,
    pub yr: Array2<f64>,
    pub valid: Vec<bool>,
}

/// The BOLD half of [`clean_data`]: `data` (scans × voxels of `path`) cleaned of the
/// nuisance design `nuisance` (confounds, drift, intercept; one row a scan), censored to
/// `keep`. Constant or non-finite voxels are zeroed and marked invalid.
pub fn clean_series(
    path: &Path,
    data: Array2<f64>,
    nuisance: Array2<f64>,
    keep: Option<&[usize]>,
    zscore: bool,
) -> Result<CleanSeries> {
    if data.nrows() != nuisance.nrows() {
        bail!(
            "{}: {} scans, but the regressors have {}",
            path.display(),
            data.nrows(),
            nuisance.nrows()
        );
    }
    let scans = data.nrows();
    // Censored scans leave the run entirely: it is a run with fewer rows.
    let (mut y, nuisance) = match keep {
        Some(rows) => (keep_rows(data, rows), nuisance.select(Axis(0), rows)),
        None => (data, nuisance),
    };
    // Column by column in effect, row by row in memory (the series is scans × voxels).
    let mut valid = vec![true; y.ncols()];
    let mut varies = vec![false; y.ncols()];
    if y.nrows() > 0 {
        let first = y.row(0).to_owned();
        for row in y.rows() {
            for (((ok, var), &x), &x0) in valid.iter_mut().zip(&mut varies).zip(row).zip(&first) {
                *ok &= x.is_finite();
                *var |= x != x0;
            }
        }
    }
    valid.iter_mut().zip(&varies).for_each(|(ok, &var)| *ok &= var);
    for mut row in y.rows_mut() {
        row.iter_mut().zip(&valid).filter(|(_, &ok)| !ok).for_each(|(x, _)| *x = 0.0);
    }
    let q = nuisance_basis(&nuisance);
    // A voxel the nuisance explains entirely keeps only round-off: not a signal to scale up.
    let scale = column_stats::max_abs(y.view());
    // The run's one T × V copy becomes its residual.
    let mut yr = y;
    project_out_in_place(&q, &mut yr);
    if zscore {
        // Standardised after the nuisance is removed, as nilearn's `signal.clean` orders it:
        // a voxel's scale is that of what the atoms can explain, not of its motion or drift.
        let ColumnStats { mean, sd, .. } = ColumnStats::of(yr.view());
        valid.iter_mut().enumerate().for_each(|(v, ok)| *ok &= sd[v] > 1e-9 * scale[v]);
        for mut row in yr.rows_mut() {
            for (v, x) in row.iter_mut().enumerate() {
                *x = if valid[v] { (*x - mean[v]) / sd[v] } else { 0.0 };
            }
        }
    }
    Ok(CleanSeries {
        path: path.to_path_buf(),
        q,
        scans,
        keep: keep.map(<[usize]>::to_vec),
        nuisance_columns: nuisance.ncols(),
        yr,
        valid,
    })
}

impl CleanSeries {
    /// `atoms` (one row a scan of the run) censored as the run was and with its nuisance
    /// projected out (Frisch–Waugh–Lovell: the atoms' OLS coefficients against the cleaned
    /// BOLD are those of the full design [atoms | nuisance]).
    pub fn atoms(&self, atoms: Array2<f64>) -> Result<Array2<f64>> {
        if atoms.nrows() != self.scans {
            bail!(
                "{}: {} scans, but the regressors have {}",
                self.path.display(),
                self.scans,
                atoms.nrows()
            );
        }
        let atoms = match &self.keep {
            Some(rows) => atoms.select(Axis(0), rows),
            None => atoms,
        };
        let columns = atoms.ncols() + self.nuisance_columns;
        if atoms.nrows() <= columns {
            bail!(
                "{}: {} scans left after censoring, not more than the design's {columns} columns",
                self.path.display(),
                atoms.nrows()
            );
        }
        Ok(project_out(&self.q, &atoms))
    }

    /// The nuisance columns absorbed (the rank of the run's nuisance).
    pub fn absorbed(&self) -> usize {
        self.q.ncols()
    }

    /// The statistics of `atoms` against this run: what a store keeps of it.
    pub fn reduce(&self, atoms: Array2<f64>) -> Result<Reduced> {
        let xr = self.atoms(atoms)?;
        Ok(Reduced {
            stats: RunStats::from_f64(xr.view(), self.yr.view()),
            absorbed: self.absorbed(),
            valid: self.valid.clone(),
        })
    }

    pub fn into_cleaned(self, xr: Array2<f64>) -> Cleaned {
        Cleaned {
            xr,
            absorbed: self.q.ncols(),
            yr: self.yr,
            valid: self.valid,
        }
    }
}

/// `data.select(Axis(0), rows)`, in place when `rows` rise (as kept scans do): each kept
/// row moved up over the dropped ones, so a censored run needs no second T × V array.
fn keep_rows(data: Array2<f64>, rows: &[usize]) -> Array2<f64> {
    let (t, v) = data.dim();
    let rising = rows.windows(2).all(|w| w[0] < w[1]) && rows.last().is_none_or(|&r| r < t);
    if !rising || !data.is_standard_layout() {
        return data.select(Axis(0), rows);
    }
    let (mut raw, offset) = data.into_raw_vec_and_offset();
    debug_assert_eq!(offset.unwrap_or(0), 0, "an owned standard-layout array starts its buffer");
    for (i, &r) in rows.iter().enumerate() {
        if r != i {
            raw.copy_within(r * v..(r + 1) * v, i * v);
        }
    }
    raw.truncate(rows.len() * v);
    Array2::from_shape_vec((rows.len(), v), raw).expect("rows × voxels")
}

/// What [`write_subject_maps`] wrote, and the ridge results per fitted voxel.
pub struct SubjectMaps {
    pub files: Vec<PathBuf>,
    pub alpha: Array1<f64>,
    pub cv_r: Array1<f64>,
    pub cv_r2: Array1<f64>,
    pub median_r: f64,
}

/// A ridge's per-voxel results that the maps show.
pub struct RidgeScores {
    pub alpha: Array1<f64>,
    pub cv_r: Array1<f64>,
    pub cv_r2: Array1<f64>,
}

impl From<RidgeCvFit> for RidgeScores {
    fn from(f: RidgeCvFit) -> Self {
        RidgeScores {
            alpha: f.alpha,
            cv_r: f.cv_r,
            cv_r2: f.cv_r2,
        }
    }
}

/// A subject's maps under `dir`: β, t, z of the first `k` regressors of `fit`, the ridge's
/// cv_r, cv_r2, alpha (NaN maps without cross-validation), and the group estimator's β
/// under its own name (`group`: map name, k × voxels), on the `valid` voxels.
pub fn write_subject_maps(
    dir: &Path,
    mask: &nifti::Mask,
    valid: &[usize],
    fit: &OlsFit,
    k: usize,
    ridge: Option<RidgeScores>,
    group: Option<(&str, &Array2<f64>)>,
) -> Result<SubjectMaps> {
    use rayon::prelude::*;
    let z = fit.z_map(k);
    let (alpha, cv_r, cv_r2) = match ridge {
        Some(f) => (f.alpha, f.cv_r, f.cv_r2),
        None => {
            let nan = Array1::from_elem(valid.len(), f64::NAN);
            (nan.clone(), nan.clone(), nan)
        }
    };
    let atoms = [("beta", &fit.beta), ("t", &fit.t), ("z", &z)].into_iter().chain(group).map(|(name, v)| (name, v.slice(s![..k, ..])));
    let scores = [("cv_r", &cv_r), ("cv_r2", &cv_r2), ("alpha", &alpha)].map(|(name, v)| (name, v.view().insert_axis(Axis(0))));
    // Each map streams volume by volume (one grid volume of memory), so they are written
    // in parallel: deflate is most of the cost.
    let maps: Vec<_> = atoms.chain(scores).collect();
    let files = maps
        .into_par_iter()
        .map(|(name, values)| {
            let path = dir.join(format!("{name}.nii.gz"));
            nifti::write_masked(&path, mask, valid, values, None).map(|()| path)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut r: Vec<f64> = cv_r.iter().copied().filter(|v| v.is_finite()).collect();
    r.sort_by(f64::total_cmp);
    let median_r = r.get(r.len() / 2).copied().unwrap_or(f64::NAN);
    Ok(SubjectMaps {
        files,
        alpha,
        cv_r,
        cv_r2,
        median_r,
    })
}

/// The atoms files, which must all have the same number of atoms.
pub fn read_regressors(regressors: &[PathBuf]) -> Result<Vec<(String, Array2<f64>)>> {
    let atoms: Vec<(String, Array2<f64>)> = regressors
        .iter()
        .map(|p| read_atoms(p))
        .collect::<Result<_>>()?;
    let Some(k) = atoms.first().map(|a| a.1.ncols()) else {
        bail!("--regressors: give at least one atoms file");
    };
    if let Some((i, _)) = atoms.iter().enumerate().find(|(_, a)| a.1.ncols() != k) {
        bail!(
            "{}: {} atoms, {} has {k}",
            regressors[i].display(),
            atoms[i].1.ncols(),
            regressors[0].display()
        );
    }
    Ok(atoms)
}

/// voxel_fits: one row per subject and fitted voxel.
pub fn write_voxel_fits(path: &Path, mask: &Mask, fits: &[FittedVoxels]) -> Result<()> {
    let ijk: Vec<[usize; 3]> = mask.ijk().collect();
    let rows = fits.iter().flat_map(|(s, valid, alpha, cv_r, cv_r2)| {
        valid
            .iter()
            .enumerate()
            .map(move |(n, &v)| (s, v, alpha[n], cv_r[n], cv_r2[n]))
    });
    let rows: Vec<_> = rows.collect();
    write_table(
        path,
        "voxel_fits",
        None,
        vec![
            Column::Utf8(rows.iter().map(|r| r.0.clone()).collect()),
            Column::U32(rows.iter().map(|r| r.1 as u32).collect()),
            Column::U16(rows.iter().map(|r| ijk[r.1][0] as u16).collect()),
            Column::U16(rows.iter().map(|r| ijk[r.1][1] as u16).collect()),
            Column::U16(rows.iter().map(|r| ijk[r.1][2] as u16).collect()),
            Column::F32(rows.iter().map(|r| r.2 as f32).collect()),
            Column::F32(rows.iter().map(|r| r.3 as f32).collect()),
            Column::F32(rows.iter().map(|r| r.4 as f32).collect()),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::keep_rows;
    use ndarray::{Array2, Axis};

    /// In place or not, the rows `select` gives: rising rows (first, last, none, all),
    /// and rows out of order or repeated (which take `select` itself).
    #[test]
    fn keep_rows_is_select() {
        let data = Array2::from_shape_fn((7, 5), |(t, v)| (t * 10 + v) as f64 + 0.25);
        let cases: [&[usize]; 7] = [&[0, 2, 3, 6], &[1, 2, 3, 4, 5, 6], &[0, 1, 2, 3, 4, 5, 6], &[], &[6], &[3, 1], &[2, 2]];
        for rows in cases {
            let want = data.select(Axis(0), rows);
            assert_eq!(keep_rows(data.clone(), rows), want, "rows {rows:?}");
        }
    }
}
