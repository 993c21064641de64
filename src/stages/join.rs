//! The dataflow's per-block results joined over the whole mask: each subject's fit from
//! its voxel blocks, and the group tests from theirs. Every block must be there, from the
//! same runs and subjects, or the join says a worker failed.

use std::collections::BTreeMap;

use ndarray::{concatenate, Array1, Array2, Axis};

use crate::error::{bail, err, Result};
use crate::kernels::glm::OlsFit;
use crate::kernels::group::GroupTest;
use crate::operators::{BlockError, BlockFit, BlockKey, BlockTest, GroupBlock, BLOCK_VOXELS};
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
        let group_beta = f0.group_beta.is_some().then(|| matrix(|f| &f.group_beta.as_ref().expect("every block").0));
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
                group_beta,
            },
        );
    }
    Ok(out)
}


/// The group tests over the whole mask, joined from the blocks: (subjects, all, halves).
pub fn join_group(
    blocks: &[(u32, Result<GroupBlock, BlockError>)],
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
    let join = |pick: fn(&GroupBlock) -> &BlockTest| -> Result<GroupTest> {
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
        // Each block's null maxima, atoms × permutations: the map's are their maximum.
        let null_max = parts.iter().try_fold(None::<Array2<f64>>, |acc, (_, g)| {
            let block = &pick(g).null_max.0;
            if block.is_empty() {
                return Ok(acc);
            }
            let m = Array2::from_shape_vec((atoms, block.len() / atoms.max(1)), block.clone())
                .map_err(|_| err!("group test: null maxima of the wrong size"))?;
            Ok::<_, crate::Error>(Some(match acc {
                None => m,
                Some(mut a) if a.dim() == m.dim() => {
                    crate::kernels::permutation::combine(&mut a, m.view());
                    a
                }
                Some(_) => bail!("group test: blocks with different numbers of permutations (a worker failed?)"),
            }))
        })?;
        Ok(GroupTest {
            null_max,
            n: concatenate(Axis(1), &n.iter().map(|a| a.view()).collect::<Vec<_>>())
                .expect("same atoms"),
            mean: matrix(|t| &t.mean.0),
            t: matrix(|t| &t.t.0),
            p: matrix(|t| &t.p.0),
            z: matrix(|t| &t.z.0),
        })
    };
    Ok((
        parts[0].1.subjects as usize,
        join(|g| &g.all)?,
        [join(|g| &g.half_a)?, join(|g| &g.half_b)?],
    ))
}
