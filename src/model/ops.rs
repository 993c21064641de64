//! Element-wise activations on all of rayon's threads, with branch-free `exp` and `erf`
//! that the compiler vectorises.
//!
//! Why: candle's CPU backend runs these ops on one thread through libm's scalar `erff` and
//! `expf`; profiled on the MiniLM forward they took half of the time. PyTorch's CPU kernels
//! use the same kind of polynomial approximations (its vectorised `erf` is the
//! Abramowitz–Stegun formula used here).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, InplaceOp1, InplaceOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// e^x for f32, relative error ≤ 2 ulp on [−87, 88]; x is clamped to that range first
/// (e^−87 ≈ 1.6e-38 stands in for smaller values, which only ever meet a sum ≥ 1 here).
///
/// Cody–Waite reduction x = n·ln2 + r, |r| ≤ ln2/2, then Cephes' degree-6 polynomial for
/// e^r, scaled by 2^n through the exponent bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by adding and subtracting 1.5·2²³ (exact for |x·log2e| < 2²²): the
    // integer n then sits in the low mantissa bits of `shifted`, so 2^n is built with
    // integer ops alone. (`f32::round` and `as i32` are a libm call and a saturating
    // conversion on baseline x86-64, and both stop vectorisation.)
    const SHIFTER: f32 = 12_582_912.0;
    let shifted = x * std::f32::consts::LOG2_E + SHIFTER;
    let n = shifted - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let two_n = f32::from_bits(
        (shifted
            .to_bits()
            .wrapping_sub(SHIFTER.to_bits())
            .wrapping_add(127))
            << 23,
    );
    let mut p = 1.987_569_2e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    er * two_n
}

/// erf(x) for f32 by Abramowitz & Stegun 7.1.26: absolute error ≤ 1.5e-7 (the formula's
/// bound) plus up to 4 ulp of 1 from evaluating it in f32.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// Exact GELU, x·Φ(x) = ½·x·(1 + erf(x/√2)), as BERT's "gelu".
/// (Out of place: the in-place form's reference in the tests.)
#[cfg(test)]
pub fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    x.apply_op1_no_bwd(&Map("gelu-erf", gelu_erf_scalar))
}

#[inline(always)]
fn gelu_erf_scalar(v: f32) -> f32 {
    0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU's tanh approximation, ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): GPT-2's
/// "gelu_new" and Gemma's "gelu_pytorch_tanh"; tanh(u) = 1 − 2/(e^{2u} + 1), which is ±1
/// where e^{2u} leaves f32's range and within an ulp of 1 (absolute) elsewhere.
pub fn gelu_tanh(x: &Tensor) -> candle_core::Result<Tensor> {
    x.apply_op1_no_bwd(&Map("gelu-tanh", gelu_tanh_scalar))
}

#[inline(always)]
fn gelu_tanh_scalar(v: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (v + 0.044_715 * v * v * v);
    0.5 * v * (2.0 - 2.0 / (exp(2.0 * u) + 1.0))
}

/// SiLU(gate)⊙up = gate/(1 + e^−gate)·up, Llama's feed-forward activation, in one pass.
/// (Out of place: the in-place form's reference in the tests.)
#[cfg(test)]
pub fn swiglu(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    gate.apply_op2_no_bwd(up, &Map("swiglu", swiglu_scalar))
}

#[inline(always)]
fn swiglu_scalar(g: f32, u: f32) -> f32 {
    g / (1.0 + exp(-g)) * u
}

/// GELU (exact) in place: for a projection's fresh output, which then is `ffn.inner`
/// itself, with no second buffer of its size. The same bits as the out-of-place `gelu_erf`.
pub fn gelu_erf_in_place(x: &Tensor) -> candle_core::Result<()> {
    x.inplace_op1(&Map("gelu-erf", gelu_erf_scalar))
}

/// SwiGLU written over `up` (a projection's fresh output): up ← SiLU(gate)⊙up, the same
/// bits as the out-of-place `swiglu`.
pub fn swiglu_into_up(gate: &Tensor, up: &Tensor) -> candle_core::Result<()> {
    up.inplace_op2(gate, &Map("swiglu", |u: f32, g: f32| swiglu_scalar(g, u)))
}

/// a + b element-wise on rayon's threads (candle's add runs on its own pool, whose worker
/// then spins beside rayon's); the same bits.
pub fn add(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    a.apply_op2_no_bwd(b, &Map("add", |x: f32, y: f32| x + y))
}

/// A loop body for [`vectorized`]: a struct with an `#[inline(always)]` `run`, not a
/// closure, whose body is not reliably inlined into the target-feature function.
pub(crate) trait Kernel {
    type Output;
    fn run(self) -> Self::Output;
}

/// Runs `body` compiled for the widest SIMD level this CPU has (AVX-512F, else AVX2, on
/// x86-64), so its loops over the inline functions above vectorise to it rather than to
/// the SSE2 baseline. Results do not depend on the level: no fused multiply-add is formed
/// without fast-math, and every lane computes the same scalar formula (reductions keep
/// their lanes explicit, as attention's `lanes`); a test compares each level's bits.
/// (`pulp`'s dispatch, used before, stops at AVX2 unless its `x86-v4` feature is on, which
/// would also move faer's own kernels, on the same `pulp`, to AVX-512.)
pub(crate) fn vectorized<K: Kernel>(body: K) -> K::Output {
    Level::widest().run(body)
}

/// A SIMD level [`vectorized`] compiles its bodies for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Level {
    /// The x86-64 baseline (SSE2), or another architecture's.
    Baseline,
    Avx2,
    /// AVX-512F, which rustc takes to imply AVX2, FMA and F16C: all four are checked.
    Avx512,
}

