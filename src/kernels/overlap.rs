//! Overlap of an atom's group map with a network template, from sums over voxels (so voxel
//! shards reduce by adding their sums). M = the atom's thresholded map, T = the template,
//! z = the unthresholded group z map, 1_T its indicator, n voxels:
//!
//! - overlap rate |M∩T| / |T|; Dice 2|M∩T| / (|M| + |T|); IoU |M∩T| / |M∪T|;
//! - spatial Pearson r of z with 1_T:
//!   (n·Σz·1_T − Σz·|T|) / √((n·Σz² − (Σz)²)·(n·|T| − |T|²)).
//!
//! Voxels with a non-finite z are not counted.

/// The additive sums behind every measure.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OverlapSums {
    pub n: u64,
    pub map: u64,
    pub template: u64,
    pub both: u64,
    pub z: f64,
    pub z2: f64,
    pub z_in_template: f64,
}

/// The measures of one atom and template. Undefined ones (an empty template, a constant
/// map) are NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overlap {
    pub overlap_rate: f64,
    pub dice: f64,
    pub iou: f64,
    pub corr: f64,
}

impl OverlapSums {
    /// Sums over one block of voxels: `z[v]`, `map[v]` (thresholded), `template[v]`.
    pub fn over(z: &[f64], map: &[bool], template: &[bool]) -> Self {
        let mut s = OverlapSums::default();
        for ((&zv, &m), &t) in z.iter().zip(map).zip(template) {
            if !zv.is_finite() {
                continue;
            }
            s.n += 1;
            s.map += m as u64;
            s.template += t as u64;
            s.both += (m && t) as u64;
            s.z += zv;
            s.z2 += zv * zv;
            if t {
                s.z_in_template += zv;
            }
        }
        s
    }

    /// Sums of two disjoint voxel blocks.
    pub fn merge(self, o: Self) -> Self {
        OverlapSums {
            n: self.n + o.n,
            map: self.map + o.map,
            template: self.template + o.template,
            both: self.both + o.both,
            z: self.z + o.z,
            z2: self.z2 + o.z2,
            z_in_template: self.z_in_template + o.z_in_template,
        }
    }

    pub fn measures(&self) -> Overlap {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let (n, m, t, both) = (
            self.n as f64,
            self.map as f64,
            self.template as f64,
            self.both as f64,
        );
        let var_z = n * self.z2 - self.z * self.z;
        let var_t = n * t - t * t;
        let corr = if var_z > 0.0 && var_t > 0.0 {
            (n * self.z_in_template - self.z * t) / (var_z * var_t).sqrt()
        } else {
            f64::NAN
        };
        Overlap {
            overlap_rate: ratio(both, t),
            dice: ratio(2.0 * both, m + t),
            iou: ratio(both, m + t - both),
            corr,
        }
    }
}

/// The best template of an atom by `score` (IoU by default), and whether it passes
/// `threshold`. Ties go to the lower template index; NaN scores never win.
pub fn best(scores: &[f64], threshold: f64) -> Option<(usize, bool)> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &s) in scores.iter().enumerate() {
        if s.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((i, s));
        }
    }
    best.map(|(i, s)| (i, s >= threshold))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Against brute-force set counts and a two-pass Pearson r, and split into two shards
    /// merged back (counts exact; r to 1e-12).
    #[test]
    fn equals_brute_force_and_shards_merge() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let n = 500;
        let mut z: Vec<f64> = (0..n).map(|_| rng.random_range(-3.0..5.0)).collect();
        z[7] = f64::NAN;
        let map: Vec<bool> = z.iter().map(|&v| v > 2.0).collect();
        let template: Vec<bool> = (0..n).map(|i| (i / 50) % 3 == 0).collect();
        let whole = OverlapSums::over(&z, &map, &template);
        let (a, b) = (
            OverlapSums::over(&z[..123], &map[..123], &template[..123]),
            OverlapSums::over(&z[123..], &map[123..], &template[123..]),
        );
        let merged = a.merge(b).measures();
        let got = whole.measures();
        let ok: Vec<usize> = (0..n).filter(|&i| z[i].is_finite()).collect();
        let m = ok.iter().filter(|&&i| map[i]).count() as f64;
        let t = ok.iter().filter(|&&i| template[i]).count() as f64;
        let both = ok.iter().filter(|&&i| map[i] && template[i]).count() as f64;
        let union = ok.iter().filter(|&&i| map[i] || template[i]).count() as f64;
        assert_eq!(got.overlap_rate, both / t);
        assert_eq!(got.dice, 2.0 * both / (m + t));
        assert_eq!(got.iou, both / union);
        let zs: Vec<f64> = ok.iter().map(|&i| z[i]).collect();
        let ts: Vec<f64> = ok.iter().map(|&i| template[i] as u8 as f64).collect();
        let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
        let (mz, mt) = (mean(&zs), mean(&ts));
        let cov: f64 = zs.iter().zip(&ts).map(|(a, b)| (a - mz) * (b - mt)).sum();
        let sz: f64 = zs.iter().map(|a| (a - mz).powi(2)).sum();
        let st: f64 = ts.iter().map(|b| (b - mt).powi(2)).sum();
        let r = cov / (sz * st).sqrt();
        assert!((got.corr - r).abs() < 1e-12, "{} vs {r}", got.corr);
        assert!((merged.corr - r).abs() < 1e-12);
        assert_eq!(merged.iou, got.iou);
    }

    #[test]
    fn empty_maps_and_assignment() {
        let s = OverlapSums::over(&[0.0, 0.0], &[false, false], &[false, false]);
        let m = s.measures();
        assert!(m.overlap_rate.is_nan() && m.dice.is_nan() && m.corr.is_nan());
        assert_eq!(best(&[0.1, f64::NAN, 0.3, 0.3], 0.2), Some((2, true)));
        assert_eq!(best(&[0.1, 0.15], 0.2), Some((1, false)));
        assert_eq!(best(&[f64::NAN], 0.2), None);
    }
}
