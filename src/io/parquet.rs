//! Parquet writers for the tables in `schemas/`. Columns are handed over as typed vectors,
//! checked against the table's schema, and written to a temporary file that is renamed
//! into place by [`TableWriter::finish`] — a crash never leaves a half-written table.
//!
//! One writer and one reader per table, all here so the schema checks are shared.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray, UInt16Array, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::schema::{self, TableSchema};
use super::atomic::temp_sibling;
use crate::error::{Error, Result};

/// The values of one column. `F32List` holds `values.len() / size` lists of `size` floats.
#[derive(Debug, Clone)]
pub enum Column {
    Utf8(Vec<String>),
    /// Nullable strings.
    OptUtf8(Vec<Option<String>>),
    Bool(Vec<bool>),
    U16(Vec<u16>),
    /// Nullable uint16.
    OptU16(Vec<Option<u16>>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I32(Vec<i32>),
    OptI32(Vec<Option<i32>>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    F32List {
        size: usize,
        values: Vec<f32>,
    },
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Utf8(v) => v.len(),
            Column::OptUtf8(v) => v.len(),
            Column::Bool(v) => v.len(),
            Column::U16(v) => v.len(),
            Column::OptU16(v) => v.len(),
            Column::U32(v) => v.len(),
            Column::U64(v) => v.len(),
            Column::I32(v) => v.len(),
            Column::OptI32(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::F32(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::F32List { size, values } => values.len() / (*size).max(1),
        }
    }

    fn into_array(self, field: &Field) -> Result<ArrayRef> {
        let array: ArrayRef = match self {
            Column::Utf8(v) => Arc::new(StringArray::from(v)),
            Column::OptUtf8(v) => Arc::new(StringArray::from(v)),
            Column::Bool(v) => Arc::new(BooleanArray::from(v)),
            Column::U16(v) => Arc::new(UInt16Array::from(v)),
            Column::OptU16(v) => Arc::new(UInt16Array::from(v)),
            Column::U32(v) => Arc::new(UInt32Array::from(v)),
            Column::U64(v) => Arc::new(UInt64Array::from(v)),
            Column::I32(v) => Arc::new(Int32Array::from(v)),
            Column::OptI32(v) => Arc::new(Int32Array::from(v)),
            Column::I64(v) => Arc::new(Int64Array::from(v)),
            Column::F32(v) => Arc::new(Float32Array::from(v)),
            Column::F64(v) => Arc::new(Float64Array::from(v)),
            Column::F32List { size, values } => {
                let DataType::FixedSizeList(item, n) = field.data_type() else {
                    return Err(Error::Invalid(format!(
                        "column '{}' is not a list",
                        field.name()
                    )));
                };
                if size != *n as usize || values.len() % size.max(1) != 0 {
                    return Err(Error::Invalid(format!("column '{}': lists of {size} floats ({} values) for a table of lists of {n}", field.name(), values.len())));
                }
                Arc::new(
                    FixedSizeListArray::try_new(
                        item.clone(),
                        *n,
                        Arc::new(Float32Array::from(values)),
                        None,
                    )
                    .map_err(|e| Error::Invalid(e.to_string()))?,
                )
            }
        };
        if array.data_type() != field.data_type() {
            return Err(Error::Invalid(format!(
                "column '{}' is {:?}, the schema says {:?}",
                field.name(),
                array.data_type(),
                field.data_type()
            )));
        }
        Ok(array)
    }
}

/// A Parquet file of one table being written.
pub struct TableWriter {
    dest: PathBuf,
    tmp: PathBuf,
    table: TableSchema,
    schema: Arc<Schema>,
    writer: Option<ArrowWriter<File>>,
    rows: usize,
}

impl TableWriter {
    /// Starts `dest` as table `name`; `list_size` is the length T of its vector column, if any.
    pub fn create(dest: &Path, name: &str, list_size: Option<usize>) -> Result<Self> {
        Self::create_with(dest, name, list_size, &[])
    }

    /// As [`create`](Self::create), with file metadata (key, value) the schema declares
    /// (e.g. [`TR_KEY`]).
    pub fn create_with(
        dest: &Path,
        name: &str,
        list_size: Option<usize>,
        metadata: &[(&str, String)],
    ) -> Result<Self> {
        let table = schema::table(name)?;
        if let Some((k, _)) = metadata.iter().find(|(k, _)| !table.metadata.contains_key(*k)) {
            return Err(Error::Invalid(format!(
                "table {name}: metadata '{k}' is not in schemas/{name}.json"
            )));
        }
        let metadata = metadata
            .iter()
            .map(|(k, v)| KeyValue::new(k.to_string(), v.clone()))
            .collect();
        let schema = Arc::new(table.arrow(list_size)?);
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let tmp = temp_sibling(dest);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(metadata))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| Error::format(dest, e.to_string()))?;
        Ok(TableWriter {
            dest: dest.to_path_buf(),
            tmp,
            table,
            schema,
            writer: Some(writer),
            rows: 0,
        })
    }

