//! `fit_blocks`: per (subject, voxel block), the subject's fit from the statistics of its
//! current runs — OLS β, t (with the runs' nuisance columns absorbed in the degrees of
//! freedom) and, with two or more runs, leave-one-run-out ridge. A change to one run
//! refits only the blocks of its subject.

use super::BlockError;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::{columns, BlockKey, Floats, RunBlock, StatsBlock, SubjectBeta};
use crate::kernels::cv::{ridge_cv_in, CvScratch};
use crate::kernels::estimators::{marginal_beta, Estimator};
use crate::kernels::glm::ols_absorbed;
use crate::kernels::ridge_stats::RunStats;

/// What the fit needs besides the statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSettings {
    /// Cross-validate a ridge (needs ≥ 2 runs).
    pub cv: bool,
    pub alphas: Vec<f64>,
    /// The β that the group test takes.
    pub estimator: Estimator,
}

/// A subject's fit of one block, on its `voxels` (indices within the block, valid in every
/// run). Matrices are k × voxels, row-major; a fit that failed carries its error instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlockFit {
    pub runs: u32,
    pub k: u32,
    /// Voxels in the block (fitted or not).
    pub block_voxels: u32,
    pub dof: u64,
    /// cond(XᵀX), one value.
    pub condition: Floats,
    pub voxels: Vec<u32>,
    pub beta: Floats,
    pub t: Floats,
    pub sigma2: Floats,
    /// Ridge: chosen α, held-out r and R² per voxel.
    pub ridge: Option<(Floats, Floats, Floats)>,
    /// The group estimator's β (k × voxels) when it is not the OLS β.
    pub group_beta: Option<Floats>,
    /// The subject has no β of the group's estimator yet (ridge with one run): it stays
    /// out of the group until it has one.
    pub ungrouped: bool,
    pub error: Option<BlockError>,
}

thread_local! {
    /// The ridge's buffers, kept by each worker thread from block to block.
    static CV_SCRATCH: std::cell::RefCell<CvScratch> = Default::default();
}

/// The fit of one block from its runs' statistics, summed in the given order.
pub fn fit_block(runs: &[&StatsBlock], settings: &FitSettings) -> BlockFit {
    let first = runs[0];
    let mut valid = first.valid.clone();
    let mut total: RunStats = first.stats();
    let mut absorbed = first.absorbed as usize;
    let mut per_run = vec![total.clone()];
    for r in &runs[1..] {
        valid.iter_mut().zip(&r.valid).for_each(|(a, &b)| *a &= b);
        let s = r.stats();
        total.add(&s);
        absorbed += r.absorbed as usize;
        per_run.push(s);
    }
    let voxels: Vec<usize> = (0..valid.len()).filter(|&v| valid[v]).collect();
    let mut out = BlockFit {
        runs: runs.len() as u32,
        k: first.k,
        block_voxels: valid.len() as u32,
        voxels: voxels.iter().map(|&v| v as u32).collect(),
        ..BlockFit::default()
    };
    let selected = total.select(&voxels);
    let fit = match ols_absorbed(&selected, absorbed) {
        Ok(f) => f,
        Err(e) => {
            out.error = Some(BlockError(e.to_string()));
            return out;
        }
    };
    let all: Vec<usize> = (0..voxels.len()).collect();
    let mut ridge_beta = None;
    if settings.cv && runs.len() >= 2 {
        let folds: Vec<RunStats> = per_run.iter().map(|r| r.select(&voxels)).collect();
        // Taken out for the call, not borrowed through it: a fit of several passes runs them
        // on rayon, whose thread may meanwhile fit another block.
        let mut scratch = CV_SCRATCH.take();
        let fitted = ridge_cv_in(&folds, &settings.alphas, &mut scratch);
        CV_SCRATCH.set(scratch);
        match fitted {
            Ok(r) => {
                out.ridge = Some((
                    Floats(r.alpha.to_vec()),
                    Floats(r.cv_r.to_vec()),
                    Floats(r.cv_r2.to_vec()),
                ));
                ridge_beta = Some(Floats(columns(&r.beta, &all)));
            }
            Err(e) => out.error = Some(BlockError(e.to_string())),
        }
    }
    out.group_beta = match settings.estimator {
        Estimator::Ols => None,
        Estimator::Marginal => Some(Floats(columns(&marginal_beta(&selected), &all))),
        Estimator::Ridge => {
            out.ungrouped = ridge_beta.is_none();
            ridge_beta
        }
    };
    out.dof = fit.dof as u64;
    out.condition = Floats(vec![fit.condition]);
    out.beta = Floats(columns(&fit.beta, &all));
    out.t = Floats(columns(&fit.t, &all));
    out.sigma2 = Floats(fit.sigma2.to_vec());
    out
}

