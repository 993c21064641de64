//! `cortexflow encode`: the atoms as fixed regressors of voxel-wise models of every
//! subject's BOLD. OLS (β, t, z per atom) on the full design — atoms, confounds, and per run
//! a cosine drift basis and an intercept — and ridge with a per-voxel α chosen by
//! leave-one-run-out cross-validation, on the atoms after the nuisance columns are
//! projected out of atoms and BOLD run by run. Everything is computed from run statistics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{err, bail, Context, Result};
use crate::io::nifti;
use crate::io::parquet::{read_atoms, write_table, Column};
use crate::kernels::cv::{ridge_cv, RidgeCvFit};
use crate::kernels::design::{self, project_out, RunInputs};
use crate::kernels::glm::{ols, OlsFit};
use crate::kernels::ridge_stats::RunStats;
use crate::kernels::tdist::signed_z;
use ndarray::{concatenate, s, Array1, Array2, Axis};

use crate::operators::{BlockFit, BlockKey, BLOCK_VOXELS};

use crate::progress;

/// Settings of `encode`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeOptions {
    pub alphas: Vec<f64>,
    pub high_pass: Option<f64>,
    pub zscore: bool,
    pub cv: bool,
}

/// A BOLD run and its optional confounds file.
type RunFiles = (PathBuf, Option<PathBuf>);

/// One subject's fitted voxels: (subject, mask indices, alpha, cv_r, cv_r2).
type FittedVoxels = (String, Vec<usize>, Array1<f64>, Array1<f64>, Array1<f64>);

/// Runs of each subject: BOLD files (with their confounds) by subject label, in run order.
fn subjects(bold: &[PathBuf], confounds: &[PathBuf]) -> Result<BTreeMap<String, Vec<RunFiles>>> {
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

/// Numeric columns of a confounds TSV (header row; `n/a` read as 0, as fMRIPrep writes it).
fn read_confounds(path: &Path, n: usize) -> Result<Array2<f64>> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .from_path(path)
        .with_context(|| format!("{}: cannot read confounds", path.display()))?;
    let cols = rdr
        .headers()
        .with_context(|| format!("{}: no header", path.display()))?
        .len();
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
        let row: Vec<f64> = rec
            .iter()
            .map(|v| {
                if v == "n/a" {
                    Ok(0.0)
                } else {
                    v.trim().parse::<f64>()
                }
            })
            .collect::<Result<_, _>>()
            .map_err(|_| {
                err!("{}:{}: non-numeric confound value", path.display(), i + 2)
            })?;
        rows.push(row);
    }
    if rows.len() != n {
        bail!(
            "{}: {} confound rows for a run of {n} scans",
            path.display(),
            rows.len()
        );
    }
    Ok(Array2::from_shape_fn((n, cols), |(t, c)| rows[t][c]))
}

/// Encodes every subject; returns the files written and summary lines.
/// One run reduced to statistics: of the full design, and (for ridge) of the atoms with
/// the run's nuisance columns (drift, intercept, confounds) projected out of atoms and BOLD
/// (Frisch–Waugh–Lovell: the atoms' OLS coefficients are the same either way).
pub struct Reduced {
    pub full: RunStats,
    pub residual: Option<RunStats>,
    /// Voxels that are finite and not constant in this run.
    pub valid: Vec<bool>,
}

