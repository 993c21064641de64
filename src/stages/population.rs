//! The artificial neurons (ANs) whose responses `simulate` plants into BOLD: either a real
//! language model's taps (`--model`) or, without one, a synthetic population.
//!
//! With a model, AN responses are computed exactly as `cortexflow responses` computes them
//! (word activations as sticks at word onsets, SPM HRF), and each planted group is a set
//! of ANs that really share a time course: a seed AN drawn at random, plus the ANs whose
//! responses (z-scored per run, all runs) correlate most with it; later seeds are drawn
//! among ANs correlating |r| < 0.3 with the groups already chosen.
//!
//! The synthetic population: AN u's activation for word w is a deterministic function of
//! the word (lower-cased), a_u(w) = λ_u·s_f(w) + √(1−λ_u²)·e_u(w), from seeded normal
//! tables over the vocabulary; the planted groups load on one factor each, the other ANs on
//! one of `--factors` unplanted factors.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::{bail, Result};
use crate::io::parquet::{write_table, Column};
use crate::io::stimulus::{self, Stimulus};
use crate::kernels::hrf::{frame_times, EventDesign, RegressorOptions};
use crate::model::extract::word_activations;
use ndarray::{Array1, Array2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::io::embedded;
use crate::progress;
use crate::stages::responses::TapOptions;

/// One story of the simulation: (run number, scans, words).
pub type Story = (usize, usize, Stimulus);

/// The text the ANs hear: the simulated stories, and a held-out one to test equivalence on.
pub struct Texts<'a> {
    pub simulated: &'a [Story],
    pub held_out: Option<&'a Story>,
}

/// The ANs, their planted groups and their responses per run.
pub struct Population {
    pub model: String,
    pub tap: String,
    pub note: String,
    /// (an_id, layer, tap, unit) per column.
    pub neurons: Vec<(u64, u16, String, u32)>,
    /// Planted groups as column indices, in `--networks` order.
    pub groups: Vec<Vec<usize>>,
    /// Per story: T × N responses.
    pub responses: Vec<Array2<f64>>,
    /// Responses to a story the simulation does not use (T × N), to test that an AN's
    /// likeness to a planted course is more than a coincidence of the simulated text.
    pub held_out: Option<Array2<f64>>,
}

/// An AN is equivalent to a planted group when its response correlates at least this much
/// (in |r|) with the group's planted course, on the simulated stories and on held-out
/// text: it then shares ≥ 49% of its variance with the course, so a voxel driven by the
/// course is as well predicted by it as by the group.
pub const EQUIVALENT_R: f64 = 0.7;

impl Population {
    pub fn group_ids(&self, g: usize) -> Vec<u64> {
        self.groups[g].iter().map(|&c| self.neurons[c].0).collect()
    }

    pub fn write_neurons(&self, path: &Path) -> Result<()> {
        let n = self.neurons.len();
        write_table(
            path,
            "neurons",
            None,
            vec![
                Column::U64(self.neurons.iter().map(|n| n.0).collect()),
                Column::Utf8(vec![self.model.clone(); n]),
                Column::U16(self.neurons.iter().map(|n| n.1).collect()),
                Column::Utf8(self.neurons.iter().map(|n| n.2.clone()).collect()),
                Column::U32(self.neurons.iter().map(|n| n.3).collect()),
            ],
        )?;
        Ok(())
    }

    /// The planted time course of group `g` in story `s`: its ANs' mean response, z-scored.
    pub fn course(&self, g: usize, s: usize) -> Vec<f64> {
        self.course_in(g, &self.responses[s])
    }

    /// The ANs equivalent to planted group `g` ([`EQUIVALENT_R`]): |r| with its course over
    /// the simulated stories (each z-scored) and, when there is one, over the held-out story.
    pub fn equivalent_ids(&self, g: usize) -> Vec<u64> {
        let likeness = |blocks: &[&Array2<f64>]| -> Vec<f64> {
            let mut dot = vec![0.0; self.neurons.len()];
            let mut t = 0usize;
            for r in blocks {
                let course = self.course_in(g, r);
                for (u, d) in dot.iter_mut().enumerate() {
                    *d += zscore(&r.column(u).to_vec()).iter().zip(&course).map(|(a, b)| a * b).sum::<f64>();
                }
                t += r.nrows();
            }
            dot.iter().map(|d| d / t.max(1) as f64).collect()
        };
        let seen = likeness(&self.responses.iter().collect::<Vec<_>>());
        let held = self.held_out.as_ref().map(|h| likeness(&[h]));
        (0..self.neurons.len())
            .filter(|&u| seen[u].abs() >= EQUIVALENT_R && held.as_ref().is_none_or(|h| h[u].abs() >= EQUIVALENT_R))
            .map(|u| self.neurons[u].0)
            .collect()
    }

