//! Chart primitives (PNG, via plotters): bars, histograms, box plots, heatmaps, line and
//! scatter plots. Every chart has a title, axis labels and, with several series, a legend.

use std::ops::Range;
use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::coord::ranged1d::{SegmentValue, SegmentedCoord};
use plotters::coord::types::{RangedCoordf64, RangedCoordusize};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub const SIZE: (u32, u32) = (900, 560);
const FONT: &str = "sans-serif";
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

fn label_width(labels: &[String]) -> u32 {
    (labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as u32 * 8 + 20).clamp(50, 260)
}

fn category(labels: &[String]) -> impl Fn(&SegmentValue<usize>) -> String + '_ {
    move |v| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            labels.get(*i).cloned().unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    }
}

/// Horizontal bars: one per label (long category names stay readable).
pub fn bar_chart(
    path: &Path,
    title: &str,
    value_label: &str,
    labels: &[String],
    values: &[f64],
) -> Result<()> {
    crate::font::ensure_font()?;
    let n = labels.len().max(1);
    let height = (SIZE.1).max(90 + 22 * n as u32);
    let root = BitMapBackend::new(path, (SIZE.0, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let max = values.iter().cloned().fold(0.0f64, f64::max).max(1e-9) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 24))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(label_width(labels))
        .build_cartesian_2d(0f64..max, (0..n - 1).into_segmented())
        .map_err(err)?;
    let fmt = category(labels);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(value_label)
        .y_labels(n)
        .y_label_formatter(&fmt)
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(values.iter().enumerate().map(|(i, v)| {
            let mut r = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (*v, SegmentValue::Exact(i + 1)),
                ],
                color(0).filled(),
            );
            r.set_margin(3, 3, 0, 0);
            r
        }))
        .map_err(err)?;
    root.present().map_err(err)
}

/// Histogram of values over `bins` equal-width bins in `[lo, hi]`.
pub fn histogram(
    path: &Path,
    title: &str,
    x_label: &str,
    values: &[f64],
    bins: usize,
    lo: f64,
    hi: f64,
) -> Result<()> {
    crate::font::ensure_font()?;
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for v in values {
        let b = (((v - lo) / width).floor() as isize).clamp(0, bins as isize - 1) as usize;
        counts[b] += 1;
    }
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let max = *counts.iter().max().unwrap_or(&1) as f64 * 1.1 + 1.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 24))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(lo..hi, 0f64..max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("movies")
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, c)| {
            let x0 = lo + i as f64 * width;
            Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.95, *c as f64)],
                color(0).filled(),
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)
}

/// One box plot per group (min, quartiles, max).
pub fn box_plots(
    path: &Path,
    title: &str,
    group_label: &str,
    value_label: &str,
    groups: &[(String, Vec<f64>)],
) -> Result<()> {
    crate::font::ensure_font()?;
    let groups: Vec<&(String, Vec<f64>)> = groups.iter().filter(|(_, v)| !v.is_empty()).collect();
    let labels: Vec<String> = groups
        .iter()
        .map(|(g, v)| format!("{g} ({})", v.len()))
        .collect();
    let (lo, hi) = groups
        .iter()
        .flat_map(|(_, v)| v.iter())
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    let (lo, hi) = if lo > hi {
        (0.0, 1.0)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    let n = labels.len().max(1);
    let root =
        BitMapBackend::new(path, (SIZE.0, (SIZE.1).max(90 + 26 * n as u32))).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 24))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(label_width(&labels))
        .build_cartesian_2d(lo as f32..hi as f32, (0..n - 1).into_segmented())
        .map_err(err)?;
    let fmt = category(&labels);
    chart
        .configure_mesh()
        .x_desc(value_label)
        .y_desc(group_label)
        .y_labels(n)
        .y_label_formatter(&fmt)
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(groups.iter().enumerate().map(|(i, (_, v))| {
            Boxplot::new_horizontal(SegmentValue::CenterOf(i), &Quartiles::new(v))
                .width(14)
                .style(color(0))
        }))
        .map_err(err)?;
    root.present().map_err(err)
}