impl Level {
    /// The widest level this CPU has.
    pub(crate) fn widest() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx2") && has!("fma") && has!("f16c") {
                return Level::Avx512;
            }
            if has!("avx2") {
                return Level::Avx2;
            }
        }
        Level::Baseline
    }

    /// Every level this CPU has, the baseline first.
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Level> {
        let widest = Level::widest();
        match widest {
            Level::Baseline => vec![Level::Baseline],
            Level::Avx2 => vec![Level::Baseline, Level::Avx2],
            Level::Avx512 => vec![Level::Baseline, Level::Avx2, Level::Avx512],
        }
    }

    /// Runs `body` compiled for this level; a level the CPU lacks runs the baseline.
    pub(crate) fn run<K: Kernel>(self, body: K) -> K::Output {
        #[cfg(target_arch = "x86_64")]
        match self {
            // SAFETY: `widest` found these features on this CPU (AVX-512 implies AVX2).
            Level::Avx512 if Level::widest() == Level::Avx512 => return unsafe { on_avx512(body) },
            // SAFETY: as above, AVX2 is present at either level.
            Level::Avx2 if Level::widest() != Level::Baseline => return unsafe { on_avx2(body) },
            _ => {}
        }
        body.run()
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn on_avx512<K: Kernel>(body: K) -> K::Output {
    body.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn on_avx2<K: Kernel>(body: K) -> K::Output {
    body.run()
}

/// out[i] = f(a[i]) (unary) over one chunk, as a [`vectorized`] body.
struct Unary<'a, F>(&'a mut [f32], &'a [f32], &'a F);

impl<F: Fn(f32) -> f32> Kernel for Unary<'_, F> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Unary(out, a, f) = self;
        for (o, &x) in out.iter_mut().zip(a) {
            *o = f(x);
        }
    }
}

/// out[i] = f(a[i], b[i]) over one chunk, as a [`vectorized`] body.
struct Binary<'a, F>(&'a mut [f32], &'a [f32], &'a [f32], &'a F);

impl<F: Fn(f32, f32) -> f32> Kernel for Binary<'_, F> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Binary(out, a, b, f) = self;
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = f(x, y);
        }
    }
}

/// x[i] = f(x[i]) over one chunk, as a [`vectorized`] body.
struct UnaryInPlace<'a, F>(&'a mut [f32], &'a F);

impl<F: Fn(f32) -> f32> Kernel for UnaryInPlace<'_, F> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let UnaryInPlace(x, f) = self;
        for v in x.iter_mut() {
            *v = f(*v);
        }
    }
}

/// x[i] = f(x[i], b[i]) over one chunk, as a [`vectorized`] body.
struct BinaryInPlace<'a, F>(&'a mut [f32], &'a [f32], &'a F);

impl<F: Fn(f32, f32) -> f32> Kernel for BinaryInPlace<'_, F> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let BinaryInPlace(x, b, f) = self;
        for (v, &y) in x.iter_mut().zip(b) {
            *v = f(*v, y);
        }
    }
}

