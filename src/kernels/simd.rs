//! Small loops compiled twice, for the baseline x86-64 (SSE2) and for AVX2, the copy picked
//! at run time. Multiplies and adds stay separate (no FMA, which rounds once instead of
//! twice), so both copies give the same bits and results do not depend on the CPU.

/// y ← y + s·x, element by element (lengths must match).
pub fn axpy(y: &mut [f64], x: &[f64], s: f64) {
    debug_assert_eq!(y.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { axpy_avx2(y, x, s) };
    }
    axpy_body(y, x, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn axpy_avx2(y: &mut [f64], x: &[f64], s: f64) {
    axpy_body(y, x, s)
}

#[inline(always)]
fn axpy_body(y: &mut [f64], x: &[f64], s: f64) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += x * s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both copies, on lengths around the vector widths, against the plain formula bit
    /// for bit.
    #[test]
    fn axpy_is_the_formula_bit_for_bit() {
        for n in [0, 1, 3, 4, 7, 8, 31, 64, 301] {
            let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 1e3).collect();
            let y0: Vec<f64> = (0..n).map(|i| (i as f64 * 1.1).cos() / 7.0).collect();
            let s = -0.123_456_789;
            let want: Vec<u64> = y0.iter().zip(&x).map(|(y, x)| (y + x * s).to_bits()).collect();
            let mut y = y0.clone();
            axpy(&mut y, &x, s);
            assert_eq!(y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want);
            let mut y = y0.clone();
            axpy_body(&mut y, &x, s);
            assert_eq!(y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want);
        }
    }
}
