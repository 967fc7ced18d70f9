//! The TUI's state and what every key and click does to it. Nothing here draws or touches the
//! terminal; keys become state changes or an [`Effect`] the run loop carries out (quit, export,
//! reload, save). Drawing (`view/`) reads this state and records where things landed on screen
//! ([`ScreenMap`]) so clicks can be mapped back.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use unicode_segmentation::UnicodeSegmentation;

use super::document::Document;
use super::layout::{self, RowSpan};
use super::theme::{ColorMode, Theme};
use super::worker::{Request, Response};
use crate::explainer::{Explanation, Target};
use crate::methods::Method;
use crate::render::palette::{Bucket, Normalization, Palette};

/// How long typing must pause before an edited unit is explained again.
pub const EDIT_DEBOUNCE: Duration = Duration::from_millis(250);
/// Units past the visible ones explained ahead of time, so paging down is instant.
const LOOKAHEAD_UNITS: usize = 24;
/// Units scanned by `]` / `[` before giving up (keeps the keys instant in a 10 MB file).
const INFLUENTIAL_SCAN_UNITS: usize = 2000;
/// Rows one step of the mouse wheel scrolls.
const WHEEL_ROWS: isize = 3;
/// A word counts as influential from this display intensity on (relevance bucket 3 of 5).
const INFLUENTIAL_INTENSITY: f64 = 0.4;

/// Which class the colours explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetChoice {
    /// Each unit's own predicted class.
    Predicted,
    Class(usize),
    /// R(of) − R(against): evidence for `of` rather than `against` (signed).
    Contrast {
        of: usize,
        against: usize,
    },
}

impl TargetChoice {
    /// The explanations needed per unit.
    pub fn targets(self) -> Vec<Target> {
        match self {
            TargetChoice::Predicted => vec![Target::Predicted],
            TargetChoice::Class(class) => vec![Target::Class(class)],
            TargetChoice::Contrast { of, against } => {
                vec![Target::Class(of), Target::Class(against)]
            }
        }
    }

    pub fn describe(self, labels: &[String]) -> String {
        let label = |i: usize| labels.get(i).cloned().unwrap_or_else(|| i.to_string());
        match self {
            TargetChoice::Predicted => "predicted".into(),
            TargetChoice::Class(class) => label(class),
            TargetChoice::Contrast { of, against } => {
                format!("{} vs {}", label(of), label(against))
            }
        }
    }
}

/// Whether colours are per word or per word-piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Words,
    Pieces,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Text,
    Ranking,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Html,
    Json,
}

impl ExportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Html => "html",
            ExportFormat::Json => "json",
        }
    }
}

/// Work the run loop does for a key: it needs the file system or ends the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Quit,
    Export(ExportFormat),
    Reload,
    Save,
}

/// What a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOutcome {
    /// Not bound in the current mode.
    Ignored,
    Handled,
    Effect(Effect),
}

/// The unit being edited with `i`.
#[derive(Debug, Clone)]
pub struct EditState {
    pub unit: usize,
    pub buffer: String,
    /// Byte offset of the caret in `buffer`.
    pub caret: usize,
    /// When the buffer last changed and has not been sent for explaining yet.
    changed_at: Option<Instant>,
    /// The text last sent for explaining (the colours show it once it is ready).
    pub submitted: String,
}

#[derive(Debug, Clone)]
pub enum Popup {
    Help,
    MethodPicker { selected: usize },
    SearchPrompt { query: String },
    ExportPrompt,
    Edit(EditState),
    WordDetails { unit: usize, item: usize },
}

/// The first visible screen row: row `row` of unit `unit`'s block (a block is an optional
/// blank separator row followed by the unit's wrapped rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ViewTop {
    pub unit: usize,
    pub row: usize,
}

/// One scored piece of a unit: a word or a word-piece, with byte offsets into the unit's text.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredSpan {
    pub text: String,
    pub start: usize,
    pub end: usize,
    /// The method's score (for a contrast: the difference of the two classes' scores).
    pub relevance: f64,
    /// `relevance` after display normalisation (−1..1 for signed views).
    pub intensity: f64,
}

/// A unit's prediction and scores as currently displayed.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitScores {
    pub probs: Vec<f64>,
    pub predicted: usize,
    /// The class explained (for a contrast: the `of` class).
    pub target: usize,
    pub spans: Vec<ScoredSpan>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UnitState {
    Pending,
    Failed(String),
    Ready(Rc<UnitScores>),
}

/// Where the last frame put things, for mouse clicks.
#[derive(Debug, Clone, Default)]
pub struct ScreenMap {
    pub text_rows: Vec<ScreenRow>,
    /// Column where unit text starts (right of the gutter).
    pub text_x: u16,
    pub text_right: u16,
    /// (screen row, index into the ranking) for each visible ranking entry.
    pub ranking_rows: Vec<(u16, usize)>,
    pub ranking_x: Range<u16>,
    /// How far the help overlay can scroll at the last frame's size (0: it all fits).
    pub help_scroll_max: usize,
    /// Rows of the help overlay on screen (a page for PgDn / PgUp).
    pub help_rows: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct ScreenRow {
    pub y: u16,
    pub unit: usize,
    /// None for a paragraph separator row.
    pub span: Option<RowSpan>,
}

/// Settings that change the colours; every one has a key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewSettings {
    pub method: Method,
    pub target: TargetChoice,
    pub normalization: Normalization,
    pub palette: Palette,
    pub granularity: Granularity,
}