    /// Appends rows given as one [`Column`] per schema column, in schema order.
    pub fn write(&mut self, columns: Vec<Column>) -> Result<()> {
        let names: Vec<&str> = self.table.columns.iter().map(|c| c.name.as_str()).collect();
        if columns.len() != names.len() {
            return Err(Error::Invalid(format!(
                "table {}: {} columns given, the schema has {names:?}",
                self.table.name,
                columns.len()
            )));
        }
        let n = columns.first().map_or(0, Column::len);
        if let Some((i, c)) = columns.iter().enumerate().find(|(_, c)| c.len() != n) {
            return Err(Error::Invalid(format!(
                "table {}: column '{}' has {} rows, '{}' has {n}",
                self.table.name,
                names[i],
                c.len(),
                names[0]
            )));
        }
        let arrays = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| c.into_array(f))
            .collect::<Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| Error::Invalid(format!("table {}: {e}", self.table.name)))?;
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| Error::Invalid("table already finished".into()))?;
        writer
            .write(&batch)
            .map_err(|e| Error::format(&self.dest, e.to_string()))?;
        self.rows += n;
        Ok(())
    }

    /// Closes the file, syncs it and renames it into place. Returns the number of rows.
    pub fn finish(mut self) -> Result<usize> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| Error::Invalid("table already finished".into()))?;
        let file = writer
            .into_inner()
            .map_err(|e| Error::format(&self.dest, e.to_string()))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        Ok(self.rows)
    }
}

impl Drop for TableWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a whole table in one call.
pub fn write_table(
    dest: &Path,
    name: &str,
    list_size: Option<usize>,
    columns: Vec<Column>,
) -> Result<usize> {
    write_table_with(dest, name, list_size, columns, &[])
}

/// Writes a whole table with file metadata (see [`TableWriter::create_with`]).
pub fn write_table_with(
    dest: &Path,
    name: &str,
    list_size: Option<usize>,
    columns: Vec<Column>,
    metadata: &[(&str, String)],
) -> Result<usize> {
    let mut w = TableWriter::create_with(dest, name, list_size, metadata)?;
    w.write(columns)?;
    w.finish()
}

/// File metadata of `responses` and `atoms` tables: the seconds between scans of the
/// story's clock, so a BOLD run of another TR is refused rather than fitted.
pub const TR_KEY: &str = "cortexflow.tr_s";

/// The metadata entry recording `tr`.
pub fn tr_metadata(tr: f64) -> [(&'static str, String); 1] {
    [(TR_KEY, format!("{tr}"))]
}

/// The TR a table records ([`TR_KEY`]), if any; only the footer is read.
pub fn read_tr(path: &Path) -> Result<Option<f64>> {
    tr_of(path, Some(&footer_metadata(path)?))
}

/// A table file's key-value metadata; only the footer is read.
fn footer_metadata(path: &Path) -> Result<Vec<KeyValue>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    crate::io::regular_file(path)?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| Error::format(path, format!("not a readable Parquet file: {e}")))?;
    Ok(reader.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default())
}

/// The key of the atoms' Gram matrix in an `an_atom` table.
pub const ATOM_GRAM_KEY: &str = "cortexflow.atom_gram";

/// An `an_atom` table read back: the ANs and their per-half statistics against the atoms
/// (see [`crate::kernels::courses`]).
#[derive(Debug, Clone)]
pub struct AnAtom {
    pub an_ids: Vec<u64>,
    pub stats: crate::kernels::courses::AnAtomStats,
}

