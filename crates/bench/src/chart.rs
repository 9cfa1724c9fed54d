//! The PNG chart: p50 latency at concurrency 1 and throughput at the highest concurrency, one bar
//! per target, for one payload size. Floor grey, the hand-written alternatives orange, nex blue.

use std::path::Path;

use plotters::prelude::*;

use crate::measure::Row;

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn colour(key: &str) -> RGBColor {
    match key {
        "raw" => RGBColor(120, 120, 120),
        "node" | "python" | "rawkv" => RGBColor(230, 140, 40),
        _ => RGBColor(40, 100, 200),
    }
}

/// Draws the chart; `Err` says why there is none (for example, no font to write labels with).
pub fn draw(path: &Path, rows: &[Row], concurrency: usize, size: usize) -> Result<(), String> {
    let font = FONTS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("no TrueType font for the labels (install fonts-dejavu-core)")?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, font.leak())
        .map_err(|_| "the font did not load")?;
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let root = BitMapBackend::new(path, (1280, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let (left, right) = root.split_horizontally(640);
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    panel(
        &left,
        &format!("p50 latency, µs, concurrency 1 ({size} B; lower is better)"),
        &keys,
        &rows.iter().map(|r| r.p50_us).collect::<Vec<_>>(),
    )?;
    panel(
        &right,
        &format!("throughput, req/s, concurrency {concurrency} ({size} B; higher is better)"),
        &keys,
        &rows
            .iter()
            .map(|r| r.throughput_rps.last().copied().unwrap_or(0.0))
            .collect::<Vec<_>>(),
    )?;
    root.present().map_err(e)
}

fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    keys: &[&str],
    values: &[f64],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    if keys.is_empty() {
        return Ok(());
    }
    let top = values.iter().copied().fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(32)
        .y_label_area_size(70)
        .build_cartesian_2d((0..keys.len() - 1).into_segmented(), 0f64..top)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(keys.len())
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => keys.get(*i).map(|k| k.to_string()).unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(values.iter().enumerate().map(|(i, v)| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *v),
                ],
                colour(keys[i]).filled(),
            );
            bar.set_margin(0, 0, 10, 10);
            bar
        }))
        .map_err(e)?;
    chart
        .draw_series(values.iter().enumerate().map(|(i, v)| {
            Text::new(
                format!("{v:.0}"),
                (SegmentValue::CenterOf(i), *v + top * 0.02),
                ("sans-serif", 13),
            )
        }))
        .map_err(e)?;
    Ok(())
}
