//! Online dictionary learning (Mairal, Bach, Ponce & Sapiro, JMLR 2010, Algorithms 1–2,
//! mini-batch variant): samples are the columns of X (T × N, each centred and of unit ℓ2
//! norm), atoms the columns of D (T × K, unit norm), codes A (K × N) the lasso solutions
//! of ½‖x − D·a‖² + λ‖a‖₁.
//!
//! For each mini-batch X_b with codes A_b the sufficient statistics are updated with the
//! forgetting weight β of scikit-learn's `MiniBatchDictionaryLearning` (θ = (s+1)·b for the
//! first b steps, b² + s + 1 − b after; β = (θ + 1 − b)/(θ + 1)):
//!   S_A ← β·S_A + A_b·A_bᵀ / b,   S_B ← β·S_B + X_b·A_bᵀ / b,
//! then each atom takes one block-coordinate step d_k ← d_k + (S_B[:,k] − D·S_A[:,k]) / S_A[k,k]
//! and is renormalised; an atom with S_A[k,k] < 1e-6 is dead and is replaced by a sample of
//! the batch. The batch terms A_b·A_bᵀ and X_b·A_bᵀ are sums over samples, taken over each
//! code's non-zeros only (codes are sparse), and the batch loss comes from the G·a the lasso
//! keeps, so D·A is never formed. A batch is split into shards (2 by default) coded side by
//! side, whose partial statistics add up, in shard order, to the unsharded ones: the bits
//! depend on the shard count, not on the thread count.
//!
//! About 350 lines of algorithm and 200 of unit tests (closed forms, shard equality,
//! errors), kept beside the code they check.

use ndarray::{s, Array2, ArrayView2, ArrayViewMut1, ShapeBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::lasso::{encode_with_fit, LassoAlgorithm, LassoOptions};
use super::simd::axpy;

/// Settings of [`fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct OdlOptions {
    pub atoms: usize,
    pub lambda: f64,
    pub positive_codes: bool,
    pub batch: usize,
    pub max_epochs: usize,
    /// Stop when the mean objective of an epoch changes by less than this fraction.
    pub tol: f64,
    pub seed: u64,
    /// Number of shards a batch is split into, coded and summed side by side (1 = unsharded).
    pub shards: usize,
    /// The sparse coder of each mini-batch.
    pub lasso: LassoAlgorithm,
}

impl Default for OdlOptions {
    fn default() -> Self {
        OdlOptions {
            atoms: 64,
            lambda: 0.1,
            positive_codes: false,
            batch: 256,
            max_epochs: 20,
            tol: 1e-4,
            seed: 0,
            shards: 2,
            lasso: LassoAlgorithm::CoordinateDescent,
        }
    }
}

/// Additive partial statistics of some samples: Σ a·aᵀ (K × K) and Σ x·aᵀ (T × K).
#[derive(Debug, Clone, PartialEq)]
pub struct PartialStats {
    pub aa: Array2<f64>,
    pub xa: Array2<f64>,
    /// Σ (½‖x − D·a‖² + λ‖a‖₁), for the objective trace.
    pub loss: f64,
    pub n: usize,
}

impl PartialStats {
    pub fn zeros(t: usize, k: usize) -> Self {
        PartialStats {
            aa: Array2::zeros((k, k)),
            // Column-major: filled and read one atom's column at a time.
            xa: Array2::zeros((t, k).f()),
            loss: 0.0,
            n: 0,
        }
    }

    /// Adds another shard's statistics (callers add shards in a fixed order).
    pub fn add(&mut self, other: &PartialStats) {
        self.aa += &other.aa;
        self.xa += &other.xa;
        self.loss += other.loss;
        self.n += other.n;
    }
}

