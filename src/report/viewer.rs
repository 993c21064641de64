//! The report's explorable brain maps: a slice viewer per atom (click to move the
//! cross-hair; the voxel's MNI coordinates, z value and network under it; a threshold
//! slider), its colour bar and a glass-brain projection, drawn in the page by
//! `viewer.js` from the data written here, with no network.
//!
//! The grid (shape, affine, anatomical background, mask voxels and the network of each)
//! is written once per group-map section as JSON; each figure carries its map
//! over the mask voxels as base64 little-endian f32, so the value shown is the NIfTI's
//! (4·V bytes an atom: 33 kB at 4 mm, 264 kB at 2 mm cortex).

use std::fmt::Write as _;

use base64::Engine as _;

use crate::io::atlas::Template;
use crate::io::nifti::Mask;
use crate::report::page::{esc, Page};
use crate::error::Result;
use crate::report::slices::{orthogonal_png, Picture, Volume};

/// The script that draws every viewer of the page (included once, by `page::document`).
pub const SCRIPT: &str = include_str!("viewer.js");

/// One map's figure.
pub struct MapView<'a> {
    /// What the values are ("group z", "mean held-out r"): the readout's and colour bar's label.
    pub label: &'a str,
    /// The atom, for an atom's map.
    pub atom: Option<usize>,
    /// The map over the mask voxels.
    pub values: &'a [f64],
    /// The initial threshold on |value| (for a group map, the smallest |z| that survived
    /// the group test).
    pub threshold: f64,
    /// |value| at which the colours saturate.
    pub vmax: f64,
    /// The network whose border is drawn (index into the grid's networks).
    pub outline: Option<usize>,
    /// The initial cross-hair (grid indices).
    pub cut: [usize; 3],
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The grid shared by a section's viewers, written once into the page.
pub struct Viewers<'a> {
    id: String,
    mask: &'a Mask,
    background: &'a Volume,
    temps: &'a [Template],
}

impl<'a> Viewers<'a> {
    /// Writes the grid: shape, affine, the anatomical background, the mask's voxels and the
    /// network of each among `temps` (the readout's names; none for a map without an atlas).
    pub fn new(page: &mut Page, mask: &'a Mask, background: &'a Volume, temps: &'a [Template]) -> Viewers<'a> {
        page.grids += 1;
        let id = format!("cf-grid-{}", page.grids);
        let affine: Vec<f64> = mask.grid.affine.0.iter().flatten().copied().collect();
        let bg: Vec<u8> = background.data.iter().map(|v| (v.clamp(0.0, 1.0) * 235.0) as u8).collect();
        let linear: Vec<u8> = mask.linear.iter().flat_map(|&l| (l as u32).to_le_bytes()).collect();
        // The first network that holds each voxel (u16; 65535: none); Yeo's are disjoint.
        let network: Vec<u8> = (0..mask.len())
            .flat_map(|v| (temps.iter().position(|t| t.voxels[v]).map_or(u16::MAX, |t| t.min(65534) as u16)).to_le_bytes())
            .collect();
        let names: Vec<&str> = temps.iter().map(|t| t.name.as_str()).collect();
        let grid = serde_json::json!({
            "shape": mask.grid.shape,
            "affine": affine,
            "background": b64(&bg),
            "mask": b64(&linear),
            "network": b64(&network),
            "networks": names,
        });
        // JSON inside <script>: "<" escaped, so no name can close the element.
        let text = grid.to_string().replace('<', "\\u003c");
        let _ = write!(page.body, "<script type=\"application/json\" id=\"{id}\">{text}</script>");
        Viewers { id, mask, background, temps }
    }

    /// One map's viewer as a figure of the page (its check counts it once the script has
    /// painted it); with a figures folder, also the three slices through the cut as PNG.
    pub fn figure(&self, page: &mut Page, view: &MapView, caption: &str) -> Result<()> {
        let png = || {
            let outline = view.outline.map(|t| {
                let mut full = vec![false; self.mask.grid.n_voxels()];
                for (&l, &inside) in self.mask.linear.iter().zip(&self.temps[t].voxels) {
                    full[l] = inside;
                }
                full
            });
            let shown: Vec<f64> = view.values.iter().map(|&v| if v.abs() >= view.threshold { v } else { 0.0 }).collect();
            let picture = Picture {
                background: self.background,
                overlay: &Volume::from_masked(self.mask, &shown),
                vmax: view.vmax as f32,
                outline: outline.as_deref(),
                cut: view.cut,
            };
            orthogonal_png(&self.mask.grid, &picture)
        };
        page.drawn(png)?;
        let z: Vec<u8> = view.values.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
        let outline = view.outline.map_or(-1, |o| o as i64);
        let [i, j, k] = view.cut;
        let _ = write!(
            page.body,
            "<figure class=\"fig viewer\" id=\"fig{n}\" data-grid=\"{grid}\"{atom} data-label=\"{label}\" data-threshold=\"{thr}\" data-vmax=\"{vmax}\" data-outline=\"{outline}\" data-cut=\"{i},{j},{k}\" data-z=\"{z}\"><figcaption>{caption}</figcaption></figure>",
            n = page.figures,
            grid = self.id,
            atom = view.atom.map_or(String::new(), |a| format!(" data-atom=\"{a}\"")),
            label = esc(view.label),
            thr = view.threshold,
            vmax = view.vmax,
            z = b64(&z),
            caption = esc(caption),
        );
        Ok(())
    }
}
