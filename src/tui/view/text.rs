//! The text pane: each unit's wrapped rows, words on their relevance colour, and a gutter with the
//! unit's predicted label.

use std::ops::Range;

use ratatui::Frame;
use ratatui::layout::{Margin, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Scrollbar, ScrollbarOrientation, ScrollbarState};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use crate::tui::app::{App, Pane, ScoredSpan, ScreenRow, UnitState, search_hits};
use crate::tui::layout::{RowSpan, display_grapheme};
use crate::tui::theme::Theme;

/// Gutter columns: a cursor mark, the label (up to 9 columns) and a space.
pub const GUTTER_WIDTH: u16 = 11;
const SPINNER: [&str; 4] = ["◐", "◓", "◑", "◒"];
/// Shown instead of probabilities and words when the document has no unit (an empty or
/// blank-only file), where nothing is ever explained.
pub const NO_TEXT: &str = "no text to explain";

pub fn spinner(tick: usize) -> &'static str {
    SPINNER[tick % SPINNER.len()]
}

pub fn render(frame: &mut Frame, area: Rect, app: &mut App) {
    let theme = app.theme();
    let modified = if app.document.modified { " [+]" } else { "" };
    let block = Block::bordered()
        .title(format!(" {}{modified} ", app.document.name()))
        .border_style(theme.border(app.focus == Pane::Text));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let text_width = inner.width.saturating_sub(GUTTER_WIDTH) as usize;
    app.set_text_area(text_width.max(1), inner.height as usize);
    app.screen.text_rows.clear();
    app.screen.text_x = inner.x + GUTTER_WIDTH;
    app.screen.text_right = inner.right();
    if app.unit_count() == 0 {
        frame.render_widget(
            Paragraph::new("(the document has no text)").style(theme.dim()),
            inner,
        );
        app.visible_units = 0..0;
        return;
    }
    app.visible_units = app.compute_visible_units();
    let query = app.search.as_ref().map(|(q, _)| q.clone());
    let mut lines = Vec::with_capacity(inner.height as usize);
    let mut unit = app.top.unit;
    let mut first_row = app.top.row;
    while unit < app.unit_count() && lines.len() < inner.height as usize {
        let separator = usize::from(app.document.paragraph_break_before(unit));
        let rows = app.unit_rows(unit);
        let state = app.unit_state(unit);
        let text = app.unit_text(unit).to_owned();
        let hits = query
            .as_deref()
            .map(|q| search_hits(&text, q))
            .unwrap_or_default();
        let (spans, selected): (&[ScoredSpan], Option<usize>) = match &state {
            UnitState::Ready(scores) => (
                &scores.spans,
                app.selected_span.filter(|_| unit == app.cursor),
            ),
            _ => (&[], None),
        };
        for block_row in first_row..separator + rows.len() {
            if lines.len() >= inner.height as usize {
                break;
            }
            let y = inner.y + lines.len() as u16;
            if block_row < separator {
                lines.push(Line::default());
                app.screen.text_rows.push(ScreenRow {
                    y,
                    unit,
                    span: None,
                });
                continue;
            }
            let row_index = block_row - separator;
            let row = rows[row_index];
            let mut line = gutter(app, theme, unit, row_index, &state);
            line.extend(styled_row(theme, &text, row, spans, selected, &hits));
            lines.push(Line::from(line));
            app.screen.text_rows.push(ScreenRow {
                y,
                unit,
                span: Some(row),
            });
        }
        first_row = 0;
        unit += 1;
    }
    frame.render_widget(Paragraph::new(lines), inner);
    if app.visible_units.len() >= app.unit_count() && app.top == Default::default() {
        return; // the whole text is on screen: no scrollbar
    }
    let mut scrollbar = ScrollbarState::new(app.unit_count().saturating_sub(1))
        .position(app.top.unit)
        .viewport_content_length(app.visible_units.len());
    frame.render_stateful_widget(
        Scrollbar::new(ScrollbarOrientation::VerticalRight)
            .begin_symbol(None)
            .end_symbol(None),
        area.inner(Margin {
            vertical: 1,
            horizontal: 0,
        }),
        &mut scrollbar,
    );
}

fn gutter(
    app: &App,
    theme: Theme,
    unit: usize,
    row_index: usize,
    state: &UnitState,
) -> Vec<Span<'static>> {
    let is_cursor = unit == app.cursor;
    let mark = if is_cursor { "▌" } else { " " };
    let label = if row_index > 0 {
        String::new()
    } else {
        match state {
            UnitState::Ready(scores) => app
                .labels
                .get(scores.predicted)
                .cloned()
                .unwrap_or_else(|| scores.predicted.to_string()),
            UnitState::Pending => spinner(app.spinner_tick).to_string(),
            UnitState::Failed(_) => "error".to_string(),
        }
    };
    let label = fit(&label, GUTTER_WIDTH as usize - 2);
    let label_style = match (is_cursor, state) {
        (_, UnitState::Failed(_)) => theme.error(),
        (true, _) => theme.title(),
        (false, _) => theme.gutter(),
    };
    vec![
        Span::styled(
            mark,
            if is_cursor {
                theme.key_hint()
            } else {
                Style::new()
            },
        ),
        Span::styled(
            format!("{label:<width$} ", width = GUTTER_WIDTH as usize - 2),
            label_style,
        ),
    ]
}

/// `text` cut to `width` columns, with `…` when it was cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for g in text.graphemes(true) {
        let w = g.width();
        if used + w + 1 > width {
            break;
        }
        out.push_str(g);
        used += w;
    }
    out.push('…');
    out
}

/// The spans of one row: each grapheme styled by the scored span covering it, the selection and
/// search hits; neighbours with the same style are merged.
pub fn styled_row(
    theme: Theme,
    text: &str,
    row: RowSpan,
    spans: &[ScoredSpan],
    selected: Option<usize>,
    hits: &[Range<usize>],
) -> Vec<Span<'static>> {
    let mut out: Vec<Span<'static>> = Vec::new();
    let mut current = String::new();
    let mut current_style = Style::new();
    let mut span_index = spans.partition_point(|s| s.end <= row.start);
    let mut hit_index = hits.partition_point(|h| h.end <= row.start);
    for (offset, grapheme) in text[row.start..row.end].grapheme_indices(true) {
        let at = row.start + offset;
        while span_index < spans.len() && spans[span_index].end <= at {
            span_index += 1;
        }
        while hit_index < hits.len() && hits[hit_index].end <= at {
            hit_index += 1;
        }
        let mut style = Style::new();
        if let Some(span) = spans.get(span_index).filter(|s| s.start <= at) {
            style = theme.relevance(span.intensity);
            if selected == Some(span_index) {
                style = style.patch(theme.selected_word());
            }
        }
        if hits.get(hit_index).is_some_and(|h| h.start <= at) {
            style = style.patch(theme.search_match());
        }
        if style != current_style && !current.is_empty() {
            out.push(Span::styled(std::mem::take(&mut current), current_style));
        }
        current_style = style;
        current.push_str(display_grapheme(grapheme));
    }
    if !current.is_empty() {
        out.push(Span::styled(current, current_style));
    }
    out
}
