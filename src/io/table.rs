//! Numeric tables with a header row (BIDS TSVs: fMRIPrep confounds, region time series),
//! or the same as a Parquet file (pandas' `to_parquet`): one column per name, one row per
//! scan, `n/a` (and pandas' other missing values, or a null) as NaN.

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

/// Reads `what` from a Parquet file of numeric columns (float or integer; pandas' index
/// columns `__index_level_*` are skipped), after checking its size, its column count and
/// that its values fit in `max_bytes` × 8 bytes once read as f64 (the text tables' bound).
pub fn read_parquet(path: &Path, max_bytes: u64, max_columns: usize, what: &str) -> Result<NumericTable> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
    use arrow_array::Array;
    use arrow_schema::DataType;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bytes = crate::io::regular_file(path)?;
    if bytes > max_bytes {
        return Err(Error::format(path, format!("{bytes} bytes: larger than {what} may be (at most {max_bytes})")));
    }
    let bad = |msg: String| Error::format(path, msg);
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(format!("not a readable Parquet file: {e}")))?;
    let fields: Vec<(usize, String, DataType)> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.name().starts_with("__index_level_"))
        .map(|(i, f)| (i, f.name().trim().to_string(), f.data_type().clone()))
        .collect();
    if fields.len() > max_columns {
        return Err(bad(format!("{} columns: more than {what} may have (at most {max_columns})", fields.len())));
    }
    let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    if rows.saturating_mul(fields.len() as u64).saturating_mul(8) > 8 * max_bytes {
        return Err(bad(format!("{rows} rows × {} columns: more values than {what} may hold", fields.len())));
    }
    let mut seen = BTreeSet::new();
    for (_, name, ty) in &fields {
        if !seen.insert(name.as_str()) {
            return Err(bad(format!("column '{name}' appears twice")));
        }
        if !matches!(ty, DataType::Float32 | DataType::Float64 | DataType::Int32 | DataType::Int64) {
            return Err(bad(format!("column '{name}' holds {ty}; {what} holds numbers (float or integer) only")));
        }
    }
    let mut columns = vec![Vec::with_capacity(rows as usize); fields.len()];
    for batch in builder.build().map_err(|e| bad(e.to_string()))? {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        for ((i, _, ty), out) in fields.iter().zip(&mut columns) {
            let a = batch.column(*i);
            let at = |r: usize, v: f64| if a.is_null(r) { f64::NAN } else { v };
            match ty {
                DataType::Float64 => out.extend(a.as_primitive::<Float64Type>().values().iter().enumerate().map(|(r, &v)| at(r, v))),
                DataType::Float32 => out.extend(a.as_primitive::<Float32Type>().values().iter().enumerate().map(|(r, &v)| at(r, f64::from(v)))),
                DataType::Int64 => out.extend(a.as_primitive::<Int64Type>().values().iter().enumerate().map(|(r, &v)| at(r, v as f64))),
                _ => out.extend(a.as_primitive::<Int32Type>().values().iter().enumerate().map(|(r, &v)| at(r, f64::from(v)))),
            }
        }
    }
    let names: Vec<String> = fields.into_iter().map(|(_, n, _)| n).collect();
    let rows = columns.first().map_or(0, Vec::len);
    Ok(NumericTable { path: path.to_path_buf(), names, columns, rows })
}
