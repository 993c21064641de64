//! fMRIPrep confounds files: the `…_desc-confounds_timeseries.tsv` table (a header row of
//! names, one row per scan, `n/a` where a value is undefined, as in the first row of
//! derivatives and of framewise displacement), its JSON sidecar (the mask of each CompCor
//! component), and which file belongs to a BOLD run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{bail, Error, Result};

/// A confounds table as written: names and columns, NaN where the file says `n/a`.
#[derive(Debug, Clone)]
pub struct ConfoundsTable {
    pub path: PathBuf,
    pub names: Vec<String>,
    /// One vector of `rows` values per name.
    pub columns: Vec<Vec<f64>>,
    pub rows: usize,
}

impl ConfoundsTable {
    /// The column called `name`, if the file has one.
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        let i = self.names.iter().position(|n| n == name)?;
        Some(&self.columns[i])
    }
}

/// The largest confounds file read (fMRIPrep's are a few MB: thousands of scans × a few
/// hundred columns); anything larger is not a confounds table. Parsed, a table takes about
/// ten times its size.
const MAX_BYTES: u64 = 64 << 20;

/// What pandas' `read_csv` reads as a missing value among what fMRIPrep and BIDS write.
fn is_missing(v: &str) -> bool {
    matches!(v, "n/a" | "N/A" | "NaN" | "nan" | "NA" | "")
}

/// Reads a tab-separated confounds table with a header row.
pub fn read_table(path: &Path) -> Result<ConfoundsTable> {
    let bytes = crate::io::regular_file(path)?;
    if bytes > MAX_BYTES {
        return Err(Error::format(
            path,
            format!("{bytes} bytes: larger than any confounds table (at most {MAX_BYTES})"),
        ));
    }
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .from_path(path)
        .map_err(|e| Error::format(path, format!("cannot read as a TSV table: {e}")))?;
    let names: Vec<String> = rdr
        .headers()
        .map_err(|e| Error::format(path, format!("no header row: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    check_header(path, &names)?;
    let mut columns = vec![Vec::new(); names.len()];
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| Error::format(path, format!("line {line}: {e}")))?;
        for (c, v) in rec.iter().enumerate() {
            let v = v.trim();
            let x = match is_missing(v) {
                true => f64::NAN,
                false => v.parse::<f64>().map_err(|_| {
                    Error::format(
                        path,
                        format!("line {line}, column '{}': '{v}' is not a number", names[c]),
                    )
                })?,
            };
            columns[c].push(x);
        }
    }
    let rows = columns.first().map_or(0, Vec::len);
    Ok(ConfoundsTable {
        path: path.to_path_buf(),
        names,
        columns,
        rows,
    })
}

/// A header fMRIPrep ≥ 1.2 writes: named, each name once, snake case (1.0/1.1 wrote
/// CamelCase names, which nilearn refuses too).
fn check_header(path: &Path, names: &[String]) -> Result<()> {
    if names.is_empty() || names.iter().all(|n| n.parse::<f64>().is_ok()) {
        return Err(Error::format(path, "the first row holds numbers, not column names: a confounds table needs a header row"));
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(Error::format(path, format!("column '{dup}' appears twice")));
    }
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
