//! Inter-subject correlation (ISC) from sums, and the noise ceiling it gives.
//!
//! Each subject s who heard a story contributes its cleaned series z_s(v, ·), standardised
//! per voxel (mean 0, ‖z_sv‖² = T). With S_v = Σ_s z_sv over the n_v subjects valid at v,
//!   ‖S_v‖² = Σ_s ‖z_sv‖² + Σ_{a≠b} ⟨z_av, z_bv⟩ = n_v·T + T·Σ_{a≠b} r_ab(v),
//! so the mean pairwise Pearson r is (‖S_v‖² − n_v·T) / (n_v(n_v − 1)·T): one pass over the
//! runs and one T × V sum per story, whatever the number of subjects. Stories are pooled by
//! summing numerators and denominators (each pair weighted by its scans).
//!
//! The ceiling: when every subject's series is a shared, stimulus-driven part plus noise
//! independent across subjects, the pairwise ISC is the shared part's share of variance ρ,
//! and the best any model of the stimulus can reach in one subject's held-out data is the
//! correlation of the shared part with that data, √ρ. (Leave-one-subject-out ISC, r with
//! the others' mean, falls short of √ρ with few subjects; the pairwise form does not.)

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};

/// One story's sums over the subjects who heard it.
#[derive(Debug, Clone)]
pub struct StorySums {
    /// T × V: Σ_s z_s.
    sum: Array2<f64>,
    /// Subjects valid at each voxel.
    n: Vec<u32>,
}

impl StorySums {
    pub fn new(scans: usize, voxels: usize) -> StorySums {
        StorySums {
            sum: Array2::zeros((scans, voxels)),
            n: vec![0; voxels],
        }
    }

    /// The sum (T × V) and the subjects valid at each voxel.
    pub fn into_parts(self) -> (Array2<f64>, Vec<u32>) {
        (self.sum, self.n)
    }

    /// Adds one subject's cleaned series `y` (T × V); a voxel not `valid` (or constant in
    /// `y`) is left out for this subject. Returns the voxels added. Ranges of voxels go
    /// side by side: each voxel's sums run over the scans in the same order whatever the
    /// range, so the bits do not depend on the split.
    pub fn add(&mut self, y: ArrayView2<f64>, valid: &[bool]) -> usize {
        use rayon::prelude::*;
        assert_eq!(y.dim(), self.sum.dim(), "a run of the story's scans and voxels");
        assert_eq!(valid.len(), self.n.len());
        let width = range_width(self.n.len());
        let ranges: Vec<_> = self.sum.axis_chunks_iter_mut(Axis(1), width).zip(y.axis_chunks_iter(Axis(1), width)).zip(valid.chunks(width)).collect();
        let keep: Vec<bool> = ranges.into_par_iter().flat_map_iter(|((sum, y), valid)| add_range(sum, y, valid)).collect();
        let mut added = 0;
        for (n, _) in self.n.iter_mut().zip(&keep).filter(|(_, &k)| k) {
            *n += 1;
            added += 1;
        }
        added
    }
}

/// Voxels a range of [`StorySums::add`] takes: about 2,048, never leaving a range of one
/// (a one-column view would take ColumnStats off its row sweep).
fn range_width(voxels: usize) -> usize {
    match voxels {
        0..=2048 => voxels.max(1),
        _ => (2048..).find(|w| voxels % w != 1).expect("a width"),
    }
}

/// [`StorySums::add`] on one range of voxels; which of them were added.
fn add_range(mut sum: ArrayViewMut2<f64>, y: ArrayView2<f64>, valid: &[bool]) -> Vec<bool> {
    let stats = super::column_stats::ColumnStats::of(y);
    let keep: Vec<bool> = (0..valid.len())
        .map(|v| valid[v] && stats.sd[v].is_finite() && stats.sd[v] > 1e-12 * stats.max_abs[v].max(f64::MIN_POSITIVE))
        .collect();
    // Row by row (the series is scans × voxels): each element as (x − mean) / sd.
    for (mut acc, row) in sum.rows_mut().into_iter().zip(y.rows()) {
        for (v, (a, &x)) in acc.iter_mut().zip(row).enumerate() {
            if keep[v] {
                *a += (x - stats.mean[v]) / stats.sd[v];
            }
        }
    }
    keep
}

