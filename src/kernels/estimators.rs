//! The subject-level β that a random-effects group test takes, from run statistics alone.
//!
//! With K atoms in one design, OLS (β = G⁻¹C) splits a signal that two correlated atoms
//! share between them, with a sign and share that change from subject to subject; the
//! group mean of such β cancels. Two estimators are stable under that correlation:
//!
//! - **ridge**: β = (G + αI)⁻¹C at each voxel's cross-validated α ([`super::cv::ridge_cv`]);
//!   shrinkage spreads a shared signal evenly over the atoms that carry it.
//! - **marginal**: each atom alone with the nuisance columns, β_j = c_j / g_jj. The run
//!   statistics hold atoms with the nuisance already projected out (Frisch–Waugh–Lovell),
//!   so the single-atom regression [x_j, nuisance] has exactly this coefficient: the
//!   diagonal of G and the row of C, no second pass over BOLD. A voxel driven by a pattern
//!   shows it in every atom correlated with that pattern, in proportion to the correlation.

use ndarray::Array2;

use super::ridge_stats::RunStats;

/// Which subject-level β enters the group test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Estimator {
    /// All atoms jointly by least squares.
    #[default]
    Ols,
    /// Ridge at each voxel's cross-validated α (needs ≥ 2 runs).
    Ridge,
    /// Each atom alone with the nuisance columns.
    Marginal,
}

impl Estimator {
    /// As a recipe spells it.
    pub fn name(self) -> &'static str {
        match self {
            Estimator::Ols => "ols",
            Estimator::Ridge => "ridge",
            Estimator::Marginal => "marginal",
        }
    }

    /// The subject map that holds this β (`beta` for OLS, `beta_ridge`, `beta_marginal`).
    pub fn map_name(self) -> &'static str {
        match self {
            Estimator::Ols => "beta",
            Estimator::Ridge => "beta_ridge",
            Estimator::Marginal => "beta_marginal",
        }
    }
}

/// Marginal β (K × V): β_jv = C_jv / G_jj, NaN for an atom with no variance left after the
/// nuisance columns (G_jj = 0), whose coefficient is undefined.
pub fn marginal_beta(stats: &RunStats) -> Array2<f64> {
    Array2::from_shape_fn(stats.xty.dim(), |(j, v)| {
        let g = stats.gram[[j, j]];
        if g > 0.0 {
            stats.xty[[j, v]] / g
        } else {
            f64::NAN
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::linalg::solvers::Solve;
    use ndarray::{concatenate, s, Axis};
    use rand::{Rng, SeedableRng};

    /// Least squares by the normal equations with faer (the brute-force reference).
    fn lstsq(x: &Array2<f64>, y: &Array2<f64>) -> Array2<f64> {
        let g = x.t().dot(x);
        let c = x.t().dot(y);
        let p = g.nrows();
        let gm = faer::Mat::<f64>::from_fn(p, p, |i, j| g[[i, j]]);
        let mut b = faer::Mat::<f64>::from_fn(p, c.ncols(), |i, j| c[[i, j]]);
        gm.llt(faer::Side::Lower).unwrap().solve_in_place(b.as_mut());
        Array2::from_shape_fn((p, c.ncols()), |(i, j)| b[(i, j)])
    }

    /// β_j from statistics of the residualised atoms equals the coefficient of x_j in the
    /// regression of y on [x_j, nuisance] over the raw scans, summed over two runs with
    /// their own nuisance (relative error 1e-10: both are f64 solves of ~60 scans).
    #[test]
    fn marginal_beta_is_the_single_atom_regression_with_nuisance() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
        let (k, v, q) = (4, 5, 3);
        let mut total: Option<RunStats> = None;
        let mut raw = Vec::new();
        for run in 0..2 {
            let n = 60 + 7 * run;
            let x = Array2::from_shape_simple_fn((n, k), || rng.random_range(-1.0..1.0));
            let mut nuis = Array2::from_shape_simple_fn((n, q), || rng.random_range(-1.0..1.0));
            nuis.column_mut(0).fill(1.0);
            let y = Array2::from_shape_simple_fn((n, v), || rng.random_range(-1.0..1.0))
                + x.slice(s![.., 0..1]).to_owned() * 0.7
                + x.slice(s![.., 1..2]).to_owned() * -0.4;
            // Residualise the atoms against this run's nuisance, as the reduction does.
            let xr = &x - &nuis.dot(&lstsq(&nuis, &x));
            let stats = RunStats::from_block(xr.view(), y.view());
            match &mut total {
                Some(t) => t.add(&stats),
                None => total = Some(stats),
            }
            raw.push((x, nuis, y));
        }
        let beta = marginal_beta(&total.unwrap());
        for j in 0..k {
            // One design over both runs: the atom, and each run's nuisance in its own block.
            let n: usize = raw.iter().map(|r| r.0.nrows()).sum();
            let mut design = Array2::<f64>::zeros((n, 1 + 2 * q));
            let mut row = 0;
            for (r, (x, nuis, _)) in raw.iter().enumerate() {
                let m = x.nrows();
                design.slice_mut(s![row..row + m, 0]).assign(&x.column(j));
                design
                    .slice_mut(s![row..row + m, 1 + r * q..1 + (r + 1) * q])
                    .assign(nuis);
                row += m;
            }
            let y = concatenate(Axis(0), &[raw[0].2.view(), raw[1].2.view()]).unwrap();
            let want = lstsq(&design, &y);
            for vx in 0..v {
                let (got, want) = (beta[[j, vx]], want[[0, vx]]);
                assert!((got - want).abs() <= 1e-10 * want.abs().max(1.0), "atom {j} voxel {vx}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn an_atom_without_variance_has_no_marginal_beta() {
        let x = Array2::from_shape_fn((10, 2), |(t, j)| if j == 0 { 0.0 } else { t as f64 - 4.5 });
        let y = Array2::from_shape_fn((10, 1), |(t, _)| t as f64);
        let beta = marginal_beta(&RunStats::from_block(x.view(), y.view()));
        assert!(beta[[0, 0]].is_nan());
        assert!((beta[[1, 0]] - 1.0).abs() < 1e-12);
    }
}
