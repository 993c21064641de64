//! `cortexflow report STORE [STORE…] [--out report.html]`: one self-contained HTML file
//! (figures inlined as SVG or PNG data URIs; no network, no script from elsewhere) that
//! shows what a store found: the atoms' time courses, each atom's group z map over the
//! MNI template with the outline of its network, the atom × network overlaps, the AN
//! sub-groups by layer and network, the encoding performance and its noise ceiling, the
//! organisation metrics,
//! and, given several stores, the comparison of their models. A figure that cannot be
//! drawn (one subject, no assigned atom) is replaced by a sentence that says why.

pub mod ceiling;
pub mod compare;
pub mod figures;
pub mod page;
pub mod regions;
pub mod sections;
pub mod slices;
pub mod viewer;

use std::path::{Path, PathBuf};

use crate::error::{bail, Result};
use crate::store::{check_files, FileCheck, Store};
use page::{document, Page};
use sections::{atoms, comparison, encoding, group_maps, metrics, overlaps, subgroups, summary};

/// What `report` wrote.
pub struct ReportSummary {
    pub path: PathBuf,
    pub figures: usize,
    pub notes: Vec<String>,
}


/// Writes the report of `stores` to `out` (and every figure under `figures`, if given).
pub fn run(stores: &[PathBuf], out: &Path, figures: Option<&Path>) -> Result<ReportSummary> {
    let Some(first) = stores.first() else {
        bail!("report: give at least one store");
    };
    let mut unverified = Vec::new();
    for dir in stores {
        unverified.extend(verified(dir)?);
    }
    let store = Store::open_reader(first)?;
    let mut page = Page {
        body: String::new(),
        figures: 0,
        grids: 0,
        notes: Vec::new(),
        files: figures.map(Path::to_path_buf),
    };
    summary(&mut page, &store);
    unverified.into_iter().for_each(|n| page.note(n));
    atoms(&mut page, &store)?;
    let group = store.paths().group();
    let regions = store.regions()?;
    if group.join("thresholded_z.nii.gz").is_file() {
        match &regions {
            Some(r) => regions::group_maps(&mut page, &store, r)?,
            None => group_maps(&mut page, &store)?,
        }
        overlaps(&mut page, &store)?;
        subgroups(&mut page, &store)?;
    } else {
        let n = store.subjects().len();
        page.section("maps", "Group maps and networks", "");
        page.note(format!(
            "No group maps: they need at least 2 subjects with runs, and this store has {n}. The group maps, the atom × network overlaps, the AN sub-groups and the organisation metrics are empty until then."
        ));
        page.end();
    }
    match &regions {
        Some(r) if !store.subjects().is_empty() => regions::encoding(&mut page, &store, r)?,
        _ => encoding(&mut page, &store)?,
    }
    ceiling::ceiling(&mut page, &store)?;
    metrics(&mut page, &store)?;
    if stores.len() > 1 {
        comparison(&mut page, stores)?;
    }
    let html = document(&store, &page);
    crate::io::atomic::write_file_atomically(out, |w| w.write_all(html.as_bytes()))?;
    Ok(ReportSummary {
        path: out.to_path_buf(),
        figures: page.figures,
        notes: page.notes,
    })
}

/// Refuses to report a store with damaged files: the figures would show altered results.
/// A store being written (by `watch`, say) is reported unverified, with a note saying so.
fn verified(dir: &Path) -> Result<Option<String>> {
    let (lines, damaged) = match check_files(dir, true)? {
        FileCheck::Busy(writer) => {
            return Ok(Some(format!(
                "{} was being written by {writer}: its files were not verified for this report",
                dir.display()
            )))
        }
        FileCheck::Done { lines, problems } => (lines, problems),
    };
    if damaged > 0 {
        bail!(
            "{}: {damaged} damaged or half-written part(s), so no report: {}",
            dir.display(),
            lines.lines().map(str::trim).filter(|l| !l.starts_with("damaged:")).collect::<Vec<_>>().join("; ")
        );
    }
    Ok(None)
}
