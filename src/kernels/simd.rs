//! Small element-wise loops compiled for the baseline x86-64 (SSE2), for AVX2 and for
//! AVX-512, the widest copy the CPU runs picked at run time. Each element is computed by
//! the same IEEE operations in every copy: multiplies and adds stay separate (no FMA,
//! which rounds once instead of twice), and division is correctly rounded at every width.
//! So every copy gives the same bits, and results do not depend on the CPU (a test runs
//! each copy the CPU has against the plain formula).

/// An instruction-set level a loop is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Baseline,
    Avx2,
    Avx512,
}

impl Level {
    /// The widest level this CPU runs.
    fn best() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            // rustc's avx512f implies avx2 and fma: all of them, or a VM that hides one
            // would run instructions it lacks.
            let avx2 = std::arch::is_x86_feature_detected!("avx2");
            if avx2 && std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx512f") {
                return Level::Avx512;
            }
            if avx2 {
                return Level::Avx2;
            }
        }
        Level::Baseline
    }

    /// Every level this CPU runs (for the tests).
    #[cfg(test)]
    fn available() -> Vec<Level> {
        let mut levels = vec![Level::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                levels.push(Level::Avx2);
            }
            if Level::best() == Level::Avx512 {
                levels.push(Level::Avx512);
            }
        }
        levels
    }
}

/// `row` as a slice: itself when its elements are contiguous, else copied into `buf`
/// (strided rows are rare here; the formulas live only in this module's loops).
pub fn contiguous<'a>(row: ndarray::ArrayView1<'a, f64>, buf: &'a mut Vec<f64>) -> &'a [f64] {
    match row.to_slice() {
        Some(slice) => slice,
        None => {
            buf.clear();
            buf.extend(row.iter().copied());
            buf
        }
    }
}

