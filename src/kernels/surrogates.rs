//! Surrogate maps that keep a map's spatial autocorrelation, for a spatial null of map
//! overlaps: the variogram-matching method of Burt et al. (2020, NeuroImage 220:117038;
//! BrainSMASH), on the voxels of a mask.
//!
//! A map's variogram is γ(h) = ½·mean over voxel pairs at distance ≈ h of (x_i − x_j)²,
//! here over a fixed random sample of pairs no further apart than the 25th percentile of
//! the sampled distances (BrainSMASH's `pv = 25`), in 25 equal bins. One surrogate:
//!
//! 1. permute the map's values over the mask (no structure left);
//! 2. smooth the permuted map (centred, zero outside the mask) with a Gaussian g of FWHM
//!    w and divide each voxel by the standard deviation the smoothing gives it,
//!    √(Σ_j∈mask g_ij²) ∝ √(g'∗mask) with g' the Gaussian of FWHM w/√2 (g² is a Gaussian of
//!    half the variance): every voxel, at the edge of the mask as inside, gets the same
//!    variance, as BrainSMASH's average over each voxel's k nearest neighbours does (a
//!    Gaussian on the grid is that operation with the neighbourhood set by w). Without it,
//!    edge voxels, averaged over fewer neighbours, would hold the extremes, and thresholded
//!    surrogates would gather at the cortical edge where the networks lie;
//! 3. regress the map's variogram on the smoothed map's: γ_map ≈ α + β·γ_smooth, and mix
//!    s = √|β|·smoothed + √|α|·ε with ε white noise (whose variogram is flat), so the
//!    surrogate's variogram matches the map's;
//! 4. give the surrogate the map's own values in its rank order (BrainSMASH's
//!    `resample=True`), so thresholds select the same number of voxels.
//!
//! The width w (2–32 mm) is chosen per map from a grid of candidates as the one whose surrogates'
//! variograms are closest (least squares over the bins) to the map's, on a few trial
//! surrogates; BrainSMASH chooses its k the same way.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::smooth::{radius, Gaussian3d, Region};

/// Voxel pairs sampled for the variograms.
const PAIRS: usize = 60_000;
/// Distance bins of a variogram.
const BINS: usize = 25;
/// Candidate smoothing widths (FWHM, mm).
const WIDTHS_MM: [f64; 11] = [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0, 24.0, 32.0];
/// Trial surrogates per candidate width when the width is chosen.
const TRIALS: usize = 4;

/// The mask's geometry and the sampled pairs, shared by every map on it.
pub struct SpatialNull {
    /// Sampled pairs (mask voxel indices) and their distance bins.
    pairs: Vec<(u32, u32, u8)>,
    /// Per candidate width: the Gaussian and where it filters.
    smoothers: Vec<Smoother>,
}

/// One candidate width's Gaussian, filtering only the region of the grid around the mask
/// (the mask's values are those of the whole grid, see [`Gaussian3d::region`]).
struct Smoother {
    gaussian: Gaussian3d,
    region: Region,
    /// Each mask voxel's linear index in the region.
    local: Vec<usize>,
    /// Each mask voxel's smoothing standard deviation.
    sd: Vec<f32>,
}

/// A map's surrogate recipe: its values sorted (for rank matching), the chosen width and
/// the variogram mixing weights.
pub struct Fitted {
    sorted: Vec<f64>,
    width: usize,
    beta: f64,
    alpha: f64,
}

