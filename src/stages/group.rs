//! `cortexflow group`: random-effects group maps of every atom from the subjects' β maps
//! (`encode`'s sub-*/beta.nii.gz), thresholded, plus the split-half reproducibility of each
//! atom's thresholded map (subjects in label order, alternately to halves A and B).

use std::path::{Path, PathBuf};

use crate::error::{bail, err, Context, Result};
use crate::io::nifti::{self, Mask};
use crate::kernels::group::{significant, GroupSums, GroupTest, Threshold};
use crate::kernels::overlap::OverlapSums;
use ndarray::{concatenate, Array2, Axis};

use crate::operators::{BlockTest, GroupBlock, BLOCK_VOXELS};

use crate::progress;

/// Settings of `group`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupOptions {
    pub threshold: Threshold,
    pub min_cluster: usize,
}

/// The subjects' β maps under an `encode` output directory, by subject label.
pub fn subject_maps(encode_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(encode_dir)
        .with_context(|| format!("{}: cannot list", encode_dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let label = name.strip_prefix("sub-")?.to_string();
            let beta = e.path().join("beta.nii.gz");
            beta.is_file().then_some((label, beta))
        })
        .collect();
    out.sort();
    if out.is_empty() {
        bail!(
            "{}: no sub-*/beta.nii.gz (the output of `cortexflow encode`)",
            encode_dir.display()
        );
    }
    Ok(out)
}

/// The group test over `maps`, each read onto `mask` (volumes = atoms).
fn test_of(maps: &[&(String, PathBuf)], mask: &Mask, atoms: usize) -> Result<GroupTest> {
    let mut sums = GroupSums::new(atoms, mask.len());
    for (label, path) in maps {
        sums.add(read_beta(path, mask, atoms)?.view())
            .map_err(|e| err!("sub-{label}: {}: {e}", path.display()))?;
    }
    Ok(sums.test())
}

/// One subject's β (atoms × masked voxels), checked against the mask's grid.
fn read_beta(path: &Path, mask: &Mask, atoms: usize) -> Result<Array2<f64>> {
    let img = nifti::read_image(path)?;
    mask.grid
        .ensure_same(Path::new("the mask"), &img.header.grid, path)?;
    if img.data.dim().3 != atoms {
        bail!(
            "{}: {} volumes, the first subject has {atoms} atoms",
            path.display(),
            img.data.dim().3
        );
    }
    Ok(mask.rows(&img))
}

/// Thresholded maps of every atom (atoms × voxels).
fn thresholded(test: &GroupTest, opt: &GroupOptions, ijk: &[[usize; 3]]) -> Array2<bool> {
    let rows: Vec<Vec<bool>> = test
        .z
        .axis_iter(Axis(0))
        .zip(test.p.axis_iter(Axis(0)))
        .map(|(z, p)| {
            significant(
                &z.to_vec(),
                &p.to_vec(),
                opt.threshold,
                ijk,
                opt.min_cluster,
            )
        })
        .collect();
    Array2::from_shape_fn(test.z.dim(), |(a, v)| rows[a][v])
}

pub fn run(
    encode_dir: &Path,
    mask_path: &Path,
    opt: &GroupOptions,
    out: &Path,
) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let maps = subject_maps(encode_dir)?;
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
    let atoms = nifti::read_header(&maps[0].1)?.n_vols;
    let bar = progress::bar(3, "group maps");
    let all: Vec<&(String, PathBuf)> = maps.iter().collect();
    let test = test_of(&all, &mask, atoms)?;
    bar.inc(1);
    // Halves: subjects in label order, alternately to A and B.
    let halves: [Vec<&(String, PathBuf)>; 2] =
        [0, 1].map(|h| maps.iter().skip(h).step_by(2).collect());
    let halves = if halves.iter().all(|h| h.len() >= 2) {
        let a = test_of(&halves[0], &mask, atoms)?;
        bar.inc(1);
        Some([a, test_of(&halves[1], &mask, atoms)?])
    } else {
        None
    };
    bar.finish_and_clear();
    let labels: Vec<String> = maps.iter().map(|(l, _)| l.clone()).collect();
    write_results(&mask, mask_path, &labels, &test, halves.as_ref(), opt, out)
}

