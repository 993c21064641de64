//! The dataflow's per-block results joined over the whole mask: each subject's fit from
//! its voxel blocks, and the group tests from theirs. Every block must be there, from the
//! same runs and subjects, or the join says a worker failed.

use std::collections::BTreeMap;

use ndarray::{s, Array1, Array2, ArrayView2};

use crate::error::{bail, err, Result};
use crate::kernels::glm::OlsFit;
use crate::kernels::group::GroupTest;
use crate::operators::{BlockError, BlockFit, BlockKey, BlockTest, Floats, GroupBlock, BLOCK_VOXELS};
use crate::stages::encode::RidgeScores;

/// A subject's fit over the whole mask, joined from its blocks.
pub struct SubjectFit {
    pub runs: usize,
    pub valid: Vec<usize>,
    pub ols: OlsFit,
    pub ridge: Option<RidgeScores>,
    /// The group estimator's β (k × valid voxels) when it is not the OLS β.
    pub group_beta: Option<Array2<f64>>,
}

/// Joins each subject's blocks; checks every block is there, from the same runs. Each
/// block's maps are moved out as they are copied, so the blocks and the joined maps are
/// not held twice over.
pub fn join_subjects(
    fits: Vec<(BlockKey, BlockFit)>,
    voxels: usize,
) -> Result<BTreeMap<String, SubjectFit>> {
    let mut by_subject: BTreeMap<String, Vec<(u32, BlockFit)>> = BTreeMap::new();
    for ((s, b), f) in fits {
        by_subject.entry(s).or_default().push((b, f));
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
        let f0 = &parts[0].1;
        let (k, runs, dof, condition) = (f0.k as usize, f0.runs as usize, f0.dof as usize, f0.condition.0[0]);
        let (has_group, has_ridge) = (f0.group_beta.is_some(), f0.ridge.is_some());
        let valid: Vec<usize> = parts
            .iter()
            .flat_map(|(b, f)| f.voxels.iter().map(move |&v| *b as usize * BLOCK_VOXELS + v as usize))
            .collect();
        let mut matrix = |get: fn(&mut BlockFit) -> Option<&mut Floats>| -> Result<Array2<f64>> {
            let mut joined = Array2::zeros((k, valid.len()));
            let mut start = 0;
            for (b, f) in parts.iter_mut() {
                let width = f.voxels.len();
                let values = get(f).map(std::mem::take).ok_or_else(|| err!("sub-{subject}: voxel block {b} lacks a map the others have (a worker failed?)"))?;
                let view = ArrayView2::from_shape((k, width), &values.0).map_err(|_| err!("sub-{subject}: voxel block {b} of the wrong size"))?;
                joined.slice_mut(s![.., start..start + width]).assign(&view);
                start += width;
            }
            Ok(joined)
        };
        let beta = matrix(|f| Some(&mut f.beta))?;
        let t = matrix(|f| Some(&mut f.t))?;
        let group_beta = has_group.then(|| matrix(|f| f.group_beta.as_mut())).transpose()?;
        let vector = |get: fn(&BlockFit) -> Option<&Vec<f64>>| -> Option<Array1<f64>> {
            let parts: Option<Vec<f64>> = parts
                .iter()
                .map(|(_, f)| get(f).cloned())
                .collect::<Option<Vec<Vec<f64>>>>()
                .map(|v| v.concat());
            parts.map(Array1::from)
        };
        let ols = OlsFit {
            beta,
            t,
            sigma2: vector(|f| Some(&f.sigma2.0)).expect("always"),
            dof,
            condition,
        };
        let ridge = has_ridge.then(|| RidgeScores {
            alpha: vector(|f| f.ridge.as_ref().map(|r| &r.0 .0)).expect("every block"),
            cv_r: vector(|f| f.ridge.as_ref().map(|r| &r.1 .0)).expect("every block"),
            cv_r2: vector(|f| f.ridge.as_ref().map(|r| &r.2 .0)).expect("every block"),
        });
        out.insert(subject, SubjectFit { runs, valid, ols, ridge, group_beta });
    }
    Ok(out)
}

