//! `group_blocks`: per voxel block, the random-effects group test of every atom over the
//! subjects present, and the same test in each half of the subjects (label order,
//! alternately to halves A and B) for the split-half reproducibility. The sums are exact
//! integers ([`GroupSums`]), so the result depends only on the set of subjects. With
//! sign-flip permutations, the test over all subjects also carries the block's null maxima
//! of |t| per atom (each subject's flips drawn from a seed and its label), which combine
//! over the blocks by `max` into each map's null distribution.

use super::BlockError;
use differential_dataflow::VecCollection;
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use super::Floats;
use crate::kernels::group::{GroupSums, GroupTest};
use crate::kernels::permutation::{block_null_max, SignFlips};

/// One subject's β on one block: (subject label, atoms, atoms × block voxels row-major,
/// NaN where the voxel was not fitted). Values are rounded through f32, as the subject's
/// β map stores them, so a group from maps and a group from fits agree bit for bit.
pub type SubjectBeta = (String, u32, Floats);

/// The group statistics of one block, atoms × voxels row-major.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlockTest {
    pub n: Vec<u32>,
    pub mean: Floats,
    pub t: Floats,
    pub p: Floats,
    pub z: Floats,
    /// Null maxima of |t| over the block's voxels, atoms × permutations (empty without
    /// permutations).
    pub null_max: Floats,
}

impl BlockTest {
    fn of(t: GroupTest, null_max: Option<Array2<f64>>) -> BlockTest {
        let flat = |a: Array2<f64>| Floats(a.iter().copied().collect());
        BlockTest {
            n: t.n.iter().copied().collect(),
            mean: flat(t.mean),
            t: flat(t.t),
            p: flat(t.p),
            z: flat(t.z),
            null_max: null_max.map_or_else(Floats::default, flat),
        }
    }

    /// A half's test as the split-half reproducibility reads it: p and z only (n, mean
    /// and t left empty), 16 of the 36 bytes a cell.
    fn p_and_z(t: GroupTest) -> BlockTest {
        let flat = |a: Array2<f64>| Floats(a.iter().copied().collect());
        BlockTest {
            p: flat(t.p),
            z: flat(t.z),
            ..BlockTest::default()
        }
    }
}

/// Sign-flip permutations of the group test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permutations {
    pub n: usize,
    pub seed: u64,
}

/// What a block's tests compute besides the whole group's maps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BlockTests {
    /// Sign-flip permutations of the whole group's test.
    pub perm: Option<Permutations>,
    /// The largest p with which a half's cell can pass the halves' threshold
    /// ([`Threshold::passing_p`](crate::kernels::group::Threshold::passing_p)): the halves'
    /// p and z are exact up to it, 1 and 0 beyond (see [`GroupSums::test_passing`]). None:
    /// exact everywhere.
    pub halves_pass: Option<f64>,
}

/// A block's tests over all subjects and over each half.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupBlock {
    pub subjects: u32,
    pub atoms: u32,
    pub voxels: u32,
    pub all: BlockTest,
    /// The halves' p and z (the split-half reproducibility's inputs); n, mean, t empty.
    pub half_a: BlockTest,
    pub half_b: BlockTest,
}

/// The running group sums of one block: over all subjects and over half A (the group's
/// subjects at even positions in label order); half B is their difference, exact because
/// the sums are integers. Subjects can be added in any order, so a writer can add each
/// subject's fit as it arrives and keep nothing else.
#[derive(Debug, Clone)]
pub struct BlockSums {
    atoms: usize,
    voxels: usize,
    subjects: u32,
    all: GroupSums,
    half_a: GroupSums,
}

impl BlockSums {
    pub fn new(atoms: usize, voxels: usize) -> BlockSums {
        BlockSums {
            atoms,
            voxels,
            subjects: 0,
            all: GroupSums::new(atoms, voxels),
            half_a: GroupSums::new(atoms, voxels),
        }
    }

