//! Sign-flip permutation inference for the one-sample group test, family-wise over the
//! voxels of each atom's map by the maximum statistic (Nichols & Holmes 2002), as nilearn's
//! `non_parametric_inference` does for a one-sample design (`permuted_ols` with the
//! intercept as the tested variable, `two_sided_test=True`).
//!
//! Under H₀ (each subject's β symmetric about 0) flipping the sign of a subject's whole map
//! leaves its distribution unchanged. Permutation i multiplies subject s by σ_is = ±1; the
//! voxel's t is recomputed from S = Σ_s σ_is·β_s and Q = Σ_s β_s² (unchanged by flips),
//! t = S·√((n − 1)/(n·Q − S²)), and the null keeps max_v |t_v| per atom. A voxel's FWER p
//! is (1 + #{i : max_i ≥ |t_v|}) / (1 + n_perm): nilearn's estimator, which counts the
//! observed labelling as one of the permutations.
//!
//! The family is the voxels where every subject has a value (nilearn's inputs have no
//! gaps): a voxel with fewer subjects has a t of fewer degrees of freedom, whose heavier
//! tails would dominate the maximum and blunt the test everywhere; such voxels get no
//! family-wise p.
//!
//! Each subject's flips come from its own seeded ChaCha8 stream keyed by its label
//! ([`SignFlips::for_labels`]), so every voxel block of a map sees the same flips whatever
//! the subjects' positions, and the block maxima combine by `max` into the map's null.
//! nilearn draws its flips from numpy's generator; the two agree in distribution, not flip
//! for flip, and the tests compare p values within Monte-Carlo error.

use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Permutations per matrix product: bounds the scratch to CHUNK × voxels per atom.
const CHUNK: usize = 128;

/// n_perm × subjects signs (±1), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct SignFlips {
    pub n_perm: usize,
    pub subjects: usize,
    signs: Vec<f64>,
}

impl SignFlips {
    /// `n_perm` random sign vectors for `subjects` subjects from `seed`.
    pub fn new(subjects: usize, n_perm: usize, seed: u64) -> SignFlips {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let signs = (0..n_perm * subjects)
            .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
            .collect();
        SignFlips {
            n_perm,
            subjects,
            signs,
        }
    }

    /// `n_perm` sign vectors for the subjects `labels`: subject s's column is drawn from
    /// a stream keyed by `seed` and its label (FNV-1a), so a subject keeps its flips
    /// whatever else is in the group and wherever it stands in the list.
    pub fn for_labels(labels: &[&str], n_perm: usize, seed: u64) -> SignFlips {
        let subjects = labels.len();
        let mut signs = vec![0.0; n_perm * subjects];
        for (s, label) in labels.iter().enumerate() {
            let key = label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ key);
            for i in 0..n_perm {
                signs[i * subjects + s] = if rng.random::<bool>() { 1.0 } else { -1.0 };
            }
        }
        SignFlips {
            n_perm,
            subjects,
            signs,
        }
    }

    /// The smallest family-wise p that `subjects` subjects allow: sign vectors and their
    /// negations give the same |t|, so there are 2^(n−1) distinct null maps and p ≥ 2^(1−n).
    pub fn smallest_p(subjects: usize) -> f64 {
        0.5f64.powi(subjects.saturating_sub(1) as i32)
    }
}

/// The one-sample t from S = Σβ, Q = Σβ² and n present values (NaN for n < 2 or no spread;
/// ±∞ for no spread and S ≠ 0, as the exact group test gives).
fn t_from_sums(s: f64, q: f64, n: f64) -> f64 {
    if n < 2.0 {
        return f64::NAN;
    }
    let spread = n * q - s * s;
    if spread <= 0.0 {
        return if s == 0.0 { f64::NAN } else { f64::INFINITY.copysign(s) };
    }
    s * ((n - 1.0) / spread).sqrt()
}

/// For every atom, the maximum |t| over the voxels of one block where every subject has a
/// value, under each permutation: atoms × n_perm (−∞ when no voxel qualifies). `betas[s]`
/// is subject s's block (atoms × voxels; NaN where the subject has no value).
/// Atoms run in parallel on the caller's rayon pool; each is a sequential product, so the
/// result does not depend on the number of threads.
pub fn block_null_max(flips: &SignFlips, betas: &[ArrayView2<f64>]) -> Array2<f64> {
    assert_eq!(betas.len(), flips.subjects, "one sign per subject");
    let (atoms, voxels) = betas.first().map_or((0, 0), |b| b.dim());
    let rows: Vec<Vec<f64>> = (0..atoms)
        .into_par_iter()
        .map(|a| atom_null_max(flips, betas, a, voxels))
        .collect();
    Array2::from_shape_fn((atoms, flips.n_perm), |(a, i)| rows[a][i])
}

