//! The status bar: colour legend, progress, messages, and key hints.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use unicode_width::UnicodeWidthStr;

use super::text::spinner;
use crate::render::palette::Bucket;
use crate::tui::app::{App, Granularity, TargetChoice};
use crate::tui::export::palette_name;
use crate::tui::keys::HINTS;
use crate::tui::theme::ColorMode;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme();
    let signed = app.settings.method.is_signed()
        || matches!(app.settings.target, TargetChoice::Contrast { .. });
    let mut first: Vec<Span> = Vec::new();
    if theme.mode == ColorMode::NoColor {
        first.push(Span::raw("legend: "));
        first.push(Span::styled("for", theme.relevance(0.5)));
        first.push(Span::raw(" "));
        first.push(Span::styled("strongly for", theme.relevance(1.0)));
        if signed {
            first.push(Span::raw(" "));
            first.push(Span::styled("against", theme.relevance(-0.5)));
        }
    } else {
        first.push(Span::raw(if signed { "against " } else { "0 " }));
        let buckets: Vec<i8> = if signed {
            (-5..=5).collect()
        } else {
            (0..=5).collect()
        };
        for bucket in buckets {
            let style = theme.bucket(Bucket(bucket));
            let style = if bucket == 0 { theme.neutral() } else { style };
            first.push(Span::styled("  ", style));
        }
        first.push(Span::raw(" for"));
    }
    let view = match app.settings.granularity {
        Granularity::Words => "words",
        Granularity::Pieces => "pieces",
    };
    first.push(Span::raw(format!(
        "  │ unit {}/{}{} │ {} · {} · {view} ",
        (app.cursor + 1).min(app.unit_count()),
        app.unit_count(),
        if app.document.units_complete {
            ""
        } else {
            "+ (splitting…)"
        },
        app.settings.normalization.name(),
        palette_name(app.settings.palette),
    )));
    let pending = app.pending_visible();
    if pending > 0 {
        first.push(Span::styled(
            format!(
                "│ {} explaining {pending} unit{} ",
                spinner(app.spinner_tick),
                if pending == 1 { "" } else { "s" }
            ),
            theme.key_hint(),
        ));
    }
    if let Some(message) = &app.status {
        first.push(Span::raw("│ "));
        first.push(Span::raw(message.clone()));
    }
    // As many hints as fit; `?` (listed first) always does.
    let mut hints: Vec<Span> = Vec::new();
    let mut used = 0;
    for (key, action) in HINTS {
        let cells = key.width() + action.width() + 3;
        if used + cells > area.width as usize {
            break;
        }
        used += cells;
        hints.push(Span::styled(*key, theme.key_hint()));
        hints.push(Span::raw(format!(" {action}  ")));
    }
    let lines = vec![Line::from(first), Line::from(hints)];
    frame.render_widget(Paragraph::new(lines).style(theme.status_bar()), area);
}