/// Reads an `an_atom` table, checking that every AN has a half-0 then a half-1 row, that
/// the lists have one r per atom of the two Gram matrices, and that those are square,
/// finite and symmetric.
pub fn read_an_atom(path: &Path) -> Result<AnAtom> {
    let bad = |msg: String| Error::format(path, msg);
    let text = footer_metadata(path)?
        .into_iter()
        .find(|e| e.key == ATOM_GRAM_KEY)
        .and_then(|e| e.value)
        .ok_or_else(|| bad(format!("no {ATOM_GRAM_KEY} metadata (the atoms' Gram matrices)")))?;
    let grams: Vec<Vec<Vec<f64>>> = serde_json::from_str(&text)
        .map_err(|e| bad(format!("metadata {ATOM_GRAM_KEY} is not a JSON list of two matrices (lists of rows of numbers): {e}")))?;
    let k = grams.first().map_or(0, Vec::len);
    if grams.len() != 2 || k == 0 || grams.iter().any(|g| g.len() != k || g.iter().any(|r| r.len() != k)) {
        return Err(bad(format!("metadata {ATOM_GRAM_KEY}: expected two square K × K matrices")));
    }
    let gram: Vec<ndarray::Array2<f64>> = grams.iter().map(|g| ndarray::Array2::from_shape_fn((k, k), |(i, j)| g[i][j])).collect();
    if gram.iter().any(|g| g.iter().any(|v| !v.is_finite()) || (0..k).any(|i| (0..i).any(|j| g[[i, j]] != g[[j, i]]))) {
        return Err(bad(format!("metadata {ATOM_GRAM_KEY}: the Gram matrices must be finite and symmetric")));
    }
    let (mut ids, mut norms, mut values) = (Vec::new(), [Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let mut row = 0usize;
    for batch in read_batches(path, "an_atom")? {
        let id = column::<UInt64Array>(path, &batch, 0, "uint64")?;
        let half = column::<UInt16Array>(path, &batch, 1, "uint16")?;
        let norm = column::<Float32Array>(path, &batch, 2, "float32")?;
        let mut r = Vec::new();
        let size = list_values(path, column::<FixedSizeListArray>(path, &batch, 3, "a list")?, &mut r)?;
        if size != k {
            return Err(bad(format!("lists of {size} correlations, but the Gram matrices are {k} × {k}")));
        }
        for i in 0..batch.num_rows() {
            let h = row % 2;
            if half.value(i) as usize != h || (h == 1 && ids.last() != Some(&id.value(i))) {
                return Err(bad(format!(
                    "row {row}: expected AN {}'s half {h} (two rows per AN, half 0 then half 1), found AN {} half {}",
                    if h == 1 { ids.last().copied().unwrap_or(0) } else { id.value(i) }, id.value(i), half.value(i)
                )));
            }
            if h == 0 {
                ids.push(id.value(i));
            }
            norms[h].push(norm.value(i) as f64);
            values[h].extend(r[i * k..(i + 1) * k].iter().map(|&v| v as f64));
            row += 1;
        }
    }
    if !row.is_multiple_of(2) {
        return Err(bad(format!("{row} rows: the last AN has no half-1 row")));
    }
    let n = ids.len();
    let [v0, v1] = values;
    let r = [
        ndarray::Array2::from_shape_vec((n, k), v0).map_err(|e| bad(e.to_string()))?,
        ndarray::Array2::from_shape_vec((n, k), v1).map_err(|e| bad(e.to_string()))?,
    ];
    let [g0, g1]: [ndarray::Array2<f64>; 2] = gram.try_into().expect("two matrices");
    Ok(AnAtom { an_ids: ids, stats: crate::kernels::courses::AnAtomStats { r, norms, gram: [g0, g1] } })
}

fn tr_of(path: &Path, kv: Option<&Vec<KeyValue>>) -> Result<Option<f64>> {
    let Some(v) = kv
        .into_iter()
        .flatten()
        .find(|e| e.key == TR_KEY)
        .and_then(|e| e.value.as_deref())
    else {
        return Ok(None);
    };
    match v.parse::<f64>() {
        Ok(tr) if tr.is_finite() && tr > 0.0 => Ok(Some(tr)),
        _ => Err(Error::format(
            path,
            format!("metadata {TR_KEY} = '{}' is not a positive number of seconds", v.chars().take(40).collect::<String>()),
        )),
    }
}

/// A `responses` file read back: one row per AN (and FIR delay), values N × T.
#[derive(Debug, Clone)]
pub struct ResponseTable {
    pub story: String,
    pub an_ids: Vec<u64>,
    pub delays: Vec<Option<u16>>,
    pub values: ndarray::Array2<f32>,
    /// Seconds between scans, when the writer recorded it.
    pub tr: Option<f64>,
}

/// The record batches of a table file, after checking its columns against the schema.
fn read_batches(path: &Path, table: &str) -> Result<Vec<RecordBatch>> {
    Ok(read_table(path, table)?.0)
}

/// The record batches of a table file and the TR it records.
fn read_table(path: &Path, table: &str) -> Result<(Vec<RecordBatch>, Option<f64>)> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bad = |msg: String| Error::format(path, msg);
    crate::io::regular_file(path)?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| bad(format!("not a readable Parquet file: {e}")))?;
    let want = schema::table(table)?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let expected: Vec<String> = want.columns.iter().map(|c| c.name.clone()).collect();
    if names != expected {
        return Err(bad(format!(
            "columns {names:?} are not those of a {table} table {expected:?}"
        )));
    }
    let tr = tr_of(path, builder.metadata().file_metadata().key_value_metadata())?;
    let batches = builder
        .build()
        .map_err(|e| bad(e.to_string()))?
        .map(|b| b.map_err(|e| bad(e.to_string())))
        .collect::<Result<_>>()?;
    Ok((batches, tr))
}

