//! Popups over the main view: help, method picker, search and export prompts, the edit box and
//! word details.

use ratatui::Frame;
use ratatui::layout::{Margin, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Clear, List, ListItem, ListState, Paragraph, Scrollbar, ScrollbarOrientation,
    ScrollbarState,
};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use super::centered;
use super::text::{spinner, styled_row};
use crate::methods::Method;
use crate::render::palette::Bucket;
use crate::tui::app::{App, EditState, Popup, UnitState};
use crate::tui::keys::KEY_HELP;
use crate::tui::layout::{self, grapheme_width};

/// Draws the open popup. `status_rows` at the bottom of `area` are the status bar, which the
/// edit box leaves visible (its messages answer the keys pressed while editing).
pub fn render(frame: &mut Frame, area: Rect, status_rows: u16, app: &mut App) {
    let Some(popup) = &app.popup else {
        return;
    };
    let theme = app.theme();
    match popup {
        Popup::Help => render_help(frame, area, app),
        Popup::MethodPicker { selected } => {
            let items: Vec<ListItem> = Method::ALL
                .iter()
                .map(|method| {
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
                    ListItem::new(Line::from(vec![
                        Span::raw(format!(" {mark} {:<30}", method.name())),
                        Span::styled(notes.join(", "), theme.dim()),
                    ]))
                })
                .collect();
            let rect = centered(area, 60, items.len() as u16 + 2);
            // The list state scrolls to keep the highlighted method visible in a short terminal.
            let mut state = ListState::default().with_selected(Some(*selected));
            frame.render_widget(Clear, rect);
            frame.render_stateful_widget(
                List::new(items)
                    .highlight_style(theme.list_highlight())
                    .block(
                        Block::bordered()
                            .title(" method — Enter picks, Esc closes ")
                            .border_style(theme.border(true)),
                    ),
                rect,
                &mut state,
            );
        }
        Popup::SearchPrompt { query } => {
            let rect = bottom_box(area, 3);
            // One column stays free for the cursor; a longer query shows its end, where the
            // typing happens.
            let room = rect.width.saturating_sub(3) as usize;
            let shown = tail(&format!("/{query}"), room);
            let x = rect.x + 1 + shown.width() as u16;
            draw_box(
                frame,
                rect,
                " search — Enter finds, Esc cancels ",
                Paragraph::new(shown),
                theme.border(true),
            );
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
        Popup::Edit(edit) => {
            let above_status = Rect {
                height: area
                    .height
                    .saturating_sub(status_rows)
                    .max(3)
                    .min(area.height),
                ..area
            };
            render_edit(frame, above_status, app, edit)
        }
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

/// The help overlay: the key table, its long lines wrapped to the screen, scrolled by
/// `app.help_scroll` when it is taller than the screen.
fn render_help(frame: &mut Frame, area: Rect, app: &mut App) {
    let theme = app.theme();
    let key_columns = KEY_HELP.iter().map(|(k, _)| k.width()).max().unwrap_or(0) + 2;
    let indent = key_columns + 1;
    let widest = KEY_HELP
        .iter()
        .map(|(_, action)| indent + action.width())
        .max()
        .unwrap_or(20);
    // Borders and a free column on the right.
    let width = (widest + 3).min(area.width as usize);
    let action_columns = width.saturating_sub(indent + 3).max(1);
    let mut lines: Vec<Line> = Vec::new();
    for (keys, action) in KEY_HELP {
        for (index, row) in layout::wrap(action, action_columns).iter().enumerate() {
            let keys = if index == 0 { keys } else { "" };
            lines.push(Line::from(vec![
                Span::styled(format!(" {keys:<key_columns$}"), theme.key_hint()),
                Span::raw(action[row.start..row.end].to_string()),
            ]));
        }
    }
    let rect = centered(area, width as u16, lines.len() as u16 + 2);
    let inner_height = rect.height.saturating_sub(2) as usize;
    let scroll_max = lines.len().saturating_sub(inner_height);
    app.screen.help_scroll_max = scroll_max;
    app.screen.help_rows = inner_height;
    app.help_scroll = app.help_scroll.min(scroll_max);
    let scroll = app.help_scroll;
    let mut block = Block::bordered()
        .title(if scroll_max > 0 {
            " keys — Esc closes, j/k scroll "
        } else {
            " keys — Esc closes "
        })
        .border_style(theme.border(true));
    let more = match (scroll > 0, scroll < scroll_max) {
        (_, true) => Some(" ↓ more "),
        (true, false) => Some(" ↑ more "),
        (false, false) => None,
    };
    if let Some(more) = more {
        block = block.title_bottom(Line::styled(more, theme.key_hint()).right_aligned());
    }
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines)
            .scroll((scroll.min(u16::MAX as usize) as u16, 0))
            .block(block),
        rect,
    );
    if scroll_max > 0 {
        let mut state = ScrollbarState::new(scroll_max).position(scroll);
        frame.render_stateful_widget(
            Scrollbar::new(ScrollbarOrientation::VerticalRight)
                .begin_symbol(None)
                .end_symbol(None),
            rect.inner(Margin {
                vertical: 1,
                horizontal: 0,
            }),
            &mut state,
        );
    }
}

/// The end of `text` that fits in `width` columns, with `…` in front when the start was cut.
fn tail(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut kept = Vec::new();
    let mut used = 1;
    for grapheme in text.graphemes(true).rev() {
        let cells = grapheme.width();
        if used + cells > width {
            break;
        }
        used += cells;
        kept.push(grapheme);
    }
    kept.reverse();
    format!("…{}", kept.concat())
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
        " edit unit {}{} — Enter keeps (in memory), Ctrl-s saves, Esc drops ",
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