fn diverging(v: f64, lo: f64, hi: f64) -> RGBColor {
    // Blue (lo) → white (middle) → red (hi).
    let t = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
    let mix = |a: f64, b: f64, s: f64| (a + (b - a) * s) as u8;
    if t < 0.5 {
        let s = t / 0.5;
        RGBColor(
            mix(40.0, 255.0, s),
            mix(90.0, 255.0, s),
            mix(200.0, 255.0, s),
        )
    } else {
        let s = (t - 0.5) / 0.5;
        RGBColor(
            mix(255.0, 200.0, s),
            mix(255.0, 40.0, s),
            mix(255.0, 40.0, s),
        )
    }
}

fn sequential(v: f64, hi: f64) -> RGBColor {
    let t = (v / hi.max(1e-9)).clamp(0.0, 1.0);
    RGBColor(
        (255.0 - 225.0 * t) as u8,
        (255.0 - 170.0 * t) as u8,
        (255.0 - 90.0 * t) as u8,
    )
}

/// A heatmap with the value written in every cell. `diverging_range` colours values from
/// blue (low) through white to red (high); otherwise white → blue from 0 to the maximum.
pub fn heatmap(
    path: &Path,
    title: &str,
    rows: &[String],
    cols: &[String],
    values: &[Vec<f64>],
    diverging_range: Option<(f64, f64)>,
    decimals: usize,
) -> Result<()> {
    crate::font::ensure_font()?;
    let (nr, nc) = (rows.len().max(1), cols.len().max(1));
    let cell = ((SIZE.0 - 200) / nc as u32).clamp(28, 70);
    let w = label_width(rows) + cell * nc as u32 + 60;
    let h = 150 + cell * nr as u32;
    let root = BitMapBackend::new(path, (w.max(660), h)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(14)
        .x_label_area_size(80)
        .y_label_area_size(label_width(rows))
        .build_cartesian_2d((0..nc - 1).into_segmented(), (0..nr - 1).into_segmented())
        .map_err(err)?;
    let (fx, fy) = (category(cols), category(rows));
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(nc)
        .y_labels(nr)
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .x_label_style((FONT, 13).into_font().transform(FontTransform::Rotate90))
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    let max = values
        .iter()
        .flatten()
        .cloned()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    for (r, row) in values.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let colour = cell_colour(*v, diverging_range, max);
            draw_cell(&mut chart, (r, c), *v, colour, decimals)?;
        }
    }
    root.present().map_err(err)
}

/// A heatmap's chart: categories on both axes.
type HeatmapChart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<SegmentedCoord<RangedCoordusize>, SegmentedCoord<RangedCoordusize>>,
>;

/// Cell (`r`, `c`): its fill, and its value written in it (a dash when not a number).
fn draw_cell(
    chart: &mut HeatmapChart<'_, '_>,
    (r, c): (usize, usize),
    v: f64,
    (fill, dark): (RGBColor, bool),
    decimals: usize,
) -> Result<()> {
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [
                (SegmentValue::Exact(c), SegmentValue::Exact(r)),
                (SegmentValue::Exact(c + 1), SegmentValue::Exact(r + 1)),
            ],
            fill.filled(),
        )))
        .map_err(err)?;
    let text = if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "–".into()
    };
    let style = (FONT, 12)
        .into_font()
        .color(if dark { &WHITE } else { &BLACK })
        .pos(Pos::new(HPos::Center, VPos::Center));
    chart
        .draw_series(std::iter::once(Text::new(
            text,
            (SegmentValue::CenterOf(c), SegmentValue::CenterOf(r)),
            style,
        )))
        .map_err(err)?;
    Ok(())
}

/// A heatmap cell's fill (grey when the value is not a number) and whether it is dark enough
/// to need white text.
fn cell_colour(v: f64, diverging_range: Option<(f64, f64)>, max: f64) -> (RGBColor, bool) {
    let fill = match (v.is_finite(), diverging_range) {
        (false, _) => RGBColor(220, 220, 220),
        (true, Some((lo, hi))) => diverging(v, lo, hi),
        (true, None) => sequential(v, max),
    };
    let dark = match diverging_range {
        Some((lo, hi)) => ((v - lo) / (hi - lo) - 0.5).abs() > 0.35,
        None => v > 0.6 * max,
    };
    (fill, dark)
}