/// Column `i` of a batch as array type `A`, or an error naming the file and column.
fn column<'a, A: 'static>(
    path: &Path,
    batch: &'a RecordBatch,
    i: usize,
    what: &str,
) -> Result<&'a A> {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<A>()
        .ok_or_else(|| Error::format(path, format!("column {i} is not {what}")))
}

/// The rows of a FixedSizeList<f32> column, appended to `out`; returns the list length.
fn list_values(path: &Path, lists: &FixedSizeListArray, out: &mut Vec<f32>) -> Result<usize> {
    use arrow_array::Array;
    let t = lists.value_length() as usize;
    let floats = lists
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .ok_or_else(|| Error::format(path, "list values are not float32"))?;
    let off = lists.offset() * t;
    out.extend_from_slice(&floats.values()[off..off + lists.len() * t]);
    Ok(t)
}

/// Records the story of a row; tables with vectors hold one story (one T) per file.
fn one_story(path: &Path, story: &mut Option<String>, s: &str) -> Result<()> {
    match story {
        None => {
            // The story names the store's file of this table (responses/<story>.parquet).
            crate::io::name::check("story", s).map_err(|e| Error::format(path, e.to_string()))?;
            *story = Some(s.to_string())
        }
        Some(prev) if prev != s => {
            return Err(Error::format(
                path,
                format!("holds two stories ('{prev}', '{s}'); one story per file"),
            ))
        }
        _ => {}
    }
    Ok(())
}

/// Reads a `responses` table written by `cortexflow responses` (or any writer following
/// schemas/responses.json). One story per file.
pub fn read_responses(path: &Path) -> Result<ResponseTable> {
    use arrow_array::Array;
    let bad = |msg: String| Error::format(path, msg);
    let (mut story, mut an_ids, mut delays, mut values, mut t) =
        (None::<String>, Vec::new(), Vec::new(), Vec::new(), 0usize);
    let (batches, tr) = read_table(path, "responses")?;
    for batch in batches {
        let ids = column::<UInt64Array>(path, &batch, 0, "uint64")?;
        let stories = column::<StringArray>(path, &batch, 1, "utf8")?;
        let dl = column::<UInt16Array>(path, &batch, 2, "uint16")?;
        t = list_values(
            path,
            column::<FixedSizeListArray>(path, &batch, 3, "a list")?,
            &mut values,
        )?;
        for r in 0..batch.num_rows() {
            one_story(path, &mut story, stories.value(r))?;
            an_ids.push(ids.value(r));
            delays.push(dl.is_valid(r).then(|| dl.value(r)));
        }
    }
    let n = an_ids.len();
    let values = ndarray::Array2::from_shape_vec((n, t), values).map_err(|e| bad(e.to_string()))?;
    Ok(ResponseTable {
        story: story.ok_or_else(|| bad("no rows".into()))?,
        an_ids,
        delays,
        values,
        tr,
    })
}

