//! Small server-side SVG charts for the pages: lines (learning curves), horizontal bars
//! (per-genre F1, predicted probabilities, modality shares). No JavaScript involved.

use std::fmt::Write;

const PALETTE: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart of several (label, points) series with axes, ticks and a legend.
pub fn lines(title: &str, x_label: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let (w, h) = (640.0, 300.0);
    let points: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| finite(p)).collect();
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" class="chart" role="img" aria-label="{t}"><text x="{left}" y="18" class="title">{t}</text>"#,
        left = Frame::LEFT,
        t = escape(title)
    );
    if points.is_empty() {
        svg.push_str(r#"<text x="60" y="150">no data yet</text></svg>"#);
        return svg;
    }
    let frame = Frame {
        x: bounds(points.iter().map(|p| p.0)),
        y: bounds(points.iter().map(|p| p.1)),
        width: w - Frame::LEFT - Frame::RIGHT,
        height: h - Frame::TOP - Frame::BOTTOM,
    };
    frame.axes(&mut svg, x_label);
    for (i, (label, pts)) in series.iter().enumerate() {
        frame.series(&mut svg, i, label, pts);
    }
    svg.push_str("</svg>");
    svg
}

/// The finite points of a series (a metric can be NaN in an epoch).
fn finite(points: &[(f64, f64)]) -> impl Iterator<Item = (f64, f64)> + '_ {
    points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
}

/// A line chart's plot area: data bounds `x` and `y` mapped onto `width` × `height` pixels
/// inside fixed margins (the legend sits in the right one).
struct Frame {
    x: (f64, f64),
    y: (f64, f64),
    width: f64,
    height: f64,
}

impl Frame {
    const LEFT: f64 = 56.0;
    const RIGHT: f64 = 150.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 40.0;

    fn sx(&self, x: f64) -> f64 {
        Self::LEFT + (x - self.x.0) / (self.x.1 - self.x.0) * self.width
    }

    fn sy(&self, y: f64) -> f64 {
        Self::TOP + self.height - (y - self.y.0) / (self.y.1 - self.y.0) * self.height
    }

    /// The frame, five y ticks with grid lines, the x range and the x label.
    fn axes(&self, svg: &mut String, x_label: &str) {
        let (left, top, pw, ph) = (Self::LEFT, Self::TOP, self.width, self.height);
        let (x0, x1) = self.x;
        let _ = write!(
            svg,
            r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
        );
        for i in 0..=4 {
            let y = self.y.0 + (self.y.1 - self.y.0) * f64::from(i) / 4.0;
            let _ = write!(
                svg,
                r##"<text x="{}" y="{}" class="tick" text-anchor="end">{y:.3}</text><line x1="{left}" x2="{}" y1="{yy}" y2="{yy}" stroke="#eee"/>"##,
                left - 4.0,
                self.sy(y) + 4.0,
                left + pw,
                yy = self.sy(y)
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{left}" y="{}" class="tick">{x0}</text><text x="{}" y="{}" class="tick" text-anchor="end">{x1}</text><text x="{}" y="{}" class="tick" text-anchor="middle">{}</text>"#,
            top + ph + 16.0,
            left + pw,
            top + ph + 16.0,
            left + pw / 2.0,
            top + ph + 32.0,
            escape(x_label)
        );
    }

    /// Series `i` as a polyline in its palette colour, with its legend entry.
    fn series(&self, svg: &mut String, i: usize, label: &str, points: &[(f64, f64)]) {
        let color = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = finite(points)
            .map(|(x, y)| format!("{:.1},{:.1}", self.sx(x), self.sy(y)))
            .collect();
        let legend_x = Self::LEFT + self.width;
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/><rect x="{}" y="{}" width="12" height="4" fill="{color}"/><text x="{}" y="{}" class="legend">{}</text>"#,
            path.join(" "),
            legend_x + 10.0,
            Self::TOP + 10.0 + 18.0 * i as f64,
            legend_x + 26.0,
            Self::TOP + 15.0 + 18.0 * i as f64,
            escape(label)
        );
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

/// Horizontal bars with values in `[0, max]`, each labelled with its value.
pub fn bars(title: &str, rows: &[(String, f64)], max: f64) -> String {
    let (w, label_w, bar_h) = (640.0, 170.0, 20.0);
    let h = 30.0 + bar_h * rows.len() as f64 + 10.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" class="chart" role="img" aria-label="{t}"><text x="4" y="18" class="title">{t}</text>"#,
        t = escape(title)
    );
    let scale = (w - label_w - 70.0) / max.max(1e-9);
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 30.0 + bar_h * i as f64;
        let len = (v.max(0.0) * scale).max(0.0);
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" class="tick" text-anchor="end">{}</text><rect x="{label_w}" y="{y}" width="{len:.1}" height="{}" fill="{}"/><text x="{}" y="{}" class="tick">{v:.3}</text>"#,
            label_w - 6.0,
            y + 14.0,
            escape(label),
            bar_h - 4.0,
            PALETTE[0],
            label_w + len + 6.0,
            y + 14.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A scatter of (actual, predicted) points on equal 0–10 axes, with the diagonal.
pub fn scatter(title: &str, points: &[(f64, f64)]) -> String {
    let (size, pad) = (360.0, 40.0);
    let plot = size - 2.0 * pad;
    let at = |v: f64| v.clamp(0.0, 10.0) / 10.0 * plot;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" class="chart square" role="img" aria-label="{t}"><text x="{pad}" y="18" class="title">{t}</text><rect x="{pad}" y="{pad}" width="{plot}" height="{plot}" fill="none" stroke="#999"/><line x1="{pad}" y1="{}" x2="{}" y2="{pad}" stroke="#bbb" stroke-dasharray="4"/>"##,
        pad + plot,
        pad + plot,
        t = escape(title)
    );
    for (a, p) in points {
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{}" fill-opacity="0.5"/>"#,
            pad + at(*a),
            pad + plot - at(*p),
            PALETTE[0]
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" class="tick" text-anchor="middle">actual rating (0–10)</text><text x="12" y="{}" class="tick" transform="rotate(-90 12 {})" text-anchor="middle">predicted</text></svg>"#,
        pad + plot / 2.0,
        size - 8.0,
        pad + plot / 2.0,
        pad + plot / 2.0
    );
    svg
}
