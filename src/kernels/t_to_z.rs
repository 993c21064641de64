//! Student's t → z for a whole map at one dof, at table speed, with the f32 a map stores
//! equal bit for bit to the exact path's (`signed_z(t, p(t)) as f32`).
//!
//! z(t) = −Φ⁻¹(sf_ν(|t|)), signed as t, is smooth and odd. For |t| below the table's end it
//! is a quintic Hermite interpolant between nodes h = 1/32 apart, whose values are the exact
//! path's and whose derivatives are closed forms:
//!
//! z′ = f_ν(t) / φ(z),  z″ = z′·(z·z′ − (ν + 1)·t / (ν + t²)),
//!
//! (φ(z)·dz = f_ν(t)·dt, f_ν Student's density; ln f_ν′/f_ν = −(ν + 1)t/(ν + t²) and
//! φ′ = −zφ). The interpolant's own error is h⁶/46080·|z⁽⁶⁾| = 2e-14·|z⁽⁶⁾|; what differs
//! more is the exact path's rounding, which this must reproduce: 1 − ν/(ν + t²) loses
//! ≈ 5e-17·ν/|t| of z near t = 0, so tables start at |t| = 1e-5·ν, and statrs' continued
//! fraction stops short of convergence at large ν (see [`MAX_DOF`]). Over the test's grid
//! the interpolant is within 6.5e-12 of the exact z. A value is accepted only when every
//! number within [`TOLERANCE`] of it (150× that) rounds to the same f32 (Ziv's rounding
//! test); the rest (|z| below ~1e-2, within 1e-9 of an f32 rounding boundary, or beyond the
//! table: 3–4.3% of |t| ≤ 8 over the test's dofs) take the exact path.

use super::tdist::{signed_z, TwoSided};

/// Node spacing in t.
const H: f64 = 1.0 / 32.0;
/// The table ends at the first node with z above this (p ≈ 1e-197, far from the cap at
/// [`super::tdist::Z_MAX`] where p underflows) or after this many nodes (|t| = 256).
const Z_END: f64 = 30.0;
const MAX_NODES: usize = 8193;
/// Above this dof the exact path's p drifts from the smooth function by more (statrs'
/// continued fraction stops at 140 terms before it converges near x = (a + 1)/(a + b + 2):
/// 3.2e-11 at 10⁴ dof, 1.4e-10 at 10⁵), so every t takes the exact path.
const MAX_DOF: f64 = 10_000.0;
/// The accepted error of an interpolated z: 1e-9 absolute below |z| = 1, relative above.
pub const TOLERANCE: f64 = 1e-9;

/// z of t at one dof; see the module's text.
#[derive(Debug, Clone)]
pub struct TToZ {
    dist: TwoSided,
    /// Per interval i (t from i·h to (i + 1)·h), the coefficients of z in u = t/h − i.
    coefficients: Vec<[f64; 6]>,
    /// Below this |t| the exact path's rounding is not smooth enough to interpolate.
    t_min: f64,
}

impl TToZ {
    /// The table for `dof` degrees of freedom (empty, so every t is exact, when dof < 1).
    pub fn new(dof: f64) -> TToZ {
        let dist = TwoSided::new(dof);
        let mut coefficients = Vec::new();
        if !(1.0..=MAX_DOF).contains(&dof) {
            return TToZ { dist, coefficients, t_min: 1e-5 * dof };
        }
        // ln of f_ν's constant: lnΓ((ν+1)/2) − lnΓ(ν/2) − ½·ln(νπ); with ½·ln(2π) from φ.
        use statrs::function::gamma::ln_gamma;
        let ln_ratio = ln_gamma((dof + 1.0) / 2.0) - ln_gamma(dof / 2.0) - 0.5 * (dof * std::f64::consts::PI).ln()
            + 0.5 * (2.0 * std::f64::consts::PI).ln();
        // Value, and first and second derivatives scaled to the interval (·h, ·h²).
        let node = |i: usize| {
            let t = i as f64 * H;
            let z = exact(&dist, t);
            let d1 = (ln_ratio - (dof + 1.0) / 2.0 * (t * t / dof).ln_1p() + z * z / 2.0).exp();
            let d2 = d1 * (z * d1 - (dof + 1.0) * t / (dof + t * t));
            [z, d1 * H, d2 * H * H]
        };
        let mut left = node(0);
        for i in 1..MAX_NODES {
            let right = node(i);
            if !right.iter().all(|v| v.is_finite()) || right[0] > Z_END {
                break;
            }
            coefficients.push(quintic(left, right));
            left = right;
        }
        TToZ { dist, coefficients, t_min: 1e-5 * dof }
    }

    /// The exact path: z with the same two-sided p as t (NaN for a non-finite t).
    pub fn exact(&self, t: f64) -> f64 {
        exact(&self.dist, t)
    }

