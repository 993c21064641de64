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
use ndarray::{s, Array1, Array2, ArrayView2, CowArray, Ix2};

use super::column_stats::column_dots;
use super::simd;
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

/// The eigendecomposition of a Gram matrix G = V·diag(λ)·Vᵀ, shared by every α:
/// β_α = V·diag(1/(λ + α))·Vᵀ·C.
struct RidgePath {
    v: Array2<f64>,
    lambda: Vec<f64>,
}

impl RidgePath {
    fn new(gram: &Array2<f64>) -> crate::Result<RidgePath> {
        let p = gram.nrows();
        let g = Mat::<f64>::from_fn(p, p, |i, j| gram[[i, j]]);
        let eig = g
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| crate::Error::Invalid(format!("eigendecomposition failed: {e:?}")))?;
        Ok(RidgePath {
            v: Array2::from_shape_fn((p, p), |(i, j)| eig.U()[(i, j)]),
            lambda: (0..p).map(|i| eig.S()[i]).collect(),
        })
    }

    /// Vᵀ·C (p × V) into `s.vtc`, what every α starts from.
    fn project(&self, xty: &ArrayView2<f64>, s: &mut CvScratch) {
        mul_into(&self.v.t(), xty, &mut s.vtc);
    }

    /// β_α into `s.beta`, from [`project`](Self::project)'s Vᵀ·C.
    fn beta(&self, alpha: f64, s: &mut CvScratch) {
        s.scaled.clone_from(&s.vtc);
        // Row i divided by λ_i + α: along rows when they are contiguous, else down the
        // columns (Vᵀ·C of column-major statistics is column-major), each value the same
        // quotient either way.
        s.divisors.clear();
        s.divisors.extend(self.lambda.iter().map(|l| l.max(0.0) + alpha));
        if !s.scaled.t().is_standard_layout() {
            // (Products are stored in one of the two orders; any other is made row-major.)
            if !s.scaled.is_standard_layout() {
                s.scaled = s.scaled.as_standard_layout().into_owned();
            }
            for (mut row, &d) in s.scaled.rows_mut().into_iter().zip(&s.divisors) {
                simd::div_assign(row.as_slice_mut().expect("a row-major row"), d);
            }
        } else {
            for mut column in s.scaled.columns_mut() {
                simd::div_elementwise(column.as_slice_mut().expect("a column-major column"), &s.divisors);
            }
        }
        mul_into(&self.v.view(), &s.scaled.view(), &mut s.beta);
    }
}

/// c = a·b as ndarray's `dot` computes it (the same matrixmultiply call on the same layouts,
/// so the same bits), into `c`'s memory when it has the shape: no buffer allocated and
/// zeroed per α and fold. `dot` makes a column-major result when both factors have unit row
/// stride (a one-column `b`); that case is left to it.
fn mul_into(a: &ArrayView2<f64>, b: &ArrayView2<f64>, c: &mut Array2<f64>) {
    let (m, n) = (a.nrows(), b.ncols());
    if a.strides()[0] == 1 && b.strides()[0] == 1 {
        *c = a.dot(b);
        return;
    }
    if c.dim() != (m, n) || !c.is_standard_layout() {
        *c = Array2::zeros((m, n));
    }
    ndarray::linalg::general_mat_mul(1.0, a, b, 0.0, c);
}

/// out[j] = Σ_i x[i]·a[i, j], as `x.dot(&a.column(j))` gives it (see [`column_dots`]).
fn weighted_rows(x: &Array1<f64>, a: &Array2<f64>, out: &mut Vec<f64>) {
    out.clear();
    if x.as_slice().is_some() && a.column(0).as_slice().is_some() {
        out.extend((0..a.ncols()).map(|j| x.dot(&a.column(j))));
        return;
    }
    out.resize(a.ncols(), 0.0);
    let mut buf = Vec::new();
    for (&w, row) in x.iter().zip(a.rows()) {
        // o + w·v and o + v·w are the same float: the product commutes exactly (only a NaN
        // times a NaN could keep the other's payload, and Σx is finite).
        simd::axpy(out, simd::contiguous(row, &mut buf), w);
    }
}

/// Voxels per pass: a fit of at most this many voxels (the engine's blocks) is one pass,
/// on the caller's thread; a larger fit runs its passes side by side on rayon's threads.
const CV_BLOCK: usize = crate::operators::BLOCK_VOXELS;

