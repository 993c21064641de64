//! ANs against time courses built from the atoms: which ANs respond like a network.
//!
//! A network's fitted course is a combination of the atoms, c(t) = Σ_k b_k·d_k(t) (b: the
//! network's mean group β per atom). An AN's correlation with it needs the AN's actual
//! response, which only the basis stage sees; what the basis keeps instead is enough for
//! any b. The basis's time axis is split into two halves (alternate stories; a single
//! story's first and second half of scans), everything centred within each story (the
//! encoding model gives every run its own intercept) or half-story. Per half h the basis
//! keeps each AN's correlation with each atom, r_huk = corr(x_hu, d_hk), the AN's norm
//! n_hu = ‖x̃_hu‖, and the atoms' Gram matrix G_h = D̃_hᵀD̃_h. Then, exactly,
//!   corr_h(x_u, c) = Σ_k b_k·√G_h,kk·r_huk / √(bᵀG_h b),
//!   corr(x_u, c) over both halves = Σ_h n_hu·√(bᵀG_h b)·corr_h / √(Σ_h n_hu² · Σ_h bᵀG_h b).

use ndarray::{s, Array2, ArrayView2};

/// Which segment of the time axis goes to which half: (scans, half) per segment. Stories
/// alternate between halves 0 and 1; a single story is cut into its first ⌊T/2⌋ scans and
/// the rest.
pub fn segments(lengths: &[usize]) -> Vec<(usize, usize)> {
    match lengths {
        [t] => vec![(t / 2, 0), (t - t / 2, 1)],
        _ => lengths.iter().enumerate().map(|(i, &n)| (n, i % 2)).collect(),
    }
}

/// What the basis keeps of each AN against the atoms, per half (see the module doc).
#[derive(Debug, Clone)]
pub struct AnAtomStats {
    /// Per half: N × K correlations (NaN for an AN constant within the half).
    pub r: [Array2<f64>; 2],
    /// Per half: each AN's norm ‖x̃_hu‖ after centring (any common scale).
    pub norms: [Vec<f64>; 2],
    /// Per half: the K × K Gram matrix of the centred atoms.
    pub gram: [Array2<f64>; 2],
}

/// `x` (T × M) with each column's mean removed within each segment.
fn centre(x: ArrayView2<f64>, segments: &[(usize, usize)]) -> Array2<f64> {
    let mut out = x.to_owned();
    let mut row = 0;
    for &(n, _) in segments {
        let mut block = out.slice_mut(s![row..row + n, ..]);
        for mut col in block.columns_mut() {
            let mean = col.sum() / n.max(1) as f64;
            col -= mean;
        }
        row += n;
    }
    out
}

/// The rows of each half, in time order.
fn half_rows(segments: &[(usize, usize)], h: usize) -> Vec<usize> {
    let mut rows = Vec::new();
    let mut start = 0;
    for &(n, half) in segments {
        if half == h {
            rows.extend(start..start + n);
        }
        start += n;
    }
    rows
}

/// The per-half statistics of ANs `x` (T × N, stories stacked in time with `lengths` scans
/// each) against `atoms` (T × K). Only the atoms are copied: x̃ᵀd̃ = xᵀd̃ because d̃ sums
/// to 0 within each segment, and ‖x̃‖² = Σ_segments (Σx² − n·mean²).
pub fn an_atom_stats(x: ArrayView2<f64>, atoms: ArrayView2<f64>, lengths: &[usize]) -> AnAtomStats {
    let segs = segments(lengths);
    let dc = centre(atoms, &segs);
    let per_half = |h: usize| {
        let rows = half_rows(&segs, h);
        let dh = dc.select(ndarray::Axis(0), &rows);
        let gram = dh.t().dot(&dh);
        let mut ss = vec![0.0; x.ncols()];
        let mut start = 0;
        for &(n, half) in &segs {
            if half == h && n > 0 {
                let block = x.slice(s![start..start + n, ..]);
                for (acc, col) in ss.iter_mut().zip(block.columns()) {
                    let mean = col.sum() / n as f64;
                    *acc += col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>();
                }
            }
            start += n;
        }
        let norms: Vec<f64> = ss.iter().map(|v| v.sqrt()).collect();
        let mut r = x.select(ndarray::Axis(0), &rows).t().dot(&dh);
        for (mut row, &xn) in r.rows_mut().into_iter().zip(&norms) {
            for (v, k) in row.iter_mut().zip(0..) {
                let dn: f64 = gram[[k, k]].sqrt();
                *v = if xn > 0.0 && dn > 0.0 { *v / (xn * dn) } else { f64::NAN };
            }
        }
        (r, norms, gram)
    };
    let (a, b) = (per_half(0), per_half(1));
    AnAtomStats { r: [a.0, b.0], norms: [a.1, b.1], gram: [a.2, b.2] }
}