/// An element-wise map `f` named for candle's error messages.
struct Map<F>(&'static str, F);

/// Elements per parallel task: large enough to amortise scheduling.
const CHUNK: usize = 16 * 1024;

/// The contiguous f32 slice behind a layout, or an error naming the op.
fn f32_slice<'a>(op: &str, s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("{op}: f32 only")
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: contiguous input only")
    };
    Ok(&data[start..end])
}

/// The contiguous f32 slice behind a layout, to be written in place.
fn f32_slice_mut<'a>(op: &str, s: &'a mut CpuStorage, l: &Layout) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("{op}: f32 only")
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: contiguous input only")
    };
    Ok(&mut data[start..end])
}

impl<F: Fn(f32) -> f32 + Send + Sync> InplaceOp1 for Map<F> {
    fn name(&self) -> &'static str {
        self.0
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        f32_slice_mut(self.0, s, l)?
            .par_chunks_mut(CHUNK)
            .for_each(|x| vectorized(UnaryInPlace(x, &self.1)));
        Ok(())
    }
}

/// s1[i] = f(s1[i], s2[i]).
impl<F: Fn(f32, f32) -> f32 + Send + Sync> InplaceOp2 for Map<F> {
    fn name(&self) -> &'static str {
        self.0
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("{}: shapes {:?} and {:?} differ", self.0, l1.dims(), l2.dims())
        }
        let b = f32_slice(self.0, s2, l2)?;
        f32_slice_mut(self.0, s1, l1)?
            .par_chunks_mut(CHUNK)
            .zip(b.par_chunks(CHUNK))
            .for_each(|(x, b)| vectorized(BinaryInPlace(x, b, &self.1)));
        Ok(())
    }
}

impl<F: Fn(f32) -> f32 + Send + Sync> CustomOp1 for Map<F> {
    fn name(&self) -> &'static str {
        self.0
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = f32_slice(self.0, s, l)?;
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(o, s)| vectorized(Unary(o, s, &self.1)));
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

