//! Design matrices of the encoding stage: fixed regressors (the atoms), optional confounds,
//! and per run a slow-drift basis and an intercept, laid out so that every run's design has
//! the same columns (a run's drift and intercept columns are zero in the other runs) and
//! run statistics can be summed.

use ndarray::{s, Array2};

/// The DCT-II basis function k of a run of n scans at scan t, cos(π·k·(t + ½)/n): the slow
/// drifts that SPM's and nilearn's cosine high-pass filters model.
pub fn cosine(k: usize, t: usize, n: usize) -> f64 {
    (std::f64::consts::PI * k as f64 * (t as f64 + 0.5) / n as f64).cos()
}

/// nilearn's `create_cosine_drift(high_pass, frame_times)`: with dt the mean frame spacing,
/// order = min(n − 1, ⌊2·n·high_pass·dt⌋) columns √(2/n)·cos(π·k·(t + ½)/n), k = 1..order,
/// then a constant column.
pub fn cosine_drift(n: usize, tr: f64, high_pass_hz: f64) -> Array2<f64> {
    let order = ((2.0 * n as f64 * high_pass_hz * tr).floor() as usize).min(n.saturating_sub(1));
    let norm = (2.0 / n as f64).sqrt();
    Array2::from_shape_fn((n, order + 1), |(t, k)| {
        if k == order {
            1.0
        } else {
            norm * cosine(k + 1, t, n)
        }
    })
}

/// One run's inputs: regressors (T × K) and confounds (T × C, C may be 0).
pub struct RunInputs {
    pub regressors: Array2<f64>,
    pub confounds: Array2<f64>,
    pub tr: f64,
}

/// Per-run designs with shared columns: [regressors | confounds | for each run: drift
/// cosines, intercept]. Returns the designs and the column names. Rejects (as
/// [`crate::Error::Invalid`]) runs whose numbers of regressors or confounds differ from the
/// first run's, and confounds with another number of rows than the run has scans.
pub fn build(
    runs: &[RunInputs],
    high_pass_hz: Option<f64>,
) -> crate::Result<(Vec<Array2<f64>>, Vec<String>)> {
    let k = runs.first().map_or(0, |r| r.regressors.ncols());
    let c = runs.first().map_or(0, |r| r.confounds.ncols());
    if let Some((i, _)) = runs
        .iter()
        .enumerate()
        .find(|(_, r)| r.regressors.ncols() != k || r.confounds.ncols() != c)
    {
        return Err(crate::Error::Invalid(format!(
            "run {} has {} regressors and {} confounds, run 1 has {k} and {c}",
            i + 1,
            runs[i].regressors.ncols(),
            runs[i].confounds.ncols()
        )));
    }
    // Each run's own block: its drift cosines (without nilearn's constant) and an intercept.
    let blocks: Vec<Array2<f64>> = runs
        .iter()
        .map(|r| {
            let n = r.regressors.nrows();
            match high_pass_hz {
                Some(hp) => cosine_drift(n, r.tr, hp),
                None => Array2::ones((n, 1)),
            }
        })
        .collect();
    let mut names: Vec<String> = (0..k)
        .map(|j| format!("atom{j}"))
        .chain((0..c).map(|j| format!("confound{j}")))
        .collect();
    for (r, b) in blocks.iter().enumerate() {
        names.extend((1..b.ncols()).map(|d| format!("run{}_drift{d}", r + 1)));
        names.push(format!("run{}_intercept", r + 1));
    }
    let p = names.len();
    let mut designs = Vec::with_capacity(runs.len());
    let mut col = k + c;
    for (r, b) in runs.iter().zip(&blocks) {
        let n = r.regressors.nrows();
        if r.confounds.nrows() != n && c > 0 {
            return Err(crate::Error::Invalid(format!(
                "confounds have {} rows for a run of {n} scans",
                r.confounds.nrows()
            )));
        }
        let mut d = Array2::zeros((n, p));
        d.slice_mut(s![.., ..k]).assign(&r.regressors);
        if c > 0 {
            d.slice_mut(s![.., k..k + c]).assign(&r.confounds);
        }
        d.slice_mut(s![.., col..col + b.ncols()]).assign(b);
        col += b.ncols();
        designs.push(d);
    }
    Ok((designs, names))
}