/// Pooled ISC over stories: per voxel Σ (‖S‖² − nT) and Σ n(n − 1)T.
#[derive(Debug, Clone)]
pub struct Isc {
    numerator: Vec<f64>,
    denominator: Vec<f64>,
    /// Per voxel, the largest number of subjects that shared a story there.
    pub subjects: Vec<u32>,
}

impl Isc {
    pub fn new(voxels: usize) -> Isc {
        Isc {
            numerator: vec![0.0; voxels],
            denominator: vec![0.0; voxels],
            subjects: vec![0; voxels],
        }
    }

    /// Adds one story's pairs (voxels with fewer than 2 subjects add nothing).
    pub fn add_story(&mut self, story: &StorySums) {
        let t = story.sum.nrows() as f64;
        let mut squares = Vec::new();
        if story.sum.ncols() > 0 {
            super::column_stats::column_dots(story.sum.view(), story.sum.view(), &mut squares);
        }
        for (v, &square) in squares.iter().enumerate() {
            let n = story.n[v];
            if n < 2 {
                continue;
            }
            let n = f64::from(n);
            self.numerator[v] += square - n * t;
            self.denominator[v] += n * (n - 1.0) * t;
            self.subjects[v] = self.subjects[v].max(story.n[v]);
        }
    }

    /// Mean pairwise ISC per voxel (NaN where no story had 2 subjects).
    pub fn isc(&self) -> Vec<f64> {
        self.numerator
            .iter()
            .zip(&self.denominator)
            .map(|(&a, &b)| if b > 0.0 { a / b } else { f64::NAN })
            .collect()
    }
}

