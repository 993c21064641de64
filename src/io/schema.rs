//! The output tables' schemas, kept as JSON in `schemas/` (one file per table) and
//! embedded in the binary. Writers take their Arrow schema from here, so the JSON is the
//! single definition of every table.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};
use serde::Deserialize;

use crate::error::{Error, Result};

/// A table's schema as written in `schemas/<name>.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSchema {
    pub name: String,
    pub doc: String,
    pub columns: Vec<ColumnSchema>,
    /// File metadata the table may carry: key → what it means.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSchema {
    pub name: String,
    /// `utf8`, `bool`, `uint16`, `uint32`, `uint64`, `int32`, `int64`, `float32`, `float64`
    /// or `fixed_size_list<float32>`.
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub nullable: bool,
    /// For lists: the symbolic length (e.g. "T"), fixed per file when the writer is created.
    #[serde(default)]
    pub size: Option<String>,
    pub doc: String,
}

macro_rules! tables {
    ($($name:literal),* $(,)?) => {
        /// Every table: (name, JSON text).
        pub const TABLES: &[(&str, &str)] = &[$(($name, include_str!(concat!("../../schemas/", $name, ".json")))),*];
    };
}
tables!(
    "activations",
    "neurons",
    "responses",
    "atoms",
    "codes",
    "an_atom",
    "voxel_fits",
    "atom_fbn",
    "subgroups",
    "an_fbn",
    "metrics",
    "planted_timecourses",
    "region_fits",
    "region_group",
    "ceiling"
);

/// The schema of table `name`.
pub fn table(name: &str) -> Result<TableSchema> {
    let (_, text) = TABLES
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| Error::Invalid(format!("no table schema named '{name}'")))?;
    let schema: TableSchema = serde_json::from_str(text)
        .map_err(|e| Error::format(format!("schemas/{name}.json"), e.to_string()))?;
    if schema.name != name {
        return Err(Error::format(
            format!("schemas/{name}.json"),
            format!("declares name '{}'", schema.name),
        ));
    }
    Ok(schema)
}

impl ColumnSchema {
    /// The Arrow type; `list_size` fixes the length of list columns.
    pub fn data_type(&self, list_size: Option<usize>) -> Result<DataType> {
        Ok(match self.ty.as_str() {
            "utf8" => DataType::Utf8,
            "bool" => DataType::Boolean,
            "uint16" => DataType::UInt16,
            "uint32" => DataType::UInt32,
            "uint64" => DataType::UInt64,
            "int32" => DataType::Int32,
            "int64" => DataType::Int64,
            "float32" => DataType::Float32,
            "float64" => DataType::Float64,
            "fixed_size_list<float32>" => {
                let n = list_size.ok_or_else(|| {
                    Error::Invalid(format!(
                        "column '{}' needs its list length {}",
                        self.name,
                        self.size.as_deref().unwrap_or("?")
                    ))
                })?;
                let n = i32::try_from(n)
                    .map_err(|_| Error::Invalid(format!("list length {n} is too large")))?;
                DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), n)
            }
            other => {
                return Err(Error::Invalid(format!(
                    "column '{}': unknown type '{other}'",
                    self.name
                )))
            }
        })
    }

    pub fn is_list(&self) -> bool {
        self.ty.starts_with("fixed_size_list")
    }
}

impl TableSchema {
    /// The Arrow schema, with the table and column docs as metadata.
    pub fn arrow(&self, list_size: Option<usize>) -> Result<Schema> {
        let fields = self
            .columns
            .iter()
            .map(|c| {
                let f = Field::new(&c.name, c.data_type(list_size)?, c.nullable);
                Ok(f.with_metadata(std::collections::HashMap::from([(
                    "doc".to_string(),
                    c.doc.clone(),
                )])))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = std::collections::HashMap::from([
            ("table".to_string(), self.name.clone()),
            ("doc".to_string(), self.doc.clone()),
        ]);
        Ok(Schema::new_with_metadata(fields, meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_parses_and_has_documented_columns() {
        for (name, _) in TABLES {
            let t = table(name).unwrap();
            assert!(!t.columns.is_empty(), "{name}");
            for c in &t.columns {
                assert!(!c.doc.is_empty(), "{name}.{} has no doc", c.name);
                assert_eq!(
                    c.is_list(),
                    c.size.is_some(),
                    "{name}.{}: lists and only lists have a size",
                    c.name
                );
                c.data_type(Some(3)).unwrap();
            }
            t.arrow(Some(3)).unwrap();
        }
    }
}
