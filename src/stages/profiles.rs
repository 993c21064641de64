//! Each subject's network profiles (the mean of each atom's β over each network's voxels),
//! which the AN-tie stability resamples, kept in a small cache file per subject.
//!
//! Without the cache, every mapping reads every subject's β map (64 volumes of the whole
//! grid at 2 mm), so an update of one run took longer the more subjects the store held. A
//! cache entry is used only when it names the checksum of the map it was computed from (as
//! the manifest records it now) and a key of everything else the profiles depend on (the
//! mask's voxels, the templates' names and voxels, the atoms); otherwise the map is read
//! and the entry written afresh. The values are stored as the bits of each f64, so a
//! profile from the cache is the one the map gives, bit for bit.

use std::hash::Hasher;
use std::path::{Path, PathBuf};

use twox_hash::XxHash64;

use crate::error::{bail, Result};
use crate::io::atlas::Template;
use crate::io::nifti::Mask;
use crate::stages::ties::network_profiles;

/// A cache entry is a few kB; anything larger is not one.
const MAX_ENTRY_BYTES: u64 = 1 << 24;
/// Part of every key: raised when what a profile is computed from, or how, changes
/// (`ties::network_profiles`, `nifti::read_map_rows`), so older entries are not used.
const CACHE_VERSION: u64 = 1;

/// A subject's β map and, when the store knows the map's checksum, its cache entry.
pub struct SubjectMap {
    pub path: PathBuf,
    pub cache: Option<Cached>,
}

/// Where a map's profiles are cached, and the checksum of the map they must come from.
pub struct Cached {
    pub file: PathBuf,
    pub map_xxh64: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    map_xxh64: String,
    key: String,
    templates: usize,
    atoms: usize,
    /// templates × atoms profiles, template-major, as `f64::to_bits`.
    bits: Vec<u64>,
    /// The xxh64 of `bits`, so a damaged entry that still parses is not used.
    bits_xxh64: String,
}

/// What checks a map before it is read (a store: its checksum in the manifest).
pub type Verify<'a> = &'a (dyn Fn(&Path) -> Result<()> + Sync);

/// Each subject's β profile of each network of `networks` (template indices), from its
/// cache entry when that is valid, else from its map (checked by `verify`, read a volume
/// at a time inside the mask, one map per rayon thread), then cached. A map whose
/// profiles come from the cache is neither read nor hashed: its entry names the checksum
/// the manifest holds for it. Each map must be on the mask's grid with one volume per
/// atom. Returns the profiles and how many maps were read.
pub fn subject_profiles(maps: &[SubjectMap], mask: &Mask, temps: &[Template], networks: &[usize], atoms: usize, verify: Verify) -> Result<(Vec<Vec<Vec<f64>>>, usize)> {
    use rayon::prelude::*;
    let key = key(mask, temps, atoms);
    let every: Vec<usize> = (0..temps.len()).collect();
    let all: Vec<(Vec<Vec<f64>>, bool)> = maps
        .par_iter()
        .map(|m| {
            if let Some(profiles) = m.cache.as_ref().and_then(|c| cached(c, &key, temps.len(), atoms)) {
                return Ok((profiles, false));
            }
            verify(&m.path)?;
            let profiles = network_profiles(read_map(&m.path, mask, atoms)?.view(), temps, &every);
            if let Some(c) = &m.cache {
                // A cache that cannot be written costs the next update this read, no more.
                if let Err(e) = write_entry(c, &key, &profiles, atoms) {
                    tracing::warn!("{}: profile cache entry not written: {e}", c.file.display());
                }
            }
            Ok((profiles, true))
        })
        .collect::<Result<_>>()?;
    let read = all.iter().filter(|(_, r)| *r).count();
    let chosen = all.into_iter().map(|(p, _)| networks.iter().map(|&t| p[t].clone()).collect()).collect();
    Ok((chosen, read))
}

/// Removes the cache entries in `dir` other than `keep` (subjects gone from the group):
/// only regular files named as entries (`sub-*.json`) or their temporaries (`.tmp-*`),
/// never through a symlink. A file that cannot be removed is a warning: an entry is
/// only ever used for its own map.
pub fn prune(dir: &Path, keep: &[SubjectMap]) {
    if !usable(dir) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let (path, name) = (entry.path(), entry.file_name().to_string_lossy().into_owned());
        let named = (name.starts_with("sub-") && name.ends_with(".json")) || name.starts_with(".tmp-");
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        if !named || !regular || keep.iter().any(|m| m.cache.as_ref().is_some_and(|c| c.file == path)) {
            continue;
        }
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!("{}: stale profile cache entry not removed: {e}", path.display());
        }
    }
}

