//! Figures as SVG text (plotters' SVG backend writes text as <text>, so no font files are
//! needed and the figures stay readable and searchable in a browser). Each function
//! returns the SVG; the report inlines it, `compare` writes it to a file.

use std::path::Path;

use crate::error::{err, Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Colours of the series, in order (Okabe–Ito, distinguishable with colour blindness).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws on a fresh white SVG of `size` and returns its text.
/// Tick labels and axis titles: plotters' SVG backend writes a font of size s as
/// s / 1.24 px, so these are about 13 and 14 px on the page (its defaults scale with the
/// chart and came out at 4–10 px).
const TICKS: (&str, u32) = ("sans-serif", 16);
const AXES: (&str, u32) = ("sans-serif", 17);

fn svg(size: (u32, u32), draw: impl FnOnce(&Area) -> Result<()>) -> Result<String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE).map_err(fail)?;
        draw(&root)?;
        root.present().map_err(fail)?;
    }
    Ok(text)
}

fn fail(e: impl std::fmt::Display) -> Error {
    err!("drawing a figure failed: {e}")
}

/// The label of the category whose centre is at `x` (key points fall every half
/// category when `2n + 1` labels are asked for), empty elsewhere.
fn centre_label(labels: &[String], x: f64) -> String {
    let centre = (x - x.floor() - 0.5).abs() < 1e-6;
    labels
        .get(x.floor() as usize)
        .filter(|_| centre)
        .cloned()
        .unwrap_or_default()
}

/// Largest finite value (at least `floor`), with 10 % headroom.
fn top(values: impl Iterator<Item = f64>, floor: f64) -> f64 {
    values.filter(|v| v.is_finite()).fold(floor, f64::max) * 1.1
}

/// Bars per category: side by side (`stacked` false) or stacked; one series each colour.
pub fn bars(
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
    stacked: bool,
) -> Result<String> {
    let n = categories.len().max(1);
    let totals: Vec<f64> = (0..n)
        .map(|c| {
            series
                .iter()
                .filter_map(|s| s.1.get(c))
                .filter(|v| v.is_finite())
                .sum()
        })
        .collect();
    let ymax = if stacked {
        top(totals.into_iter(), 1e-9)
    } else {
        top(series.iter().flat_map(|s| s.1.iter().copied()), 1e-9)
    };
    let width = (160 + 60 * n).max(640) as u32;
    svg((width, 420), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(70)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..ymax)
            .map_err(fail)?;
        let labels = categories.to_vec();
        // Ask for a key point every half category and label only the centres.
        chart
            .configure_mesh()
            .label_style(TICKS)
            .axis_desc_style(AXES)
            .disable_x_mesh()
            .x_labels(2 * n + 1)
            .x_label_formatter(&|x| centre_label(&labels, *x))
            .y_desc(y_label)
            .draw()
            .map_err(fail)?;
        let bar = if stacked {
            0.8
        } else {
            0.8 / series.len().max(1) as f64
        };
        let mut base = vec![0.0; n];
        for (s, (name, values)) in series.iter().enumerate() {
            let colour = PALETTE[s % PALETTE.len()];
            let rects: Vec<Rectangle<(f64, f64)>> = values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(c, &v)| {
                    let x0 = c as f64 + 0.1 + if stacked { 0.0 } else { s as f64 * bar };
                    let y0 = if stacked { base[c] } else { 0.0 };
                    if stacked {
                        base[c] += v;
                    }
                    Rectangle::new([(x0, y0), (x0 + bar, y0 + v)], colour.filled())
                })
                .collect();
            chart
                .draw_series(rects)
                .map_err(fail)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled())
                });
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .label_font(TICKS)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(fail)?;
        }
        Ok(())
    })
}

/// Grouped bars written to `path` (atomically).
pub fn grouped_bars(
    path: &Path,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
) -> Result<()> {
    let text = bars(title, y_label, categories, series, false)
        .map_err(|e| err!("{}: {e}", path.display()))?;
    crate::io::atomic::write_file_atomically(path, |w| w.write_all(text.as_bytes()))?;
    Ok(())
}