/// The noise ceiling of a held-out correlation, √ISC (0 where the ISC is not positive).
pub fn ceiling(isc: f64) -> f64 {
    if isc.is_nan() {
        f64::NAN
    } else {
        isc.max(0.0).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::pearson;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng as StdRng;


    /// Series of `subjects` for one story: a shared course of variance `rho` plus
    /// independent noise of variance 1 − rho, per voxel, with arbitrary offset and scale.
    fn story(rng: &mut StdRng, subjects: usize, scans: usize, voxels: usize, rho: f64) -> Vec<Array2<f64>> {
        let shared = Array2::from_shape_fn((scans, voxels), |_| rng.random::<f64>() - 0.5);
        let sd = (1.0f64 / 12.0).sqrt();
        (0..subjects)
            .map(|_| {
                let gain = 1.0 + rng.random::<f64>() * 5.0;
                let offset = rng.random::<f64>() * 100.0;
                Array2::from_shape_fn((scans, voxels), |(t, v)| {
                    let noise = rng.random::<f64>() - 0.5;
                    offset + gain * (rho.sqrt() * shared[[t, v]] + (1.0 - rho).sqrt() * noise) / sd
                })
            })
            .collect()
    }

    /// Against brute force: every pair's Pearson r, weighted by the story's scans, over
    /// stories of different lengths, with a voxel missing in one subject and a voxel with a
    /// single subject in one story. Tolerance 1e-12: the same sums in another order.
    #[test]
    fn sums_equal_mean_pairwise_r() {
        let mut rng = StdRng::seed_from_u64(5);
        let (voxels, lengths) = (4, [37usize, 52]);
        let mut isc = Isc::new(voxels);
        let (mut num, mut den) = (vec![0.0; voxels], vec![0.0; voxels]);
        for (i, &t) in lengths.iter().enumerate() {
            let runs = story(&mut rng, 4, t, voxels, 0.3);
            let mut valid = vec![vec![true; voxels]; runs.len()];
            valid[1][2] = false;
            if i == 1 {
                // voxel 3 has one subject in story 1: no pair
                (1..4).for_each(|s| valid[s][3] = false);
            }
            let mut sums = StorySums::new(t, voxels);
            for (y, ok) in runs.iter().zip(&valid) {
                sums.add(y.view(), ok);
            }
            isc.add_story(&sums);
            for v in 0..voxels {
                let cols: Vec<Vec<f64>> = (0..runs.len()).filter(|&s| valid[s][v]).map(|s| runs[s].column(v).to_vec()).collect();
                for a in 0..cols.len() {
                    for b in a + 1..cols.len() {
                        num[v] += t as f64 * pearson(&cols[a], &cols[b]);
                        den[v] += t as f64;
                    }
                }
            }
        }
        for (v, got) in isc.isc().into_iter().enumerate() {
            let want = num[v] / den[v];
            assert!((got - want).abs() < 1e-12, "voxel {v}: {got} vs {want}");
        }
        assert_eq!(isc.subjects, vec![4, 4, 3, 4]);
    }

    /// Ranges side by side give the bits of one range over every voxel (widths that leave
    /// a last range of 2 and of 2,049 voxels, and one range only), with invalid and
    /// constant voxels among them.
    #[test]
    fn ranges_side_by_side_are_one_range_bit_for_bit() {
        let mut rng = StdRng::seed_from_u64(11);
        for voxels in [100, 2048 * 2 + 2, 2048 * 3 + 2049 + 7, 2048 + 1] {
            let mut sums = StorySums::new(23, voxels);
            let mut whole = Array2::<f64>::zeros((23, voxels));
            let mut keeps = Vec::new();
            for _ in 0..3 {
                let mut y = Array2::from_shape_fn((23, voxels), |_| rng.random::<f64>() * 3.0 - 1.0);
                y.column_mut(voxels / 2).fill(4.0);
                let valid: Vec<bool> = (0..voxels).map(|v| v % 97 != 5).collect();
                sums.add(y.view(), &valid);
                keeps.push(add_range(whole.view_mut(), y.view(), &valid));
            }
            assert!(sums.sum.iter().zip(&whole).all(|(a, b)| a.to_bits() == b.to_bits()), "{voxels} voxels");
            let n: Vec<u32> = (0..voxels).map(|v| keeps.iter().filter(|k| k[v]).count() as u32).collect();
            assert_eq!(sums.n, n);
        }
    }

    /// Closed form: with a shared part of variance ρ, the ISC estimates ρ and the ceiling
    /// √ρ; 8 subjects × 2,000 scans put the sampling SD of the ISC near 0.004 (so 0.02).
    #[test]
    fn ceiling_of_a_known_shared_share() {
        let mut rng = StdRng::seed_from_u64(9);
        for rho in [0.0, 0.1, 0.4, 0.8] {
            let runs = story(&mut rng, 8, 2000, 3, rho);
            let mut sums = StorySums::new(2000, 3);
            runs.iter().for_each(|y| {
                sums.add(y.view(), &[true; 3]);
            });
            let mut isc = Isc::new(3);
            isc.add_story(&sums);
            for got in isc.isc() {
                assert!((got - rho).abs() < 0.02, "rho {rho}: ISC {got}");
                assert!((ceiling(got) - rho.sqrt()).abs() < if rho > 0.0 { 0.03 } else { 0.15 });
            }
        }
    }

    /// Constant or invalid voxels add nothing; no pair gives NaN, not 0.
    #[test]
    fn no_pair_is_nan() {
        let mut sums = StorySums::new(10, 2);
        let y = Array2::from_shape_fn((10, 2), |(t, v)| if v == 0 { 3.0 } else { t as f64 });
        assert_eq!(sums.add(y.view(), &[true, true]), 1);
        assert_eq!(sums.add(y.view(), &[true, false]), 0);
        let mut isc = Isc::new(2);
        isc.add_story(&sums);
        assert!(isc.isc().iter().all(|x| x.is_nan()));
        assert!(ceiling(f64::NAN).is_nan());
        assert_eq!(ceiling(-0.2), 0.0);
    }
}
