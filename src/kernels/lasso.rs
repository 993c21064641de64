//! Sparse coding of signals against a fixed dictionary: the lasso
//!
//!   a* = argmin_a ½‖x − D·a‖² + λ‖a‖₁   (optionally a ≥ 0)
//!
//! by cyclic coordinate descent on the Gram form (Friedman et al. 2010): with G = DᵀD and
//! c = Dᵀx, coordinate k is set to S(c_k − Σ_{j≠k} G_kj·a_j, λ) / G_kk, S the soft threshold
//! (for a ≥ 0, max(·, 0)); or by LARS-lasso (Efron et al. 2004), the exact homotopy from
//! λ_max = max|c| down to λ: on the active set A the codes are a_A = G_AA⁻¹(c_A − λ·s_A), and
//! λ decreases until a correlation reaches the active level (that atom joins) or an active
//! code crosses zero (it leaves). The Gram matrix is computed once per dictionary and shared
//! by all signals; each signal is independent, so results do not depend on the thread count.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rayon::prelude::*;

use super::simd::axpy;

/// Settings of the lasso solver.
#[derive(Debug, Clone, Copy)]
pub struct LassoOptions {
    /// λ > 0, the ℓ1 penalty.
    pub lambda: f64,
    /// Constrain codes to be non-negative.
    pub positive: bool,
    /// Stop when the largest coordinate change in a sweep is below tol·max|a|.
    pub tol: f64,
    pub max_sweeps: usize,
    pub algorithm: LassoAlgorithm,
}

/// The lasso solver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LassoAlgorithm {
    CoordinateDescent,
    Lars,
}

impl Default for LassoOptions {
    fn default() -> Self {
        LassoOptions {
            lambda: 0.1,
            positive: false,
            tol: 1e-8,
            max_sweeps: 1000,
            algorithm: LassoAlgorithm::CoordinateDescent,
        }
    }
}

fn shrink(v: f64, lambda: f64, positive: bool) -> f64 {
    if positive {
        (v - lambda).max(0.0)
    } else {
        v.signum() * (v.abs() - lambda).max(0.0)
    }
}

/// The Gram matrix G = DᵀD as the coordinate descent reads it: column j contiguous (the
/// update of G·a after coordinate j changes reads all of it) and the diagonal. Built once
/// per dictionary and shared by every signal.
pub struct GramColumns {
    k: usize,
    cols: Vec<f64>,
    diag: Vec<f64>,
}

impl GramColumns {
    pub fn new(gram: ArrayView2<f64>) -> Self {
        let k = gram.nrows();
        GramColumns {
            k,
            cols: gram.t().iter().copied().collect(),
            diag: gram.diag().to_vec(),
        }
    }

    fn column(&self, j: usize) -> &[f64] {
        &self.cols[j * self.k..(j + 1) * self.k]
    }

    /// out = G·a, from the columns of a's non-zeros.
    fn product(&self, a: &[f64], out: &mut [f64]) {
        out.fill(0.0);
        for (j, &aj) in a.iter().enumerate().filter(|(_, &aj)| aj != 0.0) {
            axpy(out, self.column(j), aj);
        }
    }
}

/// Solves one lasso in place by cyclic coordinate descent: `a` holds the warm start and
/// receives the solution, `c` = Dᵀx; on return `ga` = G·a (scratch of length K). Stops when a
/// sweep changes no code by more than tol·max|a|; returns the number of sweeps. (An active
/// set, sweeping only the non-zeros between full sweeps, was measured slower here: at
/// K = 64 the first sweeps, which every coordinate takes part in, hold most of the work.)
pub fn lasso_cd(g: &GramColumns, c: &[f64], a: &mut [f64], ga: &mut Vec<f64>, opt: &LassoOptions) -> usize {
    ga.resize(g.k, 0.0);
    g.product(a, ga);
    for sweep in 1..=opt.max_sweeps {
        if cd_sweep(g, c, a, ga, opt) {
            return sweep;
        }
    }
    opt.max_sweeps
}

/// One pass of coordinate updates, G·a kept current. True when no code changed by more
/// than tol·max|a|.
fn cd_sweep(g: &GramColumns, c: &[f64], a: &mut [f64], ga: &mut [f64], opt: &LassoOptions) -> bool {
    let (mut max_change, mut max_coef) = (0.0f64, 0.0f64);
    for j in 0..g.k {
        let gjj = g.diag[j];
        if gjj <= 0.0 {
            continue;
        }
        let old = a[j];
        let rho = c[j] - ga[j] + gjj * old;
        // A zero code the threshold keeps at zero: nothing changes, and most codes are
        // such, so the division is skipped for them.
        let stays_zero = if opt.positive { rho <= opt.lambda } else { rho.abs() <= opt.lambda };
        if old == 0.0 && stays_zero {
            continue;
        }
        let new = shrink(rho, opt.lambda, opt.positive) / gjj;
        if new != old {
            let delta = new - old;
            axpy(ga, g.column(j), delta);
            a[j] = new;
            max_change = max_change.max(delta.abs());
        }
        max_coef = max_coef.max(new.abs());
    }
    max_change <= opt.tol * max_coef.max(f64::MIN_POSITIVE)
}