/// Voxels a pass takes through the α grid at once, so that its p × voxels buffers stay in
/// a core's L2 (at p = 64: 64 KiB each, where a whole 4,096-voxel block's are 2 MiB).
/// `benches/ridge_pieces.rs` (results in `scripts/studies/results/ridge_pieces.md`): at
/// p = 16, 64 and 128 pieces of 128 or 256 voxels fitted a block 1.16–1.35× faster than
/// the whole block at once, 64 a little slower again (per-piece set-up).
const CACHE_VOXELS: usize = 128;

/// Consecutive column ranges of at most [`CV_BLOCK`] voxels, as few as can be and of
/// sizes that differ by at most one (so that passes run side by side finish together).
fn voxel_blocks(v: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    even_ranges(v, CV_BLOCK)
}

/// 0..v cut into the fewest consecutive ranges of at most `most`, sizes within one.
fn even_ranges(v: usize, most: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let n = v.div_ceil(most);
    (0..n).map(move |i| i * v / n..(i + 1) * v / n)
}

/// Buffers of [`ridge_cv_in`] (a few p × piece arrays), reused across α, folds and blocks,
/// and the piece they are sized for.
pub struct CvScratch {
    /// Voxels taken through the α grid at once ([`CACHE_VOXELS`] by default).
    piece_voxels: usize,
    vtc: Array2<f64>,
    scaled: Array2<f64>,
    beta: Array2<f64>,
    gb: Array2<f64>,
    train_xty: Array2<f64>,
    divisors: Vec<f64>,
    dots: [Vec<f64>; 3],
}

impl Default for CvScratch {
    fn default() -> Self {
        CvScratch::with_piece(CACHE_VOXELS)
    }
}

impl CvScratch {
    /// Buffers for pieces of about `voxels` voxels: the working set of a fit, a speed
    /// setting only (every value is the same whatever the piece). At least 3, so that no
    /// piece of a wider range is one column, whose sums ndarray takes in another order
    /// (a p × 1 matrix has contiguous columns: its unrolled dot).
    pub fn with_piece(voxels: usize) -> CvScratch {
        CvScratch {
            piece_voxels: voxels.max(3),
            vtc: Array2::zeros((0, 0)),
            scaled: Array2::zeros((0, 0)),
            beta: Array2::zeros((0, 0)),
            gb: Array2::zeros((0, 0)),
            train_xty: Array2::zeros((0, 0)),
            divisors: Vec::new(),
            dots: Default::default(),
        }
    }
}

/// Leave-one-run-out ridge over `runs` (statistics of the same voxels, ≥ 2 runs).
/// Rejects (as [`crate::Error::Invalid`]) fewer than 2 runs, an empty α grid or one with a
/// value that is not a finite number > 0, and a Gram matrix whose eigendecomposition fails.
pub fn ridge_cv(runs: &[RunStats], alphas: &[f64]) -> crate::Result<RidgeCvFit> {
    ridge_cv_in(runs, alphas, &mut CvScratch::default())
}

/// [`ridge_cv`] with the caller's buffers. Passes of more than one block run side by side
/// on rayon's threads (each with its own buffers); voxels do not interact, so the values
/// are those of the passes one after another.
pub fn ridge_cv_in(runs: &[RunStats], alphas: &[f64], s: &mut CvScratch) -> crate::Result<RidgeCvFit> {
    use rayon::prelude::*;
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
    // One eigendecomposition per training set (fold f: the total minus run f), and one of
    // the total for the refit, shared by every pass.
    let folds = runs
        .iter()
        .map(|held| RidgePath::new(&(&total.gram - &held.gram)))
        .collect::<crate::Result<Vec<_>>>()?;
    let refit = RidgePath::new(&total.gram)?;
    // The fold loop sweeps C_f and C_total row by row; statistics gathered by `select`
    // hold them column by column, so it takes row-major copies (the refit keeps the
    // originals, whose layout its product's bits follow).
    let held_rows: Vec<CowArray<f64, Ix2>> = runs.iter().map(|r| r.xty.as_standard_layout()).collect();
    let total_rows = total.xty.as_standard_layout();
    let cv = Cv { runs, total: &total, held_rows: &held_rows, total_rows: total_rows.view(), folds: &folds, refit: &refit, alphas };
    let (p, na, v) = (total.xty.nrows(), alphas.len(), total.xty.ncols());
    let blocks: Vec<_> = voxel_blocks(v).collect();
    if let [cols] = &blocks[..] {
        return Ok(cv.pass(cols.clone(), s));
    }
    let piece = s.piece_voxels;
    let passes: Vec<Pass> = blocks.par_iter().map_init(|| CvScratch::with_piece(piece), |s, cols| cv.pass(cols.clone(), s)).collect();
    Ok(assemble(p, na, v, blocks.into_iter().zip(passes)))
}

