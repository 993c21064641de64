//! Numeric tables with a header row (BIDS TSVs: fMRIPrep confounds, region time series):
//! one column per name, one row per scan, `n/a` (and pandas' other missing values) as NaN.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A table as written: names and columns, NaN where the file says `n/a`.
#[derive(Debug, Clone)]
pub struct NumericTable {
    pub path: PathBuf,
    pub names: Vec<String>,
    /// One vector of `rows` values per name.
    pub columns: Vec<Vec<f64>>,
    pub rows: usize,
}

impl NumericTable {
    /// The column called `name`, if the file has one.
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        let i = self.names.iter().position(|n| n == name)?;
        Some(&self.columns[i])
    }
}

/// What pandas' `read_csv` reads as a missing value among what fMRIPrep and BIDS write.
fn is_missing(v: &str) -> bool {
    matches!(v, "n/a" | "N/A" | "NaN" | "nan" | "NA" | "")
}

/// Reads `what` (for messages) from `path`, fields split by `delimiter`, after checking it
/// is a regular file of at most `max_bytes` with at most `max_columns` columns. The header
/// must name every column, each once; every row must have a value (or a missing mark) per
/// column. Parsed, a value takes 8 bytes and at least 1 in the file (an empty field is
/// missing): at most 8 × `max_bytes`.
pub fn read(path: &Path, delimiter: u8, max_bytes: u64, max_columns: usize, what: &str) -> Result<NumericTable> {
    let bytes = crate::io::regular_file(path)?;
    if bytes > max_bytes {
        return Err(Error::format(
            path,
            format!("{bytes} bytes: larger than {what} may be (at most {max_bytes})"),
        ));
    }
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_path(path)
        .map_err(|e| Error::format(path, format!("cannot read as {what}: {e}")))?;
    let names: Vec<String> = rdr
        .headers()
        .map_err(|e| Error::format(path, format!("no header row: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if names.len() > max_columns {
        return Err(Error::format(path, format!("{} columns: more than {what} may have (at most {max_columns})", names.len())));
    }
    if names.is_empty() || names.iter().all(|n| n.parse::<f64>().is_ok()) {
        return Err(Error::format(path, format!("the first row holds numbers, not column names: {what} needs a header row")));
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(Error::format(path, format!("column '{dup}' appears twice")));
    }
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
    Ok(NumericTable {
        path: path.to_path_buf(),
        names,
        columns,
        rows,
    })
}
