//! Student's t to p and z, shared by the subject GLM and the group test.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// |z| is capped here: Φ⁻¹ of the smallest positive f64 is about −38.5.
pub const Z_MAX: f64 = 40.0;

/// Two-sided p of Student's t with `dof` degrees of freedom, 2·sf(|t|) (the survival
/// function keeps tiny p exact); 0 for t = ±∞, NaN for NaN t or dof < 1.
pub fn two_sided_p(t: f64, dof: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    match StudentsT::new(0.0, 1.0, dof) {
        Ok(d) if dof >= 1.0 => (2.0 * d.sf(t.abs())).min(1.0),
        _ => f64::NAN,
    }
}

/// The standard-normal z with two-sided p value `p` and the sign of `t`:
/// z = −sign(t)·Φ⁻¹(p/2) (the lower tail, precise for small p), capped at ±[`Z_MAX`].
pub fn signed_z(t: f64, p: f64) -> f64 {
    if t.is_nan() || p.is_nan() {
        return f64::NAN;
    }
    let normal = Normal::standard();
    let z = if p <= 0.0 {
        Z_MAX
    } else {
        (-normal.inverse_cdf(p / 2.0)).min(Z_MAX)
    };
    if t < 0.0 {
        -z
    } else {
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed forms: with 1 dof Student's t is Cauchy, p = 1 − 2·atan(|t|)/π; and the z of
    /// a two-sided p is scipy's normal quantile, far into the tail.
    #[test]
    fn closed_forms() {
        for t in [0.0, 0.3, 1.0, 4.0, 50.0] {
            let want = 1.0 - 2.0 * f64::atan(t) / std::f64::consts::PI;
            assert!((two_sided_p(t, 1.0) - want).abs() < 1e-12, "t {t}");
        }
        assert!((signed_z(-1.0, 0.05) + 1.959_963_984_540_054).abs() < 1e-9);
        // scipy.stats.norm.ppf: -ppf(0.5e-10) = 6.466951087240516, -ppf(0.5e-300) = 37.0657878.
        assert!((signed_z(2.0, 1e-10) - 6.466_951_087_240_516).abs() < 1e-8);
        assert!((signed_z(2.0, 1e-300) - 37.065_787_880_772_13).abs() < 1e-6);
        assert_eq!(signed_z(1.0, 0.0), Z_MAX);
        assert_eq!(two_sided_p(f64::NEG_INFINITY, 3.0), 0.0);
        assert!(two_sided_p(1.0, 0.0).is_nan());
    }
}
