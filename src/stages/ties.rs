//! Which ANs belong to which network: the paper's output, written by `map` as `an_fbn`.
//!
//! Every network with an assigned atom gets a fitted course, c_N(t) = Σ_k b_k·d_k(t) with
//! b_k the group mean β of atom k over the network's voxels (what a voxel of the network
//! does, on average, in terms of the atoms). Each AN's correlation with it comes exactly
//! from the basis's `an_atom` table ([`crate::kernels::courses`]). Under the `course` rule
//! an AN belongs to the network whose course it follows best, when |r| ≥ `tie_r`; under
//! `dominant` (the paper's rule), to its dominant atom's network.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::Array2;

use crate::error::{bail, Result};
use crate::io::atlas::Template;
use crate::io::parquet::{write_table, AnAtom, Column};
use crate::kernels::courses::course_correlations;

/// How `map` ties an AN to a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TieRule {
    /// The network whose fitted course the AN's response follows best, when |r| ≥ tie_r.
    Course,
    /// The network of the AN's dominant atom (largest |code|).
    Dominant,
}

impl std::fmt::Display for TieRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TieRule::Course => "course",
            TieRule::Dominant => "dominant",
        })
    }
}

/// Every AN's correlation with every network that has a course, and its network.
pub struct Ties {
    /// Template indices of the networks with a course (those with an assigned atom).
    pub networks: Vec<usize>,
    pub an_ids: Vec<u64>,
    /// N × networks.
    pub r: Array2<f64>,
    /// Per AN: its network (a template index), if any.
    pub tied: Vec<Option<usize>>,
    /// Per AN and network, the bootstrap share tying it there, and per network the mean
    /// Jaccard index ([`stability`]); None when not measured.
    pub stability: Option<(Array2<f64>, Vec<f64>)>,
}

/// The mean of each atom's β over each network's voxels (finite values only): K per
/// network with an assigned atom. `beta` is K × V on the mask the templates are on.
fn network_profiles(beta: &Array2<f64>, temps: &[Template], networks: &[usize]) -> Vec<Vec<f64>> {
    networks
        .iter()
        .map(|&t| {
            beta.rows()
                .into_iter()
                .map(|row| {
                    let (sum, n) = row
                        .iter()
                        .zip(&temps[t].voxels)
                        .filter(|(b, &on)| on && b.is_finite())
                        .fold((0.0, 0usize), |(s, n), (b, _)| (s + b, n + 1));
                    if n == 0 { 0.0 } else { sum / n as f64 }
                })
                .collect()
        })
        .collect()
}

/// The ties of every AN of `an_atom`. `assigned[a]` is atom a's network (template index);
/// `dominant` maps an AN to its dominant atom (used by the `dominant` rule).
pub fn network_ties(
    an_atom: &AnAtom,
    beta: &Array2<f64>,
    temps: &[Template],
    assigned: &[Option<usize>],
    dominant: &BTreeMap<u64, (u16, f32)>,
    rule: TieRule,
    tie_r: f64,
) -> Result<Ties> {
    let k = an_atom.gram.nrows();
    if beta.nrows() != k {
        bail!("the group maps have {} atoms but the basis's an_atom table has {k}: results of different bases", beta.nrows());
    }
    let mut networks: Vec<usize> = assigned.iter().flatten().copied().collect();
    networks.sort_unstable();
    networks.dedup();
    let profiles = network_profiles(beta, temps, &networks);
    let n = an_atom.an_ids.len();
    let mut r = Array2::from_elem((n, networks.len()), f64::NAN);
    for (j, b) in profiles.iter().enumerate() {
        if let Some(c) = course_correlations(an_atom.r.view(), an_atom.gram.view(), b) {
            r.column_mut(j).iter_mut().zip(c).for_each(|(o, v)| *o = v);
        }
    }
    let tied = match rule {
        TieRule::Course => r
            .rows()
            .into_iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .filter(|(_, v)| v.abs() >= tie_r)
                    .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()).then(b.0.cmp(&a.0)))
                    .map(|(j, _)| networks[j])
            })
            .collect(),
        TieRule::Dominant => an_atom
            .an_ids
            .iter()
            .map(|id| dominant.get(id).and_then(|d| assigned[d.0 as usize]))
            .collect(),
    };
    Ok(Ties { networks, an_ids: an_atom.an_ids.clone(), r, tied, stability: None })
}

impl Ties {
    /// The network each AN belongs to, by id.
    pub fn network_of(&self) -> BTreeMap<u64, usize> {
        self.an_ids
            .iter()
            .zip(&self.tied)
            .filter_map(|(&id, t)| t.map(|t| (id, t)))
            .collect()
    }

