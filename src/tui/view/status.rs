//! The status bar: colour legend, progress, messages, and key hints.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use unicode_width::UnicodeWidthStr;

use super::text::{fit, spinner};
use crate::render::palette::Bucket;
use crate::tui::app::{App, Granularity, TargetChoice};
use crate::tui::export::palette_name;
use crate::tui::keys::HINTS;
use crate::tui::layout::wrap;
use crate::tui::theme::ColorMode;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme();
    let signed = app.settings.method.is_signed()
        || matches!(app.settings.target, TargetChoice::Contrast { .. });
    let mut legend: Vec<Span> = Vec::new();
    if theme.mode == ColorMode::NoColor {
        legend.push(Span::raw("legend: "));
        legend.push(Span::styled("for", theme.relevance(0.5)));
        legend.push(Span::raw(" "));
        legend.push(Span::styled("strongly for", theme.relevance(1.0)));
        if signed {
            legend.push(Span::raw(" "));
            legend.push(Span::styled("against", theme.relevance(-0.5)));
        }
    } else {
        legend.push(Span::raw(if signed { "against " } else { "0 " }));
        let buckets: Vec<i8> = if signed {
            (-5..=5).collect()
        } else {
            (0..=5).collect()
        };
        for bucket in buckets {
            let style = theme.bucket(Bucket(bucket));
            let style = if bucket == 0 { theme.neutral() } else { style };
            legend.push(Span::styled("  ", style));
        }
        legend.push(Span::raw(" for"));
    }
    let view = match app.settings.granularity {
        Granularity::Words => "words",
        Granularity::Pieces => "pieces",
    };
    let position = if app.unit_count() == 0 {
        "no text".to_string()
    } else {
        format!(
            "unit {}/{}{}",
            app.cursor + 1,
            app.unit_count(),
            if app.document.units_complete {
                ""
            } else {
                "+ (splitting…)"
            },
        )
    };
    let settings = format!(
        "{} · {} · {view}",
        app.settings.normalization.name(),
        palette_name(app.settings.palette),
    );
    let pending = app.pending_visible();
    let pending = (pending > 0).then(|| {
        format!(
            "{} explaining {pending} unit{}",
            spinner(app.spinner_tick),
            if pending == 1 { "" } else { "s" }
        )
    });
    // In screen order; the legend is followed by a wider gap.
    let mut parts: Vec<Part> = vec![
        Part::new(legend, Priority::Legend),
        Part::new(vec![Span::raw(position)], Priority::Position),
        Part::new(vec![Span::raw(settings)], Priority::Settings),
    ];
    if let Some(pending) = pending {
        parts.push(Part::new(
            vec![Span::styled(pending, theme.key_hint())],
            Priority::Pending,
        ));
    }
    if let Some(message) = &app.status {
        let width = area.width as usize;
        if message.width() > width && area.height >= 2 {
            // Too long for a line: it takes the hints' row too (the hints are always in `?`).
            let rows = wrap(message, width);
            let second = rows.get(1).map_or("", |row| &message[row.start..]);
            let lines = vec![
                Line::raw(&message[rows[0].start..rows[0].end]),
                Line::raw(fit(second, width)),
            ];
            frame.render_widget(Paragraph::new(lines).style(theme.status_bar()), area);
            return;
        }
        // The message is what the user just asked for: it gets the room it needs (cut with an
        // ellipsis only when the line is too narrow for it) and the other parts fill what is
        // left, in order of priority.
        parts.push(Part::new(
            vec![Span::raw(fit(message, width))],
            Priority::Message,
        ));
        let mut kept = vec![false; parts.len()];
        let mut used = 0;
        let mut by_priority: Vec<usize> = (0..parts.len()).collect();
        by_priority.sort_by_key(|&i| parts[i].priority);
        for index in by_priority {
            let separator = if used == 0 { 0 } else { SEPARATOR_COLUMNS };
            let cells = parts[index].width() + separator;
            if used + cells <= width {
                used += cells;
                kept[index] = true;
            }
        }
        let mut kept = kept.into_iter();
        parts.retain(|_| kept.next().unwrap_or(false));
    }
    let mut first: Vec<Span> = Vec::new();
    let mut previous = None;
    for part in parts {
        match previous {
            Some(Priority::Legend) => first.push(Span::raw("  │ ")),
            Some(_) => first.push(Span::raw(" │ ")),
            None => {}
        }
        previous = Some(part.priority);
        first.extend(part.spans);
    }
    first.push(Span::raw(" "));
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

/// Columns between two parts: " │ ", or "  │ " after the legend.
const SEPARATOR_COLUMNS: usize = 4;

/// Which parts of the status line stay when a message needs the room (lowest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Priority {
    Message,
    Position,
    Pending,
    Legend,
    Settings,
}

struct Part<'a> {
    spans: Vec<Span<'a>>,
    priority: Priority,
}

impl<'a> Part<'a> {
    fn new(spans: Vec<Span<'a>>, priority: Priority) -> Self {
        Part { spans, priority }
    }

    fn width(&self) -> usize {
        self.spans.iter().map(|s| s.content.width()).sum()
    }
}