/// `pub fn name(args)`, running `body` compiled at the CPU's best [`Level`], and
/// `name_at(level, args)` for a given level (which the CPU must run).
macro_rules! element_wise {
    ($(#[$doc:meta])* pub fn $name:ident / $at:ident ($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            $at(Level::best(), $($arg),*)
        }

        #[allow(clippy::needless_return)]
        pub(crate) fn $at(level: Level, $($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                match level {
                    // SAFETY: a level other than the baseline is only passed when the CPU
                    // runs it (Level::best, or Level::available in the tests).
                    Level::Avx512 => return unsafe { avx512($($arg),*) },
                    Level::Avx2 => return unsafe { avx2($($arg),*) },
                    Level::Baseline => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = level;
            body($($arg),*)
        }
    };
}

element_wise! {
    /// y ← y + s·x, element by element (lengths must match).
    pub fn axpy / axpy_at(y: &mut [f64], x: &[f64], s: f64) {
        debug_assert_eq!(y.len(), x.len());
        y.iter_mut().zip(x).for_each(|(y, &x)| *y += x * s);
    }
}

element_wise! {
    /// y ← y / d, element by element.
    pub fn div_assign / div_assign_at(y: &mut [f64], d: f64) {
        y.iter_mut().for_each(|y| *y /= d);
    }
}

element_wise! {
    /// y ← y / d, element by element (lengths must match).
    pub fn div_elementwise / div_elementwise_at(y: &mut [f64], d: &[f64]) {
        debug_assert_eq!(y.len(), d.len());
        y.iter_mut().zip(d).for_each(|(y, &d)| *y /= d);
    }
}

element_wise! {
    /// y ← y + a·b, element by element (lengths must match).
    pub fn add_products / add_products_at(y: &mut [f64], a: &[f64], b: &[f64]) {
        debug_assert!(y.len() == a.len() && y.len() == b.len());
        y.iter_mut().zip(a).zip(b).for_each(|((y, &a), &b)| *y += a * b);
    }
}

element_wise! {
    /// y ← a − b, element by element (lengths must match).
    pub fn difference / difference_at(y: &mut [f64], a: &[f64], b: &[f64]) {
        debug_assert!(y.len() == a.len() && y.len() == b.len());
        y.iter_mut().zip(a).zip(b).for_each(|((y, &a), &b)| *y = a - b);
    }
}

element_wise! {
    /// y ← max(y, |x|), element by element (lengths must match), with `f64::max`'s rule for
    /// NaN (the other operand wins).
    pub fn max_abs_into / max_abs_into_at(y: &mut [f64], x: &[f64]) {
        debug_assert_eq!(y.len(), x.len());
        y.iter_mut().zip(x).for_each(|(y, &x)| *y = y.max(x.abs()));
    }
}

element_wise! {
    /// y ← y + x, element by element (lengths must match).
    pub fn add / add_at(y: &mut [f64], x: &[f64]) {
        debug_assert_eq!(y.len(), x.len());
        y.iter_mut().zip(x).for_each(|(y, &x)| *y += x);
    }
}

element_wise! {
    /// y ← y + (x − m)², element by element (lengths must match): squared deviations from
    /// per-element means.
    pub fn add_squared_deviations / add_squared_deviations_at(y: &mut [f64], x: &[f64], m: &[f64]) {
        debug_assert!(y.len() == x.len() && y.len() == m.len());
        y.iter_mut().zip(x).zip(m).for_each(|((y, &x), &m)| *y += (x - m) * (x - m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|v| v.to_bits()).collect()
    }

    /// Values of many magnitudes and signs, with a −0, a subnormal, an infinity and a NaN
    /// placed by `shift`, so that each meets ordinary values of the other operands.
    fn values(n: usize, seed: f64, shift: usize) -> Vec<f64> {
        (0..n)
            .map(|i| match (i + shift) % 23 {
                5 => -0.0,
                9 => 2.5e-310,
                13 => f64::INFINITY,
                17 => f64::NAN,
                _ => (i as f64 * seed).sin() * 10f64.powi(i as i32 % 9 - 4),
            })
            .collect()
    }

    /// Every copy the CPU runs, on lengths around the vector widths, against the plain
    /// formula bit for bit.
    #[test]
    fn every_level_computes_the_formula_bit_for_bit() {
        let levels = Level::available();
        assert!(levels.contains(&Level::Baseline) && levels.contains(&Level::best()));
        for n in [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 64, 301] {
            let (y0, a, b) = (values(n, 0.37, 0), values(n, 1.1, 3), values(n, 0.77, 7));
            let s = -0.123_456_789;
            let pairs = |f: &dyn Fn(f64, f64, f64) -> f64| -> Vec<u64> { (0..n).map(|i| f(y0[i], a[i], b[i]).to_bits()).collect() };
            for level in levels.iter().copied() {
                let run = |f: &dyn Fn(&mut [f64])| {
                    let mut y = y0.clone();
                    f(&mut y);
                    bits(&y)
                };
                let at = format!("{level:?}, n {n}");
                assert_eq!(run(&|y| axpy_at(level, y, &a, s)), pairs(&|y, a, _| y + a * s), "axpy {at}");
                assert_eq!(run(&|y| add_products_at(level, y, &a, &b)), pairs(&|y, a, b| y + a * b), "products {at}");
                assert_eq!(run(&|y| difference_at(level, y, &a, &b)), pairs(&|_, a, b| a - b), "difference {at}");
                assert_eq!(run(&|y| add_at(level, y, &a)), pairs(&|y, a, _| y + a), "add {at}");
                assert_eq!(run(&|y| max_abs_into_at(level, y, &a)), pairs(&|y, a, _| y.max(a.abs())), "max |x| {at}");
                assert_eq!(run(&|y| add_squared_deviations_at(level, y, &a, &b)), pairs(&|y, a, b| y + (a - b).powi(2)), "squares {at}");
                assert_eq!(run(&|y| div_elementwise_at(level, y, &a)), pairs(&|y, a, _| y / a), "element-wise division {at}");
                for d in [3.0, 1.0 / 7.0, 1e300, -2.5e-310, 0.0, f64::NAN, 12_345.678_9] {
                    assert_eq!(run(&|y| div_assign_at(level, y, d)), pairs(&|y, _, _| y / d), "division by {d}, {at}");
                }
            }
        }
    }
}