pub struct App {
    pub document: Document,
    pub model_name: String,
    pub labels: Vec<String>,
    pub settings: ViewSettings,
    pub color_mode: ColorMode,
    results: HashMap<Request, Arc<Explanation>>,
    failures: HashMap<Request, String>,
    /// The unit under the cursor.
    pub cursor: usize,
    pub top: ViewTop,
    pub focus: Pane,
    /// Index into the cursor unit's `UnitScores::spans`.
    pub selected_span: Option<usize>,
    /// Index into the cursor unit's ranking.
    pub ranking_index: usize,
    pub popup: Option<Popup>,
    /// `g` was pressed; a second `g` goes to the top.
    pending_g: bool,
    /// The active search and the document byte offset of the current hit.
    pub search: Option<(String, Option<usize>)>,
    pub status: Option<String>,
    /// Text pane size from the last frame (columns for text, rows).
    pub text_width: usize,
    pub text_height: usize,
    pub side_panel_visible: bool,
    layout_cache: HashMap<usize, Rc<Vec<RowSpan>>>,
    layout_width: usize,
    pub screen: ScreenMap,
    /// Advances while explanations are pending (the spinner).
    pub spinner_tick: usize,
    /// Visible units in the last frame.
    pub visible_units: Range<usize>,
    /// First row of the help overlay shown.
    pub help_scroll: usize,
    /// A quit key was pressed with unsaved edits (and a warning shown); the next key decides.
    quit_armed: bool,
    /// Ctrl-s was pressed while the file had changed on disk (and a warning shown).
    save_armed: bool,
}

impl App {
    pub fn new(
        document: Document,
        model_name: String,
        labels: Vec<String>,
        settings: ViewSettings,
        color_mode: ColorMode,
    ) -> Self {
        let visible = 0..document.units.len().min(40);
        App {
            document,
            model_name,
            labels,
            settings,
            color_mode,
            results: HashMap::new(),
            failures: HashMap::new(),
            cursor: 0,
            top: ViewTop::default(),
            focus: Pane::Text,
            selected_span: None,
            ranking_index: 0,
            popup: None,
            pending_g: false,
            search: None,
            status: None,
            text_width: 60,
            text_height: 20,
            side_panel_visible: true,
            layout_cache: HashMap::new(),
            layout_width: 0,
            screen: ScreenMap::default(),
            spinner_tick: 0,
            visible_units: visible,
            help_scroll: 0,
            quit_armed: false,
            save_armed: false,
        }
    }

    pub fn theme(&self) -> Theme {
        Theme::new(self.color_mode, self.settings.palette)
    }

    pub fn unit_count(&self) -> usize {
        self.document.units.len()
    }

    // ---- explanations -------------------------------------------------------------------

    /// The text shown for unit `index`: the edit buffer while it is being edited.
    pub fn unit_text(&self, index: usize) -> &str {
        match &self.popup {
            Some(Popup::Edit(edit)) if edit.unit == index => &edit.buffer,
            _ => self.document.unit_text(index),
        }
    }

    fn requests_for(&self, text: &str) -> Vec<Request> {
        self.settings
            .target
            .targets()
            .into_iter()
            .map(|target| Request {
                text: text.to_owned(),
                method: self.settings.method,
                target,
            })
            .collect()
    }

    fn is_missing(&self, request: &Request) -> bool {
        !self.results.contains_key(request) && !self.failures.contains_key(request)
    }

    /// Explanations to compute, most urgent first: the text being edited, the unit under the
    /// cursor, the visible units, then a few units ahead of and behind the view.
    pub fn wanted_requests(&self) -> Vec<Request> {
        let mut wanted = Vec::new();
        let mut seen = HashSet::new();
        let mut want = |request: Request, wanted: &mut Vec<Request>| {
            if self.is_missing(&request) && seen.insert(request.clone()) {
                wanted.push(request);
            }
        };
        if let Some(Popup::Edit(edit)) = &self.popup
            && !edit.submitted.is_empty()
        {
            for request in self.requests_for(&edit.submitted) {
                want(request, &mut wanted);
            }
        }
        let count = self.unit_count();
        let visible = self.visible_units.start.min(count)..self.visible_units.end.min(count);
        let ahead = visible.end..(visible.end + LOOKAHEAD_UNITS).min(count);
        let behind = visible.start.saturating_sub(LOOKAHEAD_UNITS / 2)..visible.start;
        let units = std::iter::once(self.cursor.min(count.saturating_sub(1)))
            .filter(|_| count > 0)
            .chain(visible)
            .chain(ahead)
            .chain(behind.rev());
        for unit in units {
            if matches!(&self.popup, Some(Popup::Edit(edit)) if edit.unit == unit) {
                continue;
            }
            for request in self.requests_for(self.document.unit_text(unit)) {
                want(request, &mut wanted);
            }
        }
        wanted
    }

    /// Visible units still waiting for the worker (drives the progress indicator).
    pub fn pending_visible(&self) -> usize {
        self.visible_units
            .clone()
            .filter(|&unit| matches!(self.unit_state(unit), UnitState::Pending))
            .count()
    }

    pub fn receive(&mut self, response: Response) {
        match response.outcome {
            Ok(explanation) => {
                self.failures.remove(&response.request);
                self.results.insert(response.request, explanation);
            }
            Err(message) => {
                self.failures.insert(response.request, message);
            }
        }
    }

    /// Whether any explanation of this text for these settings failed.
    fn failure_for(&self, text: &str) -> Option<String> {
        self.requests_for(text)
            .iter()
            .find_map(|request| self.failures.get(request).cloned())
    }

    /// The scores of unit `index` as displayed now.
    pub fn unit_state(&self, index: usize) -> UnitState {
        let text = self.unit_text(index);
        match self.scores_for_text(text) {
            Some(scores) => UnitState::Ready(Rc::new(scores)),
            None => match self.failure_for(text) {
                Some(message) => UnitState::Failed(message),
                None => match &self.popup {
                    // While typing, keep the colours of the last explained version where the
                    // words have not moved, rather than flashing to uncoloured text.
                    Some(Popup::Edit(edit)) if edit.unit == index => self
                        .scores_for_text(&edit.submitted)
                        .map(|stale| UnitState::Ready(Rc::new(carry_over(stale, text))))
                        .unwrap_or(UnitState::Pending),
                    _ => UnitState::Pending,
                },
            },
        }
    }