/// Reads one BOLD run inside `mask` and reduces it against its design `dm` (atoms in the
/// first `k` columns). Constant or non-finite voxels are zeroed (and marked invalid) so they
/// cannot disturb anything before the caller drops them; `zscore` standardises each voxel.
pub fn reduce_run(
    path: &Path,
    mask_path: &Path,
    mask: &nifti::Mask,
    dm: &Array2<f64>,
    k: usize,
    zscore: bool,
    residual: bool,
) -> Result<Reduced> {
    let b = nifti::read_bold(path, Some((mask_path, mask)))?;
    if b.data.nrows() != dm.nrows() {
        bail!(
            "{}: {} scans, but the regressors have {}",
            path.display(),
            b.data.nrows(),
            dm.nrows()
        );
    }
    let mut y = b.data.mapv(f64::from);
    drop(b);
    let mut valid = vec![true; y.ncols()];
    for (v, mut c) in y.columns_mut().into_iter().enumerate() {
        let ok = c.iter().all(|x| x.is_finite()) && c.iter().any(|&x| x != c[0]);
        if !ok {
            valid[v] = false;
            c.fill(0.0);
        } else if zscore {
            let m = c.mean().unwrap_or(0.0);
            let sd = (c.iter().map(|x| (x - m).powi(2)).sum::<f64>() / c.len() as f64).sqrt();
            c.mapv_inplace(|x| (x - m) / sd);
        }
    }
    let full = RunStats::from_block(dm.view(), y.view());
    let residual = if residual {
        let nuisance_cols: Vec<usize> = (k..dm.ncols())
            .filter(|&c| dm.column(c).iter().any(|&x| x != 0.0))
            .collect();
        let nuisance = dm.select(Axis(1), &nuisance_cols);
        let xr = project_out(&nuisance, &dm.slice(s![.., ..k]).to_owned())?;
        let yr = project_out(&nuisance, &y)?;
        Some(RunStats::from_block(xr.view(), yr.view()))
    } else {
        None
    };
    Ok(Reduced {
        full,
        residual,
        valid,
    })
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

/// A subject's maps under `dir`: β, t, z of the first `k` regressors of `fit`, and the
/// ridge's cv_r, cv_r2, alpha (NaN maps without cross-validation), on the `valid` voxels.
pub fn write_subject_maps(
    dir: &Path,
    mask: &nifti::Mask,
    valid: &[usize],
    fit: &OlsFit,
    k: usize,
    ridge: Option<RidgeScores>,
) -> Result<SubjectMaps> {
    let mut files = Vec::new();
    let pv = fit.p_values();
    let z = Array2::from_shape_fn(fit.t.dim(), |ij| signed_z(fit.t[ij], pv[ij]));
    for (name, values) in [("beta", &fit.beta), ("t", &fit.t), ("z", &z)] {
        let path = dir.join(format!("{name}.nii.gz"));
        nifti::write_map(
            &path,
            &mask.grid,
            &mask.volumes(valid, values.slice(s![..k, ..])),
            None,
        )?;
        files.push(path);
    }
    let (alpha, cv_r, cv_r2) = match ridge {
        Some(f) => (f.alpha, f.cv_r, f.cv_r2),
        None => {
            let nan = Array1::from_elem(valid.len(), f64::NAN);
            (nan.clone(), nan.clone(), nan)
        }
    };
    for (name, values) in [("cv_r", &cv_r), ("cv_r2", &cv_r2), ("alpha", &alpha)] {
        let path = dir.join(format!("{name}.nii.gz"));
        nifti::write_map(
            &path,
            &mask.grid,
            &mask.volumes(valid, values.view().insert_axis(Axis(0))),
            None,
        )?;
        files.push(path);
    }
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

pub fn run(
    regressors: &[PathBuf],
    bold: &[PathBuf],
    mask_path: &Path,
    confounds: &[PathBuf],
    opt: &EncodeOptions,
    out: &Path,
) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let atoms: Vec<(String, Array2<f64>)> = regressors
        .iter()
        .map(|p| read_atoms(p).map_err(Into::into))
        .collect::<Result<_>>()?;
    let k = atoms[0].1.ncols();
    if let Some((i, _)) = atoms.iter().enumerate().find(|(_, a)| a.1.ncols() != k) {
        bail!(
            "{}: {} atoms, {} has {k}",
            regressors[i].display(),
            atoms[i].1.ncols(),
            regressors[0].display()
        );
    }
    let mask = nifti::read_mask(mask_path)?;
    let groups = subjects(bold, confounds)?;
    let bar = progress::bar(bold.len() as u64, "encoding runs");
    let mut files = Vec::new();
    let mut lines = Vec::new();
    let mut fits: Vec<FittedVoxels> = Vec::new();
    for (subject, runs) in &groups {
        if runs.len() != atoms.len() {
            bail!("sub-{subject}: {} BOLD runs for {} regressor files (the i-th run uses the i-th regressors)", runs.len(), atoms.len());
        }
        if opt.cv && runs.len() < 2 {
            bail!("sub-{subject}: leave-one-run-out cross-validation needs at least 2 runs, there is 1; give --no-cv for OLS only");
        }
        // Designs first (headers and confounds only), so each run's BOLD can be reduced to
        // statistics and dropped: memory holds one run's masked data at a time.
        let first = nifti::read_header(&runs[0].0)?;
        let mut inputs = Vec::new();
        for ((path, conf), (_, d)) in runs.iter().zip(&atoms) {
            let h = nifti::read_header(path)?;
            first.grid.ensure_same(&runs[0].0, &h.grid, path)?;
            let tr = h
                .tr
                .with_context(|| format!("{}: no repetition time in the header", path.display()))?;
            let confounds = match conf {
                Some(c) => read_confounds(c, d.nrows())?,
                None => Array2::zeros((d.nrows(), 0)),
            };
            inputs.push(RunInputs {
                regressors: d.clone(),
                confounds,
                tr,
            });
        }
        let (designs, _names) =
            design::build(&inputs, opt.high_pass)?;
        let mut valid_all = vec![true; mask.len()];
        let mut stats: Option<RunStats> = None;
        let mut ridge_runs = Vec::new();
        for (((path, _), (story, _)), dm) in runs.iter().zip(&atoms).zip(&designs) {
            let r = reduce_run(path, mask_path, &mask, dm, k, opt.zscore, opt.cv)
                .with_context(|| format!("story '{story}'"))?;
            valid_all
                .iter_mut()
                .zip(&r.valid)
                .for_each(|(a, &b)| *a &= b);
            match stats.as_mut() {
                None => stats = Some(r.full),
                Some(s) => s.add(&r.full),
            }
            ridge_runs.extend(r.residual);
            bar.inc(1);
        }
        let valid: Vec<usize> = (0..mask.len()).filter(|&v| valid_all[v]).collect();
        let excluded = mask.len() - valid.len();
        let stats = stats.expect("≥ 1 run").select(&valid);
        let fit = ols(&stats).map_err(|e| err!("sub-{subject}: {e}"))?;
        let ridge = if opt.cv {
            let runs: Vec<RunStats> = ridge_runs.iter().map(|r| r.select(&valid)).collect();
            Some(
                ridge_cv(&runs, &opt.alphas)?
                    .into(),
            )
        } else {
            None
        };
        let maps = write_subject_maps(
            &out.join(format!("sub-{subject}")),
            &mask,
            &valid,
            &fit,
            k,
            ridge,
        )?;
        files.extend(maps.files);
        let median_r = maps.median_r;
        lines.push(format!("sub-{subject}: {} runs, {} voxels ({excluded} constant or non-finite excluded), median cv_r {median_r:.3}", runs.len(), valid.len()));
        fits.push((subject.clone(), valid, maps.alpha, maps.cv_r, maps.cv_r2));
    }
    bar.finish_and_clear();
    // voxel_fits: one row per subject and fitted voxel.
    let ijk: Vec<[usize; 3]> = mask.ijk().collect();
    let (mut sub, mut vox, mut i, mut j, mut kk, mut al, mut r, mut r2) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for (subject, valid, alpha, cv_r, cv_r2) in &fits {
        for (n, &v) in valid.iter().enumerate() {
            sub.push(subject.clone());
            vox.push(v as u32);
            i.push(ijk[v][0] as u16);
            j.push(ijk[v][1] as u16);
            kk.push(ijk[v][2] as u16);
            al.push(alpha[n] as f32);
            r.push(cv_r[n] as f32);
            r2.push(cv_r2[n] as f32);
        }
    }
    let path = out.join("voxel_fits.parquet");
    write_table(
        &path,
        "voxel_fits",
        None,
        vec![
            Column::Utf8(sub),
            Column::U32(vox),
            Column::U16(i),
            Column::U16(j),
            Column::U16(kk),
            Column::F32(al),
            Column::F32(r),
            Column::F32(r2),
        ],
    )?;
    files.push(path);
    Ok((files, lines))
}
/// A subject's fit over the whole mask, joined from its blocks.
pub struct SubjectFit {
    pub runs: usize,
    pub valid: Vec<usize>,
    pub ols: OlsFit,
    pub ridge: Option<RidgeScores>,
}

/// Joins each subject's blocks; checks every block is there, from the same runs.
pub fn join_subjects(
    fits: &[(BlockKey, BlockFit)],
    voxels: usize,
) -> Result<BTreeMap<String, SubjectFit>> {
    let mut by_subject: BTreeMap<&str, Vec<(u32, &BlockFit)>> = BTreeMap::new();
    for ((s, b), f) in fits {
        by_subject.entry(s).or_default().push((*b, f));
    }
    let blocks = voxels.div_ceil(BLOCK_VOXELS);
    let mut out = BTreeMap::new();
    for (subject, mut parts) in by_subject {
        parts.sort_by_key(|p| p.0);
        if parts.len() != blocks || parts.iter().any(|p| p.1.runs != parts[0].1.runs) {
            bail!("sub-{subject}: the fits of some voxel blocks are missing or stale (a worker failed?)");
        }
        if let Some(e) = parts.iter().find_map(|p| p.1.error.as_ref()) {
            bail!("sub-{subject}: {e}");
        }
        let f0 = parts[0].1;
        let k = f0.k as usize;
        let valid: Vec<usize> = parts
            .iter()
            .flat_map(|(b, f)| {
                f.voxels
                    .iter()
                    .map(move |&v| *b as usize * BLOCK_VOXELS + v as usize)
            })
            .collect();
        let matrix = |get: fn(&BlockFit) -> &Vec<f64>| -> Array2<f64> {
            let views: Vec<Array2<f64>> = parts
                .iter()
                .map(|(_, f)| {
                    Array2::from_shape_vec((k, f.voxels.len()), get(f).clone()).expect("k × v")
                })
                .collect();
            concatenate(Axis(1), &views.iter().map(|a| a.view()).collect::<Vec<_>>())
                .expect("same k")
        };
        let vector = |get: fn(&BlockFit) -> Option<&Vec<f64>>| -> Option<Array1<f64>> {
            let parts: Option<Vec<f64>> = parts
                .iter()
                .map(|(_, f)| get(f).cloned())
                .collect::<Option<Vec<Vec<f64>>>>()
                .map(|v| v.concat());
            parts.map(Array1::from)
        };
        let ols = OlsFit {
            beta: matrix(|f| &f.beta.0),
            t: matrix(|f| &f.t.0),
            sigma2: vector(|f| Some(&f.sigma2.0)).expect("always"),
            dof: f0.dof as usize,
            condition: f0.condition.0[0],
        };
        let ridge = f0.ridge.is_some().then(|| RidgeScores {
            alpha: vector(|f| f.ridge.as_ref().map(|r| &r.0 .0)).expect("every block"),
            cv_r: vector(|f| f.ridge.as_ref().map(|r| &r.1 .0)).expect("every block"),
            cv_r2: vector(|f| f.ridge.as_ref().map(|r| &r.2 .0)).expect("every block"),
        });
        out.insert(
            subject.to_string(),
            SubjectFit {
                runs: f0.runs as usize,
                valid,
                ols,
                ridge,
            },
        );
    }
    Ok(out)
}

