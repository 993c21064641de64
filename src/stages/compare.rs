//! The organisation metrics of several analyses (e.g. MiniLM and
//! SmolLM2) side by side: one table and one figure of the AN share per network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{bail, Result};
use crate::io::parquet::{read_metrics, MetricRow};

/// The metrics table of an analysis: DIR/metrics.parquet or DIR/map/metrics.parquet.
fn metrics_file(dir: &Path) -> Result<PathBuf> {
    for candidate in [dir.join("metrics.parquet"), dir.join("map/metrics.parquet")] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{}: no metrics.parquet (the output of `cortexflow map`), nor map/metrics.parquet",
        dir.display()
    )
}

/// The whole-model metrics of several analyses side by side: the TSV text, and the AN
/// share per assigned network, one series per model.
pub struct Comparison {
    pub table: String,
    pub networks: Vec<String>,
    pub series: Vec<(String, Vec<f64>)>,
}

pub const FIGURE_TITLE: &str = "AN share per functional brain network";
pub const FIGURE_Y: &str = "share of the model's ANs";

pub fn comparison(dirs: &[PathBuf]) -> Result<Comparison> {
    // Whole-model metrics of every model of every analysis; a model name found in two
    // analyses is told apart by the analysis directory.
    let mut tables = Vec::new();
    for dir in dirs {
        let rows = read_metrics(&metrics_file(dir)?)?;
        tables.push((
            dir,
            rows.into_iter()
                .filter(|r| r.layer.is_none())
                .collect::<Vec<_>>(),
        ));
    }
    let mut seen: BTreeMap<String, BTreeSet<&PathBuf>> = BTreeMap::new();
    for (dir, rows) in &tables {
        for r in rows {
            seen.entry(r.model.clone()).or_default().insert(dir);
        }
    }
    let mut columns: Vec<String> = Vec::new();
    let mut values: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut metric_names: BTreeSet<String> = BTreeSet::new();
    for (dir, rows) in tables {
        for MetricRow {
            model,
            metric,
            value,
            ..
        } in rows
        {
            let col = if seen[&model].len() > 1 {
                format!("{model} ({})", dir.display())
            } else {
                model
            };
            if !columns.contains(&col) {
                columns.push(col.clone());
            }
            metric_names.insert(metric.clone());
            values.insert((metric, col), value);
        }
    }
    if columns.is_empty() {
        bail!("no whole-model metrics in {} analyses", dirs.len());
    }
    let mut table = format!("metric\t{}\n", columns.join("\t"));
    for m in &metric_names {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| {
                values
                    .get(&(m.clone(), c.clone()))
                    .map_or("".into(), |v| format!("{v:.4}"))
            })
            .collect();
        table.push_str(&format!("{m}\t{}\n", cells.join("\t")));
    }
    // The figure: AN share per network (assigned networks only), one bar per model.
    let networks: Vec<String> = metric_names
        .iter()
        .filter_map(|m| m.strip_prefix("share:"))
        .filter(|n| *n != "uncoded" && *n != "unassigned")
        .map(str::to_string)
        .collect();
    let series: Vec<(String, Vec<f64>)> = columns
        .iter()
        .map(|c| {
            let v = networks
                .iter()
                .map(|n| {
                    *values
                        .get(&(format!("share:{n}"), c.clone()))
                        .unwrap_or(&0.0)
                })
                .collect();
            (c.clone(), v)
        })
        .collect();
    Ok(Comparison {
        table,
        networks,
        series,
    })
}
