//! Incremental PCA (Ross, Lim, Lin & Yang 2008; scikit-learn's `IncrementalPCA`): the
//! alternative basis. Samples are the columns of X (T × n per batch, T features); after each
//! batch the K leading components are those of all samples seen, from a thin SVD of
//!   [ diag(σ)·Vₖᵀ ;  (X_b − x̄_b)ᵀ ;  √(n·b/(n+b))·(μ − x̄_b)ᵀ ]
//! (previous components scaled by their singular values, the centred batch, and the
//! correction for the change of mean), with signs fixed so each component's largest
//! |entry| is positive.

use faer::Mat;
use ndarray::{Array1, Array2, ArrayView2};

/// The running decomposition.
#[derive(Debug, Clone)]
pub struct Ipca {
    /// T × K components (orthonormal columns); empty before the first batch.
    pub components: Array2<f64>,
    pub singular_values: Vec<f64>,
    pub mean: Array1<f64>,
    pub n_seen: usize,
    k: usize,
}

impl Ipca {
    pub fn new(t: usize, k: usize) -> Self {
        Ipca {
            components: Array2::zeros((t, 0)),
            singular_values: Vec::new(),
            mean: Array1::zeros(t),
            n_seen: 0,
            k,
        }
    }

    /// Folds in a batch of samples (T × b columns). Errors ([`crate::Error::Invalid`]) if
    /// the SVD does not converge; the decomposition is then left as it was.
    pub fn partial_fit(&mut self, x: ArrayView2<f64>) -> crate::Result<()> {
        let (t, b) = x.dim();
        if b == 0 {
            return Ok(());
        }
        let batch_mean = x.mean_axis(ndarray::Axis(1)).expect("b > 0");
        let (n, bf) = (self.n_seen as f64, b as f64);
        let rows_prev = self.singular_values.len();
        let has_prev = self.n_seen > 0;
        let rows = rows_prev + b + usize::from(has_prev);
        let mut m = Mat::<f64>::zeros(rows, t);
        for (r, s) in self.singular_values.iter().enumerate() {
            for c in 0..t {
                m[(r, c)] = s * self.components[[c, r]];
            }
        }
        for j in 0..b {
            for c in 0..t {
                m[(rows_prev + j, c)] = x[[c, j]] - batch_mean[c];
            }
        }
        if has_prev {
            let f = (n * bf / (n + bf)).sqrt();
            for c in 0..t {
                m[(rows - 1, c)] = f * (self.mean[c] - batch_mean[c]);
            }
        }
        let svd = m
            .thin_svd()
            .map_err(|e| crate::Error::Invalid(format!("SVD did not converge: {e:?}")))?;
        let keep = self.k.min(rows).min(t);
        let (s, v) = (svd.S(), svd.V());
        let mut comps = Array2::zeros((t, keep));
        for j in 0..keep {
            // Sign convention: the largest |entry| of each component is positive.
            let (mut big, mut sign) = (0.0f64, 1.0);
            for c in 0..t {
                if v[(c, j)].abs() > big {
                    big = v[(c, j)].abs();
                    sign = v[(c, j)].signum();
                }
            }
            for c in 0..t {
                comps[[c, j]] = sign * v[(c, j)];
            }
        }
        self.singular_values = (0..keep).map(|j| s[j]).collect();
        self.components = comps;
        self.mean = (&self.mean * n + &batch_mean * bf) / (n + bf);
        self.n_seen += b;
        Ok(())
    }

    /// Scores of samples (T × n) on the components: Vₖᵀ·(x − μ), K × n.
    pub fn transform(&self, x: ArrayView2<f64>) -> Array2<f64> {
        let centred = &x - &self.mean.view().insert_axis(ndarray::Axis(1));
        self.components.t().dot(&centred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    /// Batches of any size give the components of one SVD of all centred samples (the
    /// closed form), to 1e-8, when the spectrum has a gap after K.
    #[test]
    fn incremental_equals_batch_pca() {
        let (t, n, k) = (20, 600, 4);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // Rank-4 signal with distinct variances plus small isotropic noise.
        let basis = Array2::from_shape_simple_fn((t, k), || rng.sample::<f64, _>(StandardNormal));
        let scale = [5.0, 3.0, 2.0, 1.0];
        let z = Array2::from_shape_fn((k, n), |(i, _)| {
            scale[i] * rng.sample::<f64, _>(StandardNormal)
        });
        let x = basis.dot(&z)
            + Array2::from_shape_simple_fn((t, n), || 0.01 * rng.sample::<f64, _>(StandardNormal))
            + 0.5;
        // Reference: SVD of all centred samples at once.
        let mean = x.mean_axis(ndarray::Axis(1)).unwrap();
        let centred = &x - &mean.view().insert_axis(ndarray::Axis(1));
        let m = Mat::<f64>::from_fn(n, t, |i, c| centred[[c, i]]);
        let svd = m.thin_svd().unwrap();
        for batch in [50, 128, 600] {
            let mut ipca = Ipca::new(t, k);
            for lo in (0..n).step_by(batch) {
                ipca.partial_fit(x.slice(ndarray::s![.., lo..(lo + batch).min(n)]))
                    .unwrap();
            }
            for j in 0..k {
                let dot: f64 = (0..t)
                    .map(|c| ipca.components[[c, j]] * svd.V()[(c, j)])
                    .sum();
                assert!(
                    (dot.abs() - 1.0).abs() < 1e-8,
                    "batch {batch}, component {j}: |cos| = {}",
                    dot.abs()
                );
                assert!((ipca.singular_values[j] - svd.S()[j]).abs() < 1e-8 * svd.S()[0]);
            }
            assert!((&ipca.mean - &mean).iter().all(|d| d.abs() < 1e-12));
        }
    }

    /// A failed SVD is an error of the crate's type, not a panic, and leaves the running
    /// decomposition as it was.
    #[test]
    fn failed_svd_is_an_error_and_keeps_the_decomposition() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let x = Array2::from_shape_simple_fn((6, 20), || rng.sample::<f64, _>(StandardNormal));
        let mut ipca = Ipca::new(6, 2);
        ipca.partial_fit(x.view()).unwrap();
        let before = ipca.clone();
        let mut bad = x.clone();
        bad[[3, 4]] = f64::NAN;
        assert!(matches!(
            ipca.partial_fit(bad.view()),
            Err(crate::Error::Invalid(msg)) if msg.contains("SVD")
        ));
        assert_eq!(ipca.components, before.components);
        assert_eq!(ipca.n_seen, 20);
    }
}
