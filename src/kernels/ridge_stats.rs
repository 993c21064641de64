//! Per-run sufficient statistics of a voxel-wise linear model, accumulated in f64:
//! G = XᵀX (p × p, shared by every voxel), Σx (p), C = XᵀY (p × V), Σy, Σy² (per voxel) and n.
//! Statistics of runs (or of voxel blocks of one run) add and subtract exactly as sums do;
//! the caller fixes the order in which they are added, so results are reproducible.
//! Every fit of the encoding stage (OLS, ridge, cross-validation) reads only these.

use ndarray::{Array1, Array2, ArrayView2, Axis, ShapeBuilder};

use super::column_stats::column_dots;

/// Sufficient statistics of one or more runs for a block of voxels.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStats {
    /// XᵀX, p × p.
    pub gram: Array2<f64>,
    /// XᵀY, p × V.
    pub xty: Array2<f64>,
    /// Σ_t x_t per regressor (p).
    pub sum_x: Array1<f64>,
    /// Σ_t y_t per voxel.
    pub sum_y: Array1<f64>,
    /// Σ_t y_t² per voxel.
    pub sum_y2: Array1<f64>,
    /// Number of scans.
    pub n: usize,
}

impl RunStats {
    /// Statistics of design `x` (T × p) and BOLD `y` (T × V; f32 as read, or f64).
    pub fn from_block<F: Copy + Into<f64>>(x: ArrayView2<f64>, y: ArrayView2<F>) -> Self {
        assert_eq!(x.nrows(), y.nrows(), "design and BOLD need the same scans");
        Self::from_f64(x, y.mapv(Into::into).view())
    }

    /// [`from_block`](Self::from_block) of BOLD already in f64, read where it lies: a run's
    /// T × V residual is not copied (nor squared into another T × V array).
    pub fn from_f64(x: ArrayView2<f64>, y: ArrayView2<f64>) -> Self {
        assert_eq!(x.nrows(), y.nrows(), "design and BOLD need the same scans");
        let standard = y.as_standard_layout();
        let y = standard.view();
        RunStats {
            gram: x.t().dot(&x),
            xty: xt_y(x, &y),
            sum_x: x.sum_axis(Axis(0)),
            sum_y: y.sum_axis(Axis(0)),
            sum_y2: sum_of_squares(&y),
            n: x.nrows(),
        }
    }

    /// Adds another run's statistics for the same voxels.
    pub fn add(&mut self, other: &RunStats) {
        self.gram += &other.gram;
        self.xty += &other.xty;
        self.sum_x += &other.sum_x;
        self.sum_y += &other.sum_y;
        self.sum_y2 += &other.sum_y2;
        self.n += other.n;
    }

    /// Removes a run's statistics (the inverse of [`RunStats::add`]).
    pub fn subtract(&mut self, other: &RunStats) {
        self.gram -= &other.gram;
        self.xty -= &other.xty;
        self.sum_x -= &other.sum_x;
        self.sum_y -= &other.sum_y;
        self.sum_y2 -= &other.sum_y2;
        self.n -= other.n;
    }

    /// The statistics of a subset of the voxels (columns), in the given order.
    pub fn select(&self, voxels: &[usize]) -> RunStats {
        RunStats {
            gram: self.gram.clone(),
            xty: select_columns(&self.xty, voxels),
            sum_x: self.sum_x.clone(),
            sum_y: self.sum_y.select(Axis(0), voxels),
            sum_y2: self.sum_y2.select(Axis(0), voxels),
            n: self.n,
        }
    }

    /// Residual sum of squares of coefficients `beta` (p × V) for every voxel:
    /// ‖y − Xβ‖² = Σy² − 2βᵀXᵀy + βᵀXᵀXβ, from the statistics alone.
    pub fn rss(&self, beta: ArrayView2<f64>) -> Array1<f64> {
        let gb = self.gram.dot(&beta);
        // βᵀGβ and βᵀC per voxel as ndarray's column `dot` gives them (column_dots).
        let (mut bg, mut bc) = (Vec::new(), Vec::new());
        column_dots(beta, gb.view(), &mut bg);
        column_dots(beta, self.xty.view(), &mut bc);
        let mut out = self.sum_y2.clone();
        for ((o, bg), bc) in out.iter_mut().zip(bg).zip(bc) {
            *o += bg - 2.0 * bc;
        }
        out
    }
}

