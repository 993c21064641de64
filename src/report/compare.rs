//! `cortexflow compare`: the comparison of several analyses written as a table
//! (compare.tsv) and a figure (compare.svg).

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::io::atomic::write_file_atomically;
use crate::report::figures;
use crate::stages::compare::{comparison, FIGURE_TITLE, FIGURE_Y};

/// Writes OUT/compare.tsv and OUT/compare.svg; returns the files and the table's text.
pub fn write_comparison(dirs: &[PathBuf], out: &Path) -> Result<(Vec<PathBuf>, String)> {
    let c = comparison(dirs)?;
    let tsv = out.join("compare.tsv");
    write_file_atomically(&tsv, |w| w.write_all(c.table.as_bytes()))?;
    let svg = out.join("compare.svg");
    figures::grouped_bars(&svg, FIGURE_TITLE, FIGURE_Y, &c.networks, &c.series)?;
    Ok((vec![tsv, svg], c.table))
}