/// Whether `dir` is a cache folder to read and write: absent, or a real folder whose
/// parent (the store's `cache/`) is not a symlink either — the cache never leads out of
/// the store.
fn usable(dir: &Path) -> bool {
    let real_or_absent = |p: &Path| std::fs::symlink_metadata(p).map_or(true, |m| m.is_dir());
    real_or_absent(dir) && dir.parent().is_none_or(real_or_absent)
}

fn read_map(path: &Path, mask: &Mask, atoms: usize) -> Result<ndarray::Array2<f64>> {
    let header = crate::io::nifti::read_header(path)?;
    if !header.grid.matches(&mask.grid, 1e-4) {
        bail!("{}: not on the grid of the group mask (shape {:?}, expected {:?} with the same affine)", path.display(), header.grid.shape, mask.grid.shape);
    }
    if header.n_vols != atoms {
        bail!("{}: {} volumes, expected one per atom ({atoms})", path.display(), header.n_vols);
    }
    crate::io::nifti::read_map_rows(path, mask)
}

/// The xxh64 of what a profile depends on besides the map: the cache's version, the
/// atoms, the mask's grid and voxels, and each template's name and voxels.
fn key(mask: &Mask, temps: &[Template], atoms: usize) -> String {
    let mut h = XxHash64::with_seed(0);
    h.write_u64(CACHE_VERSION);
    h.write_usize(atoms);
    mask.grid.shape.iter().for_each(|&n| h.write_usize(n));
    mask.grid.affine.0.iter().flatten().for_each(|v| h.write_u64(v.to_bits()));
    h.write_usize(mask.len());
    mask.linear().for_each(|v| h.write_usize(v));
    for t in temps {
        h.write(t.name.as_bytes());
        h.write_u8(0xff);
        h.write(&t.voxels.iter().map(|&b| u8::from(b)).collect::<Vec<u8>>());
    }
    format!("{:016x}", h.finish())
}

/// The entry's profiles when it is readable and made from this map under this key; None
/// otherwise (the map is read instead: a bad entry is never an error).
fn cached(c: &Cached, key: &str, templates: usize, atoms: usize) -> Option<Vec<Vec<f64>>> {
    let meta = std::fs::symlink_metadata(&c.file).ok()?;
    if !meta.is_file() || meta.len() > MAX_ENTRY_BYTES || !c.file.parent().is_some_and(usable) {
        return None;
    }
    let entry: Entry = serde_json::from_slice(&std::fs::read(&c.file).ok()?).ok()?;
    let fits = entry.map_xxh64 == c.map_xxh64 && entry.key == key && entry.templates == templates && entry.atoms == atoms;
    if !fits || entry.bits.len() != templates * atoms || entry.bits_xxh64 != bits_xxh64(&entry.bits) {
        tracing::debug!(file = %c.file.display(), "profile cache entry out of date or damaged");
        return None;
    }
    Some((0..templates).map(|t| entry.bits[t * atoms..(t + 1) * atoms].iter().map(|&b| f64::from_bits(b)).collect()).collect())
}

fn bits_xxh64(bits: &[u64]) -> String {
    let mut h = XxHash64::with_seed(0);
    bits.iter().for_each(|&b| h.write_u64(b));
    format!("{:016x}", h.finish())
}

