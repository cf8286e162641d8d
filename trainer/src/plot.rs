//! The backtest's PNG: actual total power (blue) against the model's
//! one-step-ahead prediction (red) and persistence (light grey), over the
//! last days of the test period. Bitmap only and no text (plotters without
//! font support keeps the build free of system libraries); the axes are
//! time (left to right) and watts (0 at the bottom line).

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::pipeline::TestPoint;

/// Most points drawn (two days of minutes).
const MAX_POINTS: usize = 2880;

pub fn write_png(path: &Path, points: &[TestPoint]) -> anyhow::Result<()> {
    let pts = &points[points.len().saturating_sub(MAX_POINTS)..];
    anyhow::ensure!(!pts.is_empty(), "nothing to plot");
    let ymax = pts.iter().flat_map(|p| [p.1, p.2]).filter(|v| v.is_finite()).fold(1f32, f32::max) * 1.05;
    let root = BitMapBackend::new(path, (1600, 600)).into_drawing_area();
    root.fill(&WHITE).context("drawing the plot")?;
    let area = root.margin(20, 20, 20, 20);
    let mut chart = ChartBuilder::on(&area)
        .build_cartesian_2d(0f32..pts.len() as f32, 0f32..ymax)
        .context("setting up the plot")?;
    for k in 0..=5 {
        let y = ymax * k as f32 / 5.0;
        chart.draw_series(LineSeries::new([(0.0, y), (pts.len() as f32, y)], RGBColor(225, 225, 225)))?;
    }
    let series = |sel: fn(&TestPoint) -> f32| {
        pts.iter().enumerate().filter(move |(_, p)| sel(p).is_finite()).map(move |(i, p)| (i as f32, sel(p)))
    };
    chart.draw_series(LineSeries::new(series(|p| p.3), RGBColor(190, 190, 190)))?;
    chart.draw_series(LineSeries::new(series(|p| p.1), BLUE))?;
    chart.draw_series(LineSeries::new(series(|p| p.2), RED))?;
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
