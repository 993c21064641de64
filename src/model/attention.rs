//! Scaled dot-product attention, softmax(q·kᵀ/√d + causal mask)·v, fused into one op that
//! runs one block of queries of one batch item (every head) per rayon task.
//!
//! Why fused: candle computes the (heads × t × t) score tensor with a batched GEMM whose
//! inner dimension (the head size, 32 in MiniLM) is too small for its kernel to be
//! efficient, then scales, masks and normalises it in separate passes, some on one thread.
//! Here each task keeps its keys × 64 scores and d × 64 context in cache-sized scratch.
//! Grouped-query attention reads key/value head `h / (heads / kv_heads)` instead of
//! materialising repeated heads, and the context comes out already as (batch, t, heads·d),
//! the layout the output projection wants.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use faer::{Accum, Mat, MatRef, Par};
use rayon::prelude::*;

/// Which keys a query sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// Every key (encoders).
    Full,
    /// Keys up to the query's own position (decoders).
    Causal,
    /// The last `w` keys up to the query's own position (Mistral's sliding window, as
    /// transformers' `sliding_window_overlay`: key j is seen by query i when i − w < j ≤ i).
    Sliding(usize),
}

impl Mask {
    /// The keys query `i` of `t` sees.
    fn keys(self, i: usize, t: usize) -> std::ops::Range<usize> {
        match self {
            Mask::Full => 0..t,
            Mask::Causal => 0..i + 1,
            Mask::Sliding(w) => (i + 1).saturating_sub(w)..i + 1,
        }
    }
}

/// softmax(q·kᵀ/√d + mask)·v for q (b, heads, t, d) and k, v (b, kv_heads, t, d), any
/// strides; returns (b, t, heads·d).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Mask) -> candle_core::Result<Tensor> {
    q.apply_op3_no_bwd(k, v, &Attention { mask })
}

struct Attention {
    mask: Mask,
}

/// A strided 4-D f32 view (b, heads, t, d) of a storage buffer.
struct View<'a> {
    data: &'a [f32],
    offset: usize,
    dims: [usize; 4],
    strides: [usize; 4],
}

impl<'a> View<'a> {
    fn new(storage: &'a CpuStorage, layout: &Layout, what: &str) -> candle_core::Result<Self> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("attention: {what} must be f32")
        };
        let (Ok(dims), Ok(strides)) = (
            <[usize; 4]>::try_from(layout.dims()),
            <[usize; 4]>::try_from(layout.stride()),
        ) else {
            candle_core::bail!("attention: {what} must be 4-D, got {:?}", layout.dims())
        };
        let last: usize = dims
            .iter()
            .zip(&strides)
            .map(|(n, s)| n.saturating_sub(1) * s)
            .sum();
        if dims.contains(&0) || layout.start_offset() + last >= data.len() {
            candle_core::bail!("attention: {what} view {dims:?} does not fit its storage")
        }
        Ok(View {
            data,
            offset: layout.start_offset(),
            dims,
            strides,
        })
    }

    /// The (t × d) matrix of batch item `b`, head `h`.
    fn mat(&self, b: usize, h: usize) -> MatRef<'a, f32> {
        let [_, _, t, d] = self.dims;
        let start = self.offset + b * self.strides[0] + h * self.strides[1];
        // SAFETY: `new` checked that the view's last element lies inside `data`, and every
        // (b, h, i, j) addressed here is inside the view's dims.
        unsafe {
            MatRef::from_raw_parts(
                self.data.as_ptr().add(start),
                t,
                d,
                self.strides[2] as isize,
                self.strides[3] as isize,
            )
        }
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "attention-fused"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            View::new(s1, l1, "q")?,
            View::new(s2, l2, "k")?,
            View::new(s3, l3, "v")?,
        );
        let [b, heads, t, d] = q.dims;
        let kv_heads = k.dims[1];
        if k.dims != v.dims
            || k.dims[0] != b
            || k.dims[2] != t
            || k.dims[3] != d
            || heads % kv_heads != 0
        {
            candle_core::bail!(
                "attention: q {:?}, k {:?}, v {:?} disagree",
                q.dims,
                k.dims,
                v.dims
            )
        }
        let rep = heads / kv_heads;
        let scale = 1.0 / (d as f32).sqrt();
        let width = heads * d;
        let mut out = vec![0f32; b * t * width];
        // Tasks: a block of QUERY_BLOCK queries of one batch item, every head, writing its
        // own rows of the output.
        let mut tasks = Vec::with_capacity(b * t.div_ceil(QUERY_BLOCK));
        for (bi, item) in out.chunks_mut(t * width).enumerate() {
            let blocks = item.chunks_mut(QUERY_BLOCK * width);
            tasks.extend(blocks.enumerate().map(|(n, rows)| (bi, n * QUERY_BLOCK, rows)));
        }
        tasks.into_par_iter().for_each_init(
            // Scores (keys × queries) and context (d × queries) scratch per rayon thread.
            || (Mat::<f32>::zeros(t, QUERY_BLOCK), Mat::<f32>::zeros(d, QUERY_BLOCK)),
            |(st, ctx), (bi, first, rows)| {
                let nq = rows.len() / width;
                // The keys the block's queries see: from its first query's first key to
                // its last query's last; outside them every weight is 0.
                let (k0, k1) = (self.mask.keys(first, t).start, self.mask.keys(first + nq - 1, t).end);
                let nk = k1 - k0;
                for h in 0..heads {
                    let (km, vm) = (k.mat(bi, h / rep).subrows(k0, nk), v.mat(bi, h / rep).subrows(k0, nk));
                    // Column i of sᵀ = k·qᵀ holds query i's scores, contiguous in faer's layout.
                    faer::linalg::matmul::matmul(
                        st.as_mut().submatrix_mut(0, 0, nk, nq),
                        Accum::Replace,
                        km,
                        q.mat(bi, h).subrows(first, nq).transpose(),
                        scale,
                        Par::Seq,
                    );
                    super::ops::vectorized(SoftmaxColumns { st, keys: nk, first, k0, t, mask: self.mask, queries: nq });
                    // Context transposed (d × queries): column i is query i's row of the output.
                    faer::linalg::matmul::matmul(
                        ctx.as_mut().subcols_mut(0, nq),
                        Accum::Replace,
                        vm.transpose(),
                        st.as_ref().submatrix(0, 0, nk, nq),
                        1.0f32,
                        Par::Seq,
                    );
                    for (i, row) in rows.chunks_exact_mut(width).enumerate() {
                        row[h * d..][..d].copy_from_slice(ctx.col_as_slice(i));
                    }
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((b, t, width))))
    }
}