    /// Scores of any text for the current settings, if its explanations are ready.
    pub fn scores_for_text(&self, text: &str) -> Option<UnitScores> {
        let explanations: Vec<&Arc<Explanation>> = self
            .requests_for(text)
            .iter()
            .map(|request| self.results.get(request))
            .collect::<Option<_>>()?;
        let first = explanations.first()?;
        let method = self.settings.method;
        let raw_of = |explanation: &Explanation| -> Vec<f64> {
            let Some(attribution) = explanation.attribution(method) else {
                return Vec::new();
            };
            match self.settings.granularity {
                Granularity::Words => attribution.word_scores.clone(),
                Granularity::Pieces => explanation
                    .tokens
                    .iter()
                    .zip(&attribution.token_scores)
                    .filter(|(token, _)| !token.special)
                    .map(|(_, &score)| score)
                    .collect(),
            }
        };
        let mut relevance = raw_of(first);
        if let Some(against) = explanations.get(1) {
            for (score, other) in relevance.iter_mut().zip(raw_of(against)) {
                *score -= other;
            }
        }
        let intensity = self.settings.normalization.apply(&relevance);
        let positions: Vec<(usize, usize)> = match self.settings.granularity {
            Granularity::Words => first.words.iter().map(|w| (w.start, w.end)).collect(),
            Granularity::Pieces => first
                .tokens
                .iter()
                .filter(|t| !t.special)
                .map(|t| (t.start, t.end))
                .collect(),
        };
        let spans = positions
            .into_iter()
            .zip(relevance.into_iter().zip(intensity))
            .map(|((start, end), (relevance, intensity))| ScoredSpan {
                text: first.text.get(start..end).unwrap_or_default().to_owned(),
                start,
                end,
                relevance,
                intensity,
            })
            .collect();
        Some(UnitScores {
            probs: first.probs.clone(),
            predicted: first.predicted,
            target: first.target,
            spans,
        })
    }

    /// The cursor unit's spans, strongest first (by |intensity|, then by position).
    pub fn ranking(&self) -> Vec<usize> {
        let UnitState::Ready(scores) = self.unit_state(self.cursor) else {
            return Vec::new();
        };
        let mut order: Vec<usize> = (0..scores.spans.len()).collect();
        let magnitude = |i: usize| {
            let m = scores.spans[i].intensity.abs();
            if m.is_finite() { m } else { 0.0 }
        };
        order.sort_by(|&a, &b| magnitude(b).total_cmp(&magnitude(a)).then(a.cmp(&b)));
        order
    }

    /// Marks edits whose typing pause is over as ready to explain.
    pub fn tick(&mut self, now: Instant) {
        if let Some(Popup::Edit(edit)) = &mut self.popup
            && edit
                .changed_at
                .is_some_and(|t| now.duration_since(t) >= EDIT_DEBOUNCE)
        {
            edit.changed_at = None;
            edit.submitted = edit.buffer.clone();
        }
    }

    // ---- layout and scrolling ---------------------------------------------------------------

    /// Sets the text pane size; wrapped rows are recomputed when the width changes.
    /// After a resize the cursor unit is brought back on screen.
    pub fn set_text_area(&mut self, width: usize, height: usize) {
        let resized = width != self.layout_width || height.max(1) != self.text_height;
        if width != self.layout_width {
            self.layout_cache.clear();
            self.layout_width = width;
        }
        self.text_width = width;
        self.text_height = height.max(1);
        if resized {
            self.ensure_cursor_visible();
        }
    }

    fn invalidate_layout(&mut self) {
        self.layout_cache.clear();
    }

    /// The wrapped rows of unit `index` at the current width.
    pub fn unit_rows(&mut self, index: usize) -> Rc<Vec<RowSpan>> {
        if matches!(&self.popup, Some(Popup::Edit(edit)) if edit.unit == index) {
            return Rc::new(layout::wrap(self.unit_text(index), self.text_width));
        }
        if let Some(rows) = self.layout_cache.get(&index) {
            return Rc::clone(rows);
        }
        let rows = Rc::new(layout::wrap(
            self.document.unit_text(index),
            self.text_width,
        ));
        self.layout_cache.insert(index, Rc::clone(&rows));
        rows
    }

    fn separator_rows(&self, index: usize) -> usize {
        usize::from(self.document.paragraph_break_before(index))
    }

    /// Screen rows of unit `index`'s block (separator included).
    pub fn block_height(&mut self, index: usize) -> usize {
        self.separator_rows(index) + self.unit_rows(index).len()
    }

    fn scroll_down(&mut self, rows: usize) {
        let count = self.unit_count();
        for _ in 0..rows {
            if self.top.unit >= count {
                break;
            }
            let height = self.block_height(self.top.unit);
            if self.top.row + 1 < height {
                self.top.row += 1;
            } else if self.top.unit + 1 < count {
                self.top = ViewTop {
                    unit: self.top.unit + 1,
                    row: 0,
                };
            } else {
                break;
            }
        }
        let max = self.max_top();
        if (self.top.unit, self.top.row) > (max.unit, max.row) {
            self.top = max;
        }
    }

    /// The furthest the view can scroll: the last row of the text on the last row of the pane
    /// (the very start when the whole text fits), so scrolling never shows empty rows below it.
    fn max_top(&mut self) -> ViewTop {
        let mut remaining = self.text_height;
        let mut unit = self.unit_count();
        while unit > 0 {
            unit -= 1;
            let height = self.block_height(unit);
            if height >= remaining {
                return ViewTop {
                    unit,
                    row: height - remaining,
                };
            }
            remaining -= height;
        }
        ViewTop::default()
    }

    fn scroll_up(&mut self, rows: usize) {
        for _ in 0..rows {
            if self.top.row > 0 {
                self.top.row -= 1;
            } else if self.top.unit > 0 {
                self.top.unit -= 1;
                self.top.row = self.block_height(self.top.unit).saturating_sub(1);
            } else {
                break;
            }
        }
    }

