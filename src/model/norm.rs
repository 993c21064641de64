//! Row normalisation (LayerNorm, RMSNorm), of a tensor or of a residual sum a + b, on all
//! of rayon's threads: the bits of candle_nn's fused row kernels and candle's add.
//!
//! Why: candle sums a row's squares as one chain of dependent f32 additions (576 a row in
//! SmolLM2), one row per task, and adds the residual in a separate pass on its own thread
//! pool, whose worker then spins beside rayon's (25,000 turns by default) and takes a core
//! from the next product. Here a task takes [`ROWS`] rows and runs their chains side by side
//! (each row's additions in candle's order, so the same bits), and the residual sum is
//! formed in the same task, while the rows are in cache.
//!
//! The formulas, in candle's order of operations (no fused multiply-add: Rust forms none):
//! - RMSNorm: m = √(Σ x² / n + ε), y = x / m · w;
//! - LayerNorm: μ = Σ x / n, σ² = Σ x² / n − μ², y = (x − μ) · (1 / √(σ² + ε)) · w + b.

use candle_core::{CpuStorage, Device, Layout, Storage, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::ops::{Kernel, Level};

/// Rows per task, whose sums run side by side.
const ROWS: usize = 8;

enum Kind {
    Rms,
    Layer { bias: Vec<f32> },
}

/// A LayerNorm or RMSNorm over the last dimension, weights in f32.
pub struct Norm {
    weight: Vec<f32>,
    kind: Kind,
    eps: f32,
}

impl Norm {
    /// RMSNorm with weight `w` (n), as `candle_nn::RmsNorm::new(w, eps)`.
    pub fn rms(w: &Tensor, eps: f64) -> candle_core::Result<Self> {
        let weight = w.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?;
        Norm::checked(weight, Kind::Rms, eps)
    }

    /// A norm over rows of weight.len() values: none is an error, not empty tasks.
    fn checked(weight: Vec<f32>, kind: Kind, eps: f64) -> candle_core::Result<Self> {
        if weight.is_empty() {
            candle_core::bail!("norm: a weight of no values (hidden size 0)")
        }
        Ok(Norm { weight, kind, eps: eps as f32 })
    }

    /// LayerNorm with `weight` and `bias` (n each) from `vb`, as `candle_nn::layer_norm`.
    pub fn layer(n: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        let norm = candle_nn::layer_norm(n, eps, vb)?;
        let flat = |t: &Tensor| t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>();
        let Some(bias) = norm.bias() else {
            candle_core::bail!("norm: a LayerNorm without a bias")
        };
        Norm::checked(flat(norm.weight())?, Kind::Layer { bias: flat(bias)? }, eps)
    }

    /// norm(x).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.apply(Level::widest(), x, None, false).map(|(_, out)| out)
    }

    /// norm(a + b), for post-norm residuals (BERT) where the sum itself is not kept.
    pub fn forward_of_sum(&self, a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
        self.apply(Level::widest(), a, Some(b), false).map(|(_, out)| out)
    }

    /// (a + b, norm(a + b)), for pre-norm residuals (the Llama line) where the sum is the
    /// stream the next residual adds to.
    pub fn forward_sum(&self, a: &Tensor, b: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let (sum, out) = self.apply(Level::widest(), a, Some(b), true)?;
        Ok((sum.expect("asked for the sum"), out))
    }

    /// (a + b if `keep_sum`, norm(a (+ b))), ROWS rows a task, compiled for `level`.
    fn apply(
        &self,
        level: Level,
        a: &Tensor,
        b: Option<&Tensor>,
        keep_sum: bool,
    ) -> candle_core::Result<(Option<Tensor>, Tensor)> {
        let n = self.weight.len();
        let dims = a.dims().to_vec();
        if dims.last() != Some(&n) {
            candle_core::bail!("norm: input {dims:?} does not end in {n}")
        }
        if let Some(b) = b.filter(|b| b.dims() != dims) {
            candle_core::bail!("norm: shapes {dims:?} and {:?} differ", b.dims())
        }
        let (a, b) = (a.contiguous()?, b.map(Tensor::contiguous).transpose()?);
        let (a_store, a_layout) = a.storage_and_layout();
        let a = f32_values(&a_store, a_layout)?;
        let b_store = b.as_ref().map(|b| b.storage_and_layout());
        let b = b_store.as_ref().map(|(s, l)| f32_values(s, l)).transpose()?;
        let block = ROWS * n;
        let mut out = vec![0f32; a.len()];
        let mut sum = vec![0f32; if keep_sum { a.len() } else { 0 }];
        let task = |i: usize, a: &[f32], sum: Option<&mut [f32]>, out: &mut [f32]| {
            let b = b.map(|b| &b[i * block..(i * block + a.len())]);
            level.run(Rows { norm: self, a, b, sum, out })
        };
        let blocks = out.par_chunks_mut(block).zip(a.par_chunks(block)).enumerate();
        if keep_sum {
            blocks
                .zip(sum.par_chunks_mut(block))
                .for_each(|((i, (out, a)), sum)| task(i, a, Some(sum), out));
        } else {
            blocks.for_each(|(i, (out, a))| task(i, a, None, out));
        }
        let tensor = |v: Vec<f32>| Tensor::from_vec(v, dims.clone(), &Device::Cpu);
        Ok((keep_sum.then(|| tensor(sum)).transpose()?, tensor(out)?))
    }
}