    /// Writes the `an_fbn` table: one row per AN and network with a course.
    pub fn write(&self, path: &Path, temps: &[Template]) -> Result<()> {
        let cells: Vec<(usize, usize)> = (0..self.an_ids.len())
            .flat_map(|u| (0..self.networks.len()).map(move |j| (u, j)))
            .collect();
        write_table(
            path,
            "an_fbn",
            None,
            vec![
                Column::U64(cells.iter().map(|&(u, _)| self.an_ids[u]).collect()),
                Column::Utf8(cells.iter().map(|&(_, j)| temps[self.networks[j]].name.clone()).collect()),
                Column::F32(cells.iter().map(|&(u, j)| self.r[[u, j]] as f32).collect()),
                Column::Bool(cells.iter().map(|&(u, j)| self.tied[u] == Some(self.networks[j])).collect()),
                Column::F32(cells.iter().map(|&(u, j)| self.stability.as_ref().map_or(f32::NAN, |s| s.0[[u, j]] as f32)).collect()),
            ],
        )?;
        Ok(())
    }
}

/// Bootstrap replicates of the subjects behind [`stability`].
pub const STABILITY_REPLICATES: usize = 200;

/// How robust the ties are to which subjects were scanned: B replicates each draw the
/// subjects with replacement, re-form every network's β profile as the mean of theirs,
/// and re-tie every AN under the course rule. Per AN and network: the share of replicates
/// tying the AN to it; per network: the mean Jaccard index of its replicate tie sets with
/// its tie set (1: the same ANs whichever subjects). `profiles[s][j]` is subject s's β
/// profile (K) of network `ties.networks[j]` ([`subject_profiles`]).
pub fn stability(ties: &Ties, an_atom: &AnAtom, profiles: &[Vec<Vec<f64>>], tie_r: f64, seed: u64) -> (Array2<f64>, Vec<f64>) {
    use rand::{Rng, SeedableRng};
    use rayon::prelude::*;
    let (n, nets, subjects) = (ties.an_ids.len(), ties.networks.len(), profiles.len());
    let reference: Vec<Option<usize>> = ties.tied.iter().map(|t| t.and_then(|t| ties.networks.iter().position(|&x| x == t))).collect();
    let (counts, jaccard) = (0..STABILITY_REPLICATES)
        .into_par_iter()
        .map(|b| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (b as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let draw: Vec<usize> = (0..subjects).map(|_| rng.random_range(0..subjects)).collect();
            let r: Vec<Option<Vec<f64>>> = (0..nets)
                .map(|j| {
                    let k = an_atom.gram.nrows();
                    let b: Vec<f64> = (0..k).map(|i| draw.iter().map(|&s| profiles[s][j][i]).sum::<f64>() / subjects as f64).collect();
                    course_correlations(an_atom.r.view(), an_atom.gram.view(), &b)
                })
                .collect();
            let mut counts = Array2::<u32>::zeros((n, nets));
            let (mut inter, mut union) = (vec![0usize; nets], vec![0usize; nets]);
            for u in 0..n {
                let tied = (0..nets)
                    .filter_map(|j| r[j].as_ref().map(|c| (j, c[u].abs())))
                    .filter(|(_, a)| *a >= tie_r)
                    .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                    .map(|(j, _)| j);
                if let Some(j) = tied {
                    counts[[u, j]] += 1;
                }
                for j in 0..nets {
                    let (x, y) = (tied == Some(j), reference[u] == Some(j));
                    inter[j] += usize::from(x && y);
                    union[j] += usize::from(x || y);
                }
            }
            let jac: Vec<f64> = inter.iter().zip(&union).map(|(&i, &u)| if u == 0 { 1.0 } else { i as f64 / u as f64 }).collect();
            (counts, jac)
        })
        .reduce(
            || (Array2::<u32>::zeros((n, nets)), vec![0.0; nets]),
            |(a, ja), (b, jb)| (a + b, ja.iter().zip(&jb).map(|(x, y)| x + y).collect()),
        );
    let share = counts.mapv(|c| c as f64 / STABILITY_REPLICATES as f64);
    (share, jaccard.iter().map(|j| j / STABILITY_REPLICATES as f64).collect())
}

/// Each subject's β profile of each network of `networks` (the mean of its β map over
/// the network's voxels), one subject map read at a time.
pub fn subject_profiles(maps: &[std::path::PathBuf], mask: &crate::io::nifti::Mask, temps: &[Template], networks: &[usize]) -> Result<Vec<Vec<Vec<f64>>>> {
    maps.iter()
        .map(|p| Ok(network_profiles(&mask.rows(&crate::io::nifti::read_image(p)?), temps, networks)))
        .collect()
}