impl BlockFit {
    /// This fit's β over the whole block for the group test (the estimator's; None when the
    /// subject has none yet, or the fit failed): NaN where the voxel was not fitted, values
    /// rounded through f32 as the subject's β map stores them.
    pub fn beta_block(&self, subject: &str) -> Option<SubjectBeta> {
        if self.error.is_some() || self.ungrouped {
            return None;
        }
        let (k, fitted, n) = (
            self.k as usize,
            self.voxels.len(),
            self.block_voxels as usize,
        );
        let beta = self.group_beta.as_ref().unwrap_or(&self.beta);
        let mut out = vec![f64::NAN; k * n];
        for a in 0..k {
            for (j, &v) in self.voxels.iter().enumerate() {
                out[a * n + v as usize] = beta.0[a * fitted + j] as f32 as f64;
            }
        }
        Some((subject.to_string(), self.k, Floats(out)))
    }
}

/// Extension trait: the per-block fit of each subject's current runs.
pub trait FitBlocks<'s> {
    /// Keeps, for every (subject, block), the [`BlockFit`] of the runs present (runs with a
    /// positive count, in run-key order).
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use cortexflow::kernels::ridge_stats::RunStats;
    /// use cortexflow::operators::{FitBlocks, FitSettings, Gather, StatsBlock};
    /// use ndarray::Array2;
    ///
    /// let x = Array2::from_shape_fn((20, 2), |(t, j)| ((t * (j + 3)) % 7) as f64);
    /// let y = Array2::from_shape_fn((20, 3), |(t, v)| x[[t, 0]] * (v + 1) as f64 + (t % 3) as f64);
    /// let stats = RunStats::from_block(x.view(), y.view());
    /// let blocks = StatsBlock::split(&stats, 0, &[true; 3]);
    /// let fits = timely::execute_directly(move |worker| {
    ///     let (mut input, gathered, probe) = worker.dataflow::<u64, _, _>(|scope| {
    ///         let (input, runs) = scope.new_collection();
    ///         let settings = FitSettings { cv: false, alphas: vec![], estimator: Default::default() };
    ///         let (gathered, probe) = runs.fit_blocks(settings).gather();
    ///         (input, gathered, probe)
    ///     });
    ///     for (b, block) in &blocks {
    ///         input.insert((("01".to_string(), *b), ("sub-01/task-a/run-1".to_string(), block.clone())));
    ///     }
    ///     input.close();
    ///     worker.step_while(|| !probe.done());
    ///     gathered.take()
    /// });
    /// assert_eq!(fits.len(), 1);
    /// assert_eq!(fits[0].1.voxels, vec![0, 1, 2]);
    /// ```
    fn fit_blocks(self, settings: FitSettings) -> VecCollection<'s, u64, (BlockKey, BlockFit)>;
}