/// Removes from each column of `y` (T × V) its least-squares fit on the columns of `n`
/// (T × q): y − N·(NᵀN)⁻¹·Nᵀy. Errors ([`crate::Error::Invalid`]) if NᵀN is singular.
pub fn project_out(n: &Array2<f64>, y: &Array2<f64>) -> crate::Result<Array2<f64>> {
    use faer::linalg::solvers::Solve;
    let q = n.ncols();
    if q == 0 {
        return Ok(y.clone());
    }
    let g = n.t().dot(n);
    let gm = faer::Mat::<f64>::from_fn(q, q, |i, j| g[[i, j]]);
    let llt = gm
        .llt(faer::Side::Lower)
        .map_err(|_| crate::Error::Invalid("nuisance regressors are collinear".into()))?;
    let c = n.t().dot(y);
    let mut b = faer::Mat::<f64>::from_fn(q, y.ncols(), |i, j| c[[i, j]]);
    llt.solve_in_place(b.as_mut());
    let coef = Array2::from_shape_fn((q, y.ncols()), |(i, j)| b[(i, j)]);
    Ok(y - &n.dot(&coef))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_share_columns_and_own_their_drift_and_intercept() {
        let runs: Vec<RunInputs> = [30, 36]
            .iter()
            .map(|&n| RunInputs {
                regressors: Array2::from_shape_fn((n, 2), |(t, j)| (t * (j + 1)) as f64),
                confounds: Array2::zeros((n, 0)),
                tr: 2.0,
            })
            .collect();
        let (designs, names) = build(&runs, Some(0.01)).unwrap();
        // 2 atoms; run 1: ⌊2·30·0.01·2⌋ = 1 cosine + intercept; run 2: ⌊1.44⌋ = 1 + intercept.
        assert_eq!(
            names,
            [
                "atom0",
                "atom1",
                "run1_drift1",
                "run1_intercept",
                "run2_drift1",
                "run2_intercept"
            ]
        );
        assert!(
            designs[0].column(5).iter().all(|&v| v == 0.0)
                && designs[1].column(3).iter().all(|&v| v == 0.0)
        );
        assert!(designs[1].column(5).iter().all(|&v| v == 1.0));
        assert!(build(
            &[
                RunInputs {
                    regressors: Array2::zeros((5, 3)),
                    confounds: Array2::zeros((5, 0)),
                    tr: 2.0
                },
                RunInputs {
                    regressors: Array2::zeros((5, 2)),
                    confounds: Array2::zeros((5, 0)),
                    tr: 2.0
                }
            ],
            None
        )
        .is_err());
        let err = build(
            &[RunInputs {
                regressors: Array2::zeros((5, 2)),
                confounds: Array2::zeros((4, 1)),
                tr: 2.0,
            }],
            None,
        )
        .unwrap_err();
        assert!(matches!(err, crate::Error::Invalid(_)));
        assert_eq!(
            err.to_string(),
            "confounds have 4 rows for a run of 5 scans"
        );
    }

    /// Collinear nuisance regressors are an error of the crate's type, in words.
    #[test]
    fn collinear_nuisance_is_an_error() {
        // The second regressor is zero: NᵀN is exactly singular.
        let n = Array2::from_shape_fn((10, 2), |(t, j)| if j == 0 { t as f64 } else { 0.0 });
        let y = Array2::from_shape_fn((10, 3), |(t, j)| (t + j) as f64);
        assert!(matches!(
            project_out(&n, &y),
            Err(crate::Error::Invalid(msg)) if msg.contains("collinear")
        ));
        let free = Array2::from_shape_fn((10, 2), |(t, j)| if j == 0 { 1.0 } else { t as f64 });
        let r = project_out(&free, &y).unwrap();
        assert!(
            r.iter().all(|v| v.abs() < 1e-9),
            "y is in the span of the nuisance"
        );
    }
}
