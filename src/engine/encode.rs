//! `cortexflow encode` through the engine: each run, with the atoms file and confounds it
//! is given, is reduced to statistics and fitted by the encoding dataflow's `fit_blocks`,
//! exactly as a store's runs are; the subjects' maps and voxel_fits are then written by
//! the encode stage. One fitting path: the command and the store cannot drift apart.
//!
//! Each run's confounds, drift and intercept are projected out of that run alone (its
//! confounds get their own coefficients in each run, as in nilearn's per-run first-level
//! models).

use std::path::{Path, PathBuf};

use crate::engine::encoding::{run_once, GivenRun, Job, Plan};
use crate::error::{bail, Result};
use crate::io::{bids, nifti};
use crate::progress;
use crate::stages::encode::{self, EncodeOptions, FittedVoxels, RunFiles};
use crate::stages::join;
use crate::store::recipe::{EncodingSection, GroupSection};
use crate::store::{Recipe, Store};

/// Fits every subject of `bold` (the i-th run of a subject against the i-th regressors
/// file, with the i-th confounds file if given) and writes OUT/sub-<S>/{beta,t,z,cv_r,
/// cv_r2,alpha}.nii.gz (and the group estimator's β, `beta_<estimator>`, when it is not
/// OLS) and OUT/voxel_fits.parquet. Returns the files and one line per
/// subject.
pub fn run(
    regressors: &[PathBuf],
    bold: &[PathBuf],
    mask_path: &Path,
    confounds: &[PathBuf],
    opt: &EncodeOptions,
    out: &Path,
) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let atoms = encode::read_regressors(regressors)?;
    let k = atoms[0].1.ncols();
    let mask = nifti::read_mask(mask_path)?;
    let groups = encode::subjects(bold, confounds)?;
    let mut jobs = Vec::new();
    let stories: Vec<&str> = atoms.iter().map(|a| a.0.as_str()).collect();
    for (subject, runs) in &groups {
        check_subject(subject, runs, atoms.len(), opt.cv)?;
        let pairs = pair_by_story(runs, &stories, regressors)?;
        jobs.extend(runs.iter().zip(pairs).enumerate().map(|(i, ((b, c), j))| {
            Job::Given(GivenRun {
                key: format!("{i:06}"),
                subject: subject.clone(),
                bold: b.clone(),
                atoms: regressors[j].clone(),
                confounds: c.clone(),
                mask: mask_path.to_path_buf(),
            })
        }));
    }
    let recipe = Recipe {
        encoding: EncodingSection {
            alphas: opt.alphas.clone(),
            high_pass: opt.high_pass.unwrap_or(0.0),
            zscore_bold: opt.zscore,
            cv: opt.cv,
            smoothing_fwhm: opt.smoothing_fwhm,
        },
        group: GroupSection {
            estimator: opt.estimator.into(),
            ..GroupSection::default()
        },
        ..Recipe::default()
    };
    let bar = progress::bar(0, "encoding runs");
    let plan = Plan {
        dir: out.to_path_buf(),
        recipe,
        mask: Some(mask.clone()),
        regions: None,
        jobs,
        stored: Vec::new(),
        sums: None,
        bar: bar.clone(),

        held: None,
    };
    let (fits, _) = run_once(plan)?;
    bar.finish_and_clear();
    let mut subjects = join::join_subjects(fits, mask.len())?;
    let (mut files, mut lines, mut scores) = (Vec::new(), Vec::new(), Vec::<FittedVoxels>::new());
    for (subject, runs) in &groups {
        let Some(fit) = subjects.remove(subject) else {
            bail!("sub-{subject}: no fit came back from the dataflow");
        };
        if fit.runs != runs.len() {
            bail!("sub-{subject}: fitted from {} of its {} runs", fit.runs, runs.len());
        }
        let dir = out.join(format!("sub-{subject}"));
        let group = fit.group_beta.as_ref().map(|b| (opt.estimator.map_name(), b));
        let maps = encode::write_subject_maps(&dir, &mask, &fit.valid, &fit.ols, k, fit.ridge, group)?;
        lines.push(format!(
            "sub-{subject}: {} runs, {} voxels ({} constant or non-finite excluded), median cv_r {:.3}",
            runs.len(),
            fit.valid.len(),
            mask.len() - fit.valid.len(),
            maps.median_r
        ));
        files.extend(maps.files);
        scores.push((subject.clone(), fit.valid, maps.alpha, maps.cv_r, maps.cv_r2));
    }
    let path = out.join("voxel_fits.parquet");
    encode::write_voxel_fits(&path, &mask, &scores)?;
    files.push(path);
    Ok((files, lines))
}