/// Line plot of several named series with a legend.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    crate::font::ensure_font()?;
    let (xs, ys) = line_ranges(series);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 24))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xs, ys)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts.iter().cloned(), c.stroke_width(2)))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
            .map_err(err)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight, 14)?;
    root.present().map_err(err)
}

/// A chart with numbers on both axes (line and scatter plots).
type XyChart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The x and y ranges of a line plot: the points' span (a single x widened to a unit, no
/// finite y gives 0–1), y padded by 8 % so no line runs along the frame.
fn line_ranges(series: &[(String, Vec<(f64, f64)>)]) -> (Range<f64>, Range<f64>) {
    let pts = series
        .iter()
        .flat_map(|(_, s)| s.iter())
        .filter(|p| p.1.is_finite());
    let (x0, x1, y0, y1) = pts.fold(
        (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
        |(a, b, c, d), (x, y)| (a.min(*x), b.max(*x), c.min(*y), d.max(*y)),
    );
    let xs = if x0 >= x1 {
        x0.min(0.0)..x0.max(0.0) + 1.0
    } else {
        x0..x1
    };
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    let ys = if y0 > y1 {
        0.0..1.0
    } else {
        y0 - pad..y1 + pad
    };
    (xs, ys)
}

/// The legend of every labelled series, boxed on a translucent white ground.
fn draw_legend<'a, 'b: 'a>(
    chart: &mut XyChart<'a, 'b>,
    position: SeriesLabelPosition,
    font_size: u32,
) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, font_size))
        .position(position)
        .draw()
        .map_err(err)
}

/// The diagonal of perfect predictions and the lines `band` (a share) above and below it.
fn draw_band(chart: &mut XyChart<'_, '_>, (lo, hi): (f64, f64), band: f64) -> Result<()> {
    chart
        .draw_series(LineSeries::new(
            vec![(lo, lo), (hi, hi)],
            BLACK.stroke_width(2),
        ))
        .map_err(err)?
        .label("perfect prediction")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    let band_style = color(2).stroke_width(2);
    chart
        .draw_series(LineSeries::new(
            vec![(lo, lo * (1.0 + band)), (hi / (1.0 + band), hi)],
            band_style,
        ))
        .map_err(err)?
        .label(format!("±{:.0} % band", band * 100.0))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], band_style));
    chart
        .draw_series(LineSeries::new(
            vec![(lo, lo * (1.0 - band)), (hi, hi * (1.0 - band))],
            band_style,
        ))
        .map_err(err)?;
    Ok(())
}

/// Predicted vs actual with the identity line and a ±`band` relative band.
pub fn scatter_with_band(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64)],
    band: f64,
    range: (f64, f64),
) -> Result<()> {
    crate::font::ensure_font()?;
    let root = BitMapBackend::new(path, (SIZE.1 + 120, SIZE.1 + 40)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (lo, hi) = range;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(54)
        .build_cartesian_2d(lo..hi, lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    draw_points_in_band(&mut chart, points, band)?;
    draw_band(&mut chart, range, band)?;
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft, 13)?;
    root.present().map_err(err)
}

/// (actual, predicted) points, blue within ±`band` of the actual value and red outside, with
/// the count inside in the legend.
fn draw_points_in_band(
    chart: &mut XyChart<'_, '_>,
    points: &[(f64, f64)],
    band: f64,
) -> Result<()> {
    let within = |a: f64, p: f64| (p - a).abs() <= band * a.abs();
    let inside = points.iter().filter(|(a, p)| within(*a, *p)).count();
    chart
        .draw_series(points.iter().map(|&(a, p)| {
            let c = if within(a, p) { color(0) } else { color(3) };
            Circle::new((a, p), 3, c.mix(0.6).filled())
        }))
        .map_err(err)?
        .label(format!(
            "movies ({inside} of {} within ±{:.0} %)",
            points.len(),
            band * 100.0
        ))
        .legend(|(x, y)| Circle::new((x + 10, y), 4, color(0).filled()));
    Ok(())
}
