//! Rotary position embeddings, applied to q and k where the stacked projection wrote them.
//!
//! Why: candle's rotary kernels want contiguous (b, heads, t, d) input, so q and k were
//! copied out of the projection's (b, t, heads, d) output and rotated into a third buffer:
//! on SmolLM2-135M, 5–6% of a forward pass for ~0.2% of its arithmetic. Rotating the
//! views in place reads and writes each value once. A view of another layout (not a
//! projection's output) goes through candle's kernels, as before.
//!
//! The formulas are candle's, in its order of operations (the same bits): for a pair
//! (x₁, x₂) and the angle's (c, s), x₁ ← x₁·c − x₂·s and x₂ ← x₁·s + x₂·c, pairing
//! (x_i, x_{i+d/2}) ([`RopeLayout::Halves`]) or (x_2i, x_2i+1) ([`RopeLayout::Interleaved`]).

use candle_core::{CpuStorage, Device, InplaceOp1, Layout, Tensor};
use rayon::prelude::*;

use super::llama::RopeLayout;

/// Rotary tables for positions 0..max: cos and sin of p·θ_i, (max × d/2). As in
/// transformers' LlamaRotaryEmbedding.forward, θ_i is held in float32 and p·θ_i is a
/// float32 product, so that far positions get transformers' angles: a product in f64
/// rounded afterwards differs from it by up to 2e-6 rad at position 40 and 5e-4 rad at
/// position 8191 (|p·θ| up to 8191 has a float32 spacing of 5e-4).
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
    /// The tables' values, row-major, for the in-place kernel.
    cos_values: Vec<f32>,
    sin_values: Vec<f32>,
    layout: RopeLayout,
}

impl Rope {
    pub(crate) fn new(inv_freq: &[f64], max: usize, layout: RopeLayout) -> candle_core::Result<Self> {
        let angles: Vec<f32> = (0..max)
            .flat_map(|p| inv_freq.iter().map(move |&f| p as f32 * f as f32))
            .collect();
        let angles = Tensor::from_vec(angles, (max, inv_freq.len()), &Device::Cpu)?;
        let (cos, sin) = (angles.cos()?, angles.sin()?);
        Ok(Rope {
            cos_values: cos.flatten_all()?.to_vec1()?,
            sin_values: sin.flatten_all()?.to_vec1()?,
            cos,
            sin,
            layout,
        })
    }

    /// x (b, heads, t, d) rotated by position. When x's layout is token-major (a view of a
    /// projection's (b, t, ·) output, the usual case) x's own storage is rotated and a
    /// handle to it returned: the caller's buffer changes. Otherwise into a new tensor.
    pub(crate) fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, _, t, d) = x.dims4()?;
        if d % 2 != 0 || d / 2 * t > self.cos_values.len() || d / 2 != self.cos.dim(1)? {
            candle_core::bail!("rope: {:?} does not fit tables of {:?}", x.dims(), self.cos.dims())
        }
        if token_major(x.layout()).is_some() {
            x.inplace_op1(&InPlace(self))?;
            return Ok(x.clone());
        }
        self.with_candle(x)
    }

    /// x rotated by candle's kernels, on a contiguous copy.
    fn with_candle(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let t = x.dim(2)?;
        let (cos, sin) = (self.cos.narrow(0, 0, t)?, self.sin.narrow(0, 0, t)?);
        let x = x.contiguous()?;
        match self.layout {
            RopeLayout::Halves => candle_nn::rotary_emb::rope(&x, &cos, &sin),
            RopeLayout::Interleaved => candle_nn::rotary_emb::rope_i(&x, &cos, &sin),
        }
    }
}

/// For a (b, heads, t, d) view whose tokens are rows of one buffer (strides
/// [t·row, d, row, 1] with row ≥ heads·d: a projection's (b, t, ·) output split into
/// heads), that row's length.
fn token_major(l: &Layout) -> Option<usize> {
    let (dims, strides) = (l.dims(), l.stride());
    let [b, h, t, d] = dims else { return None };
    let [sb, sh, st, sd] = strides else { return None };
    let row = *st;
    let ok = *sd == 1 && *sh == *d && row >= h * d && (*b == 1 || *sb == t * row);
    ok.then_some(row)
}

/// The in-place rotation of a token-major view.
struct InPlace<'a>(&'a Rope);

