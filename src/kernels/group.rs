//! Random-effects group test: per atom and voxel, a one-sample t over subjects of the
//! subject maps β, from the sums n, Σβ, Σβ² alone, so a subject can be added or removed.
//!
//! t = mean / (s/√n), s² = (Σβ² − (Σβ)²/n)/(n − 1); equivalently, with integer sums,
//! t = Σβ·√((n − 1)/(n·Σβ² − (Σβ)²)). Two-sided p from Student's t with n − 1 dof (the
//! reference is `scipy.stats.ttest_1samp`), z with the same p.
//!
//! The sums are exact: each β is rounded to a multiple of 2⁻⁴⁰ and summed as integers, so
//! adding and removing subjects, in any order, gives bit-identical maps to never adding
//! them — floating-point sums could not promise that. The rounding (≤ 4.6e-13 per β) is far
//! below any β's own estimation error.

use ndarray::{Array2, ArrayView2};

use super::tdist::{signed_z, TwoSided};

/// Fractional bits of the fixed-point β.
const FRAC_BITS: i32 = 40;
/// |β| above this is refused: it keeps β² sums of 2¹⁵ subjects inside i128.
pub const MAX_ABS_BETA: f64 = 65_536.0;

/// Why a subject map cannot enter (or leave) the sums.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GroupError {
    #[error("map is {got:?}, the group holds {want:?} (atoms × voxels)")]
    Shape {
        got: (usize, usize),
        want: (usize, usize),
    },
    #[error("β = {value} at atom {atom}, voxel {voxel} is outside ±{MAX_ABS_BETA} (the range of the exact group sums)")]
    Range {
        atom: usize,
        voxel: usize,
        value: f64,
    },
    #[error("removing a subject from a group with none at atom {atom}, voxel {voxel}")]
    Empty { atom: usize, voxel: usize },
}

/// n, Σq, Σq² per (atom, voxel), q = round(β·2⁴⁰). NaN β (a voxel excluded in that
/// subject) are left out of that voxel's sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSums {
    atoms: usize,
    voxels: usize,
    n: Vec<u32>,
    sum: Vec<i128>,
    sum_sq: Vec<i128>,
}

/// Group statistics, atoms × voxels. Cells with n < 2, or zero variance and zero mean,
/// are NaN; zero variance with a non-zero mean gives t = ±∞, p = 0.
#[derive(Debug, Clone)]
pub struct GroupTest {
    pub n: Array2<u32>,
    pub mean: Array2<f64>,
    pub t: Array2<f64>,
    pub p: Array2<f64>,
    pub z: Array2<f64>,
    /// Sign-flip null maxima of |t| per atom, atoms × permutations (see
    /// [`super::permutation`]); None without permutations.
    pub null_max: Option<Array2<f64>>,
}

impl GroupTest {
    /// The p values a threshold reads: under [`Threshold::MaxT`] the family-wise p of the
    /// permutations for the voxels where every subject has a value (NaN elsewhere, and
    /// everywhere without permutations: nothing passes), the parametric two-sided p
    /// otherwise.
    pub fn p_for(&self, rule: Threshold) -> Array2<f64> {
        match (rule, &self.null_max) {
            (Threshold::MaxT(_), None) => Array2::from_elem(self.t.dim(), f64::NAN),
            (Threshold::MaxT(_), Some(null)) => {
                let full = self.n.iter().copied().max().unwrap_or(0);
                let mut out = Array2::zeros(self.t.dim());
                for (a, mut row) in out.rows_mut().into_iter().enumerate() {
                    let t: Vec<f64> = self
                        .t
                        .row(a)
                        .iter()
                        .zip(self.n.row(a))
                        .map(|(&t, &n)| if n == full { t } else { f64::NAN })
                        .collect();
                    let p = super::permutation::fwer_p(&t, null.row(a).as_slice().expect("row-major"));
                    row.assign(&ndarray::Array1::from(p));
                }
                out
            }
            _ => self.p.clone(),
        }
    }
}

impl GroupSums {
    pub fn new(atoms: usize, voxels: usize) -> Self {
        let len = atoms * voxels;
        GroupSums {
            atoms,
            voxels,
            n: vec![0; len],
            sum: vec![0; len],
            sum_sq: vec![0; len],
        }
    }

