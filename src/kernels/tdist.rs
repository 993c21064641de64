//! Student's t to p and z, shared by the subject GLM and the group test.

use statrs::distribution::{ContinuousCDF, Normal};

/// |z| is capped here: Φ⁻¹ of the smallest positive f64 is about −38.5.
pub const Z_MAX: f64 = 40.0;

/// Two-sided p of Student's t with `dof` degrees of freedom, 2·sf(|t|) (the survival
/// function keeps tiny p exact); 0 for t = ±∞, NaN for NaN t or dof < 1. For many t at one
/// dof, [`TwoSided`] computes its constants once.
pub fn two_sided_p(t: f64, dof: f64) -> f64 {
    TwoSided::new(dof).p(t)
}

/// The two-sided p of Student's t at a fixed dof: statrs' `2·StudentsT::sf(|t|)` bit for
/// bit, with the log of the beta function B(ν/2, ½) (three ln Γ) computed once instead of
/// at every t. sf(|t|) = ½·I_h(ν/2, ½), h = ν/(ν + t²), I the regularised incomplete beta
/// function by its continued fraction (Numerical Recipes' `betacf`, as statrs 0.18, MIT).
#[derive(Debug, Clone, Copy)]
pub struct TwoSided {
    dof: f64,
    /// ln Γ(a + b) − ln Γ(a) − ln Γ(b) for a = ν/2, b = ½, in statrs' order of operations.
    ln_beta: f64,
}

impl TwoSided {
    pub fn new(dof: f64) -> TwoSided {
        use statrs::function::gamma::ln_gamma;
        let a = dof / 2.0;
        TwoSided { dof, ln_beta: ln_gamma(a + 0.5) - ln_gamma(a) - ln_gamma(0.5) }
    }

    pub fn p(&self, t: f64) -> f64 {
        if t.is_nan() {
            return f64::NAN;
        }
        if t.is_infinite() {
            return 0.0;
        }
        let dof = self.dof;
        if dof.is_nan() || dof < 1.0 {
            return f64::NAN;
        }
        if dof.is_infinite() {
            return (2.0 * Normal::standard().sf(t.abs())).min(1.0);
        }
        let k = t.abs();
        let ib = 0.5 * self.beta_reg(dof / 2.0, 0.5, dof / (dof + k * k));
        let sf = if k <= 0.0 { 1.0 - ib } else { ib };
        (2.0 * sf).min(1.0)
    }

    /// [`TwoSided::p`] of every `t` into `out`, the same bits. The continued fraction is a
    /// chain of dependent divisions, so one value at a time leaves the divider idle most of
    /// the time: here [`LANES`] values run side by side, each lane doing the scalar loop's
    /// operations in its order and, when its value stops where the scalar loop would,
    /// taking the next value (so a slow value does not hold the others back).
    pub fn p_many(&self, t: &[f64], out: &mut [f64]) {
        assert_eq!(t.len(), out.len(), "one p a t");
        let dof = self.dof;
        if !(dof.is_finite() && dof >= 1.0) {
            out.iter_mut().zip(t).for_each(|(o, &t)| *o = self.p(t));
            return;
        }
        for (o, &t) in out.iter_mut().zip(t).filter(|(_, t)| !t.is_finite()) {
            *o = self.p(t);
        }
        let mut queue = (0..t.len()).filter(|&i| t[i].is_finite());
        let mut lanes = Lanes::new(dof / 2.0);
        let mut active = [None; LANES];
        for (l, slot) in active.iter_mut().enumerate() {
            *slot = queue.next().inspect(|&i| lanes.load(l, self.ln_beta, x_of(dof, t[i])));
        }
        while active.iter().any(Option::is_some) {
            lanes.step();
            for (l, slot) in active.iter_mut().enumerate() {
                let Some(i) = *slot else { continue };
                let Some(ib) = lanes.finished(l) else { continue };
                let ib = 0.5 * ib;
                let sf = if t[i].abs() <= 0.0 { 1.0 - ib } else { ib };
                out[i] = (2.0 * sf).min(1.0);
                *slot = queue.next().inspect(|&i| lanes.load(l, self.ln_beta, x_of(dof, t[i])));
            }
        }
    }