impl<F: Fn(f32, f32) -> f32 + Send + Sync> CustomOp2 for Map<F> {
    fn name(&self) -> &'static str {
        self.0
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!(
                "{}: shapes {:?} and {:?} differ",
                self.0,
                l1.dims(),
                l2.dims()
            )
        }
        let (a, b) = (f32_slice(self.0, s1, l1)?, f32_slice(self.0, s2, l2)?);
        let mut out = vec![0f32; a.len()];
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(o, (a, b))| vectorized(Binary(o, a, b, &self.1)));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The in-place forms write the bits of the out-of-place ones.
    #[test]
    fn in_place_activations_equal_their_out_of_place_forms() {
        let dev = Device::Cpu;
        let gate = Tensor::randn(0f32, 3.0, (3, 5000), &dev).unwrap();
        let up = Tensor::randn(0f32, 3.0, (3, 5000), &dev).unwrap();
        let bits = |t: &Tensor| -> Vec<u32> { t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect() };
        let want = bits(&gelu_erf(&gate).unwrap());
        let x = gate.copy().unwrap();
        gelu_erf_in_place(&x).unwrap();
        assert_eq!(bits(&x), want);
        let (want, gate_before) = (bits(&swiglu(&gate, &up).unwrap()), bits(&gate));
        let u = up.copy().unwrap();
        swiglu_into_up(&gate, &u).unwrap();
        assert_eq!(bits(&u), want);
        assert_eq!(bits(&gate), gate_before, "the gate is read, not written");
    }

    /// Values that reach exp's clamp and erf's tails, with a second operand.
    fn operands(n: usize) -> (Vec<f32>, Vec<f32>) {
        let xs: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.731).sin() * (1.0 + (i % 97) as f32)).collect();
        let ys = xs.iter().map(|x| (x * 1.7).cos() * 3.0).collect();
        (xs, ys)
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The unary forms at every level against the plain loop at the baseline. `f` is a
    /// function item or closure (its own type, inlined where it is called), as the ops
    /// pass it: a function pointer would be called out of line, at the baseline, at every
    /// level, and the comparison would test nothing.
    fn check_unary<F: Fn(f32) -> f32>(f: F, what: &str) {
        for n in [1, 7, 8, 15, 16, 17, 33, 64, 100, 4133] {
            let (x, _) = operands(n);
            let mut base = vec![0f32; n];
            Level::Baseline.run(Unary(&mut base, &x, &f));
            for level in Level::available() {
                let mut out = vec![0f32; n];
                level.run(Unary(&mut out, &x, &f));
                assert_eq!(bits(&out), bits(&base), "{what} at {level:?}, n = {n}");
                let mut inplace = x.clone();
                level.run(UnaryInPlace(&mut inplace, &f));
                assert_eq!(bits(&inplace), bits(&base), "{what} in place at {level:?}, n = {n}");
            }
        }
    }

    /// The binary forms likewise.
    fn check_binary<F: Fn(f32, f32) -> f32>(f: F, what: &str) {
        for n in [1, 7, 8, 15, 16, 17, 33, 64, 100, 4133] {
            let (x, y) = operands(n);
            let mut base = vec![0f32; n];
            Level::Baseline.run(Binary(&mut base, &x, &y, &f));
            for level in Level::available() {
                let mut out = vec![0f32; n];
                level.run(Binary(&mut out, &x, &y, &f));
                assert_eq!(bits(&out), bits(&base), "{what} at {level:?}, n = {n}");
                let mut inplace = x.clone();
                level.run(BinaryInPlace(&mut inplace, &y, &f));
                assert_eq!(bits(&inplace), bits(&base), "{what} in place at {level:?}, n = {n}");
            }
        }
    }

    /// Each SIMD level this CPU has writes the bits of the baseline (SSE2) for every
    /// activation, out of place and in place, on lengths around the vector widths.
    #[test]
    fn every_simd_level_writes_the_baseline_bits() {
        check_unary(gelu_erf_scalar, "gelu (erf)");
        check_unary(gelu_tanh_scalar, "gelu (tanh)");
        check_unary(exp, "exp");
        check_binary(swiglu_scalar, "swiglu");
        // As `swiglu_into_up` passes it: a closure over the operands swapped.
        check_binary(|u: f32, g: f32| swiglu_scalar(g, u), "swiglu into up");
        let levels = Level::available();
        assert_eq!(levels[0], Level::Baseline);
        assert!(levels.contains(&Level::widest()));
    }

    /// Every 997th f32 bit pattern of |x| in [0, 88], both signs, against f64 `exp`.
    #[test]
    fn exp_is_within_two_ulp() {
        for bits in (0..=88f32.to_bits()).step_by(997) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits).min(87.0)] {
                let want = (x as f64).exp();
                let rel = ((exp(x) as f64 - want) / want).abs();
                assert!(rel <= 2.0 * f32::EPSILON as f64, "exp({x}): {rel:e}");
            }
        }
        assert_eq!(exp(-200.0), exp(-87.0));
    }

    /// Against f64 `libm::erf` on a fine grid: A&S's bound 1.5e-7 plus 4 ulp of 1 for the
    /// f32 evaluation of 1 − p·e^(−x²) (measured worst: 3.9e-7 at x ≈ −0.27).
    #[test]
    fn erf_is_within_the_formula_bound() {
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            let err = (erf(x) as f64 - libm::erf(x as f64)).abs();
            assert!(
                err <= 1.5e-7 + 4.0 * f32::EPSILON as f64,
                "erf({x}): {err:e}"
            );
        }
    }

    /// Both GELUs and SwiGLU against candle's own (scalar libm) ops; the bound follows from
    /// the erf bound, |ΔGELU| ≤ ½|x|·6.3e-7 plus an ulp of the output, and for the tanh
    /// form from tanh's absolute error of an ulp of 1 (½|x|·1.2e-7).
    #[test]
    fn activations_equal_candle_ops() {
        let x = Tensor::randn(0f32, 3.0, (3, 50_000), &Device::Cpu).unwrap();
        let y = Tensor::randn(0f32, 3.0, (3, 50_000), &Device::Cpu).unwrap();
        let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let xs = flat(x.clone());
        let cases = [
            (gelu_erf(&x).unwrap(), x.gelu_erf().unwrap()),
            (gelu_tanh(&x).unwrap(), x.gelu().unwrap()),
            (
                swiglu(&x, &y).unwrap(),
                (candle_nn::ops::silu(&x).unwrap() * &y).unwrap(),
            ),
        ];
        for (ours, theirs) in cases {
            for ((a, b), v) in flat(ours).iter().zip(flat(theirs)).zip(&xs) {
                let bound = 4e-7 * (1.0 + v.abs()) * (1.0 + b.abs());
                assert!((a - b).abs() <= bound, "{v}: {a} vs {b}");
            }
        }
    }
}
