//! The simulator's voxel model: each subject's misregistration (jitter) and per-voxel
//! weights of the planted networks, and one run's BOLD as baseline × (1 + σ·(signal +
//! AR(1) noise + slow cosine drift)), with every random stream seeded on its own.

use ndarray::{Array2, Array3};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::error::Result;
use crate::io::nifti::Mask;
use crate::kernels::design::cosine;
use crate::kernels::noise::ar1;

/// A seed for stream `kind`/`index` derived from the user seed (SplitMix64 finaliser).
pub fn mix(seed: u64, kind: u64, index: u64) -> u64 {
    let mut z =
        seed ^ kind.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A subject's misregistration: an integer voxel offset drawn uniformly from those with
/// |dx| + |dy| + |dz| ≤ `radius` (radius 1: no shift or one voxel along one axis).
pub fn jitter_offset(rng: &mut ChaCha8Rng, radius: i32) -> [i32; 3] {
    let r = radius.max(0);
    let offsets: Vec<[i32; 3]> = (-r..=r)
        .flat_map(|x| (-r..=r).flat_map(move |y| (-r..=r).map(move |z| [x, y, z])))
        .filter(|o| o.iter().map(|c| c.abs()).sum::<i32>() <= r)
        .collect();
    offsets[rng.random_range(0..offsets.len())]
}

/// Per masked voxel: (planted group index, weight w_v) when the subject's shifted network
/// covers it. Shift: the subject's network at voxel v is the atlas network at v − shift.
pub fn subject_weights(
    rng: &mut ChaCha8Rng,
    labels: &Array3<f32>,
    mask: &Mask,
    shift: [i32; 3],
    networks: &[u16],
) -> Vec<Option<(usize, f64)>> {
    let shape = labels.shape();
    mask.ijk()
        .map(|[i, j, k]| {
            let src = [
                i as i32 - shift[0],
                j as i32 - shift[1],
                k as i32 - shift[2],
            ];
            let inside = src
                .iter()
                .zip(shape)
                .all(|(&c, &n)| c >= 0 && (c as usize) < n);
            let label = if inside {
                labels[[src[0] as usize, src[1] as usize, src[2] as usize]] as u16
            } else {
                0
            };
            let w = rng.random_range(0.5..1.5);
            networks.iter().position(|&n| n == label).map(|g| (g, w))
        })
        .collect()
}

/// One run of BOLD on the mask's voxels: voxels × scans (the volumes are written from it
/// one at a time, zero outside the mask).
#[allow(clippy::too_many_arguments)]
pub fn bold_run(
    rng: &mut ChaCha8Rng,
    mask: &Mask,
    weights: &[Option<(usize, f64)>],
    baseline: &[f64],
    tcs: &[Vec<f64>],
    n_scans: usize,
    signal_scale: f64,
    rho: f64,
) -> Result<Array2<f32>> {
    let mut data = Array2::<f32>::zeros((mask.len(), n_scans));
    let mut noise = vec![0.0; n_scans];
    const PERCENT: f64 = 2.0; // noise sd as a share of the baseline, in %
    for v in 0..mask.len() {
        ar1(rng, rho, &mut noise)?;
        let drift: [f64; 3] = std::array::from_fn(|_| 0.5 * rng.sample::<f64, _>(StandardNormal));
        let sigma = baseline[v] * PERCENT / 100.0;
        for t in 0..n_scans {
            let slow: f64 = drift
                .iter()
                .enumerate()
                .map(|(k, c)| c * cosine(k + 1, t, n_scans))
                .sum();
            let signal = weights[v].map_or(0.0, |(g, w)| signal_scale * w * tcs[g][t]);
            data[[v, t]] =
                (baseline[v] + sigma * (signal + noise[t] + slow)) as f32;
        }
    }
    Ok(data)
}

