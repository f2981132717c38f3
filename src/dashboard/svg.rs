//! Inline SVG charts: a line chart over time and a bar chart of shares, drawn as
//! plain markup so the page needs no script, font or file from elsewhere.

use std::fmt::Write as _;

use super::{Bar, Series};

/// Colours for series, in order: distinguishable, and readable on white.
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

const W: f64 = 560.0;
const H: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 26.0;

/// Text made safe for HTML and SVG: every name in a chart is the host's data. Control
/// and invisible characters become spaces, so that a bidi override cannot show the
/// rest of a label reversed.
pub(crate) fn escape(s: &str) -> String {
    // Quotes too: a name may stand in an attribute.
    crate::text::for_people(s, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '"' => Some("&quot;"),
        '\'' => Some("&#39;"),
        _ => None,
    })
}

/// The smallest "nice" number (1, 2 or 5 times a power of ten) at or above `x`, for
/// an axis that ends on a round figure.
fn nice_ceiling(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let power = 10f64.powf(x.log10().floor());
    let m = x / power;
    let step = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    // Rounding up past the largest float (a series at 1e308): the value itself ends
    // the axis, where infinity would put every point at NaN.
    Some(step * power).filter(|c| c.is_finite()).unwrap_or(x)
}

/// A figure as an axis label: short, no trailing zeros.
fn label(x: f64) -> String {
    if x.abs() >= 1e12 {
        // Past what a "M" keeps short: 1.5e12, not thirteen digits.
        format!("{x:.1e}")
    } else if x.abs() >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x.abs() >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else if x.fract().abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// A line chart of `series` over time, the y axis from zero, with a dashed line at
/// `limit` if given (a threshold or a capacity).
pub(crate) fn line_chart(title: &str, unit: &str, series: &[Series], limit: Option<f64>) -> String {
    let points = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.value.is_finite())
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}"><title>{t}</title><rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/><text x="{LEFT}" y="16" class="ct">{t}</text>"##,
        t = if unit.is_empty() {
            escape(title)
        } else {
            escape(&format!("{title} ({unit})"))
        }
    );
    let (Some(t0), Some(t1)) = (
        points().map(|p| p.at.as_nanos()).min(),
        points().map(|p| p.at.as_nanos()).max(),
    ) else {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" class="empty">no data yet</text></svg>"#,
            W / 2.0 - 40.0,
            H / 2.0
        );
        return svg;
    };
    let top_value = points()
        .map(|p| p.value)
        .chain(limit.filter(|l| l.is_finite()))
        .fold(0.0, f64::max);
    let y_max = nice_ceiling(top_value * 1.05);
    #[allow(clippy::cast_precision_loss)] // a chart's x axis needs no nanosecond
    let span = (t1 - t0).max(1) as f64;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    // Only finite points are drawn, and `t0` is the earliest of them, so `at` is
    // never before it; saturating all the same, so that a point drawn by mistake
    // lands on the axis instead of panicking (debug) or wrapping far off (release).
    #[allow(clippy::cast_precision_loss)]
    let x = |at: u64| LEFT + at.saturating_sub(t0) as f64 / span * plot_w;
    let y = |v: f64| TOP + plot_h - (v.clamp(0.0, y_max) / y_max) * plot_h;
    // Grid and y labels: five lines, zero to the top.
    for i in 0..=4 {
        // Divided first: near the largest float, three times the top is infinite.
        let v = y_max / 4.0 * f64::from(i);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{x2}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{lx}" y="{ty:.1}" class="tick" text-anchor="end">{l}</text>"##,
            yy = y(v),
            x2 = W - RIGHT,
            lx = LEFT - 4.0,
            ty = y(v) + 4.0,
            l = label(v)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="{}" class="tick">{}</text><text x="{}" y="{}" class="tick" text-anchor="end">{}</text>"#,
        H - 8.0,
        escape(&short_time(t0)),
        W - RIGHT,
        H - 8.0,
        escape(&short_time(t1)),
    );
    if let Some(l) = limit.filter(|l| l.is_finite() && *l > 0.0) {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{x2}" y2="{yy:.1}" stroke="#d62728" stroke-dasharray="5 4"/>"##,
            yy = y(l),
            x2 = W - RIGHT
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        // The same filter as the axes: a point that is not a number (a ratio over
        // nothing, `null` in JSON) is not drawn, in the line or as a lone dot.
        let drawn = || s.points.iter().filter(|p| p.value.is_finite());
        let mut path = String::new();
        for p in drawn() {
            let _ = write!(path, "{:.1},{:.1} ", x(p.at.as_nanos()), y(p.value));
        }
        // A line needs two points: a series with one drawable point shows it as a
        // dot, whatever else it holds.
        if let (Some(p), None) = (drawn().next(), drawn().nth(1)) {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                x(p.at.as_nanos()),
                y(p.value)
            );
        }
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path.trim_end()
        );
    }
    // The legend, across the top right, when more than one series shares the chart.
    if series.len() > 1 {
        let mut lx = LEFT + 250.0;
        for (i, s) in series.iter().enumerate().take(PALETTE.len()) {
            let colour = PALETTE[i % PALETTE.len()];
            let _ = write!(
                svg,
                r#"<rect x="{lx:.0}" y="22" width="10" height="3" fill="{colour}"/><text x="{:.0}" y="27" class="tick">{}</text>"#,
                lx + 13.0,
                escape(&s.name)
            );
            #[allow(clippy::cast_precision_loss)] // names are short
            let width = 20.0 + 6.0 * s.name.chars().count().min(20) as f64;
            lx += width;
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A horizontal bar per item, its value as a share of its `max`, with a dashed mark
/// at its limit.
pub(crate) fn bar_chart(title: &str, bars: &[Bar]) -> String {
    let row = 22.0;
    #[allow(clippy::cast_precision_loss)] // a chart has few bars
    let h = TOP + row * bars.len().max(1) as f64 + 8.0;
    let label_w = 120.0;
    let bar_w = W - label_w - 70.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="chart" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" aria-label="{t}"><title>{t}</title><rect x="0" y="0" width="{W}" height="{h}" fill="#fff"/><text x="8" y="16" class="ct">{t}</text>"##,
        t = escape(title)
    );
    if bars.is_empty() {
        let _ = write!(
            svg,
            r#"<text x="8" y="{}" class="empty">none</text>"#,
            TOP + 12.0
        );
    }
    for (i, b) in bars.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let top = TOP + row * i as f64;
        let max = if b.max.is_finite() && b.max > 0.0 {
            b.max
        } else {
            1.0
        };
        let share = if b.value.is_finite() {
            (b.value / max).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let over = b.limit.is_some_and(|l| b.value > l);
        let colour = if over { "#d62728" } else { PALETTE[0] };
        let _ = write!(
            svg,
            r##"<text x="8" y="{ty:.0}" class="tick">{l}</text><rect x="{label_w}" y="{top:.0}" width="{bar_w}" height="14" fill="#f0f0f0"/><rect x="{label_w}" y="{top:.0}" width="{w:.1}" height="14" fill="{colour}"/><text x="{vx}" y="{ty:.0}" class="tick">{v}</text>"##,
            ty = top + 11.0,
            l = escape(&b.label),
            w = share * bar_w,
            vx = label_w + bar_w + 6.0,
            v = escape(&b.shown)
        );
        if let Some(l) = b.limit.filter(|l| l.is_finite()) {
            let lx = label_w + (l / max).clamp(0.0, 1.0) * bar_w;
            let _ = write!(
                svg,
                r##"<line x1="{lx:.1}" y1="{:.0}" x2="{lx:.1}" y2="{:.0}" stroke="#333" stroke-dasharray="3 2"/>"##,
                top - 2.0,
                top + 16.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A time on an axis or in a title: day and hour, UTC.
pub(crate) fn short_time(nanos: u64) -> String {
    let t = crate::clock::Timestamp::from_nanos(nanos).to_string();
    // "2026-12-05T14:36:03.670Z" -> "12-05 14:36"
    match (t.get(5..10), t.get(11..16)) {
        (Some(day), Some(hour)) => format!("{day} {hour}"),
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::dashboard::Point;

    #[test]
    fn nice_ceilings_end_axes_on_round_figures() {
        assert_eq!(nice_ceiling(0.93), 1.0);
        assert_eq!(nice_ceiling(1.3), 2.0);
        assert_eq!(nice_ceiling(37.0), 50.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
    }

    #[test]
    fn names_are_escaped_in_every_chart() {
        let s = Series {
            name: "<script>alert(1)</script>".into(),
            points: vec![Point {
                at: Timestamp::from_secs(1),
                value: 1.0,
            }],
        };
        let svg = line_chart("a & b", "", &[s.clone(), s], None);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("a &amp; b"));
        let bars = bar_chart(
            "\"x\"",
            &[Bar {
                label: "<b>".into(),
                value: 1.0,
                max: 1.0,
                limit: None,
                shown: "<i>".into(),
            }],
        );
        assert!(!bars.contains("<b>") && !bars.contains("<i>"));
    }

    /// A series name from the host with a right-to-left override would show the
    /// rest of its label reversed, and one with a zero-width space read as another's.
    #[test]
    fn control_and_invisible_characters_become_spaces() {
        assert_eq!(escape("ops\u{202e}1\u{200b}\n<"), "ops 1  &lt;");
        assert_eq!(escape("Zoë's エージェント"), "Zoë&#39;s エージェント");
    }

    #[test]
    fn a_chart_with_no_finite_point_says_so_instead_of_dividing_by_zero() {
        let s = Series {
            name: "x".into(),
            points: vec![Point {
                at: Timestamp::from_secs(1),
                value: f64::NAN,
            }],
        };
        let svg = line_chart("t", "", &[s], Some(f64::INFINITY));
        assert!(svg.contains("no data yet"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    proptest::proptest! {
        #![proptest_config(crate::proptest_config(256, "tests/proptest-regressions/dashboard_svg.txt"))]

        /// Whatever values a host puts in a chart (the largest floats, both signs,
        /// NaN, infinities), it draws no coordinate or label that is not a number.
        #[test]
        fn no_value_draws_a_coordinate_that_is_not_a_number(
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::num::f64::ANY,
                    proptest::sample::select(vec![f64::MAX, f64::MIN, 1e308, -1e308, f64::MIN_POSITIVE]),
                ],
                1..6,
            ),
            limit in proptest::option::of(proptest::num::f64::ANY),
        ) {
            let s = Series {
                name: "s".into(),
                points: (values.iter().enumerate())
                    .map(|(i, &value)| Point { at: Timestamp::from_secs(i as u64), value })
                    .collect(),
            };
            let svg = line_chart("t", "", &[s], limit);
            proptest::prop_assert!(!svg.contains("NaN") && !svg.contains("inf"), "{}", svg);
            let bars: Vec<Bar> = values.iter().map(|&v| Bar::share("b", v, limit)).collect();
            let svg = bar_chart("t", &bars);
            proptest::prop_assert!(!svg.contains("NaN") && !svg.contains("inf"), "{}", svg);
        }
    }

    #[test]
    fn the_largest_floats_end_the_axis_themselves() {
        assert_eq!(nice_ceiling(1.05e308), 1.05e308);
        assert_eq!(label(1.5e12), "1.5e12");
        assert_eq!(Bar::share("b", f64::NAN, None).shown, "n/a");
        assert_eq!(Bar::share("b", f64::INFINITY, None).shown, ">100%");
    }
}