/// The group tests over the whole mask, joined from the blocks: (subjects, all, halves;
/// the halves with p and z only).
/// Each block is dropped once copied, so the blocks and the joined maps are not held
/// twice over.
pub fn join_group(
    blocks: Vec<(u32, Result<GroupBlock, BlockError>)>,
    voxels: usize,
) -> Result<(usize, GroupTest, [GroupTest; 2])> {
    let mut parts: Vec<(u32, GroupBlock)> = blocks
        .into_iter()
        .map(|(b, g)| g.map(|g| (b, g)).map_err(|e| err!("group test: {e}")))
        .collect::<Result<_>>()?;
    parts.sort_by_key(|p| p.0);
    let complete = !parts.is_empty()
        && parts.len() == voxels.div_ceil(BLOCK_VOXELS)
        && parts.iter().enumerate().all(|(i, p)| p.0 as usize == i)
        && parts.iter().all(|p| p.1.subjects == parts[0].1.subjects && p.1.atoms == parts[0].1.atoms)
        && parts.iter().map(|p| p.1.voxels as usize).sum::<usize>() == voxels;
    if !complete {
        bail!("the group test of some voxel blocks is missing or stale (a worker failed?)");
    }
    let (atoms, subjects) = (parts[0].1.atoms as usize, parts[0].1.subjects as usize);
    // The halves carry p and z only: their n, mean and t stay empty (0 × 0).
    let empty = |full: bool| {
        let dim = if full { (atoms, voxels) } else { (0, 0) };
        GroupTest {
            n: Array2::zeros(dim),
            mean: Array2::zeros(dim),
            t: Array2::zeros(dim),
            p: Array2::zeros((atoms, voxels)),
            z: Array2::zeros((atoms, voxels)),
            null_max: None,
        }
    };
    // The three tests are joined side by side (their maps are fresh memory, slow to
    // fault in on one thread), each block part dropped once copied.
    let mut columns = [Vec::new(), Vec::new(), Vec::new()];
    for (_, g) in parts {
        let width = g.voxels as usize;
        for (column, part) in columns.iter_mut().zip([g.all, g.half_a, g.half_b]) {
            column.push((width, part));
        }
    }
    use rayon::prelude::*;
    let joined: Vec<Result<GroupTest>> = columns
        .into_par_iter()
        .enumerate()
        .map(|(i, column)| {
            let mut test = empty(i == 0);
            let mut start = 0;
            for (width, part) in column {
                place(&mut test, &part, atoms, start, width)?;
                start += width;
            }
            Ok(test)
        })
        .collect();
    let Ok([all, half_a, half_b]) = <[Result<GroupTest>; 3]>::try_from(joined) else {
        unreachable!("three columns, three tests")
    };
    Ok((subjects, all?, [half_a?, half_b?]))
}

/// Copies one block's tests into columns start.. of the joined maps; its null maxima
/// (atoms × permutations) combine with the others' by maximum.
fn place(test: &mut GroupTest, block: &BlockTest, atoms: usize, start: usize, width: usize) -> Result<()> {
    fn shaped<T>(v: &[T], dim: (usize, usize)) -> Result<ndarray::ArrayView2<'_, T>> {
        ndarray::ArrayView2::from_shape(dim, v).map_err(|_| err!("group test: a block of the wrong size"))
    }
    let (cols, dim) = (ndarray::s![.., start..start + width], (atoms, width));
    for (map, values) in [(&mut test.p, &block.p), (&mut test.z, &block.z)] {
        map.slice_mut(cols).assign(&shaped(&values.0, dim)?);
    }
    if test.n.is_empty() {
        return Ok(()); // a half: p and z only
    }
    test.n.slice_mut(cols).assign(&shaped(&block.n, dim)?);
    for (map, values) in [(&mut test.mean, &block.mean), (&mut test.t, &block.t)] {
        map.slice_mut(cols).assign(&shaped(&values.0, dim)?);
    }
    if block.null_max.0.is_empty() {
        return Ok(());
    }
    let m = Array2::from_shape_vec((atoms, block.null_max.0.len() / atoms.max(1)), block.null_max.0.clone())
        .map_err(|_| err!("group test: null maxima of the wrong size"))?;
    match &mut test.null_max {
        None => test.null_max = Some(m),
        Some(a) if a.dim() == m.dim() => crate::kernels::permutation::combine(a, m.view()),
        Some(_) => bail!("group test: blocks with different numbers of permutations (a worker failed?)"),
    }
    Ok(())
}