/// `a.select(Axis(1), cols)`, the same values in the same memory order and strides
/// (column-major, as its concatenation of columns lays them out; tested for every shape),
/// gathered column by column instead of appended one column view at a time.
pub(crate) fn select_columns(a: &Array2<f64>, cols: &[usize]) -> Array2<f64> {
    let k = a.nrows();
    let mut data = Vec::with_capacity(k * cols.len());
    for &c in cols {
        data.extend(a.column(c).iter().copied());
    }
    Array2::from_shape_vec((k, cols.len()).f(), data).expect("k × columns")
}

/// Xᵀ·Y with faer's parallel matrix product (the dominant cost: p·T·V multiply-adds).
/// Σ_t y_t² per column, as `y.mapv(|v| v * v).sum_axis(Axis(0))` sums it (for more than one
/// row and column, ndarray adds the rows in order from zero; otherwise it is left to ndarray),
/// without the squared copy.
fn sum_of_squares(y: &ArrayView2<f64>) -> Array1<f64> {
    if y.nrows() < 2 || y.ncols() < 2 {
        return y.mapv(|v| v * v).sum_axis(Axis(0));
    }
    let mut out = Array1::<f64>::zeros(y.ncols());
    for row in y.rows() {
        out.iter_mut().zip(row).for_each(|(o, &v)| *o += v * v);
    }
    out
}

fn xt_y(x: ArrayView2<f64>, y: &ArrayView2<f64>) -> Array2<f64> {
    let (t, p) = x.dim();
    let v = y.ncols();
    let xs = x.as_standard_layout();
    let xm = faer::MatRef::from_row_major_slice(xs.as_slice().expect("standard layout"), t, p);
    let ys = y.as_standard_layout();
    let ym = faer::MatRef::from_row_major_slice(ys.as_slice().expect("standard layout"), t, v);
    let mut out = faer::Mat::<f64>::zeros(p, v);
    faer::linalg::matmul::matmul(
        out.as_mut(),
        faer::Accum::Replace,
        xm.transpose(),
        ym,
        1.0,
        faer::Par::rayon(0),
    );
    Array2::from_shape_fn((p, v), |(i, j)| out[(i, j)])
}

