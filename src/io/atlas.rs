//! Functional-brain-network templates on the data's voxels, from three kinds of atlas:
//!
//! - a label volume (one integer per voxel, network = label; e.g. Yeo 2011 7/17), with
//!   names from a `label,name` CSV;
//! - a 4-D probability or statistic volume (one network per volume, e.g. Smith 2009
//!   RSN10), each thresholded at `value ≥ threshold`;
//! - coordinates (ROI centres in MNI mm with a network label, e.g. Dosenbach 2010, Seitzman
//!   2018), each ROI a sphere of its radius around the centre; a network is the union of its
//!   spheres. ROIs labelled `unassigned` belong to no network and are skipped.
//!
//! Volumes reach the data grid by nearest-neighbour resampling through the affines; spheres
//! take the voxels whose centre (through the data affine) lies within the radius.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::Axis;

use super::nifti::{labels_on, Image, Mask};
use crate::error::{Error, Result};

/// One network as a set of the data mask's voxels.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub name: String,
    /// `voxels[v]`: masked voxel v is in the network.
    pub voxels: Vec<bool>,
}

impl Template {
    pub fn size(&self) -> usize {
        self.voxels.iter().filter(|&&b| b).count()
    }
}

/// A region of interest of a coordinate atlas.
#[derive(Debug, Clone, PartialEq)]
pub struct Roi {
    /// Centre in world (MNI) millimetres.
    pub centre: [f64; 3],
    pub radius_mm: f64,
    pub network: String,
    /// The region's own name, from a `name` column (Dosenbach's "vmPFC", "dACC", …).
    pub name: Option<String>,
}

/// Reads `label,name` lines (a header or label 0 is skipped); labels must be integers.
pub fn read_label_names(path: &Path, text: &str) -> Result<BTreeMap<u32, String>> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let Some((label, name)) = line.split_once(',') else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(Error::at_line(path, n + 1, "expected 'label,name'"));
        };
        match label.trim().parse::<u32>() {
            Ok(0) => {}
            Ok(l) => {
                out.insert(l, name.trim().to_string());
            }
            Err(_) if n == 0 => {} // a header row
            Err(_) => {
                return Err(Error::at_line(
                    path,
                    n + 1,
                    format!("label '{}' is not a non-negative integer", label.trim()),
                ))
            }
        }
    }
    Ok(out)
}

/// One template per label present in `image` (first volume), named from `names`
/// ("label N" when a label has no name), in label order.
pub fn label_templates(image: &Image, names: &BTreeMap<u32, String>, mask: &Mask) -> Vec<Template> {
    let labels = labels_on(image, &mask.grid);
    let on_mask: Vec<u32> = mask
        .ijk()
        .map(|p| {
            let l = labels[p];
            if l.is_finite() && l > 0.0 {
                l.round() as u32
            } else {
                0
            }
        })
        .collect();
    let mut present: Vec<u32> = names.keys().copied().collect();
    present.extend(on_mask.iter().copied().filter(|&l| l > 0));
    present.sort_unstable();
    present.dedup();
    present
        .into_iter()
        .map(|l| Template {
            name: names
                .get(&l)
                .cloned()
                .unwrap_or_else(|| format!("label {l}")),
            voxels: on_mask.iter().map(|&x| x == l).collect(),
        })
        .collect()
}

/// One template per volume of a 4-D `image`, voxels with value ≥ `threshold`.
pub fn probability_templates(
    image: &Image,
    names: &BTreeMap<u32, String>,
    threshold: f64,
    mask: &Mask,
) -> Vec<Template> {
    image
        .data
        .axis_iter(Axis(3))
        .enumerate()
        .map(|(i, vol)| {
            let one = Image {
                header: image.header.clone(),
                data: vol.to_owned().insert_axis(Axis(3)),
            };
            let on_grid = labels_on(&one, &mask.grid);
            let label = i as u32 + 1;
            Template {
                name: names
                    .get(&label)
                    .cloned()
                    .unwrap_or_else(|| format!("component {label}")),
                voxels: mask.ijk().map(|p| on_grid[p] as f64 >= threshold).collect(),
            }
        })
        .collect()
}

