//! The group's exact integer sums, kept beside the group maps so that an update reads only
//! what changed: the subjects it refits or removes, and those whose half (A or B, by
//! position in label order) it shifts — not every subject's β map.
//!
//! ```text
//! group/sums.json  which sums: the group map's name, atoms, voxels, block size, and each
//!                  subject of the group with the xxHash64 of the β map that entered
//! group/sums.bin   per voxel block: subjects (u32 LE), then for the whole group and half
//!                  A three columns over atom × voxel: n, Σq, Σq², each as one byte w
//!                  (1–16) and every value in w bytes (LE two's complement, sign-extended
//!                  when read)
//! ```
//!
//! Each column takes the fewest bytes that hold all its values exactly: n one byte, Σq
//! about 7 and Σq² about 12 at 2 mm, 20 bytes a cell and part where i128s take 36. The
//! low bytes of exact sums are noise, so gzip shrank them only to ~16 bytes, at the cost
//! of deflating and inflating some 300 MB (2 mm cortex) at every update.
//!
//! Sums are trusted only while every subject's β map still has the checksum it had when
//! it entered them; otherwise (or when they are missing or damaged) the update adds every
//! subject again, which is always right. So a command killed between writing the subject
//! maps and the group never leaves sums that disagree with the maps.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels::group::GroupSums;
use crate::operators::BlockSums;

/// 1: gzip of full-width columns (`sums.bin.gz`); 2: byte-trimmed columns.
const VERSION: u32 = 2;

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
    group.join("sums.bin")
}

/// Writes the sums under `group` from their blocks' bytes ([`encode`], in block order),
/// not yet in place: see [`Pending`].
pub fn write(group: &Path, index: &SumsIndex, members: &[Vec<u8>]) -> Result<Pending> {
    let data = data_path(group);
    if members.len() != index.blocks() {
        return Err(Error::Invalid(format!("{}: {} blocks of sums for {} in the index", data.display(), members.len(), index.blocks())));
    }
    let file = crate::io::atomic::write_file_unsynced(&data, |out| members.iter().try_for_each(|m| out.write_all(m)))?;
    let json = serde_json::to_vec_pretty(index).map_err(|e| Error::format(index_path(group), e.to_string()))?;
    Ok(Pending { data: file, index: (index_path(group), json) })
}

/// Sums written but not in place: [`Pending::finish`] waits for the disk, renames the
/// data, then writes the index (so an index never names data that is not there). The
/// wait for the disk (~0.25 s for the 160 MB of a 2 mm store) can then overlap the
/// group's maps.
#[must_use = "the sums are not in place until finished"]
pub struct Pending {
    data: crate::io::atomic::Unsynced,
    index: (PathBuf, Vec<u8>),
}

impl Pending {
    /// Puts the sums in place.
    pub fn finish(self) -> Result<()> {
        let Pending { data, index: (path, json) } = self;
        data.finish()?;
        crate::io::atomic::write_file_atomically(&path, |out| out.write_all(&json))
    }

    /// [`finish`](Self::finish) on a thread of its own; the handle waits for it when
    /// dropped, so no early return leaves the thread behind.
    pub fn finish_behind(self) -> Result<Behind> {
        std::thread::Builder::new()
            .name("group sums".into())
            .spawn(move || self.finish())
            .map(|t| Behind(Some(t)))
            .map_err(|e| Error::Invalid(format!("no thread to write the group's sums: {e}")))
    }
}

/// The sums being put in place by [`Pending::finish_behind`].
#[must_use = "the sums' error is known only from Behind::wait"]
pub struct Behind(Option<std::thread::JoinHandle<Result<()>>>);

impl Behind {
    /// Waits for the sums to be in place.
    pub fn wait(mut self) -> Result<()> {
        self.0.take().map_or(Ok(()), join)
    }
}

impl Drop for Behind {
    /// Dropped unwaited (the update failed elsewhere, and reports that error): the thread
    /// is waited for, and its own error only logged.
    fn drop(&mut self) {
        if let Some(Err(e)) = self.0.take().map(join) {
            tracing::warn!("group sums not kept: {e}");
        }
    }
}

/// The thread's result; a panic as an error that says what it said.
fn join(thread: std::thread::JoinHandle<Result<()>>) -> Result<()> {
    thread.join().unwrap_or_else(|panic| {
        let said = crate::error::panic_text(&*panic).unwrap_or_default();
        Err(Error::Invalid(format!("the thread writing the group's sums stopped unexpectedly: {said}")))
    })
}

