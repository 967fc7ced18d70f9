//! `e`: the visible units with the current settings, as a self-contained HTML page (inline CSS,
//! legend, no scripts) or as JSON.

use crate::render::html::escape;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::app::{App, ExportFormat, Granularity, UnitState};
use crate::render::palette::{Bucket, Palette};

/// Version of the exported JSON layout.
pub const EXPORT_SCHEMA_VERSION: u32 = 1;

/// Where an export of `document_name` goes: `<stem>.tokenlens.<ext>` in `directory`.
pub fn export_path(directory: &Path, document_name: &str, format: ExportFormat) -> PathBuf {
    let stem = Path::new(document_name)
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty() && !s.starts_with('<'))
        .unwrap_or("stdin");
    directory.join(format!("{stem}.tokenlens.{}", format.extension()))
}

pub fn render(app: &App, format: ExportFormat) -> String {
    match format {
        ExportFormat::Html => html(app),
        ExportFormat::Json => json(app),
    }
}

/// The `--palette` name of a palette.
pub fn palette_name(palette: Palette) -> &'static str {
    Palette::names()
        .iter()
        .copied()
        .find(|&n| Palette::from_name(n) == Some(palette))
        .unwrap_or("blue-orange")
}

fn granularity_name(granularity: Granularity) -> &'static str {
    match granularity {
        Granularity::Words => "words",
        Granularity::Pieces => "pieces",
    }
}

pub fn json(app: &App) -> String {
    let settings = &app.settings;
    let units: Vec<serde_json::Value> = app
        .visible_units
        .clone()
        .map(|unit| {
            let segment = app.document.units[unit];
            let text = app.unit_text(unit);
            let mut record = json!({
                "unit": unit + 1,
                "start": segment.start,
                "end": segment.end,
                "text": text,
            });
            match app.unit_state(unit) {
                UnitState::Ready(scores) => {
                    record["status"] = json!("ready");
                    record["predicted"] = json!(app.labels.get(scores.predicted));
                    record["probs"] = app
                        .labels
                        .iter()
                        .zip(&scores.probs)
                        .map(|(label, score)| json!({"label": label, "score": score}))
                        .collect();
                    record["spans"] = scores
                        .spans
                        .iter()
                        .map(|s| {
                            json!({
                                "text": s.text,
                                "start": s.start,
                                "end": s.end,
                                "relevance": s.relevance,
                                "intensity": s.intensity,
                                "bucket": Bucket::of(s.intensity).0,
                            })
                        })
                        .collect();
                }
                UnitState::Pending => record["status"] = json!("pending"),
                UnitState::Failed(message) => {
                    record["status"] = json!("failed");
                    record["error"] = json!(message);
                }
            }
            record
        })
        .collect();
    let document = json!({
        "schema_version": EXPORT_SCHEMA_VERSION,
        "source": app.document.name(),
        "model": app.model_name,
        "labels": app.labels,
        "method": settings.method.name(),
        "target": settings.target.describe(&app.labels),
        "normalization": settings.normalization.name(),
        "palette": palette_name(settings.palette),
        "granularity": granularity_name(settings.granularity),
        "span_offsets": "bytes of the unit's text",
        "units": units,
    });
    // Through `Value`: NaN scores (attention GradCAM on a constant map) become null.
    serde_json::to_string_pretty(&document).unwrap_or_default()
}

pub fn html(app: &App) -> String {
    let settings = &app.settings;
    let palette = settings.palette;
    let mut out = String::new();
    let title = escape(&format!("tokenlens — {}", app.document.name()));
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>\
body{{font-family:system-ui,sans-serif;max-width:50em;margin:2em auto;line-height:1.7;color:#222}}\
.unit{{margin:.5em 0;white-space:pre-wrap;overflow-wrap:anywhere}}.label{{font-size:.75em;color:#555;margin-right:.6em;font-family:monospace}}\
mark{{padding:0 .1em;border-radius:2px}}.legend span{{display:inline-block;width:1.5em;height:1em;vertical-align:middle}}\
.meta{{color:#555;font-size:.9em}}</style></head><body>\n<h1>{title}</h1>\n"
    );
    let _ = writeln!(
        out,
        "<p class=\"meta\">model <b>{}</b> · method <b>{}</b> · target <b>{}</b> · normalisation <b>{}</b> · {}</p>",
        escape(&app.model_name),
        settings.method.name(),
        escape(&settings.target.describe(&app.labels)),
        settings.normalization.name(),
        granularity_name(settings.granularity),
    );
    out.push_str("<p class=\"legend\">against ");
    for bucket in -5..=5 {
        let color = palette
            .bucket_color(Bucket(bucket))
            .unwrap_or(palette.neutral());
        let _ = write!(out, "<span style=\"background:{}\"></span>", color.hex());
    }
    out.push_str(" for</p>\n");
    for unit in app.visible_units.clone() {
        let text = app.unit_text(unit);
        let state = app.unit_state(unit);
        let label = match &state {
            UnitState::Ready(scores) => format!(
                "{} {:.2}",
                app.labels.get(scores.predicted).map_or("?", String::as_str),
                scores.probs.get(scores.predicted).copied().unwrap_or(0.0)
            ),
            UnitState::Pending => "not explained yet".into(),
            UnitState::Failed(_) => "failed".into(),
        };
        let _ = write!(
            out,
            "<p class=\"unit\" dir=\"auto\"><span class=\"label\">{}</span>",
            escape(&label)
        );
        let mut at = 0;
        if let UnitState::Ready(scores) = &state {
            for span in &scores.spans {
                if span.start < at || span.end > text.len() {
                    continue;
                }
                out.push_str(&escape(&text[at..span.start]));
                let word = escape(&text[span.start..span.end]);
                match palette.color(span.intensity) {
                    Some(bg) => {
                        let fg = bg.text_color();
                        let _ = write!(
                            out,
                            "<mark style=\"background:{};color:{}\" title=\"relevance {:+.4}\">{word}</mark>",
                            bg.hex(),
                            fg.hex(),
                            span.relevance
                        );
                    }
                    None => out.push_str(&word),
                }
                at = span.end;
            }
        }
        out.push_str(&escape(&text[at..]));
        out.push_str("</p>\n");
    }
    out.push_str("</body></html>\n");
    out
}
