//! Ridge regression with a per-voxel penalty chosen by leave-one-run-out cross-validation,
//! from run statistics only (no second pass over BOLD).
//!
//! Fold f holds out run f: the training statistics are the total minus that run's; one
//! eigendecomposition G_train = V·diag(λ)·Vᵀ serves every α, β_α = V·diag(1/(λ+α))·Vᵀ·C_train.
//! The held-out prediction ŷ = X_f·β_α is scored from the held-out run's own statistics:
//!   Σŷ = Σx_fᵀβ,  Σŷ² = βᵀG_fβ,  Σŷy = βᵀC_f,  RSS = Σy² − 2Σŷy + Σŷ².
//! These sums add over folds, so the score of an α is that of all held-out predictions
//! together: R² = 1 − ΣRSS / Σ(y − ȳ)² (ȳ per run) and Pearson r of (ŷ, y) over all
//! held-out scans with run-wise centring. Each voxel keeps the α of least mean held-out
//! squared error, mean_f(RSS_f / n_f) — himalaya's `RidgeCV` criterion (its default score,
//! the negative mean squared error, averaged over folds); the final β is refitted on all
//! runs with it.

use faer::{Mat, Side};
use ndarray::{Array1, Array2};

use super::ridge_stats::RunStats;

/// Cross-validated ridge results for V voxels.
#[derive(Debug, Clone)]
pub struct RidgeCvFit {
    /// Chosen α per voxel.
    pub alpha: Array1<f64>,
    /// Held-out R² and Pearson r at the chosen α.
    pub cv_r2: Array1<f64>,
    pub cv_r: Array1<f64>,
    /// Coefficients refitted on all runs with the chosen α, p × V.
    pub beta: Array2<f64>,
    /// Held-out R², α × V (for inspection).
    pub r2_per_alpha: Array2<f64>,
}

/// Log-spaced α grid: `n` values from 10^lo to 10^hi.
pub fn alpha_grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            10f64.powf(if n > 1 {
                lo + (hi - lo) * i as f64 / (n - 1) as f64
            } else {
                lo
            })
        })
        .collect()
}

/// Coefficients for every α from an eigendecomposition of G: β_α = V·diag(1/(λ+α))·Vᵀ·C.
fn ridge_paths(
    gram: &Array2<f64>,
    xty: &Array2<f64>,
    alphas: &[f64],
) -> crate::Result<Vec<Array2<f64>>> {
    let p = gram.nrows();
    let g = Mat::<f64>::from_fn(p, p, |i, j| gram[[i, j]]);
    let eig = g
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| crate::Error::Invalid(format!("eigendecomposition failed: {e:?}")))?;
    let v = Array2::from_shape_fn((p, p), |(i, j)| eig.U()[(i, j)]);
    let lambda: Vec<f64> = (0..p).map(|i| eig.S()[i]).collect();
    let vtc = v.t().dot(xty); // p × V
    Ok(alphas
        .iter()
        .map(|&a| {
            let mut scaled = vtc.clone();
            for (i, mut row) in scaled.rows_mut().into_iter().enumerate() {
                row /= lambda[i].max(0.0) + a;
            }
            v.dot(&scaled)
        })
        .collect())
}