    /// `self.exact(t) as f32`, bit for bit.
    pub fn z_f32(&self, t: f64) -> f32 {
        let k = t.abs();
        let x = k * (1.0 / H);
        // `x < len` is false for NaN and ∞, which take the exact path.
        if x < self.coefficients.len() as f64 && k >= self.t_min {
            let i = x as usize;
            let u = x - i as f64;
            let [c0, c1, c2, c3, c4, c5] = self.coefficients[i];
            let z = c0 + u * (c1 + u * (c2 + u * (c3 + u * (c4 + u * c5))));
            let e = TOLERANCE * z.abs().max(1.0);
            let (low, high) = ((z - e) as f32, (z + e) as f32);
            // Rounding is monotone: the exact z, within e of z, rounds to the same f32.
            if low == high {
                // z is odd, and rounding to nearest is symmetric.
                return if t < 0.0 { -low } else { low };
            }
        }
        self.exact(t) as f32
    }
}

fn exact(dist: &TwoSided, t: f64) -> f64 {
    let p = if t.is_finite() { dist.p(t) } else { f64::NAN };
    signed_z(t, p)
}

/// Coefficients in u ∈ [0, 1] of the quintic with the given value, first and second
/// derivative at both ends (the Hermite basis expanded in powers of u).
fn quintic([y0, d0, s0]: [f64; 3], [y1, d1, s1]: [f64; 3]) -> [f64; 6] {
    let dy = y1 - y0;
    [
        y0,
        d0,
        s0 / 2.0,
        10.0 * dy - 6.0 * d0 - 4.0 * d1 - 1.5 * s0 + 0.5 * s1,
        -15.0 * dy + 8.0 * d0 + 7.0 * d1 + 1.5 * s0 - s1,
        6.0 * dy - 3.0 * d0 - 3.0 * d1 - 0.5 * s0 + 0.5 * s1,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense grid of t (every node, its neighbours and 16 points inside every interval,
    /// both signs) at dof from 1 to 10⁴ (above, the table is empty): the f32 equals the
    /// exact path's by its bits, the
    /// interpolant is within TOLERANCE/100 of the exact z above t_min, and the
    /// exact path is taken for under 5% of a map's typical |t| ≤ 8.
    #[test]
    fn equals_the_exact_path_bit_for_bit() {
        let mut worst: f64 = 0.0;
        for dof in [1.0, 2.0, 3.0, 5.0, 9.0, 20.0, 57.0, 100.0, 230.0, 596.0, 1000.0, 3000.0, 5000.0, MAX_DOF] {
            let table = TToZ::new(dof);
            assert!(table.coefficients.len() > 100, "dof {dof}: {} intervals", table.coefficients.len());
            let end = (table.coefficients.len() + 2) as f64 * H;
            let (mut exact_path, mut typical) = (0usize, 0usize);
            let steps = ((end / H) as usize) * 17;
            for s in 0..=steps {
                let k = s as f64 * H / 17.0;
                for t in [k, -k, k.next_up(), -k.next_down()] {
                    let want = table.exact(t);
                    let got = table.z_f32(t);
                    assert_eq!(got.to_bits(), (want as f32).to_bits(), "dof {dof}, t {t}: {got} against {want}");
                    let i = (t.abs() / H) as usize;
                    if let Some(c) = table.coefficients.get(i) {
                        let u = t.abs() / H - i as f64;
                        let z = c[0] + u * (c[1] + u * (c[2] + u * (c[3] + u * (c[4] + u * c[5]))));
                        let err = (z - want.abs()).abs() / want.abs().max(1.0);
                        if t.abs() >= table.t_min {
                            worst = worst.max(err);
                        }
                    }
                    if k <= 8.0 {
                        typical += 1;
                        let e = TOLERANCE * want.abs().max(1.0);
                        exact_path += usize::from((want - e) as f32 != (want + e) as f32);
                    }
                }
            }
            assert!((exact_path as f64) < 0.05 * typical as f64, "dof {dof}: {exact_path} of {typical} exact");
        }

        assert!(worst < TOLERANCE / 100.0, "worst deviation from the exact path {worst:e}");
        assert!(TToZ::new(MAX_DOF + 1.0).coefficients.is_empty());
    }

    /// Random t (a normal mix of null and strong effects, |t| to ~40) at 300 random dofs,
    /// fractional too, log-uniform from 1 to 10⁴: the f32 equals the exact path's by its bits.
    #[test]
    fn random_t_and_dof_equal_the_exact_path() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(18);
        for _ in 0..300 {
            let dof = 10f64.powf(rng.random_range(0.0..4.0));
            let table = TToZ::new(dof);
            for _ in 0..1000 {
                let scale = [1.0, 4.0, 15.0][rng.random_range(0..3)];
                let t: f64 = rng.sample::<f64, _>(rand_distr::StandardNormal) * scale;
                assert_eq!(table.z_f32(t).to_bits(), (table.exact(t) as f32).to_bits(), "dof {dof}, t {t}");
            }
        }
    }

    /// Special values take the exact path: NaN, ±∞ (NaN, as the maps have always had),
    /// ±0, beyond the table, and a dof below 1 (NaN).
    #[test]
    fn special_values() {
        let table = TToZ::new(230.0);
        for t in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 1e300, -5e3, 5e-324] {
            assert_eq!(table.z_f32(t).to_bits(), (table.exact(t) as f32).to_bits(), "t {t}");
        }
        assert!(TToZ::new(0.5).z_f32(2.0).is_nan());
        assert!(TToZ::new(f64::NAN).z_f32(2.0).is_nan());
    }
}