/// The lasso's optimality (KKT) conditions at `a`, with `ga` = G·a and `c` = Dᵀx: the
/// residual correlation c − G·a equals λ·sign(a_j) on the non-zeros and is at most λ in
/// size (at most λ, for a ≥ 0) elsewhere, to 1e-9·(1 + max|c|) (LARS's exact path meets
/// them to rounding, ~1e-14; a path broken by nearly dependent atoms does not).
fn optimal(a: &[f64], ga: &[f64], c: &[f64], opt: &LassoOptions) -> bool {
    let tol = 1e-9 * (1.0 + c.iter().fold(0.0f64, |m, v| m.max(v.abs())));
    a.iter().zip(ga).zip(c).all(|((&a, &ga), &c)| {
        let r = c - ga;
        if a != 0.0 {
            (r - opt.lambda * a.signum()).abs() <= tol
        } else if opt.positive {
            r <= opt.lambda + tol
        } else {
            r.abs() <= opt.lambda + tol
        }
    })
}

/// LARS-lasso for one signal from G = DᵀD and c = Dᵀx (see the module docs). Returns the
/// codes at `lambda`, or None when the path cannot be followed to it (active atoms linearly
/// dependent, so G_AA has no Cholesky factor; every atom left the active set; or the step
/// cap was reached): the caller then solves that signal by coordinate descent.
/// (Longer than ~80 lines on purpose: The LARS-lasso homotopy (Efron et al. 2004) is one loop; kept whole so it reads against the paper.)
pub fn lasso_lars(
    gram: ArrayView2<f64>,
    c: ArrayView1<f64>,
    lambda: f64,
    positive: bool,
) -> Option<Array1<f64>> {
    let k = c.len();
    let mut a = Array1::<f64>::zeros(k);
    let score = |v: f64| if positive { v } else { v.abs() };
    // corr = c − G·a, the correlations with the current residual.
    let mut corr = c.to_owned();
    let (mut j0, mut top) = (0, f64::NEG_INFINITY);
    for (j, &v) in corr.iter().enumerate() {
        if score(v) > top {
            (j0, top) = (j, score(v));
        }
    }
    if top <= lambda {
        return Some(a);
    }
    let mut level = top; // the current λ on the path
    let mut active = vec![j0];
    let mut signs = vec![if positive { 1.0 } else { corr[j0].signum() }];
    for _ in 0..(8 * k + 8) {
        // Direction: w = G_AA⁻¹·s_A (a_A moves by γ·w as λ drops by γ).
        let m = active.len();
        let g_aa = faer::Mat::<f64>::from_fn(m, m, |p, q| gram[[active[p], active[q]]]);
        let Ok(llt) = g_aa.llt(faer::Side::Lower) else {
            return None;
        };
        let mut w = faer::Mat::<f64>::from_fn(m, 1, |p, _| signs[p]);
        faer::linalg::solvers::Solve::solve_in_place(&llt, w.as_mut());
        // g_j = G[j, A]·w, the rate at which corr_j falls.
        let g: Vec<f64> = (0..k)
            .map(|j| (0..m).map(|p| gram[[j, active[p]]] * w[(p, 0)]).sum())
            .collect();
        let mut step = level - lambda;
        let mut event: Option<(bool, usize)> = None; // (joins, index)
        for j in (0..k).filter(|j| !active.contains(j)) {
            let mut candidates = vec![(level - corr[j]) / (1.0 - g[j])];
            if !positive {
                candidates.push((level + corr[j]) / (1.0 + g[j]));
            }
            for gamma in candidates {
                if gamma > 1e-14 && gamma < step {
                    (step, event) = (gamma, Some((true, j)));
                }
            }
        }
        for (p, &j) in active.iter().enumerate() {
            let gamma = -a[j] / w[(p, 0)];
            if gamma > 1e-14 && gamma < step {
                (step, event) = (gamma, Some((false, j)));
            }
        }
        for (p, &j) in active.iter().enumerate() {
            a[j] += step * w[(p, 0)];
        }
        for j in 0..k {
            corr[j] -= step * g[j];
        }
        level -= step;
        match event {
            None => return Some(a), // reached λ
            Some((true, j)) => {
                signs.push(if positive { 1.0 } else { corr[j].signum() });
                active.push(j);
            }
            Some((false, j)) => {
                let p = active.iter().position(|&q| q == j).expect("active");
                a[j] = 0.0;
                active.remove(p);
                signs.remove(p);
            }
        }
        if active.is_empty() {
            return None;
        }
    }
    None
}