    /// Units with at least one row on screen when the view starts at `self.top`.
    pub fn compute_visible_units(&mut self) -> Range<usize> {
        let count = self.unit_count();
        let mut rows = 0;
        let mut unit = self.top.unit;
        let mut first_row = self.top.row;
        let start = unit;
        while unit < count && rows < self.text_height {
            rows += self.block_height(unit) - first_row.min(self.block_height(unit));
            first_row = 0;
            unit += 1;
        }
        start.min(count)..unit
    }

    /// Scrolls so the whole cursor unit is on screen (its start, if it is taller than the pane).
    pub fn ensure_cursor_visible(&mut self) {
        let count = self.unit_count();
        if count == 0 {
            self.cursor = 0;
            self.top = ViewTop::default();
            return;
        }
        self.cursor = self.cursor.min(count - 1);
        let cursor = self.cursor;
        let content_start = self.separator_rows(cursor);
        // A unit taller than the pane that starts above it fills the screen whatever part of it
        // is shown: jumping back to its start would lose the word being looked at.
        if cursor == self.top.unit && self.unit_rows(cursor).len() > self.text_height {
            return;
        }
        if cursor < self.top.unit || (cursor == self.top.unit && self.top.row > content_start) {
            self.top = ViewTop {
                unit: cursor,
                row: content_start,
            };
            return;
        }
        // Rows from the top of the screen to the end of the cursor unit, stopping early once it
        // is clearly below the screen.
        let mut rows_to_end = 0;
        let mut unit = self.top.unit;
        let mut skip = self.top.row;
        while unit <= cursor && rows_to_end <= self.text_height {
            rows_to_end += self.block_height(unit).saturating_sub(skip);
            skip = 0;
            unit += 1;
        }
        if unit > cursor && rows_to_end <= self.text_height {
            return;
        }
        // Put the cursor unit's last row on the last screen row, walking back from it.
        let height = self.block_height(cursor);
        if height >= self.text_height {
            self.top = ViewTop {
                unit: cursor,
                row: content_start,
            };
            return;
        }
        let mut remaining = self.text_height - height;
        let mut unit = cursor;
        while unit > 0 {
            let above = self.block_height(unit - 1);
            if above > remaining {
                self.top = ViewTop {
                    unit: unit - 1,
                    row: above - remaining,
                };
                return;
            }
            remaining -= above;
            unit -= 1;
        }
        self.top = ViewTop::default();
    }

    /// Scrolls, if needed, so the row of unit `unit` holding byte `byte` of its text is on
    /// screen (in a unit taller than the pane it may be far below the unit's start). A row that
    /// has to be scrolled to lands in the middle of the pane, with context on both sides.
    fn ensure_byte_visible(&mut self, unit: usize, byte: usize) {
        if unit >= self.unit_count() {
            return;
        }
        let row = self
            .unit_rows(unit)
            .iter()
            .rposition(|r| r.start <= byte)
            .unwrap_or(0);
        let target = self.separator_rows(unit) + row;
        let context = self.text_height / 2;
        if unit < self.top.unit || (unit == self.top.unit && target < self.top.row) {
            self.top = ViewTop { unit, row: target };
            self.scroll_up(context);
            return;
        }
        // Screen rows from the top of the pane down to the target row.
        let mut offset = 0;
        let mut at = self.top.unit;
        let mut skip = self.top.row;
        while at < unit && offset < self.text_height {
            offset += self.block_height(at).saturating_sub(skip);
            skip = 0;
            at += 1;
        }
        let offset = offset + target.saturating_sub(skip);
        if at == unit && offset < self.text_height {
            return;
        }
        self.top = ViewTop { unit, row: target };
        self.scroll_up(context);
        let max = self.max_top();
        if (self.top.unit, self.top.row) > (max.unit, max.row) {
            self.top = max;
        }
    }

    /// Brings the selected word of the cursor unit on screen.
    fn ensure_selection_visible(&mut self) {
        let Some(span) = self.selected_span else {
            return;
        };
        if let UnitState::Ready(scores) = self.unit_state(self.cursor)
            && let Some(span) = scores.spans.get(span)
        {
            self.ensure_byte_visible(self.cursor, span.start);
        }
    }

    fn move_cursor_to(&mut self, unit: usize) {
        let unit = unit.min(self.unit_count().saturating_sub(1));
        if unit != self.cursor {
            self.selected_span = None;
            self.ranking_index = 0;
        }
        self.cursor = unit;
        self.ensure_cursor_visible();
    }

    /// Scrolls by `rows` (negative: up) and keeps the cursor on a visible unit.
    fn scroll_page(&mut self, rows: isize) {
        if rows >= 0 {
            self.scroll_down(rows.unsigned_abs());
        } else {
            self.scroll_up(rows.unsigned_abs());
        }
        let visible = self.compute_visible_units();
        self.visible_units = visible.clone();
        if !visible.contains(&self.cursor) && !visible.is_empty() {
            let target = if self.cursor < visible.start {
                visible.start
            } else {
                visible.end - 1
            };
            self.selected_span = None;
            self.ranking_index = 0;
            self.cursor = target;
        }
    }

    // ---- keys ---------------------------------------------------------------------------------