/// Codes a block of samples against `dict` (with its Gram matrix) and returns the block's
/// statistics and codes (K × n). The codes are sparse, so the statistics are sums over
/// their non-zeros: Σ a·aᵀ over pairs of non-zeros, Σ x·aᵀ one column of x per non-zero.
pub fn block_stats(
    dict: ArrayView2<f64>,
    gram: ArrayView2<f64>,
    x: ArrayView2<f64>,
    lasso: &LassoOptions,
) -> (PartialStats, Array2<f64>) {
    let (codes, loss) = code_block(dict, gram, x, lasso);
    let mut stats = PartialStats::zeros(x.nrows(), dict.ncols());
    let mut nz = Vec::with_capacity(dict.ncols());
    for (a, xi) in codes.columns().into_iter().zip(x.columns()) {
        nz.clear();
        nz.extend(a.iter().enumerate().filter(|(_, &v)| v != 0.0).map(|(j, &v)| (j, v)));
        for &(j, v) in &nz {
            for &(l, w) in &nz {
                stats.aa[[j, l]] += v * w;
            }
            let mut col = stats.xa.column_mut(j);
            match (col.as_slice_mut(), xi.as_slice()) {
                (Some(col), Some(xi)) => axpy(col, xi, v),
                (_, _) => col.scaled_add(v, &xi),
            }
        }
    }
    stats.loss = loss;
    stats.n = x.ncols();
    (stats, codes)
}

/// The codes (K × n) of a block of samples and their loss Σ ½‖x − D·a‖² + λ‖a‖₁, taken as
/// Σ ½‖x‖² + (½aᵀGa − aᵀDᵀx) + λ‖a‖₁ so that D·A is never formed.
fn code_block(
    dict: ArrayView2<f64>,
    gram: ArrayView2<f64>,
    x: ArrayView2<f64>,
    lasso: &LassoOptions,
) -> (Array2<f64>, f64) {
    let (codes, quad) = encode_with_fit(gram, dict.t().dot(&x).view(), lasso);
    // Summed in order, so the loss does not depend on the samples' layout.
    let half_norms: f64 = x
        .columns()
        .into_iter()
        .map(|c| 0.5 * squared_norm(c))
        .sum();
    let loss = half_norms
        + quad.iter().sum::<f64>()
        + lasso.lambda * codes.iter().map(|v| v.abs()).sum::<f64>();
    (codes, loss)
}

/// A fitted dictionary.
#[derive(Debug, Clone)]
pub struct OdlFit {
    /// T × K, unit-norm columns.
    pub atoms: Array2<f64>,
    /// Running statistics (forgetting-weighted), to continue fitting.
    pub stats_aa: Array2<f64>,
    pub stats_xa: Array2<f64>,
    /// Mean objective per sample of each epoch (codes from the dictionary of their step).
    pub objective_trace: Vec<f64>,
    pub epochs: usize,
    pub steps: usize,
}

/// Learns K atoms from the columns of `x` (already centred and normalised; see
/// [`normalise_columns`]). Deterministic for a seed and independent of the thread count.
/// Rejects (without fitting) settings that have no dictionary: K = 0 or more atoms than
/// samples (K ≤ N, the initial atoms are K distinct samples), a NaN, infinite or negative λ,
/// a batch or shard count of 0, a NaN or negative tolerance, and samples holding a NaN or
/// an infinity.
pub fn fit(x: ArrayView2<f64>, opt: &OdlOptions) -> crate::Result<OdlFit> {
    let (t, n) = x.dim();
    let k = opt.atoms;
    check_options(x, opt)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opt.seed);
    // Initial atoms: K distinct samples drawn at random.
    let init = rand::seq::index::sample(&mut rng, n, k);
    // Column-major: the atom updates read and write whole atoms.
    let mut dict = Array2::zeros((t, k).f());
    for (j, i) in init.iter().enumerate() {
        dict.column_mut(j).assign(&x.column(i));
    }
    normalise_atoms(&mut dict);
    let mut scratch = vec![0.0; t];
    let lasso = LassoOptions {
        lambda: opt.lambda,
        positive: opt.positive_codes,
        tol: 1e-6,
        max_sweeps: 500,
        algorithm: opt.lasso,
    };
    let (mut s_aa, mut s_xa) = (Array2::<f64>::zeros((k, k)), Array2::<f64>::zeros((t, k).f()));
    let mut trace = Vec::new();
    let b = opt.batch.clamp(1, n);
    let mut step = 0usize;
    let mut epochs = 0;
    let mut order: Vec<usize> = (0..n).collect();
    for _epoch in 0..opt.max_epochs {
        epochs += 1;
        // Fisher–Yates with the seeded generator: the same order for every thread count.
        for i in (1..n).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let mut epoch_loss = 0.0;
        for batch in order.chunks(b) {
            let xb = gather_columns(x, batch);
            let gram = dict.t().dot(&dict);
            // Shards are coded side by side and their statistics added in shard order:
            // the bits depend on the shard count, never on the thread count.
            let shard_len = batch.len().div_ceil(opt.shards.max(1));
            let parts: Vec<PartialStats> = (0..opt.shards.max(1))
                .into_par_iter()
                .filter_map(|shard| {
                    let lo = (shard * shard_len).min(batch.len());
                    let hi = ((shard + 1) * shard_len).min(batch.len());
                    (lo < hi).then(|| {
                        block_stats(dict.view(), gram.view(), xb.slice(s![.., lo..hi]), &lasso).0
                    })
                })
                .collect();
            let mut stats = PartialStats::zeros(t, k);
            parts.iter().for_each(|p| stats.add(p));
            epoch_loss += stats.loss;
            let bs = batch.len() as f64;
            let theta = if step < b - 1 {
                ((step + 1) * b) as f64
            } else {
                (b * b + step + 1 - b) as f64
            };
            let beta = (theta + 1.0 - bs) / (theta + 1.0);
            s_aa = s_aa * beta + stats.aa / bs;
            s_xa = s_xa * beta + stats.xa / bs;
            update_atoms(&mut dict, &s_aa, &s_xa, &xb, &mut rng, &mut scratch);
            step += 1;
        }
        let mean = epoch_loss / n as f64;
        let done = trace
            .last()
            .is_some_and(|&prev: &f64| (prev - mean).abs() <= opt.tol * prev.abs());
        trace.push(mean);
        if done {
            break;
        }
    }
    Ok(OdlFit {
        atoms: dict.as_standard_layout().into_owned(),
        stats_aa: s_aa,
        stats_xa: s_xa.as_standard_layout().into_owned(),
        objective_trace: trace,
        epochs,
        steps: step,
    })
}

