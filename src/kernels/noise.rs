//! Noise processes for simulated fMRI: AR(1) series (slow drifts use
//! [`super::design::cosine`]).

use rand::Rng;
use rand_distr::StandardNormal;

/// Fills `out` with a stationary AR(1) process x[t] = ρ·x[t−1] + √(1−ρ²)·ε[t], ε ~ N(0, 1),
/// started from its stationary distribution, so every sample has unit variance. Rejects ρ
/// outside (−1, 1) (no stationary process; NaN included) without drawing from `rng`.
pub fn ar1<R: Rng>(rng: &mut R, rho: f64, out: &mut [f64]) -> crate::Result<()> {
    if rho.is_nan() || rho.abs() >= 1.0 {
        return Err(crate::Error::Invalid(format!(
            "the AR(1) coefficient ρ must lie strictly between -1 and 1 for a stationary process, got {rho}"
        )));
    }
    let innovation = (1.0 - rho * rho).sqrt();
    let mut x: f64 = rng.sample(StandardNormal);
    for o in out.iter_mut() {
        *o = x;
        let e: f64 = rng.sample(StandardNormal);
        x = rho * x + innovation * e;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Closed form: the lag-1 autocorrelation of a stationary AR(1) is ρ and its variance 1.
    #[test]
    fn ar1_has_the_stated_autocorrelation_and_unit_variance() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut x = vec![0.0; 200_000];
        ar1(&mut rng, 0.4, &mut x).unwrap();
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let lag1 = x
            .windows(2)
            .map(|w| (w[0] - mean) * (w[1] - mean))
            .sum::<f64>()
            / (n - 1.0)
            / var;
        // Standard errors at n = 2e5 are ~0.003 for both; 0.02 is ~6 SE.
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        assert!((lag1 - 0.4).abs() < 0.02, "lag-1 autocorrelation {lag1}");
    }

    /// |ρ| ≥ 1 (and NaN) has no stationary AR(1): an error (it used to be a panicking
    /// assertion), with `out` left untouched; ρ just inside the interval still works.
    #[test]
    fn non_stationary_coefficients_are_errors() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut x = vec![7.0; 5];
        for rho in [1.0, -1.0, 1.5, f64::NAN, f64::INFINITY] {
            let err = ar1(&mut rng, rho, &mut x).unwrap_err();
            assert!(matches!(err, crate::Error::Invalid(_)), "ρ = {rho}");
            assert!(err.to_string().contains("between -1 and 1"), "{err}");
        }
        assert_eq!(x, vec![7.0; 5]);
        ar1(&mut rng, -0.999, &mut x).unwrap();
        assert!(x.iter().all(|v| v.is_finite() && *v != 7.0));
    }
}
