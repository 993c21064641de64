//! Ordinary least squares for every voxel from the sufficient statistics of
//! [`super::ridge_stats::RunStats`]: β = G⁻¹·C, σ² = RSS/(n − p), the t statistic of each
//! regressor t_j = β_j / √(σ²·(G⁻¹)_jj) and its two-sided p value from Student's t with
//! n − p degrees of freedom. A design whose Gram matrix has a condition number above the
//! limit is refused with that number, not silently solved.

use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use ndarray::{Array1, Array2};

use super::ridge_stats::RunStats;

/// Designs with cond(XᵀX) above this are refused.
pub const MAX_CONDITION: f64 = 1e10;

/// OLS results, p × V (coefficients, t) and V (residual variance); p values on demand.
#[derive(Debug, Clone)]
pub struct OlsFit {
    pub beta: Array2<f64>,
    pub t: Array2<f64>,
    pub sigma2: Array1<f64>,
    pub dof: usize,
    pub condition: f64,
}

/// Why OLS could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GlmError {
    #[error("the design is ill-conditioned: cond(XᵀX) = {0:.3e} exceeds {MAX_CONDITION:.0e} (collinear or constant regressors?)")]
    IllConditioned(f64),
    #[error("{n} scans leave no residual degrees of freedom for {p} regressors")]
    NoDegreesOfFreedom { n: usize, p: usize },
}

/// The condition number of a symmetric positive semi-definite matrix, cond(G) = λ_max / λ_min
/// (ratio of its extreme eigenvalues). +∞, which the conditioning guard of [`ols_absorbed`]
/// rejects, when G is singular or indefinite (λ_min ≤ 0), has a NaN or infinite entry, or
/// its eigenvalues cannot be computed (the solver fails or returns a non-finite value).
pub fn condition_number(gram: &Array2<f64>) -> f64 {
    if gram.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let p = gram.nrows();
    let m = Mat::<f64>::from_fn(p, p, |i, j| gram[[i, j]]);
    let Ok(eig) = m.self_adjoint_eigenvalues(Side::Lower) else {
        return f64::INFINITY;
    };
    if eig.iter().any(|e| !e.is_finite()) {
        return f64::INFINITY;
    }
    let (lo, hi) = eig.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &e| {
        (lo.min(e), hi.max(e))
    });
    if lo <= 0.0 {
        f64::INFINITY
    } else {
        hi / lo
    }
}

/// OLS of every voxel of `stats`.
pub fn ols(stats: &RunStats) -> Result<OlsFit, GlmError> {
    ols_absorbed(stats, 0)
}

/// OLS on statistics from which `absorbed` nuisance regressors were already projected out
/// (Frisch–Waugh–Lovell): the same β, with the residual degrees of freedom n − p − absorbed
/// of the full model.
pub fn ols_absorbed(stats: &RunStats, absorbed: usize) -> Result<OlsFit, GlmError> {
    let (p, v) = stats.xty.dim();
    if stats.n <= p + absorbed {
        return Err(GlmError::NoDegreesOfFreedom {
            n: stats.n,
            p: p + absorbed,
        });
    }
    let condition = condition_number(&stats.gram);
    if condition.is_nan() || condition > MAX_CONDITION {
        return Err(GlmError::IllConditioned(condition));
    }
    let g = Mat::<f64>::from_fn(p, p, |i, j| stats.gram[[i, j]]);
    let llt = g
        .llt(Side::Lower)
        .map_err(|_| GlmError::IllConditioned(condition))?;
    let mut b = Mat::<f64>::from_fn(p, v, |i, j| stats.xty[[i, j]]);
    llt.solve_in_place(b.as_mut());
    let beta = Array2::from_shape_fn((p, v), |(i, j)| b[(i, j)]);
    let mut inv = Mat::<f64>::identity(p, p);
    llt.solve_in_place(inv.as_mut());
    let dof = stats.n - p - absorbed;
    let sigma2 = stats.rss(beta.view()).mapv(|r| r.max(0.0) / dof as f64);
    let t = Array2::from_shape_fn((p, v), |(i, j)| {
        beta[[i, j]] / (sigma2[j] * inv[(i, i)]).sqrt()
    });
    Ok(OlsFit {
        beta,
        t,
        sigma2,
        dof,
        condition,
    })
}

impl OlsFit {
    /// Two-sided p values of the t statistics (Student's t, n − p dof; NaN for a non-finite
    /// t), in parallel: the incomplete beta function dominates the cost of a whole-brain fit.
    pub fn p_values(&self) -> Array2<f64> {
        let dist = super::tdist::TwoSided::new(self.dof as f64);
        self.map_t(self.t.nrows(), |t| if t.is_finite() { dist.p(t) } else { f64::NAN })
    }