/// The argument checks of [`fit`], with messages in words.
fn check_options(x: ArrayView2<f64>, opt: &OdlOptions) -> crate::Result<()> {
    use crate::Error::Invalid;
    let (n, k) = (x.ncols(), opt.atoms);
    if k == 0 {
        return Err(Invalid("a dictionary needs at least 1 atom".into()));
    }
    if k > n {
        return Err(Invalid(format!(
            "{k} atoms need at least {k} artificial neurons (samples); the responses hold {n}"
        )));
    }
    if !(opt.lambda.is_finite() && opt.lambda >= 0.0) {
        return Err(Invalid(format!(
            "the sparsity penalty λ must be a finite number ≥ 0, got {}",
            opt.lambda
        )));
    }
    if opt.batch == 0 {
        return Err(Invalid("the mini-batch needs at least 1 sample".into()));
    }
    if opt.shards == 0 {
        return Err(Invalid(
            "a mini-batch is split into at least 1 shard".into(),
        ));
    }
    if opt.tol.is_nan() || opt.tol < 0.0 {
        return Err(Invalid(format!(
            "the stopping tolerance must be ≥ 0, got {}",
            opt.tol
        )));
    }
    if let Some(j) = x
        .columns()
        .into_iter()
        .position(|c| c.iter().any(|v| !v.is_finite()))
    {
        return Err(Invalid(format!(
            "sample {j} holds a NaN or an infinity (normalise_columns zeroes such samples)"
        )));
    }
    Ok(())
}

/// One block-coordinate pass over the atoms (Mairal 2010, Algorithm 2), on a column-major
/// dictionary; `ds` is scratch of length T.
fn update_atoms(
    dict: &mut Array2<f64>,
    s_aa: &Array2<f64>,
    s_xa: &Array2<f64>,
    batch: &Array2<f64>,
    rng: &mut ChaCha8Rng,
    ds: &mut [f64],
) {
    let k = dict.ncols();
    for j in 0..k {
        let ajj = s_aa[[j, j]];
        if ajj < 1e-6 {
            let pick = rng.random_range(0..batch.ncols());
            dict.column_mut(j).assign(&batch.column(pick));
        } else {
            // ds = D·S_A[:, j], each row's sum taken in atom order (as ndarray's dot of a
            // row with a strided column), atom by atom so it runs down contiguous columns.
            ds.fill(0.0);
            for (m, d) in dict.columns().into_iter().enumerate() {
                axpy(ds, d.as_slice().expect("column-major atoms"), s_aa[[m, j]]);
            }
            let mut col = dict.column_mut(j);
            for ((d, &b), &y) in col.iter_mut().zip(s_xa.column(j)).zip(ds.iter()) {
                *d += (b - y) / ajj;
            }
        }
        normalise(dict.column_mut(j));
    }
}

