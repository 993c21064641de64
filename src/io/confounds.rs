//! fMRIPrep confounds files: the `…_desc-confounds_timeseries.tsv` table (a header row of
//! names, one row per scan, `n/a` where a value is undefined, as in the first row of
//! derivatives and of framewise displacement), its JSON sidecar (the mask of each CompCor
//! component), and which file belongs to a BOLD run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{bail, Error, Result};

pub use super::table::NumericTable as ConfoundsTable;

/// The largest confounds file read (fMRIPrep's are a few MB: thousands of scans × a few
/// hundred columns); anything larger is not a confounds table. Parsed, a table takes about
/// ten times its size.
const MAX_BYTES: u64 = 64 << 20;
/// fMRIPrep writes a few hundred columns (thousands with every CompCor component).
const MAX_COLUMNS: usize = 100_000;

/// Reads a tab-separated confounds table with a header row.
pub fn read_table(path: &Path) -> Result<ConfoundsTable> {
    let table = super::table::read(path, b'\t', MAX_BYTES, MAX_COLUMNS, "a confounds table")?;
    check_header(path, &table.names)?;
    Ok(table)
}

/// A header fMRIPrep ≥ 1.2 writes: named, each name once, snake case (1.0/1.1 wrote
/// CamelCase names, which nilearn refuses too).
fn check_header(path: &Path, names: &[String]) -> Result<()> {
    let camel = |s: &str| s != s.to_lowercase() && s != s.to_uppercase() && !s.contains('_');
    if let Some(c) = names.iter().find(|n| camel(n)) {
        return Err(Error::format(
            path,
            format!("column '{c}' is CamelCase, as fMRIPrep 1.0/1.1 wrote; only outputs of fMRIPrep 1.2 or later are read"),
        ));
    }
    Ok(())
}

/// The JSON sidecar: for each CompCor component, the mask it was computed in
/// (`combined`, `WM`, `CSF`; none for temporal CompCor). Its keys in file order.
#[derive(Debug, Clone, Default)]
pub struct ConfoundsMeta {
    pub masks: BTreeMap<String, Option<String>>,
}

/// The sidecar of a confounds TSV: the same name ending in `.json`.
pub fn sidecar(tsv: &Path) -> PathBuf {
    tsv.with_extension("json")
}

/// Reads the JSON sidecar; `None` when there is none.
pub fn read_meta(path: &Path) -> Result<Option<ConfoundsMeta>> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
        Ok(_) => {}
    }
    let bytes = crate::io::regular_file(path)?;
    if bytes > MAX_BYTES {
        return Err(Error::format(path, format!("{bytes} bytes: too large for a sidecar")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(path, format!("not JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(Error::format(path, "not a JSON object of confound names"));
    };
    let masks = object
        .iter()
        .map(|(k, v)| {
            let mask = v.get("Mask").and_then(|m| m.as_str()).map(str::to_string);
            (k.clone(), mask)
        })
        .collect();
    Ok(Some(ConfoundsMeta { masks }))
}

/// The confounds table of a BOLD run, in its folder: the file named with `desc-confounds`
/// and a subset of the BOLD name's other entities (fMRIPrep drops `space`, `res`, `desc`),
/// suffix `_timeseries.tsv` (fMRIPrep ≥ 20.2) or `_regressors.tsv`. The one with the most
/// entities wins, as in nilearn; two equally specific ones are an error.
pub fn beside(bold: &Path) -> Result<Option<PathBuf>> {
    let Some(dir) = bold.parent() else {
        return Ok(None);
    };
    let Some(entities) = bold_entities(bold) else {
        return Ok(None);
    };
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut best: Vec<(usize, PathBuf)> = Vec::new();
    for entry in listing.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let Some(stem) = name
            .strip_suffix("_timeseries.tsv")
            .or_else(|| name.strip_suffix("_regressors.tsv"))
        else {
            continue;
        };
        let pairs: Vec<(&str, &str)> = stem.split('_').filter_map(|kv| kv.split_once('-')).collect();
        let fits = pairs.len() == stem.split('_').count()
            && pairs.contains(&("desc", "confounds"))
            && pairs
                .iter()
                .filter(|(k, _)| *k != "desc")
                .all(|(k, v)| entities.iter().any(|(ek, ev)| ek == k && ev == v))
            && ["sub", "task"].iter().all(|k| pairs.iter().any(|(pk, _)| pk == k));
        if fits {
            best.push((pairs.len(), path));
        }
    }
    best.sort();
    match best.as_slice() {
        [] => Ok(None),
        [.., (n1, a), (n2, b)] if n1 == n2 => bail!(
            "{}: two confounds files fit it equally, {} and {}: keep one",
            bold.display(),
            a.display(),
            b.display()
        ),
        [.., (_, p)] => Ok(Some(p.clone())),
    }
}

/// `key-value` entities of a BOLD file name, without the suffix.
fn bold_entities(bold: &Path) -> Option<Vec<(String, String)>> {
    let name = bold.file_name()?.to_string_lossy().into_owned();
    let stem = name
        .strip_suffix("_bold.nii.gz")
        .or_else(|| name.strip_suffix("_bold.nii"))?;
    Some(
        stem.split('_')
            .filter_map(|kv| kv.split_once('-'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}