    /// (atoms, voxels).
    pub fn shape(&self) -> (usize, usize) {
        (self.atoms, self.voxels)
    }

    /// n, Σq, Σq² per cell (atoms × voxels, row-major), q = round(β·2⁴⁰): what a store keeps.
    pub fn parts(&self) -> (&[u32], &[i128], &[i128]) {
        (&self.n, &self.sum, &self.sum_sq)
    }

    /// Sums from their parts; None unless each part has atoms × voxels cells.
    pub fn from_parts(atoms: usize, voxels: usize, n: Vec<u32>, sum: Vec<i128>, sum_sq: Vec<i128>) -> Option<GroupSums> {
        let len = atoms.checked_mul(voxels)?;
        (n.len() == len && sum.len() == len && sum_sq.len() == len).then_some(GroupSums {
            atoms,
            voxels,
            n,
            sum,
            sum_sq,
        })
    }

    /// Adds one subject's map (atoms × voxels).
    pub fn add(&mut self, beta: ArrayView2<f64>) -> Result<(), GroupError> {
        self.update(beta, 1)
    }

    /// Removes a map previously added; the sums return exactly to what they were.
    pub fn remove(&mut self, beta: ArrayView2<f64>) -> Result<(), GroupError> {
        self.update(beta, -1)
    }

    fn update(&mut self, beta: ArrayView2<f64>, sign: i128) -> Result<(), GroupError> {
        if beta.dim() != (self.atoms, self.voxels) {
            return Err(GroupError::Shape {
                got: beta.dim(),
                want: (self.atoms, self.voxels),
            });
        }
        // Validate everything first so a refused map leaves the sums untouched.
        for ((atom, voxel), &value) in beta.indexed_iter() {
            if value.abs() > MAX_ABS_BETA || value.is_infinite() {
                return Err(GroupError::Range { atom, voxel, value });
            }
            if sign < 0 && !value.is_nan() && self.n[atom * self.voxels + voxel] == 0 {
                return Err(GroupError::Empty { atom, voxel });
            }
        }
        for ((atom, voxel), &value) in beta.indexed_iter() {
            if value.is_nan() {
                continue;
            }
            let i = atom * self.voxels + voxel;
            let q = quantise(value);
            if sign > 0 {
                self.n[i] += 1;
            } else {
                self.n[i] -= 1;
            }
            self.sum[i] += sign * q;
            self.sum_sq[i] += sign * q * q;
        }
        Ok(())
    }

    /// The sums of the maps in `self` and not in `part` (a subset of them): exact, as the
    /// sums are integers.
    pub fn minus(&self, part: &GroupSums) -> GroupSums {
        assert_eq!((self.atoms, self.voxels), (part.atoms, part.voxels), "sums of one shape");
        GroupSums {
            atoms: self.atoms,
            voxels: self.voxels,
            n: self.n.iter().zip(&part.n).map(|(a, b)| a - b).collect(),
            sum: self.sum.iter().zip(&part.sum).map(|(a, b)| a - b).collect(),
            sum_sq: self.sum_sq.iter().zip(&part.sum_sq).map(|(a, b)| a - b).collect(),
        }
    }

    /// The t test of every cell, one atom's map per task in parallel (each cell on its own,
    /// so the values do not depend on the threads).
    pub fn test(&self) -> GroupTest {
        self.test_passing(None)
    }