    pub fn handle_key(&mut self, key: KeyEvent, now: Instant) -> KeyOutcome {
        if key.kind == KeyEventKind::Release {
            return KeyOutcome::Ignored;
        }
        // A warning that asks to press a key again holds for the very next key only: any other
        // key means the user moved on.
        let quit_confirmed = std::mem::take(&mut self.quit_armed);
        let save_confirmed = std::mem::take(&mut self.save_armed);
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            return self.request_quit(quit_confirmed, "Ctrl-c");
        }
        if self.popup.is_some() {
            return self.handle_popup_key(key, now, save_confirmed);
        }
        let was_pending_g = std::mem::take(&mut self.pending_g);
        let page = self.text_height.max(2) as isize;
        match (key.code, ctrl) {
            (KeyCode::Char('q'), false) => return self.request_quit(quit_confirmed, "q"),
            (KeyCode::Esc, _) => {
                self.search = None;
                self.selected_span = None;
                self.status = None;
                self.focus = Pane::Text;
            }
            (KeyCode::Char('j') | KeyCode::Down, false) => self.move_down(),
            (KeyCode::Char('k') | KeyCode::Up, false) => self.move_up(),
            (KeyCode::PageDown, _) | (KeyCode::Char('f'), true) => self.scroll_page(page - 1),
            (KeyCode::PageUp, _) | (KeyCode::Char('b'), true) => self.scroll_page(-(page - 1)),
            (KeyCode::Char('d'), true) => self.scroll_page(page / 2),
            (KeyCode::Char('u'), true) => self.scroll_page(-(page / 2)),
            (KeyCode::Char('g'), false) if was_pending_g => self.move_cursor_to(0),
            (KeyCode::Char('g'), false) => self.pending_g = true,
            (KeyCode::Home, _) => self.move_cursor_to(0),
            (KeyCode::Char('G'), _) | (KeyCode::End, _) => {
                self.move_cursor_to(self.unit_count().saturating_sub(1))
            }
            (KeyCode::Tab, _) | (KeyCode::BackTab, _) => {
                self.focus = match self.focus {
                    Pane::Text => Pane::Ranking,
                    Pane::Ranking => Pane::Text,
                };
            }
            (KeyCode::Enter, _) if self.focus == Pane::Ranking => self.jump_to_ranked(),
            (KeyCode::Char(']'), _) => self.jump_influential(true),
            (KeyCode::Char('['), _) => self.jump_influential(false),
            (KeyCode::Char('c'), false) => self.cycle_class(),
            (KeyCode::Char('C'), _) => self.cycle_contrast(),
            (KeyCode::Char(digit @ '1'..='9'), false) => {
                let class = digit as usize - '1' as usize;
                if class < self.labels.len() {
                    self.set_target(TargetChoice::Class(class));
                } else {
                    return KeyOutcome::Ignored;
                }
            }
            (KeyCode::Char('0'), false) => self.set_target(TargetChoice::Predicted),
            (KeyCode::Char('m'), false) => {
                let selected = Method::ALL
                    .iter()
                    .position(|&m| m == self.settings.method)
                    .unwrap_or(0);
                self.popup = Some(Popup::MethodPicker { selected });
            }
            (KeyCode::Char('n'), false) if self.search.is_some() => self.search_step(true),
            (KeyCode::Char('N'), _) if self.search.is_some() => self.search_step(false),
            (KeyCode::Char('n'), false) => self.cycle_normalization(),
            (KeyCode::Char('p'), false) => self.cycle_palette(),
            (KeyCode::Char('w'), false) => self.toggle_granularity(),
            (KeyCode::Char('/'), _) => {
                self.popup = Some(Popup::SearchPrompt {
                    query: String::new(),
                })
            }
            (KeyCode::Char('e'), false) => self.popup = Some(Popup::ExportPrompt),
            (KeyCode::Char('r'), false) => return KeyOutcome::Effect(Effect::Reload),
            (KeyCode::Char('s'), true) => return self.request_save(save_confirmed),
            (KeyCode::Char('?'), _) | (KeyCode::F(1), _) => {
                self.help_scroll = 0;
                self.popup = Some(Popup::Help);
            }
            (KeyCode::Char('i'), false) => self.start_edit(),
            _ => return KeyOutcome::Ignored,
        }
        KeyOutcome::Handled
    }

    /// Whether quitting now would lose work: edits not written to the file, or an edit box
    /// whose text differs from the unit.
    pub fn has_unsaved_edits(&self) -> bool {
        self.document.modified
            || matches!(&self.popup, Some(Popup::Edit(edit))
                if edit.buffer != self.document.unit_text(edit.unit))
    }

    /// Quits, unless that would drop unsaved edits and this is not the confirming second press.
    fn request_quit(&mut self, confirmed: bool, key: &str) -> KeyOutcome {
        if confirmed || !self.has_unsaved_edits() {
            return KeyOutcome::Effect(Effect::Quit);
        }
        self.quit_armed = true;
        let save = if self.document.path().is_some() {
            "Ctrl-s saves"
        } else {
            "the text came from stdin, e exports it"
        };
        self.status = Some(format!(
            "unsaved edits: {save}, {key} again quits without saving"
        ));
        KeyOutcome::Handled
    }

    /// Saves, unless the file changed on disk since it was read (saving would silently drop
    /// that change) and this is not the confirming second Ctrl-s.
    fn request_save(&mut self, confirmed: bool) -> KeyOutcome {
        let changed = self.document.path().is_some()
            && (self.document.changed_outside || self.document.changed_on_disk());
        if changed && !confirmed {
            self.save_armed = true;
            self.status = Some(
                "the file changed on disk since it was loaded; Ctrl-s again overwrites it, r reloads and drops your edits"
                    .into(),
            );
            return KeyOutcome::Handled;
        }
        KeyOutcome::Effect(Effect::Save)
    }

    fn scroll_help(&mut self, rows: isize) {
        self.help_scroll = self
            .help_scroll
            .saturating_add_signed(rows)
            .min(self.screen.help_scroll_max);
    }

    fn handle_popup_key(
        &mut self,
        key: KeyEvent,
        now: Instant,
        save_confirmed: bool,
    ) -> KeyOutcome {
        let Some(popup) = self.popup.as_mut() else {
            return KeyOutcome::Ignored;
        };
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match popup {
            Popup::Help => match key.code {
                KeyCode::Esc | KeyCode::Char('q' | '?') | KeyCode::Enter | KeyCode::F(1) => {
                    self.popup = None
                }
                KeyCode::Char('j') | KeyCode::Down => self.scroll_help(1),
                KeyCode::Char('k') | KeyCode::Up => self.scroll_help(-1),
                KeyCode::PageDown | KeyCode::Char(' ') => {
                    self.scroll_help(self.screen.help_rows.max(2) as isize - 1)
                }
                KeyCode::PageUp => self.scroll_help(-(self.screen.help_rows.max(2) as isize - 1)),
                KeyCode::Home | KeyCode::Char('g') => self.help_scroll = 0,
                KeyCode::End | KeyCode::Char('G') => self.help_scroll = self.screen.help_scroll_max,
                _ => return KeyOutcome::Ignored,
            },
            Popup::WordDetails { .. } => match key.code {
                KeyCode::Esc | KeyCode::Char('q' | '?') | KeyCode::Enter | KeyCode::F(1) => {
                    self.popup = None
                }
                _ => return KeyOutcome::Ignored,
            },
            Popup::MethodPicker { selected } => match key.code {
                KeyCode::Esc => self.popup = None,
                KeyCode::Char('j') | KeyCode::Down => {
                    *selected = (*selected + 1) % Method::ALL.len()
                }
                KeyCode::Char('k') | KeyCode::Up => {
                    *selected = (*selected + Method::ALL.len() - 1) % Method::ALL.len()
                }
                KeyCode::Enter => {
                    let method = Method::ALL[*selected];
                    self.popup = None;
                    self.settings.method = method;
                    self.selected_span = None;
                    if matches!(self.settings.target, TargetChoice::Contrast { .. })
                        && !method.is_class_specific()
                    {
                        self.status = Some(format!(
                            "{} does not depend on the class: a contrast is zero everywhere",
                            method.name()
                        ));
                    }
                }
                _ => return KeyOutcome::Ignored,
            },
            Popup::SearchPrompt { query } => match key.code {
                KeyCode::Esc => self.popup = None,
                KeyCode::Backspace => {
                    query.pop();
                }
                KeyCode::Enter => {
                    let query = std::mem::take(query);
                    self.popup = None;
                    if !query.is_empty() {
                        let from = self.document.units.get(self.cursor).map_or(0, |s| s.start);
                        self.search = Some((query, None));
                        self.search_from(from, true);
                    }
                }
                KeyCode::Char(c) if !ctrl => query.push(c),
                _ => return KeyOutcome::Ignored,
            },
            Popup::ExportPrompt => match key.code {
                KeyCode::Esc => self.popup = None,
                KeyCode::Char('h') => {
                    self.popup = None;
                    return KeyOutcome::Effect(Effect::Export(ExportFormat::Html));
                }
                KeyCode::Char('j') => {
                    self.popup = None;
                    return KeyOutcome::Effect(Effect::Export(ExportFormat::Json));
                }
                _ => return KeyOutcome::Ignored,
            },
            Popup::Edit(edit) => {
                match key.code {
                    KeyCode::Esc => {
                        self.popup = None;
                        self.status = Some("edit discarded".into());
                        return KeyOutcome::Handled;
                    }
                    KeyCode::Enter => {
                        let (unit, buffer) = (edit.unit, edit.buffer.clone());
                        self.popup = None;
                        self.apply_edit(unit, &buffer);
                        return KeyOutcome::Handled;
                    }
                    KeyCode::Char('s') if ctrl => {
                        let (unit, buffer) = (edit.unit, edit.buffer.clone());
                        self.popup = None;
                        self.apply_edit(unit, &buffer);
                        return self.request_save(save_confirmed);
                    }
                    KeyCode::Char(c) if !ctrl => {
                        edit.buffer.insert(edit.caret, c);
                        edit.caret += c.len_utf8();
                    }
                    // Whole grapheme clusters: half a flag or a family emoji without its joiner
                    // would leave text the user never typed.
                    KeyCode::Backspace => {
                        let start = previous_grapheme(&edit.buffer, edit.caret);
                        edit.buffer.replace_range(start..edit.caret, "");
                        edit.caret = start;
                    }
                    KeyCode::Delete => {
                        let end = next_grapheme(&edit.buffer, edit.caret);
                        edit.buffer.replace_range(edit.caret..end, "");
                    }
                    KeyCode::Left => edit.caret = previous_grapheme(&edit.buffer, edit.caret),
                    KeyCode::Right => edit.caret = next_grapheme(&edit.buffer, edit.caret),
                    KeyCode::Home => edit.caret = 0,
                    KeyCode::End => edit.caret = edit.buffer.len(),
                    _ => return KeyOutcome::Ignored,
                }
                edit.changed_at = Some(now);
            }
        }
        KeyOutcome::Handled
    }

    fn move_down(&mut self) {
        match self.focus {
            Pane::Text => self.move_cursor_to(self.cursor + 1),
            Pane::Ranking => {
                let len = self.ranking().len();
                if len > 0 {
                    self.ranking_index = (self.ranking_index + 1).min(len - 1);
                    self.jump_to_ranked();
                }
            }
        }
    }

    fn move_up(&mut self) {
        match self.focus {
            Pane::Text => self.move_cursor_to(self.cursor.saturating_sub(1)),
            Pane::Ranking => {
                self.ranking_index = self.ranking_index.saturating_sub(1);
                self.jump_to_ranked();
            }
        }
    }

    /// Selects span `span` of the cursor unit and moves the ranking's highlight onto it.
    fn select_span(&mut self, span: usize) {
        self.selected_span = Some(span);
        if let Some(position) = self.ranking().iter().position(|&s| s == span) {
            self.ranking_index = position;
        }
        self.ensure_selection_visible();
    }

    /// Selects the word at the ranking's highlighted entry.
    fn jump_to_ranked(&mut self) {
        if let Some(&span) = self.ranking().get(self.ranking_index) {
            self.selected_span = Some(span);
            self.ensure_cursor_visible();
            self.ensure_selection_visible();
        }
    }

    fn set_target(&mut self, target: TargetChoice) {
        self.settings.target = target;
        self.selected_span = None;
        self.status = Some(format!("target: {}", target.describe(&self.labels)));
    }

    /// predicted → class 0 → class 1 → … → predicted.
    fn cycle_class(&mut self) {
        let classes = self.labels.len();
        let next = match self.settings.target {
            TargetChoice::Predicted => TargetChoice::Class(0),
            TargetChoice::Class(c) if c + 1 < classes => TargetChoice::Class(c + 1),
            TargetChoice::Class(_) => TargetChoice::Predicted,
            TargetChoice::Contrast { of, .. } => TargetChoice::Class(of),
        };
        self.set_target(next);
    }

    /// Starts a contrast of the current class against the next one, then moves the second class.
    fn cycle_contrast(&mut self) {
        let classes = self.labels.len();
        if classes < 2 {
            self.status = Some("a contrast needs two classes".into());
            return;
        }
        let next = match self.settings.target {
            TargetChoice::Contrast { of, against } => {
                let mut against = (against + 1) % classes;
                if against == of {
                    against = (against + 1) % classes;
                }
                TargetChoice::Contrast { of, against }
            }
            other => {
                let of = match other {
                    TargetChoice::Class(c) => c,
                    _ => match self.unit_state(self.cursor) {
                        UnitState::Ready(scores) => scores.predicted,
                        _ => 0,
                    },
                };
                TargetChoice::Contrast {
                    of,
                    against: (of + 1) % classes,
                }
            }
        };
        self.set_target(next);
        if !self.settings.method.is_class_specific() {
            self.status = Some(format!(
                "{} does not depend on the class: a contrast is zero everywhere (m to pick another method)",
                self.settings.method.name()
            ));
        }
    }

    fn cycle_normalization(&mut self) {
        self.settings.normalization = match self.settings.normalization {
            Normalization::MaxAbs => Normalization::MinMax,
            Normalization::MinMax => Normalization::L1,
            Normalization::L1 => Normalization::None,
            Normalization::None => Normalization::MaxAbs,
        };
        self.status = Some(format!(
            "normalisation: {}",
            self.settings.normalization.name()
        ));
    }

    fn cycle_palette(&mut self) {
        let names = Palette::names();
        let current = names
            .iter()
            .position(|&n| Palette::from_name(n) == Some(self.settings.palette))
            .unwrap_or(0);
        let next = names[(current + 1) % names.len()];
        self.settings.palette = Palette::from_name(next).unwrap_or_default();
        self.status = Some(format!("palette: {next}"));
    }

    fn toggle_granularity(&mut self) {
        self.settings.granularity = match self.settings.granularity {
            Granularity::Words => Granularity::Pieces,
            Granularity::Pieces => Granularity::Words,
        };
        self.selected_span = None;
        self.ranking_index = 0;
        self.status = Some(match self.settings.granularity {
            Granularity::Words => "view: words".into(),
            Granularity::Pieces => "view: word-pieces".into(),
        });
    }

    /// `]` / `[`: the next (previous) word at or above bucket 3, across units already explained.
    fn jump_influential(&mut self, forward: bool) {
        let count = self.unit_count();
        let mut unit = self.cursor;
        let mut after = self.selected_span;
        for _ in 0..INFLUENTIAL_SCAN_UNITS.min(count) {
            if let UnitState::Ready(scores) = self.unit_state(unit) {
                let strong = |i: &usize| scores.spans[*i].intensity.abs() >= INFLUENTIAL_INTENSITY;
                let found = if forward {
                    let from = after.map_or(0, |a| a + 1);
                    (from..scores.spans.len()).find(strong)
                } else {
                    let until = after.unwrap_or(scores.spans.len());
                    (0..until).rev().find(strong)
                };
                if let Some(span) = found {
                    self.move_cursor_to(unit);
                    self.select_span(span);
                    self.status = Some(span_summary(&scores.spans[span]));
                    return;
                }
            }
            after = None;
            unit = match (forward, unit) {
                (true, u) if u + 1 < count => u + 1,
                (false, u) if u > 0 => u - 1,
                _ => break,
            };
        }
        self.status = Some("no more influential words among the units explained so far".into());
    }

    fn search_step(&mut self, forward: bool) {
        let Some((_, current)) = &self.search else {
            return;
        };
        let from = match (current, forward) {
            (Some(at), true) => at + 1,
            (Some(at), false) => *at,
            (None, _) => self.document.units.get(self.cursor).map_or(0, |s| s.start),
        };
        self.search_from(from, forward);
    }

    /// Moves to the next hit of the search at or after (`forward`) or before `from`, wrapping.
    fn search_from(&mut self, from: usize, forward: bool) {
        let Some((query, _)) = &self.search else {
            return;
        };
        let text = &self.document.text;
        let hit = if forward {
            find_ascii_case_insensitive(text, query, from)
                .or_else(|| find_ascii_case_insensitive(text, query, 0))
        } else {
            rfind_ascii_case_insensitive(text, query, from)
                .or_else(|| rfind_ascii_case_insensitive(text, query, text.len()))
        };
        match hit {
            Some(at) => {
                let query = query.clone();
                self.search = Some((query.clone(), Some(at)));
                if let Some(unit) = self.document.unit_at_byte(at) {
                    self.move_cursor_to(unit);
                    let start = self.document.units[unit].start;
                    self.ensure_byte_visible(unit, at.saturating_sub(start));
                }
                self.status = Some(format!("/{query}"));
            }
            None => {
                self.status = Some(format!("not found: {query}"));
            }
        }
    }

    fn start_edit(&mut self) {
        if self.unit_count() == 0 {
            self.status = Some("nothing to edit: the document is empty".into());
            return;
        }
        let text = self.document.unit_text(self.cursor).to_owned();
        self.popup = Some(Popup::Edit(EditState {
            unit: self.cursor,
            caret: text.len(),
            submitted: text.clone(),
            buffer: text,
            changed_at: None,
        }));
        self.invalidate_layout();
    }

    fn apply_edit(&mut self, unit: usize, text: &str) {
        let before = self.document.units.len();
        self.document.replace_unit(unit, text);
        self.invalidate_layout();
        self.ensure_cursor_visible();
        self.status = Some(if self.document.modified {
            let units = self.document.units.len();
            let change = if units != before {
                format!(" ({before} → {units} units)")
            } else {
                String::new()
            };
            format!("edited in memory{change}; Ctrl-s writes the file")
        } else {
            "no change".into()
        });
    }

    /// Called after the document's text was replaced (reload, save).
    pub fn document_replaced(&mut self) {
        self.invalidate_layout();
        if let Some(Popup::Edit(_)) = self.popup {
            self.popup = None;
        }
        self.selected_span = None;
        self.ensure_cursor_visible();
    }

    // ---- mouse -------------------------------------------------------------------------------

    pub fn handle_mouse(&mut self, mouse: MouseEvent) -> KeyOutcome {
        match mouse.kind {
            MouseEventKind::ScrollDown if self.popup.is_none() => self.scroll_page(WHEEL_ROWS),
            MouseEventKind::ScrollUp if self.popup.is_none() => self.scroll_page(-WHEEL_ROWS),
            MouseEventKind::ScrollDown if matches!(self.popup, Some(Popup::Help)) => {
                self.scroll_help(WHEEL_ROWS)
            }
            MouseEventKind::ScrollUp if matches!(self.popup, Some(Popup::Help)) => {
                self.scroll_help(-WHEEL_ROWS)
            }
            MouseEventKind::Down(MouseButton::Left) => return self.click(mouse.column, mouse.row),
            _ => return KeyOutcome::Ignored,
        }
        KeyOutcome::Handled
    }

    fn click(&mut self, column: u16, row: u16) -> KeyOutcome {
        if matches!(self.popup, Some(Popup::WordDetails { .. })) {
            self.popup = None;
        }
        if self.popup.is_some() {
            return KeyOutcome::Ignored;
        }
        if self.screen.ranking_x.contains(&column)
            && let Some(&(_, index)) = self.screen.ranking_rows.iter().find(|(y, _)| *y == row)
        {
            self.focus = Pane::Ranking;
            self.ranking_index = index;
            self.jump_to_ranked();
            return KeyOutcome::Handled;
        }
        let Some(screen_row) = self.screen.text_rows.iter().find(|r| r.y == row).copied() else {
            return KeyOutcome::Ignored;
        };
        self.focus = Pane::Text;
        self.move_cursor_to(screen_row.unit);
        let (Some(span), true) = (
            screen_row.span,
            column >= self.screen.text_x && column < self.screen.text_right,
        ) else {
            return KeyOutcome::Handled;
        };
        let text = self.unit_text(screen_row.unit).to_owned();
        let Some(byte) =
            layout::byte_at_column(&text, span, usize::from(column - self.screen.text_x))
        else {
            return KeyOutcome::Handled;
        };
        if let UnitState::Ready(scores) = self.unit_state(screen_row.unit)
            && let Some(item) = scores
                .spans
                .iter()
                .position(|s| s.start <= byte && byte < s.end)
        {
            self.select_span(item);
            self.popup = Some(Popup::WordDetails {
                unit: screen_row.unit,
                item,
            });
        }
        KeyOutcome::Handled
    }
}

