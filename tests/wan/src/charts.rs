//! The experiment's charts, as SVG and PNG: measured delay and cost per
//! algorithm against the number of servers and of tasks (the layout of the
//! paper's Fig. 2-5), and predicted against measured for each latency part.
//! Each chart is drawn once, as SVG; its PNG is that SVG rendered by resvg,
//! with the system's fonts (DejaVu Sans where the chart asks for a sans-serif).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
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

/// Draws one line per algorithm into an SVG at `path`; `false` when there
/// is nothing to draw (no point of that sweep was run).
fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    data: &BTreeMap<String, Vec<(f64, f64)>>,
) -> Result<bool> {
    let xs = data.values().flatten().map(|p| p.0);
    let (x_min, x_max) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    if x_min > x_max {
        return Ok(false);
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
    root.present().map_err(chart_error)?;
    Ok(true)
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

/// A line chart: its file name, title, axis labels, sweep and value.
type Figure = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    fn(&Row) -> f64,
);

/// Writes every chart into `dir`, each as SVG and as PNG.
pub fn write(dir: &Path, rows: &[Row]) -> Result<()> {
    let delay = |r: &Row| r.measured[2];
    let cost = |r: &Row| r.cost;
    let figures: [Figure; 4] = [
        (
            "fig2-delay-vs-servers",
            "Measured delay against the number of servers",
            "servers",
            "ms per task",
            "servers",
            delay,
        ),
        (
            "fig3-cost-vs-servers",
            "Measured resource cost against the number of servers",
            "servers",
            "cost per task",
            "servers",
            cost,
        ),
        (
            "fig4-delay-vs-tasks",
            "Measured delay against the number of tasks",
            "tasks",
            "ms per task",
            "tasks",
            delay,
        ),
        (
            "fig5-cost-vs-tasks",
            "Measured resource cost against the number of tasks",
            "tasks",
            "cost per task",
            "tasks",
            cost,
        ),
    ];
    let fonts = Fonts::system();
    for (name, title, x_label, y_label, sweep, value) in figures {
        let svg = dir.join(format!("{name}.svg"));
        if lines(&svg, title, x_label, y_label, &series(rows, sweep, value))? {
            fonts.png(&svg, &dir.join(format!("{name}.png")))?;
        }
    }
    let svg = dir.join("predicted-vs-measured.svg");
    predicted(&svg, rows)?;
    fonts.png(&svg, &dir.join("predicted-vs-measured.png"))
}

/// The fonts PNGs are rendered with.
pub struct Fonts {
    options: resvg::usvg::Options<'static>,
}

impl Fonts {
    /// The system's fonts, with DejaVu Sans for a generic sans-serif.
    pub fn system() -> Fonts {
        let mut options = resvg::usvg::Options::default();
        let db = options.fontdb_mut();
        db.load_system_fonts();
        db.set_sans_serif_family("DejaVu Sans");
        Fonts { options }
    }

    /// Renders the SVG at `svg` to a PNG at `png`, its own size, on white.
    pub fn png(&self, svg: &Path, png: &Path) -> Result<()> {
        let data = std::fs::read(svg).with_context(|| format!("reading {}", svg.display()))?;
        let tree = resvg::usvg::Tree::from_data(&data, &self.options)
            .with_context(|| format!("parsing {}", svg.display()))?;
        let size = tree.size().to_int_size();
        let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
            .ok_or_else(|| anyhow!("{} has an empty size", svg.display()))?;
        pixmap.fill(resvg::tiny_skia::Color::WHITE);
        resvg::render(
            &tree,
            resvg::tiny_skia::Transform::default(),
            &mut pixmap.as_mut(),
        );
        pixmap
            .save_png(png)
            .with_context(|| format!("writing {}", png.display()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn row(sweep: &'static str, servers: usize, algorithm: &str, delay: f64) -> Row {
        Row {
            sweep,
            servers,
            tasks: 3,
            algorithm: algorithm.to_owned(),
            task: 0,
            phase: "beijing",
            entered_at: "beijing".to_owned(),
            hosts: "beijing".to_owned(),
            measured: [delay / 2.0, delay / 2.0, delay],
            predicted: [Some(delay / 2.0), Some(delay / 2.0), Some(delay * 1.1)],
            cost: delay / 1000.0,
        }
    }

    /// Pixels of a PNG that are not white.
    fn inked(png: &Path) -> usize {
        let pixmap = resvg::tiny_skia::Pixmap::load_png(png).unwrap();
        pixmap
            .pixels()
            .iter()
            .filter(|p| (p.red(), p.green(), p.blue()) != (255, 255, 255))
            .count()
    }

    #[test]
    fn every_chart_is_written_as_svg_and_png_with_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<Row> = [("antllm", 30.0), ("greedy", 40.0)]
            .into_iter()
            .flat_map(|(a, d)| [row("servers", 2, a, d), row("servers", 3, a, d * 1.5)])
            .collect();
        write(dir.path(), &rows).unwrap();
        for name in [
            "fig2-delay-vs-servers",
            "fig3-cost-vs-servers",
            "predicted-vs-measured",
        ] {
            let png = dir.path().join(format!("{name}.png"));
            assert!(dir.path().join(format!("{name}.svg")).exists(), "{name}");
            let pixmap = resvg::tiny_skia::Pixmap::load_png(&png).unwrap();
            assert!(pixmap.width() >= 640 && pixmap.height() == 420, "{name}");
            assert!(inked(&png) > 1000, "{name} is blank");
        }
        // No point of the tasks sweep ran: no chart of it.
        assert!(!dir.path().join("fig4-delay-vs-tasks.svg").exists());
        assert!(!dir.path().join("fig4-delay-vs-tasks.png").exists());
    }

    #[test]
    fn text_is_rendered_with_the_system_fonts() {
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("text.svg");
        std::fs::write(
            &svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"><text x="4" y="28" font-family="sans-serif" font-size="24">delay</text></svg>"#,
        )
        .unwrap();
        let png = dir.path().join("text.png");
        Fonts::system().png(&svg, &png).unwrap();
        assert!(
            inked(&png) > 50,
            "no glyph was drawn: is a sans-serif font installed?"
        );
    }

    #[test]
    fn a_broken_svg_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("broken.svg");
        std::fs::write(&svg, "<svg").unwrap();
        let e = Fonts::system()
            .png(&svg, &dir.path().join("broken.png"))
            .unwrap_err();
        assert!(format!("{e:#}").contains("parsing"), "{e:#}");
    }
}