/// One fit of V voxels from the fits of consecutive column ranges that cover them.
fn assemble(p: usize, na: usize, v: usize, parts: impl IntoIterator<Item = (std::ops::Range<usize>, Pass)>) -> RidgeCvFit {
    let mut fit = RidgeCvFit {
        alpha: Array1::zeros(v),
        cv_r2: Array1::zeros(v),
        cv_r: Array1::zeros(v),
        beta: Array2::zeros((p, v)),
        r2_per_alpha: Array2::zeros((na, v)),
    };
    for (cols, pass) in parts {
        fit.alpha.slice_mut(s![cols.clone()]).assign(&pass.alpha);
        fit.cv_r2.slice_mut(s![cols.clone()]).assign(&pass.cv_r2);
        fit.cv_r.slice_mut(s![cols.clone()]).assign(&pass.cv_r);
        fit.beta.slice_mut(s![.., cols.clone()]).assign(&pass.beta);
        fit.r2_per_alpha.slice_mut(s![.., cols]).assign(&pass.r2_per_alpha);
    }
    fit
}

/// What every pass shares: the runs, their total, and the eigendecompositions.
struct Cv<'a> {
    runs: &'a [RunStats],
    total: &'a RunStats,
    /// Each run's C_f and the total's C, row-major.
    held_rows: &'a [CowArray<'a, f64, Ix2>],
    total_rows: ArrayView2<'a, f64>,
    folds: &'a [RidgePath],
    refit: &'a RidgePath,
    alphas: &'a [f64],
}

/// One pass's results, for its voxels.
type Pass = RidgeCvFit;

