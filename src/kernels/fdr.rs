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

/// Which tests BH rejects at level `q` (adjusted p ≤ q).
pub fn rejected(p: &[f64], q: f64) -> Vec<bool> {
    adjusted(p).into_iter().map(|a| a <= q).collect()
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
}