/// One block's bytes in sums.bin.
pub fn encode(block: &BlockSums) -> Vec<u8> {
    let (subjects, all, half_a) = block.parts();
    let mut out = subjects.to_le_bytes().to_vec();
    for sums in [all, half_a] {
        let (n, sum, sum_sq) = sums.parts();
        put_column(&mut out, n.iter().map(|&v| i128::from(v)));
        put_column(&mut out, sum.iter().copied());
        put_column(&mut out, sum_sq.iter().copied());
    }
    out
}

/// The fewest bytes w that hold `v` as a w-byte two's complement number.
fn width(v: i128) -> usize {
    let bits = 129 - if v < 0 { (!v).leading_zeros() } else { v.leading_zeros() } as usize;
    bits.div_ceil(8).max(1)
}

fn put_column(out: &mut Vec<u8>, values: impl ExactSizeIterator<Item = i128> + Clone) {
    let w = values.clone().map(width).max().unwrap_or(1);
    out.push(w as u8);
    // Each value's 16 bytes are stored whole, one fixed-size store instead of a copy of w
    // bytes; the next value overwrites the 16 − w high bytes, the last one's are cut.
    let start = out.len();
    out.resize(start + w * values.len() + 16, 0);
    for (i, v) in values.enumerate() {
        let at = start + i * w;
        out[at..at + 16].copy_from_slice(&v.to_le_bytes());
    }
    out.truncate(out.len() - 16);
}

/// The values of a column of w bytes a value (1–16), sign-extended.
fn column(w: usize, bytes: &[u8]) -> Vec<i128> {
    // The w bytes are the low ones of a 16-byte load (as far as the column goes; the
    // last values load what is left), shifted up and arithmetically back down.
    let shift = 128 - 8 * w as u32;
    let count = bytes.len() / w;
    let whole = if bytes.len() >= 16 { (bytes.len() - 16) / w + 1 } else { 0 };
    let mut out = Vec::with_capacity(count);
    out.extend((0..whole.min(count)).map(|i| {
        let load: [u8; 16] = bytes[i * w..i * w + 16].try_into().expect("16 bytes");
        (i128::from_le_bytes(load) << shift) >> shift
    }));
    out.extend((whole.min(count)..count).map(|i| {
        let mut load = [0u8; 16];
        load[..w].copy_from_slice(&bytes[i * w..(i + 1) * w]);
        (i128::from_le_bytes(load) << shift) >> shift
    }));
    out
}