    /// [`GroupSums::test`] for maps that only a threshold reads, which no cell of p above
    /// `pass` can pass: p and z are exact wherever p can be at most `pass` (|t| from just
    /// under the t of p = `pass`, [`TwoSided::t_screen`]) and 1 and 0 in the other cells,
    /// whose continued fractions are the test's main cost. n, mean and t are exact
    /// everywhere; None computes every cell.
    pub fn test_passing(&self, pass: Option<f64>) -> GroupTest {
        use rayon::prelude::*;
        let shape = (self.atoms, self.voxels);
        let scale = (FRAC_BITS as f64).exp2();
        let mut out = GroupTest {
            n: Array2::from_shape_vec(shape, self.n.clone()).expect("atoms × voxels"),
            mean: Array2::zeros(shape),
            t: Array2::zeros(shape),
            p: Array2::zeros(shape),
            z: Array2::zeros(shape),
            null_max: None,
        };
        let screens = Screens::new(&self.n, pass);
        let rows = out.mean.outer_iter_mut().zip(out.t.outer_iter_mut()).zip(out.p.outer_iter_mut()).zip(out.z.outer_iter_mut());
        let rows: Vec<_> = rows.enumerate().collect();
        rows.into_par_iter().for_each(|(a, (((mut mean, mut t), mut p), mut z))| {
            let cells = a * self.voxels..(a + 1) * self.voxels;
            let n = &self.n[cells.clone()];
            for (j, ((&n, &s), &ss)) in n.iter().zip(&self.sum[cells.clone()]).zip(&self.sum_sq[cells]).enumerate() {
                mean[j] = if n > 0 { s as f64 / scale / n as f64 } else { f64::NAN };
                t[j] = t_statistic(n, s, ss);
            }
            // Cells of one map mostly share n: p of each stretch of equal n at once.
            let (t, p, z) = (t.as_slice().expect("a row"), p.as_slice_mut().expect("a row"), z.as_slice_mut().expect("a row"));
            let mut start = 0;
            while start < n.len() {
                let end = start + n[start..].iter().take_while(|&&m| m == n[start]).count();
                let (dist, screen) = screens.of(n[start]);
                screened_p_and_z(dist, screen, &t[start..end], &mut p[start..end], &mut z[start..end]);
                start = end;
            }
        });
        out
    }
}

/// Each n's t distribution and the |t| under which its cells are not computed.
struct Screens(Vec<(TwoSided, f64)>);

impl Screens {
    /// For every n in `n` (0 up to its largest), Student's t with n − 1 dof and, for the n
    /// present, its screen at `pass` (0 without one): one bisection per n present, not
    /// per stretch of cells.
    fn new(n: &[u32], pass: Option<f64>) -> Screens {
        let mut seen = vec![false; n.iter().copied().max().map_or(0, |m| m as usize + 1)];
        n.iter().for_each(|&m| seen[m as usize] = true);
        Screens(
            seen.iter()
                .enumerate()
                .map(|(m, &seen)| {
                    let dist = TwoSided::new(m as f64 - 1.0);
                    (dist, pass.filter(|_| seen).map_or(0.0, |level| dist.t_screen(level)))
                })
                .collect(),
        )
    }

    fn of(&self, n: u32) -> (TwoSided, f64) {
        self.0[n as usize]
    }
}

/// p and z of one stretch of t at one dof, exact where |t| ≥ `screen` or t is NaN, 1 and 0
/// elsewhere (every cell when `screen` is 0).
fn screened_p_and_z(dist: TwoSided, screen: f64, t: &[f64], p: &mut [f64], z: &mut [f64]) {
    let exact = |t: f64| t.is_nan() || t.abs() >= screen;
    if screen <= 0.0 || t.iter().all(|&t| exact(t)) {
        dist.p_many(t, p);
        z.iter_mut().zip(t).zip(&*p).for_each(|((z, &t), &p)| *z = signed_z(t, p));
        return;
    }
    let cells: Vec<usize> = (0..t.len()).filter(|&j| exact(t[j])).collect();
    let kept: Vec<f64> = cells.iter().map(|&j| t[j]).collect();
    let mut kept_p = vec![0.0; kept.len()];
    dist.p_many(&kept, &mut kept_p);
    p.fill(1.0);
    z.fill(0.0);
    for ((&j, &t), &pj) in cells.iter().zip(&kept).zip(&kept_p) {
        p[j] = pj;
        z[j] = signed_z(t, pj);
    }
}

/// How a group z map is thresholded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Benjamini–Hochberg at this level over the voxels of one atom's map (two-sided p).
    Fdr(f64),
    /// |z| ≥ this value.
    ZCut(f64),
    /// Family-wise p ≤ this level, from sign-flip permutations (maximum |t| over the map).
    MaxT(f64),
}