    /// z with the same two-sided p as the t of the first `rows` regressors, signed as t, as
    /// a float32 map stores it: each value is `signed_z(t, p) as f32` bit for bit, widened
    /// back to f64 (computed at table speed by [`super::t_to_z::TToZ`]).
    pub fn z_map(&self, rows: usize) -> Array2<f64> {
        let z = super::t_to_z::TToZ::new(self.dof as f64);
        self.map_t(rows, |t| f64::from(z.z_f32(t)))
    }

    /// `f(t)` of every t of the first `rows` regressors, in parallel.
    fn map_t(&self, rows: usize, f: impl Fn(f64) -> f64 + Sync) -> Array2<f64> {
        use rayon::prelude::*;
        let t = self.t.slice(ndarray::s![..rows, ..]);
        let t = t.as_standard_layout();
        let values: Vec<f64> = t.as_slice().expect("standard layout").par_iter().map(|&t| f(t)).collect();
        Array2::from_shape_vec(t.dim(), values).expect("same shape")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Axis;
    use rand::{Rng, SeedableRng};

    /// Against a direct QR solution of the full least-squares problem (another algorithm on
    /// the raw data) and the textbook t formula; p against the closed form of Student's t
    /// with 2 degrees of freedom, P(|T| > t) = 1 − t/√(t² + 2).
    #[test]
    fn ols_from_statistics_equals_direct_least_squares() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let (n, p, v) = (80, 4, 12);
        let x = Array2::from_shape_fn((n, p), |(_, j)| {
            if j == 0 {
                1.0
            } else {
                rng.random_range(-1.0..1.0)
            }
        });
        let y = Array2::from_shape_fn((n, v), |(t, j)| {
            (x[[t, 1]] * j as f64 + rng.random_range(-1.0..1.0)) as f32
        });
        let fit = ols(&RunStats::from_block(x.view(), y.view())).unwrap();
        let xm = Mat::<f64>::from_fn(n, p, |i, j| x[[i, j]]);
        let qr = xm.qr();
        let ym = Mat::<f64>::from_fn(n, v, |i, j| y[[i, j]] as f64);
        let direct = faer::linalg::solvers::SolveLstsq::solve_lstsq(&qr, &ym);
        for i in 0..p {
            for j in 0..v {
                assert!(
                    (fit.beta[[i, j]] - direct[(i, j)]).abs() < 1e-9,
                    "β[{i},{j}]"
                );
            }
        }
        let resid = &y.mapv(f64::from) - &x.dot(&fit.beta);
        let s2 = resid.mapv(|r| r * r).sum_axis(Axis(0)) / (n - p) as f64;
        for j in 0..v {
            assert!((s2[j] - fit.sigma2[j]).abs() < 1e-10 * s2[j]);
        }
        assert_eq!(fit.dof, n - p);
        // Student t with 2 dof: closed-form tail.
        let small = RunStats::from_block(
            x.slice(ndarray::s![..6, ..]).view(),
            y.slice(ndarray::s![..6, ..]).view(),
        );
        let f = ols(&small).unwrap();
        for (&t, &pv) in f.t.iter().zip(&f.p_values()) {
            let closed = 1.0 - t.abs() / (t * t + 2.0).sqrt();
            assert!((pv - closed).abs() < 1e-9, "t = {t}: {pv} vs {closed}");
        }
    }

    #[test]
    fn collinear_designs_and_too_few_scans_are_refused() {
        let x = Array2::from_shape_fn((20, 3), |(t, j)| {
            if j == 2 {
                2.0 * t as f64
            } else if j == 1 {
                t as f64
            } else {
                1.0
            }
        });
        let y = Array2::<f32>::ones((20, 2));
        assert!(matches!(
            ols(&RunStats::from_block(x.view(), y.view())),
            Err(GlmError::IllConditioned(_))
        ));
        let x = Array2::from_shape_fn((3, 3), |(t, j)| ((t + 1) * (j + 2)) as f64 % 5.0);
        assert!(matches!(
            ols(&RunStats::from_block(
                x.view(),
                Array2::<f32>::ones((3, 1)).view()
            )),
            Err(GlmError::NoDegreesOfFreedom { .. })
        ));
    }

    /// Statistics of a well-posed design (n = 40, p = 3) whose Gram matrix a test can spoil.
    fn posed() -> RunStats {
        let x = Array2::from_shape_fn((40, 3), |(t, j)| match j {
            0 => 1.0,
            1 => t as f64,
            _ => ((t * 7) % 5) as f64,
        });
        let y = Array2::from_shape_fn((40, 2), |(t, j)| (t + j) as f32);
        RunStats::from_block(x.view(), y.view())
    }

