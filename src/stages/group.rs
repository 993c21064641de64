//! `cortexflow group`: random-effects group maps of every atom from the subjects' β maps
//! (`encode`'s sub-*/beta.nii.gz), thresholded, plus the split-half reproducibility of each
//! atom's thresholded map (subjects in label order, alternately to halves A and B).

use std::path::{Path, PathBuf};

use crate::error::{bail, Context, Result};
use crate::io::nifti::{self, Mask};
use crate::kernels::estimators::Estimator;
use crate::kernels::group::{significant, GroupTest, Threshold};
use crate::kernels::overlap::OverlapSums;
use ndarray::{Array2, Axis};



/// Settings of `group`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupOptions {
    /// The subjects' β the test takes (recorded in group.json).
    pub estimator: Estimator,
    pub threshold: Threshold,
    /// The threshold of the halves' maps for split-half reproducibility: the same rule,
    /// except FDR in place of max-t (halves of a few subjects allow too few sign flips).
    pub split_threshold: Threshold,
    /// Seed of the sign flips (recorded in group.json).
    pub permutation_seed: u64,
    pub min_cluster: usize,
}

/// The subjects' β maps of `estimator` under an `encode` output directory, by subject
/// label.
pub fn subject_maps(encode_dir: &Path, estimator: Estimator) -> Result<Vec<(String, PathBuf)>> {
    let file = format!("{}.nii.gz", estimator.map_name());
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(encode_dir)
        .with_context(|| format!("{}: cannot list", encode_dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let label = name.strip_prefix("sub-")?.to_string();
            let beta = e.path().join(&file);
            beta.is_file().then_some((label, beta))
        })
        .collect();
    out.sort();
    if out.is_empty() {
        bail!(
            "{}: no sub-*/{file} (the output of `cortexflow encode`{})",
            encode_dir.display(),
            match estimator {
                Estimator::Ols => String::new(),
                e => format!(" --estimator {}", e.name()),
            }
        );
    }
    Ok(out)
}

/// Thresholded maps of every atom (atoms × voxels).
fn thresholded(test: &GroupTest, opt: &GroupOptions, ijk: &[[usize; 3]]) -> Array2<bool> {
    use rayon::prelude::*;
    let p = test.p_for(opt.threshold);
    // Atoms side by side: each is thresholded on its own (FDR sorts its p values).
    let rows: Vec<Vec<bool>> = (0..test.z.nrows())
        .into_par_iter()
        .map(|a| significant(&test.z.row(a).to_vec(), &p.row(a).to_vec(), opt.threshold, ijk, opt.min_cluster))
        .collect();
    Array2::from_shape_fn(test.z.dim(), |(a, v)| rows[a][v])
}

/// What the group stage wrote and found.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub files: Vec<PathBuf>,
    pub subjects: usize,
    pub voxels: usize,
    /// The threshold rule as written in group.json (`fdr 0.05`, `z-cut 3.1`).
    pub rule: String,
    pub min_cluster: usize,
    /// Significant voxels per atom.
    pub significant: Vec<usize>,
    /// Split-half Dice per atom (NaN without two halves).
    pub split_dice: Vec<f64>,
    /// What the numbers cannot show (a threshold no voxel can pass).
    pub notes: Vec<String>,
}

impl GroupSummary {
    /// One line for the whole group.
    pub fn headline(&self) -> String {
        format!(
            "{} subjects, {} atoms, {} voxels; threshold {}, minimum cluster {}",
            self.subjects,
            self.significant.len(),
            self.voxels,
            self.rule,
            self.min_cluster
        )
    }

    /// The headline, then one line per atom.
    pub fn lines(&self) -> Vec<String> {
        let atoms = self.significant.iter().zip(&self.split_dice).enumerate();
        std::iter::once(self.headline())
            .chain(self.notes.iter().cloned())
            .chain(atoms.map(|(a, (count, dice))| {
                format!("atom {a}: {count} significant voxels, split-half Dice {dice:.2}")
            }))
            .collect()
    }
}

/// Split-half reproducibility of each atom: the Dice of the halves' thresholded maps (NaN
/// without two halves of 2+ subjects, or when both are empty).
fn split_half_dice(
    halves: Option<&[GroupTest; 2]>,
    opt: &GroupOptions,
    ijk: &[[usize; 3]],
    atoms: usize,
) -> Vec<f64> {
    let Some([a, b]) = halves else {
        return vec![f64::NAN; atoms];
    };
    let halves = GroupOptions {
        threshold: opt.split_threshold,
        ..*opt
    };
    let (a, b) = (thresholded(a, &halves, ijk), thresholded(b, &halves, ijk));
    a.axis_iter(Axis(0))
        .zip(b.axis_iter(Axis(0)))
        .map(|(a, b)| {
            let zeros = vec![0.0; a.len()];
            let (a, b) = (a.to_vec(), b.to_vec());
            OverlapSums::over(&zeros, &a, &b).measures().dice
        })
        .collect()
}