/// An `atoms` file read back: the story and its atoms as columns, T × K (by atom index).
pub fn read_atoms(path: &Path) -> Result<(String, ndarray::Array2<f64>)> {
    let bad = |msg: String| Error::format(path, msg);
    let (mut story, mut atoms, mut values, mut t) =
        (None::<String>, Vec::new(), Vec::new(), 0usize);
    for batch in read_batches(path, "atoms")? {
        let idx = column::<UInt16Array>(path, &batch, 1, "uint16")?;
        let stories = column::<StringArray>(path, &batch, 2, "utf8")?;
        t = list_values(
            path,
            column::<FixedSizeListArray>(path, &batch, 3, "a list")?,
            &mut values,
        )?;
        for r in 0..batch.num_rows() {
            atoms.push(idx.value(r) as usize);
            one_story(path, &mut story, stories.value(r))?;
        }
    }
    let k = atoms.len();
    if k == 0 || atoms.iter().enumerate().any(|(i, &a)| a != i) {
        return Err(bad(format!(
            "expected atoms 0..K in order, found {atoms:?}"
        )));
    }
    let d = ndarray::Array2::from_shape_fn((t, k), |(s, j)| values[j * t + s] as f64);
    Ok((story.unwrap_or_default(), d))
}

/// A `codes` table: one row per non-zero (AN, atom) code.
#[derive(Debug, Clone, Default)]
pub struct Codes {
    pub an_ids: Vec<u64>,
    pub atoms: Vec<u16>,
    pub weights: Vec<f32>,
}

/// Reads a `codes` table written by `cortexflow basis`.
pub fn read_codes(path: &Path) -> Result<Codes> {
    let mut out = Codes::default();
    for batch in read_batches(path, "codes")? {
        let id = column::<UInt64Array>(path, &batch, 0, "uint64")?;
        let atom = column::<UInt16Array>(path, &batch, 1, "uint16")?;
        let w = column::<Float32Array>(path, &batch, 2, "float32")?;
        out.an_ids.extend(id.values().iter());
        out.atoms.extend(atom.values().iter());
        out.weights.extend(w.values().iter());
    }
    Ok(out)
}

/// An AN's place in its model, a row of a `neurons` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Neuron {
    pub an_id: u64,
    pub model: String,
    pub layer: u16,
    pub tap: String,
    pub unit: u32,
}

/// Reads a `neurons` table (written by `responses` and `simulate`).
pub fn read_neurons(path: &Path) -> Result<Vec<Neuron>> {
    let mut out = Vec::new();
    for batch in read_batches(path, "neurons")? {
        let id = column::<UInt64Array>(path, &batch, 0, "uint64")?;
        let model = column::<StringArray>(path, &batch, 1, "utf8")?;
        let layer = column::<UInt16Array>(path, &batch, 2, "uint16")?;
        let tap = column::<StringArray>(path, &batch, 3, "utf8")?;
        let unit = column::<UInt32Array>(path, &batch, 4, "uint32")?;
        for r in 0..batch.num_rows() {
            out.push(Neuron {
                an_id: id.value(r),
                model: model.value(r).to_string(),
                layer: layer.value(r),
                tap: tap.value(r).to_string(),
                unit: unit.value(r),
            });
        }
    }
    Ok(out)
}

/// A row of a `metrics` table.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub model: String,
    /// None for the whole model.
    pub layer: Option<i32>,
    pub metric: String,
    pub value: f64,
}

/// Reads a `metrics` table (written by `cortexflow map`).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>> {
    use arrow_array::Array;
    let mut out = Vec::new();
    for batch in read_batches(path, "metrics")? {
        let model = column::<StringArray>(path, &batch, 0, "utf8")?;
        let layer = column::<Int32Array>(path, &batch, 1, "int32")?;
        let metric = column::<StringArray>(path, &batch, 2, "utf8")?;
        let value = column::<Float64Array>(path, &batch, 3, "float64")?;
        for r in 0..batch.num_rows() {
            out.push(MetricRow {
                model: model.value(r).to_string(),
                layer: layer.is_valid(r).then(|| layer.value(r)),
                metric: metric.value(r).to_string(),
                value: value.value(r),
            });
        }
    }
    Ok(out)
}

