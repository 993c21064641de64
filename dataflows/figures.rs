//! Figures as SVG files (plotters' SVG backend writes text as <text>, so no font files are
//! needed and the figures stay readable and searchable in a browser).

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// Colours of the series, in order (Okabe–Ito, distinguishable with colour blindness).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

/// Grouped bars: one group per category, one bar per series within it; written atomically.
pub fn grouped_bars(
    path: &Path,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
) -> Result<()> {
    let mut svg = String::new();
    {
        let width = (160 + 90 * categories.len().max(1)) as u32;
        let root = SVGBackend::with_string(&mut svg, (width.max(640), 420)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| anyhow!("{}: drawing failed: {e}", path.display());
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let top = series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.1;
        let n = categories.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(70)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)
            .map_err(|e| err(&e))?;
        let labels = categories.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                labels.get(i).cloned().unwrap_or_default()
            })
            .y_desc(y_label)
            .draw()
            .map_err(|e| err(&e))?;
        let width = 0.8 / series.len().max(1) as f64;
        for (s, (name, values)) in series.iter().enumerate() {
            let colour = PALETTE[s % PALETTE.len()];
            chart
                .draw_series(
                    values
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| v.is_finite())
                        .map(|(c, &v)| {
                            let x0 = c as f64 + 0.1 + s as f64 * width;
                            Rectangle::new([(x0, 0.0), (x0 + width, v)], colour.filled())
                        }),
                )
                .map_err(|e| err(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    cortexflow::io::store::write_file_atomically(path, |w| w.write_all(svg.as_bytes()))?;
    Ok(())
}
