//! The group's exact integer sums, kept beside the group maps so that an update reads only
//! what changed: the subjects it refits or removes, and those whose half (A or B, by
//! position in label order) it shifts — not every subject's β map.
//!
//! ```text
//! group/sums.json    which sums: the group map's name, atoms, voxels, block size, and each
//!                    subject of the group with the xxHash64 of the β map that entered
//! group/sums.bin.gz  per voxel block, one gzip member: subjects (u32), then for the whole
//!                    group and half A: n (u32), Σq and Σq² (i128) per atom × voxel, LE
//! ```
//!
//! Sums are trusted only while every subject's β map still has the checksum it had when
//! it entered them; otherwise (or when they are missing or damaged) the update adds every
//! subject again, which is always right. So a command killed between writing the subject
//! maps and the group never leaves sums that disagree with the maps.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels::group::GroupSums;
use crate::operators::BlockSums;

const VERSION: u32 = 1;

/// What the sums are of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SumsIndex {
    pub version: u32,
    /// The subject map that enters the group (`beta`, `beta_ridge`).
    pub map: String,
    pub atoms: u32,
    pub voxels: u64,
    pub block_voxels: u32,
    /// The group's subjects in label order, each with the xxHash64 of its map.
    pub subjects: Vec<(String, String)>,
}

impl SumsIndex {
    pub fn new(map: &str, atoms: usize, voxels: usize, subjects: Vec<(String, String)>) -> SumsIndex {
        SumsIndex {
            version: VERSION,
            map: map.to_string(),
            atoms: atoms as u32,
            voxels: voxels as u64,
            block_voxels: crate::operators::BLOCK_VOXELS as u32,
            subjects,
        }
    }

    /// Whether these are sums of `map` on `voxels` voxels in this version's blocks.
    pub fn describes(&self, map: &str, voxels: usize) -> bool {
        self.version == VERSION && self.map == map && self.voxels == voxels as u64 && self.block_voxels as usize == crate::operators::BLOCK_VOXELS
    }

    fn blocks(&self) -> usize {
        (self.voxels as usize).div_ceil(self.block_voxels.max(1) as usize)
    }

    fn block_len(&self, b: usize) -> usize {
        let start = b * self.block_voxels as usize;
        (self.voxels as usize - start).min(self.block_voxels as usize)
    }
}

pub fn index_path(group: &Path) -> PathBuf {
    group.join("sums.json")
}

pub fn data_path(group: &Path) -> PathBuf {
    group.join("sums.bin.gz")
}

/// One block as its gzip member of sums.bin.gz.
pub fn compress(block: &BlockSums) -> std::io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    encode(block, &mut gz).and_then(|()| gz.finish())
}

/// Writes the sums under `group` from their blocks' members ([`compress`], in block
/// order). Returns the files written.
pub fn write(group: &Path, index: &SumsIndex, members: &[Vec<u8>]) -> Result<Vec<PathBuf>> {
    let data = data_path(group);
    if members.len() != index.blocks() {
        return Err(Error::Invalid(format!("{}: {} blocks of sums for {} in the index", data.display(), members.len(), index.blocks())));
    }
    crate::io::atomic::write_file_atomically(&data, |out| members.iter().try_for_each(|m| out.write_all(m)))?;
    let json = serde_json::to_vec_pretty(index).map_err(|e| Error::format(index_path(group), e.to_string()))?;
    crate::io::atomic::write_file_atomically(&index_path(group), |out| out.write_all(&json))?;
    Ok(vec![data, index_path(group)])
}

fn encode(block: &BlockSums, out: &mut impl Write) -> std::io::Result<()> {
    let (subjects, all, half_a) = block.parts();
    out.write_all(&subjects.to_le_bytes())?;
    for sums in [all, half_a] {
        let (n, sum, sum_sq) = sums.parts();
        let mut bytes = Vec::with_capacity(36 * n.len());
        bytes.extend(n.iter().flat_map(|v| v.to_le_bytes()));
        bytes.extend(sum.iter().chain(sum_sq).flat_map(|v| v.to_le_bytes()));
        out.write_all(&bytes)?;
    }
    Ok(())
}

/// The index at `group`, if there is one that parses.
pub fn read_index(group: &Path) -> Result<SumsIndex> {
    let path = index_path(group);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::format(&path, format!("not a sums index: {e}")))
}

