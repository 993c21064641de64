//! The activation cache: a story's word activations (words × ANs, f32), kept in the folder
//! `CORTEXFLOW_ACTIVATION_CACHE` names and reused when nothing they depend on changed: the
//! model's files (path, size and modification time of each), the taps and layers, the
//! context, batch, pooling and weight dtype, the program's version and the story's words.
//! A recipe that changes only the basis, the HRF or the encoding, or a second store of the
//! same model, then skips the forward pass. Off unless the variable is set: entries are
//! words × ANs × 4 bytes (SmolLM2 `ffn.out`, all layers: 69 KB a word).
//!
//! An entry is `<xxh64 of its key>.acts`, a [`keyed`] file: the key in full (so a hash
//! collision is a miss), words, columns and tokenless words, and the values (f32). A damaged, truncated or foreign
//! entry is a miss (said in the log) and is written anew; sizes are checked against the
//! file's length before anything is allocated.

use std::path::{Path, PathBuf};

use twox_hash::XxHash64;

use crate::error::{bail, err, Error, Result};
use crate::io::atomic::Durability;
use crate::io::keyed;

/// The variable that turns the cache on and names its folder.
pub const ENV: &str = "CORTEXFLOW_ACTIVATION_CACHE";
const MAGIC: &[u8; 8] = b"CFACTS1\n";
/// Bumped when a change of the forward or pooling changes the values it computes.
const FORMAT: u32 = 1;

/// The cache folder, when the variable names one (made if missing).
#[derive(Debug, Clone)]
pub struct ActivationCache {
    dir: PathBuf,
}

/// What a story's activations depend on, in words: the entry's name is its hash and the
/// entry keeps it in full.
#[derive(Debug, Clone, PartialEq)]
pub struct StoryKey(String);

/// A cached story: words × columns row-major, and the words that had no token.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedStory {
    pub values: Vec<f32>,
    pub empty: usize,
}

impl ActivationCache {
    /// The cache of the environment, or none; a value that cannot be a folder is an error
    /// naming the variable.
    pub fn from_env() -> Result<Option<ActivationCache>> {
        match std::env::var_os(ENV).filter(|v| !v.is_empty()) {
            Some(dir) => ActivationCache::at(Path::new(&dir))
                .map(Some)
                .map_err(|e| err!("{ENV}={}: expected a folder for the activation cache ({e}); set it to one, or unset it", Path::new(&dir).display())),
            None => Ok(None),
        }
    }

    pub fn at(dir: &Path) -> Result<ActivationCache> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if !dir.is_dir() {
            bail!("{}: not a folder", dir.display());
        }
        Ok(ActivationCache { dir: dir.to_path_buf() })
    }

    fn path(&self, key: &StoryKey) -> PathBuf {
        self.dir.join(format!("{:016x}.acts", XxHash64::oneshot(0, key.0.as_bytes())))
    }

    /// The story of `key` with `words` × `columns` values, if the cache holds it intact.
    pub fn get(&self, key: &StoryKey, words: usize, columns: usize) -> Option<CachedStory> {
        let path = self.path(key);
        match read_entry(&path, key, words, columns) {
            Ok(found) => found,
            Err(why) => {
                tracing::warn!("{}: activation cache entry not used ({why}); computing it anew", path.display());
                None
            }
        }
    }

    /// Keeps a story's activations (atomically: a reader sees the old entry or the new).
    pub fn put(&self, key: &StoryKey, values: &[f32], empty: usize, words: usize, columns: usize) -> Result<()> {
        keyed::write(&self.path(key), Durability::Disk, (MAGIC, &key.0), &[words as u64, columns as u64, empty as u64], &[values])
    }
}

/// An entry, None when there is none; an error says why one cannot be used.
fn read_entry(path: &Path, key: &StoryKey, words: usize, columns: usize) -> std::result::Result<Option<CachedStory>, String> {
    let values = words.checked_mul(columns).ok_or("the story's size overflows")?;
    let Some(entry) = keyed::read::<f32>(path, MAGIC, &key.0, 3, values).map_err(|e| format!("{e}, for {words} words × {columns} ANs"))? else {
        return Ok(None);
    };
    let count = |i: usize| entry.counts[i] as usize;
    if count(0) != words || count(1) != columns || count(2) > words {
        return Err("its counts do not match the story".into());
    }
    Ok(Some(CachedStory { values: entry.values, empty: count(2) }))
}

impl StoryKey {
    /// The key of a story's `words` through the model at `model` with `settings` (the
    /// taps, layers, context, batch, pooling and dtype, in words).
    pub fn new(model: &Path, settings: &str, words: &[String]) -> Result<StoryKey> {
        let mut text = format!("cortexflow {} activations format {FORMAT}\n{settings}\n", env!("CARGO_PKG_VERSION"));
        for (name, size, modified) in model_files(model)? {
            text += &format!("{name} {size} {modified}\n");
        }
        text += &format!("{} words\n", words.len());
        for w in words {
            // A word with a newline cannot pass for two.
            text += &format!("{:?}\n", w);
        }
        Ok(StoryKey(text))
    }
}

/// The model's files (the one GGUF file, or every file of the folder), each with its size
/// and modification time (ns): a checkpoint replaced or edited changes the key.
fn model_files(model: &Path) -> Result<Vec<(String, u64, u128)>> {
    let canonical = std::fs::canonicalize(model).map_err(|e| Error::io(model, e))?;
    let files: Vec<PathBuf> = match canonical.is_dir() {
        true => {
            let mut list: Vec<PathBuf> = std::fs::read_dir(&canonical)
                .map_err(|e| Error::io(&canonical, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            list.sort();
            list
        }
        false => vec![canonical],
    };
    files
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            Ok((p.display().to_string(), meta.len(), modified))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &Path, words: &[&str]) -> StoryKey {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        StoryKey::new(dir, "taps ffn.out", &words).unwrap()
    }

    #[test]
    fn an_entry_reads_back_and_a_damaged_one_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.gguf");
        std::fs::write(&model, b"weights").unwrap();
        let cache = ActivationCache::at(&dir.path().join("cache")).unwrap();
        let k = key(&model, &["the", "little", "prince"]);
        let story = CachedStory { values: (0..6).map(|i| i as f32 * 0.5 - 1.0).collect(), empty: 1 };
        assert_eq!(cache.get(&k, 3, 2), None);
        cache.put(&k, &story.values, story.empty, 3, 2).unwrap();
        assert_eq!(cache.get(&k, 3, 2), Some(story.clone()));
        // Other words, or other shapes, are not this entry.
        assert_eq!(cache.get(&key(&model, &["the", "little", "fox"]), 3, 2), None);
        assert_eq!(cache.get(&k, 2, 3), None);
        // A flipped byte in the values, and a truncated file: misses, not errors.
        let path = cache.path(&k);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 9] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(cache.get(&k, 3, 2), None);
        std::fs::write(&path, &bytes[..n / 2]).unwrap();
        assert_eq!(cache.get(&k, 3, 2), None);
        // Huge declared counts are refused by the length check before any allocation.
        assert_eq!(cache.get(&k, usize::MAX / 2, 3), None);
    }

    #[test]
    fn a_changed_checkpoint_changes_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(model.join("config.json"), b"{}").unwrap();
        let before = key(&model, &["a"]);
        assert_eq!(before, key(&model, &["a"]));
        std::fs::write(model.join("model.safetensors"), b"12345").unwrap();
        assert_ne!(before, key(&model, &["a"]), "a file added");
        let words = |w: &[&str]| key(&model, w);
        assert_ne!(words(&["a b"]), words(&["a", "b"]), "word boundaries are part of the key");
    }
}