/// The group maps (one volume per atom) and the mask under `out`; with permutations,
/// the family-wise p of each voxel too (p_fwer).
fn write_maps(mask: &Mask, test: &GroupTest, thresholded_z: &Array2<f64>, out: &Path) -> Result<Vec<PathBuf>> {
    use rayon::prelude::*;
    let fwer = test.null_max.is_some().then(|| test.p_for(Threshold::MaxT(1.0)));
    let every: Vec<usize> = (0..mask.len()).collect();
    let n = test.n.mapv(f64::from);
    let ones = Array2::from_elem((1, mask.len()), 1.0);
    let maps: Vec<_> = [
        ("mean_beta", &test.mean),
        ("t", &test.t),
        ("z", &test.z),
        ("p", &test.p),
        ("n", &n),
        ("thresholded_z", thresholded_z),
        ("mask", &ones),
    ]
    .into_iter()
    .chain(fwer.as_ref().map(|p| ("p_fwer", p)))
    .collect();
    // Streamed volume by volume, so the maps can be written side by side.
    maps.into_par_iter()
        .map(|(name, values)| {
            let path = out.join(format!("{name}.nii.gz"));
            nifti::write_masked(&path, mask, &every, values.view(), None).map(|()| path)
        })
        .collect()
}

/// The group test thresholded: which cells pass, the thresholded z map (their z, 0
/// elsewhere) and each atom's split-half Dice.
#[derive(Debug, Clone)]
pub struct Thresholded {
    pub sig: Array2<bool>,
    pub thresholded_z: Array2<f64>,
    pub split_dice: Vec<f64>,
}

/// Thresholds the group test and scores the split-half reproducibility of `halves`.
pub fn threshold(mask: &Mask, test: &GroupTest, halves: Option<&[GroupTest; 2]>, opt: &GroupOptions) -> Thresholded {
    let ijk: Vec<[usize; 3]> = mask.ijk().collect();
    let (sig, split_dice) = rayon::join(|| thresholded(test, opt, &ijk), || split_half_dice(halves, opt, &ijk, test.z.nrows()));
    let thresholded_z = Array2::from_shape_fn(test.z.dim(), |c| if sig[c] { test.z[c] } else { 0.0 });
    Thresholded { sig, thresholded_z, split_dice }
}

/// Writes the maps of the group test thresholded by [`threshold`], atoms.tsv and
/// group.json under `out`.
pub fn write_results(
    mask: &Mask,
    mask_path: &Path,
    subjects: &[String],
    test: &GroupTest,
    Thresholded { sig, thresholded_z, split_dice }: &Thresholded,
    opt: &GroupOptions,
    out: &Path,
) -> Result<GroupSummary> {
    let atoms = test.z.nrows();
    let mut files = write_maps(mask, test, thresholded_z, out)?;
    let rule = match opt.threshold {
        Threshold::Fdr(q) => format!("fdr {q}"),
        Threshold::ZCut(z) => format!("z-cut {z}"),
        Threshold::MaxT(level) => format!(
            "max-t fwer {level} ({} sign flips)",
            test.null_max.as_ref().map_or(0, |n| n.ncols())
        ),
    };
    let significant: Vec<usize> = sig
        .axis_iter(Axis(0))
        .map(|row| row.iter().filter(|&&b| b).count())
        .collect();
    let mut notes = Vec::new();
    if let Threshold::MaxT(level) = opt.threshold {
        let floor = crate::kernels::permutation::SignFlips::smallest_p(subjects.len());
        if floor > level {
            notes.push(format!(
                "note: {} subjects allow {} distinct sign-flip maps, so no family-wise p can be below {floor:.3}: nothing can pass fwer {level} (add subjects, or threshold by FDR)",
                subjects.len(),
                1u64 << subjects.len().saturating_sub(1).min(63)
            ));
        }
    }
    let mut tsv = String::from("atom\tsignificant_voxels\tsplit_half_dice\n");
    for (a, count) in significant.iter().enumerate() {
        tsv.push_str(&format!("{a}\t{count}\t{}\n", split_dice[a]));
    }
    let info = serde_json::json!({
        "subjects": subjects,
        "atoms": atoms,
        "estimator": opt.estimator.name(),
        "threshold": rule,
        "min_cluster": opt.min_cluster,
        "permutation_seed": matches!(opt.threshold, Threshold::MaxT(_)).then_some(opt.permutation_seed),
        "mask": mask_path,
    });
    for (name, text) in [
        ("atoms.tsv", tsv),
        ("group.json", serde_json::to_string_pretty(&info)?),
    ] {
        let path = out.join(name);
        crate::io::atomic::write_file_atomically(&path, |w| w.write_all(text.as_bytes()))?;
        files.push(path);
    }
    Ok(GroupSummary {
        files,
        subjects: subjects.len(),
        voxels: mask.len(),
        rule,
        min_cluster: opt.min_cluster,
        significant,
        split_dice: split_dice.clone(),
        notes,
    })
}

