//! Element-wise operations that candle's CPU backend runs on one thread, parallelised.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Exact GELU, x·Φ(x) = ½·x·(1 + erf(x/√2)) with libm's `erff` (the function candle's
/// `gelu_erf` uses), on all of rayon's threads. Matches `Tensor::gelu_erf` bit for bit.
pub fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    x.apply_op1_no_bwd(&GeluErf)
}

struct GeluErf;

/// Elements per parallel task: large enough to amortise scheduling.
const CHUNK: usize = 16 * 1024;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-par"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("gelu_erf: f32 only")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("gelu_erf: contiguous input only")
        };
        let src = &data[start..end];
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(o, s)| {
                for (o, &v) in o.iter_mut().zip(s) {
                    *o = 0.5 * v * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2));
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn equals_candle_gelu_erf() {
        let x = Tensor::randn(0f32, 3.0, (3, 50_000), &Device::Cpu).unwrap();
        let ours: Vec<f32> = gelu_erf(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let theirs: Vec<f32> = x
            .gelu_erf()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-6, "{worst}");
    }
}