/// The regressors file of each run. A BIDS run name gives a story (`task-T_run-R`, as
/// the store names them); when every run's story is among the regressors' stories the
/// runs are paired by story, whatever the order given. When none is, the names follow
/// another convention and the i-th run takes the i-th file. Some but not all is a
/// disagreement, refused.
fn pair_by_story(runs: &[RunFiles], stories: &[&str], files: &[PathBuf]) -> Result<Vec<usize>> {
    let of_run: Vec<Option<String>> = runs
        .iter()
        .map(|(b, _)| bids::parse_bold_name(b).map(|r| Store::story_of(&r)))
        .collect();
    let index = |s: &Option<String>| s.as_ref().and_then(|s| stories.iter().position(|t| t == s));
    let found: Vec<Option<usize>> = of_run.iter().map(index).collect();
    if found.iter().all(Option::is_none) {
        return Ok((0..runs.len()).collect());
    }
    if let Some(i) = found.iter().position(Option::is_none) {
        bail!(
            "{}: its story '{}' is in none of the regressors files ({}), though other runs' stories are: give the matching atoms file",
            runs[i].0.display(),
            of_run[i].as_deref().unwrap_or("?"),
            files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let pairs: Vec<usize> = found.into_iter().flatten().collect();
    for (i, a) in pairs.iter().enumerate() {
        if let Some(j) = pairs[i + 1..].iter().position(|b| b == a) {
            bail!(
                "{} and {} are both story '{}': give each story's run once",
                runs[i].0.display(),
                runs[i + 1 + j].0.display(),
                stories[*a]
            );
        }
    }
    Ok(pairs)
}

/// A subject's runs pair one to one with the regressors files, share one grid, and are
/// two or more when cross-validation is asked for.
fn check_subject(subject: &str, runs: &[RunFiles], regressors: usize, cv: bool) -> Result<()> {
    if runs.len() != regressors {
        bail!("sub-{subject}: {} BOLD runs for {regressors} regressor files (the i-th run uses the i-th regressors)", runs.len());
    }
    if cv && runs.len() < 2 {
        bail!("sub-{subject}: leave-one-run-out cross-validation needs at least 2 runs, there is 1; give --no-cv for OLS only");
    }
    let first = nifti::read_header(&runs[0].0)?;
    first.ensure_bold()?;
    for (path, _) in &runs[1..] {
        let h = nifti::read_header(path)?;
        h.ensure_bold()?;
        first.grid.ensure_same(&runs[0].0, &h.grid, path)?;
    }
    Ok(())
}

/// A store's voxel_fits table (the table `encode` writes), from its subjects' maps: one row
/// per subject and fitted voxel, the voxels whose β is a number (a voxel left out of a fit,
/// constant in some run, is NaN in every map). Returns the number of rows.
pub fn store_voxel_fits(store: &Path, out: &Path) -> Result<usize> {
    let store = Store::open_reader(store)?;
    let mask = store.read_mask()?;
    let paths = store.paths();
    let mut fits: Vec<FittedVoxels> = Vec::new();
    for subject in store.subjects() {
        let read = |map: &str| nifti::read_map_rows(&paths.subject_map(&subject, map), &mask);
        let beta = read("beta")?;
        let valid: Vec<usize> = (0..mask.len()).filter(|&v| beta.nrows() > 0 && beta[[0, v]].is_finite()).collect();
        let [alpha, cv_r, cv_r2] = ["alpha", "cv_r", "cv_r2"].map(|m| read(m).map(|r| valid.iter().map(|&v| r[[0, v]]).collect()));
        fits.push((subject, valid, alpha?, cv_r?, cv_r2?));
    }
    encode::write_voxel_fits(out, &mask, &fits)?;
    Ok(fits.iter().map(|f| f.1.len()).sum())
}