/// One line about a scored word, for the status bar.
pub fn span_summary(span: &ScoredSpan) -> String {
    format!(
        "{:?}: relevance {:+.4}, shown as {:+.2} (bucket {})",
        span.text,
        span.relevance,
        span.intensity,
        Bucket::of(span.intensity).0
    )
}

/// Keeps the spans of a stale explanation that still cover the same words of `text`.
fn carry_over(mut stale: UnitScores, text: &str) -> UnitScores {
    stale
        .spans
        .retain(|s| text.get(s.start..s.end) == Some(s.text.as_str()));
    stale
}

/// The start of the grapheme cluster that ends at byte `at` of `text` (0 at the start).
fn previous_grapheme(text: &str, at: usize) -> usize {
    match text.get(..at) {
        Some(before) => before
            .grapheme_indices(true)
            .next_back()
            .map_or(0, |(start, _)| start),
        None => at.min(text.len()),
    }
}

/// The end of the grapheme cluster that starts at byte `at` of `text` (`at` at the end).
fn next_grapheme(text: &str, at: usize) -> usize {
    text.get(at..)
        .and_then(|after| after.graphemes(true).next())
        .map_or(at.min(text.len()), |g| at + g.len())
}

fn find_ascii_case_insensitive(haystack: &str, needle: &str, from: usize) -> Option<usize> {
    let (hay, pattern) = (haystack.as_bytes(), needle.as_bytes());
    if pattern.is_empty() || from > hay.len() {
        return None;
    }
    (from..=hay.len().checked_sub(pattern.len())?)
        .find(|&i| hay[i..i + pattern.len()].eq_ignore_ascii_case(pattern))
}

fn rfind_ascii_case_insensitive(haystack: &str, needle: &str, before: usize) -> Option<usize> {
    let (hay, pattern) = (haystack.as_bytes(), needle.as_bytes());
    if pattern.is_empty() || hay.len() < pattern.len() {
        return None;
    }
    let last = before.min(hay.len()).checked_sub(1)?;
    (0..=last.min(hay.len() - pattern.len()))
        .rev()
        .find(|&i| hay[i..i + pattern.len()].eq_ignore_ascii_case(pattern))
}

/// Byte ranges (within `text`) of every hit of `query`, for highlighting.
pub fn search_hits(text: &str, query: &str) -> Vec<Range<usize>> {
    let mut hits = Vec::new();
    let mut from = 0;
    while let Some(at) = find_ascii_case_insensitive(text, query, from) {
        hits.push(at..at + query.len());
        from = at + query.len().max(1);
    }
    hits
}