    /// Adds a subject's β, the `position`-th subject of the group in label order (which
    /// half it belongs to); an error names the subject and leaves the sums as they were.
    pub fn add(&mut self, position: usize, beta: &SubjectBeta) -> Result<(), BlockError> {
        self.update(position, beta, true)
    }

    /// Takes out a β added before at `position`; the sums return exactly to what they
    /// were without it.
    pub fn remove(&mut self, position: usize, beta: &SubjectBeta) -> Result<(), BlockError> {
        self.update(position, beta, false)
    }

    /// Moves a subject's β from the half of position `from` to that of position `to` (a
    /// subject inserted or removed before it in label order shifts its position).
    pub fn move_half(&mut self, from: usize, to: usize, (subject, atoms, beta): &SubjectBeta) -> Result<(), BlockError> {
        let view = self.view(subject, *atoms, beta)?;
        let moved = match (from.is_multiple_of(2), to.is_multiple_of(2)) {
            (true, false) => self.half_a.remove(view),
            (false, true) => self.half_a.add(view),
            _ => Ok(()),
        };
        moved.map_err(|e| BlockError(format!("sub-{subject}: {e}")))
    }

    fn update(&mut self, position: usize, (subject, atoms, beta): &SubjectBeta, add: bool) -> Result<(), BlockError> {
        let view = self.view(subject, *atoms, beta)?;
        let failed = |e| BlockError(format!("sub-{subject}: {e}"));
        let subjects = match add {
            true => self.subjects.checked_add(1),
            false => self.subjects.checked_sub(1),
        }
        .ok_or_else(|| BlockError(format!("sub-{subject}: taken out of a block that holds no subject")))?;
        // Half A first: what passes for it passes for the whole group, whose sums include
        // it, so a refusal leaves both as they were.
        let apply = |sums: &mut GroupSums| if add { sums.add(view) } else { sums.remove(view) };
        if position.is_multiple_of(2) {
            apply(&mut self.half_a).map_err(failed)?;
        }
        if let Err(e) = apply(&mut self.all) {
            if position.is_multiple_of(2) {
                let undo = |sums: &mut GroupSums| if add { sums.remove(view) } else { sums.add(view) };
                undo(&mut self.half_a).expect("undoing what was just applied");
            }
            return Err(failed(e));
        }
        self.subjects = subjects;
        Ok(())
    }

    fn view<'b>(&self, subject: &str, atoms: u32, beta: &'b Floats) -> Result<ArrayView2<'b, f64>, BlockError> {
        ArrayView2::from_shape((atoms as usize, beta.0.len() / (atoms as usize).max(1)), &beta.0)
            .ok()
            .filter(|v| v.dim() == (self.atoms, self.voxels))
            .ok_or_else(|| BlockError(format!("sub-{subject}: β block of the wrong size")))
    }

    /// The block as kept in a store: subjects, the whole group's sums and half A's.
    pub fn parts(&self) -> (u32, &GroupSums, &GroupSums) {
        (self.subjects, &self.all, &self.half_a)
    }

    /// A block from its stored parts (both sums of one shape, half A within the whole).
    pub fn from_parts(subjects: u32, all: GroupSums, half_a: GroupSums) -> Option<BlockSums> {
        let (atoms, voxels) = all.shape();
        (half_a.shape() == (atoms, voxels)).then_some(BlockSums {
            atoms,
            voxels,
            subjects,
            all,
            half_a,
        })
    }

    /// The block's tests, with the permutations' null maxima of the whole group if any;
    /// the halves' p and z exact up to `halves_pass` ([`BlockTests::halves_pass`]).
    pub fn test(&self, null: Option<Array2<f64>>, halves_pass: Option<f64>) -> GroupBlock {
        let half_b = self.all.minus(&self.half_a);
        GroupBlock {
            subjects: self.subjects,
            atoms: self.atoms as u32,
            voxels: self.voxels as u32,
            all: BlockTest::of(self.all.test(), null),
            half_a: BlockTest::p_and_z(self.half_a.test_passing(halves_pass)),
            half_b: BlockTest::p_and_z(half_b.test_passing(halves_pass)),
        }
    }
}