    /// A |t| below which the two-sided p is surely above `level`, so a map read only up to
    /// `level` need not compute p there; 0 (screen nothing) for a level of ½ or more, one
    /// under 10⁻³⁰⁰ (near p's underflow, where its relative precision goes and finite t
    /// round to p = 0), or a dof `p` does not take by its continued fraction.
    ///
    /// The t of p = `level` by bisection on [`TwoSided::p`], less a relative 10⁻⁶: there p
    /// is at least ν·10⁻⁶ (relative; 10⁻⁸ at level ½) above its value at that t, far more
    /// than p's own rounding, so no |t| under the screen computes to a p at or under
    /// `level`.
    pub fn t_screen(&self, level: f64) -> f64 {
        if !(self.dof.is_finite() && self.dof >= 1.0 && (1e-300..0.5).contains(&level)) {
            return 0.0;
        }
        // p(lo) > level ≥ p(hi).
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        while self.p(hi) > level {
            lo = hi;
            hi *= 2.0;
            if hi > 1e300 {
                return 0.0;
            }
        }
        while hi - lo > 1e-9 * hi {
            let mid = 0.5 * (lo + hi);
            if self.p(mid) > level {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo * (1.0 - 1e-6)
    }

    /// statrs' `checked_beta_reg(a, b, x)` for the a, b of this dof, x ∈ (0, 1].
    fn beta_reg(&self, a: f64, b: f64, x: f64) -> f64 {
        let bt = if x == 0.0 || near_one(x) { 0.0 } else { (self.ln_beta + a * x.ln() + b * (1.0 - x).ln()).exp() };
        let symm_transform = x >= (a + 1.0) / (a + b + 2.0);
        let (a, b, x) = if symm_transform { (b, a, 1.0 - x) } else { (a, b, x) };
        let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
        let mut c = 1.0;
        let mut d = 1.0 / floor(1.0 - qab * x / qap);
        let mut h = d;
        let done = |h: f64| if symm_transform { 1.0 - bt * h / a } else { bt * h / a };
        for m in 1..141 {
            let m = f64::from(m);
            let m2 = m * 2.0;
            let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
            d = 1.0 / floor(1.0 + aa * d);
            c = floor(1.0 + aa / c);
            h = h * d * c;
            let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
            d = 1.0 / floor(1.0 + aa * d);
            c = floor(1.0 + aa / c);
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() <= EPS {
                return done(h);
            }
        }
        done(h)
    }
}

/// Values [`TwoSided::p_many`] computes side by side.
pub const LANES: usize = 8;

/// h = ν/(ν + t²), the incomplete beta's argument for |t|.
fn x_of(dof: f64, t: f64) -> f64 {
    let k = t.abs();
    dof / (dof + k * k)
}

/// [`TwoSided::beta_reg`]'s continued fraction for a = ν/2, b = ½ at [`LANES`] values of x
/// at once, each lane at its own step.
struct Lanes {
    a0: f64,
    m: [f64; LANES],
    a: [f64; LANES],
    b: [f64; LANES],
    x: [f64; LANES],
    bt: [f64; LANES],
    symm: [bool; LANES],
    c: [f64; LANES],
    d: [f64; LANES],
    h: [f64; LANES],
    del: [f64; LANES],
}

impl Lanes {
    fn new(a0: f64) -> Lanes {
        let z = [0.0; LANES];
        Lanes { a0, m: [1.0; LANES], a: z, b: z, x: z, bt: z, symm: [false; LANES], c: z, d: z, h: z, del: z }
    }

    /// Starts lane `l` on x0, as `beta_reg` starts (b = ½).
    fn load(&mut self, l: usize, ln_beta: f64, x0: f64) {
        let (a0, b0) = (self.a0, 0.5);
        self.bt[l] = if x0 == 0.0 || near_one(x0) { 0.0 } else { (ln_beta + a0 * x0.ln() + b0 * (1.0 - x0).ln()).exp() };
        self.symm[l] = x0 >= (a0 + 1.0) / (a0 + b0 + 2.0);
        let (a, b, x) = if self.symm[l] { (b0, a0, 1.0 - x0) } else { (a0, b0, x0) };
        (self.a[l], self.b[l], self.x[l]) = (a, b, x);
        self.m[l] = 1.0;
        self.c[l] = 1.0;
        self.d[l] = 1.0 / floor(1.0 - (a + b) * x / (a + 1.0));
        self.h[l] = self.d[l];
    }

    /// One step of every lane (the scalar loop's body at each lane's m), in AVX2 registers
    /// where the CPU has them (IEEE operations lane by lane: the same bits either way).
    fn step(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.step_avx2() };
        }
        self.step_lanes();
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn step_avx2(&mut self) {
        self.step_lanes();
    }

    #[inline(always)]
    fn step_lanes(&mut self) {
        for l in 0..LANES {
            let (a, b, x, m) = (self.a[l], self.b[l], self.x[l], self.m[l]);
            let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
            let m2 = m * 2.0;
            let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
            let d = 1.0 / floor(1.0 + aa * self.d[l]);
            let c = floor(1.0 + aa / self.c[l]);
            let h = self.h[l] * d * c;
            let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
            let d = 1.0 / floor(1.0 + aa * d);
            let c = floor(1.0 + aa / c);
            let del = d * c;
            (self.d[l], self.c[l], self.h[l], self.del[l]) = (d, c, h * del, del);
        }
    }

    /// Lane `l`'s I_x(a, b) if its last step was the scalar loop's last (it converged, or
    /// it was step 140); else the lane moves to its next step.
    fn finished(&mut self, l: usize) -> Option<f64> {
        if (self.del[l] - 1.0).abs() <= EPS || self.m[l] >= 140.0 {
            let (bt, h, a) = (self.bt[l], self.h[l], self.a[l]);
            return Some(if self.symm[l] { 1.0 - bt * h / a } else { bt * h / a });
        }
        self.m[l] += 1.0;
        None
    }
}
/// statrs' F64_PREC, 2⁻⁵³: the continued fraction stops when a step changes it by less.
const EPS: f64 = 0.000_000_000_000_000_111_022_302_462_515_65;

/// The continued fraction's guard against a zero denominator (Numerical Recipes' FPMIN).
fn floor(v: f64) -> f64 {
    let fpmin = f64::MIN_POSITIVE / EPS;
    if v.abs() < fpmin {
        fpmin
    } else {
        v
    }
}

/// approx's `ulps_eq!(x, 1.0)` (ε = f64::EPSILON, 4 ulps), as statrs tests it.
fn near_one(x: f64) -> bool {
    if (x - 1.0).abs() <= f64::EPSILON {
        return true;
    }
    x.signum() == 1.0 && x.to_bits().abs_diff(1f64.to_bits()) <= 4
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

    /// statrs' own `2·StudentsT::sf(|t|)`, bit for bit, on a dense grid of t (both tails,
    /// from 0 to 1e6, near 0 and where h rounds to 1) and dof (1 to 10⁴, fractional too).
    #[test]
    fn equals_statrs_bit_for_bit() {
        use statrs::distribution::StudentsT;
        let mut ts: Vec<f64> = (0..2000).map(|i| i as f64 * 0.01).collect();
        ts.extend((0..200).map(|i| 10f64.powf(-12.0 + i as f64 * 0.09)));
        ts.extend([1e-300, 5e-324, f64::MIN_POSITIVE, 1e-9, 3e-8]);
        let mut checked = 0;
        for dof in [1.0, 1.5, 2.0, 3.0, 4.0, 7.0, 9.5, 15.0, 31.0, 63.0, 100.0, 344.0, 1000.0, 9999.0] {
            let fixed = TwoSided::new(dof);
            let reference = StudentsT::new(0.0, 1.0, dof).unwrap();
            for &t in &ts {
                for t in [t, -t] {
                    let want = (2.0 * reference.sf(t.abs())).min(1.0);
                    assert_eq!(fixed.p(t).to_bits(), want.to_bits(), "t {t}, dof {dof}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 60_000);
    }

    /// p_many equals p bit for bit: t that converge in few steps beside t that take many
    /// (|t| near 1 at 1 dof), non-finite t in a lane group, a short tail, and the dofs
    /// where p takes another path.
    #[test]
    fn many_at_once_equal_one_at_a_time() {
        let mut ts: Vec<f64> = (0..4000).map(|i| (i as f64 * 0.7331).sin() * 10f64.powf((i % 13) as f64 * 0.5 - 3.0)).collect();
        ts.extend((0..400).map(|i| 0.9 + i as f64 * 5e-4));
        ts.extend([f64::NAN, 0.0, -0.0, f64::INFINITY, 1e-300, 5e-324, 1e300, -1.0, 1.0, 3.0]);
        for dof in [1.0, 1.5, 2.0, 3.0, 7.0, 31.0, 344.0, 9999.0, f64::INFINITY, 0.5, f64::NAN] {
            let d = TwoSided::new(dof);
            for len in [ts.len(), ts.len() - 3] {
                let mut out = vec![0.0; len];
                d.p_many(&ts[..len], &mut out);
                for (t, p) in ts.iter().zip(&out) {
                    assert_eq!(p.to_bits(), d.p(*t).to_bits(), "t {t}, dof {dof}");
                }
            }
        }
    }

    /// The screen sits just under the t of p = level (Cauchy's closed form at 1 dof,
    /// t = tan(π(1 − level)/2)), and every |t| under it, on a dense grid, computes to a p
    /// above the level; levels of ½ and more screen nothing. (tan(π(1 − l)/2) = 1/tan(πl/2).)
    #[test]
    fn screen_lies_under_the_level() {
        for dof in [1.0, 2.0, 3.0, 7.0, 31.0, 344.0] {
            let d = TwoSided::new(dof);
            for level in [1e-12, 1e-6, 0.001, 0.05, 0.2, 0.49] {
                let s = d.t_screen(level);
                assert!(s > 0.0 && d.p(s * 1.000_01) <= level, "dof {dof}, level {level}: screen {s} too low");
                for i in 0..=20_000 {
                    let t = s * i as f64 / 20_000.0;
                    assert!(d.p(t) > level && d.p(-t) > level, "dof {dof}, level {level}, t {t}");
                }
                if dof == 1.0 {
                    let exact = 1.0 / (std::f64::consts::FRAC_PI_2 * level).tan();
                    assert!((s / exact - (1.0 - 1e-6)).abs() < 1e-8, "{s} against {exact}");
                }
            }
            assert_eq!(d.t_screen(0.5), 0.0);
            assert_eq!(d.t_screen(1.0), 0.0);
            assert_eq!((d.t_screen(0.0), d.t_screen(1e-310), d.t_screen(f64::NAN)), (0.0, 0.0, 0.0));
        }
        assert_eq!(TwoSided::new(f64::INFINITY).t_screen(0.05), 0.0);
    }
}