fn atom_null_max(flips: &SignFlips, betas: &[ArrayView2<f64>], atom: usize, voxels: usize) -> Vec<f64> {
    let subjects = betas.len();
    // B: subjects × voxels with absent values as 0 (they add nothing to S or Q).
    let mut b = faer::Mat::<f64>::zeros(subjects, voxels);
    let (mut q, mut n) = (vec![0.0; voxels], vec![0.0; voxels]);
    for (s, beta) in betas.iter().enumerate() {
        for v in 0..voxels {
            let x = beta[[atom, v]];
            if !x.is_nan() {
                b[(s, v)] = x;
                q[v] += x * x;
                n[v] += 1.0;
            }
        }
    }
    let mut out = vec![f64::NEG_INFINITY; flips.n_perm];
    let mut sums = faer::Mat::<f64>::zeros(CHUNK.min(flips.n_perm.max(1)), voxels);
    for start in (0..flips.n_perm).step_by(CHUNK) {
        let rows = CHUNK.min(flips.n_perm - start);
        let signs = faer::MatRef::from_row_major_slice(
            &flips.signs[start * subjects..(start + rows) * subjects],
            rows,
            subjects,
        );
        faer::linalg::matmul::matmul(
            sums.as_mut().subrows_mut(0, rows),
            faer::Accum::Replace,
            signs,
            b.as_ref(),
            1.0,
            faer::Par::Seq,
        );
        for (i, o) in out[start..start + rows].iter_mut().enumerate() {
            for v in (0..voxels).filter(|&v| n[v] as usize == subjects) {
                let t = t_from_sums(sums[(i, v)], q[v], n[v]).abs();
                // nanmax: a voxel without a test does not enter the maximum.
                if t > *o {
                    *o = t;
                }
            }
        }
    }
    out
}

/// Combines two blocks' null maxima (atoms × n_perm) into those of both.
pub fn combine(a: &mut Array2<f64>, b: ArrayView2<f64>) {
    a.zip_mut_with(&b, |x, &y| *x = x.max(y));
}

/// FWER p values of the |t| of one atom's map against its null maxima, in place of `t`:
/// (1 + #{max ≥ |t|}) / (1 + n_perm); NaN where t is NaN. The caller gives NaN for voxels
/// outside the family (not every subject present).
pub fn fwer_p(t: &[f64], null_max: &[f64]) -> Vec<f64> {
    let mut sorted = null_max.to_vec();
    sorted.sort_by(f64::total_cmp);
    let total = sorted.len() as f64 + 1.0;
    t.iter()
        .map(|&x| {
            if x.is_nan() {
                return f64::NAN;
            }
            let below = sorted.partition_point(|&m| m < x.abs());
            (1.0 + (sorted.len() - below) as f64) / total
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With every flip enumerated (3 subjects: 8 sign vectors), the null maxima equal a
    /// brute-force t of each flipped set over the voxels where every subject has a value
    /// (voxel 2 lacks one), and the p value counts them.
    #[test]
    #[allow(clippy::needless_range_loop)] // v indexes the subjects' rows, not one slice
    fn null_maxima_are_the_flipped_t_tests() {
        let beta = [[0.5, -1.0, 2.0], [1.5, 0.25, 1.0], [0.75, 0.5, f64::NAN]];
        let views: Vec<ArrayView2<f64>> = beta
            .iter()
            .map(|b| ArrayView2::from_shape((1, 3), b).unwrap())
            .collect();
        let flips = SignFlips {
            n_perm: 8,
            subjects: 3,
            signs: (0..24).map(|i| if (i / 3) >> (i % 3) & 1 == 1 { -1.0 } else { 1.0 }).collect(),
        };
        let got = block_null_max(&flips, &views);
        for p in 0..8 {
            let mut best = 0.0f64;
            for v in 0..2 {
                let xs: Vec<f64> = (0..3)
                    .map(|s| flips.signs[p * 3 + s] * beta[s][v])
                    .collect();
                let n = xs.len() as f64;
                let mean = xs.iter().sum::<f64>() / n;
                let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
                best = best.max((mean / (sd / n.sqrt())).abs());
            }
            assert!((got[[0, p]] - best).abs() < 1e-12, "perm {p}: {} vs {best}", got[[0, p]]);
        }
        let p = fwer_p(&[got[[0, 0]], f64::NAN, 100.0], got.row(0).as_slice().unwrap());
        let ge = got.row(0).iter().filter(|&&m| m >= got[[0, 0]]).count() as f64;
        assert_eq!(p[0], (1.0 + ge) / 9.0);
        assert!(p[1].is_nan());
        assert_eq!(p[2], 1.0 / 9.0);
    }

    /// A subject's flips depend on its label, not its position in the list.
    #[test]
    fn flips_follow_the_subjects_labels() {
        let a = SignFlips::for_labels(&["01", "02", "03"], 50, 4);
        let b = SignFlips::for_labels(&["03", "01"], 50, 4);
        for i in 0..50 {
            assert_eq!(a.signs[i * 3], b.signs[i * 2 + 1]);
            assert_eq!(a.signs[i * 3 + 2], b.signs[i * 2]);
        }
        assert!(a.signs.iter().any(|&s| s < 0.0) && a.signs.iter().any(|&s| s > 0.0));
        assert_eq!(SignFlips::smallest_p(3), 0.25);
    }

    /// Blocks combine by max into the null of the whole map, and the threads do not change it.
    #[test]
    fn blocks_combine_into_the_whole_map() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let maps: Vec<Array2<f64>> = (0..7)
            .map(|_| Array2::from_shape_simple_fn((2, 300), || rng.random_range(-1.0..1.5)))
            .collect();
        let flips = SignFlips::new(7, 300, 9);
        let whole = block_null_max(&flips, &maps.iter().map(|m| m.view()).collect::<Vec<_>>());
        let part = |r: std::ops::Range<usize>| {
            let v: Vec<ArrayView2<f64>> = maps.iter().map(|m| m.slice(ndarray::s![.., r.clone()])).collect();
            block_null_max(&flips, &v)
        };
        let mut joined = part(0..170);
        combine(&mut joined, part(170..300).view());
        assert_eq!(joined, whole);
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let serial = one.install(|| block_null_max(&flips, &maps.iter().map(|m| m.view()).collect::<Vec<_>>()));
        assert_eq!(serial, whole);
    }
}