impl InplaceOp1 for InPlace<'_> {
    fn name(&self) -> &'static str {
        "rope-in-place"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = s else {
            candle_core::bail!("rope: f32 only")
        };
        let Some(row) = token_major(l) else {
            candle_core::bail!("rope: {:?} with strides {:?} is not token-major", l.dims(), l.stride())
        };
        let [b, h, t, d] = *l.dims() else { unreachable!("checked by token_major") };
        let (rope, half, width) = (self.0, d / 2, h * d);
        if b * t == 0 {
            return Ok(());
        }
        let rows = &mut data[l.start_offset()..];
        if rows.len() < (b * t - 1) * row + width {
            candle_core::bail!("rope: the view runs past its storage")
        }
        rows.par_chunks_mut(row).take(b * t).enumerate().for_each(|(r, row)| {
            let at = (r % t) * half;
            let (cos, sin) = (&rope.cos_values[at..at + half], &rope.sin_values[at..at + half]);
            for head in row[..width].chunks_exact_mut(d) {
                match rope.layout {
                    RopeLayout::Halves => {
                        let (x1, x2) = head.split_at_mut(half);
                        for (((a, b), &c), &s) in x1.iter_mut().zip(x2).zip(cos).zip(sin) {
                            (*a, *b) = (*a * c - *b * s, *a * s + *b * c);
                        }
                    }
                    RopeLayout::Interleaved => {
                        for ((pair, &c), &s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
                            let (a, b) = (pair[0], pair[1]);
                            (pair[0], pair[1]) = (a * c - b * s, a * s + b * c);
                        }
                    }
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tensor_bits as bits;

    /// q and k rotated in place inside a stacked (b, t, q|k|v heads, d) output equal
    /// candle's kernels on contiguous copies, bit for bit, in both pair layouts; v is
    /// untouched; so do a projection of its own, and one position with one head; a
    /// contiguous (b, heads, t, d) tensor takes candle's path.
    #[test]
    fn in_place_rotation_writes_candles_bits() {
        let dev = Device::Cpu;
        let (b, t, nq, nkv, d) = (2, 9, 4, 2, 8);
        let inv_freq: Vec<f64> = (0..d / 2).map(|i| 10_000f64.powf(-(2.0 * i as f64) / d as f64)).collect();
        for layout in [RopeLayout::Halves, RopeLayout::Interleaved] {
            let rope = Rope::new(&inv_freq, 16, layout).unwrap();
            let all = Tensor::randn(0f32, 1.0, (b, t, nq + 2 * nkv, d), &dev).unwrap();
            let view = |first: usize, n: usize| all.narrow(2, first, n).unwrap().transpose(1, 2).unwrap();
            let theirs = |x: &Tensor| rope.with_candle(x).unwrap();
            let (want_q, want_k) = (theirs(&view(0, nq)), theirs(&view(nq, nkv)));
            let v_before = bits(&view(nq + nkv, nkv));
            let (q, k) = (rope.apply(&view(0, nq)).unwrap(), rope.apply(&view(nq, nkv)).unwrap());
            assert_eq!(bits(&q), bits(&want_q), "{layout:?}: q");
            assert_eq!(bits(&k), bits(&want_k), "{layout:?}: k");
            assert_eq!(bits(&view(nq + nkv, nkv)), v_before, "{layout:?}: v untouched");
            // One projection of its own (weights kept as stored): rows exactly h·d wide.
            let alone = Tensor::randn(0f32, 1.0, (b, t, nq * d), &dev).unwrap();
            let heads = alone.reshape((b, t, nq, d)).unwrap().transpose(1, 2).unwrap();
            let want = theirs(&heads);
            assert_eq!(bits(&rope.apply(&heads).unwrap()), bits(&want), "{layout:?}: one projection");
            // One position, and one key/value head.
            let one = Tensor::randn(0f32, 1.0, (1, 1, nq + 2, d), &dev).unwrap();
            let k1 = one.narrow(2, nq, 1).unwrap().transpose(1, 2).unwrap();
            let want = theirs(&k1);
            assert_eq!(bits(&rope.apply(&k1).unwrap()), bits(&want), "{layout:?}: t = 1, one head");
            let plain = Tensor::randn(0f32, 1.0, (b, nq, t, d), &dev).unwrap();
            assert!(token_major(plain.layout()).is_none() || t == 1);
            assert_eq!(bits(&rope.apply(&plain).unwrap()), bits(&theirs(&plain)), "{layout:?}: copy path");
        }
    }

    #[test]
    fn views_longer_than_the_tables_are_errors() {
        let rope = Rope::new(&[1.0, 0.5], 4, RopeLayout::Halves).unwrap();
        let x = Tensor::zeros((1, 2, 5, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(rope.apply(&x).unwrap_err().to_string().contains("does not fit"));
    }
}
