//! A keyed, checksummed file of numbers: what the activation cache and the cleaned-run
//! scratch keep. The layout is a magic of 8 bytes, the key's length (u64 LE) and the key in
//! full (compared on read, so two keys whose hashes name the same file are told apart), a
//! caller's counts (u64 LE each), the values (LE) and the xxh64 of everything before it.
//!
//! Writing is atomic (a reader sees the old file or the new) and a chunk at a time, so no
//! second copy of the values is made; reading checks the file's length against the counts
//! the caller expects before allocating, and the checksum as it goes.

use std::hash::Hasher;
use std::io::Read;
use std::path::Path;

use twox_hash::XxHash64;

use crate::error::Result;
use crate::io::atomic::{write_file_with, Durability};

/// A number stored little-endian.
pub trait Value: Copy + Default {
    const SIZE: usize;
    /// Writes the value into `SIZE` bytes.
    fn put(self, out: &mut [u8]);
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! value {
    ($t:ty) => {
        impl Value for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("a value's bytes"))
            }
        }
    };
}
value!(f32);
value!(f64);
value!(u64);

/// Values converted a chunk at a time (256 KiB of f32).
const CHUNK: usize = 1 << 16;

/// What is found under a key: the counts it was written with, and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<T> {
    pub counts: Vec<u64>,
    pub values: Vec<T>,
}

/// Writes the values of `parts`, one after the other, under `key` with `counts` to `path`,
/// atomically.
pub fn write<T: Value>(path: &Path, durability: Durability, (magic, key): (&[u8; 8], &str), counts: &[u64], parts: &[&[T]]) -> Result<()> {
    let head = head(magic, key, counts);
    write_file_with(path, durability, |w| {
        let mut hasher = XxHash64::with_seed(0);
        hasher.write(&head);
        w.write_all(&head)?;
        let mut buffer = vec![0u8; T::SIZE * CHUNK];
        for chunk in parts.iter().flat_map(|p| p.chunks(CHUNK)) {
            let bytes = &mut buffer[..T::SIZE * chunk.len()];
            bytes.chunks_exact_mut(T::SIZE).zip(chunk).for_each(|(b, x)| x.put(b));
            hasher.write(bytes);
            w.write_all(bytes)?;
        }
        w.write_all(&hasher.finish().to_le_bytes())
    })
}

fn head(magic: &[u8; 8], key: &str, counts: &[u64]) -> Vec<u8> {
    let mut head = Vec::with_capacity(magic.len() + 8 + key.len() + 8 * counts.len());
    head.extend_from_slice(magic);
    head.extend_from_slice(&(key.len() as u64).to_le_bytes());
    head.extend_from_slice(key.as_bytes());
    counts.iter().for_each(|n| head.extend_from_slice(&n.to_le_bytes()));
    head
}

/// The entry of `key` at `path` holding `n_counts` counts and `values` values: None when
/// there is no file or it holds another key (or another magic); an error, in words, when it
/// cannot be used (not a file, another length, damaged).
pub fn read<T: Value>(path: &Path, magic: &[u8; 8], key: &str, n_counts: usize, values: usize) -> std::result::Result<Option<Entry<T>>, String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let head_len = magic.len() + 8 + key.len() + 8 * n_counts;
    let expected = values
        .checked_mul(T::SIZE)
        .and_then(|v| v.checked_add(head_len + 8))
        .ok_or("its expected size overflows")?;
    if meta.len() != expected as u64 {
        return Err(format!("{} bytes, expected {expected}", meta.len()));
    }
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut head = vec![0u8; head_len];
    file.read_exact(&mut head).map_err(|e| e.to_string())?;
    let counts = head[head_len - 8 * n_counts..]
        .chunks_exact(8)
        .map(u64::get)
        .collect();
    if head[..head_len - 8 * n_counts] != self::head(magic, key, &[])[..] {
        // Another key whose hash names the same file (or another format): not this one.
        return Ok(None);
    }
    let mut hasher = XxHash64::with_seed(0);
    hasher.write(&head);
    let mut out = Vec::with_capacity(values);
    let mut bytes = vec![0u8; T::SIZE * CHUNK];
    while out.len() < values {
        let n = (values - out.len()).min(CHUNK) * T::SIZE;
        file.read_exact(&mut bytes[..n]).map_err(|e| e.to_string())?;
        hasher.write(&bytes[..n]);
        out.extend(bytes[..n].chunks_exact(T::SIZE).map(T::get));
    }
    let mut sum = [0u8; 8];
    file.read_exact(&mut sum).map_err(|e| e.to_string())?;
    if hasher.finish().to_le_bytes() != sum {
        return Err("its checksum does not match (damaged)".into());
    }
    Ok(Some(Entry { counts, values: out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"CFTEST1\n";

    #[test]
    fn an_entry_reads_back_and_every_damage_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.bin");
        let values: Vec<f64> = (0..200_000).map(|i| (i as f64).sin()).collect();
        assert_eq!(read::<f64>(&path, MAGIC, "k", 2, values.len()), Ok(None), "no file");
        write(&path, Durability::PageCache, (MAGIC, "k"), &[7, 9], &[&values[..5], &values[5..]]).unwrap();
        let e = read::<f64>(&path, MAGIC, "k", 2, values.len()).unwrap().unwrap();
        assert_eq!((e.counts, e.values.iter().map(|x| x.to_bits()).collect::<Vec<_>>()), (vec![7, 9], values.iter().map(|x| x.to_bits()).collect()));
        assert_eq!(read::<f64>(&path, MAGIC, "j", 2, values.len()), Ok(None), "another key of the same length");
        assert_eq!(read::<f64>(&path, b"CFTEST2\n", "k", 2, values.len()), Ok(None), "another format");
        assert!(read::<f64>(&path, MAGIC, "k", 2, values.len() - 1).unwrap_err().contains("bytes, expected"));
        assert!(read::<f64>(&path, MAGIC, "k", 2, usize::MAX / 4).unwrap_err().contains("overflows"));
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read::<f64>(&path, MAGIC, "k", 2, values.len()).unwrap_err().contains("damaged"));
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert!(read::<f32>(&dir.path().join("d"), MAGIC, "k", 0, 0).unwrap_err().contains("regular"));
    }
}