/// Queries a task attends at once: causal attention skips the keys after the block's last
/// query (62.5% of the products of full attention at 256 tokens, 56% at 512), and
/// b × t / 64 tasks keep both cores busy even for one window.
const QUERY_BLOCK: usize = 64;

/// Softmax of the first `queries` columns of sᵀ (one query's scores each, over `keys`
/// keys from key `k0`; query `first + i` in column i), as a vectorised body.
struct SoftmaxColumns<'a> {
    st: &'a mut Mat<f32>,
    keys: usize,
    first: usize,
    k0: usize,
    t: usize,
    mask: Mask,
    queries: usize,
}

impl super::ops::Kernel for SoftmaxColumns<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let SoftmaxColumns { st, keys, first, k0, t, mask, queries } = self;
        for i in 0..queries {
            let seen = mask.keys(first + i, t);
            softmax_in_place(&mut st.col_as_slice_mut(i)[..keys], seen.start - k0..seen.end - k0);
        }
    }
}

/// Softmax over the entries `keys` (max-subtracted, as PyTorch); the rest (masked
/// positions) get weight 0.
#[inline(always)]
fn softmax_in_place(col: &mut [f32], keys: std::ops::Range<usize>) {
    let (before, rest) = col.split_at_mut(keys.start);
    let (live, masked) = rest.split_at_mut(keys.len());
    before.fill(0.0);
    let max = lanes(live, f32::NEG_INFINITY, |m, x| if x > m { x } else { m });
    live.iter_mut().for_each(|x| *x = super::ops::exp(*x - max));
    let scale = 1.0 / lanes(live, 0.0, |s, x| s + x);
    live.iter_mut().for_each(|x| *x *= scale);
    masked.fill(0.0);
}

