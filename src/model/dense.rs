//! A dense projection y = x·Wᵀ + b whose GEMM runs in faer on all of rayon's threads.
//!
//! Why not `candle_nn::Linear`: on a (batch, tokens, hidden) input candle broadcasts W per
//! batch item and adds the bias in a second single-threaded pass; on the 2-core reference
//! machine a MiniLM FFN projection took 9.2 ms that way against 2.8 ms here (1,032 × 384 ×
//! 1,536, f32). The bias is written first and the product accumulated onto it.
//!
//! Weights are an f32 copy, or rows kept as stored ([`RowSource`]: f16/bf16 in the
//! checkpoint's mapped file, GGUF quantisation blocks) and converted a chunk of rows at a
//! time into scratch that lives for one call: the product over the chunk fills the
//! matching columns of y.

use candle_core::{CpuStorage, CustomOp1, Layout, Module, Shape, Tensor};
use candle_nn::VarBuilder;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::stored::RowSource;

/// f32 values converted per chunk of stored rows: 8 MiB, so that a chunk stays in the
/// last-level cache while its product runs and still has ≥ 190 rows at 7B widths (11,008).
const CHUNK_VALUES: usize = 1 << 21;

enum Weight {
    F32(Vec<f32>),
    Rows(Box<dyn RowSource>),
}

/// Weights (out × in, row-major) and an optional bias, f32.
pub struct Dense {
    weight: Weight,
    bias: Option<Vec<f32>>,
    in_dim: usize,
    out_dim: usize,
}

impl Dense {
    /// From a (out × in) weight tensor, as stored by PyTorch's `nn.Linear`.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        let flat = |t: &Tensor| {
            t.to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1()
        };
        let bias = bias.map(flat).transpose()?;
        if bias.as_ref().is_some_and(|b| b.len() != out_dim) {
            candle_core::bail!("bias length differs from the weight's {out_dim} rows");
        }
        Ok(Dense {
            weight: Weight::F32(flat(weight)?),
            bias,
            in_dim,
            out_dim,
        })
    }

    /// Weights kept as stored, and an optional bias.
    pub fn from_rows(weight: Box<dyn RowSource>, bias: Option<&Tensor>) -> candle_core::Result<Self> {
        let bias = bias
            .map(|b| b.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1())
            .transpose()?;
        if bias.as_ref().is_some_and(|b| b.len() != weight.rows()) {
            candle_core::bail!("bias length differs from the weight's {} rows", weight.rows());
        }
        Ok(Dense {
            in_dim: weight.cols(),
            out_dim: weight.rows(),
            weight: Weight::Rows(weight),
            bias,
        })
    }
}

/// Projections of one input into attention heads (q, k, v), as one GEMM over their
/// stacked weights when every one is an f32 copy: one product with n = Σ out instead of
/// several narrow ones, each a sync of both cores. Weights kept as stored stay separate.
pub enum Stacked {
    One { dense: Dense, outs: Vec<usize> },
    Each(Vec<Dense>),
}

impl Stacked {
    pub fn new(parts: Vec<Dense>) -> candle_core::Result<Self> {
        let in_dim = parts.first().map_or(0, |d| d.in_dim);
        let f32_copies = parts
            .iter()
            .all(|d| matches!(d.weight, Weight::F32(_)) && d.in_dim == in_dim);
        if !f32_copies {
            return Ok(Stacked::Each(parts));
        }
        let outs: Vec<usize> = parts.iter().map(|d| d.out_dim).collect();
        let out_dim = outs.iter().sum::<usize>();
        let any_bias = parts.iter().any(|d| d.bias.is_some());
        let mut weight = Vec::with_capacity(out_dim * in_dim);
        let mut bias = Vec::with_capacity(if any_bias { out_dim } else { 0 });
        for d in parts {
            let Weight::F32(w) = d.weight else { unreachable!("checked above") };
            weight.extend(w);
            if any_bias {
                bias.extend(d.bias.unwrap_or_else(|| vec![0.0; d.out_dim]));
            }
        }
        let dense = Dense {
            weight: Weight::F32(weight),
            bias: any_bias.then_some(bias),
            in_dim,
            out_dim,
        };
        Ok(Stacked::One { dense, outs })
    }