impl Cv<'_> {
    /// The fit of the voxels `cols`, in pieces of at most `s.piece_voxels` voxels (and at
    /// least 2: see [`CvScratch::with_piece`]) one after another. Voxels do not interact,
    /// so each value is that of the whole range at once.
    fn pass(&self, cols: std::ops::Range<usize>, s: &mut CvScratch) -> Pass {
        let (p, na) = (self.total.xty.nrows(), self.alphas.len());
        if cols.len() <= s.piece_voxels {
            return self.piece(cols, s);
        }
        let start = cols.start;
        let pieces = even_ranges(cols.len(), s.piece_voxels).map(|r| (r.clone(), self.piece(r.start + start..r.end + start, s)));
        assemble(p, na, cols.len(), pieces)
    }

    /// The folds, the α path and the choice for the voxels `cols`.
    fn piece(&self, cols: std::ops::Range<usize>, s: &mut CvScratch) -> Pass {
        let (v, na, alphas) = (cols.len(), self.alphas.len(), self.alphas);
        // Per α and voxel, summed over folds: RSS, and the run-centred Σŷ² and Σŷy; with the
        // run-centred Σy² of the data.
        let (mut rss, mut sh, mut shy) = (Array2::<f64>::zeros((na, v)), Array2::<f64>::zeros((na, v)), Array2::<f64>::zeros((na, v)));
        let mut mse = Array2::<f64>::zeros((na, v)); // Σ_f RSS_f / n_f
        let mut ss_y = Array1::<f64>::zeros(v);
        let mut dots = std::mem::take(&mut s.dots);
        let mut train_xty = std::mem::take(&mut s.train_xty);
        for ((held, held_rows), path) in self.runs.iter().zip(self.held_rows).zip(self.folds) {
            let n = held.n as f64;
            for (c, j) in cols.clone().enumerate() {
                ss_y[c] += held.sum_y2[j] - held.sum_y[j] * held.sum_y[j] / n;
            }
            let held_xty = held_rows.slice(s![.., cols.clone()]);
            // C_train = C_total − C_f, element by element as the whole training set's.
            let total_xty = self.total_rows.slice(s![.., cols.clone()]);
            if train_xty.dim() != total_xty.dim() {
                train_xty = Array2::zeros(total_xty.dim());
            }
            // Rows of row-major arrays (this buffer, and column ranges of the copies).
            for ((mut train, total), held) in train_xty.rows_mut().into_iter().zip(total_xty.rows()).zip(held_xty.rows()) {
                let whole = "a row of a row-major array";
                simd::difference(train.as_slice_mut().expect(whole), total.to_slice().expect(whole), held.to_slice().expect(whole));
            }
            path.project(&train_xty.view(), s);
            for (ai, &alpha) in alphas.iter().enumerate() {
                path.beta(alpha, s);
                mul_into(&held.gram.view(), &s.beta.view(), &mut s.gb);
                let [yhat_y, yhat2, yhat] = &mut dots;
                column_dots(s.beta.view(), held_xty, yhat_y);
                column_dots(s.beta.view(), s.gb.view(), yhat2);
                weighted_rows(&held.sum_x, &s.beta, yhat);
                for (c, j) in cols.clone().enumerate() {
                    let (yhat_y, yhat2, yhat) = (yhat_y[c], yhat2[c], yhat[c]);
                    let fold_rss = held.sum_y2[j] - 2.0 * yhat_y + yhat2;
                    rss[[ai, c]] += fold_rss;
                    mse[[ai, c]] += fold_rss / n;
                    // Run-wise centred cross and squared sums for Pearson r.
                    sh[[ai, c]] += yhat2 - yhat * yhat / n;
                    shy[[ai, c]] += yhat_y - yhat * held.sum_y[j] / n;
                }
            }
        }
        s.dots = dots;
        s.train_xty = train_xty;
        let r2_per_alpha = Array2::from_shape_fn((na, v), |(a, j)| if ss_y[j] > 0.0 { 1.0 - rss[[a, j]] / ss_y[j] } else { f64::NAN });
        // The first (smallest) α among ties, as an argmin does.
        let best: Vec<usize> = (0..v).map(|j| (0..na).fold(0, |b, a| if mse[[a, j]] < mse[[b, j]] { a } else { b })).collect();
        let cv_r = Array1::from_shape_fn(v, |j| {
            let a = best[j];
            let d = (sh[[a, j]] * ss_y[j]).sqrt();
            if d > 0.0 {
                shy[[a, j]] / d
            } else {
                f64::NAN
            }
        });
        // The refit on all runs: each voxel's column of β at its α.
        let mut beta = Array2::<f64>::zeros((self.total.xty.nrows(), v));
        self.refit.project(&self.total.xty.slice(s![.., cols]), s);
        for ai in (0..na).filter(|ai| best.contains(ai)) {
            self.refit.beta(alphas[ai], s);
            for (c, _) in best.iter().enumerate().filter(|(_, &b)| b == ai) {
                beta.column_mut(c).assign(&s.beta.column(c));
            }
        }
        Pass {
            alpha: best.iter().map(|&a| alphas[a]).collect(),
            cv_r2: Array1::from_shape_fn(v, |j| r2_per_alpha[[best[j], j]]),
            cv_r,
            beta,
            r2_per_alpha,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Axis};
    use rand::{Rng, SeedableRng};

    /// Statistics of 3 runs of `scans(r)` scans, `p` regressors and `v` voxels, uniform on
    /// [−1, 1) (the design, then the data, run by run).
    fn random_runs(rng: &mut rand_chacha::ChaCha8Rng, scans: impl Fn(usize) -> usize, p: usize, v: usize) -> Vec<RunStats> {
        (0..3)
            .map(|r| {
                let x = Array2::from_shape_simple_fn((scans(r), p), || rng.random_range(-1.0..1.0));
                let y = Array2::from_shape_simple_fn((scans(r), v), || rng.random_range(-1.0..1.0));
                RunStats::from_block(x.view(), y.view())
            })
            .collect()
    }

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

    /// The buffered products and the row sweeps give ndarray's `dot` bit for bit, for one
    /// column (ndarray's unrolled dot) and many, with buffers left from another shape; a
    /// scratch reused across blocks of other widths gives what a fresh one gives.
    #[test]
    fn buffered_sums_equal_ndarray_dot_bit_for_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut s = CvScratch::default();
        let mut out = Vec::new();
        for (p, v) in [(12, 7), (12, 1), (1, 1), (9, 33), (17, 2), (1, 5)] {
            let a = Array2::from_shape_simple_fn((p, v), || rng.random_range(-1.0..1.0));
            let b = Array2::from_shape_simple_fn((p, v), || rng.random_range(-1.0..1.0));
            let g = Array2::from_shape_simple_fn((p, p), || rng.random_range(-1.0..1.0));
            let x = Array1::from_shape_simple_fn(p, || rng.random_range(-1.0..1.0));
            mul_into(&g.view(), &a.view(), &mut s.gb);
            assert_eq!(s.gb.mapv(f64::to_bits), g.dot(&a).mapv(f64::to_bits));
            mul_into(&g.t(), &a.view(), &mut s.vtc);
            assert_eq!(s.vtc.mapv(f64::to_bits), g.t().dot(&a).mapv(f64::to_bits));
            column_dots(a.view(), b.view(), &mut out);
            for (j, o) in out.iter().enumerate() {
                assert_eq!(o.to_bits(), a.column(j).dot(&b.column(j)).to_bits(), "p {p} v {v}");
            }
            weighted_rows(&x, &a, &mut out);
            assert_eq!(out.len(), v);
            for (j, o) in out.iter().enumerate() {
                assert_eq!(o.to_bits(), x.dot(&a.column(j)).to_bits(), "p {p} v {v}");
            }
        }
        let alphas = alpha_grid(-2.0, 3.0, 6);
        for v in [9, 1, 4] {
            let runs = random_runs(&mut rng, |r| 40 + r, 6, v);
            let (reused, fresh) = (ridge_cv_in(&runs, &alphas, &mut s).unwrap(), ridge_cv(&runs, &alphas).unwrap());
            assert_eq!(reused.beta.mapv(f64::to_bits), fresh.beta.mapv(f64::to_bits));
            assert_eq!(reused.cv_r.mapv(f64::to_bits), fresh.cv_r.mapv(f64::to_bits));
        }
    }

    /// However many voxels a piece takes through the α grid (the fewest allowed, a few,
    /// uneven, all at once), every value is the same by its bits; with 9 regressors, more
    /// than the 8 lanes of ndarray's unrolled dot, which a one-column piece would take.
    #[test]
    fn the_piece_size_changes_no_value() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
        let v = 2 * CACHE_VOXELS + 3;
        let runs = random_runs(&mut rng, |_| 25, 9, v);
        let alphas = alpha_grid(-2.0, 3.0, 6);
        let whole = ridge_cv_in(&runs, &alphas, &mut CvScratch::with_piece(usize::MAX)).unwrap();
        let bits = |f: &RidgeCvFit| {
            let mut b: Vec<u64> = f.alpha.iter().chain(&f.cv_r).chain(&f.cv_r2).map(|x| x.to_bits()).collect();
            b.extend(f.beta.iter().chain(&f.r2_per_alpha).map(|x| x.to_bits()));
            b
        };
        for piece in [0, 1, 2, 3, 4, 7, 1000, CACHE_VOXELS, v - 1] {
            let fit = ridge_cv_in(&runs, &alphas, &mut CvScratch::with_piece(piece)).unwrap();
            assert_eq!(bits(&fit), bits(&whole), "pieces of {piece}");
        }
        assert_eq!(bits(&ridge_cv(&runs, &alphas).unwrap()), bits(&whole));
    }

    /// More voxels than one pass holds (three even passes run side by side): every value
    /// equals, by its bits, that of a fit of its own block alone; no voxels, no values.
    #[test]
    fn voxels_beyond_one_block_are_fitted_as_their_block() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let v = 2 * CV_BLOCK + 1;
        let runs = random_runs(&mut rng, |_| 30, 4, v);
        let alphas = alpha_grid(-2.0, 3.0, 6);
        let none = ridge_cv(&runs.iter().map(|r| r.select(&[])).collect::<Vec<_>>(), &alphas).unwrap();
        assert_eq!((none.alpha.len(), none.beta.dim(), none.r2_per_alpha.dim()), (0, (4, 0), (6, 0)));
        let all = ridge_cv(&runs, &alphas).unwrap();
        let bits = |a: ndarray::ArrayView1<f64>| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(voxel_blocks(v).map(|b| b.len()).collect::<Vec<_>>(), [2731, 2731, 2731]);
        for v in [1, CV_BLOCK, CV_BLOCK + 1, 3 * CV_BLOCK + 1, CV_BLOCK * CV_BLOCK + 1] {
            let sizes: Vec<usize> = voxel_blocks(v).map(|b| b.len()).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(sizes.iter().sum::<usize>() == v && *hi <= CV_BLOCK && hi - lo <= 1 && sizes.len() == v.div_ceil(CV_BLOCK), "{v}: {lo}..{hi}");
        }
        assert_eq!(voxel_blocks(0).count(), 0);
        for block in voxel_blocks(v) {
            let cols: Vec<usize> = block.collect();
            let part = ridge_cv(&runs.iter().map(|r| r.select(&cols)).collect::<Vec<_>>(), &alphas).unwrap();
            let range = s![cols[0]..cols[0] + cols.len()];
            assert_eq!(bits(all.alpha.slice(range)), bits(part.alpha.view()));
            assert_eq!(bits(all.cv_r.slice(range)), bits(part.cv_r.view()));
            assert_eq!(bits(all.cv_r2.slice(range)), bits(part.cv_r2.view()));
            for (c, &j) in cols.iter().enumerate() {
                assert_eq!(bits(all.beta.column(j)), bits(part.beta.column(c)), "β of voxel {j}");
                assert_eq!(bits(all.r2_per_alpha.column(j)), bits(part.r2_per_alpha.column(c)));
            }
        }
    }
}
