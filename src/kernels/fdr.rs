//! Benjamini–Hochberg false discovery rate: with the m p values sorted ascending, reject
//! the k smallest where k is the largest i with p₍ᵢ₎ ≤ q·i/m. Adjusted p values (q values)
//! are min over j ≥ i of p₍ⱼ₎·m/j, capped at 1 — the definition of statsmodels'
//! `fdrcorrection(method="indep")`, the reference. NaN p values are not tests: they are
//! left out of m and never rejected.

/// BH-adjusted p values, in the input order (NaN stays NaN).
pub fn adjusted(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = order.len() as f64;
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m / (rank + 1) as f64);
        out[i] = running;
    }
    out
}

/// Which tests BH rejects at level `q`: adjusted p ≤ q, the same decisions as
/// [`adjusted`], with only the p values that can pass sorted. m counts every test, but
/// p·m/i ≥ p for every rank i, so a p above q (here: above q·(1 + 10⁻¹²), far more than
/// the rounding of p·m/i) can neither pass nor bring the running minimum of a smaller p
/// to q; and those smaller p hold the same ranks among themselves.
pub fn rejected(p: &[f64], q: f64) -> Vec<bool> {
    let m = p.iter().filter(|v| !v.is_nan()).count() as f64;
    let cut = q * (1.0 + 1e-12);
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| p[i] <= cut).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![false; p.len()];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m / (rank + 1) as f64);
        out[i] = running <= q;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The step-up rule on a hand-worked example: m = 5, q = 0.05; thresholds 0.01, 0.02,
    /// 0.03, 0.04, 0.05; the largest i with p₍ᵢ₎ ≤ q·i/m is 3 (0.029 ≤ 0.03), so the first
    /// three are rejected even though p₍₂₎ = 0.021 > 0.02.
    #[test]
    fn step_up_by_hand() {
        let p = [0.029, 0.9, 0.001, 0.021, 0.041];
        assert_eq!(rejected(&p, 0.05), vec![true, false, true, true, false]);
        let a = adjusted(&p);
        assert!((a[2] - 0.005).abs() < 1e-15);
        assert!((a[3] - 0.029 * 5.0 / 3.0).abs() < 1e-15);
        assert!((a[1] - 0.9).abs() < 1e-15);
    }

    #[test]
    fn nan_is_not_a_test() {
        let a = adjusted(&[0.01, f64::NAN, 0.02]);
        assert!((a[0] - 0.02).abs() < 1e-15 && a[1].is_nan());
        assert!(adjusted(&[]).is_empty());
    }

    /// `rejected` decides as the adjusted p of every test do: p of many ties, NaN, p a
    /// few ulps either side of q, and q of 0 and 1.
    #[test]
    fn rejected_equals_the_adjusted_p_at_q() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut uniform = || rng.random::<f64>();
        for case in 0..400 {
            let q = [0.05, 0.01, 0.2, 0.0, 1.0][case % 5];
            let len = 1 + case * 7;
            let p: Vec<f64> = (0..len)
                .map(|i| match i % 9 {
                    0 => f64::NAN,
                    1 => q,
                    2 => f64::from_bits(q.to_bits() + 1),
                    3 => (q * 0.5).max(0.0),
                    4 => uniform().powi(6),
                    _ => uniform(),
                })
                .collect();
            let want: Vec<bool> = adjusted(&p).iter().map(|&a| a <= q).collect();
            assert_eq!(rejected(&p, q), want, "case {case}, q {q}");
        }
    }
}