    /// Each of the N projections of x (b, t, in) as a (b, out / head_dim, t, head_dim)
    /// view, the layout the fused attention reads (strided).
    pub fn heads<const N: usize>(&self, x: &Tensor, head_dim: usize) -> candle_core::Result<[Tensor; N]> {
        let (b, t, _) = x.dims3()?;
        let outs: Vec<usize> = match self {
            Stacked::One { outs, .. } => outs.clone(),
            Stacked::Each(parts) => parts.iter().map(|d| d.out_dim).collect(),
        };
        if outs.len() != N || head_dim == 0 || outs.iter().any(|n| n % head_dim != 0) {
            candle_core::bail!("projections of widths {outs:?} are not {N} sets of {head_dim}-wide heads")
        }
        let split = |y: Tensor, n: usize| y.reshape((b, t, n / head_dim, head_dim));
        let heads: Vec<Tensor> = match self {
            Stacked::Each(parts) => parts
                .iter()
                .map(|d| split(d.forward(x)?, d.out_dim)?.transpose(1, 2))
                .collect::<candle_core::Result<_>>()?,
            Stacked::One { dense, outs } => {
                let all = split(dense.forward(x)?, dense.out_dim)?;
                let mut first = 0;
                outs.iter()
                    .map(|&n| {
                        let part = all.narrow(2, first / head_dim, n / head_dim)?.transpose(1, 2);
                        first += n;
                        part
                    })
                    .collect::<candle_core::Result<_>>()?
            }
        };
        Ok(heads.try_into().expect("N widths checked above"))
    }
}

/// `weight` (out × in) and `bias` (out) from `vb`, as `candle_nn::linear` reads them.
pub fn dense(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Dense> {
    let weight = vb.get((out_dim, in_dim), "weight")?;
    let bias = vb.get(out_dim, "bias")?;
    Dense::new(&weight, Some(&bias))
}

impl Module for Dense {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.apply_op1_no_bwd(self)
    }
}