/// Reads a coordinate atlas: a header row naming columns `x`, `y`, `z`, a network column
/// (`network` or `netName`) and optionally a radius column (`radius…`); comma- or
/// whitespace-separated. ROIs without a radius column get `default_radius_mm`.
pub fn read_coordinates(path: &Path, text: &str, default_radius_mm: f64) -> Result<Vec<Roi>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(Error::format(path, "empty coordinate file"));
    };
    let split = |l: &str| -> Vec<String> {
        if header.contains(',') {
            l.split(',').map(|s| s.trim().to_string()).collect()
        } else {
            l.split_whitespace().map(str::to_string).collect()
        }
    };
    let cols = split(header);
    let find = |pred: &dyn Fn(&str) -> bool| cols.iter().position(|c| pred(&c.to_lowercase()));
    let need = |name: &str, i: Option<usize>| {
        i.ok_or_else(|| {
            Error::at_line(
                path,
                1,
                format!("no '{name}' column in the header {cols:?}"),
            )
        })
    };
    let x = need("x", find(&|c| c == "x"))?;
    let y = need("y", find(&|c| c == "y"))?;
    let z = need("z", find(&|c| c == "z"))?;
    let net = need("network", find(&|c| c == "network" || c == "netname"))?;
    let radius = find(&|c| c.starts_with("radius"));
    let name = find(&|c| c == "name");
    let mut rois = Vec::new();
    for (n, line) in lines {
        let f = split(line);
        let num = |i: usize, what: &str| -> Result<f64> {
            let s = f.get(i).ok_or_else(|| {
                Error::at_line(path, n + 1, format!("{} fields, no {what}", f.len()))
            })?;
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| Error::at_line(path, n + 1, format!("{what} '{s}' is not a number")))
        };
        let centre = [num(x, "x")?, num(y, "y")?, num(z, "z")?];
        let radius_mm = match radius {
            Some(r) => num(r, "radius")?,
            None => default_radius_mm,
        };
        if radius_mm <= 0.0 {
            return Err(Error::at_line(
                path,
                n + 1,
                format!("radius {radius_mm} ≤ 0"),
            ));
        }
        let network = f
            .get(net)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::at_line(path, n + 1, "no network label"))?
            .clone();
        if network.eq_ignore_ascii_case("unassigned") {
            continue;
        }
        rois.push(Roi {
            centre,
            radius_mm,
            network,
            name: name.and_then(|i| f.get(i)).filter(|s| !s.is_empty()).cloned(),
        });
    }
    if rois.is_empty() {
        return Err(Error::format(path, "no ROI rows"));
    }
    Ok(rois)
}

/// One template per network (sorted by name): the union of its ROIs' spheres.
pub fn sphere_templates(rois: &[Roi], mask: &Mask) -> Vec<Template> {
    let world: Vec<[f64; 3]> = mask
        .ijk()
        .map(|[i, j, k]| mask.grid.affine.apply([i as f64, j as f64, k as f64]))
        .collect();
    let mut by_network: BTreeMap<&str, Vec<bool>> = BTreeMap::new();
    for roi in rois {
        let voxels = by_network
            .entry(&roi.network)
            .or_insert_with(|| vec![false; world.len()]);
        let r2 = roi.radius_mm * roi.radius_mm;
        for (v, p) in world.iter().enumerate() {
            let d2: f64 = (0..3).map(|a| (p[a] - roi.centre[a]).powi(2)).sum();
            voxels[v] |= d2 <= r2;
        }
    }
    by_network
        .into_iter()
        .map(|(name, voxels)| Template {
            name: name.to_string(),
            voxels,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinate_files_and_their_errors() {
        let p = Path::new("rois.csv");
        let csv =
            "number,x,y,z,name,network\n1,6,64,3,vmPFC,default\n2,29,57,18,aPFC,fronto-parietal\n";
        let rois = read_coordinates(p, csv, 5.0).unwrap();
        assert_eq!(rois.len(), 2);
        assert_eq!(rois[1].centre, [29.0, 57.0, 18.0]);
        assert_eq!(rois[0].radius_mm, 5.0);
        assert_eq!(rois[1].name.as_deref(), Some("aPFC"));
        let txt = "x y z radius(mm) netWorkbenchLabel netName\n-56.16 -44.76 -24.23 5 0 unassigned\n1 2 3 4 1 Visual\n";
        let rois = read_coordinates(p, txt, 9.0).unwrap();
        assert_eq!(
            rois,
            vec![Roi {
                centre: [1.0, 2.0, 3.0],
                radius_mm: 4.0,
                network: "Visual".into(),
                name: None
            }]
        );
        let bad = "x,y,z,network\n1,2,3,a\n4,five,6,b\n";
        let e = read_coordinates(p, bad, 5.0).unwrap_err().to_string();
        assert!(e.contains("rois.csv:3") && e.contains("'five'"), "{e}");
        let e = read_coordinates(p, "a,b\n1,2\n", 5.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no 'x' column"), "{e}");
        let e = read_coordinates(p, "x,y,z,network\n1,2\n", 5.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2") && e.contains("no z"), "{e}");
    }

    #[test]
    fn label_names() {
        let names =
            read_label_names(Path::new("n.csv"), "0,empty\n1,1_Visual\n7,Default\n").unwrap();
        assert_eq!(names.len(), 2);
        assert_eq!(names[&7], "Default");
        assert!(read_label_names(Path::new("n.csv"), "0,a\nx,b\n").is_err());
    }
}
