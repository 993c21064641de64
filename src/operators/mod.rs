//! Thin timely/differential operators over the kernels, one per file, as extension traits
//! on collections (the style of timely's own operators).
//!
//! The encoding stage as a differential dataflow: each BOLD run, reduced to statistics
//! ([`RunStats`]), is cut into voxel blocks and enters a collection keyed by
//! (subject, block) with multiplicity +1; retracting the run sends the same records with −1.
//! [`FitBlocks`] keeps, per key, the fit of the subject's current runs (summed in run-key
//! order, so the numbers do not depend on arrival order or on which worker holds the key);
//! [`GroupBlocks`] keeps, per block, the group test over every subject's β (exact integer
//! sums); [`Gather`] brings a collection's current contents to worker 0 for writing, and
//! [`agree`] is the barrier at which workers learn that all of them can go on.
//!
//! Stories reach the basis through [`PoolWords`]: the model's forward passes (batches of
//! windows dealt over the workers) send each token's row, and the operator pools a story's
//! words at worker 0 once the frontier has passed it.
//!
//! Statistics travel as data (f64 compared by their bits, so records are `Ord` and
//! retraction cancels exactly), never as float differences.

mod barrier;
mod fit_blocks;
mod gather;
mod group_blocks;
mod pool_words;
mod share;

pub use barrier::{agree, least, total};
pub use fit_blocks::{fit_block, BlockFit, FitBlocks, FitSettings};
pub use gather::{Gather, Gathered};
pub use group_blocks::{block_null, group_block, BlockSums, BlockTest, BlockTests, GroupBlock, GroupBlocks, Permutations, SubjectBeta};
pub use pool_words::{PoolWords, StoryShape, StoryWords, TokenRow};
pub use share::{send_to_first, share};

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::kernels::ridge_stats::RunStats;

/// Why a block could not be fitted or tested. Records of a collection must be ordered and
/// serialisable, so the error travels as its message, typed so that it is not mistaken for
/// data.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, thiserror::Error,
)]
#[error("{0}")]
pub struct BlockError(pub String);

/// Voxels per block: the unit of exchange between workers and of refitting.
pub const BLOCK_VOXELS: usize = 4096;

/// A subject's voxel block: (subject label, block index).
pub type BlockKey = (String, u32);

/// One run's statistics for one block: (run key `sub-S/task-T/run-R`, statistics). Runs of
/// a key sort by run key, the order in which they are summed.
pub type RunBlock = (String, StatsBlock);

/// f64 values compared and ordered by their bit patterns: a total order (NaN included) that
/// differential dataflow can sort and cancel exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Floats(pub Vec<f64>);

impl PartialEq for Floats {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Floats {}
impl PartialOrd for Floats {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Floats {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let bits = |v: &Vec<f64>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| bits(&self.0).cmp(&bits(&other.0)))
    }
}

/// One run's statistics for a block of voxels, as plain data (see [`RunStats`]), with the
/// number of nuisance columns projected out of the run and the voxels valid in it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StatsBlock {
    pub n: u64,
    pub absorbed: u64,
    pub k: u32,
    pub gram: Floats,
    pub sum_x: Floats,
    /// XᵀY, k × voxels of the block, row-major.
    pub xty: Floats,
    pub sum_y: Floats,
    pub sum_y2: Floats,
    pub valid: Vec<bool>,
}

impl StatsBlock {
    /// Cuts a run's statistics into blocks of [`BLOCK_VOXELS`]: (block index, block).
    pub fn split(stats: &RunStats, absorbed: usize, valid: &[bool]) -> Vec<(u32, StatsBlock)> {
        let v = stats.xty.ncols();
        (0..v.div_ceil(BLOCK_VOXELS))
            .map(|b| {
                let range = b * BLOCK_VOXELS..((b + 1) * BLOCK_VOXELS).min(v);
                let cols: Vec<usize> = range.clone().collect();
                let part = stats.select(&cols);
                let block = StatsBlock {
                    n: part.n as u64,
                    absorbed: absorbed as u64,
                    k: part.gram.nrows() as u32,
                    gram: Floats(part.gram.iter().copied().collect()),
                    sum_x: Floats(part.sum_x.to_vec()),
                    xty: Floats(part.xty.iter().copied().collect()),
                    sum_y: Floats(part.sum_y.to_vec()),
                    sum_y2: Floats(part.sum_y2.to_vec()),
                    valid: valid[range].to_vec(),
                };
                (b as u32, block)
            })
            .collect()
    }

    /// Voxels in this block.
    pub fn voxels(&self) -> usize {
        self.valid.len()
    }

    /// Back to [`RunStats`].
    pub fn stats(&self) -> RunStats {
        let (k, v) = (self.k as usize, self.voxels());
        RunStats {
            gram: Array2::from_shape_vec((k, k), self.gram.0.clone()).expect("k × k"),
            xty: Array2::from_shape_vec((k, v), self.xty.0.clone()).expect("k × v"),
            sum_x: Array1::from(self.sum_x.0.clone()),
            sum_y: Array1::from(self.sum_y.0.clone()),
            sum_y2: Array1::from(self.sum_y2.0.clone()),
            n: self.n as usize,
        }
    }
}

/// Columns `cols` of a row-major `rows × n` matrix, as a row-major `rows × cols.len()`.
pub fn columns(a: &Array2<f64>, cols: &[usize]) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.nrows() * cols.len());
    for row in a.rows() {
        out.extend(cols.iter().map(|&c| row[c]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_floats_order_by_bits() {
        let v = BLOCK_VOXELS + 7;
        let x = Array2::from_shape_fn((6, 2), |(t, j)| (t + 2 * j) as f64);
        let y = Array2::from_shape_fn((6, v), |(t, j)| ((t * 31 + j) % 11) as f64);
        let s = RunStats::from_block(x.view(), y.view());
        let valid: Vec<bool> = (0..v).map(|j| j % 3 != 0).collect();
        let blocks = StatsBlock::split(&s, 2, &valid);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].1.voxels(), 7);
        let back: Vec<RunStats> = blocks.iter().map(|b| b.1.stats()).collect();
        assert_eq!(
            crate::kernels::ridge_stats::join_voxel_blocks(&back),
            s,
            "blocks rejoin to the run"
        );
        assert_eq!(blocks[1].1.valid, valid[BLOCK_VOXELS..]);
        // -0.0 and 0.0 differ, NaN equals itself: records cancel only when bit-identical.
        assert_ne!(Floats(vec![0.0]), Floats(vec![-0.0]));
        assert_eq!(Floats(vec![f64::NAN]), Floats(vec![f64::NAN]));
    }
}
