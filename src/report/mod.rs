//! `cortexflow report STORE [STORE…] [--out report.html]`: one self-contained HTML file
//! (figures inlined as SVG or PNG data URIs; no network, no script from elsewhere) that
//! shows what a store found: the atoms' time courses, each atom's group z map over the
//! MNI template with the outline of its network, the atom × network overlaps, the AN
//! sub-groups by layer and network, the encoding performance, the organisation metrics,
//! and, given several stores, the comparison of their models. A figure that cannot be
//! drawn (one subject, no assigned atom) is replaced by a sentence that says why.

pub mod compare;
pub mod figures;
pub mod slices;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{bail, Result};
use crate::io::nifti::{self, Mask};
use crate::io::parquet::{
    read_atom_fbn, read_atoms, read_metrics, read_neurons, read_subgroups,
};

use slices::{Picture, Volume};
use crate::store::{list, Store};
use crate::stages::compare::{comparison as compare_analyses, FIGURE_TITLE, FIGURE_Y};
use crate::stages::mapping as map;

/// What `report` wrote.
pub struct ReportSummary {
    pub path: PathBuf,
    pub figures: usize,
    pub notes: Vec<String>,
}

/// The page under construction: sections, a figure count and the notes on what is empty.
struct Page {
    body: String,
    figures: usize,
    notes: Vec<String>,
    /// Also write each figure here as figNN.svg / figNN.png.
    files: Option<PathBuf>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Page {
    fn section(&mut self, id: &str, title: &str, intro: &str) {
        let _ = write!(
            self.body,
            "<section id=\"{id}\"><h2>{}</h2><p>{intro}</p>",
            esc(title)
        );
    }
    fn end(&mut self) {
        self.body.push_str("</section>\n");
    }
    fn note(&mut self, text: String) {
        let _ = write!(self.body, "<p class=\"note\">{}</p>", esc(&text));
        self.notes.push(text);
    }
    /// Writes figure `self.figures` to the figures folder, when there is one.
    fn keep(&self, ext: &str, bytes: &[u8]) -> Result<()> {
        if let Some(dir) = &self.files {
            let path = dir.join(format!("fig{:02}.{ext}", self.figures));
            crate::io::atomic::write_file_atomically(&path, |w| w.write_all(bytes))?;
        }
        Ok(())
    }
    fn svg(&mut self, svg: &str, caption: &str) -> Result<()> {
        self.figures += 1;
        self.keep("svg", svg.as_bytes())?;
        // plotters writes an XML declaration-free <svg>; inline it as it is.
        let _ = write!(
            self.body,
            "<figure class=\"fig\" id=\"fig{}\">{svg}<figcaption>{}</figcaption></figure>",
            self.figures,
            esc(caption)
        );
        Ok(())
    }
    fn png(&mut self, png: &[u8], alt: &str, caption: &str) -> Result<()> {
        self.figures += 1;
        self.keep("png", png)?;
        let _ = write!(
            self.body,
            "<figure class=\"fig\" id=\"fig{}\"><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
            self.figures,
            slices::data_uri(png),
            esc(alt),
            esc(caption)
        );
        Ok(())
    }
}

/// Writes the report of `stores` to `out` (and every figure under `figures`, if given).
pub fn run(stores: &[PathBuf], out: &Path, figures: Option<&Path>) -> Result<ReportSummary> {
    let Some(first) = stores.first() else {
        bail!("report: give at least one store");
    };
    let store = Store::open_reader(first)?;
    let mut page = Page {
        body: String::new(),
        figures: 0,
        notes: Vec::new(),
        files: figures.map(Path::to_path_buf),
    };
    summary(&mut page, &store);
    atoms(&mut page, &store)?;
    let group = first.join("group");
    if group.join("thresholded_z.nii.gz").is_file() {
        group_maps(&mut page, &store)?;
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
    encoding(&mut page, &store)?;
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

fn summary(page: &mut Page, store: &Store) {
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

fn atoms(page: &mut Page, store: &Store) -> Result<()> {
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
    let t = map::templates(&store.recipe.map.options(), mask, &tmp);
    std::fs::remove_dir_all(&tmp).ok();
    t
}

fn group_maps(page: &mut Page, store: &Store) -> Result<()> {
    let dir = store.paths().group();
    let mask = nifti::read_mask(&dir.join("mask.nii.gz"))?;
    let sig = mask.rows(&nifti::read_image(&dir.join("thresholded_z.nii.gz"))?);
    let z = mask.rows(&nifti::read_image(&dir.join("z.nii.gz"))?);
    let rows = read_atom_fbn(&store.paths().map().join("atom_fbn.parquet"))?;
    let temps = templates(store, &mask)?;
    let (bg, mni) = slices::background(&mask)?;
    let g = &store.recipe.group;
    let rule = g
        .z_cut
        .map_or(format!("FDR q = {}", g.fdr), |z| format!("|z| ≥ {z}"));
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
    for a in 0..sig.nrows() {
        let overlay = Volume::from_masked(&mask, &sig.row(a).to_vec());
        let peak_of = if overlay.data.iter().any(|v| v.is_finite() && *v != 0.0) {
            overlay.peak()
        } else {
            Volume::from_masked(&mask, &z.row(a).to_vec()).peak()
        };
        let mine: Vec<_> = rows.iter().filter(|r| r.atom as usize == a).collect();
        let assigned = mine.iter().find(|r| r.assigned);
        let outline: Option<Vec<bool>> = assigned.and_then(|r| {
            temps.iter().find(|t| t.name == r.fbn).map(|t| {
                let mut full = vec![false; mask.grid.n_voxels()];
                for (&l, &inside) in mask.linear.iter().zip(&t.voxels) {
                    full[l] = inside;
                }
                full
            })
        });
        let picture = Picture {
            background: &bg,
            overlay: &overlay,
            vmax,
            outline: outline.as_deref(),
            cut: peak_of,
        };
        let png = slices::orthogonal_png(&mask.grid, &picture)?;
        let count = sig
            .row(a)
            .iter()
            .filter(|v| v.is_finite() && **v != 0.0)
            .count();
        let best = mine.iter().max_by(|x, y| x.iou.total_cmp(&y.iou));
        let caption = match (assigned, best) {
            (Some(r), _) => format!(
                "atom {a} → {} (IoU {:.2}, Dice {:.2}); {count} significant voxels",
                r.fbn, r.iou, r.dice
            ),
            (None, _) if count == 0 => format!("atom {a}: no voxel survives the threshold"),
            (None, Some(b)) => format!(
                "atom {a}: unassigned (best {} with IoU {:.2}); {count} significant voxels",
                b.fbn, b.iou
            ),
            (None, None) => format!("atom {a}: unassigned"),
        };
        page.png(&png, &format!("group z map of atom {a}"), &caption)?;
    }
    page.end();
    Ok(())
}

fn overlaps(page: &mut Page, store: &Store) -> Result<()> {
    let rows = read_atom_fbn(&store.paths().map().join("atom_fbn.parquet"))?;
    let score = store.recipe.map.score.clone();
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

fn subgroups(page: &mut Page, store: &Store) -> Result<()> {
    page.section(
        "subgroups",
        "AN sub-groups",
        "Each AN belongs to the sub-group of its dominant atom (largest |code|) and so to that atom's network.",
    );
    let subs = read_subgroups(&store.paths().map().join("subgroups.parquet"))?;
    let neurons_path = store.paths().neurons();
    if subs.is_empty() {
        page.note("No AN has a non-zero code: the sub-groups are empty.".into());
        page.end();
        return Ok(());
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
        .map(|s| s.fbn.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let layers: Vec<u16> = subs
        .iter()
        .filter_map(|s| layer_of.get(&s.an_id).copied())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let by_network: Vec<f64> = networks
        .iter()
        .map(|n| subs.iter().filter(|s| &s.fbn == n).count() as f64)
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
            "{} coded ANs by the network of their dominant atom",
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
                            .filter(|s| &s.fbn == n && layer_of.get(&s.an_id) == Some(l))
                            .count() as f64
                    })
                    .collect();
                (short.clone(), counts)
            })
            .collect();
        let cats: Vec<String> = layers.iter().map(|l| format!("layer {l}")).collect();
        let svg = figures::bars("ANs per layer and network", "ANs", &cats, &series, true)?;
        page.svg(&svg, "coded ANs of each layer, stacked by network")?;
    }
    page.end();
    Ok(())
}

fn encoding(page: &mut Page, store: &Store) -> Result<()> {
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
    let overlay = Volume::from_masked(
        &mask,
        &mean
            .iter()
            .map(|&m| if m > 0.0 { m } else { 0.0 })
            .collect::<Vec<_>>(),
    );
    let (bg, _) = slices::background(&mask)?;
    let vmax = mean
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.05, f64::max) as f32;
    let picture = Picture {
        background: &bg,
        overlay: &overlay,
        vmax,
        outline: None,
        cut: overlay.peak(),
    };
    let png = slices::orthogonal_png(&mask.grid, &picture)?;
    page.png(
        &png,
        "mean held-out r",
        &format!("mean held-out r over subjects (positive part; saturates at {vmax:.2})"),
    )?;
    page.end();
    Ok(())
}

fn metrics(page: &mut Page, store: &Store) -> Result<()> {
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

fn comparison(page: &mut Page, stores: &[PathBuf]) -> Result<()> {
    page.section(
        "compare",
        "Models compared",
        "The whole-model metrics of each store given to `report`.",
    );
    let maps: Vec<PathBuf> = stores.iter().map(|s| s.join("map")).collect();
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

/// The page, with a check that every figure rendered: `data-figures` on <body> becomes
/// `ok:N` or `broken:<ids>` once the page has loaded (the report test reads it).
fn document(store: &Store, page: &Page) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cortexflow report: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
h1 {{ font-size: 1.6em; }} h2 {{ border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }}
figure.fig {{ display: inline-block; margin: .6em; vertical-align: top; }}
figure.fig img {{ image-rendering: pixelated; border: 1px solid #ddd; }}
figcaption {{ font-size: .85em; color: #555; max-width: 700px; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .2em .8em; text-align: left; border-bottom: 1px solid #eee; }}
p.note {{ background: #fff4e0; border-left: 4px solid #e69f00; padding: .5em 1em; }}
</style></head>
<body data-figures="pending">
<h1>cortexflow report</h1>
<p>Generated by cortexflow {version} from <code>{title}</code>. {n} figures; the page needs no network.</p>
{body}
<script>
window.addEventListener("load", () => {{
  const figs = [...document.querySelectorAll("figure.fig")];
  const broken = figs.filter((f) => {{
    const img = f.querySelector("img");
    if (img) return !(img.complete && img.naturalWidth > 0);
    const svg = f.querySelector("svg");
    if (!svg) return true;
    const box = svg.getBBox();
    return !(box.width > 0 && box.height > 0 && svg.querySelectorAll("*").length > 3);
  }});
  document.body.dataset.figures = broken.length ? "broken:" + broken.map((f) => f.id).join(",") : "ok:" + figs.length;
}});
</script>
</body></html>
"#,
        title = esc(&store.dir.display().to_string()),
        version = env!("CARGO_PKG_VERSION"),
        n = page.figures,
        body = page.body
    )
}
