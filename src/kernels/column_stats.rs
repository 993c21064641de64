//! Per-column reductions of a scans × voxels array in sweeps over whole rows: the values
//! of the per-column code (`col.sum() / T`, the iterator sum of squared deviations / T, a
//! max fold, ndarray's column `dot`), bit for bit, without walking strided columns (a
//! 2 mm run's column steps 528 KB from scan to scan).

use ndarray::ArrayView2;

use super::simd;

/// Each column's mean, SD (√(Σ(x − mean)² / T)) and max |x|.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnStats {
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
    pub max_abs: Vec<f64>,
}

impl ColumnStats {
    /// Of `y` (T × V, T ≥ 1).
    pub fn of(y: ArrayView2<f64>) -> ColumnStats {
        let (rows, v) = y.dim();
        let t = rows as f64;
        // A column ndarray sums as a contiguous slice (in 8 lanes) is summed by ndarray.
        if rows < 2 || v < 2 || y.strides()[1] != 1 {
            let mean: Vec<f64> = y.columns().into_iter().map(|c| c.sum() / t).collect();
            let sd = y.columns().into_iter().zip(&mean).map(|(c, &m)| (c.iter().map(|x| (x - m).powi(2)).sum::<f64>() / t).sqrt()).collect();
            return ColumnStats { mean, sd, max_abs: max_abs(y) };
        }
        // ndarray's sum of a strided column: a fold from +0 in row order (its final `0 +`
        // changes nothing: such a fold never ends at −0).
        let mut sum = vec![0.0; v];
        for row in y.rows() {
            simd::add(&mut sum, row.as_slice().expect("rows of unit stride"));
        }
        let max_abs = max_abs(y);
        let mean: Vec<f64> = sum.iter().map(|s| s / t).collect();
        // The iterator sum starts from the standard library's neutral element.
        let mut squares = vec![std::iter::empty::<f64>().sum::<f64>(); v];
        for row in y.rows() {
            simd::add_squared_deviations(&mut squares, row.as_slice().expect("rows of unit stride"), &mean);
        }
        let sd = squares.iter().map(|s| (s / t).sqrt()).collect();
        ColumnStats { mean, sd, max_abs }
    }
}

/// Each column's largest |x| (a fold from 0; the order does not change a maximum).
pub fn max_abs(y: ArrayView2<f64>) -> Vec<f64> {
    let mut out = vec![0.0f64; y.ncols()];
    let mut buf = Vec::new();
    for row in y.rows() {
        simd::max_abs_into(&mut out, simd::contiguous(row, &mut buf));
    }
    out
}

/// out[j] = Σ_i a[i, j]·b[i, j], as ndarray's `dot` of the two columns gives it: a strided
/// column is summed in i order from 0, which a sweep over whole rows reproduces for every
/// column at once (vectorised across columns). Contiguous columns (a one-column matrix) go
/// through ndarray's unrolled dot, which sums in 8 lanes: that case is left to it.
pub fn column_dots(a: ArrayView2<f64>, b: ArrayView2<f64>, out: &mut Vec<f64>) {
    out.clear();
    if a.ncols() == 0 {
        return;
    }
    if a.column(0).as_slice().is_some() && b.column(0).as_slice().is_some() {
        out.extend((0..a.ncols()).map(|j| a.column(j).dot(&b.column(j))));
        return;
    }
    out.resize(a.ncols(), 0.0);
    let (mut buf_a, mut buf_b) = (Vec::new(), Vec::new());
    for (ra, rb) in a.rows().into_iter().zip(b.rows()) {
        simd::add_products(out, simd::contiguous(ra, &mut buf_a), simd::contiguous(rb, &mut buf_b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};

    /// The row sweeps equal the per-column code by bits, for one row, one column, a
    /// transposed view, constant and −0 columns, and a run-sized block.
    #[test]
    fn equals_the_per_column_code_bit_for_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for (rows, cols) in [(1, 5), (5, 1), (2, 2), (150, 333), (37, 9)] {
            let mut y = Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1e3..1e3) * rng.random::<f64>().powi(9));
            y.column_mut(0).fill(-0.0);
            if cols > 1 {
                y.column_mut(1).fill(7.25);
            }
            for view in [y.view(), y.t()] {
                let t = view.nrows() as f64;
                let got = ColumnStats::of(view);
                for (j, c) in view.columns().into_iter().enumerate() {
                    let mean = c.sum() / t;
                    let sd = (c.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / t).sqrt();
                    let max_abs = c.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                    assert_eq!(got.mean[j].to_bits(), mean.to_bits(), "{rows}×{cols} mean {j}");
                    assert_eq!(got.sd[j].to_bits(), sd.to_bits(), "{rows}×{cols} sd {j}");
                    assert_eq!(got.max_abs[j].to_bits(), max_abs.to_bits(), "{rows}×{cols} max {j}");
                    assert_eq!(c.mean().unwrap().to_bits(), mean.to_bits());
                }
            }
        }
    }
}