/// The contiguous f32 values behind a CPU tensor's storage.
fn f32_values<'a>(s: &'a Storage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) = (s, l.contiguous_offsets()) else {
        candle_core::bail!("norm: contiguous f32 tensors on the CPU only")
    };
    Ok(&data[start..end])
}

/// One task's rows: x = a (+ b), kept in `sum` when asked; then each row's norm in `out`.
struct Rows<'a> {
    norm: &'a Norm,
    a: &'a [f32],
    b: Option<&'a [f32]>,
    sum: Option<&'a mut [f32]>,
    out: &'a mut [f32],
}

impl Kernel for Rows<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Rows { norm, a, b, sum, out } = self;
        let n = norm.weight.len();
        match b {
            Some(b) => {
                for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                    *o = x + y;
                }
            }
            None => out.copy_from_slice(a),
        }
        if let Some(sum) = sum {
            sum.copy_from_slice(out);
        }
        let rows = out.len() / n;
        let mut stats = [(0f32, 0f32); ROWS];
        if rows == ROWS {
            stats = sums::<ROWS>(out, n);
        } else {
            for (r, s) in stats.iter_mut().enumerate().take(rows) {
                *s = sums::<1>(&out[r * n..(r + 1) * n], n)[0];
            }
        }
        for (row, &(sum, sum2)) in out.chunks_exact_mut(n).zip(&stats) {
            norm.row(row, sum, sum2);
        }
    }
}

/// (Σ x, Σ x²) of each of R rows of width n, each a chain of additions in index order
/// (candle's), the R chains side by side.
#[inline(always)]
fn sums<const R: usize>(x: &[f32], n: usize) -> [(f32, f32); R] {
    let (mut s, mut s2) = ([0f32; R], [0f32; R]);
    for i in 0..n {
        for r in 0..R {
            let v = x[r * n + i];
            s[r] += v;
            s2[r] += v * v;
        }
    }
    std::array::from_fn(|r| (s[r], s2[r]))
}

