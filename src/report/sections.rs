//! The report's sections, one function each, read from a store.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::error::Result;
use crate::io::atlas::{read_coordinates, Roi};
use crate::io::embedded::{self, BuiltinAtlas};
use crate::io::nifti::{self, Mask};
use crate::kernels::clusters_table::{clusters_table, ClusterOptions};
use crate::io::parquet::{
    read_an_fbn,
    read_atom_fbn, read_atoms, read_metrics, read_neurons,
};

use crate::report::figures;
use crate::report::page::{esc, Page};
use crate::report::slices::{self, Volume};
use crate::report::viewer::{MapView, Viewers};
use crate::store::{list, Store};
use crate::stages::compare::{comparison as compare_analyses, FIGURE_TITLE, FIGURE_Y};
use crate::stages::mapping as map;
use crate::stages::ties::TieRule;

pub fn summary(page: &mut Page, store: &Store) {
    let m = &store.manifest;
    let r = &store.recipe;
    let model = r
        .model
        .path
        .as_ref()
        .map_or("responses given as tables".into(), |p| {
            p.display().to_string()
        });
    let rows = [
        ("store", store.dir.display().to_string()),
        (
            "recipe",
            format!("{} (fingerprint {})", r.description, m.recipe),
        ),
        (
            "model",
            format!(
                "{model}; taps {}; layers {}",
                r.model.taps.join(", "),
                r.model.layers
            ),
        ),
        (
            "basis",
            format!(
                "{} with K = {} atoms, λ = {}",
                r.basis.method, r.basis.atoms, r.basis.lambda
            ),
        ),
        (
            "stories",
            m.stories.keys().cloned().collect::<Vec<_>>().join(", "),
        ),
        (
            "runs",
            format!(
                "{} runs of {} subjects",
                m.runs.len(),
                store.subjects().len()
            ),
        ),
        (
            "networks",
            format!(
                "{} ({} ≥ {})",
                r.map.atlas, r.map.score, r.map.assign_threshold
            ),
        ),
        (
            "state",
            if m.dirty.is_empty() && m.results_epoch == m.epoch {
                "up to date".into()
            } else {
                "stale: run `cortexflow status --refresh`".into()
            },
        ),
    ];
    page.section("summary", "The analysis", "");
    page.body.push_str("<table class=\"kv\">");
    for (k, v) in rows {
        let _ = write!(page.body, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    page.body.push_str("</table>");
    page.end();
}

pub fn atoms(page: &mut Page, store: &Store) -> Result<()> {
    page.section(
        "atoms",
        "The atoms' time courses",
        "Each atom is a temporal pattern learned from the ANs' responses, on the scan clock of the first story; the patterns are the regressors of the encoding models.",
    );
    let files = list(&store.paths().atoms_dir(), ".parquet").unwrap_or_default();
    match files.first() {
        Some(f) => {
            let (story, a) = read_atoms(f)?;
            let series: Vec<(String, Vec<f64>)> = (0..a.ncols())
                .map(|k| (format!("atom {k}"), a.column(k).to_vec()))
                .collect();
            let svg = figures::panels(&format!("Atoms, story {story}"), "scan", &series)?;
            page.svg(
                &svg,
                &format!("{} atoms over {} scans of {story}", a.ncols(), a.nrows()),
            )?;
        }
        None => page.note("No basis yet: ingest stories first.".into()),
    }
    page.end();
    Ok(())
}

/// The store's network templates on its mask (built-in atlases are written to a
/// temporary directory, not into the store).
fn templates(store: &Store, mask: &Mask) -> Result<Vec<crate::io::atlas::Template>> {
    let tmp = std::env::temp_dir().join(format!("cortexflow-report-{}", std::process::id()));
    let mut opt = store.recipe.map.options();
    if store.paths().regions().is_file() {
        // A store of region time series maps to the networks of its region list.
        opt.atlas = store.paths().region_atlas().to_string_lossy().into_owned();
    }
    let t = map::templates(&opt, mask, &tmp);
    std::fs::remove_dir_all(&tmp).ok();
    t
}

pub fn group_maps(page: &mut Page, store: &Store) -> Result<()> {
    let dir = store.paths().group();
    let mask = nifti::read_mask(&dir.join("mask.nii.gz"))?;
    let sig = mask.rows(&nifti::read_image(&dir.join("thresholded_z.nii.gz"))?);
    let z = mask.rows(&nifti::read_image(&dir.join("z.nii.gz"))?);
    let rows = read_atom_fbn(&store.paths().map().join("atom_fbn.parquet"))?;
    let temps = templates(store, &mask)?;
    let (bg, mni) = slices::background(&mask)?;
    let g = &store.recipe.group;
    let rule = match (g.permutations, g.z_cut) {
        (0, None) => format!("FDR q = {}", g.fdr),
        (0, Some(z)) => format!("|z| ≥ {z}"),
        (n, _) => format!("family-wise error {} by the maximum |t| over {n} sign flips", g.fwer),
    };
    let rule = format!("{rule}; subjects' {} β", g.estimator);
    page.section(
        "maps",
        "Group maps",
        &format!(
            "Each atom's random-effects group z map, thresholded ({rule}), on three orthogonal slices through its peak{}; the green line is the border of the network the atom is assigned to. Warm: positive z, cool: negative.",
            if mni { " over the MNI152 T1 template" } else { " (the grid is not one of the embedded MNI grids: the mask is the background)" }
        ),
    );
    if !rows.iter().any(|r| r.assigned) {
        page.note(format!(
            "No atom is assigned to a network ({} ≥ {} not reached): no outlines are drawn.",
            store.recipe.map.score, store.recipe.map.assign_threshold
        ));
    }
    let vmax = z
        .iter()
        .map(|v| v.abs())
        .filter(|v| v.is_finite())
        .fold(3.0f64, f64::max)
        .min(12.0) as f32;
    let viewers = Viewers::new(page, &mask, &bg, &temps);
    let regions = named_regions()?;
    for a in 0..sig.nrows() {
        let overlay = Volume::from_masked(&mask, &sig.row(a).to_vec());
        let peak_of = if overlay.data.iter().any(|v| v.is_finite() && *v != 0.0) {
            overlay.peak()
        } else {
            Volume::from_masked(&mask, &z.row(a).to_vec()).peak()
        };
        let mine: Vec<_> = rows.iter().filter(|r| r.atom as usize == a).collect();
        let assigned = mine.iter().find(|r| r.assigned);
        let count = sig
            .row(a)
            .iter()
            .filter(|v| v.is_finite() && **v != 0.0)
            .count();
        let best = mine.iter().max_by(|x, y| x.iou.total_cmp(&y.iou));
        let caption = match (assigned, best) {
            (Some(r), _) => format!(
                "atom {a} → {} (IoU {:.2}, Dice {:.2}{}); {count} significant voxels",
                r.fbn, r.iou, r.dice, crate::stages::mapping::spatial_note(r.p_spatial, r.q_spatial)
            ),
            (None, _) if count == 0 => format!("atom {a}: no voxel survives the threshold"),
            (None, Some(b)) => format!(
                "atom {a}: unassigned (best {} with IoU {:.2}); {count} significant voxels",
                b.fbn, b.iou
            ),
            (None, None) => format!("atom {a}: unassigned"),
        };
        let surviving = sig.row(a).iter().filter(|v| v.is_finite() && **v != 0.0).fold(f64::INFINITY, |m, v| m.min(v.abs()));
        let view = MapView {
            label: "group z",
            atom: Some(a),
            values: &z.row(a).to_vec(),
            threshold: if surviving.is_finite() { surviving } else { f64::from(vmax) },
            vmax: f64::from(vmax),
            outline: assigned.and_then(|r| temps.iter().position(|t| t.name == r.fbn)),
            cut: peak_of,
        };
        viewers.figure(page, &view, &caption)?;
        cluster_table(page, &mask, &sig.row(a).to_vec(), &temps, &regions, a)?;
    }
    page.end();
    Ok(())
}

/// The named regions that label the cluster peaks: Dosenbach et al. 2010's 160 ROIs (MNI
/// centres named by area: "vmPFC", "dACC", "occipital", …), embedded with the atlases.
fn named_regions() -> Result<Vec<Roi>> {
    match embedded::atlas("dosenbach2010") {
        Some(BuiltinAtlas::Coordinates { file, text, default_radius_mm }) => Ok(read_coordinates(std::path::Path::new(file), text, default_radius_mm)?),
        _ => Ok(Vec::new()),
    }
}

/// The region whose centre is nearest to `xyz` (mm), with its distance: "dACC, 6 mm".
fn nearest_region(regions: &[Roi], xyz: [f64; 3]) -> String {
    let distance = |r: &Roi| r.centre.iter().zip(xyz).map(|(c, x)| (c - x) * (c - x)).sum::<f64>().sqrt();
    regions
        .iter()
        .filter_map(|r| r.name.as_ref().map(|n| (n, distance(r))))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or_else(|| "—".to_string(), |(n, d)| format!("{n}, {d:.0} mm"))
}

/// The clusters of one atom's thresholded map, as nilearn's `get_clusters_table` lists
/// them (threshold 0, both signs: every voxel that survived the group threshold), with
/// the network of the mapping's atlas at each peak and the nearest named region.
fn cluster_table(page: &mut Page, mask: &Mask, thresholded: &[f64], temps: &[crate::io::atlas::Template], regions: &[Roi], atom: usize) -> Result<()> {
    let mut volume = ndarray::Array3::zeros(mask.grid.shape);
    let mut position = std::collections::HashMap::new();
    for (v, (ijk, &z)) in mask.ijk().zip(thresholded).enumerate() {
        volume[ijk] = if z.is_finite() { z } else { 0.0 };
        position.insert(ijk, v);
    }
    let options = ClusterOptions { threshold: 0.0, two_sided: true, ..ClusterOptions::default() };
    let rows = clusters_table(&volume, &mask.grid.affine, &options)?;
    if rows.is_empty() {
        return Ok(());
    }
    let network = |ijk: [usize; 3]| {
        let v = position.get(&ijk);
        let names: Vec<&str> = temps.iter().filter(|t| v.is_some_and(|&v| t.voxels[v])).map(|t| t.name.as_str()).collect();
        if names.is_empty() { "—".to_string() } else { names.join(", ") }
    };
    const SHOWN: usize = 12;
    let header = "<tr><th>cluster</th><th>x (mm)</th><th>y (mm)</th><th>z (mm)</th><th>peak z</th><th>size (mm³)</th><th>network at the peak</th><th>nearest region (Dosenbach 2010)</th></tr>";
    let _ = write!(
        page.body,
        "<table class=\"clusters\" data-atom=\"{atom}\" data-rows=\"{}\"><caption>atom {atom}: clusters by peak (face-connected; up to 3 subpeaks 8 mm apart)</caption>{header}",
        rows.len()
    );
    for (n, r) in rows.iter().enumerate() {
        if n == SHOWN {
            // The rest stays one click away: a noisy map can have hundreds of small clusters.
            let _ = write!(page.body, "</table><details class=\"clusters\"><summary>{} more rows</summary><table class=\"clusters\">{header}", rows.len() - SHOWN);
        }
        let size = r.size_mm3.map_or(String::new(), |s| s.to_string());
        let _ = write!(
            page.body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{size}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.id),
            r.xyz[0],
            r.xyz[1],
            r.xyz[2],
            r.value,
            esc(&network(r.ijk)),
            esc(&nearest_region(regions, r.xyz))
        );
    }
    page.body.push_str(if rows.len() > SHOWN { "</table></details>" } else { "</table>" });
    Ok(())
}

pub fn overlaps(page: &mut Page, store: &Store) -> Result<()> {
    let rows = read_atom_fbn(&store.paths().map().join("atom_fbn.parquet"))?;
    let score = store.recipe.map.score;
    page.section(
        "overlap",
        "Atoms × networks",
        &format!("The {score} of each atom's thresholded group map with each network; an atom is assigned its best network when this reaches {}.", store.recipe.map.assign_threshold),
    );
    let networks: Vec<String> = rows
        .iter()
        .map(|r| r.fbn.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let atoms = rows.iter().map(|r| r.atom as usize + 1).max().unwrap_or(0);
    let mut values = vec![vec![f64::NAN; networks.len()]; atoms];
    for r in &rows {
        let v = match score {
            map::Score::Dice => r.dice,
            map::Score::OverlapRate => r.overlap_rate,
            map::Score::Corr => r.corr,
            map::Score::Iou => r.iou,
        };
        let c = networks.iter().position(|n| *n == r.fbn).expect("listed");
        values[r.atom as usize][c] = v as f64;
    }
    let labels: Vec<String> = (0..atoms).map(|a| format!("atom {a}")).collect();
    let vmax = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.2, f64::max);
    let short: Vec<String> = networks.iter().map(|n| short_name(n)).collect();
    let svg = figures::heatmap(
        &format!("{score} of atom × network"),
        &labels,
        &short,
        &values,
        vmax,
    )?;
    page.svg(
        &svg,
        &format!("{} atoms × {} networks", atoms, networks.len()),
    )?;
    page.end();
    Ok(())
}

/// A network name without the atlas's `_Area`/`_Network` decoration, for axis labels.
fn short_name(n: &str) -> String {
    if n.is_empty() || n == "unassigned" {
        return "unassigned".into();
    }
    n.trim_end_matches("_Area")
        .trim_end_matches("_Network")
        .replace('_', " ")
}

pub fn subgroups(page: &mut Page, store: &Store) -> Result<()> {
    let map = &store.recipe.map;
    let rule = match map.ties {
        TieRule::Course => format!("Each AN belongs to the network whose fitted course (the atoms weighted by the network's mean group β) its response follows best in both halves of the stories, when the smaller half's |r| ≥ {}. A tied AN's stability is the share of 200 bootstrap replicates of the subjects that keep it in its network.", map.tie_r),
        TieRule::Dominant => "Each AN belongs to the network of its dominant atom (largest |code|).".into(),
    };
    page.section("subgroups", "ANs by network", &rule);
    let an_fbn = store.paths().map().join("an_fbn.parquet");
    if !an_fbn.is_file() {
        page.note("No an_fbn table in the store's map (made before cortexflow tied ANs to networks): refresh the store's results to tie them.".into());
        page.end();
        return Ok(());
    }
    let rows = read_an_fbn(&an_fbn)?;
    let subs: Vec<(u64, String)> = rows.iter().filter(|r| r.tied).map(|r| (r.an_id, r.fbn.clone())).collect();
    let neurons_path = store.paths().neurons();
    if subs.is_empty() {
        page.note("No AN is tied to a network (no atom is assigned, or no AN follows an assigned network's course).".into());
        page.end();
        return Ok(());
    }
    let mut stability: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.tied && r.stability.is_finite()) {
        let e = stability.entry(r.fbn.as_str()).or_default();
        e.0 += r.stability as f64;
        e.1 += 1;
    }
    if !stability.is_empty() {
        let text: Vec<String> = stability.iter().map(|(n, (s, c))| format!("{} {:.2}", short_name(n), s / *c as f64)).collect();
        page.note(format!("Mean bootstrap share of replicates that keep each tied AN in its network: {}.", text.join(", ")));
    }
    let layer_of: BTreeMap<u64, u16> = if neurons_path.is_file() {
        read_neurons(&neurons_path)?
            .into_iter()
            .map(|n| (n.an_id, n.layer))
            .collect()
    } else {
        BTreeMap::new()
    };
    let networks: Vec<String> = subs
        .iter()
        .map(|s| s.1.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let layers: Vec<u16> = subs
        .iter()
        .filter_map(|s| layer_of.get(&s.0).copied())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let by_network: Vec<f64> = networks
        .iter()
        .map(|n| subs.iter().filter(|s| &s.1 == n).count() as f64)
        .collect();
    let names: Vec<String> = networks.iter().map(|n| short_name(n)).collect();
    let svg = figures::bars(
        "ANs per network",
        "ANs",
        &names,
        &[("ANs".into(), by_network)],
        false,
    )?;
    page.svg(
        &svg,
        &format!(
            "{} ANs tied to a network",
            subs.len()
        ),
    )?;
    if layers.is_empty() {
        page.note("No neurons table in the store: the sub-groups cannot be shown by layer.".into());
    } else {
        let series: Vec<(String, Vec<f64>)> = networks
            .iter()
            .zip(&names)
            .map(|(n, short)| {
                let counts = layers
                    .iter()
                    .map(|l| {
                        subs.iter()
                            .filter(|s| &s.1 == n && layer_of.get(&s.0) == Some(l))
                            .count() as f64
                    })
                    .collect();
                (short.clone(), counts)
            })
            .collect();
        let cats: Vec<String> = layers.iter().map(|l| format!("layer {l}")).collect();
        let svg = figures::bars("ANs per layer and network", "ANs", &cats, &series, true)?;
        page.svg(&svg, "tied ANs of each layer, stacked by network")?;
    }
    page.end();
    Ok(())
}

pub fn encoding(page: &mut Page, store: &Store) -> Result<()> {
    page.section(
        "encoding",
        "Encoding performance",
        "Held-out Pearson r of each voxel's ridge model (leave one run out), pooled over subjects, and its mean over subjects on slices through the best voxel.",
    );
    let subjects: Vec<String> = store.subjects().into_iter().collect();
    let mask_path = store.paths().mask();
    if subjects.is_empty() || !mask_path.is_file() {
        page.note("No subject fits yet: ingest BOLD runs.".into());
        page.end();
        return Ok(());
    }
    let mask = nifti::read_mask(&mask_path)?;
    let mut pooled = Vec::new();
    let mut sum = vec![0.0; mask.len()];
    let mut n = vec![0usize; mask.len()];
    for s in &subjects {
        let path = store.paths().subject_map(s, "cv_r");
        if !path.is_file() {
            continue;
        }
        let r = mask.rows(&nifti::read_image(&path)?);
        for (v, &x) in r.row(0).iter().enumerate() {
            if x.is_finite() {
                pooled.push(x);
                sum[v] += x;
                n[v] += 1;
            }
        }
    }
    if pooled.is_empty() {
        page.note("No cross-validated fit: each subject needs at least 2 runs (and encoding.cv = true in the recipe).".into());
        page.end();
        return Ok(());
    }
    let svg = figures::histogram("Held-out r of every voxel and subject", "cv r", &pooled, 40)?;
    page.svg(
        &svg,
        &format!("{} voxel fits of {} subjects", pooled.len(), subjects.len()),
    )?;
    let mean: Vec<f64> = sum
        .iter()
        .zip(&n)
        .map(|(s, &k)| if k > 0 { s / k as f64 } else { f64::NAN })
        .collect();
    positive_slices(page, &mask, &mean, "mean held-out r", "mean held-out r over subjects")?;
    page.end();
    Ok(())
}

/// A viewer of a masked map's positive part over the template, saturating at its largest
/// value (at least 0.05), its cross-hair at the peak.
pub fn positive_slices(page: &mut Page, mask: &Mask, values: &[f64], label: &str, what: &str) -> Result<()> {
    let positive: Vec<f64> = values.iter().map(|&m| if m > 0.0 { m } else { 0.0 }).collect();
    let (bg, _) = slices::background(mask)?;
    let vmax = values.iter().copied().filter(|v| v.is_finite()).fold(0.05, f64::max);
    let viewers = Viewers::new(page, mask, &bg, &[]);
    let view = MapView {
        label,
        atom: None,
        values: &positive,
        threshold: 0.0,
        vmax,
        outline: None,
        cut: Volume::from_masked(mask, &positive).peak(),
    };
    viewers.figure(page, &view, &format!("{what} (positive part; saturates at {vmax:.2})"))
}

pub fn metrics(page: &mut Page, store: &Store) -> Result<()> {
    let path = store.paths().map().join("metrics.parquet");
    page.section(
        "metrics",
        "Organisation metrics",
        "Per model (and per layer in metrics.parquet): the share of ANs per network, diversity, compactness and consistency (definitions in the README).",
    );
    if !path.is_file() {
        page.note("No metrics yet (they come with the group maps).".into());
        page.end();
        return Ok(());
    }
    let rows: Vec<_> = read_metrics(&path)?
        .into_iter()
        .filter(|r| r.layer.is_none())
        .collect();
    page.body
        .push_str("<table class=\"metrics\"><tr><th>model</th><th>metric</th><th>value</th></tr>");
    for r in &rows {
        let _ = write!(
            page.body,
            "<tr><td>{}</td><td>{}</td><td>{:.4}</td></tr>",
            esc(&r.model),
            esc(&r.metric),
            r.value
        );
    }
    page.body.push_str("</table>");
    let shares: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|r| {
            r.metric
                .strip_prefix("share:")
                .map(|n| (short_name(n), r.value))
        })
        .collect();
    if !shares.is_empty() {
        let (names, values): (Vec<String>, Vec<f64>) = shares.into_iter().unzip();
        let svg = figures::bars(
            "Share of the model's ANs",
            "share",
            &names,
            &[("share".into(), values)],
            false,
        )?;
        page.svg(&svg, "AN shares (networks, unassigned, uncoded) sum to 1")?;
    }
    page.end();
    Ok(())
}

pub fn comparison(page: &mut Page, stores: &[PathBuf]) -> Result<()> {
    page.section(
        "compare",
        "Models compared",
        "The whole-model metrics of each store given to `report`.",
    );
    let maps: Vec<PathBuf> = stores.iter().map(|s| crate::store::Layout::new(s).map()).collect();
    match compare_analyses(&maps) {
        Ok(c) => {
            let names: Vec<String> = c.networks.iter().map(|n| short_name(n)).collect();
            let svg = figures::bars(
                FIGURE_TITLE,
                FIGURE_Y,
                &names,
                &c.series,
                false,
            )?;
            page.svg(&svg, &format!("{} analyses", stores.len()))?;
            let _ = write!(page.body, "<pre>{}</pre>", esc(&c.table));
        }
        Err(e) => page.note(format!("No comparison: {e:#}")),
    }
    page.end();
    Ok(())
}