fn normalise_atoms(dict: &mut Array2<f64>) {
    for col in dict.columns_mut() {
        normalise(col);
    }
}

/// Σ v², summed in order: the same bits for any layout (ndarray's `dot` of a strided
/// vector with itself, bit for bit; a contiguous one it would sum in 8 lanes).
fn squared_norm(v: ndarray::ArrayView1<f64>) -> f64 {
    v.iter().fold(0.0, |s, &x| s + x * x)
}

/// Scales a vector to unit ℓ2 norm (left as is when zero).
fn normalise(mut v: ArrayViewMut1<f64>) {
    let norm = squared_norm(v.view()).sqrt();
    if norm > 0.0 {
        v.mapv_inplace(|x| x / norm);
    }
}

/// The columns `idx` of `x`, column-major (each sample contiguous): whole columns copied
/// when `x` is column-major too (as the `basis` stage lays its matrix out), else row by row.
pub fn gather_columns(x: ArrayView2<f64>, idx: &[usize]) -> Array2<f64> {
    let t = x.nrows();
    let mut out = Array2::zeros((t, idx.len()).f());
    if let Some(xs) = x.t().as_slice() {
        let o = out.as_slice_memory_order_mut().expect("fresh array");
        for (o, &i) in o.chunks_exact_mut(t.max(1)).zip(idx) {
            o.copy_from_slice(&xs[i * t..(i + 1) * t]);
        }
        return out;
    }
    for (r, row) in x.rows().into_iter().enumerate() {
        for (b, &i) in idx.iter().enumerate() {
            out[[r, b]] = row[i];
        }
    }
    out
}

/// Why a sample (column) was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    NonFinite,
    Constant,
}

/// Centres each column and scales it to unit ℓ2 norm, in place, summing in order so the
/// result does not depend on the matrix's layout. Columns with a NaN or
/// infinity, or with no variance, cannot be normalised: they are set to zero and reported
/// as (column, reason).
pub fn normalise_columns(x: &mut Array2<f64>) -> Vec<(usize, SkipReason)> {
    let mut skipped = Vec::new();
    for (j, mut col) in x.columns_mut().into_iter().enumerate() {
        if col.iter().any(|v| !v.is_finite()) {
            col.fill(0.0);
            skipped.push((j, SkipReason::NonFinite));
            continue;
        }
        if col.is_empty() {
            skipped.push((j, SkipReason::Constant)); // no scans: nothing varies
            continue;
        }
        // 0 + Σ: ndarray's mean of a strided column, bit for bit.
        let mean = (0.0 + col.iter().fold(0.0, |s, &v| s + v)) / col.len() as f64;
        col.mapv_inplace(|v| v - mean);
        let norm = squared_norm(col.view()).sqrt();
        if norm <= 1e-12 * (1.0 + mean.abs()) * (col.len() as f64).sqrt() {
            col.fill(0.0);
            skipped.push((j, SkipReason::Constant));
        } else {
            col.mapv_inplace(|v| v / norm);
        }
    }
    skipped
}

/// ½‖X − D·A‖²_F + λ‖A‖₁ with A re-coded against `dict`: the objective the benchmarks
/// compare. Returns (objective, codes).
pub fn objective(
    dict: ArrayView2<f64>,
    x: ArrayView2<f64>,
    lasso: &LassoOptions,
) -> (f64, Array2<f64>) {
    let gram = dict.t().dot(&dict);
    let (codes, loss) = code_block(dict, gram.view(), x, lasso);
    (loss, codes)
}

