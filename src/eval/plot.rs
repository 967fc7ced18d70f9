//! The perturbation curves of a run as a standalone SVG (hand-written: two line charts side by
//! side, one line per method, a shared legend).

use std::fmt::Write;

use super::EvalReport;

const PANEL_WIDTH: f64 = 420.0;
const PANEL_HEIGHT: f64 = 300.0;
const MARGIN_LEFT: f64 = 60.0;
const MARGIN_TOP: f64 = 50.0;
const GAP: f64 = 70.0;
const LEGEND_WIDTH: f64 = 250.0;

/// Distinguishable on white (Okabe–Ito first, then darker tones); dashes add a second cue.
const COLOURS: [&str; 10] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8B4513",
    "#6A3D9A", "#B8860B",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG document with the MoRF (left) and LeRF (right) curves of every method in `report`.
pub fn curves_svg(report: &EvalReport, title: &str) -> String {
    let legend_rows = report.scorers.len() as f64;
    let width = MARGIN_LEFT + 2.0 * PANEL_WIDTH + GAP + 30.0 + LEGEND_WIDTH;
    let height = (MARGIN_TOP + PANEL_HEIGHT + 60.0).max(MARGIN_TOP + 20.0 * legend_rows + 20.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{MARGIN_LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let panels = [
        ("Most relevant words removed first (lower is better)", true),
        (
            "Least relevant words removed first (higher is better)",
            false,
        ),
    ];
    for (p, (caption, most_first)) in panels.iter().enumerate() {
        let left = MARGIN_LEFT + p as f64 * (PANEL_WIDTH + GAP);
        let top = MARGIN_TOP;
        let x_of = |step: f64| left + step * PANEL_WIDTH;
        let y_of = |prob: f64| top + (1.0 - prob.clamp(0.0, 1.0)) * PANEL_HEIGHT;
        let _ = writeln!(
            svg,
            r##"<rect x="{left}" y="{top}" width="{PANEL_WIDTH}" height="{PANEL_HEIGHT}" fill="none" stroke="#888"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{left}" y="{}" font-size="13">{}</text>"#,
            top - 8.0,
            escape(caption)
        );
        for tick in 0..=4 {
            let value = tick as f64 / 4.0;
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" y1="{y}" x2="{right}" y2="{y}" stroke="#eee"/><text x="{tx}" y="{ty}" text-anchor="end">{value:.2}</text>"##,
                y = y_of(value),
                right = left + PANEL_WIDTH,
                tx = left - 6.0,
                ty = y_of(value) + 4.0,
            );
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle">{}%</text>"#,
                x_of(value),
                top + PANEL_HEIGHT + 16.0,
                (value * 100.0).round()
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">words removed</text>"#,
            left + PANEL_WIDTH / 2.0,
            top + PANEL_HEIGHT + 34.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{x}" y="{y}" text-anchor="middle" transform="rotate(-90 {x} {y})">p(explained class)</text>"#,
            x = left - 42.0,
            y = top + PANEL_HEIGHT / 2.0
        );
        for (i, scorer) in report.scorers.iter().enumerate() {
            let curve = if *most_first {
                &scorer.most_relevant_first_curve
            } else {
                &scorer.least_relevant_first_curve
            };
            let points: Vec<String> = report
                .curve_steps
                .iter()
                .zip(curve)
                .filter(|(_, v)| v.is_finite())
                .map(|(s, v)| format!("{:.1},{:.1}", x_of(*s), y_of(*v)))
                .collect();
            let dash = if i >= COLOURS.len() {
                r#" stroke-dasharray="6 3""#
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.8"{dash} points="{}"><title>{}</title></polyline>"#,
                COLOURS[i % COLOURS.len()],
                points.join(" "),
                escape(&scorer.method)
            );
        }
    }
    let legend_left = MARGIN_LEFT + 2.0 * PANEL_WIDTH + GAP + 30.0;
    for (i, scorer) in report.scorers.iter().enumerate() {
        let y = MARGIN_TOP + 10.0 + 20.0 * i as f64;
        let dash = if i >= COLOURS.len() {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<line x1="{legend_left}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2.5"{dash}/><text x="{}" y="{}">{}</text>"#,
            legend_left + 24.0,
            COLOURS[i % COLOURS.len()],
            legend_left + 30.0,
            y + 4.0,
            escape(&scorer.method)
        );
    }
    svg.push_str("</svg>\n");
    svg
}
