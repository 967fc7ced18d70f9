//! Drawing: one file per pane. `render` lays the screen out and asks each pane to draw itself
//! from the [`App`] state; it is generic over nothing but a ratatui `Frame`, so the same code
//! draws to the terminal and to `TestBackend` in tests.

mod header;
mod popup;
mod ranking;
mod status;
pub mod text;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};

use super::app::{App, Pane};

/// Narrower than this, the word ranking is hidden (Tab shows it over the text instead).
pub const SIDE_PANEL_MIN_WIDTH: u16 = 80;
const SIDE_PANEL_WIDTH: u16 = 30;
/// The status bar: a message line and a line of key hints.
const STATUS_ROWS: u16 = 2;

/// Draws the whole screen and records where things went (for the mouse).
pub fn render(frame: &mut Frame, app: &mut App) {
    let area = frame.area();
    let header_height = header::height(app, area.width);
    let [header_area, body, status_area] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Min(3),
        Constraint::Length(STATUS_ROWS),
    ])
    .areas(area);
    app.side_panel_visible = area.width >= SIDE_PANEL_MIN_WIDTH;
    let (text_area, side_area) = if app.side_panel_visible {
        let [text_area, side_area] =
            Layout::horizontal([Constraint::Min(20), Constraint::Length(SIDE_PANEL_WIDTH)])
                .areas(body);
        (text_area, Some(side_area))
    } else if app.focus == Pane::Ranking {
        // Collapsed panel: shown over the right part of the text while it has the focus.
        let width = SIDE_PANEL_WIDTH.min(body.width);
        let overlay = Rect::new(body.right() - width, body.y, width, body.height);
        (body, Some(overlay))
    } else {
        (body, None)
    };
    text::render(frame, text_area, app);
    app.screen.ranking_rows.clear();
    app.screen.ranking_x = 0..0;
    if let Some(side_area) = side_area {
        ranking::render(frame, side_area, app);
    }
    header::render(frame, header_area, app);
    status::render(frame, status_area, app);
    popup::render(frame, area, status_area.height, app);
}

/// A rectangle of at most `width` × `height` centred in `area`.
pub(crate) fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}