fn write_entry(c: &Cached, key: &str, profiles: &[Vec<f64>], atoms: usize) -> Result<()> {
    if !c.file.parent().is_some_and(usable) {
        bail!("the cache folder is a symlink, which the store never follows");
    }
    let bits: Vec<u64> = profiles.iter().flatten().map(|v| v.to_bits()).collect();
    let entry = Entry {
        bits_xxh64: bits_xxh64(&bits),
        map_xxh64: c.map_xxh64.clone(),
        key: key.to_string(),
        templates: profiles.len(),
        atoms,
        bits,
    };
    crate::io::atomic::write_file_atomically(&c.file, |w| serde_json::to_writer(w, &entry).map_err(std::io::Error::other))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::nifti::Grid;

    /// A profile from the cache equals the one from the map, bit for bit; an entry of
    /// another map (checksum), another atlas (key) or a damaged file is not used.
    #[test]
    fn cached_profiles_equal_the_maps_and_stale_entries_are_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let grid = Grid::with_affine([4, 3, 2], crate::io::affine::Affine::base([4, 3, 2], [2.0; 3]));
        let mask = Mask { grid, linear: vec![0, 2, 5, 7, 11, 13, 20] };
        let atoms = 3;
        let values = ndarray::Array2::from_shape_fn((atoms, mask.len()), |(k, v)| (k as f64 + 1.0) * 0.37 - v as f64 * 0.011);
        let map = dir.path().join("beta.nii.gz");
        crate::io::nifti::write_masked(&map, &mask, &(0..mask.len()).collect::<Vec<_>>(), values.view(), None).unwrap();
        let temps = vec![
            Template { name: "A".into(), voxels: vec![true, true, false, false, true, false, true] },
            Template { name: "B".into(), voxels: vec![false, true, true, true, false, false, false] },
        ];
        let file = dir.path().join("cache/sub-01.json");
        let subject = |sum: &str| [SubjectMap { path: map.clone(), cache: Some(Cached { file: file.clone(), map_xxh64: sum.into() }) }];
        let (fresh, read) = subject_profiles(&subject("aa"), &mask, &temps, &[1, 0], atoms, &|_| Ok(())).unwrap();
        assert_eq!(read, 1);
        assert!(file.is_file());
        let (again, read) = subject_profiles(&subject("aa"), &mask, &temps, &[1, 0], atoms, &|_| Ok(())).unwrap();
        assert_eq!(read, 0, "the entry is used");
        let bits = |p: &Vec<Vec<Vec<f64>>>| p.iter().flatten().flatten().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fresh), bits(&again));
        let (uncached, _) = subject_profiles(&[SubjectMap { path: map.clone(), cache: None }], &mask, &temps, &[1, 0], atoms, &|_| Ok(())).unwrap();
        assert_eq!(bits(&fresh), bits(&uncached));
        // Another map's checksum, another atlas, a damaged entry: the map is read again.
        assert_eq!(subject_profiles(&subject("bb"), &mask, &temps, &[0], atoms, &|_| Ok(())).unwrap().1, 1);
        let mut other = temps.clone();
        other[0].voxels[0] = false;
        assert_eq!(subject_profiles(&subject("bb"), &mask, &other, &[0], atoms, &|_| Ok(())).unwrap().1, 1);
        assert_eq!(subject_profiles(&subject("bb"), &mask, &other, &[0], atoms, &|_| Ok(())).unwrap().1, 0);
        // A value changed in an entry that still parses, a cut entry: read again.
        let text = std::fs::read_to_string(&file).unwrap();
        // The second digit of the first value (still a valid number, another value).
        let digit = text.find("\"bits\":[").unwrap() + 9;
        let mut changed = text.clone().into_bytes();
        assert!(changed[digit].is_ascii_digit(), "{text}");
        changed[digit] = b'0' + (changed[digit] - b'0' + 1) % 10;
        std::fs::write(&file, changed).unwrap();
        assert_eq!(subject_profiles(&subject("bb"), &mask, &other, &[0], atoms, &|_| Ok(())).unwrap().1, 1);
        std::fs::write(&file, b"{\"map_xxh64\": \"bb\", \"bits\": [1, 2").unwrap();
        assert_eq!(subject_profiles(&subject("bb"), &mask, &other, &[0], atoms, &|_| Ok(())).unwrap().1, 1);
        // A subject no longer listed loses its entry; other files and folders stay.
        let cache = file.parent().unwrap();
        std::fs::create_dir(cache.join("sub-09.json")).unwrap();
        std::fs::write(cache.join("notes.txt"), b"mine").unwrap();
        prune(cache, &[]);
        assert!(!file.exists() && cache.join("notes.txt").exists() && cache.join("sub-09.json").is_dir());
        // A symlinked cache folder is neither written nor pruned through.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("sub-01.json"), b"not the store's").unwrap();
        std::fs::remove_dir_all(cache).unwrap();
        std::os::unix::fs::symlink(&elsewhere, cache).unwrap();
        assert_eq!(subject_profiles(&subject("bb"), &mask, &temps, &[0], atoms, &|_| Ok(())).unwrap().1, 1);
        prune(cache, &[]);
        assert_eq!(std::fs::read(elsewhere.join("sub-01.json")).unwrap(), b"not the store's");
    }
}