/// Small multiples: one line panel per series, stacked, sharing the x axis (scans).
pub fn panels(title: &str, x_label: &str, series: &[(String, Vec<f64>)]) -> Result<String> {
    let rows = series.len().max(1);
    svg((900, 60 + 70 * rows as u32), |root| {
        let (head, body) = root.split_vertically(40);
        head.titled(title, ("sans-serif", 18)).map_err(fail)?;
        for (area, (s, (name, values))) in body
            .split_evenly((rows, 1))
            .iter()
            .zip(series.iter().enumerate())
        {
            let lo = values
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(0.0, f64::min);
            let hi = values
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max);
            let pad = ((hi - lo) * 0.05).max(1e-9);
            let last = s + 1 == series.len();
            let mut chart = ChartBuilder::on(area)
                .margin_right(12)
                .x_label_area_size(if last { 30 } else { 0 })
                .y_label_area_size(90)
                .build_cartesian_2d(0f64..values.len().max(2) as f64 - 1.0, lo - pad..hi + pad)
                .map_err(fail)?;
            let mut mesh = chart.configure_mesh();
            mesh.disable_mesh().y_labels(2).y_desc(name.as_str()).label_style(TICKS).axis_desc_style(AXES);
            if last {
                mesh.x_desc(x_label);
            }
            mesh.draw().map_err(fail)?;
            let colour = PALETTE[s % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    values.iter().enumerate().map(|(t, &v)| (t as f64, v)),
                    colour.stroke_width(1),
                ))
                .map_err(fail)?;
        }
        Ok(())
    })
}

/// A heat map of `values[row][col]` in [0, vmax], white to dark blue, with the values
/// written in the cells.
pub fn heatmap(
    title: &str,
    rows: &[String],
    cols: &[String],
    values: &[Vec<f64>],
    vmax: f64,
) -> Result<String> {
    let (nr, nc) = (rows.len().max(1), cols.len().max(1));
    let size = (220 + 90 * nc as u32, 120 + 26 * nr as u32);
    svg(size, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(90)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..nc as f64, nr as f64..0f64)
            .map_err(fail)?;
        let (rl, cl) = (rows.to_vec(), cols.to_vec());
        chart
            .configure_mesh()
            .label_style(TICKS)
            .axis_desc_style(AXES)
            .disable_mesh()
            .x_labels(2 * nc + 1)
            .y_labels(2 * nr + 1)
            .x_label_formatter(&|x| centre_label(&cl, *x))
            .y_label_formatter(&|y| centre_label(&rl, *y))
            .draw()
            .map_err(fail)?;
        let cells = values
            .iter()
            .enumerate()
            .flat_map(|(r, row)| row.iter().enumerate().map(move |(c, &v)| (r, c, v)));
        for (r, c, v) in cells {
            let f = if v.is_finite() {
                (v / vmax.max(1e-12)).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let shade = RGBColor(
                (255.0 - f * 247.0) as u8,
                (255.0 - f * 207.0) as u8,
                (255.0 - f * 148.0) as u8,
            );
            let (x, y) = (c as f64, r as f64);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x, y), (x + 1.0, y + 1.0)],
                    shade.filled(),
                )))
                .map_err(fail)?;
            let ink = if f > 0.55 { WHITE } else { BLACK };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{v:.2}"),
                    (x + 0.5, y + 0.5),
                    ("sans-serif", 15).into_font().color(&ink).pos(Pos::new(HPos::Center, VPos::Center)),
                )))
                .map_err(fail)?;
        }
        Ok(())
    })
}

/// A histogram of the finite `values` in `bins` equal bins.
pub fn histogram(title: &str, x_label: &str, values: &[f64], bins: usize) -> Result<String> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let lo = finite
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(0.0);
    let hi = finite
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .max(lo + 1e-9);
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for v in &finite {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let ymax = top(counts.iter().map(|&c| c as f64), 1.0);
    svg((640, 360), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, 0f64..ymax)
            .map_err(fail)?;
        chart
            .configure_mesh()
            .label_style(TICKS)
            .axis_desc_style(AXES)
            .disable_x_mesh()
            .x_desc(x_label)
            .y_desc("voxels")
            .draw()
            .map_err(fail)?;
        chart
            .draw_series(counts.iter().enumerate().map(|(b, &c)| {
                let x0 = lo + b as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], PALETTE[0].filled())
            }))
            .map_err(fail)?;
        Ok(())
    })
}