/// Concatenates the voxel blocks of one run's statistics (same design) side by side.
pub fn join_voxel_blocks(blocks: &[RunStats]) -> RunStats {
    let first = &blocks[0];
    let cat1 = |f: fn(&RunStats) -> &Array1<f64>| {
        ndarray::concatenate(
            Axis(0),
            &blocks.iter().map(|b| f(b).view()).collect::<Vec<_>>(),
        )
        .expect("same shapes")
    };
    RunStats {
        gram: first.gram.clone(),
        xty: ndarray::concatenate(
            Axis(1),
            &blocks.iter().map(|b| b.xty.view()).collect::<Vec<_>>(),
        )
        .expect("same p"),
        sum_x: first.sum_x.clone(),
        sum_y: cat1(|b| &b.sum_y),
        sum_y2: cat1(|b| &b.sum_y2),
        n: first.n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn data(t: usize, p: usize, v: usize, seed: u64) -> (Array2<f64>, Array2<f32>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x = Array2::from_shape_simple_fn((t, p), || rng.random_range(-1.0..1.0));
        let y = Array2::from_shape_simple_fn((t, v), || rng.random_range(-2.0f32..2.0));
        (x, y)
    }

    /// Streaming = batch: run by run and voxel block by voxel block equals the one-shot
    /// statistics of all scans and voxels to 1e-10 relative; subtracting a run undoes it.
    #[test]
    fn streamed_statistics_equal_one_shot() {
        let runs: Vec<_> = (0..3).map(|r| data(40 + 5 * r, 4, 30, r as u64)).collect();
        let x_all = ndarray::concatenate(
            Axis(0),
            &runs.iter().map(|r| r.0.view()).collect::<Vec<_>>(),
        )
        .unwrap();
        let y_all = ndarray::concatenate(
            Axis(0),
            &runs.iter().map(|r| r.1.view()).collect::<Vec<_>>(),
        )
        .unwrap();
        let once = RunStats::from_block(x_all.view(), y_all.view());
        let mut acc: Option<RunStats> = None;
        for (x, y) in &runs {
            let blocks: Vec<RunStats> = (0..30)
                .step_by(7)
                .map(|v0| {
                    RunStats::from_block(x.view(), y.slice(ndarray::s![.., v0..(v0 + 7).min(30)]))
                })
                .collect();
            let run = join_voxel_blocks(&blocks);
            match acc.as_mut() {
                None => acc = Some(run),
                Some(a) => a.add(&run),
            }
        }
        let acc = acc.unwrap();
        let rel = |a: &Array2<f64>, b: &Array2<f64>| {
            (a - b).iter().fold(0.0f64, |m, v| m.max(v.abs()))
                / b.iter().fold(0.0f64, |m, v| m.max(v.abs()))
        };
        assert!(rel(&acc.gram, &once.gram) < 1e-10 && rel(&acc.xty, &once.xty) < 1e-10);
        assert!((&acc.sum_y2 - &once.sum_y2)
            .iter()
            .all(|d| d.abs() < 1e-10 * once.sum_y2.iter().fold(0.0f64, |m, v| m.max(*v))));
        assert_eq!(acc.n, once.n);
        let mut removed = acc.clone();
        removed.subtract(&RunStats::from_block(runs[2].0.view(), runs[2].1.view()));
        let two = {
            let mut s = RunStats::from_block(runs[0].0.view(), runs[0].1.view());
            s.add(&RunStats::from_block(runs[1].0.view(), runs[1].1.view()));
            s
        };
        assert!(rel(&removed.xty, &two.xty) < 1e-10 && removed.n == two.n);
    }

    /// `select_columns` is `select` on Axis(1): values and strides, from row- and
    /// column-major sources, for repeated, reordered, single and no columns.
    #[test]
    fn select_columns_is_selects_array() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for (k, n) in [(5, 9), (1, 6), (6, 1), (1, 1), (2, 2), (64, 300)] {
            let c = Array2::from_shape_simple_fn((k, n), || rng.random_range(-1.0..1.0));
            let f = c.t().as_standard_layout().t().to_owned();
            for a in [&c, &f] {
                for cols in [vec![], vec![0], (0..n).collect(), (0..n).rev().step_by(2).collect(), vec![n - 1, 0, n - 1]] {
                    let (got, want) = (select_columns(a, &cols), a.select(Axis(1), &cols));
                    assert_eq!(got.dim(), want.dim(), "{k}×{n} {cols:?}");
                    assert_eq!(got.strides(), want.strides(), "{k}×{n} {cols:?}");
                    assert_eq!(got.as_slice_memory_order().unwrap(), want.as_slice_memory_order().unwrap());
                }
            }
        }
    }

    /// The residual sums of squares are those of the per-column `dot` formula, bit for bit,
    /// for row- and column-major statistics and one voxel.
    #[test]
    fn rss_is_the_column_dot_formula_bit_for_bit() {
        for (p, v) in [(3, 6), (1, 4), (4, 1), (7, 40), (9, 0)] {
            let (x, y) = data(30, p, v, 5);
            let s = RunStats::from_block(x.view(), y.view());
            let beta = Array2::from_shape_fn((p, v), |(i, j)| ((i * 7 + j * 3) % 5) as f64 * 0.37 - 0.5);
            for stats in [s.clone(), s.select(&(0..v).collect::<Vec<_>>())] {
                let gb = stats.gram.dot(&beta);
                let want: Vec<u64> = (0..v)
                    .map(|j| (stats.sum_y2[j] + (beta.column(j).dot(&gb.column(j)) - 2.0 * beta.column(j).dot(&stats.xty.column(j)))).to_bits())
                    .collect();
                let got: Vec<u64> = stats.rss(beta.view()).iter().map(|r| r.to_bits()).collect();
                assert_eq!(got, want, "{p}×{v}, strides {:?}", stats.xty.strides());
            }
        }
    }

    /// The residual sum of squares from the statistics equals ‖y − Xβ‖² computed directly.
    #[test]
    fn rss_from_statistics_equals_direct() {
        let (x, y) = data(50, 3, 6, 9);
        let s = RunStats::from_block(x.view(), y.view());
        let beta = Array2::from_shape_fn((3, 6), |(i, j)| (i as f64 - j as f64) * 0.1);
        let direct = (&y.mapv(f64::from) - &x.dot(&beta))
            .mapv(|v| v * v)
            .sum_axis(Axis(0));
        for (a, b) in s.rss(beta.view()).iter().zip(&direct) {
            assert!((a - b).abs() < 1e-9 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
}
