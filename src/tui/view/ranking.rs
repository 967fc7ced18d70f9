//! The side panel: the cursor unit's words ranked by |score|; moving through it selects the word
//! in the text.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use unicode_width::UnicodeWidthStr;

use super::text::{NO_TEXT, fit, spinner};
use crate::tui::app::{App, Granularity, Pane, UnitState};

pub fn render(frame: &mut Frame, area: Rect, app: &mut App) {
    let theme = app.theme();
    let focused = app.focus == Pane::Ranking;
    let noun = match app.settings.granularity {
        Granularity::Words => "words",
        Granularity::Pieces => "pieces",
    };
    let title = if app.unit_count() == 0 {
        format!(" {noun} ")
    } else {
        format!(" {noun} of unit {} ", app.cursor + 1)
    };
    let block = Block::bordered()
        .title(title)
        .border_style(theme.border(focused));
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    if app.unit_count() == 0 {
        frame.render_widget(Paragraph::new(NO_TEXT).style(theme.dim()), inner);
        return;
    }
    let state = app.unit_state(app.cursor);
    let scores = match &state {
        UnitState::Ready(scores) => scores.clone(),
        UnitState::Pending => {
            let line = format!("{} explaining…", spinner(app.spinner_tick));
            frame.render_widget(Paragraph::new(line).style(theme.dim()), inner);
            return;
        }
        UnitState::Failed(message) => {
            frame.render_widget(
                Paragraph::new(message.clone())
                    .style(theme.error())
                    .wrap(ratatui::widgets::Wrap { trim: true }),
                inner,
            );
            return;
        }
    };
    let ranking = app.ranking();
    let height = inner.height as usize;
    let first = app.ranking_index.saturating_sub(height.saturating_sub(1));
    // The word, its score right-aligned, one column for the selection mark.
    let score_columns = 6;
    let word_columns = (inner.width as usize)
        .saturating_sub(score_columns + 2)
        .max(1);
    let mut lines = Vec::new();
    app.screen.ranking_x = inner.x..inner.right();
    for (position, &span_index) in ranking.iter().enumerate().skip(first).take(height) {
        let span = &scores.spans[span_index];
        let is_highlighted = position == app.ranking_index;
        let word = fit(&span.text.replace(char::is_whitespace, " "), word_columns);
        let padding = word_columns.saturating_sub(word.width());
        let row_style = if is_highlighted && focused {
            theme.list_highlight()
        } else {
            Style::new()
        };
        let mark = if is_highlighted { "▶" } else { " " };
        lines.push(
            Line::from(vec![
                Span::raw(mark),
                Span::styled(word, theme.relevance(span.intensity)),
                Span::raw(" ".repeat(padding + 1)),
                Span::raw(format!(
                    "{:>+width$.2}",
                    span.intensity,
                    width = score_columns
                )),
            ])
            .style(row_style),
        );
        app.screen
            .ranking_rows
            .push((inner.y + (position - first) as u16, position));
    }
    if lines.is_empty() {
        lines.push(Line::styled("(no words)", theme.dim()));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
