//! Trend charts as inline SVG, drawn by hand.
//!
//! Why not a charting crate: plotters' SVG backend (tried on a 12-point chart) wrote
//! 5.5 KB with fixed pixel `width`/`height`, a `<line>` per grid line each carrying its
//! own colours and fractional font sizes, no `<title>`s, and gaps only as separate
//! series. Drawn here, a chart is about 2 KB, scales with the page through its
//! `viewBox`, takes its colours from the page's CSS classes (one place for contrast),
//! names every point in a `<title>` and leaves a gap where a window has no data.
//!
//! Every string written into the SVG goes through [`escape`]: the labels come from our
//! own formatting today, but the chart must stay safe if that changes.

use std::fmt::Write;

/// One point of a trend: the window's label and its value (`None`: no data).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The x-axis label of the window, such as `Mar 9`.
    pub label: String,
    /// A longer description for the point's tooltip, such as `Mar 9 - Mar 16`.
    pub title: String,
    /// The value in the chart's unit.
    pub value: Option<f64>,
}

/// A chart to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart<'a> {
    /// What the chart shows, for screen readers (`aria-label`).
    pub name: &'a str,
    /// The unit of the y axis, such as `per day` or `hours`.
    pub unit: &'a str,
    /// What the x axis spans, such as `12 windows of 7 days`.
    pub caption: &'a str,
    /// The points, oldest first.
    pub points: &'a [Point],
}

const WIDTH: f64 = 320.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 22.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 26.0;

/// Escapes text for SVG content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten at or above `x` (1 for 0).
fn nice_ceiling(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|candidate| *candidate >= x * (1.0 - 1e-12))
        .unwrap_or(10.0 * magnitude)
}

/// A tick value with no more digits than it needs.
fn tick(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else if (x * 10.0 - (x * 10.0).round()).abs() < 1e-9 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Draws the chart: y from 0 to a round maximum with three labelled grid lines, a
/// point per window with data, lines only between neighbours that both have data, the
/// last (current) point emphasised, and the labels of every third window on the x axis
/// counted back from the current one.
pub fn render(chart: &Chart<'_>) -> String {
    let n = chart.points.len();
    let max = chart
        .points
        .iter()
        .filter_map(|p| p.value)
        .fold(0.0, f64::max);
    let top = nice_ceiling(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    // The first point stands clear of the y axis' labels.
    let inset = 10.0;
    let x = |k: usize| {
        if n <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + inset + (plot_w - inset) * k as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| TOP + plot_h * (1.0 - v / top);

    let mut svg = String::new();
    // `write!` to a String cannot fail.
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(&format!(
            "{} over the last {n} windows, in {}",
            chart.name, chart.unit
        ))
    );
    let _ = write!(
        svg,
        r#"<text class="axis-unit" x="{LEFT}" y="11">{}</text>"#,
        escape(chart.unit)
    );
    let _ = write!(
        svg,
        r#"<text class="axis-unit caption" x="{}" y="11" text-anchor="end">{}</text>"#,
        WIDTH - RIGHT,
        escape(chart.caption)
    );
    for step in 0..=2 {
        let v = top * f64::from(step) / 2.0;
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 5.0,
            y(v) + 4.0,
            escape(&tick(v)),
            y = y(v),
        );
    }
    for (k, point) in chart.points.iter().enumerate() {
        if (n - 1 - k).is_multiple_of(3) {
            let _ = write!(
                svg,
                r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                x(k),
                HEIGHT - 8.0,
                escape(&point.label)
            );
        }
    }
    // Lines only between neighbours that both have data: a gap is a window without.
    let mut path = String::new();
    for k in 1..n {
        if let (Some(a), Some(b)) = (chart.points[k - 1].value, chart.points[k].value) {
            let _ = write!(path, "M{:.1} {:.1}L{:.1} {:.1}", x(k - 1), y(a), x(k), y(b));
        }
    }
    if !path.is_empty() {
        let _ = write!(svg, r#"<path class="line" d="{path}"/>"#);
    }
    for (k, point) in chart.points.iter().enumerate() {
        let Some(v) = point.value else {
            let _ = write!(
                svg,
                r#"<text class="nodata" x="{:.1}" y="{:.1}" text-anchor="middle">&#215;<title>{}: no data</title></text>"#,
                x(k),
                TOP + plot_h + 4.0,
                escape(&point.title)
            );
            continue;
        };
        let class = if k + 1 == n { "point current" } else { "point" };
        let _ = write!(
            svg,
            r#"<circle class="{class}" cx="{:.1}" cy="{:.1}" r="{}"><title>{}: {} {}</title></circle>"#,
            x(k),
            y(v),
            if k + 1 == n { 5.0 } else { 3.5 },
            escape(&point.title),
            escape(&tick_value(v)),
            escape(chart.unit)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A value for a tooltip: two significant decimals at most.
fn tick_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[Option<f64>]) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .map(|(k, v)| Point {
                label: format!("W{k}"),
                title: format!("window {k}"),
                value: *v,
            })
            .collect()
    }

    #[test]
    fn a_point_per_window_with_data_and_a_gap_without() {
        let mut values = vec![Some(1.0); 12];
        values[4] = None;
        let svg = render(&Chart {
            name: "Lead time",
            unit: "hours",
            caption: "12 windows",
            points: &points(&values),
        });
        assert_eq!(svg.matches("<circle").count(), 11);
        assert_eq!(svg.matches("no data</title>").count(), 1);
        // 11 neighbour pairs, two of which touch the gap.
        assert_eq!(svg.matches('M').count(), 9);
        assert_eq!(svg.matches("point current").count(), 1);
        // Labels on W11, W8, W5, W2.
        for k in [2, 5, 8, 11] {
            assert!(svg.contains(&format!(">W{k}</text>")), "{svg}");
        }
        assert!(!svg.contains(">W10</text>"));
        assert!(svg.len() < 4000, "{}", svg.len());
    }

    #[test]
    fn round_axis_maxima() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(1.2), 2.0);
        assert_eq!(nice_ceiling(2.2), 2.5);
        assert_eq!(nice_ceiling(37.0), 50.0);
        assert_eq!(nice_ceiling(80.0), 100.0);
    }

    #[test]
    fn text_is_escaped() {
        let svg = render(&Chart {
            name: "<b>\"x\"",
            unit: "a&b",
            caption: "<i>",
            points: &[Point {
                label: "<script>".into(),
                title: "'t'".into(),
                value: Some(1.0),
            }],
        });
        assert!(
            !svg.contains("<script>") && !svg.contains("<b>") && !svg.contains("<i>"),
            "{svg}"
        );
        assert!(svg.contains("&lt;script&gt;") && svg.contains("a&amp;b"));
        assert!(svg.contains("&#39;t&#39;") && svg.contains("&quot;x&quot;"));
    }
}
