//! Every table of schemas/ written by our writer and read back by the parquet crate and,
//! in CI, by pyarrow (an independent reader).

use std::fs::File;

use arrow_array::Array;
use cortexflow::io::parquet::{write_table, Column, TableWriter};
use cortexflow::io::schema::{self, ColumnSchema, TABLES};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};

use super::common::python_check;

const ROWS: usize = 5;
const T: usize = 4;

/// Deterministic sample data for one column, and the same values as JSON.
fn sample(c: &ColumnSchema, col: usize) -> (Column, Vec<Value>) {
    let r = 0..ROWS;
    let x = |i: usize| (i * 7 + col * 3) as f64 * 0.5;
    match c.ty.as_str() {
        "utf8" if c.nullable => {
            let v: Vec<Option<String>> =
                r.map(|i| (i % 2 == 0).then(|| format!("s{i}é"))).collect();
            (
                Column::OptUtf8(v.clone()),
                v.into_iter().map(|s| json!(s)).collect(),
            )
        }
        "utf8" => {
            let v: Vec<String> = r.map(|i| format!("{}-{i}", c.name)).collect();
            (
                Column::Utf8(v.clone()),
                v.into_iter().map(Value::from).collect(),
            )
        }
        "bool" => (
            Column::Bool(r.clone().map(|i| i % 3 == 0).collect()),
            r.map(|i| json!(i % 3 == 0)).collect(),
        ),
        "uint16" if c.nullable => {
            let v: Vec<Option<u16>> = r.map(|i| (i % 2 == 1).then_some(i as u16)).collect();
            (
                Column::OptU16(v.clone()),
                v.into_iter().map(|s| json!(s)).collect(),
            )
        }
        "uint16" => (
            Column::U16(r.clone().map(|i| (i * 11) as u16).collect()),
            r.map(|i| json!(i * 11)).collect(),
        ),
        "uint32" => (
            Column::U32(r.clone().map(|i| (i * 1000) as u32).collect()),
            r.map(|i| json!(i * 1000)).collect(),
        ),
        "uint64" => (
            Column::U64(r.clone().map(|i| (i as u64) << 40).collect()),
            r.map(|i| json!((i as u64) << 40)).collect(),
        ),
        "int32" if c.nullable => {
            let v: Vec<Option<i32>> = r.map(|i| (i != 1).then_some(i as i32 - 2)).collect();
            (
                Column::OptI32(v.clone()),
                v.into_iter().map(|s| json!(s)).collect(),
            )
        }
        "float32" => (
            Column::F32(r.clone().map(|i| x(i) as f32).collect()),
            r.map(|i| json!(x(i))).collect(),
        ),
        "float64" => (
            Column::F64(r.clone().map(|i| x(i) / 3.0).collect()),
            r.map(|i| json!(x(i) / 3.0)).collect(),
        ),
        "fixed_size_list<float32>" => {
            let rows: Vec<Vec<f32>> = r
                .map(|i| (0..T).map(|t| (i * T + t) as f32 * 0.25).collect())
                .collect();
            (
                Column::F32List {
                    size: T,
                    values: rows.iter().flatten().copied().collect(),
                },
                rows.into_iter().map(|v| json!(v)).collect(),
            )
        }
        other => panic!("no sample for {other}"),
    }
}

#[test]
fn every_table_round_trips_with_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = serde_json::Map::new();
    for (name, _) in TABLES {
        let table = schema::table(name).unwrap();
        let (cols, values): (Vec<Column>, Vec<Vec<Value>>) = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| sample(c, i))
            .unzip();
        let path = dir.path().join(format!("{name}.parquet"));
        let list = table.columns.iter().any(ColumnSchema::is_list).then_some(T);
        assert_eq!(write_table(&path, name, list, cols).unwrap(), ROWS);

        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let read_schema = reader.schema().clone();
        let want = table.arrow(list).unwrap();
        assert_eq!(
            read_schema.fields(),
            want.fields(),
            "{name}: schema on disk"
        );
        assert_eq!(read_schema.metadata().get("table"), Some(&name.to_string()));
        let batches: Vec<_> = reader.build().unwrap().map(Result::unwrap).collect();
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(n, ROWS, "{name}");
        for (c, col) in table.columns.iter().enumerate() {
            let a = batches[0].column(c);
            assert_eq!(
                a.null_count() > 0,
                col.nullable,
                "{name}.{}: nulls only where allowed",
                col.name
            );
        }
        let rows: Vec<Value> = (0..ROWS)
            .map(|r| {
                Value::Object(
                    table
                        .columns
                        .iter()
                        .zip(&values)
                        .map(|(c, v)| (c.name.clone(), v[r].clone()))
                        .collect(),
                )
            })
            .collect();
        expected.insert(name.to_string(), Value::Array(rows));
    }
    let exp_path = dir.path().join("expected.json");
    std::fs::write(&exp_path, Value::Object(expected).to_string()).unwrap();
    let schemas = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    python_check("check_parquet.py", &[dir.path(), &exp_path, &schemas]);
}

#[test]
fn writes_that_break_the_schema_are_refused_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("codes.parquet");
    let mut w = TableWriter::create(&path, "codes", None).unwrap();
    let e = w
        .write(vec![Column::U64(vec![1]), Column::U16(vec![0])])
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 columns given"), "{e}");
    let e = w
        .write(vec![
            Column::U64(vec![1]),
            Column::U32(vec![0]),
            Column::F32(vec![1.0]),
        ])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'atom'"), "{e}");
    let e = w
        .write(vec![
            Column::U64(vec![1, 2]),
            Column::U16(vec![0]),
            Column::F32(vec![1.0]),
        ])
        .unwrap_err()
        .to_string();
    assert!(e.contains("has 1 rows"), "{e}");
    drop(w);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "an unfinished table leaves nothing behind"
    );
    let e = write_table(
        &dir.path().join("r.parquet"),
        "responses",
        Some(3),
        vec![
            Column::U64(vec![1]),
            Column::Utf8(vec!["s".into()]),
            Column::OptU16(vec![None]),
            Column::F32List {
                size: 4,
                values: vec![0.0; 4],
            },
        ],
    );
    assert!(e.unwrap_err().to_string().contains("lists of 4 floats"));
    assert!(schema::table("nope").is_err());
}