/// Leave-one-run-out ridge over `runs` (statistics of the same voxels, ≥ 2 runs).
/// Rejects (as [`crate::Error::Invalid`]) fewer than 2 runs, an empty α grid or one with a
/// value that is not a finite number > 0, and a Gram matrix whose eigendecomposition fails.
/// (Longer than ~80 lines on purpose: The folds, the α path and the per-voxel choice share the eigendecompositions; one function keeps them in scope.)
pub fn ridge_cv(runs: &[RunStats], alphas: &[f64]) -> crate::Result<RidgeCvFit> {
    if runs.len() < 2 {
        return Err(crate::Error::Invalid(format!(
            "leave-one-run-out cross-validation needs at least 2 runs, got {}",
            runs.len()
        )));
    }
    if alphas.is_empty() || alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
        return Err(crate::Error::Invalid(
            "the α grid needs positive values".into(),
        ));
    }
    let mut total = runs[0].clone();
    runs[1..].iter().for_each(|r| total.add(r));
    let v = total.xty.ncols();
    let na = alphas.len();
    // Per α and voxel, summed over folds: RSS, and the run-centred Σŷ² and Σŷy; with the
    // run-centred Σy² of the data.
    let (mut rss, mut sh, mut shy) = (
        Array2::<f64>::zeros((na, v)),
        Array2::<f64>::zeros((na, v)),
        Array2::<f64>::zeros((na, v)),
    );
    let mut mse = Array2::<f64>::zeros((na, v)); // Σ_f RSS_f / n_f
    let mut ss_y = Array1::<f64>::zeros(v);
    for held in runs {
        let mut train = total.clone();
        train.subtract(held);
        let betas = ridge_paths(&train.gram, &train.xty, alphas)?;
        let n = held.n as f64;
        for j in 0..v {
            ss_y[j] += held.sum_y2[j] - held.sum_y[j] * held.sum_y[j] / n;
        }
        for (ai, beta) in betas.iter().enumerate() {
            let gb = held.gram.dot(beta);
            for j in 0..v {
                let b = beta.column(j);
                let yhat_y = b.dot(&held.xty.column(j));
                let yhat2 = b.dot(&gb.column(j));
                let yhat = held.sum_x.dot(&b);
                let fold_rss = held.sum_y2[j] - 2.0 * yhat_y + yhat2;
                rss[[ai, j]] += fold_rss;
                mse[[ai, j]] += fold_rss / n;
                // Run-wise centred cross and squared sums for Pearson r.
                sh[[ai, j]] += yhat2 - yhat * yhat / n;
                shy[[ai, j]] += yhat_y - yhat * held.sum_y[j] / n;
            }
        }
    }
    let r2_per_alpha = Array2::from_shape_fn((na, v), |(a, j)| {
        if ss_y[j] > 0.0 {
            1.0 - rss[[a, j]] / ss_y[j]
        } else {
            f64::NAN
        }
    });
    let mut alpha = Array1::<f64>::zeros(v);
    let mut best_idx = vec![0usize; v];
    for j in 0..v {
        // The first (smallest) α among ties, as an argmin does.
        let best = (0..na).fold(0, |b, a| if mse[[a, j]] < mse[[b, j]] { a } else { b });
        best_idx[j] = best;
        alpha[j] = alphas[best];
    }
    let cv_r2 = Array1::from_shape_fn(v, |j| r2_per_alpha[[best_idx[j], j]]);
    let cv_r = Array1::from_shape_fn(v, |j| {
        let a = best_idx[j];
        let d = (sh[[a, j]] * ss_y[j]).sqrt();
        if d > 0.0 {
            shy[[a, j]] / d
        } else {
            f64::NAN
        }
    });
    let all = ridge_paths(&total.gram, &total.xty, alphas)?;
    let beta = Array2::from_shape_fn((total.xty.nrows(), v), |(i, j)| all[best_idx[j]][[i, j]]);
    Ok(RidgeCvFit {
        alpha,
        cv_r2,
        cv_r,
        beta,
        r2_per_alpha,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Axis};
    use rand::{Rng, SeedableRng};

    /// Brute force: for each fold, ridge solved directly on the raw training scans
    /// ((XᵀX + αI)β = Xᵀy), predictions on the held-out scans, scores from the
    /// concatenated held-out predictions.
    #[test]
    fn statistics_based_cv_equals_brute_force() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (p, v) = (5, 7);
        let runs: Vec<(Array2<f64>, Array2<f32>)> = (0..3)
            .map(|r| {
                let n = 30 + 4 * r;
                let x = Array2::from_shape_simple_fn((n, p), || rng.random_range(-1.0..1.0));
                let w = Array2::from_shape_fn((p, v), |(i, j)| ((i + j) % 3) as f64 - 1.0);
                let y = (x.dot(&w)
                    + Array2::from_shape_simple_fn((n, v), || 2.0 * rng.random_range(-1.0..1.0)))
                .mapv(|a| a as f32);
                (x, y)
            })
            .collect();
        let stats: Vec<RunStats> = runs
            .iter()
            .map(|(x, y)| RunStats::from_block(x.view(), y.view()))
            .collect();
        let alphas = alpha_grid(-2.0, 3.0, 6);
        let fit = ridge_cv(&stats, &alphas).unwrap();
        for (ai, &alpha) in alphas.iter().enumerate() {
            let (mut rss, mut ss) = (vec![0.0; v], vec![0.0; v]);
            let (mut pred_all, mut y_all) = (Vec::new(), Vec::new());
            for f in 0..runs.len() {
                let train: Vec<usize> = (0..runs.len()).filter(|&r| r != f).collect();
                let xt = ndarray::concatenate(
                    Axis(0),
                    &train.iter().map(|&r| runs[r].0.view()).collect::<Vec<_>>(),
                )
                .unwrap();
                let yt = ndarray::concatenate(
                    Axis(0),
                    &train.iter().map(|&r| runs[r].1.view()).collect::<Vec<_>>(),
                )
                .unwrap()
                .mapv(f64::from);
                let mut g = xt.t().dot(&xt);
                for i in 0..p {
                    g[[i, i]] += alpha;
                }
                let gm = Mat::<f64>::from_fn(p, p, |i, j| g[[i, j]]);
                let c = xt.t().dot(&yt);
                let mut b = Mat::<f64>::from_fn(p, v, |i, j| c[[i, j]]);
                faer::linalg::solvers::Solve::solve_in_place(&gm.partial_piv_lu(), b.as_mut());
                let beta = Array2::from_shape_fn((p, v), |(i, j)| b[(i, j)]);
                let pred = runs[f].0.dot(&beta);
                let yh = runs[f].1.mapv(f64::from);
                for j in 0..v {
                    let my = yh.column(j).mean().unwrap();
                    rss[j] += (&yh.column(j) - &pred.column(j)).mapv(|e| e * e).sum();
                    ss[j] += yh.column(j).mapv(|e| (e - my) * (e - my)).sum();
                }
                pred_all.push(pred.clone() - pred.mean_axis(Axis(0)).unwrap());
                y_all.push(yh.clone() - yh.mean_axis(Axis(0)).unwrap());
            }
            for j in 0..v {
                let r2 = 1.0 - rss[j] / ss[j];
                assert!(
                    (fit.r2_per_alpha[[ai, j]] - r2).abs() < 1e-9,
                    "α {alpha}, voxel {j}: {} vs {r2}",
                    fit.r2_per_alpha[[ai, j]]
                );
            }
            // Pearson r at the chosen α of each voxel, over run-centred held-out scans.
            let pa = ndarray::concatenate(
                Axis(0),
                &pred_all.iter().map(|a| a.view()).collect::<Vec<_>>(),
            )
            .unwrap();
            let ya =
                ndarray::concatenate(Axis(0), &y_all.iter().map(|a| a.view()).collect::<Vec<_>>())
                    .unwrap();
            for j in (0..v).filter(|&j| fit.alpha[j] == alpha) {
                let (pc, yc) = (pa.slice(s![.., j]), ya.slice(s![.., j]));
                let r = pc.dot(&yc) / (pc.dot(&pc) * yc.dot(&yc)).sqrt();
                assert!(
                    (fit.cv_r[j] - r).abs() < 1e-9,
                    "voxel {j}: r {} vs {r}",
                    fit.cv_r[j]
                );
            }
        }
        assert!(matches!(
            ridge_cv(&stats[..1], &alphas),
            Err(crate::Error::Invalid(msg)) if msg.contains("at least 2 runs, got 1")
        ));
        for bad in [&[][..], &[1.0, 0.0][..], &[f64::NAN][..], &[-1.0][..]] {
            assert!(matches!(
                ridge_cv(&stats, bad),
                Err(crate::Error::Invalid(msg)) if msg.contains("α grid")
            ));
        }
    }
}
