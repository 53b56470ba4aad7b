//! The experiment's charts, as SVG: measured delay and cost per algorithm
//! against the number of servers and of tasks (the layout of the paper's
//! Fig. 2-5), and predicted against measured for each latency part.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::experiment::Row;

fn chart_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// One line per algorithm: (x, mean of `value`) over the user's queries.
fn series(rows: &[Row], sweep: &str, value: fn(&Row) -> f64) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut sums: BTreeMap<(String, usize), (f64, f64)> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.sweep == sweep && r.phase == "beijing")
    {
        let x = if sweep == "servers" {
            r.servers
        } else {
            r.tasks
        };
        let e = sums.entry((r.algorithm.clone(), x)).or_default();
        e.0 += value(r);
        e.1 += 1.0;
    }
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for ((algorithm, x), (sum, n)) in sums {
        out.entry(algorithm).or_default().push((x as f64, sum / n));
    }
    out
}

fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    data: &BTreeMap<String, Vec<(f64, f64)>>,
) -> Result<()> {
    let xs = data.values().flatten().map(|p| p.0);
    let (x_min, x_max) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    if x_min > x_max {
        return Ok(());
    }
    let y_max = data
        .values()
        .flatten()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.15;
    let root = SVGBackend::new(path, (640, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min - 0.25)..(x_max + 0.25), 0.0..y_max)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_labels(8)
        .draw()
        .map_err(chart_error)?;
    for (i, (algorithm, points)) in data.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(chart_error)?
            .label(algorithm.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .iter()
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
    root.present().map_err(chart_error)
}

/// Predicted against measured, one panel per part, with the line y = x.
fn predicted(path: &Path, rows: &[Row]) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let root = root
        .titled(
            "Predicted against measured, per task (ms)",
            ("sans-serif", 20),
        )
        .map_err(chart_error)?;
    for (k, (area, name)) in root
        .split_evenly((1, 3))
        .iter()
        .zip(["T_tra", "T_pro", "T_r"])
        .enumerate()
    {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| r.predicted[k].map(|p| (r.measured[k], p)))
            .collect();
        let top = points.iter().map(|p| p.0.max(p.1)).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..top, 0.0..top)
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .x_desc("measured")
            .y_desc("predicted")
            .draw()
            .map_err(chart_error)?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (top, top)], BLACK.mix(0.4)))
            .map_err(chart_error)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&p| Circle::new(p, 2, BLUE.mix(0.6).filled())),
            )
            .map_err(chart_error)?;
    }
    root.present().map_err(chart_error)
}

/// Writes every chart into `dir`.
pub fn write(dir: &Path, rows: &[Row]) -> Result<()> {
    let delay = |r: &Row| r.measured[2];
    let cost = |r: &Row| r.cost;
    lines(
        &dir.join("fig2-delay-vs-servers.svg"),
        "Measured delay against the number of servers",
        "servers",
        "ms per task",
        &series(rows, "servers", delay),
    )?;
    lines(
        &dir.join("fig3-cost-vs-servers.svg"),
        "Measured resource cost against the number of servers",
        "servers",
        "cost per task",
        &series(rows, "servers", cost),
    )?;
    lines(
        &dir.join("fig4-delay-vs-tasks.svg"),
        "Measured delay against the number of tasks",
        "tasks",
        "ms per task",
        &series(rows, "tasks", delay),
    )?;
    lines(
        &dir.join("fig5-cost-vs-tasks.svg"),
        "Measured resource cost against the number of tasks",
        "tasks",
        "cost per task",
        &series(rows, "tasks", cost),
    )?;
    predicted(&dir.join("predicted-vs-measured.svg"), rows)
}