    /// A Gram matrix with a NaN or infinite entry has no condition number: +∞, and OLS
    /// refuses it with that number. (The eigen-solver's failure on it used to become an
    /// empty eigenvalue list and a condition of 0, which the guard let through.)
    /// A block none of whose voxels is valid in every run is fitted as no voxels: empty
    /// maps, not a panic.
    #[test]
    fn no_voxels_give_an_empty_fit() {
        let fit = ols(&posed().select(&[])).unwrap();
        assert_eq!((fit.beta.dim(), fit.t.dim(), fit.sigma2.len()), ((3, 0), (3, 0), 0));
    }

    #[test]
    fn non_finite_gram_is_refused_as_ill_conditioned() {
        assert!(ols(&posed()).is_ok());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut stats = posed();
            stats.gram[[1, 2]] = bad;
            stats.gram[[2, 1]] = bad;
            match ols(&stats) {
                Err(GlmError::IllConditioned(c)) => assert_eq!(c, f64::INFINITY, "entry {bad}"),
                other => panic!("entry {bad}: {other:?}"),
            }
            assert_eq!(condition_number(&stats.gram), f64::INFINITY, "entry {bad}");
        }
        // A NaN regressor reaches the Gram matrix through the statistics.
        let mut x = Array2::from_shape_fn((40, 2), |(t, j)| if j == 0 { 1.0 } else { t as f64 });
        x[[5, 1]] = f64::NAN;
        let stats = RunStats::from_block(x.view(), Array2::<f32>::ones((40, 1)).view());
        assert!(matches!(ols(&stats), Err(GlmError::IllConditioned(c)) if c == f64::INFINITY));
    }

    /// Singular (a zero or duplicated regressor) and indefinite Gram matrices have λ_min ≤ 0:
    /// condition +∞, refused by OLS; a regular one keeps its finite λ_max / λ_min.
    #[test]
    fn singular_and_indefinite_grams_are_refused() {
        let good = posed();
        let c = condition_number(&good.gram);
        assert!(c.is_finite() && c >= 1.0, "{c}");
        // Singular: the third regressor is zero, so its row and column of G are.
        let mut singular = posed();
        singular.gram.row_mut(2).fill(0.0);
        singular.gram.column_mut(2).fill(0.0);
        assert_eq!(condition_number(&singular.gram), f64::INFINITY);
        assert!(matches!(
            ols(&singular),
            Err(GlmError::IllConditioned(c)) if c == f64::INFINITY
        ));
        // Indefinite (not a Gram matrix at all): eigenvalues 3 and −1.
        let mut indefinite = posed();
        indefinite.gram = ndarray::array![[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        assert_eq!(condition_number(&indefinite.gram), f64::INFINITY);
        assert!(matches!(
            ols(&indefinite),
            Err(GlmError::IllConditioned(c)) if c == f64::INFINITY
        ));
    }

    /// Frisch–Waugh–Lovell: OLS of atoms on data with the nuisance columns (intercept and a
    /// slope) projected out, with those 2 parameters absorbed, equals the atoms' β and t of
    /// the full design (closed-form identity; 1e-9 for rounding).
    #[test]
    fn absorbed_nuisance_equals_the_full_design() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let (n, v) = (60, 5);
        let atoms = Array2::from_shape_fn((n, 2), |_| rng.random_range(-1.0..1.0));
        let nuisance = Array2::from_shape_fn((n, 2), |(t, j)| if j == 0 { 1.0 } else { t as f64 });
        let y = Array2::from_shape_fn((n, v), |(t, j)| {
            atoms[[t, 0]] * j as f64 + 0.01 * t as f64 + rng.random_range(-1.0..1.0)
        });
        let full_x = ndarray::concatenate(Axis(1), &[atoms.view(), nuisance.view()]).unwrap();
        let full = ols(&RunStats::from_block(full_x.view(), y.view())).unwrap();
        let q = crate::kernels::design::nuisance_basis(&nuisance);
        let xr = crate::kernels::design::project_out(&q, &atoms);
        let yr = crate::kernels::design::project_out(&q, &y);
        let fwl = ols_absorbed(&RunStats::from_block(xr.view(), yr.view()), 2).unwrap();
        assert_eq!(fwl.dof, full.dof);
        for a in 0..2 {
            for j in 0..v {
                assert!((fwl.beta[[a, j]] - full.beta[[a, j]]).abs() < 1e-9);
                assert!(
                    (fwl.t[[a, j]] - full.t[[a, j]]).abs() < 1e-9 * full.t[[a, j]].abs().max(1.0)
                );
            }
        }
    }
}
