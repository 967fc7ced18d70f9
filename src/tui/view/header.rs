//! The header: model, method, target, display settings, and a probability bar per class for the
//! unit under the cursor.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::text::fit;
use crate::tui::app::{App, TargetChoice, UnitState};
use crate::tui::view::text::spinner;

const BAR_CELLS: usize = 10;
const LABEL_COLUMNS: usize = 12;
/// Label, bar, probability and a gap.
const CLASS_COLUMNS: usize = LABEL_COLUMNS + 1 + BAR_CELLS + 6 + 2;
/// More classes than fit in this many rows are cut (the status bar says how many are hidden).
const MAX_BAR_ROWS: usize = 3;

fn classes_per_row(width: u16) -> usize {
    (width as usize / CLASS_COLUMNS).max(1)
}

/// Rows the header needs: the title row, the bar rows and a bottom rule.
pub fn height(app: &App, width: u16) -> u16 {
    let rows = app
        .labels
        .len()
        .div_ceil(classes_per_row(width))
        .clamp(1, MAX_BAR_ROWS);
    (rows + 2) as u16
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme();
    let settings = &app.settings;
    let mut target = settings.target.describe(&app.labels);
    let state = app.unit_state(app.cursor);
    if let (TargetChoice::Predicted, UnitState::Ready(scores)) = (settings.target, &state) {
        target = format!(
            "predicted ({})",
            app.labels.get(scores.predicted).map_or("?", String::as_str)
        );
    }
    let field = |name: &'static str, value: String| {
        [
            Span::styled(format!("{name} "), theme.dim()),
            Span::styled(value, theme.title()),
            Span::raw("  "),
        ]
    };
    let mut title: Vec<Span> = Vec::new();
    title.extend(field("model", app.model_name.clone()));
    title.extend(field("method", settings.method.name().to_string()));
    title.extend(field("target", target));
    let mut lines = vec![Line::from(title)];

    let per_row = classes_per_row(area.width);
    let explained_class = match (&state, settings.target) {
        (UnitState::Ready(scores), _) => Some(scores.target),
        (_, TargetChoice::Class(c)) | (_, TargetChoice::Contrast { of: c, .. }) => Some(c),
        _ => None,
    };
    let against = match settings.target {
        TargetChoice::Contrast { against, .. } => Some(against),
        _ => None,
    };
    let probs = match &state {
        UnitState::Ready(scores) => Some(scores.probs.clone()),
        _ => None,
    };
    let mut row: Vec<Span> = Vec::new();
    for (class, label) in app.labels.iter().enumerate() {
        let is_target = explained_class == Some(class);
        let marker = if is_target {
            "▶"
        } else if against == Some(class) {
            "◀"
        } else {
            " "
        };
        row.push(Span::styled(marker, theme.probability_bar(is_target)));
        row.push(Span::styled(
            format!(
                "{:<width$}",
                fit(label, LABEL_COLUMNS - 1),
                width = LABEL_COLUMNS - 1
            ),
            if is_target {
                theme.title()
            } else {
                Style::new()
            },
        ));
        row.push(Span::raw(" "));
        match &probs {
            Some(probs) => {
                let p = probs.get(class).copied().unwrap_or(0.0).clamp(0.0, 1.0);
                let filled = (p * BAR_CELLS as f64).round() as usize;
                row.push(Span::styled(
                    "█".repeat(filled),
                    theme.probability_bar(is_target),
                ));
                row.push(Span::styled("░".repeat(BAR_CELLS - filled), theme.dim()));
                row.push(Span::raw(format!(" {p:.2}  ")));
            }
            None => {
                row.push(Span::styled(
                    format!(
                        "{:<width$}",
                        spinner(app.spinner_tick),
                        width = BAR_CELLS + 8
                    ),
                    theme.dim(),
                ));
            }
        }
        if (class + 1) % per_row == 0 {
            lines.push(Line::from(std::mem::take(&mut row)));
        }
    }
    if !row.is_empty() {
        lines.push(Line::from(row));
    }
    let block = Block::default()
        .borders(Borders::BOTTOM)
        .border_style(theme.border(false));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