/// The tests of one block from its subjects' β, in label order; an error names the subject.
pub fn group_block(betas: &[&SubjectBeta], tests: BlockTests) -> Result<GroupBlock, BlockError> {
    let atoms = (betas[0].1 as usize).max(1);
    let mut sums = BlockSums::new(atoms, betas[0].2 .0.len() / atoms);
    for (i, beta) in betas.iter().enumerate() {
        sums.add(i, beta)?;
    }
    Ok(sums.test(tests.perm.map(|p| block_null(betas, p)), tests.halves_pass))
}

/// The block's null maxima of |t| over sign-flip permutations of the subjects (label
/// order). Permutations for the whole group only: halves of a few subjects allow too few
/// distinct flips for a family-wise threshold (their maps are thresholded by FDR).
pub fn block_null(betas: &[&SubjectBeta], perm: Permutations) -> Array2<f64> {
    let views: Vec<ArrayView2<f64>> = betas
        .iter()
        .map(|(_, k, b)| ArrayView2::from_shape((*k as usize, b.0.len() / (*k as usize).max(1)), &b.0).expect("checked by the sums"))
        .collect();
    let labels: Vec<&str> = betas.iter().map(|b| b.0.as_str()).collect();
    block_null_max(&SignFlips::for_labels(&labels, perm.n, perm.seed), &views)
}

/// Extension trait: the group tests of every block.
pub trait GroupBlocks<'s> {
    /// Keeps, for every block, the [`GroupBlock`] of the subjects present (or the error of
    /// the first subject whose β cannot be added), with the permutations' null maxima.
    fn group_blocks(self, tests: BlockTests) -> VecCollection<'s, u64, (u32, Result<GroupBlock, BlockError>)>;
}

impl<'s> GroupBlocks<'s> for VecCollection<'s, u64, (u32, SubjectBeta)> {
    fn group_blocks(self, tests: BlockTests) -> VecCollection<'s, u64, (u32, Result<GroupBlock, BlockError>)> {
        self.reduce_named("GroupBlocks", move |_block, subjects, out| {
            let present: Vec<&SubjectBeta> = subjects
                .iter()
                .filter(|(_, count)| *count > 0)
                .map(|(s, _)| *s)
                .collect();
            if !present.is_empty() {
                out.push((group_block(&present, tests), 1));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block test equals the kernel's test of the same maps, and halves alternate.
    #[test]
    fn block_tests_match_the_kernel_and_halves_alternate() {
        let maps: Vec<SubjectBeta> = (0..5)
            .map(|s| {
                let v: Vec<f64> = (0..6)
                    .map(|i| {
                        if s == 2 && i == 4 {
                            f64::NAN
                        } else {
                            ((s * 7 + i * 3) % 5) as f64 - 1.5
                        }
                    })
                    .collect();
                (format!("{s:02}"), 2, Floats(v))
            })
            .collect();
        let refs: Vec<&SubjectBeta> = maps.iter().collect();
        let g = group_block(&refs, BlockTests::default()).unwrap();
        let mut all = GroupSums::new(2, 3);
        let mut a = GroupSums::new(2, 3);
        for (i, m) in maps.iter().enumerate() {
            let view = ArrayView2::from_shape((2, 3), &m.2 .0).unwrap();
            all.add(view).unwrap();
            if i % 2 == 0 {
                a.add(view).unwrap();
            }
        }
        assert_eq!(g.all, BlockTest::of(all.test(), None));
        assert_eq!(g.half_a, BlockTest::p_and_z(a.test()));
        assert_eq!(g.half_b, BlockTest::p_and_z(all.minus(&a).test()));
        assert!(g.half_b.n.is_empty() && g.half_b.t.0.is_empty(), "halves carry p and z only");
        assert_eq!(g.all.n[4], 4, "the NaN voxel is left out");
    }
}