impl SpatialNull {
    /// The null of maps on the voxels `ijk` of a grid of `shape`, whose affine's 3×3 part is
    /// `linear` (rows; distances in mm). `seed` fixes the sampled pairs.
    pub fn new(shape: [usize; 3], linear: [[f64; 3]; 3], ijk: &[[usize; 3]], seed: u64) -> SpatialNull {
        let mm = |p: [usize; 3]| -> [f64; 3] {
            std::array::from_fn(|r| (0..3).map(|c| linear[r][c] * p[c] as f64).sum())
        };
        let dist = |a: [usize; 3], b: [usize; 3]| {
            let (a, b) = (mm(a), mm(b));
            (0..3).map(|r| (a[r] - b[r]).powi(2)).sum::<f64>().sqrt()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = ijk.len();
        let mut sampled: Vec<(u32, u32, f64)> = Vec::with_capacity(PAIRS * 4);
        if n >= 2 {
            while sampled.len() < PAIRS * 4 {
                let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
                if i != j {
                    sampled.push((i as u32, j as u32, dist(ijk[i], ijk[j])));
                }
            }
        }
        let mut d: Vec<f64> = sampled.iter().map(|p| p.2).collect();
        d.sort_by(f64::total_cmp);
        let max = d.get(d.len() / 4).copied().unwrap_or(0.0);
        let pairs = sampled
            .into_iter()
            .filter(|p| p.2 > 0.0 && p.2 <= max)
            .take(PAIRS)
            .map(|(i, j, h)| (i, j, (((h / max) * BINS as f64).ceil() as usize).clamp(1, BINS) as u8 - 1))
            .collect();
        let index: Vec<usize> = ijk.iter().map(|p| p[0] + shape[0] * (p[1] + shape[1] * p[2])).collect();
        let mut scratch = Vec::new();
        // A width whose kernel outgrows the grid (an anisotropic affine) blurs it flat: skipped.
        let fits = |fwhm: f64| Gaussian3d::sigmas(fwhm, linear).iter().zip(shape).all(|(&s, n)| radius(s) <= n as f64);
        let smoothers = WIDTHS_MM
            .iter()
            .filter(|&&w| fits(w))
            .map(|&w| {
                let gaussian = Gaussian3d::new(w, linear);
                let region = gaussian.region_zero_outside(shape, index.iter().copied());
                let local: Vec<usize> = index.iter().map(|&i| region.local(shape, i)).collect();
                // The half-width Gaussian reaches less far: the same region holds what it reads.
                let mut m = vec![0f32; region.len()];
                local.iter().for_each(|&i| m[i] = 1.0);
                Gaussian3d::new(w / std::f64::consts::SQRT_2, linear).apply(&mut m, region.shape, &mut scratch);
                let sd = local.iter().map(|&i| m[i].max(f32::MIN_POSITIVE).sqrt()).collect();
                Smoother { gaussian, region, local, sd }
            })
            .collect();
        SpatialNull {
            pairs,
            smoothers,
        }
    }

    /// Whether any smoothing width fits the grid; without one, surrogates are plain
    /// permutations and keep no autocorrelation.
    pub fn smooths(&self) -> bool {
        !self.smoothers.is_empty()
    }

    /// The empirical variogram of `values` (one per mask voxel) over the sampled pairs; NaN
    /// in a bin no pair falls in (on a grid, short distances take few values).
    pub fn variogram(&self, values: &[f64]) -> Vec<f64> {
        let (mut sum, mut count) = ([0.0; BINS], [0usize; BINS]);
        for &(i, j, b) in &self.pairs {
            sum[b as usize] += 0.5 * (values[i as usize] - values[j as usize]).powi(2);
            count[b as usize] += 1;
        }
        (0..BINS).map(|b| if count[b] > 0 { sum[b] / count[b] as f64 } else { f64::NAN }).collect()
    }

    /// The permuted map smoothed at candidate width `w`, within the mask.
    fn smoothed(&self, values: &[f64], w: usize, rng: &mut ChaCha8Rng, scratch: &mut Scratch) -> Vec<f64> {
        scratch.perm.clear();
        scratch.perm.extend_from_slice(values);
        scratch.perm.shuffle(rng);
        let Some(sm) = self.smoothers.get(w) else {
            // No width fits the grid: the permutation alone (no autocorrelation kept).
            return scratch.perm.clone();
        };
        scratch.volume.clear();
        scratch.volume.resize(sm.region.len(), 0.0);
        let mean = scratch.perm.iter().sum::<f64>() / scratch.perm.len().max(1) as f64;
        for (&i, &v) in sm.local.iter().zip(&scratch.perm) {
            scratch.volume[i] = (v - mean) as f32;
        }
        sm.gaussian.apply_boxed(&mut scratch.volume, &sm.region, &mut scratch.smooth);
        sm.local.iter().zip(&sm.sd).map(|(&i, &sd)| (scratch.volume[i] / sd) as f64).collect()
    }

    /// One unmatched surrogate at width `w`: the smoothed permutation mixed with white
    /// noise by the least-squares fit of the map's variogram on the smoothed one's; with
    /// its squared error against the map's variogram.
    fn mixed(&self, target: &[f64], values: &[f64], w: usize, rng: &mut ChaCha8Rng, scratch: &mut Scratch) -> (Vec<f64>, f64, f64, f64) {
        let s = self.smoothed(values, w, rng, scratch);
        let g = self.variogram(&s);
        let (beta, alpha) = least_squares(&g, target);
        let mixed: Vec<f64> = s
            .iter()
            .map(|&x| beta.abs().sqrt() * x + alpha.abs().sqrt() * rng.sample::<f64, _>(StandardNormal))
            .collect();
        let sse = self
            .variogram(&mixed)
            .iter()
            .zip(target)
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        (mixed, sse, beta, alpha)
    }

    /// Chooses the width for `values` (one per mask voxel) from trial surrogates.
    pub fn fit(&self, values: &[f64], rng: &mut ChaCha8Rng, scratch: &mut Scratch) -> Fitted {
        let target = self.variogram(values);
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let (mut best, mut best_sse) = (0, f64::INFINITY);
        let (mut beta, mut alpha) = (0.0, 0.0);
        for w in 0..self.smoothers.len().max(1) {
            let trials: Vec<(f64, f64, f64)> = (0..TRIALS)
                .map(|_| {
                    let (_, sse, b, a) = self.mixed(&target, values, w, rng, scratch);
                    (sse, b, a)
                })
                .collect();
            let sse = trials.iter().map(|t| t.0).sum::<f64>() / TRIALS as f64;
            if sse < best_sse {
                best_sse = sse;
                best = w;
                beta = trials.iter().map(|t| t.1).sum::<f64>() / TRIALS as f64;
                alpha = trials.iter().map(|t| t.2).sum::<f64>() / TRIALS as f64;
            }
        }
        Fitted {
            sorted,
            width: best,
            beta,
            alpha,
        }
    }

    /// One surrogate of a fitted map (one value per mask voxel): the map's own values in
    /// the order of a variogram-matched random field.
    pub fn surrogate(&self, fit: &Fitted, values: &[f64], rng: &mut ChaCha8Rng, scratch: &mut Scratch) -> Vec<f64> {
        let s = self.smoothed(values, fit.width, rng, scratch);
        let field: Vec<f64> = s
            .iter()
            .map(|&x| fit.beta.abs().sqrt() * x + fit.alpha.abs().sqrt() * rng.sample::<f64, _>(StandardNormal))
            .collect();
        // The voxels in the field's order (ties by voxel, as a stable sort keeps them): each
        // value a key that orders as f64::total_cmp does, sorted with its voxel at once.
        let mut order: Vec<(i64, u32)> = field.iter().enumerate().map(|(v, &x)| (total_order_key(x), v as u32)).collect();
        order.sort_unstable();
        let mut out = vec![0.0; field.len()];
        for (rank, &(_, v)) in order.iter().enumerate() {
            out[v as usize] = fit.sorted[rank];
        }
        out
    }
}

/// An integer that orders as `f64::total_cmp` orders `x` (its own definition: the bits as
/// a signed integer, the magnitude bits flipped for negative values).
fn total_order_key(x: f64) -> i64 {
    let bits = x.to_bits() as i64;
    bits ^ (((bits >> 63) as u64) >> 1) as i64
}

/// Caller-owned buffers of the surrogates (a volume and a permutation).
#[derive(Default)]
pub struct Scratch {
    perm: Vec<f64>,
    volume: Vec<f32>,
    smooth: Vec<f32>,
}

/// Least squares y ≈ β·x + α over the bins where both are defined: (β, α).
fn least_squares(x: &[f64], y: &[f64]) -> (f64, f64) {
    let (x, y): (Vec<f64>, Vec<f64>) = x.iter().zip(y).filter(|(a, b)| a.is_finite() && b.is_finite()).map(|(a, b)| (*a, *b)).unzip();
    let n = x.len().max(1) as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let sxy: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let beta = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (beta, my - beta * mx)
}

/// p of an observed score against its surrogates' scores: (1 + #{null ≥ observed}) /
/// (1 + n), the permutation p that counts the observation itself; NaN for a score that is
/// not a number (nothing to test). A surrogate without a score counts as not reaching it.
pub fn p_value(observed: f64, null: &[f64]) -> f64 {
    if observed.is_nan() {
        return f64::NAN;
    }
    (1.0 + null.iter().filter(|&&s| s >= observed).count() as f64) / (1.0 + null.len() as f64)
}

/// A random generator for map `index` of a run seeded with `seed` (stream 0 samples the
/// variogram pairs; maps take streams 1, 2, …).
pub fn rng_for(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index + 1);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cube(n: usize) -> (Vec<[usize; 3]>, [[f64; 3]; 3]) {
        let ijk = (0..n).flat_map(|k| (0..n).flat_map(move |j| (0..n).map(move |i| [i, j, k]))).collect();
        (ijk, [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
    }

    /// The variogram of a linear ramp x·c over the cube rises with distance: γ(h) = ½c²·E[dx²].
    #[test]
    fn variogram_of_a_ramp_grows_with_distance() {
        let (ijk, lin) = cube(12);
        let null = SpatialNull::new([12; 3], lin, &ijk, 1);
        let ramp: Vec<f64> = ijk.iter().map(|p| p[0] as f64).collect();
        let g = null.variogram(&ramp);
        let defined: Vec<f64> = g.iter().copied().filter(|v| v.is_finite()).collect();
        assert!(defined.windows(4).all(|w| w[0] < w[3]), "{g:?}");
        // White noise has a flat variogram at its variance.
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let noise: Vec<f64> = ijk.iter().map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
        let g = null.variogram(&noise);
        assert!(g.iter().filter(|v| v.is_finite()).all(|&v| (v - 1.0).abs() < 0.15), "{g:?}");
        assert!(g.iter().filter(|v| v.is_finite()).count() >= 15, "{g:?}");
    }

    /// Surrogates of a smooth field keep its values and its autocorrelation: the
    /// surrogates' mean variogram is within 10% of the map's on average over the bins (50%
    /// at worst), where a plain permutation's would be flat.
    #[test]
    fn surrogates_match_the_variogram_and_the_values() {
        let (ijk, lin) = cube(16);
        let null = SpatialNull::new([16; 3], lin, &ijk, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut vol: Vec<f32> = (0..16 * 16 * 16).map(|_| rng.sample::<f32, _>(StandardNormal)).collect();
        Gaussian3d::new(10.0, lin).apply(&mut vol, [16; 3], &mut Vec::new());
        let map: Vec<f64> = vol.iter().map(|&v| v as f64).collect();
        let mut scratch = Scratch::default();
        let fit = null.fit(&map, &mut rng, &mut scratch);
        let target = null.variogram(&map);
        let mut mean = [0.0; BINS];
        for _ in 0..20 {
            let s = null.surrogate(&fit, &map, &mut rng, &mut scratch);
            let (mut a, mut b) = (s.clone(), map.clone());
            a.sort_by(f64::total_cmp);
            b.sort_by(f64::total_cmp);
            assert_eq!(a, b, "the map's own values");
            null.variogram(&s).iter().enumerate().for_each(|(i, v)| mean[i] += v / 20.0);
        }
        // Least squares over the bins fits the long distances, where γ is large, best: at
        // the shortest distance the match is loosest.
        let errors: Vec<f64> = mean.iter().zip(&target).filter(|(_, t)| t.is_finite()).map(|(m, t)| (m - t).abs() / t).collect();
        let mean_error = errors.iter().sum::<f64>() / errors.len() as f64;
        assert!(mean_error <= 0.1 && errors.iter().all(|&e| e <= 0.5), "{mean:?} vs {target:?}");
        let first = target.iter().copied().find(|v| v.is_finite()).unwrap();
        assert!(first < 0.5 * target[BINS - 1], "the field is smooth: {target:?}");
    }

    #[test]
    fn p_counts_the_observation() {
        assert_eq!(p_value(0.5, &[0.1, 0.6, 0.5]), 3.0 / 4.0);
        assert_eq!(p_value(0.9, &[0.1; 99]), 0.01);
        assert!(p_value(f64::NAN, &[0.1; 9]).is_nan());
    }

    /// Sorting by the key gives the stable `total_cmp` order, ties and special values included.
    #[test]
    fn the_order_key_sorts_as_total_cmp() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut x: Vec<f64> = (0..2000).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
        x.extend([0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -f64::NAN, 5e-324, -5e-324, 1.0, 1.0, -2.5, -2.5]);
        x.extend_from_within(..300);
        let mut want: Vec<usize> = (0..x.len()).collect();
        want.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
        let mut got: Vec<(i64, u32)> = x.iter().enumerate().map(|(v, &a)| (total_order_key(a), v as u32)).collect();
        got.sort_unstable();
        assert_eq!(got.iter().map(|g| g.1 as usize).collect::<Vec<_>>(), want);
    }
}