impl Threshold {
    /// The largest two-sided p with which a cell can pass, for rules that read the
    /// parametric p or z: FDR's q (no adjusted p is below its p), z-cut's 2Φ(−cut). None
    /// under max-t, whose family-wise p the parametric one does not bound, and for a cut
    /// of 0 or less, which every cell passes.
    pub fn passing_p(self) -> Option<f64> {
        use statrs::distribution::{ContinuousCDF, Normal};
        match self {
            Threshold::Fdr(q) => Some(q),
            Threshold::ZCut(cut) if cut > 0.0 => Some(2.0 * Normal::standard().cdf(-cut)),
            Threshold::ZCut(_) | Threshold::MaxT(_) => None,
        }
    }
}

/// The significant voxels of one atom's map (either sign; `p` is the family-wise p under
/// [`Threshold::MaxT`]), then only those in
/// face-connected clusters of at least `min_cluster` voxels (`ijk` places the voxels).
pub fn significant(
    z: &[f64],
    p: &[f64],
    rule: Threshold,
    ijk: &[[usize; 3]],
    min_cluster: usize,
) -> Vec<bool> {
    let pass = match rule {
        Threshold::Fdr(q) => super::fdr::rejected(p, q),
        Threshold::ZCut(cut) => z.iter().map(|v| v.abs() >= cut).collect(),
        Threshold::MaxT(level) => p.iter().map(|&v| v <= level).collect(),
    };
    super::cluster::min_cluster_size(ijk, &pass, min_cluster)
}

/// β in units of 2⁻⁴⁰ (|β| ≤ 2¹⁶ was checked, so |q| ≤ 2⁵⁶): through i64, the same integer
/// in one instruction where a float to i128 is a library call.
fn quantise(beta: f64) -> i128 {
    i128::from((beta * (FRAC_BITS as f64).exp2()).round() as i64)
}

