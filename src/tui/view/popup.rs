//! Popups over the main view: help, method picker, search and export prompts, the edit box and
//! word details.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use unicode_width::UnicodeWidthStr;

use super::centered;
use super::text::{spinner, styled_row};
use crate::methods::Method;
use crate::render::palette::Bucket;
use crate::tui::app::{App, EditState, Popup, UnitState};
use crate::tui::keys::KEY_HELP;
use crate::tui::layout::{self, grapheme_width};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let Some(popup) = &app.popup else {
        return;
    };
    let theme = app.theme();
    match popup {
        Popup::Help => {
            let key_columns = KEY_HELP.iter().map(|(k, _)| k.width()).max().unwrap_or(0) + 2;
            let lines: Vec<Line> = KEY_HELP
                .iter()
                .map(|(keys, action)| {
                    Line::from(vec![
                        Span::styled(format!(" {keys:<key_columns$}"), theme.key_hint()),
                        Span::raw(*action),
                    ])
                })
                .collect();
            let width = lines.iter().map(Line::width).max().unwrap_or(20) as u16 + 3;
            let rect = centered(area, width, lines.len() as u16 + 2);
            draw_box(
                frame,
                rect,
                " keys — Esc closes ",
                Paragraph::new(lines),
                theme.border(true),
            );
        }
        Popup::MethodPicker { selected } => {
            let lines: Vec<Line> = Method::ALL
                .iter()
                .enumerate()
                .map(|(i, method)| {
                    let mut notes = Vec::new();
                    if method.is_signed() {
                        notes.push("signed");
                    }
                    if !method.is_class_specific() {
                        notes.push("same for every class");
                    }
                    let mark = if *method == app.settings.method {
                        "●"
                    } else {
                        " "
                    };
                    let line = Line::from(vec![
                        Span::raw(format!(" {mark} {:<30}", method.name())),
                        Span::styled(notes.join(", "), theme.dim()),
                    ]);
                    if i == *selected {
                        line.style(theme.list_highlight())
                    } else {
                        line
                    }
                })
                .collect();
            let rect = centered(area, 60, lines.len() as u16 + 2);
            draw_box(
                frame,
                rect,
                " method — Enter picks, Esc closes ",
                Paragraph::new(lines),
                theme.border(true),
            );
        }
        Popup::SearchPrompt { query } => {
            let rect = bottom_box(area, 3);
            draw_box(
                frame,
                rect,
                " search — Enter finds, Esc cancels ",
                Paragraph::new(format!("/{query}")),
                theme.border(true),
            );
            let x = rect.x + 2 + query.width() as u16;
            frame.set_cursor_position(Position::new(
                x.min(rect.right().saturating_sub(2)),
                rect.y + 1,
            ));
        }
        Popup::ExportPrompt => {
            let rect = centered(area, 56, 3);
            let line = Line::from(vec![
                Span::raw(" export the visible units: "),
                Span::styled("h", theme.key_hint()),
                Span::raw(" HTML  "),
                Span::styled("j", theme.key_hint()),
                Span::raw(" JSON  "),
                Span::styled("Esc", theme.key_hint()),
                Span::raw(" cancel"),
            ]);
            draw_box(
                frame,
                rect,
                " export ",
                Paragraph::new(line),
                theme.border(true),
            );
        }
        Popup::Edit(edit) => render_edit(frame, area, app, edit),
        Popup::WordDetails { unit, item } => {
            let UnitState::Ready(scores) = app.unit_state(*unit) else {
                return;
            };
            let Some(span) = scores.spans.get(*item) else {
                return;
            };
            let label = |i: usize| app.labels.get(i).map_or("?", String::as_str);
            let lines = vec![
                Line::from(vec![
                    Span::raw(" word       "),
                    Span::styled(span.text.clone(), theme.relevance(span.intensity)),
                ]),
                Line::raw(format!(
                    " bytes      {}..{} of unit {}",
                    span.start,
                    span.end,
                    unit + 1
                )),
                Line::raw(format!(" relevance  {:+.6}", span.relevance)),
                Line::raw(format!(
                    " shown as   {:+.3} ({}), bucket {}",
                    span.intensity,
                    app.settings.normalization.name(),
                    Bucket::of(span.intensity).0
                )),
                Line::raw(format!(
                    " target     {}",
                    app.settings.target.describe(&app.labels)
                )),
                Line::raw(format!(
                    " predicted  {} ({:.2})",
                    label(scores.predicted),
                    scores.probs.get(scores.predicted).copied().unwrap_or(0.0)
                )),
            ];
            let rect = centered(area, 52, lines.len() as u16 + 2);
            draw_box(
                frame,
                rect,
                " word — Esc closes ",
                Paragraph::new(lines),
                theme.border(true),
            );
        }
    }
}

fn bottom_box(area: Rect, height: u16) -> Rect {
    let height = height.min(area.height);
    Rect::new(area.x, area.bottom() - height, area.width, height)
}

fn draw_box(
    frame: &mut Frame,
    rect: Rect,
    title: &str,
    body: Paragraph,
    border: ratatui::style::Style,
) {
    frame.render_widget(Clear, rect);
    frame.render_widget(
        body.block(
            Block::bordered()
                .title(title.to_string())
                .border_style(border),
        ),
        rect,
    );
}

/// The edit box: the buffer wrapped and coloured by its latest explanation, with the caret.
fn render_edit(frame: &mut Frame, area: Rect, app: &App, edit: &EditState) {
    let theme = app.theme();
    let width = area.width.saturating_sub(2).max(1) as usize;
    let rows = layout::wrap(&edit.buffer, width);
    let height = (rows.len() as u16 + 2).clamp(3, area.height.saturating_sub(2).max(3));
    let rect = bottom_box(area, height);
    let state = app.unit_state(edit.unit);
    let spans = match &state {
        UnitState::Ready(scores) => scores.spans.clone(),
        _ => Vec::new(),
    };
    let waiting = app.scores_for_text(&edit.buffer).is_none();
    let lines: Vec<Line> = rows
        .iter()
        .map(|row| Line::from(styled_row(theme, &edit.buffer, *row, &spans, None, &[])))
        .collect();
    let title = format!(
        " edit unit {}{} — Enter keeps (in memory), Esc drops ",
        edit.unit + 1,
        if waiting {
            format!(" {}", spinner(app.spinner_tick))
        } else {
            String::new()
        }
    );
    // Show the rows around the caret when the buffer is taller than the box.
    let caret_row = rows
        .iter()
        .rposition(|r| r.start <= edit.caret)
        .unwrap_or(0);
    let inner_height = rect.height.saturating_sub(2) as usize;
    let scroll = caret_row.saturating_sub(inner_height.saturating_sub(1));
    draw_box(
        frame,
        rect,
        &title,
        Paragraph::new(lines).scroll((scroll as u16, 0)),
        theme.border(true),
    );
    if let Some(row) = rows.get(caret_row) {
        let column: usize = unicode_segmentation::UnicodeSegmentation::graphemes(
            &edit.buffer[row.start..edit.caret.max(row.start)],
            true,
        )
        .map(grapheme_width)
        .sum();
        let x = rect.x + 1 + column.min(width) as u16;
        let y = rect.y + 1 + (caret_row - scroll) as u16;
        frame.set_cursor_position(Position::new(x, y));
    }
}