impl CustomOp1 for Dense {
    fn name(&self) -> &'static str {
        "dense-faer"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("dense: f32 input only")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("dense: contiguous input only")
        };
        let dims = layout.dims();
        if self.in_dim == 0 || self.out_dim == 0 {
            candle_core::bail!("dense: a {} × {} weight has no values", self.out_dim, self.in_dim);
        }
        if dims.last() != Some(&self.in_dim) {
            candle_core::bail!("dense: input {dims:?} does not end in {}", self.in_dim);
        }
        let rows = (end - start) / self.in_dim;
        let mut out = vec![0f32; rows * self.out_dim];
        let accum = match &self.bias {
            Some(b) => {
                out.par_chunks_mut(self.out_dim)
                    .for_each(|row| row.copy_from_slice(b));
                Accum::Add
            }
            None => Accum::Replace,
        };
        let x = MatRef::from_row_major_slice(&data[start..end], rows, self.in_dim);
        let mut y = MatMut::from_row_major_slice_mut(&mut out, rows, self.out_dim);
        let par = Par::rayon(rayon::current_num_threads());
        match &self.weight {
            Weight::F32(w) => {
                let w = MatRef::from_row_major_slice(w, self.out_dim, self.in_dim);
                faer::linalg::matmul::matmul(y, accum, x, w.transpose(), 1.0f32, par);
            }
            Weight::Rows(m) => {
                let chunk = (CHUNK_VALUES / self.in_dim).clamp(1, self.out_dim);
                let mut scratch = vec![0f32; chunk * self.in_dim];
                for first in (0..self.out_dim).step_by(chunk) {
                    let n = chunk.min(self.out_dim - first);
                    let w = &mut scratch[..n * self.in_dim];
                    w.par_chunks_mut(16 * self.in_dim)
                        .enumerate()
                        .try_for_each(|(i, part)| m.rows_to_f32(first + 16 * i, part))?;
                    let w = MatRef::from_row_major_slice(w, n, self.in_dim);
                    let y = y.as_mut().subcols_mut(first, n);
                    faer::linalg::matmul::matmul(y, accum, x, w.transpose(), 1.0f32, par);
                }
            }
        }
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("checked non-empty") = self.out_dim;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Against candle's own Linear on a batched input, with and without bias; f32 sums of
    /// 96 products in another order differ by a few ulps of the output scale (~10).
    #[test]
    fn equals_candle_linear() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (3, 7, 96), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (40, 96), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 40, &dev).unwrap();
        for bias in [None, Some(&b)] {
            let ours = Dense::new(&w, bias).unwrap().forward(&x).unwrap();
            let theirs = candle_nn::Linear::new(w.clone(), bias.cloned())
                .forward(&x)
                .unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let worst = super::super::max_abs_diff(&ours, &theirs);
            assert!(worst < 1e-4, "{worst}");
        }
    }

    /// q, k, v (12, 4, 4 outputs, one without a bias) stacked into one product give each
    /// projection's heads as three separate products do: the same sums of 16 products,
    /// bound as above.
    #[test]
    fn stacked_projections_equal_separate_ones() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 5, 16), &dev).unwrap();
        let weight = |n: usize| Tensor::randn(0f32, 1.0, (n, 16), &dev).unwrap();
        let (wq, wk, wv) = (weight(12), weight(4), weight(4));
        let (bq, bv) = (Tensor::randn(0f32, 1.0, 12, &dev).unwrap(), Tensor::randn(0f32, 1.0, 4, &dev).unwrap());
        let parts = || {
            vec![
                Dense::new(&wq, Some(&bq)).unwrap(),
                Dense::new(&wk, None).unwrap(),
                Dense::new(&wv, Some(&bv)).unwrap(),
            ]
        };
        let stacked = Stacked::new(parts()).unwrap();
        assert!(matches!(stacked, Stacked::One { .. }));
        let ours: [Tensor; 3] = stacked.heads(&x, 2).unwrap();
        let theirs: [Tensor; 3] = Stacked::Each(parts()).heads(&x, 2).unwrap();
        assert!(stacked.heads::<3>(&x, 3).is_err(), "widths 12, 4, 4 are not 3-wide heads");
        assert!(stacked.heads::<2>(&x, 2).is_err(), "three projections, not two");
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a.dims(), b.dims());
            assert!(super::super::max_abs_diff(a, b) < 1e-4);
        }
        assert_eq!(ours[0].dims(), [2, 6, 5, 2]);
    }

    /// A bf16 matrix left in its file, 700 × 4,096 so that it runs as two chunks (512 rows
    /// and 188, not a multiple of the 16-row conversion tasks), against the f32 copy of
    /// the same values. Sums of 4,096 products of N(0, 1) values (scale ~64) in another
    /// blocking differ by a few ulps of that scale; bound 1e-3.
    #[test]
    fn stored_rows_in_chunks_equal_the_f32_copy() {
        use super::super::stored::StoredMatrix;
        use candle_core::safetensors::MmapedSafetensors;
        let (out_dim, in_dim) = (700, 4096);
        assert_eq!(CHUNK_VALUES / in_dim, 512);
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (out_dim, in_dim), &dev)
            .unwrap()
            .to_dtype(candle_core::DType::BF16)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        w.save_safetensors("w", &path).unwrap();
        let files = std::sync::Arc::new(unsafe { MmapedSafetensors::new(&path) }.unwrap());
        let stored = StoredMatrix::find(&files, "w", out_dim, in_dim)
            .unwrap()
            .expect("bf16 is kept as stored");
        let x = Tensor::randn(0f32, 1.0, (3, 5, in_dim), &dev).unwrap();
        let ours = Dense::from_rows(Box::new(stored), None).unwrap().forward(&x).unwrap();
        let copy = w.to_dtype(candle_core::DType::F32).unwrap();
        let theirs = Dense::new(&copy, None).unwrap().forward(&x).unwrap();
        assert_eq!(ours.dims(), [3, 5, out_dim]);
        let worst = super::super::max_abs_diff(&ours, &theirs);
        assert!(worst < 1e-3, "{worst}");
    }
}