impl<'s> FitBlocks<'s> for VecCollection<'s, u64, (BlockKey, RunBlock)> {
    fn fit_blocks(self, settings: FitSettings) -> VecCollection<'s, u64, (BlockKey, BlockFit)> {
        self.reduce_named("FitBlocks", move |_key, runs, out| {
            let present: Vec<&StatsBlock> = runs
                .iter()
                .filter(|(_, count)| *count > 0)
                .map(|(run, _)| &run.1)
                .collect();
            if !present.is_empty() {
                out.push((fit_block(&present, &settings), 1));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::cv::{alpha_grid, ridge_cv};
    use crate::operators::BLOCK_VOXELS;
    use ndarray::Array2;

    /// Fitting block by block gives the whole-brain fit of the same runs: the kernels work
    /// voxel by voxel, so the blocks' β, t and ridge scores equal the unblocked ones.
    #[test]
    fn blocks_fit_like_the_whole_brain() {
        let v = BLOCK_VOXELS + 300;
        let runs: Vec<RunStats> = (0..3)
            .map(|r| {
                let x = Array2::from_shape_fn((40, 3), |(t, j)| {
                    ((t * (j + 2) + r * 7) % 11) as f64 - 5.0
                });
                let y = Array2::from_shape_fn((40, v), |(t, c)| {
                    x[[t, c % 3]] * 0.3 + (((t * 13 + c * 7 + r) % 17) as f64 - 8.0) / 8.0
                });
                RunStats::from_block(x.view(), y.view())
            })
            .collect();
        let mut valid = vec![true; v];
        valid[5] = false;
        let blocks: Vec<Vec<(u32, StatsBlock)>> = runs
            .iter()
            .map(|s| StatsBlock::split(s, 2, &valid))
            .collect();
        let settings = FitSettings {
            cv: true,
            alphas: alpha_grid(-2.0, 3.0, 6),
            estimator: Estimator::Ols,
        };
        let fits: Vec<BlockFit> = (0..2)
            .map(|b| {
                let parts: Vec<&StatsBlock> = blocks.iter().map(|r| &r[b].1).collect();
                fit_block(&parts, &settings)
            })
            .collect();
        let keep: Vec<usize> = (0..v).filter(|&c| valid[c]).collect();
        let mut total = runs[0].clone();
        runs[1..].iter().for_each(|r| total.add(r));
        let whole = ols_absorbed(&total.select(&keep), 6).unwrap();
        let folds: Vec<RunStats> = runs.iter().map(|r| r.select(&keep)).collect();
        let ridge = ridge_cv(&folds, &settings.alphas).unwrap();
        let beta: Vec<f64> = (0..3)
            .flat_map(|i| {
                fits.iter().flat_map(move |f| {
                    let n = f.voxels.len();
                    f.beta.0[i * n..(i + 1) * n].to_vec()
                })
            })
            .collect();
        let close = |a: &[f64], b: &[f64]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + y.abs()))
        };
        assert!(close(
            &beta,
            &whole.beta.iter().copied().collect::<Vec<_>>()
        ));
        assert_eq!(fits[0].dof, whole.dof as u64);
        let cv_r: Vec<f64> = fits
            .iter()
            .flat_map(|f| f.ridge.as_ref().unwrap().1 .0.clone())
            .collect();
        assert!(close(&cv_r, &ridge.cv_r.to_vec()));
        assert_eq!(fits[0].voxels.len(), BLOCK_VOXELS - 1, "voxel 5 left out");
    }

    /// Each estimator's β travels to the group: the marginal β of the kernel, the ridge β
    /// refitted at the cross-validated α, OLS by default; ridge without two runs has none.
    #[test]
    fn the_group_takes_the_estimators_beta() {
        let runs: Vec<RunStats> = (0..2)
            .map(|r| {
                let x = Array2::from_shape_fn((30, 3), |(t, j)| ((t * (j + 2) + r * 5) % 7) as f64 - 3.0);
                let y = Array2::from_shape_fn((30, 4), |(t, c)| x[[t, c % 3]] + ((t * 11 + c) % 5) as f64);
                RunStats::from_block(x.view(), y.view())
            })
            .collect();
        let blocks: Vec<StatsBlock> = runs.iter().map(|s| StatsBlock::split(s, 1, &[true; 4])[0].1.clone()).collect();
        let parts: Vec<&StatsBlock> = blocks.iter().collect();
        let alphas = alpha_grid(-1.0, 2.0, 4);
        let fit = |estimator, parts: &[&StatsBlock]| {
            fit_block(parts, &FitSettings { cv: true, alphas: alphas.clone(), estimator })
        };
        let mut total = runs[0].clone();
        total.add(&runs[1]);
        let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32 as f64).collect::<Vec<_>>();
        let ols = fit(Estimator::Ols, &parts);
        assert!(ols.group_beta.is_none());
        assert_eq!(ols.beta_block("01").unwrap().2 .0, as_f32(&ols.beta.0));
        let marginal = fit(Estimator::Marginal, &parts);
        let want = marginal_beta(&total);
        assert_eq!(marginal.beta_block("01").unwrap().2 .0, as_f32(want.as_slice().unwrap()));
        let ridge = fit(Estimator::Ridge, &parts);
        let want = ridge_cv(&runs, &alphas).unwrap().beta;
        assert_eq!(ridge.beta_block("01").unwrap().2 .0, as_f32(want.as_slice().unwrap()));
        let one = fit(Estimator::Ridge, &parts[..1]);
        assert!(one.error.is_none() && one.ungrouped && one.beta_block("01").is_none());
    }
}
