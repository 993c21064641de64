//! ANs against time courses built from the atoms: which ANs respond like a network.
//!
//! A network's fitted course is a combination of the atoms, c(t) = Σ_k b_k·d_k(t) (b: the
//! network's mean group β per atom). An AN's correlation with it needs the AN's actual
//! response, which only the basis stage sees; what the basis keeps instead is enough for
//! any b: each AN's correlation with each atom, r_uk = corr(x_u, d_k), and the atoms' Gram
//! matrix G = D̃ᵀD̃, everything centred within each story (the encoding model gives every
//! run its own intercept). Then, exactly,
//!   corr(x_u, c) = Σ_k b_k·√G_kk·r_uk / √(bᵀ·G·b).

use ndarray::{s, Array2, ArrayView2};

/// `x` (T × M, stories stacked in time with `lengths` scans each) with each column's mean
/// removed within each story.
pub fn centre_within_stories(x: ArrayView2<f64>, lengths: &[usize]) -> Array2<f64> {
    let mut out = x.to_owned();
    let mut row = 0;
    for &n in lengths {
        let mut block = out.slice_mut(s![row..row + n, ..]);
        for mut col in block.columns_mut() {
            let mean = col.sum() / n.max(1) as f64;
            col -= mean;
        }
        row += n;
    }
    out
}

/// r_uk = corr(x_u, d_k) with both centred within each story (N × K; NaN for an AN
/// constant within every story). `x` is T × N (any per-column offset or scale), `atoms`
/// T × K already centred within stories ([`centre_within_stories`]).
pub fn an_atom_correlations(x: ArrayView2<f64>, atoms: ArrayView2<f64>, lengths: &[usize]) -> Array2<f64> {
    // x̃ᵀd̃ = xᵀd̃ since d̃ sums to 0 within each story; ‖x̃_u‖² = Σ_s (‖x_us‖² − n_s·mean_s²).
    let mut r = x.t().dot(&atoms);
    let atom_norms: Vec<f64> = atoms.columns().into_iter().map(|d| d.dot(&d).sqrt()).collect();
    for (u, mut row) in r.rows_mut().into_iter().enumerate() {
        let mut ss = 0.0;
        let mut start = 0;
        for &n in lengths {
            let col = x.slice(s![start..start + n, u]);
            let mean = col.sum() / n.max(1) as f64;
            ss += col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>();
            start += n;
        }
        let xn = ss.sqrt();
        for (v, dn) in row.iter_mut().zip(&atom_norms) {
            *v = if xn > 0.0 && *dn > 0.0 { *v / (xn * dn) } else { f64::NAN };
        }
    }
    r
}

/// corr(x_u, Σ_k b_k·d_k) for every AN u from `r` (N × K, [`an_atom_correlations`]) and the
/// Gram matrix `gram` (K × K) of the within-story-centred atoms; None when the course is
/// constant (bᵀGb = 0).
pub fn course_correlations(r: ArrayView2<f64>, gram: ArrayView2<f64>, b: &[f64]) -> Option<Vec<f64>> {
    let k = b.len();
    let quad: f64 = (0..k)
        .flat_map(|i| (0..k).map(move |j| (i, j)))
        .map(|(i, j)| b[i] * gram[[i, j]] * b[j])
        .sum();
    if !(quad > 0.0 && quad.is_finite()) {
        return None;
    }
    let w: Vec<f64> = (0..k).map(|j| b[j] * gram[[j, j]].sqrt() / quad.sqrt()).collect();
    Some(
        r.rows()
            .into_iter()
            .map(|row| row.iter().zip(&w).map(|(r, w)| r * w).sum())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn pearson(a: &[f64], b: &[f64]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    }

    /// Against brute force: each story's x and course centred separately, stacked, then
    /// Pearson r. Agreement to 1e-12: the two differ only in summation order.
    #[test]
    fn course_correlation_equals_the_brute_force_one() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let lengths = [40, 25, 33];
        let t: usize = lengths.iter().sum();
        let (n, k) = (7, 4);
        let atoms = Array2::from_shape_fn((t, k), |_| rng.random_range(-1.0..1.0) + 3.0);
        let x = Array2::from_shape_fn((t, n), |(i, u)| {
            atoms[[i, u % k]] * (u as f64 - 2.0) + rng.random_range(-1.0..1.0) + i as f64 * 0.01
        });
        let b = [0.7, -0.2, 0.0, 1.3];
        let centred = centre_within_stories(atoms.view(), &lengths);
        let r = an_atom_correlations(x.view(), centred.view(), &lengths);
        let gram = centred.t().dot(&centred);
        let got = course_correlations(r.view(), gram.view(), &b).unwrap();
        let course = atoms.dot(&ndarray::arr1(&b));
        for u in 0..n {
            let (mut xs, mut cs) = (Vec::new(), Vec::new());
            let mut start = 0;
            for &len in &lengths {
                let xu: Vec<f64> = (start..start + len).map(|i| x[[i, u]]).collect();
                let c: Vec<f64> = (start..start + len).map(|i| course[i]).collect();
                let (mx, mc) = (xu.iter().sum::<f64>() / len as f64, c.iter().sum::<f64>() / len as f64);
                xs.extend(xu.iter().map(|v| v - mx));
                cs.extend(c.iter().map(|v| v - mc));
                start += len;
            }
            let want = pearson(&xs, &cs);
            assert!((got[u] - want).abs() < 1e-12, "AN {u}: {} vs {want}", got[u]);
            // A single atom's course is its r.
            let e0 = course_correlations(r.view(), gram.view(), &[1.0, 0.0, 0.0, 0.0]).unwrap();
            assert!((e0[u] - r[[u, 0]]).abs() < 1e-12);
        }
        assert!(course_correlations(r.view(), gram.view(), &[0.0; 4]).is_none());
    }

    #[test]
    fn an_constant_within_every_story_has_no_correlation() {
        let lengths = [3, 2];
        let atoms = Array2::from_shape_vec((5, 1), vec![1.0, 2.0, 4.0, 1.0, 3.0]).unwrap();
        let x = Array2::from_shape_vec((5, 1), vec![2.0, 2.0, 2.0, 7.0, 7.0]).unwrap();
        let centred = centre_within_stories(atoms.view(), &lengths);
        assert!(an_atom_correlations(x.view(), centred.view(), &lengths)[[0, 0]].is_nan());
    }
}
