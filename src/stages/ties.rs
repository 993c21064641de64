//! Which ANs belong to which network: the paper's output, written by `map` as `an_fbn`.
//!
//! Every network with an assigned atom gets a fitted course, c_N(t) = Σ_k b_k·d_k(t) with
//! b_k the group mean β of atom k over the network's voxels (what a voxel of the network
//! does, on average, in terms of the atoms). Each AN's correlation with it comes exactly
//! from the basis's `an_atom` table ([`crate::kernels::courses`]), over the whole time axis
//! and over each of its two halves. Under the `course` rule an AN belongs to the network
//! whose course it follows best in both halves, when that r (the smaller half's) reaches
//! `tie_r`: following a course in one half only is a coincidence of the text. Under
//! `dominant` (the paper's rule), to its dominant atom's network.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{Array2, ArrayView2};

use crate::error::{bail, Result};
use crate::io::atlas::Template;
use crate::io::parquet::{write_table, AnAtom, Column};
use crate::kernels::courses::course_correlations;

/// How `map` ties an AN to a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TieRule {
    /// The network whose fitted course the AN's response follows best in both halves of
    /// the stories, when the smaller half's |r| ≥ tie_r.
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
    /// N × networks: r over the whole time axis, and the r both halves agree on.
    pub r: Array2<f64>,
    pub r_split: Array2<f64>,
    /// Per AN: its network (a template index), if any.
    pub tied: Vec<Option<usize>>,
    /// Per AN and network, the bootstrap share tying it there, and per network the mean
    /// Jaccard index ([`stability`]); None when not measured.
    pub stability: Option<(Array2<f64>, Vec<f64>)>,
}

/// The mean of each atom's β over each network's voxels (finite values only): K per
/// network with an assigned atom. `beta` is K × V on the mask the templates are on.
pub(crate) fn network_profiles(beta: ArrayView2<f64>, temps: &[Template], networks: &[usize]) -> Vec<Vec<f64>> {
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

/// The ties of every AN of `an_atom` (under the dominant rule without it: of every coded
/// AN, with no r). `assigned[a]` is atom a's network (template index); `dominant` maps an
/// AN to its dominant atom (used by the `dominant` rule).
pub fn network_ties(
    an_atom: Option<&AnAtom>,
    beta: ArrayView2<f64>,
    temps: &[Template],
    assigned: &[Option<usize>],
    dominant: &BTreeMap<u64, (u16, f32)>,
    rule: TieRule,
    tie_r: f64,
) -> Result<Ties> {
    let mut networks: Vec<usize> = assigned.iter().flatten().copied().collect();
    networks.sort_unstable();
    networks.dedup();
    let profiles = network_profiles(beta, temps, &networks);
    let an_ids: Vec<u64> = match an_atom {
        Some(a) => a.an_ids.clone(),
        None if rule == TieRule::Dominant => dominant.keys().copied().collect(),
        None => bail!("the course rule needs the basis's an_atom table"),
    };
    let n = an_ids.len();
    let mut r = Array2::from_elem((n, networks.len()), f64::NAN);
    let mut r_split = r.clone();
    for (j, b) in profiles.iter().enumerate() {
        if let Some(c) = an_atom.and_then(|a| course_correlations(&a.stats, b)) {
            r.column_mut(j).iter_mut().zip(c.r).for_each(|(o, v)| *o = v);
            r_split.column_mut(j).iter_mut().zip(c.r_split).for_each(|(o, v)| *o = v);
        }
    }
    let tied = match rule {
        TieRule::Course => r_split.rows().into_iter().map(|row| best_network(row.iter().copied(), tie_r).map(|j| networks[j])).collect(),
        TieRule::Dominant => an_ids
            .iter()
            .map(|id| dominant.get(id).and_then(|d| assigned[d.0 as usize]))
            .collect(),
    };
    Ok(Ties { networks, an_ids, r, r_split, tied, stability: None })
}

/// The index of the largest |r| that reaches `tie_r` (the first on ties), if any.
fn best_network(r: impl Iterator<Item = f64>, tie_r: f64) -> Option<usize> {
    r.enumerate()
        .filter(|(_, v)| v.abs() >= tie_r)
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()).then(b.0.cmp(&a.0)))
        .map(|(j, _)| j)
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
                Column::F32(cells.iter().map(|&(u, j)| self.r_split[[u, j]] as f32).collect()),
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
/// its tie set (1: the same ANs whichever subjects; NaN when no replicate and not the data
/// tie an AN to it). Replicate b draws from its own stream of `seed`, so the results do
/// not depend on the number of threads. `profiles[s][j]` is subject s's β
/// profile (K) of network `ties.networks[j]` ([`crate::stages::profiles::subject_profiles`]).
pub fn stability(ties: &Ties, an_atom: &AnAtom, profiles: &[Vec<Vec<f64>>], tie_r: f64, seed: u64) -> (Array2<f64>, Vec<f64>) {
    use rand::{Rng, SeedableRng};
    use rayon::prelude::*;
    let (n, nets, subjects) = (ties.an_ids.len(), ties.networks.len(), profiles.len());
    let reference: Vec<Option<usize>> = ties.tied.iter().map(|t| t.and_then(|t| ties.networks.iter().position(|&x| x == t))).collect();
    let (counts, overlaps) = (0..STABILITY_REPLICATES)
        .into_par_iter()
        .map(|b| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (b as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let draw: Vec<usize> = (0..subjects).map(|_| rng.random_range(0..subjects)).collect();
            let r: Vec<Option<Vec<f64>>> = (0..nets)
                .map(|j| {
                    let k = an_atom.stats.gram[0].nrows();
                    let b: Vec<f64> = (0..k).map(|i| draw.iter().map(|&s| profiles[s][j][i]).sum::<f64>() / subjects as f64).collect();
                    course_correlations(&an_atom.stats, &b).map(|c| c.r_split)
                })
                .collect();
            let mut counts = Array2::<u32>::zeros((n, nets));
            let (mut inter, mut union) = (vec![0usize; nets], vec![0usize; nets]);
            for u in 0..n {
                let tied = best_network((0..nets).map(|j| r[j].as_ref().map_or(f64::NAN, |c| c[u])), tie_r);
                if let Some(j) = tied {
                    counts[[u, j]] += 1;
                }
                for j in 0..nets {
                    let (x, y) = (tied == Some(j), reference[u] == Some(j));
                    inter[j] += usize::from(x && y);
                    union[j] += usize::from(x || y);
                }
            }
            (counts, vec![(b, inter, union)])
        })
        // Counts are integers, so any reduction order gives the same sums.
        .reduce(
            || (Array2::<u32>::zeros((n, nets)), Vec::new()),
            |(a, mut va), (b, vb)| {
                va.extend(vb);
                (a + b, va)
            },
        );
    // The Jaccard sums in replicate order: the same floats on any number of threads.
    let mut overlaps = overlaps;
    overlaps.sort_by_key(|o| o.0);
    let (mut jaccard, mut seen) = (vec![0.0; nets], vec![0usize; nets]);
    for (_, inter, union) in overlaps {
        for j in 0..nets {
            if union[j] > 0 {
                jaccard[j] += inter[j] as f64 / union[j] as f64;
                seen[j] += 1;
            }
        }
    }
    let share = counts.mapv(|c| c as f64 / STABILITY_REPLICATES as f64);
    (share, jaccard.iter().zip(&seen).map(|(j, &k)| if k == 0 { f64::NAN } else { j / k as f64 }).collect())
}
