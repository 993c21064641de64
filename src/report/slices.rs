//! Brain maps as pictures: three orthogonal slices (sagittal, coronal, axial) through a
//! chosen voxel, side by side, as a PNG (the figures folder's copy of a viewer). The background is the MNI152 T1 template (embedded
//! for the 4 mm and 2 mm MNI grids; other grids show the analysis mask in grey); the
//! overlay is a signed map (warm for positive, cool for negative, transparent at zero); an
//! optional outline marks the border of a network. Axes are shown with world coordinates
//! increasing to the right and upwards (left hemisphere on the left).

use crate::error::{Context, Result};
use crate::io::nifti::{Grid, Mask};

use crate::io::embedded;

/// A scalar volume on a grid, x fastest.
pub struct Volume {
    pub shape: [usize; 3],
    pub data: Vec<f32>,
}

impl Volume {
    /// Masked values on the full grid (NaN outside the mask).
    pub fn from_masked(mask: &Mask, values: &[f64]) -> Volume {
        let mut data = vec![f32::NAN; mask.grid.n_voxels()];
        for (&l, &v) in mask.linear.iter().zip(values) {
            data[l] = v as f32;
        }
        Volume {
            shape: mask.grid.shape,
            data,
        }
    }

    fn at(&self, [i, j, k]: [usize; 3]) -> f32 {
        let [nx, ny, _] = self.shape;
        self.data[i + nx * (j + ny * k)]
    }

    /// The voxel of largest |value| (the centre of the grid when all are zero or NaN).
    pub fn peak(&self) -> [usize; 3] {
        let [nx, ny, nz] = self.shape;
        let best = self
            .data
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite() && **v != 0.0)
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
        match best {
            Some((l, _)) => [l % nx, (l / nx) % ny, l / (nx * ny)],
            None => [nx / 2, ny / 2, nz / 2],
        }
    }
}

/// The anatomical background for `mask`'s grid: the embedded MNI T1 when the grid is one
/// of its two, else the mask itself in grey.
pub fn background(mask: &Mask) -> Result<(Volume, bool)> {
    for bytes in [embedded::MNI_T1_4MM, embedded::MNI_T1_2MM] {
        let img = embedded::image(bytes, "the embedded MNI template")?;
        if img.header.grid.matches(&mask.grid, 1e-3) {
            let data = first_volume(&img.data)
                .into_iter()
                .map(|v| v / 255.0)
                .collect();
            return Ok((
                Volume {
                    shape: mask.grid.shape,
                    data,
                },
                true,
            ));
        }
    }
    let ones = vec![0.6; mask.len()];
    let mut v = Volume::from_masked(mask, &ones);
    v.data
        .iter_mut()
        .filter(|x| x.is_nan())
        .for_each(|x| *x = 0.0);
    Ok((v, false))
}

/// The first volume of `a` in x-fastest order (whatever its memory layout).
pub fn first_volume(a: &ndarray::Array4<f32>) -> Vec<f32> {
    let (nx, ny, nz, _) = a.dim();
    let mut out = Vec::with_capacity(nx * ny * nz);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                out.push(a[[i, j, k, 0]]);
            }
        }
    }
    out
}

/// What to draw over the background.
pub struct Picture<'a> {
    pub background: &'a Volume,
    pub overlay: &'a Volume,
    /// |overlay| at which the colour saturates.
    pub vmax: f32,
    pub outline: Option<&'a [bool]>,
    pub cut: [usize; 3],
}

/// Pixels per voxel so that a slice is about 200 px wide.
fn scale(grid: &Grid) -> usize {
    (220 / grid.shape[0].max(grid.shape[1]).max(1)).max(1)
}

/// The network outline's colour (Okabe–Ito bluish green).
const OUTLINE: [u8; 3] = [0, 158, 115];