    fn course_in(&self, g: usize, r: &Array2<f64>) -> Vec<f64> {
        let mean: Vec<f64> = (0..r.nrows())
            .map(|t| {
                self.groups[g].iter().map(|&c| r[[t, c]]).sum::<f64>() / self.groups[g].len() as f64
            })
            .collect();
        zscore(&mean)
    }

    /// A real model's taps.
    pub fn from_model(
        taps: &TapOptions,
        texts: &Texts,
        tr: f64,
        n_groups: usize,
        group_size: usize,
        seed: u64,
    ) -> Result<Self> {
        let (m, run, layout) = taps.load()?;
        let respond = |(r, n_scans, stim): &Story, what: &str| -> Result<Array2<f64>> {
            let words: Vec<String> = stim.words.iter().map(|w| w.text.clone()).collect();
            let bar = progress::bar(words.len() as u64, &format!("{} {what} {r}", m.name()));
            let (acts, _) = word_activations(m.as_ref(), &words, &run, &layout, |done| {
                bar.set_position(done as u64)
            })?;
            bar.finish_and_clear();
            responses_of(acts.mapv(f64::from), stim, *n_scans, tr)
        };
        let responses = texts.simulated.iter().map(|s| respond(s, "run")).collect::<Result<Vec<_>>>()?;
        let held_out = texts.held_out.map(|s| respond(s, "held-out section")).transpose()?;
        let n = layout.n_columns;
        if n_groups * group_size > n {
            bail!(
                "{} planted groups of {group_size} ANs need more than the {n} ANs of {}",
                n_groups,
                m.name()
            );
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let groups = choose_groups(&responses, n_groups, group_size, &mut rng)?;
        let taps_label = run
            .request
            .taps
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(",");
        Ok(Population {
            model: m.name().to_string(),
            tap: taps_label,
            note: format!("{}: real model activations (cortexflow responses, SPM HRF); planted groups are ANs whose responses correlate with a random seed AN", taps.model.display()),
            neurons: layout.neurons().map(|(id, l, t, u)| (id, l as u16, t.name().to_string(), u as u32)).collect(),
            groups,
            responses,
            held_out,
        })
    }

    /// The synthetic population. Errors if a story's scans cannot carry event regressors
    /// (see [`EventDesign::new`]).
    pub fn synthetic(
        texts: &Texts,
        tr: f64,
        n: usize,
        n_groups: usize,
        group_size: usize,
        factors: usize,
        seed: u64,
    ) -> Result<Self> {
        // Vocabulary over the whole embedded story, so a word's value does not depend on --runs.
        let vocab: BTreeSet<String> = (1..=embedded::LPP_RUNS)
            .filter_map(embedded::lpp_section)
            .filter_map(|b| stimulus::parse_stimulus(Path::new("lpp.TextGrid"), b, None).ok())
            .flat_map(|s| s.words.into_iter().map(|w| w.text.to_lowercase()))
            .chain(
                texts
                    .simulated
                    .iter()
                    .chain(texts.held_out)
                    .flat_map(|s| s.2.words.iter().map(|w| w.text.to_lowercase())),
            )
            .collect();
        let vocab: Vec<String> = vocab.into_iter().collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Planted ANs are scattered over the id range by a seeded shuffle.
        let mut ids: Vec<usize> = (0..n).collect();
        for i in (1..ids.len()).rev() {
            ids.swap(i, rng.random_range(0..=i));
        }
        let groups: Vec<Vec<usize>> = (0..n_groups)
            .map(|g| {
                let mut v = ids[g * group_size..(g + 1) * group_size].to_vec();
                v.sort_unstable();
                v
            })
            .collect();
        // Per AN: (factor, loading λ); factors 0..P are planted, P.. unplanted.
        let mut membership = vec![(usize::MAX, 0.0); n];
        for (g, members) in groups.iter().enumerate() {
            for &u in members {
                membership[u] = (g, rng.random_range(0.6..0.9));
            }
        }
        if factors > 0 {
            for &u in &ids[n_groups * group_size..] {
                membership[u] = (
                    n_groups + rng.random_range(0..factors),
                    rng.random_range(0.3..0.8),
                );
            }
        }
        let mut table = |rows: usize| {
            Array2::<f64>::from_shape_simple_fn((rows, vocab.len()), || rng.sample(StandardNormal))
        };
        let factor_values = table(n_groups + factors);
        let own_values = table(n);
        let respond = |(_, n_scans, stim): &Story| {
                let acts = Array2::from_shape_fn((stim.words.len(), n), |(i, u)| {
                    let v = vocab
                        .binary_search(&stim.words[i].text.to_lowercase())
                        .expect("vocabulary covers every story word");
                    let (f, lambda) = membership[u];
                    let shared = if lambda > 0.0 {
                        lambda * factor_values[[f, v]]
                    } else {
                        0.0
                    };
                    shared + (1.0 - lambda * lambda).sqrt() * own_values[[u, v]]
                });
                responses_of(acts, stim, *n_scans, tr)
        };
        let responses = texts.simulated.iter().map(respond).collect::<Result<Vec<_>>>()?;
        let held_out = texts.held_out.map(respond).transpose()?;
        Ok(Population {
            model: "synthetic-lexical".into(),
            tap: "word.latent".into(),
            note: "synthetic AN population (deterministic word-level latent factors); give --model for a real language model's ANs".into(),
            neurons: (0..n).map(|u| (u as u64, 0, "word.latent".to_string(), u as u32)).collect(),
            groups,
            responses,
            held_out,
        })
    }
}

/// Responses (T × N): word activations as stick amplitudes at word onsets, convolved with
/// the SPM HRF and sampled at k·TR (nilearn `compute_regressor`, durations 0).
fn responses_of(
    activations: Array2<f64>,
    stim: &Stimulus,
    n_scans: usize,
    tr: f64,
) -> Result<Array2<f64>> {
    let onsets: Vec<f64> = stim.words.iter().map(|w| w.onset).collect();
    let design = EventDesign::new(
        &onsets,
        &vec![0.0; onsets.len()],
        &frame_times(n_scans, tr, 0.0),
        &RegressorOptions::default(),
    )?
    .remove(0);
    Ok(design.apply(activations.view()))
}

/// Coherent groups of real ANs: for each group a random seed AN (constant ANs and ANs
/// correlating |r| ≥ 0.3 with an earlier group's mean are skipped), then the `size` ANs
/// most positively correlated with the seed over all runs (each run z-scored).
fn choose_groups(
    responses: &[Array2<f64>],
    n_groups: usize,
    size: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Vec<usize>>> {
    let z: Vec<Array2<f64>> = responses.iter().map(zscore_columns).collect();
    let z = ndarray::concatenate(Axis(0), &z.iter().map(|a| a.view()).collect::<Vec<_>>())?;
    let (t, n) = z.dim();
    let live: Vec<usize> = (0..n)
        .filter(|&c| z.column(c).iter().any(|&v| v != 0.0))
        .collect();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut means: Vec<Array1<f64>> = Vec::new();
    let mut used = vec![false; n];
    for attempt in 0.. {
        if groups.len() == n_groups {
            break;
        }
        if attempt > 200 || live.is_empty() {
            bail!("could not find {n_groups} distinct groups of {size} correlated ANs");
        }
        let seed = live[rng.random_range(0..live.len())];
        let s = z.column(seed);
        if used[seed] || means.iter().any(|m| (m.dot(&s) / t as f64).abs() >= 0.3) {
            continue;
        }
        let r = z.t().dot(&s) / t as f64;
        let mut order: Vec<usize> = live.iter().copied().filter(|&c| !used[c]).collect();
        order.sort_by(|&a, &b| r[b].total_cmp(&r[a]));
        let mut group: Vec<usize> = order.into_iter().take(size).collect();
        if group.len() < size {
            continue;
        }
        group.sort_unstable();
        let mean: Array1<f64> = group
            .iter()
            .map(|&c| z.column(c).to_owned())
            .fold(Array1::zeros(t), |a, b| a + b);
        let sd = (mean.mapv(|v| v * v).sum() / t as f64).sqrt();
        means.push(if sd > 0.0 { mean / sd } else { mean });
        group.iter().for_each(|&c| used[c] = true);
        groups.push(group);
    }
    Ok(groups)
}

fn zscore_columns(x: &Array2<f64>) -> Array2<f64> {
    let mut z = x.clone();
    for mut col in z.columns_mut() {
        let v = zscore(&col.to_vec());
        col.iter_mut().zip(v).for_each(|(c, v)| *c = v);
    }
    z
}

pub fn zscore(x: &[f64]) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let sd = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    x.iter()
        .map(|v| if sd > 0.0 { (v - mean) / sd } else { 0.0 })
        .collect()
}
