//! The header: model, method, target, display settings, and a probability bar per class for the
//! unit under the cursor.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::text::fit;
use crate::tui::app::{App, TargetChoice, UnitState};
use crate::tui::view::text::{NO_TEXT, spinner};

const BAR_CELLS: usize = 10;
const LABEL_COLUMNS: usize = 12;
/// Label, bar, probability and a gap.
const CLASS_COLUMNS: usize = LABEL_COLUMNS + 1 + BAR_CELLS + 6 + 2;
/// With more classes than fit in this many rows, the explained ones and the most probable are shown.
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
    let block = Block::default()
        .borders(Borders::BOTTOM)
        .border_style(theme.border(false));
    if app.unit_count() == 0 {
        // Nothing will ever be explained: a spinner here would wait forever.
        lines.push(Line::styled(NO_TEXT, theme.dim()));
        frame.render_widget(Paragraph::new(lines).block(block), area);
        return;
    }

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
    let shown = classes_to_show(
        app.labels.len(),
        per_row * MAX_BAR_ROWS,
        &[explained_class, against],
        probs.as_deref(),
    );
    let mut row: Vec<Span> = Vec::new();
    for (position, &class) in shown.iter().enumerate() {
        let label = &app.labels[class];
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
        if (position + 1) % per_row == 0 {
            lines.push(Line::from(std::mem::take(&mut row)));
        }
    }
    if !row.is_empty() {
        lines.push(Line::from(row));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The classes that get a bar: all when they fit in `capacity`, else the pinned ones (target,
/// contrast class) and then the most probable, in label order.
fn classes_to_show(
    classes: usize,
    capacity: usize,
    pinned: &[Option<usize>],
    probs: Option<&[f64]>,
) -> Vec<usize> {
    if classes <= capacity {
        return (0..classes).collect();
    }
    let mut by_priority: Vec<usize> = pinned
        .iter()
        .flatten()
        .copied()
        .filter(|&c| c < classes)
        .collect();
    let mut rest: Vec<usize> = (0..classes).filter(|c| !by_priority.contains(c)).collect();
    if let Some(probs) = probs {
        let p = |c: usize| probs.get(c).copied().unwrap_or(0.0);
        rest.sort_by(|&a, &b| p(b).total_cmp(&p(a)));
    }
    by_priority.extend(rest);
    by_priority.truncate(capacity);
    by_priority.sort_unstable();
    by_priority
}

#[cfg(test)]
mod tests {
    use super::classes_to_show;

    #[test]
    fn many_classes_keep_the_target_and_the_most_probable() {
        assert_eq!(classes_to_show(3, 6, &[None, None], None), [0, 1, 2]);
        let probs = [0.1, 0.5, 0.05, 0.3, 0.05];
        assert_eq!(
            classes_to_show(5, 3, &[Some(4), None], Some(&probs)),
            [1, 3, 4]
        );
    }
}