/// Warm (dark red → yellow) for positive, cool (dark blue → cyan) for negative.
fn colour(v: f32, vmax: f32) -> [u8; 3] {
    let f = (v.abs() / vmax.max(1e-6)).clamp(0.0, 1.0);
    let ramp = |a: f32, b: f32| (a + (b - a) * f) as u8;
    if v > 0.0 {
        [ramp(180.0, 255.0), ramp(20.0, 240.0), ramp(0.0, 60.0)]
    } else {
        [ramp(0.0, 60.0), ramp(40.0, 230.0), ramp(180.0, 255.0)]
    }
}

/// The three slices as one PNG.
/// (Longer than ~80 lines on purpose: The three slices are drawn into one image and share its scale and colour map.)
pub fn orthogonal_png(grid: &Grid, p: &Picture) -> Result<Vec<u8>> {
    let [nx, ny, nz] = grid.shape;
    let s = scale(grid);
    let a = &grid.affine.0;
    // Each panel: (width axis, height axis, fixed axis and index).
    let panels = [(1usize, 2usize, 0usize), (0, 2, 1), (0, 1, 2)];
    let dims = [nx, ny, nz];
    let gap = 4;
    let width: usize = panels
        .iter()
        .map(|&(u, _, _)| dims[u] * s + gap)
        .sum::<usize>()
        - gap;
    let height = panels
        .iter()
        .map(|&(_, v, _)| dims[v] * s)
        .max()
        .unwrap_or(1);
    let mut rgb = vec![0u8; width * height * 3];
    let inside = |l: usize| p.outline.is_some_and(|o| o[l]);
    let mut x0 = 0;
    for &(u, v, fixed) in &panels {
        for pu in 0..dims[u] {
            for pv in 0..dims[v] {
                // Flip an axis whose world coordinate decreases with the index.
                let iu = if a[u][u] < 0.0 { dims[u] - 1 - pu } else { pu };
                let iv = if a[v][v] < 0.0 { dims[v] - 1 - pv } else { pv };
                let mut ijk = [0; 3];
                ijk[u] = iu;
                ijk[v] = iv;
                ijk[fixed] = p.cut[fixed];
                let l = ijk[0] + nx * (ijk[1] + ny * ijk[2]);
                let g = (p.background.at(ijk).clamp(0.0, 1.0) * 235.0) as u8;
                let mut px = [g, g, g];
                let o = p.overlay.at(ijk);
                if o.is_finite() && o != 0.0 {
                    px = colour(o, p.vmax);
                }
                // Image rows run top to bottom: the height axis upwards.
                let (bx, by) = (x0 + pu * s, height - (pv + 1) * s);
                for dy in 0..s {
                    for dx in 0..s {
                        rgb[((by + dy) * width + bx + dx) * 3..][..3].copy_from_slice(&px);
                    }
                }
                if inside(l) {
                    // The network's border: a one-pixel line on each side of the voxel whose
                    // in-plane neighbour is outside the network (display directions).
                    for (du, dv) in [(1i64, 0i64), (-1, 0), (0, 1), (0, -1)] {
                        let (nu, nv) = (pu as i64 + du, pv as i64 + dv);
                        let outside =
                            nu < 0 || nv < 0 || nu >= dims[u] as i64 || nv >= dims[v] as i64 || {
                                let mut n = ijk;
                                n[u] = if a[u][u] < 0.0 {
                                    dims[u] - 1 - nu as usize
                                } else {
                                    nu as usize
                                };
                                n[v] = if a[v][v] < 0.0 {
                                    dims[v] - 1 - nv as usize
                                } else {
                                    nv as usize
                                };
                                !inside(n[0] + nx * (n[1] + ny * n[2]))
                            };
                        if !outside {
                            continue;
                        }
                        for t in 0..s {
                            let (x, y) = match (du, dv) {
                                (1, _) => (bx + s - 1, by + t),
                                (-1, _) => (bx, by + t),
                                (_, 1) => (bx + t, by),
                                _ => (bx + t, by + s - 1),
                            };
                            rgb[(y * width + x) * 3..][..3].copy_from_slice(&OUTLINE);
                        }
                    }
                }
            }
        }
        x0 += dims[u] * s + gap;
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().context("PNG header")?;
        w.write_image_data(&rgb).context("PNG data")?;
    }
    Ok(out)
}
