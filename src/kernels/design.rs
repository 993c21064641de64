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

/// An orthonormal basis (T × rank) of the span of the nuisance columns `n` (T × q), by
/// modified Gram–Schmidt with a second pass: a column is dropped when its norm is at most
/// [`NEGLIGIBLE`] of the largest column's (a constant confound demeaned to round-off), or
/// when what is left of it after the columns before is at most [`COLLINEAR`] of its norm
/// (in their span), as nilearn's `signal.clean` drops columns by a pivoted QR. The rank is
/// what the run's nuisance absorbs from the degrees of freedom.
pub fn nuisance_basis(n: &Array2<f64>) -> Array2<f64> {
    let norms: Vec<f64> = n.columns().into_iter().map(|c| c.dot(&c).sqrt()).collect();
    let largest = norms.iter().cloned().fold(0.0, f64::max);
    let mut basis: Vec<ndarray::Array1<f64>> = Vec::new();
    for (c, norm) in n.columns().into_iter().zip(norms) {
        if norm.is_nan() || norm <= NEGLIGIBLE * largest {
            continue;
        }
        let mut v = c.to_owned();
        for _ in 0..2 {
            for q in &basis {
                let dot = q.dot(&v);
                v.scaled_add(-dot, q);
            }
        }
        let left = v.dot(&v).sqrt();
        if left > COLLINEAR * norm {
            basis.push(v / left);
        }
    }
    let mut out = Array2::zeros((n.nrows(), basis.len()));
    for (j, q) in basis.iter().enumerate() {
        out.column_mut(j).assign(q);
    }
    out
}

/// Columns this much smaller than the largest nuisance column carry no signal.
pub const NEGLIGIBLE: f64 = 1e-10;
/// A column this little outside the span of the earlier ones is in it.
pub const COLLINEAR: f64 = 1e-8;

/// Removes from each column of `y` (T × V) its least-squares fit on the span of the
/// orthonormal `basis` (T × r, from [`nuisance_basis`]): y − Q·(Qᵀy).
pub fn project_out(basis: &Array2<f64>, y: &Array2<f64>) -> Array2<f64> {
    if basis.ncols() == 0 {
        return y.clone();
    }
    y - &basis.dot(&basis.t().dot(y))
}

/// Voxels a block of [`project_out_in_place`] (T × this many f64: 1.2 MB at 150 scans).
const PROJECT_BLOCK: usize = 1024;

/// [`project_out`] in place, a block of columns at a time: the same values bit for bit
/// (each column's products run over the same scans in the same order, whichever columns
/// share its block), with one T × 1024 block of scratch instead of two more T × V arrays
/// (846 MB for a whole-brain 2 mm run of 150 scans).
pub fn project_out_in_place(basis: &Array2<f64>, y: &mut Array2<f64>) {
    if basis.ncols() == 0 {
        return;
    }
    for mut block in y.axis_chunks_iter_mut(ndarray::Axis(1), PROJECT_BLOCK) {
        let fit = basis.dot(&basis.t().dot(&block));
        block -= &fit;
    }
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

    /// Collinear and negligible nuisance columns are dropped (the rank is what is left), and
    /// what remains projects y out of their span exactly.
    #[test]
    fn collinear_and_negligible_columns_are_dropped() {
        // t, a zero column, 2t + 1, 1, and round-off of a demeaned constant.
        let n = Array2::from_shape_fn((10, 5), |(t, j)| match j {
            0 => t as f64,
            1 => 0.0,
            2 => 2.0 * t as f64 + 1.0,
            3 => 1.0,
            _ => 1e-17 * ((t % 3) as f64 - 1.0),
        });
        let q = nuisance_basis(&n);
        assert_eq!(q.ncols(), 2, "t and 1 span it");
        let gram = q.t().dot(&q);
        assert!((gram - Array2::<f64>::eye(2)).iter().all(|v| v.abs() < 1e-12));
        let y = Array2::from_shape_fn((10, 3), |(t, j)| (t + j) as f64);
        assert!(project_out(&q, &y).iter().all(|v| v.abs() < 1e-9), "y is in the span");
        let z = Array2::from_shape_fn((10, 1), |(t, _)| ((t * t) % 7) as f64);
        let r = project_out(&q, &z);
        assert!(n.t().dot(&r).iter().all(|v| v.abs() < 1e-9), "the residual is orthogonal to the nuisance");
    }

    /// In place and by blocks of columns, the projection is the whole-matrix one bit for
    /// bit: across block edges, for a design of realistic size.
    #[test]
    fn projection_in_place_is_the_same_bits() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let t = 150;
        let n = Array2::from_shape_fn((t, 7), |(i, j)| ((i * (j + 1)) as f64 * 0.01).sin() + if j == 0 { 1.0 } else { 0.0 });
        let q = nuisance_basis(&n);
        // A half block last, and a single column last.
        for v in [2 * PROJECT_BLOCK + PROJECT_BLOCK / 2, 2 * PROJECT_BLOCK + 1] {
            let y = Array2::from_shape_fn((t, v), |_| rng.random_range(-3.0..3.0));
            let want = project_out(&q, &y);
            let mut got = y.clone();
            project_out_in_place(&q, &mut got);
            assert!(want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "{v} voxels");
        }
    }
}