/// Codes of many signals: `x` is T × N (signals as columns), `dict` T × K; returns K × N.
/// Cold starts; parallel over signals.
pub fn sparse_encode(dict: ArrayView2<f64>, x: ArrayView2<f64>, opt: &LassoOptions) -> Array2<f64> {
    let gram = dict.t().dot(&dict);
    let c = dict.t().dot(&x); // K × N
    encode_with_gram(gram.view(), c.view(), opt)
}

/// Codes from a precomputed Gram matrix (K × K) and correlations c = Dᵀx (K × N), by the
/// solver `opt.algorithm` names. Cold starts; parallel over signals.
pub fn encode_with_gram(
    gram: ArrayView2<f64>,
    c: ArrayView2<f64>,
    opt: &LassoOptions,
) -> Array2<f64> {
    encode_with_fit(gram, c, opt).0
}

/// [`encode_with_gram`], and for each signal ½aᵀGa − aᵀc: with ½‖x‖² and λ‖a‖₁ added, its
/// objective ½‖x − D·a‖² + λ‖a‖₁, without forming D·a (G·a is what the solver keeps).
pub fn encode_with_fit(
    gram: ArrayView2<f64>,
    c: ArrayView2<f64>,
    opt: &LassoOptions,
) -> (Array2<f64>, Vec<f64>) {
    let (k, n) = c.dim();
    let g = GramColumns::new(gram);
    let mut codes = vec![0.0; n * k]; // row i = code of signal i
    let mut quad = vec![0.0; n];
    let ct = c.t().as_standard_layout().into_owned(); // row i = Dᵀx_i
    codes
        .par_chunks_mut(k.max(1))
        .zip(ct.as_slice().expect("standard layout").par_chunks(k.max(1)))
        .zip(quad.par_iter_mut())
        .for_each_init(Vec::new, |ga, ((a, ci), q)| {
            match opt.algorithm {
                LassoAlgorithm::CoordinateDescent => {
                    lasso_cd(&g, ci, a, ga, opt);
                }
                LassoAlgorithm::Lars => {
                    let code = lasso_lars(gram, ArrayView1::from(ci), opt.lambda, opt.positive);
                    let solved = code.is_some();
                    if let Some(code) = code {
                        a.copy_from_slice(code.as_slice().expect("contiguous"));
                        ga.resize(k, 0.0);
                        g.product(a, ga);
                    }
                    if !solved || !optimal(a, ga, ci, opt) {
                        a.fill(0.0);
                        lasso_cd(&g, ci, a, ga, opt);
                    }
                }
            }
            *q = a.iter().zip(ga.iter()).zip(ci).map(|((&a, &ga), &c)| a * (0.5 * ga - c)).sum();
        });
    let codes = Array2::from_shape_vec((n, k), codes)
        .expect("n × k codes")
        .reversed_axes();
    (codes, quad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(t: usize, k: usize, seed: u64) -> Array2<f64> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_simple_fn((t, k), || rng.random_range(-1.0..1.0))
    }

    fn unit_columns(mut d: Array2<f64>) -> Array2<f64> {
        for mut col in d.columns_mut() {
            let n = col.dot(&col).sqrt();
            col /= n;
        }
        d
    }

    /// Closed form: with orthonormal atoms the lasso is the soft threshold of Dᵀx.
    #[test]
    fn orthonormal_dictionary_gives_the_soft_threshold() {
        // Orthonormal columns from Gram–Schmidt on a random matrix.
        let mut d = random(12, 5, 1);
        for j in 0..5 {
            for i in 0..j {
                let p = d.column(i).dot(&d.column(j));
                let di = d.column(i).to_owned();
                d.column_mut(j).scaled_add(-p, &di);
            }
            let n = d.column(j).dot(&d.column(j)).sqrt();
            d.column_mut(j).mapv_inplace(|v| v / n);
        }
        let x = random(12, 7, 2);
        for positive in [false, true] {
            let opt = LassoOptions {
                lambda: 0.3,
                positive,
                ..Default::default()
            };
            let codes = sparse_encode(d.view(), x.view(), &opt);
            let c = d.t().dot(&x);
            for ((k, i), &a) in codes.indexed_iter() {
                let expected = shrink(c[[k, i]], 0.3, positive);
                assert!((a - expected).abs() < 1e-12, "{a} vs {expected}");
            }
        }
    }

    /// Optimality (KKT): g = Dᵀ(x − D·a) equals λ·sign(a_k) where a_k ≠ 0 and |g_k| ≤ λ where
    /// a_k = 0 (for a ≥ 0: g_k = λ where a_k > 0, g_k ≤ λ where a_k = 0).
    #[test]
    fn solutions_satisfy_the_kkt_conditions() {
        for seed in 0..5 {
            let d = unit_columns(random(40, 16, 10 + seed));
            let x = random(40, 20, 20 + seed);
            for positive in [false, true] {
                let lambda = 0.05 + 0.1 * seed as f64;
                let opt = LassoOptions {
                    lambda,
                    positive,
                    tol: 1e-12,
                    max_sweeps: 10_000,
                    ..Default::default()
                };
                let codes = sparse_encode(d.view(), x.view(), &opt);
                let g = d.t().dot(&(&x - &d.dot(&codes)));
                let mut nonzero = 0;
                for ((k, i), &a) in codes.indexed_iter() {
                    let gk = g[[k, i]];
                    if a != 0.0 {
                        nonzero += 1;
                        assert!(
                            (gk - lambda * a.signum()).abs() < 1e-7,
                            "active {k},{i}: {gk}"
                        );
                        assert!(!positive || a > 0.0);
                    } else if positive {
                        assert!(gk <= lambda + 1e-7, "inactive {k},{i}: {gk}");
                    } else {
                        assert!(gk.abs() <= lambda + 1e-7, "inactive {k},{i}: {gk}");
                    }
                }
                assert!(nonzero > 0, "non-trivial problem");
            }
        }
    }

    /// LARS and coordinate descent solve the same strictly convex problems (random atoms,
    /// more samples than atoms): the same codes to 1e-7.
    #[test]
    fn lars_equals_coordinate_descent() {
        for seed in 0..4 {
            let d = unit_columns(random(30, 12, 40 + seed));
            let x = random(30, 15, 50 + seed);
            for positive in [false, true] {
                let base = LassoOptions {
                    lambda: 0.02 + 0.05 * seed as f64,
                    positive,
                    tol: 1e-13,
                    max_sweeps: 100_000,
                    ..Default::default()
                };
                let cd = sparse_encode(d.view(), x.view(), &base);
                let lars = sparse_encode(
                    d.view(),
                    x.view(),
                    &LassoOptions {
                        algorithm: LassoAlgorithm::Lars,
                        ..base
                    },
                );
                let diff = (&cd - &lars).iter().fold(0.0f64, |m, v| m.max(v.abs()));
                assert!(diff < 1e-7, "seed {seed} positive {positive}: {diff}");
            }
        }
    }

    /// Two identical atoms break LARS's path (G_AA singular, or nearly so after rounding);
    /// such a signal is solved by coordinate descent instead, to the same objective (the
    /// codes themselves are not unique).
    #[test]
    fn lars_falls_back_when_the_active_atoms_are_dependent() {
        let mut d = unit_columns(random(20, 6, 7));
        let first = d.column(0).to_owned();
        d.column_mut(1).assign(&first);
        let x = random(20, 10, 8);
        let base = LassoOptions { lambda: 0.01, tol: 1e-12, max_sweeps: 100_000, ..Default::default() };
        let objective = |codes: &Array2<f64>| {
            let r = &x - &d.dot(codes);
            0.5 * r.iter().map(|v| v * v).sum::<f64>() + 0.01 * codes.iter().map(|v| v.abs()).sum::<f64>()
        };
        let cd = sparse_encode(d.view(), x.view(), &base);
        let lars = sparse_encode(d.view(), x.view(), &LassoOptions { algorithm: LassoAlgorithm::Lars, ..base });
        assert!(lars.iter().all(|v| v.is_finite()));
        assert!((objective(&lars) - objective(&cd)).abs() <= 1e-9 * objective(&cd), "{} vs {}", objective(&lars), objective(&cd));
    }

    #[test]
    fn a_penalty_above_every_correlation_gives_zero_codes() {
        let d = unit_columns(random(10, 4, 3));
        let x = random(10, 3, 4);
        let cmax = d.t().dot(&x).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let codes = sparse_encode(
            d.view(),
            x.view(),
            &LassoOptions {
                lambda: cmax * 1.0001,
                ..Default::default()
            },
        );
        assert!(codes.iter().all(|&a| a == 0.0));
    }
}
