//! SVG charts of a sweep in the layout of the paper's Fig. 2-5: one panel
//! per latency part (delay figure) or cost part (cost figure), one line per
//! algorithm.

use std::path::Path;

use edgehost_placement::Algorithm;
use plotters::prelude::*;

use crate::sweep::{SweepAxis, SweepPoint};
use crate::{Error, Result};

/// A panel: title, unit, and how to read its value from a point.
type Panel = (&'static str, &'static str, fn(&SweepPoint) -> f64);

const DELAY_PANELS: [Panel; 6] = [
    ("Transmit latency", "s", |p| p.tra),
    ("Migration latency", "s", |p| p.mig),
    ("Initiation latency", "s", |p| p.ini),
    ("Processing latency", "s", |p| p.pro),
    ("Total latency", "s", |p| p.total),
    ("EAD objective", "s", |p| p.objective),
];

const COST_PANELS: [Panel; 4] = [
    ("CPU cost", "s", |p| p.cpu),
    ("Storage cost", "GB", |p| p.storage),
    ("Communication cost", "MB", |p| p.comm),
    ("Total resource cost", "score", |p| p.cost_total),
];

fn chart_error(e: impl std::fmt::Display) -> Error {
    Error::Chart(e.to_string())
}

fn draw(
    path: &Path,
    title: &str,
    axis: SweepAxis,
    points: &[SweepPoint],
    panels: &[Panel],
    grid: (usize, usize),
) -> Result<()> {
    let mut algorithms: Vec<Algorithm> = points.iter().filter_map(|p| p.algorithm).collect();
    algorithms.sort();
    algorithms.dedup();
    let x_min = points.iter().map(|p| p.value).min().unwrap_or(0) as f64;
    let x_max = points.iter().map(|p| p.value).max().unwrap_or(1) as f64;
    let x_range = if x_max > x_min {
        x_min..x_max
    } else {
        (x_min - 0.5)..(x_max + 0.5)
    };

    let root =
        SVGBackend::new(path, (480 * grid.1 as u32, 380 * grid.0 as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let root = root
        .titled(title, ("sans-serif", 24))
        .map_err(chart_error)?;
    for (area, (name, unit, value)) in root.split_evenly(grid).iter().zip(panels) {
        let y_max = points
            .iter()
            .filter(|p| p.is_complete())
            .map(value)
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(*name, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range.clone(), 0.0..y_max)
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .x_desc(axis.label())
            .y_desc(*unit)
            .x_labels(points.len().min(10))
            .draw()
            .map_err(chart_error)?;
        for (i, &algorithm) in algorithms.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let data: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.algorithm == Some(algorithm) && p.is_complete())
                .map(|p| (p.value as f64, value(p)))
                .collect();
            chart
                .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
                .map_err(chart_error)?
                .label(algorithm.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    data.iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
                )
                .map_err(chart_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(chart_error)?;
    }
    root.present().map_err(chart_error)?;
    Ok(())
}

/// Writes the delay and cost figures of a sweep into `dir`; returns their
/// file names.
pub fn write_figures(dir: &Path, axis: SweepAxis, points: &[SweepPoint]) -> Result<Vec<String>> {
    let (delay_fig, cost_fig) = match axis {
        SweepAxis::Servers => ("fig2", "fig3"),
        SweepAxis::Tasks => ("fig4", "fig5"),
        SweepAxis::Warm => ("warm", "warm"),
    };
    let delay = format!("{delay_fig}-delay-vs-{}.svg", axis.name());
    let cost = format!("{cost_fig}-cost-vs-{}.svg", axis.name());
    draw(
        &dir.join(&delay),
        &format!("Delay against the {}", axis.label()),
        axis,
        points,
        &DELAY_PANELS,
        (2, 3),
    )?;
    draw(
        &dir.join(&cost),
        &format!("Resource cost against the {}", axis.label()),
        axis,
        points,
        &COST_PANELS,
        (2, 2),
    )?;
    Ok(vec![delay, cost])
}