/// Every AN's correlation with a course Σ_k b_k·d_k: over both halves, and the one the
/// halves agree on (the smaller |r| of the two, signed, when both have the sign of the
/// whole; 0 when they disagree). None when the course is constant (bᵀGb = 0).
pub struct CourseFit {
    pub r: Vec<f64>,
    pub r_split: Vec<f64>,
}

pub fn course_correlations(stats: &AnAtomStats, b: &[f64]) -> Option<CourseFit> {
    if b.len() != stats.gram[0].nrows() {
        return None;
    }
    let quad = |g: &Array2<f64>| -> f64 {
        (0..b.len()).flat_map(|i| (0..b.len()).map(move |j| (i, j))).map(|(i, j)| b[i] * g[[i, j]] * b[j]).sum()
    };
    let q = [quad(&stats.gram[0]), quad(&stats.gram[1])];
    if !(q[0] + q[1] > 0.0 && (q[0] + q[1]).is_finite()) {
        return None;
    }
    // Per half: corr_h = Σ_k w_hk·r_huk with w_hk = b_k·√G_h,kk / √q_h, over the atoms
    // with w_hk ≠ 0 (a flat atom's r is NaN and adds nothing); NaN for a flat half or an
    // AN flat within the half.
    let per_half: Vec<Vec<f64>> = (0..2)
        .map(|h| {
            let w: Vec<(usize, f64)> = (0..b.len())
                .map(|k| (k, b[k] * stats.gram[h][[k, k]].sqrt() / q[h].sqrt()))
                .filter(|(_, w)| *w != 0.0)
                .collect();
            (0..stats.r[h].nrows())
                .map(|u| match q[h] > 0.0 && stats.norms[h][u] > 0.0 {
                    true => w.iter().map(|&(k, w)| stats.r[h][[u, k]] * w).sum(),
                    false => f64::NAN,
                })
                .collect()
        })
        .collect();
    let (r, r_split) = (0..stats.r[0].nrows())
        .map(|u| {
            // x̃ᵀc per half = n_hu·√q_h·corr_h (a flat course or AN in a half adds nothing).
            let dot: f64 = (0..2).filter(|&h| q[h] > 0.0 && stats.norms[h][u] > 0.0).map(|h| stats.norms[h][u] * q[h].sqrt() * per_half[h][u]).sum();
            let xx: f64 = (0..2).map(|h| stats.norms[h][u].powi(2)).sum();
            let whole = if xx > 0.0 { dot / (xx * (q[0] + q[1])).sqrt() } else { f64::NAN };
            let (a, c) = (per_half[0][u], per_half[1][u]);
            let split = match whole.is_finite() && a.is_finite() && c.is_finite() {
                false => f64::NAN,
                true if a.signum() == whole.signum() && c.signum() == whole.signum() => whole.signum() * a.abs().min(c.abs()),
                true => 0.0,
            };
            (whole, split)
        })
        .unzip();
    Some(CourseFit { r, r_split })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::pearson;
    use rand::{Rng, SeedableRng};


    /// Brute force: each segment of x and of the course centred separately, then Pearson
    /// r over the chosen segments stacked.
    fn brute(x: &[f64], course: &[f64], segs: &[(usize, usize)], halves: &[usize]) -> f64 {
        let (mut xs, mut cs) = (Vec::new(), Vec::new());
        let mut start = 0;
        for &(len, h) in segs {
            if halves.contains(&h) {
                let mx = x[start..start + len].iter().sum::<f64>() / len as f64;
                let mc = course[start..start + len].iter().sum::<f64>() / len as f64;
                xs.extend(x[start..start + len].iter().map(|v| v - mx));
                cs.extend(course[start..start + len].iter().map(|v| v - mc));
            }
            start += len;
        }
        pearson(&xs, &cs)
    }

    /// Against brute force, for three stories and for one: the whole r and each half's r
    /// to 1e-12 (they differ only in summation order), and the split r is the smaller
    /// same-signed half.
    #[test]
    fn course_correlations_equal_the_brute_force_ones() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for lengths in [vec![40, 25, 33], vec![61]] {
            let t: usize = lengths.iter().sum();
            let (n, k) = (7, 4);
            let atoms = Array2::from_shape_fn((t, k), |_| rng.random_range(-1.0..1.0) + 3.0);
            let x = Array2::from_shape_fn((t, n), |(i, u)| {
                atoms[[i, u % k]] * (u as f64 - 2.0) + rng.random_range(-1.0..1.0) + i as f64 * 0.01
            });
            let b = [0.7, -0.2, 0.0, 1.3];
            let stats = an_atom_stats(x.view(), atoms.view(), &lengths);
            let fit = course_correlations(&stats, &b).unwrap();
            let course: Vec<f64> = atoms.dot(&ndarray::arr1(&b)).to_vec();
            let segs = segments(&lengths);
            for u in 0..n {
                let xu = x.column(u).to_vec();
                let whole = brute(&xu, &course, &segs, &[0, 1]);
                assert!((fit.r[u] - whole).abs() < 1e-12, "AN {u}: {} vs {whole}", fit.r[u]);
                let (a, c) = (brute(&xu, &course, &segs, &[0]), brute(&xu, &course, &segs, &[1]));
                let want = match a.signum() == whole.signum() && c.signum() == whole.signum() {
                    true => whole.signum() * a.abs().min(c.abs()),
                    false => 0.0,
                };
                assert!((fit.r_split[u] - want).abs() < 1e-12, "AN {u}: split {} vs {want}", fit.r_split[u]);
                // A single atom's course: the whole r is corr(x, d_0).
                let e0 = course_correlations(&stats, &[1.0, 0.0, 0.0, 0.0]).unwrap();
                let d0 = atoms.column(0).to_vec();
                assert!((e0.r[u] - brute(&xu, &d0, &segs, &[0, 1])).abs() < 1e-12);
            }
            assert!(course_correlations(&stats, &[0.0; 4]).is_none());
        }
    }

    /// An AN flat in one half still has its whole r (from the other half), but no split r;
    /// an atom flat in a half leaves the other atoms' courses intact there.
    #[test]
    fn a_flat_half_or_atom_adds_nothing_rather_than_nan() {
        let lengths = [4, 4];
        let d0 = [1.0, 3.0, 2.0, 5.0, 2.0, 1.0, 4.0, 0.0];
        let d1 = [0.0, 1.0, 0.0, 2.0, 7.0, 7.0, 7.0, 7.0]; // flat in half 1
        let atoms = Array2::from_shape_fn((8, 2), |(t, k)| if k == 0 { d0[t] } else { d1[t] });
        // AN 0 is flat in half 1; AN 1 is not.
        let xs = [[2.0, 1.0, 3.0, 0.0, 5.0, 5.0, 5.0, 5.0], [2.0, 1.0, 3.0, 0.0, 1.0, 4.0, 2.0, 2.5]];
        let x = Array2::from_shape_fn((8, 2), |(t, u)| xs[u][t]);
        let stats = an_atom_stats(x.view(), atoms.view(), &lengths);
        let fit = course_correlations(&stats, &[1.0, 0.5]).unwrap();
        let course: Vec<f64> = (0..8).map(|t| d0[t] + 0.5 * d1[t]).collect();
        let segs = segments(&lengths);
        for (u, x) in xs.iter().enumerate() {
            let want = brute(x, &course, &segs, &[0, 1]);
            assert!((fit.r[u] - want).abs() < 1e-12, "AN {u}: {} vs {want}", fit.r[u]);
        }
        assert!(fit.r_split[0].is_nan());
        let (a, c) = (brute(&xs[1], &course, &segs, &[0]), brute(&xs[1], &course, &segs, &[1]));
        let want = if a.signum() == c.signum() && a.signum() == fit.r[1].signum() { fit.r[1].signum() * a.abs().min(c.abs()) } else { 0.0 };
        assert!((fit.r_split[1] - want).abs() < 1e-12, "{} vs {want}", fit.r_split[1]);
        assert!(course_correlations(&stats, &[1.0]).is_none(), "a course of the wrong length");
    }

    #[test]
    fn an_constant_within_each_segment_has_no_correlation() {
        let lengths = [3, 2];
        let atoms = Array2::from_shape_vec((5, 1), vec![1.0, 2.0, 4.0, 1.0, 3.0]).unwrap();
        let x = Array2::from_shape_vec((5, 1), vec![2.0, 2.0, 2.0, 7.0, 7.0]).unwrap();
        let stats = an_atom_stats(x.view(), atoms.view(), &lengths);
        assert!(stats.r[0][[0, 0]].is_nan() && stats.r[1][[0, 0]].is_nan());
        let fit = course_correlations(&stats, &[1.0]).unwrap();
        assert!(fit.r[0].is_nan() && fit.r_split[0].is_nan());
    }
}