/// A column of counts: each value in 0..2³² (None otherwise).
fn counts(w: usize, bytes: &[u8]) -> Option<Vec<u32>> {
    if w <= 4 {
        // Sign-extended through i32: negative values fail the conversion.
        let shift = 32 - 8 * w as u32;
        return bytes
            .chunks_exact(w)
            .map(|c| {
                let mut load = [0u8; 4];
                load[..w].copy_from_slice(c);
                u32::try_from((i32::from_le_bytes(load) << shift) >> shift).ok()
            })
            .collect();
    }
    column(w, bytes).into_iter().map(|v| u32::try_from(v).ok()).collect()
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
/// subjects, as many subjects as the index names. The file is read in order, as many
/// blocks at a time as rayon has threads, and those blocks are decoded and checked side
/// by side (the decoding is most of the time: an update waits for it); the error reported
/// is the first block's, as when reading one block after another (within a block, a
/// block cut short is reported before a bad value in it).
pub fn read_blocks(file: &mut impl Read, path: &Path, index: &SumsIndex) -> Result<Vec<BlockSums>> {
    use rayon::prelude::*;
    let mut input = std::io::BufReader::with_capacity(1 << 20, file);
    let mut blocks = Vec::with_capacity(index.blocks());
    let batch = rayon::current_num_threads().max(1);
    for first in (0..index.blocks()).step_by(batch) {
        let mut raw = Vec::with_capacity(batch);
        let mut failed = None;
        for b in first..(first + batch).min(index.blocks()) {
            match RawBlock::read(&mut input, path, index, b) {
                Ok(r) => raw.push(r),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let decoded: Vec<Result<BlockSums>> = raw.into_par_iter().map(|r| r.decode(path, index)).collect();
        for block in decoded {
            blocks.push(block?);
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
    let mut rest = [0u8; 1];
    if input.read(&mut rest).map_err(|e| Error::io(path, e))? != 0 {
        return Err(Error::format(path, format!("longer than the {} blocks its index names", index.blocks())));
    }
    Ok(blocks)
}

/// One block's bytes as stored: its subject count, and for the whole group then half A
/// the columns n, Σq, Σq², each as (bytes a value, values).
struct RawBlock {
    b: usize,
    subjects: u32,
    columns: Vec<(usize, Vec<u8>)>,
}

impl RawBlock {
    /// Block `b`'s bytes, next in `input`.
    fn read(input: &mut impl Read, path: &Path, index: &SumsIndex, b: usize) -> Result<RawBlock> {
        let cells = index.atoms as usize * index.block_len(b);
        let mut read = |bytes: usize| -> Result<Vec<u8>> {
            let mut buf = Vec::new();
            input.take(bytes as u64).read_to_end(&mut buf).map_err(|e| Error::format(path, format!("block {b}: {e}")))?;
            match buf.len() == bytes {
                true => Ok(buf),
                false => Err(Error::format(path, format!("block {b}: ends {} bytes short of what its index describes", bytes - buf.len()))),
            }
        };
        let subjects = u32::from_le_bytes(read(4)?.try_into().expect("4 bytes"));
        let mut columns = Vec::with_capacity(6);
        for what in ["n", "Σq", "Σq²"].iter().cycle().take(6) {
            let w = read(1)?[0] as usize;
            if !(1..=16).contains(&w) {
                return Err(Error::format(path, format!("block {b}: {what} in {w} bytes a value, expected 1 to 16")));
            }
            columns.push((w, read(w * cells)?));
        }
        Ok(RawBlock { b, subjects, columns })
    }

    /// The block's sums, checked to hold together.
    fn decode(self, path: &Path, index: &SumsIndex) -> Result<BlockSums> {
        let RawBlock { b, subjects, columns } = self;
        let (atoms, voxels) = (index.atoms as usize, index.block_len(b));
        let mut sums = Vec::with_capacity(2);
        for part in columns.chunks_exact(3) {
            let Some(n) = counts(part[0].0, &part[0].1) else {
                return Err(Error::format(path, format!("block {b}: a count n below 0 or above 2³²")));
            };
            sums.push(GroupSums::from_parts(atoms, voxels, n, column(part[1].0, &part[1].1), column(part[2].0, &part[2].1)).expect("sized above"));
        }
        let half_a = sums.pop().expect("two");
        let all = sums.pop().expect("two");
        let (n_all, n_a) = (all.parts().0, half_a.parts().0);
        if subjects as usize != index.subjects.len() || n_all.iter().zip(n_a).any(|(&all, &a)| a > all || all > subjects) {
            return Err(Error::format(path, format!("block {b}: its counts do not hold together ({subjects} subjects, {} in the index)", index.subjects.len())));
        }
        if !(consistent(&all) && consistent(&half_a)) {
            return Err(Error::format(path, format!("block {b}: sums no n values could have (no values with a nonzero sum, or Σq² below (Σq)²/n)")));
        }
        Ok(BlockSums::from_parts(subjects, all, half_a).expect("one shape"))
    }
}

/// Whether every cell's sums could come from n values: none (all zero) when n = 0,
/// Σq² ≥ 0, and n·Σq² ≥ (Σq)² (Cauchy–Schwarz; not checked where it overflows i128).
fn consistent(sums: &GroupSums) -> bool {
    let (n, sum, sum_sq) = sums.parts();
    n.iter().zip(sum).zip(sum_sq).all(|((&n, &s), &ss)| {
        let spread = (n as i128).checked_mul(ss).zip(s.checked_mul(s)).map(|(a, b)| a >= b);
        ss >= 0 && (n > 0 || (s == 0 && ss == 0)) && spread.unwrap_or(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(group: &Path, index: &SumsIndex) -> Result<Vec<BlockSums>> {
        let path = data_path(group);
        let mut file = std::fs::File::open(&path).unwrap();
        read_blocks(&mut file, &path, index)
    }
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
        write(dir.path(), &index, &blocks.iter().map(encode).collect::<Vec<_>>()).unwrap().finish().unwrap();
        assert_eq!(read_index(dir.path()).unwrap(), index);
        let back = read_back(dir.path(), &index).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in blocks.iter().zip(&back) {
            assert_eq!(a.test(None, None), b.test(None, None));
            assert_eq!(a.parts().1, b.parts().1);
            assert_eq!(a.parts().2, b.parts().2);
        }
    }

    /// Every width round-trips at its edges, and a column takes the width of its widest value.
    #[test]
    fn trimmed_columns_hold_every_value_exactly() {
        let mut values = vec![0i128, 1, -1, 127, 128, -128, -129, i128::MAX, i128::MIN];
        for bits in [8, 15, 16, 31, 56, 57, 63, 64, 95, 112, 126] {
            values.extend([(1i128 << bits) - 1, 1i128 << bits, -(1i128 << bits), -(1i128 << bits) - 1]);
        }
        for &v in &values {
            let mut out = Vec::new();
            put_column(&mut out, std::iter::once(v));
            let w = out[0] as usize;
            assert_eq!(w, width(v));
            let brute = (1..=16).find(|&w| w == 16 || (-(1i128 << (8 * w - 1))..(1i128 << (8 * w - 1))).contains(&v)).unwrap();
            assert_eq!(w, brute, "{v}");
            let fill = if out[w] & 0x80 != 0 { 0xff } else { 0 };
            let mut full = [fill; 16];
            full[..w].copy_from_slice(&out[1..=w]);
            assert_eq!(i128::from_le_bytes(full), v);
            assert_eq!(column(w, &out[1..]), vec![v]);
        }
        let mut out = Vec::new();
        put_column(&mut out, [3i128, -70_000, 5].into_iter());
        assert_eq!((out[0], out.len()), (3, 1 + 3 * 3));
        // Columns of every width, long enough for the 16-byte loads and their tails.
        for w in 1..=16usize {
            let top = if w == 16 { i128::MAX } else { (1i128 << (8 * w - 1)) - 1 };
            let column_values: Vec<i128> = (0..40i128).map(|i| match i % 4 {
                0 => top - i,
                1 => -top - 1 + i,
                2 => i * 37 - 700,
                _ => 0,
            }.clamp(-top - 1, top)).collect();
            let mut out = Vec::new();
            put_column(&mut out, column_values.iter().copied());
            assert_eq!(out[0] as usize, w);
            assert_eq!(out.len(), 1 + w * 40);
            assert_eq!(column(w, &out[1..]), column_values, "width {w}");
            let want: Option<Vec<u32>> = column_values.iter().map(|&v| u32::try_from(v).ok()).collect();
            assert_eq!(counts(w, &out[1..]), want, "width {w}");
        }
        assert_eq!(counts(1, &[0, 7, 255]), None, "−1 is not a count");
        assert_eq!(counts(2, &[7, 0, 255, 127]), Some(vec![7, 32767]));
    }

    #[test]
    fn a_cut_or_grown_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let index = SumsIndex::new("beta", 2, 10, vec![("01".into(), "x".into())]);
        let mut s = BlockSums::new(2, 10);
        s.add(0, &beta("01", 2, 10, 0)).unwrap();
        let member = encode(&s);
        write(dir.path(), &index, std::slice::from_ref(&member)).unwrap().finish().unwrap();
        let longer = SumsIndex { voxels: 20, ..index.clone() };
        let e = read_back(dir.path(), &longer).unwrap_err().to_string();
        // Read with the wrong cell count, the columns misalign: an error on block 0, whichever check finds it first.
        assert!(e.contains("sums.bin") && e.contains("block 0"), "{e}");
        let index2 = SumsIndex { voxels: 2 * crate::operators::BLOCK_VOXELS as u64, ..index.clone() };
        write(dir.path(), &index2, &[member.clone(), member]).unwrap().finish().unwrap();
        let e = read_back(dir.path(), &index).unwrap_err().to_string();
        assert!(e.contains("longer than the 1 blocks"), "{e}");
        // Counts that do not hold together (the index names two subjects, the block one).
        write(dir.path(), &index, std::slice::from_ref(&encode(&s))).unwrap().finish().unwrap();
        let two = SumsIndex { subjects: vec![("01".into(), "x".into()), ("02".into(), "y".into())], ..index.clone() };
        let e = read_back(dir.path(), &two).unwrap_err().to_string();
        assert!(e.contains("do not hold together"), "{e}");
        // Sums their counts cannot give: Σq² made smaller than (Σq)²/n in one cell.
        let (subjects, all, half_a) = s.parts();
        let (n, sum, mut sum_sq) = (all.parts().0.to_vec(), all.parts().1.to_vec(), all.parts().2.to_vec());
        let cell = sum.iter().position(|&v| v != 0).unwrap();
        sum_sq[cell] = sum[cell] * sum[cell] - 1;
        let bad = BlockSums::from_parts(subjects, GroupSums::from_parts(2, 10, n, sum, sum_sq).unwrap(), half_a.clone()).unwrap();
        write(dir.path(), &index, std::slice::from_ref(&encode(&bad))).unwrap().finish().unwrap();
        let e = read_back(dir.path(), &index).unwrap_err().to_string();
        assert!(e.contains("sums.bin") && e.contains("Σq²"), "{e}");
    }
}