impl Norm {
    /// One row normalised in place from its sums.
    #[inline(always)]
    fn row(&self, row: &mut [f32], sum: f32, sum2: f32) {
        let n = row.len() as f32;
        match &self.kind {
            Kind::Rms => {
                let m = (sum2 / n + self.eps).sqrt();
                for (v, &w) in row.iter_mut().zip(&self.weight) {
                    *v = *v / m * w;
                }
            }
            Kind::Layer { bias } => {
                let mean = sum / n;
                let var = sum2 / n - mean * mean;
                let inv_std = (var + self.eps).sqrt().recip();
                for ((v, &w), &b) in row.iter_mut().zip(&self.weight).zip(bias) {
                    *v = (*v - mean) * inv_std * w + b;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tensor_bits as bits;
    use candle_core::Module;
    use std::collections::HashMap;

    /// candle's kernels (its add, then candle_nn's RmsNorm and LayerNorm) and ours on the
    /// same values: whole blocks of 8 rows and a remainder (3 × 7 = 21 rows), widths
    /// around the vector lengths, values of mixed scale and offset. The same bits, at every
    /// SIMD level, with and without the residual sum.
    #[test]
    fn norms_write_candles_bits_at_every_level() {
        let dev = Device::Cpu;
        for n in [1, 17, 64, 576] {
            let a = (Tensor::randn(0f32, 1.0, (3, 7, n), &dev).unwrap() * 3.0).unwrap();
            let b = Tensor::randn(0.5f32, 2.0, (3, 7, n), &dev).unwrap();
            let w = Tensor::randn(1f32, 0.2, n, &dev).unwrap();
            let bias = Tensor::randn(0f32, 0.2, n, &dev).unwrap();
            let sum = (&a + &b).unwrap();
            let vb = VarBuilder::from_tensors(
                HashMap::from([("weight".to_string(), w.clone()), ("bias".to_string(), bias.clone())]),
                candle_core::DType::F32,
                &dev,
            );
            let cases = [
                (Norm::rms(&w, 1e-5).unwrap(), candle_nn::RmsNorm::new(w.clone(), 1e-5).forward(&sum).unwrap()),
                (
                    Norm::layer(n, 1e-12, vb).unwrap(),
                    candle_nn::LayerNorm::new(w.clone(), bias.clone(), 1e-12).forward(&sum).unwrap(),
                ),
            ];
            for (ours, want) in &cases {
                let (s, o) = ours.forward_sum(&a, &b).unwrap();
                assert_eq!(bits(&s), bits(&sum), "n = {n}: the sum");
                assert_eq!(bits(&o), bits(want), "n = {n}: norm of the sum");
                assert_eq!(bits(&ours.forward_of_sum(&a, &b).unwrap()), bits(want), "n = {n}");
                assert_eq!(bits(&ours.forward(&sum).unwrap()), bits(want), "n = {n}");
                for level in Level::available() {
                    let (s, o) = ours.apply(level, &a, Some(&b), true).unwrap();
                    assert_eq!(bits(&s.unwrap()), bits(&sum), "n = {n} at {level:?}: the sum");
                    assert_eq!(bits(&o), bits(want), "n = {n} at {level:?}");
                }
            }
        }
    }

    /// A strided view is read as its values; widths and shapes that do not match are
    /// errors that say so.
    #[test]
    fn views_are_read_and_mismatches_are_errors() {
        let dev = Device::Cpu;
        let rms = Norm::rms(&Tensor::ones(8, candle_core::DType::F32, &dev).unwrap(), 1e-6).unwrap();
        let x = Tensor::randn(0f32, 1.0, (8, 5), &dev).unwrap();
        let view = x.t().unwrap();
        assert_eq!(bits(&rms.forward(&view).unwrap()), bits(&rms.forward(&view.contiguous().unwrap()).unwrap()));
        let wrong = Tensor::ones((2, 9), candle_core::DType::F32, &dev).unwrap();
        assert!(rms.forward(&wrong).unwrap_err().to_string().contains("does not end in 8"));
        let y = Tensor::ones((3, 8), candle_core::DType::F32, &dev).unwrap();
        let z = Tensor::ones((2, 8), candle_core::DType::F32, &dev).unwrap();
        assert!(rms.forward_sum(&y, &z).unwrap_err().to_string().contains("differ"));
        let none = Tensor::zeros(0, candle_core::DType::F32, &dev).unwrap();
        assert!(Norm::rms(&none, 1e-6).err().unwrap().to_string().contains("no values"));
    }
}
