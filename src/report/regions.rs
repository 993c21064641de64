//! The report of a store of region time series: its maps hold one value per region on a
//! line (see [`crate::io::regions`]), so they are drawn as tables of regions, not slices.

use crate::error::Result;
use crate::io::nifti;
use crate::io::parquet::read_atom_fbn;
use crate::io::regions::Regions;
use crate::report::figures;
use crate::report::page::Page;
use crate::store::Store;

/// The networks of the region list, in name order.
fn networks(regions: &Regions) -> Vec<String> {
    regions.networks.iter().cloned().collect::<std::collections::BTreeSet<_>>().into_iter().collect()
}

/// For each atom, the share of each network's regions its thresholded group map covers,
/// as a heat map, and what each atom was assigned to.
pub fn group_maps(page: &mut Page, store: &Store, regions: &Regions) -> Result<()> {
    let dir = store.paths().group();
    let mask = nifti::read_mask(&dir.join("mask.nii.gz"))?;
    let sig = mask.rows(&nifti::read_image(&dir.join("thresholded_z.nii.gz"))?);
    let rows = read_atom_fbn(&store.paths().map().join("atom_fbn.parquet"))?;
    page.section(
        "maps",
        "Group maps",
        "For each atom, the share of each network's regions (regions.tsv) where its random-effects group z passes the group threshold; below, each atom's assignment. Every region's values are in group/region_group.parquet.",
    );
    let networks = networks(regions);
    let values: Vec<Vec<f64>> = sig
        .rows()
        .into_iter()
        .map(|r| {
            networks
                .iter()
                .map(|net| {
                    let mine: Vec<usize> = (0..regions.names.len()).filter(|&i| &regions.networks[i] == net).collect();
                    let hit = mine.iter().filter(|&&i| r[i].is_finite() && r[i] != 0.0).count();
                    hit as f64 / mine.len() as f64
                })
                .collect()
        })
        .collect();
    let atoms: Vec<String> = (0..sig.nrows()).map(|a| format!("atom {a}")).collect();
    let svg = figures::heatmap("Share of each network's regions significant", &atoms, &networks, &values, 1.0)?;
    page.svg(&svg, &format!("{} atoms × {} networks of {} regions", atoms.len(), networks.len(), regions.names.len()))?;
    let lines: Vec<String> = (0..sig.nrows())
        .map(|a| {
            let count = sig.row(a).iter().filter(|v| v.is_finite() && **v != 0.0).count();
            match rows.iter().find(|r| r.atom as usize == a && r.assigned) {
                Some(r) => format!(
                    "atom {a} → {} (IoU {:.2}, Dice {:.2}{}); {count} significant regions",
                    r.fbn,
                    r.iou,
                    r.dice,
                    crate::stages::mapping::spatial_note(r.p_spatial, r.q_spatial)
                ),
                None => format!("atom {a}: unassigned; {count} significant regions"),
            }
        })
        .collect();
    page.list(&lines);
    page.end();
    Ok(())
}

/// The held-out r of each region's ridge model, averaged over subjects and each network's
/// regions.
pub fn encoding(page: &mut Page, store: &Store, regions: &Regions) -> Result<()> {
    page.section(
        "encoding",
        "Encoding performance",
        "Held-out Pearson r of each region's ridge model (leave one run out), averaged over subjects and over the regions of each network.",
    );
    let mask = nifti::read_mask(&store.paths().mask())?;
    let (mut sum, mut n) = (vec![0.0; mask.len()], vec![0usize; mask.len()]);
    for s in store.subjects() {
        let path = store.paths().subject_map(&s, "cv_r");
        if !path.is_file() {
            continue;
        }
        let r = mask.rows(&nifti::read_image(&path)?);
        for (v, &x) in r.row(0).iter().enumerate().filter(|(_, x)| x.is_finite()) {
            sum[v] += x;
            n[v] += 1;
        }
    }
    if n.iter().all(|&k| k == 0) {
        page.note("No cross-validated fit: each subject needs at least 2 runs (and encoding.cv = true in the recipe).".into());
        page.end();
        return Ok(());
    }
    let networks = networks(regions);
    let mean: Vec<f64> = networks
        .iter()
        .map(|net| {
            let r: Vec<f64> = (0..regions.names.len())
                .filter(|&i| &regions.networks[i] == net && n[i] > 0)
                .map(|i| sum[i] / n[i] as f64)
                .collect();
            r.iter().sum::<f64>() / r.len().max(1) as f64
        })
        .collect();
    let svg = figures::bars("Mean held-out r of each network's regions", "cv r", &networks, &[("mean over regions and subjects".into(), mean)], false)?;
    page.svg(&svg, &format!("{} regions in {} networks, {} subjects; each region's r is in subjects/sub-*/region_fits.parquet", regions.names.len(), networks.len(), store.subjects().len()))?;
    page.end();
    Ok(())
}