/// Thresholds the group test, scores split-half reproducibility (the Dice of the halves'
/// thresholded maps; NaN without two halves of 2+ subjects, or when both are empty), and
/// writes the maps, atoms.tsv and group.json under `out`.
pub fn write_results(
    mask: &Mask,
    mask_path: &Path,
    subjects: &[String],
    test: &GroupTest,
    halves: Option<&[GroupTest; 2]>,
    opt: &GroupOptions,
    out: &Path,
) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let atoms = test.z.nrows();
    let ijk: Vec<[usize; 3]> = mask.ijk().collect();
    let sig = thresholded(test, opt, &ijk);
    let split_dice: Vec<f64> = match halves {
        Some([a, b]) => {
            let (a, b) = (thresholded(a, opt, &ijk), thresholded(b, opt, &ijk));
            a.axis_iter(Axis(0))
                .zip(b.axis_iter(Axis(0)))
                .map(|(a, b)| {
                    let zeros = vec![0.0; a.len()];
                    let (a, b) = (a.to_vec(), b.to_vec());
                    OverlapSums::over(&zeros, &a, &b).measures().dice
                })
                .collect()
        }
        None => vec![f64::NAN; atoms],
    };
    let mut files = Vec::new();
    let every: Vec<usize> = (0..mask.len()).collect();
    let signed_sig = Array2::from_shape_fn(test.z.dim(), |c| if sig[c] { test.z[c] } else { 0.0 });
    let n = test.n.mapv(f64::from);
    for (name, values) in [
        ("mean_beta", &test.mean),
        ("t", &test.t),
        ("z", &test.z),
        ("p", &test.p),
        ("n", &n),
        ("thresholded_z", &signed_sig),
    ] {
        let path = out.join(format!("{name}.nii.gz"));
        nifti::write_map(
            &path,
            &mask.grid,
            &mask.volumes(&every, values.view()),
            None,
        )?;
        files.push(path);
    }
    let mask_copy = out.join("mask.nii.gz");
    let ones = Array2::from_elem((1, mask.len()), 1.0);
    nifti::write_map(
        &mask_copy,
        &mask.grid,
        &mask.volumes(&every, ones.view()),
        None,
    )?;
    files.push(mask_copy);

    let rule = match opt.threshold {
        Threshold::Fdr(q) => format!("fdr {q}"),
        Threshold::ZCut(z) => format!("z-cut {z}"),
    };
    let mut tsv = String::from("atom\tsignificant_voxels\tsplit_half_dice\n");
    let mut lines = vec![format!(
        "{} subjects, {atoms} atoms, {} voxels; threshold {rule}, minimum cluster {}",
        subjects.len(),
        mask.len(),
        opt.min_cluster
    )];
    for (a, row) in sig.axis_iter(Axis(0)).enumerate() {
        let count = row.iter().filter(|&&b| b).count();
        tsv.push_str(&format!("{a}\t{count}\t{}\n", split_dice[a]));
        lines.push(format!(
            "atom {a}: {count} significant voxels, split-half Dice {:.2}",
            split_dice[a]
        ));
    }
    let info = serde_json::json!({
        "subjects": subjects,
        "atoms": atoms,
        "threshold": rule,
        "min_cluster": opt.min_cluster,
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
    Ok((files, lines))
}
/// The group tests over the whole mask, joined from the blocks: (subjects, all, halves).
pub fn join_group(
    blocks: &[(u32, Result<GroupBlock, String>)],
    voxels: usize,
) -> Result<(usize, GroupTest, [GroupTest; 2])> {
    let mut parts: Vec<(u32, &GroupBlock)> = Vec::new();
    for (b, g) in blocks {
        parts.push((
            *b,
            g.as_ref().map_err(|e| err!("group test: {e}"))?,
        ));
    }
    parts.sort_by_key(|p| p.0);
    let complete = parts.len() == voxels.div_ceil(BLOCK_VOXELS)
        && parts.iter().enumerate().all(|(i, p)| p.0 as usize == i)
        && parts
            .iter()
            .all(|p| p.1.subjects == parts[0].1.subjects && p.1.atoms == parts[0].1.atoms);
    if !complete {
        bail!("the group test of some voxel blocks is missing or stale (a worker failed?)");
    }
    let atoms = parts[0].1.atoms as usize;
    let join = |pick: fn(&GroupBlock) -> &BlockTest| -> GroupTest {
        let matrix = |get: fn(&BlockTest) -> &Vec<f64>| -> Array2<f64> {
            let views: Vec<Array2<f64>> = parts
                .iter()
                .map(|(_, g)| {
                    Array2::from_shape_vec((atoms, g.voxels as usize), get(pick(g)).clone())
                        .expect("atoms × voxels")
                })
                .collect();
            concatenate(Axis(1), &views.iter().map(|a| a.view()).collect::<Vec<_>>())
                .expect("same atoms")
        };
        let n: Vec<Array2<u32>> = parts
            .iter()
            .map(|(_, g)| {
                Array2::from_shape_vec((atoms, g.voxels as usize), pick(g).n.clone())
                    .expect("atoms × voxels")
            })
            .collect();
        GroupTest {
            n: concatenate(Axis(1), &n.iter().map(|a| a.view()).collect::<Vec<_>>())
                .expect("same atoms"),
            mean: matrix(|t| &t.mean.0),
            t: matrix(|t| &t.t.0),
            p: matrix(|t| &t.p.0),
            z: matrix(|t| &t.z.0),
        }
    };
    Ok((
        parts[0].1.subjects as usize,
        join(|g| &g.all),
        [join(|g| &g.half_a), join(|g| &g.half_b)],
    ))
}