/// Extends every atom to a new story with the codes held fixed: the least-squares atoms
/// for the new scans, D_new = X_new·Aᵀ·(A·Aᵀ + ε·I)⁻¹ (X_new: T_new × N samples of the new
/// story, A: K × N codes; ε ≥ 0 a ridge for atoms with few or collinear codes). Rows of the
/// old stories are not touched. Errors if A·Aᵀ + ε·I is not positive definite.
pub fn extend_atoms(
    x_new: ArrayView2<f64>,
    codes: ArrayView2<f64>,
    ridge: f64,
) -> crate::Result<Array2<f64>> {
    let k = codes.nrows();
    let mut gram = codes.dot(&codes.t());
    for j in 0..k {
        gram[[j, j]] += ridge;
    }
    let rhs = codes.dot(&x_new.t()); // K × T_new: (A·Aᵀ + εI)·D_newᵀ = A·X_newᵀ
    let g = faer::Mat::<f64>::from_fn(k, k, |i, j| gram[[i, j]]);
    let llt = g.llt(faer::Side::Lower).map_err(|_| {
        crate::Error::Invalid(
            "codes are degenerate: A·Aᵀ + εI is not positive definite (raise the ridge)".into(),
        )
    })?;
    let mut b = faer::Mat::<f64>::from_fn(k, rhs.ncols(), |i, j| rhs[[i, j]]);
    faer::linalg::solvers::Solve::solve_in_place(&llt, b.as_mut());
    Ok(Array2::from_shape_fn((rhs.ncols(), k), |(t, j)| b[(j, t)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::StandardNormal;

    /// X = D_true·A_true + noise (20 dB) with 2 of 12 atoms active per sample; the learned
    /// atoms match D_true up to sign and permutation. (scikit-learn 1.9's
    /// MiniBatchDictionaryLearning reaches 0.998 on this problem; 3 of 8 active is too dense
    /// for either to recover.)
    #[test]
    fn recovers_planted_atoms() {
        let (t, k, n, active) = (60, 12, 4000, 2);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut d_true =
            Array2::from_shape_simple_fn((t, k), || rng.sample::<f64, _>(StandardNormal));
        normalise_atoms(&mut d_true);
        let mut a_true = Array2::<f64>::zeros((k, n));
        for i in 0..n {
            for j in rand::seq::index::sample(&mut rng, k, active) {
                a_true[[j, i]] =
                    rng.random_range(0.5..1.5) * if rng.random::<bool>() { 1.0 } else { -1.0 };
            }
        }
        // Noise at 20 dB below the signal.
        let noise =
            Array2::from_shape_simple_fn((t, n), || 0.1 * rng.sample::<f64, _>(StandardNormal))
                * (active as f64).sqrt()
                / (t as f64).sqrt();
        let mut x = d_true.dot(&a_true) + noise;
        let skipped = normalise_columns(&mut x);
        assert!(skipped.is_empty());
        let fit = fit(
            x.view(),
            &OdlOptions {
                atoms: k,
                lambda: 0.2,
                batch: 128,
                max_epochs: 15,
                ..Default::default()
            },
        )
        .unwrap();
        // The samples are centred, so the atoms live in the centred space: compare with the
        // centred, renormalised true atoms.
        let mut d_centred = d_true.clone();
        normalise_columns(&mut d_centred);
        let cos = fit.atoms.t().dot(&d_centred); // K × K
        let best: f64 = (0..k)
            .map(|j| cos.column(j).iter().fold(0.0f64, |m, v| m.max(v.abs())))
            .sum::<f64>()
            / k as f64;
        eprintln!("mean best |cos| = {best:.4}");
        assert!(best >= 0.95, "mean best |cos| = {best}");
        // The objective trace decreases overall.
        assert!(fit.objective_trace.last() < fit.objective_trace.first());
    }

    /// 1, 2 and 4 shards per batch give the same atoms (statistics add up exactly but for
    /// floating-point reassociation).
    #[test]
    fn sharded_equals_unsharded() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut x =
            Array2::from_shape_simple_fn((30, 400), || rng.sample::<f64, _>(StandardNormal));
        normalise_columns(&mut x);
        let base = OdlOptions {
            atoms: 6,
            lambda: 0.1,
            batch: 64,
            max_epochs: 3,
            shards: 1,
            ..Default::default()
        };
        let one = fit(x.view(), &base).unwrap();
        for shards in [2, 4] {
            let many = fit(
                x.view(),
                &OdlOptions {
                    shards,
                    ..base.clone()
                },
            )
            .unwrap();
            let diff = (&one.atoms - &many.atoms)
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(diff <= 1e-6, "{shards} shards: {diff}");
        }
    }

    /// Series of no scans (a responses file with an empty value list) have nothing to
    /// vary: they are left out as constant, so the fit refuses the matrix rather than
    /// learning from NaN means.
    #[test]
    fn series_without_scans_are_constant() {
        let mut x = Array2::<f64>::zeros((0, 3));
        let skipped = normalise_columns(&mut x);
        assert_eq!(skipped, (0..3).map(|j| (j, SkipReason::Constant)).collect::<Vec<_>>());
    }

    /// The statistics are summed over the codes' non-zeros and the loss is taken from G·a:
    /// both equal the dense formulas (A·Aᵀ, X·Aᵀ, ½‖X − D·A‖² + λ‖A‖₁) to 1e-12 relative,
    /// i.e. rounding of sums of a few hundred terms of order 1.
    #[test]
    fn sparse_statistics_equal_the_dense_products() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let mut x = Array2::from_shape_simple_fn((30, 200), || rng.sample::<f64, _>(StandardNormal));
        normalise_columns(&mut x);
        let mut dict = Array2::from_shape_simple_fn((30, 10), || rng.sample::<f64, _>(StandardNormal));
        normalise_atoms(&mut dict);
        let gram = dict.t().dot(&dict);
        for positive in [false, true] {
            let lasso = LassoOptions { lambda: 0.05, positive, tol: 1e-10, max_sweeps: 5000, ..Default::default() };
            let (stats, codes) = block_stats(dict.view(), gram.view(), x.view(), &lasso);
            assert!(codes.iter().any(|&v| v != 0.0) && codes.iter().any(|&v| v == 0.0));
            let close = |a: &Array2<f64>, b: &Array2<f64>| {
                let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                (a - b).iter().all(|d| d.abs() <= 1e-12 * scale)
            };
            assert!(close(&stats.aa, &codes.dot(&codes.t())));
            assert!(close(&stats.xa, &x.dot(&codes.t())));
            let resid = &x - &dict.dot(&codes);
            let dense = 0.5 * resid.iter().map(|v| v * v).sum::<f64>()
                + 0.05 * codes.iter().map(|v| v.abs()).sum::<f64>();
            assert!((stats.loss - dense).abs() <= 1e-12 * dense, "{} vs {dense}", stats.loss);
        }
    }

    /// Shards run side by side but are added in shard order: one thread and two give the
    /// same bits.
    #[test]
    fn the_thread_count_changes_no_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut x = Array2::from_shape_simple_fn((20, 300), || rng.sample::<f64, _>(StandardNormal));
        normalise_columns(&mut x);
        let opt = OdlOptions { atoms: 6, batch: 50, max_epochs: 2, shards: 3, ..Default::default() };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let f = pool.install(|| fit(x.view(), &opt).unwrap());
            f.atoms.iter().chain(&f.stats_xa).map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(2));
    }

    /// `basis` lays its matrix out column-major (each sample contiguous) so that batches
    /// are gathered by memcpy; the fit and the normalisation must give the same bits as on
    /// a row-major matrix, whose summation orders the golden record pins.
    #[test]
    fn the_layout_of_the_samples_changes_no_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let raw = Array2::from_shape_simple_fn((40, 500), || rng.sample::<f64, _>(StandardNormal));
        let mut rows = raw.clone();
        let mut cols = Array2::zeros(raw.dim().f());
        cols.assign(&raw);
        normalise_columns(&mut rows);
        normalise_columns(&mut cols);
        assert!(rows.iter().zip(cols.iter()).all(|(a, b)| a.to_bits() == b.to_bits()));
        let opt = OdlOptions {
            atoms: 8,
            batch: 64,
            max_epochs: 2,
            ..Default::default()
        };
        let (a, b) = (fit(rows.view(), &opt).unwrap(), fit(cols.view(), &opt).unwrap());
        let bits = |f: &OdlFit| {
            f.atoms
                .iter()
                .chain(&f.stats_aa)
                .chain(&f.stats_xa)
                .chain(&f.objective_trace)
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&a), bits(&b));
        let picked = [499, 3, 250, 3];
        let (gr, gc) = (gather_columns(rows.view(), &picked), gather_columns(cols.view(), &picked));
        assert_eq!(gr, rows.select(ndarray::Axis(1), &picked));
        assert_eq!(gc, gr);
        assert!(gr.t().is_standard_layout() && gc.t().is_standard_layout());
        let lasso = LassoOptions { lambda: 0.1, tol: 1e-6, ..Default::default() };
        let (lr, lc) = (objective(a.atoms.view(), rows.view(), &lasso).0, objective(a.atoms.view(), cols.view(), &lasso).0);
        assert_eq!(lr.to_bits(), lc.to_bits());
    }

    /// Noise-free new scans generated by known atoms with the fitted codes are recovered
    /// exactly (closed form of least squares).
    #[test]
    fn extension_in_time_recovers_atoms_that_fit_the_codes() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let codes = Array2::from_shape_simple_fn((5, 300), || {
            if rng.random::<f64>() < 0.3 {
                rng.sample::<f64, _>(StandardNormal)
            } else {
                0.0
            }
        });
        let d_new = Array2::from_shape_simple_fn((40, 5), || rng.sample::<f64, _>(StandardNormal));
        let x_new = d_new.dot(&codes);
        let got = extend_atoms(x_new.view(), codes.view(), 0.0).unwrap();
        let err = (&got - &d_new).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(err < 1e-10, "{err}");
        assert!(extend_atoms(x_new.view(), Array2::<f64>::zeros((5, 300)).view(), 0.0).is_err());
    }

    /// More atoms than samples, and settings without a dictionary, are errors in words (the
    /// first used to be an assertion that panicked); valid settings on the same data fit.
    #[test]
    fn impossible_settings_are_errors_not_panics() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut x = Array2::from_shape_simple_fn((8, 10), || rng.sample::<f64, _>(StandardNormal));
        assert!(normalise_columns(&mut x).is_empty());
        let small = OdlOptions {
            atoms: 3,
            batch: 4,
            max_epochs: 2,
            ..Default::default()
        };
        let err = fit(
            x.view(),
            &OdlOptions {
                atoms: 64,
                ..small.clone()
            },
        )
        .unwrap_err();
        assert!(matches!(err, crate::Error::Invalid(_)));
        assert_eq!(
            err.to_string(),
            "64 atoms need at least 64 artificial neurons (samples); the responses hold 10"
        );
        let bad = [
            OdlOptions {
                atoms: 0,
                ..small.clone()
            },
            OdlOptions {
                lambda: f64::NAN,
                ..small.clone()
            },
            OdlOptions {
                lambda: f64::INFINITY,
                ..small.clone()
            },
            OdlOptions {
                lambda: -0.1,
                ..small.clone()
            },
            OdlOptions {
                batch: 0,
                ..small.clone()
            },
            OdlOptions {
                shards: 0,
                ..small.clone()
            },
            OdlOptions {
                tol: f64::NAN,
                ..small.clone()
            },
            OdlOptions {
                tol: -1.0,
                ..small.clone()
            },
        ];
        for opt in &bad {
            assert!(
                matches!(fit(x.view(), opt), Err(crate::Error::Invalid(_))),
                "{opt:?} was accepted"
            );
        }
        let fitted = fit(x.view(), &small).unwrap();
        assert_eq!(fitted.atoms.dim(), (8, 3));
        // All 10 samples as atoms is the largest dictionary.
        assert!(fit(
            x.view(),
            &OdlOptions {
                atoms: 10,
                ..small.clone()
            }
        )
        .is_ok());
        x[[2, 7]] = f64::NAN;
        let err = fit(x.view(), &small).unwrap_err();
        assert!(err.to_string().contains("sample 7"), "{err}");
    }

    #[test]
    fn constant_and_nan_columns_are_reported() {
        let mut x = Array2::from_shape_fn((5, 4), |(i, j)| (i * (j + 1)) as f64);
        x.column_mut(0).fill(3.0);
        x[[2, 2]] = f64::NAN;
        let skipped = normalise_columns(&mut x);
        assert_eq!(
            skipped,
            vec![(0, SkipReason::Constant), (2, SkipReason::NonFinite)]
        );
        assert!((x.column(1).dot(&x.column(1)) - 1.0).abs() < 1e-12);
        assert!(x.column(1).sum().abs() < 1e-12);
    }
}