/// The blocks of the sums `index` describes. Each part is read as far as the file goes
/// (a short or lying file is an error before anything of the index's size is
/// allocated), and the sums must hold together: half A's n ≤ the whole group's n ≤ its
/// subjects, as many subjects as the index names.
pub fn read_blocks(group: &Path, index: &SumsIndex) -> Result<Vec<BlockSums>> {
    let path = data_path(group);
    let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let mut input = MultiGzDecoder::new(std::io::BufReader::new(file));
    let atoms = index.atoms as usize;
    let mut blocks = Vec::with_capacity(index.blocks());
    for b in 0..index.blocks() {
        let cells = atoms * index.block_len(b);
        let mut read = |bytes: usize| -> Result<Vec<u8>> {
            let mut buf = Vec::new();
            (&mut input).take(bytes as u64).read_to_end(&mut buf).map_err(|e| Error::format(&path, format!("block {b}: {e}")))?;
            match buf.len() == bytes {
                true => Ok(buf),
                false => Err(Error::format(&path, format!("block {b}: ends {} bytes short of what its index describes", bytes - buf.len()))),
            }
        };
        let subjects = u32::from_le_bytes(read(4)?.try_into().expect("4 bytes"));
        let mut sums = Vec::with_capacity(2);
        for _ in 0..2 {
            let n = read(4 * cells)?.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4"))).collect();
            let wide = |bytes: Vec<u8>| -> Vec<i128> { bytes.chunks_exact(16).map(|c| i128::from_le_bytes(c.try_into().expect("16"))).collect() };
            let sum = wide(read(16 * cells)?);
            let sum_sq = wide(read(16 * cells)?);
            sums.push(GroupSums::from_parts(atoms, index.block_len(b), n, sum, sum_sq).expect("sized above"));
        }
        let half_a = sums.pop().expect("two");
        let all = sums.pop().expect("two");
        let (n_all, n_a) = (all.parts().0, half_a.parts().0);
        if subjects as usize != index.subjects.len() || n_all.iter().zip(n_a).any(|(&all, &a)| a > all || all > subjects) {
            return Err(Error::format(&path, format!("block {b}: its counts do not hold together ({subjects} subjects, {} in the index)", index.subjects.len())));
        }
        blocks.push(BlockSums::from_parts(subjects, all, half_a).expect("one shape"));
    }
    let mut rest = [0u8; 1];
    if input.read(&mut rest).map_err(|e| Error::io(&path, e))? != 0 {
        return Err(Error::format(&path, format!("longer than the {} blocks its index names", index.blocks())));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::{Floats, SubjectBeta};

    fn beta(subject: &str, atoms: u32, voxels: usize, seed: usize) -> SubjectBeta {
        let v = (0..atoms as usize * voxels).map(|i| ((i * 7 + seed * 13) % 17) as f64 / 3.0 - 2.5).collect();
        (subject.into(), atoms, Floats(v))
    }

    #[test]
    fn sums_read_back_equal_and_test_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let voxels = crate::operators::BLOCK_VOXELS + 37;
        let named = ["01", "02", "03"].map(|s| (s.to_string(), "x".to_string())).to_vec();
        let index = SumsIndex::new("beta", 3, voxels, named);
        let blocks: Vec<BlockSums> = (0..index.blocks())
            .map(|b| {
                let mut s = BlockSums::new(3, index.block_len(b));
                for (p, subject) in ["01", "02", "03"].iter().enumerate() {
                    s.add(p, &beta(subject, 3, index.block_len(b), p + b)).unwrap();
                }
                s
            })
            .collect();
        write(dir.path(), &index, &blocks.iter().map(|b| compress(b).unwrap()).collect::<Vec<_>>()).unwrap();
        assert_eq!(read_index(dir.path()).unwrap(), index);
        let back = read_blocks(dir.path(), &index).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in blocks.iter().zip(&back) {
            assert_eq!(a.test(None), b.test(None));
            assert_eq!(a.parts().1, b.parts().1);
            assert_eq!(a.parts().2, b.parts().2);
        }
    }

    #[test]
    fn a_cut_or_grown_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let index = SumsIndex::new("beta", 2, 10, vec![("01".into(), "x".into())]);
        let mut s = BlockSums::new(2, 10);
        s.add(0, &beta("01", 2, 10, 0)).unwrap();
        let member = compress(&s).unwrap();
        write(dir.path(), &index, std::slice::from_ref(&member)).unwrap();
        let longer = SumsIndex { voxels: 20, ..index.clone() };
        let e = read_blocks(dir.path(), &longer).unwrap_err().to_string();
        assert!(e.contains("sums.bin.gz") && e.contains("block 0") && e.contains("short"), "{e}");
        let index2 = SumsIndex { voxels: 2 * crate::operators::BLOCK_VOXELS as u64, ..index.clone() };
        write(dir.path(), &index2, &[member.clone(), member]).unwrap();
        let e = read_blocks(dir.path(), &index).unwrap_err().to_string();
        assert!(e.contains("longer than the 1 blocks"), "{e}");
        // Counts that do not hold together (the index names two subjects, the block one).
        write(dir.path(), &index, std::slice::from_ref(&compress(&s).unwrap())).unwrap();
        let two = SumsIndex { subjects: vec![("01".into(), "x".into()), ("02".into(), "y".into())], ..index };
        let e = read_blocks(dir.path(), &two).unwrap_err().to_string();
        assert!(e.contains("do not hold together"), "{e}");
    }
}