/// A row of an `atom_fbn` table: one atom against one network.
#[derive(Debug, Clone, PartialEq)]
pub struct AtomFbn {
    pub atom: u16,
    pub fbn: String,
    pub overlap_rate: f32,
    pub dice: f32,
    pub iou: f32,
    pub corr: f32,
    pub assigned: bool,
    /// Spatial-null p and its FDR q (NaN without surrogates, or in a table written before
    /// they existed).
    pub p_spatial: f64,
    pub q_spatial: f64,
}

/// Reads an `atom_fbn` table (written by `cortexflow map`).
pub fn read_atom_fbn(path: &Path) -> Result<Vec<AtomFbn>> {
    let mut out = Vec::new();
    for batch in read_batches(path, "atom_fbn")? {
        let atom = column::<UInt16Array>(path, &batch, 0, "uint16")?;
        let fbn = column::<StringArray>(path, &batch, 1, "utf8")?;
        let f = |i| column::<Float32Array>(path, &batch, i, "float32");
        let (rate, dice, iou, corr) = (f(2)?, f(3)?, f(4)?, f(5)?);
        let assigned = column::<BooleanArray>(path, &batch, 6, "bool")?;
        let spatial = match batch.num_columns() > 8 {
            true => Some((column::<Float64Array>(path, &batch, 7, "float64")?, column::<Float64Array>(path, &batch, 8, "float64")?)),
            false => None,
        };
        for r in 0..batch.num_rows() {
            out.push(AtomFbn {
                atom: atom.value(r),
                fbn: fbn.value(r).to_string(),
                overlap_rate: rate.value(r),
                dice: dice.value(r),
                iou: iou.value(r),
                corr: corr.value(r),
                assigned: assigned.value(r),
                p_spatial: spatial.map_or(f64::NAN, |s| s.0.value(r)),
                q_spatial: spatial.map_or(f64::NAN, |s| s.1.value(r)),
            });
        }
    }
    Ok(out)
}

/// A row of a `subgroups` table: an AN, its dominant atom and that atom's network.
#[derive(Debug, Clone, PartialEq)]
pub struct Subgroup {
    pub an_id: u64,
    pub atom: u16,
    pub fbn: String,
}

/// Reads a `subgroups` table (written by `cortexflow map`).
pub fn read_subgroups(path: &Path) -> Result<Vec<Subgroup>> {
    let mut out = Vec::new();
    for batch in read_batches(path, "subgroups")? {
        let id = column::<UInt64Array>(path, &batch, 0, "uint64")?;
        let atom = column::<UInt16Array>(path, &batch, 1, "uint16")?;
        let fbn = column::<StringArray>(path, &batch, 2, "utf8")?;
        for r in 0..batch.num_rows() {
            out.push(Subgroup {
                an_id: id.value(r),
                atom: atom.value(r),
                fbn: fbn.value(r).to_string(),
            });
        }
    }
    Ok(out)
}

/// A row of an `an_fbn` table: an AN against one network's fitted course.
#[derive(Debug, Clone, PartialEq)]
pub struct AnFbn {
    pub an_id: u64,
    pub fbn: String,
    pub r: f32,
    pub r_split: f32,
    pub tied: bool,
    pub stability: f32,
}

/// Reads an `an_fbn` table (written by `cortexflow map`).
pub fn read_an_fbn(path: &Path) -> Result<Vec<AnFbn>> {
    let mut out = Vec::new();
    for batch in read_batches(path, "an_fbn")? {
        let id = column::<UInt64Array>(path, &batch, 0, "uint64")?;
        let fbn = column::<StringArray>(path, &batch, 1, "utf8")?;
        let r = column::<Float32Array>(path, &batch, 2, "float32")?;
        let r_split = column::<Float32Array>(path, &batch, 3, "float32")?;
        let tied = column::<BooleanArray>(path, &batch, 4, "bool")?;
        let stability = column::<Float32Array>(path, &batch, 5, "float32")?;
        for i in 0..batch.num_rows() {
            out.push(AnFbn {
                an_id: id.value(i),
                fbn: fbn.value(i).to_string(),
                r: r.value(i),
                r_split: r_split.value(i),
                tied: tied.value(i),
                stability: stability.value(i),
            });
        }
    }
    Ok(out)
}