/// Reduces `xs` with `op` in 8 independent lanes, then across them: a scalar fold is one
/// long dependency chain, this form vectorises (sums are reassociated: ±1 ulp).
#[inline(always)]
fn lanes(xs: &[f32], init: f32, op: impl Fn(f32, f32) -> f32 + Copy) -> f32 {
    let mut acc = [init; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = op(*a, x);
        }
    }
    let acc = tail.iter().fold(acc, |mut acc, &x| {
        acc[0] = op(acc[0], x);
        acc
    });
    acc.into_iter().fold(init, op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    /// The unfused formula written with candle's own ops, repeated kv heads and all.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, mask: Mask) -> Tensor {
        let (b, heads, t, d) = q.dims4().unwrap();
        let rep = heads / k.dim(1).unwrap();
        let expand = |x: &Tensor| {
            let (b, kv, t, d) = x.dims4().unwrap();
            x.unsqueeze(2)
                .unwrap()
                .expand((b, kv, rep, t, d))
                .unwrap()
                .reshape((b, kv * rep, t, d))
                .unwrap()
        };
        let (k, v) = (expand(k), expand(v));
        let mut s = (q.matmul(&k.t().unwrap()).unwrap() / (d as f64).sqrt()).unwrap();
        if mask != Mask::Full {
            let seen = move |i: usize, j: usize| match mask {
                Mask::Sliding(w) => j <= i && i < j + w,
                _ => j <= i,
            };
            let m: Vec<f32> = (0..t)
                .flat_map(|i| (0..t).map(move |j| if seen(i, j) { 0.0 } else { f32::NEG_INFINITY }))
                .collect();
            let m = Tensor::from_vec(m, (t, t), &Device::Cpu).unwrap();
            s = s.broadcast_add(&m).unwrap();
        }
        let p = candle_nn::ops::softmax(&s, D::Minus1).unwrap();
        p.matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, t, heads * d))
            .unwrap()
    }

    /// Every mask (sliding windows of 1, 5 and past the sequence), grouped-query heads, and a
    /// strided (transposed, non-contiguous) q; f32 sums over ≤ 16 keys in another order: a
    /// few ulps of the unit-scale output.
    #[test]
    fn equals_the_unfused_formula() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (2, 16, 6, 8), &dev)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let k = Tensor::randn(0f32, 1.0, (2, 2, 16, 8), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (2, 2, 16, 8), &dev).unwrap();
        for mask in [
            Mask::Full,
            Mask::Causal,
            Mask::Sliding(1),
            Mask::Sliding(5),
            Mask::Sliding(40),
        ] {
            let ours = attention(&q, &k, &v, mask).unwrap();
            let theirs = reference(&q.contiguous().unwrap(), &k, &v, mask);
            let worst = super::super::max_abs_diff(&ours, &theirs);
            assert!(worst < 1e-5, "{mask:?}: {worst}");
        }
    }

    /// 150 queries: blocks of 64, 64 and 22, where causal and sliding-window blocks start
    /// past key 0 and end before the last key; sums over ≤ 150 keys, the same bound.
    #[test]
    fn blocks_of_queries_equal_the_unfused_formula() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (2, 4, 150, 8), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (2, 2, 150, 8), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (2, 2, 150, 8), &dev).unwrap();
        const { assert!(150 > 2 * QUERY_BLOCK) };
        for mask in [Mask::Full, Mask::Causal, Mask::Sliding(1), Mask::Sliding(40), Mask::Sliding(100)] {
            let ours = attention(&q, &k, &v, mask).unwrap();
            let worst = super::super::max_abs_diff(&ours, &reference(&q, &k, &v, mask));
            assert!(worst < 1e-5, "{mask:?}: {worst}");
        }
    }

    #[test]
    fn disagreeing_shapes_are_an_error() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 3, 4, 8), candle_core::DType::F32, &dev).unwrap();
        let k = Tensor::zeros((1, 2, 4, 8), candle_core::DType::F32, &dev).unwrap();
        assert!(attention(&q, &k, &k, Mask::Full).is_err());
    }

    /// The softmax writes the same bits at every SIMD level this CPU has as at the baseline
    /// (its max and sum keep 8 explicit lanes, so no level reassociates them), for each
    /// mask, on key counts around the vector widths.
    #[test]
    fn softmax_is_the_same_bits_at_every_simd_level() {
        use super::super::ops::Level;
        for (t, first) in [(1, 0), (17, 0), (100, 0), (256, 64), (300, 128)] {
            for mask in [Mask::Full, Mask::Causal, Mask::Sliding(5)] {
                let queries = (t - first).min(QUERY_BLOCK);
                let (k0, k1) = (mask.keys(first, t).start, mask.keys(first + queries - 1, t).end);
                let keys = k1 - k0;
                let scores = Mat::<f32>::from_fn(t, QUERY_BLOCK, |i, j| ((i * 31 + j * 7) as f32 * 0.37).sin() * 20.0);
                let softmax = |level: Level| -> Vec<u32> {
                    let mut st = scores.clone();
                    level.run(SoftmaxColumns { st: &mut st, keys, first, k0, t, mask, queries });
                    (0..queries).flat_map(|j| st.col_as_slice(j)[..keys].to_vec()).map(f32::to_bits).collect()
                };
                let base = softmax(Level::Baseline);
                for level in Level::available() {
                    assert_eq!(softmax(level), base, "{mask:?}, t = {t}, first = {first}, at {level:?}");
                }
            }
        }
    }
}