/// t = Σq·√((n − 1)/(n·Σq² − (Σq)²)); the denominator is exact in i128 when it fits.
fn t_statistic(n: u32, s: i128, ss: i128) -> f64 {
    if n < 2 {
        return f64::NAN;
    }
    let n128 = n as i128;
    let spread = n128
        .checked_mul(ss)
        .zip(s.checked_mul(s))
        .and_then(|(a, b)| a.checked_sub(b))
        .map(|d| d as f64)
        .unwrap_or_else(|| n as f64 * ss as f64 - (s as f64).powi(2));
    if spread <= 0.0 {
        return if s == 0 {
            f64::NAN
        } else {
            f64::INFINITY.copysign(s as f64)
        };
    }
    s as f64 * ((n as f64 - 1.0) / spread).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Through i64 the same integer as straight to i128, over the whole range the sums
    /// take (±2¹⁶, its ends, halves that round, −0, the smallest steps).
    #[test]
    fn quantise_through_i64_is_the_i128_conversion() {
        let scale = (FRAC_BITS as f64).exp2();
        let mut values = vec![0.0, -0.0, MAX_ABS_BETA, -MAX_ABS_BETA, 0.5 / scale, -0.5 / scale, 1.5 / scale, 1e-300, 2.5e-12, -7.25e-13];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
            values.push((unit * 2.0 - 1.0) * MAX_ABS_BETA * (unit * 40.0 - 36.0).exp2().min(1.0));
        }
        for v in values {
            assert_eq!(quantise(v), (v * scale).round() as i128, "{v}");
        }
    }

    fn maps(seed: u64, subjects: usize) -> Vec<Array2<f64>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..subjects)
            .map(|_| Array2::from_shape_simple_fn((3, 40), || rng.random_range(-2.0..3.0)))
            .collect()
    }

    /// Brute force: mean and sample sd in f64, t = mean/(sd/√n); the quantisation and the
    /// two formulas differ by rounding only (1e-9 relative).
    #[test]
    fn equals_the_textbook_t() {
        let ms = maps(1, 6);
        let mut g = GroupSums::new(3, 40);
        ms.iter().for_each(|m| g.add(m.view()).unwrap());
        let test = g.test();
        for a in 0..3 {
            for v in 0..40 {
                let x: Vec<f64> = ms.iter().map(|m| m[[a, v]]).collect();
                let n = x.len() as f64;
                let mean = x.iter().sum::<f64>() / n;
                let sd = (x.iter().map(|b| (b - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
                let t = mean / (sd / n.sqrt());
                assert!((test.t[[a, v]] - t).abs() <= 1e-9 * t.abs().max(1.0));
                assert!((test.mean[[a, v]] - mean).abs() <= 1e-12);
            }
        }
    }

    /// Add-then-remove equals never adding, bit for bit, in any order.
    #[test]
    fn removing_a_subject_is_exact() {
        let ms = maps(2, 5);
        let mut without = GroupSums::new(3, 40);
        for m in &ms[..4] {
            without.add(m.view()).unwrap();
        }
        let mut with = GroupSums::new(3, 40);
        for i in [4, 2, 0, 3, 1] {
            with.add(ms[i].view()).unwrap();
        }
        with.remove(ms[4].view()).unwrap();
        assert_eq!(with, without);
        let (a, b) = (with.test(), without.test());
        let bits = |x: &Array2<f64>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.t), bits(&b.t));
        assert_eq!(bits(&a.z), bits(&b.z));
    }

    #[test]
    fn missing_voxels_degenerate_cells_and_bad_maps() {
        let mut g = GroupSums::new(1, 3);
        let one = Array2::from_shape_vec((1, 3), vec![1.0, f64::NAN, 2.0]).unwrap();
        g.add(one.view()).unwrap();
        g.add(one.view()).unwrap();
        let t = g.test();
        assert_eq!(t.n.as_slice().unwrap(), &[2, 0, 2]);
        assert_eq!(t.t[[0, 0]], f64::INFINITY, "no spread, positive mean");
        assert!(t.t[[0, 1]].is_nan(), "no subject");
        assert_eq!(t.p[[0, 2]], 0.0);
        let big = Array2::from_elem((1, 3), 1e9);
        let before = g.clone();
        assert!(matches!(g.add(big.view()), Err(GroupError::Range { .. })));
        assert_eq!(g, before, "a refused map changes nothing");
        assert!(matches!(
            g.add(Array2::zeros((2, 3)).view()),
            Err(GroupError::Shape { .. })
        ));
        let mut empty = GroupSums::new(1, 3);
        assert!(matches!(
            empty.remove(one.view()),
            Err(GroupError::Empty { .. })
        ));
    }

    /// A test computed only up to a threshold's p passes the same voxels as the whole test,
    /// under FDR and z-cut, at a few subjects (1 and 3 dof, NaN cells, a zero-variance
    /// cell) and many; its exact cells are the whole test's bits, and it did screen some.
    #[test]
    fn a_test_up_to_the_threshold_passes_the_same_voxels() {
        let ijk: Vec<[usize; 3]> = (0..400).map(|v| [v % 10, v / 10 % 10, v / 100]).collect();
        for (seed, subjects) in [(3, 2), (4, 4), (5, 9), (6, 30)] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut g = GroupSums::new(4, 400);
            for s in 0..subjects {
                // Atom a's effect grows with a, so the maps range from none to most voxels passing.
                let m = Array2::from_shape_fn((4, 400), |(a, v)| match (s, v) {
                    (0, 7) => f64::NAN,
                    (_, 11) => 1.0,
                    _ => a as f64 * 0.6 + rng.random_range(-2.0..2.0),
                });
                g.add(m.view()).unwrap();
            }
            let whole = g.test();
            for rule in [Threshold::Fdr(0.05), Threshold::Fdr(0.3), Threshold::ZCut(2.3), Threshold::ZCut(1.2)] {
                let part = g.test_passing(rule.passing_p());
                let screened = part.p.iter().zip(&whole.p).filter(|&(&p, &w)| p == 1.0 && w < 1.0).count();
                assert!(screened > 0, "{subjects} subjects, {rule:?}: nothing screened");
                for a in 0..4 {
                    let row = |t: &GroupTest| significant(t.z.row(a).as_slice().unwrap(), t.p.row(a).as_slice().unwrap(), rule, &ijk, 1);
                    assert_eq!(row(&part), row(&whole), "{subjects} subjects, {rule:?}, atom {a}");
                }
                for ((p, z), (wp, wz)) in part.p.iter().zip(&part.z).zip(whole.p.iter().zip(&whole.z)) {
                    assert!(p.to_bits() == wp.to_bits() && z.to_bits() == wz.to_bits() || (*p == 1.0 && *z == 0.0 && *wp > rule.passing_p().unwrap()));
                }
            }
        }
    }
}
