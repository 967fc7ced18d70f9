//! The TUI without a terminal: key handling on `App`, and whole screens drawn to ratatui's
//! `TestBackend` and pinned with insta. Snapshots use the buffer's Debug form, which lists the
//! style runs (fg, bg, modifiers): colours are what this view is about, so they are pinned too.
//! Explanations are computed synchronously (`explain_wanted_now`) with the tiny random BERT in
//! f64, so every snapshot is deterministic.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokenlens::explainer::{Explainer, ExplainerOptions};
use tokenlens::model_dir::ModelFiles;
use tokenlens::render::palette::{Normalization, Palette};
use tokenlens::segment::Unit;
use tokenlens::tui::app::{
    App, Effect, ExportFormat, Granularity, KeyOutcome, Pane, Popup, TargetChoice, UnitState,
    ViewSettings,
};
use tokenlens::tui::document::{Document, Source};
use tokenlens::tui::keys::KEY_HELP;
use tokenlens::tui::theme::ColorMode;
use tokenlens::tui::{explain_wanted_now, export, view};
use tokenlens::{Method, Precision};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn explainer() -> Arc<Explainer> {
    static EXPLAINER: OnceLock<Arc<Explainer>> = OnceLock::new();
    EXPLAINER
        .get_or_init(|| {
            let files =
                ModelFiles::resolve(root().join("fixtures/golden/tiny-bert").to_str().unwrap())
                    .expect("tiny-bert fixture");
            let options = ExplainerOptions {
                precision: Precision::F64,
                ..Default::default()
            };
            Arc::new(Explainer::from_files(&files, options).expect("tiny-bert loads"))
        })
        .clone()
}

fn review_text() -> String {
    std::fs::read_to_string(root().join("fixtures/tui/review.txt")).unwrap()
}

fn app_with(text: &str, mode: ColorMode) -> App {
    let document = Document::from_text(
        Source::Memory("review.txt".into()),
        text.into(),
        Unit::Sentence,
    );
    app_of(document, mode)
}

/// The app the tests drive: the tiny model's labels, default view settings.
fn app_of(document: Document, mode: ColorMode) -> App {
    App::new(
        document,
        "tiny-bert".into(),
        explainer().labels().to_vec(),
        ViewSettings {
            method: Method::CheferLrpAllLayers,
            target: TargetChoice::Predicted,
            normalization: Normalization::MaxAbs,
            palette: Palette::BlueOrange,
            granularity: Granularity::Words,
        },
        mode,
    )
}

fn terminal(width: u16, height: u16) -> Terminal<TestBackend> {
    Terminal::new(TestBackend::new(width, height)).unwrap()
}

/// Draws, explains what the frame showed, and draws again, until nothing is missing.
fn settle(terminal: &mut Terminal<TestBackend>, app: &mut App) {
    let explainer = explainer();
    for _ in 0..4 {
        terminal.draw(|frame| view::render(frame, app)).unwrap();
        if app.wanted_requests().is_empty() {
            return;
        }
        explain_wanted_now(app, &explainer);
    }
    terminal.draw(|frame| view::render(frame, app)).unwrap();
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ch(c: char) -> KeyEvent {
    let modifiers = if c.is_ascii_uppercase() {
        KeyModifiers::SHIFT
    } else {
        KeyModifiers::NONE
    };
    KeyEvent::new(KeyCode::Char(c), modifiers)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn press(app: &mut App, keys: &[KeyEvent]) -> Vec<KeyOutcome> {
    keys.iter()
        .map(|k| app.handle_key(*k, Instant::now()))
        .collect()
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        app.handle_key(ch(c), Instant::now());
    }
}

fn screen_text(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        // A wide character's second cell holds a filler that is not part of the text.
        let mut hidden = 0;
        for x in 0..buffer.area.width {
            let symbol = buffer[(x, y)].symbol();
            if hidden > 0 {
                hidden -= 1;
                continue;
            }
            hidden = unicode_width::UnicodeWidthStr::width(symbol).saturating_sub(1);
            out.push_str(symbol);
        }
        out.push('\n');
    }
    out
}

// ---- snapshots ---------------------------------------------------------------------------------

#[test]
fn snapshot_main_screen() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    settle(&mut terminal, &mut app);
    insta::assert_snapshot!("main_screen", format!("{:?}", terminal.backend().buffer()));
}

#[test]
fn snapshot_help_overlay() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(100, 32);
    settle(&mut terminal, &mut app);
    press(&mut app, &[ch('?')]);
    terminal
        .draw(|frame| view::render(frame, &mut app))
        .unwrap();
    let screen = screen_text(&terminal);
    for (keys, _) in KEY_HELP {
        assert!(screen.contains(keys), "help overlay lacks {keys:?}");
    }
    insta::assert_snapshot!("help_overlay", format!("{:?}", terminal.backend().buffer()));
}

#[test]
fn snapshot_class_switch() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    settle(&mut terminal, &mut app);
    let before = format!("{:?}", terminal.backend().buffer());
    press(&mut app, &[ch('c'), ch('c')]);
    assert_eq!(app.settings.target, TargetChoice::Class(1));
    settle(&mut terminal, &mut app);
    let after = format!("{:?}", terminal.backend().buffer());
    assert_ne!(before, after, "switching the class must change the screen");
    insta::assert_snapshot!("class_neutral", after);
}

#[test]
fn snapshot_contrast() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    settle(&mut terminal, &mut app);
    press(&mut app, &[ch('3'), ch('C')]);
    assert_eq!(
        app.settings.target,
        TargetChoice::Contrast { of: 2, against: 0 }
    );
    settle(&mut terminal, &mut app);
    let screen = screen_text(&terminal);
    assert!(screen.contains("positive vs negative"), "{screen}");
    insta::assert_snapshot!(
        "contrast_positive_vs_negative",
        format!("{:?}", terminal.backend().buffer())
    );
}

#[test]
fn snapshot_no_color() {
    let mut app = app_with(&review_text(), ColorMode::NoColor);
    let mut terminal = terminal(100, 22);
    settle(&mut terminal, &mut app);
    let debug = format!("{:?}", terminal.backend().buffer());
    assert!(
        !debug.contains("Rgb("),
        "NO_COLOR must not paint RGB colours"
    );
    assert!(
        !debug.contains("Indexed("),
        "NO_COLOR must not paint indexed colours"
    );
    assert!(
        debug.contains("BOLD"),
        "strong words are marked bold instead"
    );
    insta::assert_snapshot!("no_color", debug);
}

#[test]
fn snapshot_256_colours_and_narrow_terminal() {
    let mut app = app_with(&review_text(), ColorMode::Ansi256);
    let mut terminal = terminal(60, 20);
    settle(&mut terminal, &mut app);
    assert!(
        !app.side_panel_visible,
        "the word list collapses below 80 columns"
    );
    let debug = format!("{:?}", terminal.backend().buffer());
    assert!(
        !debug.contains("Rgb("),
        "256-colour mode maps RGB to the xterm palette"
    );
    assert!(
        screen_text(&terminal).contains("東京"),
        "wide characters are drawn"
    );
    insta::assert_snapshot!("ansi256_narrow", debug);
    // Tab shows the collapsed word list over the text.
    press(&mut app, &[key(KeyCode::Tab)]);
    terminal
        .draw(|frame| view::render(frame, &mut app))
        .unwrap();
    assert!(screen_text(&terminal).contains("words of unit 1"));
}

#[test]
fn resize_relayouts_without_losing_the_cursor() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    settle(&mut terminal, &mut app);
    press(&mut app, &[ch('j'), ch('j'), ch('j')]);
    terminal.backend_mut().resize(40, 12);
    terminal
        .resize(ratatui::layout::Rect::new(0, 0, 40, 12))
        .unwrap();
    settle(&mut terminal, &mut app);
    assert_eq!(app.cursor, 3);
    assert!(
        app.visible_units.contains(&3),
        "cursor unit stays on screen after a resize"
    );
    assert!(app.text_width < 40);
}

// ---- keys ---------------------------------------------------------------------------------------

/// One key per entry of the help table: each must do something in the main view.
#[test]
fn every_key_in_the_help_does_something() {
    let examples: Vec<(&str, Vec<KeyEvent>)> = vec![
        ("q  Ctrl-c", vec![ch('q'), ctrl('c')]),
        ("Esc", vec![key(KeyCode::Esc)]),
        (
            "j k  ↓ ↑",
            vec![ch('j'), ch('k'), key(KeyCode::Down), key(KeyCode::Up)],
        ),
        (
            "PgDn PgUp",
            vec![key(KeyCode::PageDown), key(KeyCode::PageUp)],
        ),
        ("Ctrl-d Ctrl-u", vec![ctrl('d'), ctrl('u')]),
        ("gg  G", vec![ch('g'), ch('G')]),
        (
            "Tab  Shift-Tab",
            vec![
                key(KeyCode::Tab),
                KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT),
            ],
        ),
        ("Enter", vec![]),
        ("]  [", vec![ch(']'), ch('[')]),
        ("c", vec![ch('c')]),
        ("1-9  0", vec![ch('1'), ch('0')]),
        ("C", vec![ch('C')]),
        ("m", vec![ch('m')]),
        ("n", vec![ch('n')]),
        ("n  N", vec![]),
        ("p", vec![ch('p')]),
        ("w", vec![ch('w')]),
        ("/", vec![ch('/')]),
        ("e", vec![ch('e')]),
        ("i", vec![ch('i')]),
        ("Ctrl-s", vec![ctrl('s')]),
        ("r", vec![ch('r')]),
        ("? F1", vec![ch('?'), key(KeyCode::F(1))]),
        ("mouse", vec![]),
    ];
    let listed: Vec<&str> = KEY_HELP.iter().map(|(k, _)| *k).collect();
    let tested: Vec<&str> = examples.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        listed, tested,
        "the help table and this test list the same keys"
    );
    for (keys, events) in examples {
        for event in events {
            let mut app = app_with(&review_text(), ColorMode::TrueColor);
            let outcome = app.handle_key(event, Instant::now());
            assert_ne!(
                outcome,
                KeyOutcome::Ignored,
                "{keys}: {event:?} did nothing"
            );
        }
    }
}

#[test]
fn quit_keys_and_escape() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    assert_eq!(
        press(&mut app, &[ch('q')]),
        [KeyOutcome::Effect(Effect::Quit)]
    );
    assert_eq!(
        press(&mut app, &[key(KeyCode::Esc)]),
        [KeyOutcome::Handled],
        "Esc never quits"
    );
    press(&mut app, &[ch('?')]);
    assert!(matches!(app.popup, Some(Popup::Help)));
    press(&mut app, &[key(KeyCode::Esc)]);
    assert!(app.popup.is_none(), "Esc closes the popup");
    press(&mut app, &[ch('/')]);
    assert_eq!(
        press(&mut app, &[ch('q')]),
        [KeyOutcome::Handled],
        "q is text inside the search prompt"
    );
    assert_eq!(
        press(&mut app, &[ctrl('c')]),
        [KeyOutcome::Effect(Effect::Quit)],
        "Ctrl-c quits from a popup too"
    );
}

#[test]
fn movement_keys() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    settle(&mut terminal, &mut app);
    let units = app.unit_count();
    assert_eq!(units, 5);
    press(&mut app, &[ch('j'), key(KeyCode::Down)]);
    assert_eq!(app.cursor, 2);
    press(&mut app, &[ch('k')]);
    assert_eq!(app.cursor, 1);
    press(&mut app, &[ch('G')]);
    assert_eq!(app.cursor, units - 1);
    press(&mut app, &[ch('g'), ch('g')]);
    assert_eq!(app.cursor, 0);
    press(&mut app, &[ch('g'), ch('j'), ch('g')]);
    assert_eq!(app.cursor, 1, "g then j is not gg");
    press(&mut app, &[key(KeyCode::Up), key(KeyCode::Up)]);
    assert_eq!(app.cursor, 0, "k stops at the first unit");
}

#[test]
fn paging_scrolls_a_long_document() {
    let text: String = (1..=200)
        .map(|i| format!("Sentence number {i} is here.\n"))
        .collect();
    let mut app = app_with(&text, ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    terminal
        .draw(|frame| view::render(frame, &mut app))
        .unwrap();
    let height = app.text_height;
    press(&mut app, &[key(KeyCode::PageDown)]);
    assert_eq!(app.top.unit, height - 1, "a page keeps one line of context");
    assert!(app.cursor >= app.top.unit, "the cursor follows the page");
    press(&mut app, &[ctrl('u')]);
    assert_eq!(app.top.unit, height - 1 - height / 2);
    press(&mut app, &[ctrl('d')]);
    assert_eq!(app.top.unit, height - 1);
    press(&mut app, &[key(KeyCode::PageUp)]);
    assert_eq!(app.top.unit, 0);
    press(&mut app, &[ch('G')]);
    terminal
        .draw(|frame| view::render(frame, &mut app))
        .unwrap();
    assert_eq!(app.cursor, 199);
    assert_eq!(app.visible_units.end, 200, "G shows the last unit");
    assert!(screen_text(&terminal).contains("Sentence number 200 is here."));
}

#[test]
fn class_and_contrast_cycles() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let targets: Vec<TargetChoice> = (0..4)
        .map(|_| {
            press(&mut app, &[ch('c')]);
            app.settings.target
        })
        .collect();
    assert_eq!(
        targets,
        [
            TargetChoice::Class(0),
            TargetChoice::Class(1),
            TargetChoice::Class(2),
            TargetChoice::Predicted
        ]
    );
    press(&mut app, &[ch('2'), ch('C')]);
    assert_eq!(
        app.settings.target,
        TargetChoice::Contrast { of: 1, against: 2 }
    );
    press(&mut app, &[ch('C')]);
    assert_eq!(
        app.settings.target,
        TargetChoice::Contrast { of: 1, against: 0 },
        "B skips A"
    );
    press(&mut app, &[ch('c')]);
    assert_eq!(
        app.settings.target,
        TargetChoice::Class(1),
        "c leaves the contrast"
    );
}

#[test]
fn contrast_is_the_difference_of_two_classes() {
    let mut app = app_with("The acting was wonderful.", ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    let scores_for = |app: &mut App, terminal: &mut Terminal<TestBackend>, target| {
        app.settings.target = target;
        settle(terminal, app);
        match app.unit_state(0) {
            UnitState::Ready(scores) => {
                scores.spans.iter().map(|s| s.relevance).collect::<Vec<_>>()
            }
            other => panic!("not explained: {other:?}"),
        }
    };
    let positive = scores_for(&mut app, &mut terminal, TargetChoice::Class(2));
    let negative = scores_for(&mut app, &mut terminal, TargetChoice::Class(0));
    let contrast = scores_for(
        &mut app,
        &mut terminal,
        TargetChoice::Contrast { of: 2, against: 0 },
    );
    for ((p, n), c) in positive.iter().zip(&negative).zip(&contrast) {
        assert!((p - n - c).abs() < 1e-12, "{p} - {n} != {c}");
    }
}

#[test]
fn settings_keys_cycle() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    press(&mut app, &[ch('n')]);
    assert_eq!(app.settings.normalization, Normalization::MinMax);
    press(&mut app, &[ch('n'), ch('n'), ch('n')]);
    assert_eq!(app.settings.normalization, Normalization::MaxAbs);
    press(&mut app, &[ch('p')]);
    assert_eq!(app.settings.palette, Palette::Mono);
    press(&mut app, &[ch('w')]);
    assert_eq!(app.settings.granularity, Granularity::Pieces);
    press(&mut app, &[ch('m'), ch('j'), ch('j'), key(KeyCode::Enter)]);
    assert_eq!(app.settings.method, Method::ALL[2]);
    press(&mut app, &[ch('m'), ch('k'), key(KeyCode::Esc)]);
    assert_eq!(
        app.settings.method,
        Method::ALL[2],
        "Esc leaves the method unchanged"
    );
    press(&mut app, &[key(KeyCode::Tab)]);
    assert_eq!(app.focus, Pane::Ranking);
    press(
        &mut app,
        &[KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)],
    );
    assert_eq!(app.focus, Pane::Text);
}

#[test]
fn pieces_view_scores_word_pieces() {
    let mut app = app_with("Unbelievably wonderful.", ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    settle(&mut terminal, &mut app);
    let UnitState::Ready(words) = app.unit_state(0) else {
        panic!()
    };
    press(&mut app, &[ch('w')]);
    settle(&mut terminal, &mut app);
    let UnitState::Ready(pieces) = app.unit_state(0) else {
        panic!()
    };
    assert!(
        pieces.spans.len() > words.spans.len(),
        "pieces split words: {:?}",
        pieces.spans
    );
}

#[test]
fn search_and_n_to_the_next_hit() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    settle(&mut terminal, &mut app);
    press(&mut app, &[ch('/')]);
    typed(&mut app, "THE");
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(app.cursor, 0, "first hit: 'The acting'");
    press(&mut app, &[ch('n'), ch('n')]);
    assert_eq!(app.cursor, 1, "third hit: 'The plot'");
    let normalization = app.settings.normalization;
    assert_eq!(
        normalization,
        Normalization::MaxAbs,
        "n searches while a search is active"
    );
    press(&mut app, &[ch('N')]);
    assert_eq!(app.cursor, 0);
    press(&mut app, &[key(KeyCode::Esc), ch('n')]);
    assert_eq!(
        app.settings.normalization,
        Normalization::MinMax,
        "after Esc, n cycles normalisation"
    );
    press(&mut app, &[ch('/')]);
    typed(&mut app, "zebra");
    press(&mut app, &[key(KeyCode::Enter)]);
    assert!(app.status.as_deref().unwrap_or("").contains("not found"));
}

#[test]
fn brackets_jump_between_influential_words() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    settle(&mut terminal, &mut app);
    press(&mut app, &[ch(']')]);
    let first = app.selected_span.expect("a word is selected");
    assert_eq!(
        app.ranking()[app.ranking_index],
        first,
        "the word list follows"
    );
    let UnitState::Ready(scores) = app.unit_state(app.cursor) else {
        panic!()
    };
    assert!(scores.spans[first].intensity.abs() >= 0.4);
    press(&mut app, &[ch(']')]);
    let second = (app.cursor, app.selected_span);
    assert_ne!(second, (0, Some(first)), "] moves on");
    press(&mut app, &[ch('[')]);
    assert_eq!(
        (app.cursor, app.selected_span),
        (0, Some(first)),
        "[ comes back"
    );
}

#[test]
fn ranking_lists_words_strongest_first_and_selects_them() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    settle(&mut terminal, &mut app);
    let ranking = app.ranking();
    let UnitState::Ready(scores) = app.unit_state(0) else {
        panic!()
    };
    assert_eq!(ranking.len(), scores.spans.len());
    assert!(
        ranking
            .windows(2)
            .all(|w| scores.spans[w[0]].intensity.abs() >= scores.spans[w[1]].intensity.abs())
    );
    press(&mut app, &[key(KeyCode::Tab), ch('j')]);
    assert_eq!(
        app.selected_span,
        Some(ranking[1]),
        "moving in the list selects the word"
    );
}

#[test]
fn clicking_a_word_shows_its_details() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    settle(&mut terminal, &mut app);
    // Find "wonderful" on screen.
    let screen = screen_text(&terminal);
    let (y, line) = screen
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("wonderful"))
        .unwrap();
    let column = line
        .chars()
        .take_while(|_| true)
        .collect::<String>()
        .find("wonderful")
        .unwrap();
    let x = line[..column].chars().count() as u16 + 2;
    app.handle_mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: x,
        row: y as u16,
        modifiers: KeyModifiers::NONE,
    });
    let Some(Popup::WordDetails { unit, item }) = app.popup.clone() else {
        panic!("no details popup: {:?}", app.popup)
    };
    let UnitState::Ready(scores) = app.unit_state(unit) else {
        panic!()
    };
    assert_eq!(scores.spans[item].text, "wonderful");
    terminal
        .draw(|frame| view::render(frame, &mut app))
        .unwrap();
    assert!(screen_text(&terminal).contains("relevance"));
}

#[test]
fn editing_recolours_after_a_pause_and_never_writes_the_file() {
    let directory = tempdir();
    let path = directory.join("note.txt");
    std::fs::write(&path, "The film was fine.\n").unwrap();
    let mut app = app_for_file(&path);
    let mut terminal = terminal(80, 16);
    settle(&mut terminal, &mut app);
    let start = Instant::now();
    app.handle_key(ch('i'), start);
    for c in " Truly awful.".chars() {
        app.handle_key(ch(c), start);
    }
    app.tick(start + Duration::from_millis(10));
    let edited = "The film was fine. Truly awful.";
    assert!(
        !app.wanted_requests().iter().any(|r| r.text == edited),
        "no explaining while typing"
    );
    app.tick(start + Duration::from_secs(1));
    assert!(
        app.wanted_requests()
            .first()
            .is_some_and(|r| r.text == edited),
        "after the pause the edited text goes first"
    );
    settle(&mut terminal, &mut app);
    let UnitState::Ready(scores) = app.unit_state(0) else {
        panic!("edited unit not coloured")
    };
    assert!(scores.spans.iter().any(|s| s.text == "awful"));
    assert!(screen_text(&terminal).contains("Truly awful."));
    press(&mut app, &[key(KeyCode::Enter)]);
    assert!(app.document.modified);
    assert_eq!(app.unit_count(), 2, "the edit became two sentences");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "The film was fine.\n",
        "file untouched"
    );
    assert_eq!(
        press(&mut app, &[ctrl('s')]),
        [KeyOutcome::Effect(Effect::Save)]
    );
    app.document.save().unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "The film was fine. Truly awful.\n"
    );
    // Esc drops an edit.
    press(&mut app, &[ch('i')]);
    typed(&mut app, "xyz");
    press(&mut app, &[key(KeyCode::Esc)]);
    assert!(app.popup.is_none());
    assert_eq!(app.document.text, "The film was fine. Truly awful.\n");
}

#[test]
fn file_changes_on_disk_are_noticed() {
    let directory = tempdir();
    let path = directory.join("watched.txt");
    std::fs::write(&path, "One.\n").unwrap();
    let mut document = Document::open(path.to_str().unwrap(), Unit::Sentence).unwrap();
    assert!(!document.changed_on_disk());
    std::fs::write(&path, "One. Two, a longer one.\n").unwrap();
    assert!(document.changed_on_disk());
    document.reload().unwrap();
    assert_eq!(document.units.len(), 2);
    assert!(!document.changed_on_disk());
}

#[test]
fn results_are_cached_by_unit_text() {
    let mut app = app_with("Same words. Same words. Other words.", ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    terminal
        .draw(|frame| view::render(frame, &mut app))
        .unwrap();
    let wanted = app.wanted_requests();
    assert_eq!(
        wanted.len(),
        2,
        "equal texts are explained once: {wanted:?}"
    );
    settle(&mut terminal, &mut app);
    press(&mut app, &[ch('c')]);
    assert!(!app.wanted_requests().is_empty());
    press(&mut app, &[ch('c'), ch('c'), ch('c')]);
    assert_eq!(app.settings.target, TargetChoice::Predicted);
    assert!(
        app.wanted_requests().is_empty(),
        "switching back to a computed target is instant"
    );
}

#[test]
fn export_writes_the_visible_units() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    settle(&mut terminal, &mut app);
    assert_eq!(
        press(&mut app, &[ch('e'), ch('h')]),
        [
            KeyOutcome::Handled,
            KeyOutcome::Effect(Effect::Export(ExportFormat::Html))
        ]
    );
    let html = export::render(&app, ExportFormat::Html);
    assert!(html.starts_with("<!doctype html>"));
    assert!(
        html.contains("<p class=\"unit\" dir=\"auto\">") && html.contains("overflow-wrap:anywhere")
    );
    assert!(
        html.contains("<mark style=\"background:#"),
        "words are coloured"
    );
    // Each CJK ideograph is a word of its own, so "東京" is two coloured marks.
    assert!(
        html.contains("東</mark>") && html.contains("京</mark>"),
        "{html}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&export::render(&app, ExportFormat::Json)).unwrap();
    assert_eq!(
        json["units"].as_array().unwrap().len(),
        app.visible_units.len()
    );
    assert_eq!(json["units"][0]["status"], "ready");
    assert_eq!(json["method"], "chefer_lrp_all_layers");
    let path = export::export_path(
        std::path::Path::new("/tmp"),
        "dir/review.txt",
        ExportFormat::Json,
    );
    assert_eq!(path, PathBuf::from("/tmp/review.tokenlens.json"));
}

#[test]
fn a_large_document_opens_without_explaining_it_all() {
    // 10 MB: opening lays out only what is on screen and asks only for nearby units.
    let paragraph =
        "The acting was wonderful and the plot made no sense. I would not watch it again.\n\n";
    let text = paragraph.repeat(10 * 1024 * 1024 / paragraph.len());
    let mut app = app_with(&text, ColorMode::TrueColor);
    let mut terminal = terminal(100, 30);
    terminal
        .draw(|frame| view::render(frame, &mut app))
        .unwrap();
    assert!(app.unit_count() > 200_000);
    assert!(
        app.wanted_requests().len() < 100,
        "only nearby units are requested"
    );
    press(&mut app, &[ch('G')]);
    terminal
        .draw(|frame| view::render(frame, &mut app))
        .unwrap();
    assert_eq!(app.visible_units.end, app.unit_count());
    let last_unit = app.document.unit_text(app.unit_count() - 1).to_owned();
    let wanted = app.wanted_requests();
    assert_eq!(
        wanted[0].text, last_unit,
        "the unit under the cursor is explained first"
    );
    assert!(
        wanted.len() <= app.visible_units.len() + 24,
        "visible units and a few around them, not the whole file"
    );
}

// ---- fixes from the QA pass ---------------------------------------------------------------------

/// An app on a real file, so saving and changes on disk can be tested.
fn app_for_file(path: &std::path::Path) -> App {
    let document = Document::open(path.to_str().unwrap(), Unit::Sentence).unwrap();
    app_of(document, ColorMode::TrueColor)
}

fn draw(terminal: &mut Terminal<TestBackend>, app: &mut App) -> String {
    terminal.draw(|frame| view::render(frame, app)).unwrap();
    screen_text(terminal)
}

/// The last two rows: the status bar.
fn status_rows(screen: &str) -> String {
    let lines: Vec<&str> = screen.lines().collect();
    lines[lines.len().saturating_sub(2)..].join("\n")
}

const SPINNER_FRAMES: [&str; 4] = ["◐", "◓", "◑", "◒"];

#[test]
fn an_empty_document_shows_no_spinner_and_no_unit_number() {
    for text in ["", "\n\n  \n\t\n"] {
        let mut app = app_with(text, ColorMode::TrueColor);
        assert_eq!(app.unit_count(), 0);
        let mut terminal = terminal(100, 22);
        settle(&mut terminal, &mut app);
        for tick in 0..4 {
            app.spinner_tick = tick;
            let screen = draw(&mut terminal, &mut app);
            for frame in SPINNER_FRAMES {
                assert!(!screen.contains(frame), "spinner {frame} in:\n{screen}");
            }
            assert!(!screen.contains("explaining"), "{screen}");
            assert!(!screen.contains("of unit"), "no unit to name:\n{screen}");
            assert!(!screen.contains("unit 0/0"), "{screen}");
            assert!(screen.contains("no text to explain"), "{screen}");
        }
    }
}

#[test]
fn quitting_with_unsaved_edits_asks_first() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    press(&mut app, &[ch('i')]);
    typed(&mut app, " Extra.");
    // An edit box with changed text is unsaved work too.
    assert_eq!(press(&mut app, &[ctrl('c')]), [KeyOutcome::Handled]);
    assert!(
        app.status
            .as_deref()
            .unwrap_or("")
            .contains("unsaved edits"),
        "{:?}",
        app.status
    );
    press(&mut app, &[key(KeyCode::Enter)]);
    assert!(app.document.modified);

    assert_eq!(press(&mut app, &[ch('q')]), [KeyOutcome::Handled]);
    let status = app.status.clone().unwrap_or_default();
    assert!(
        status.contains("unsaved edits") && status.contains("q again quits"),
        "{status}"
    );
    // Another key in between cancels the question.
    assert_eq!(
        press(&mut app, &[ch('j'), ch('q')]),
        [KeyOutcome::Handled, KeyOutcome::Handled]
    );
    assert_eq!(
        press(&mut app, &[ch('q')]),
        [KeyOutcome::Effect(Effect::Quit)],
        "a second q quits without saving"
    );
    assert_eq!(
        press(&mut app, &[ctrl('c'), ctrl('c')]),
        [KeyOutcome::Handled, KeyOutcome::Effect(Effect::Quit)],
        "Ctrl-c asks the same way"
    );
}

#[test]
fn saving_keeps_the_byte_order_mark_and_line_endings() {
    let directory = tempdir();
    let path = directory.join("bom.txt");
    std::fs::write(&path, b"\xEF\xBB\xBFThe film was fine.\r\nA\ttab\rend").unwrap();
    let mut app = app_for_file(&path);
    assert!(
        !app.document.text.starts_with('\u{feff}'),
        "the model never sees the BOM"
    );
    press(&mut app, &[ch('i')]);
    press(&mut app, &[key(KeyCode::Home)]);
    typed(&mut app, "Yes. ");
    press(&mut app, &[key(KeyCode::Enter)]);
    assert_eq!(
        press(&mut app, &[ctrl('s')]),
        [KeyOutcome::Effect(Effect::Save)]
    );
    app.document.save().unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"\xEF\xBB\xBFYes. The film was fine.\r\nA\ttab\rend"
    );
    // Reloading keeps knowing about it.
    app.document.reload().unwrap();
    app.document.save().unwrap();
    assert!(
        std::fs::read(&path)
            .unwrap()
            .starts_with(b"\xEF\xBB\xBFYes.")
    );
}

fn edit_state(app: &App) -> (String, usize) {
    match &app.popup {
        Some(Popup::Edit(edit)) => (edit.buffer.clone(), edit.caret),
        other => panic!("not editing: {other:?}"),
    }
}

#[test]
fn editing_keys_move_and_delete_whole_graphemes() {
    let flag = "🇯🇵";
    let family = "👨\u{200d}👩\u{200d}👧\u{200d}👦";
    let accent = "e\u{301}";
    let text = format!("A{flag}B{family}C{accent}");
    let mut app = app_with(&text, ColorMode::TrueColor);
    press(&mut app, &[ch('i')]);
    press(&mut app, &[key(KeyCode::Backspace)]);
    assert_eq!(edit_state(&app).0, format!("A{flag}B{family}C"), "é as one");
    press(&mut app, &[key(KeyCode::Left), key(KeyCode::Backspace)]);
    assert_eq!(
        edit_state(&app).0,
        format!("A{flag}BC"),
        "the family as one"
    );
    press(&mut app, &[key(KeyCode::Left), key(KeyCode::Backspace)]);
    assert_eq!(edit_state(&app).0, "ABC", "the flag as one");

    press(&mut app, &[key(KeyCode::Esc), ch('i'), key(KeyCode::Home)]);
    press(&mut app, &[key(KeyCode::Right), key(KeyCode::Right)]);
    assert_eq!(
        edit_state(&app).1,
        1 + flag.len(),
        "Right steps over the flag"
    );
    press(&mut app, &[key(KeyCode::Right), key(KeyCode::Delete)]);
    assert_eq!(
        edit_state(&app).0,
        format!("A{flag}BC{accent}"),
        "Delete takes the family"
    );
    press(&mut app, &[key(KeyCode::Right), key(KeyCode::Delete)]);
    assert_eq!(
        edit_state(&app).0,
        format!("A{flag}BC"),
        "and the accented e"
    );
    press(&mut app, &[key(KeyCode::Delete), key(KeyCode::Right)]);
    let (buffer, caret) = edit_state(&app);
    assert_eq!(
        (buffer.as_str(), caret),
        (format!("A{flag}BC").as_str(), buffer.len())
    );
}

#[test]
fn status_messages_win_over_the_legend() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(100, 22);
    settle(&mut terminal, &mut app);
    // A contrast has the wide signed legend.
    press(&mut app, &[ch('3'), ch('C'), ch('n')]);
    settle(&mut terminal, &mut app);
    let status = status_rows(&screen_text(&terminal));
    assert!(status.contains("normalisation: minmax"), "{status}");
    assert!(
        status.contains("unit 1/5"),
        "the position stays while it fits: {status}"
    );

    terminal.backend_mut().resize(40, 20);
    terminal
        .resize(ratatui::layout::Rect::new(0, 0, 40, 20))
        .unwrap();
    let status = status_rows(&draw(&mut terminal, &mut app));
    assert!(status.contains("normalisation: minmax"), "{status}");

    // Longer than a row: it takes the hints' row too, and says so when it is still cut.
    let path = "/tmp/a/rather/long/directory/name/for/the/export/review.tokenlens.html";
    app.status = Some(format!("exported 5 units to {path}"));
    let status = status_rows(&draw(&mut terminal, &mut app));
    let rows: Vec<&str> = status.lines().map(str::trim_end).collect();
    assert_eq!(rows[0], "exported 5 units to", "{status}");
    assert!(rows[1].starts_with("/tmp/a/rather"), "{status}");
    assert!(rows[1].ends_with('…'), "a cut message says so: {status}");

    terminal.backend_mut().resize(100, 22);
    terminal
        .resize(ratatui::layout::Rect::new(0, 0, 100, 22))
        .unwrap();
    let message = "the file changed on disk since it was loaded; Ctrl-s again overwrites it, \
                   r reloads and drops your edits";
    assert!(message.len() > 100, "{message}");
    app.status = Some(message.into());
    let status = status_rows(&draw(&mut terminal, &mut app));
    let joined = status
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        joined, message,
        "a warning wider than the screen is shown whole"
    );
}

/// Whether the selected word of the cursor unit is on a row of the last frame.
fn selection_on_screen(app: &App) -> bool {
    let UnitState::Ready(scores) = app.unit_state(app.cursor) else {
        return false;
    };
    let Some(span) = app.selected_span.and_then(|i| scores.spans.get(i)) else {
        return false;
    };
    app.screen.text_rows.iter().any(|row| {
        row.unit == app.cursor
            && row
                .span
                .is_some_and(|r| r.start <= span.start && span.start < r.end.max(r.start + 1))
    })
}

fn long_unit_text() -> String {
    format!("{} UNIQUEWORD is great.", "filler words here ".repeat(150))
}

#[test]
fn search_scrolls_to_a_hit_deep_inside_a_long_unit() {
    let mut app = app_with(&long_unit_text(), ColorMode::TrueColor);
    assert_eq!(app.unit_count(), 1);
    let mut terminal = terminal(100, 20);
    let screen = draw(&mut terminal, &mut app);
    assert!(!screen.contains("UNIQUEWORD"), "the word starts off screen");
    press(&mut app, &[ch('/')]);
    typed(&mut app, "uniqueword");
    press(&mut app, &[key(KeyCode::Enter)]);
    assert!(
        draw(&mut terminal, &mut app).contains("UNIQUEWORD"),
        "/ scrolls to the hit"
    );
    // Clicking in the unit, now scrolled to its middle, keeps the view where it is.
    let top = app.top;
    app.handle_mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 20,
        row: 8,
        modifiers: KeyModifiers::NONE,
    });
    assert_eq!(app.top, top, "a click does not jump to the unit's start");
    press(&mut app, &[ch('n')]);
    assert!(
        draw(&mut terminal, &mut app).contains("UNIQUEWORD"),
        "n keeps it in view"
    );
    press(&mut app, &[key(KeyCode::Esc), ch('g'), ch('g')]);
    press(&mut app, &[ch('/')]);
    typed(&mut app, "filler");
    press(&mut app, &[key(KeyCode::Enter), ch('N')]);
    let screen = draw(&mut terminal, &mut app);
    assert!(
        screen.contains("UNIQUEWORD"),
        "N wraps to the last hit, at the end:\n{screen}"
    );
}

#[test]
fn word_jumps_scroll_to_the_word_inside_a_long_unit() {
    let mut app = app_with(&long_unit_text(), ColorMode::TrueColor);
    let mut terminal = terminal(100, 20);
    settle(&mut terminal, &mut app);
    // Enter in the word list on the last word of the unit.
    let UnitState::Ready(scores) = app.unit_state(0) else {
        panic!("not explained")
    };
    let last = scores.spans.len() - 1;
    let position = app.ranking().iter().position(|&s| s == last).unwrap();
    press(&mut app, &[key(KeyCode::Tab)]);
    for _ in 0..position {
        press(&mut app, &[ch('j')]);
        draw(&mut terminal, &mut app);
        assert!(selection_on_screen(&app), "j in the list shows the word");
    }
    press(&mut app, &[key(KeyCode::Enter)]);
    draw(&mut terminal, &mut app);
    assert_eq!(app.selected_span, Some(last));
    assert!(
        selection_on_screen(&app),
        "Enter in the list shows the word"
    );
    assert!(app.top.row > 0, "the view scrolled down into the unit");

    // ] and [ through the whole unit: every word they stop at is on screen.
    press(
        &mut app,
        &[key(KeyCode::BackTab), key(KeyCode::Esc), ch('g'), ch('g')],
    );
    let mut deepest = 0;
    for _ in 0..scores.spans.len() {
        press(&mut app, &[ch(']')]);
        if app.selected_span.is_none() {
            break;
        }
        draw(&mut terminal, &mut app);
        assert!(selection_on_screen(&app), "] shows {:?}", app.selected_span);
        deepest = deepest.max(app.top.row);
        if app.status.as_deref().unwrap_or("").starts_with("no more") {
            break;
        }
    }
    assert!(
        deepest > 0,
        "some influential word lies below the first screen"
    );
    press(&mut app, &[ch('[')]);
    draw(&mut terminal, &mut app);
    assert!(selection_on_screen(&app), "[ shows the word");
}

#[test]
fn the_wheel_never_scrolls_past_the_end() {
    let wheel = |app: &mut App, kind| {
        app.handle_mouse(MouseEvent {
            kind,
            column: 10,
            row: 8,
            modifiers: KeyModifiers::NONE,
        })
    };
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(100, 30);
    let before = draw(&mut terminal, &mut app);
    wheel(&mut app, MouseEventKind::ScrollDown);
    assert_eq!(
        app.top,
        Default::default(),
        "it all fits: nothing to scroll"
    );
    assert_eq!(app.cursor, 0, "the cursor stays");
    assert_eq!(draw(&mut terminal, &mut app), before);

    let text: String = (1..=40)
        .map(|i| format!("Sentence number {i} is here.\n"))
        .collect();
    let mut app = app_with(&text, ColorMode::TrueColor);
    draw(&mut terminal, &mut app);
    wheel(&mut app, MouseEventKind::ScrollDown);
    assert_eq!(app.top.unit, 3, "one step scrolls three rows");
    for _ in 0..40 {
        wheel(&mut app, MouseEventKind::ScrollDown);
    }
    let screen = draw(&mut terminal, &mut app);
    assert_eq!(
        app.screen.text_rows.len(),
        app.text_height,
        "no empty rows below the text:\n{screen}"
    );
    assert_eq!(app.visible_units.end, 40);
    assert!(screen.contains("Sentence number 40 is here."));
    press(&mut app, &[key(KeyCode::PageDown), ctrl('d')]);
    assert_eq!(app.visible_units.end, 40);
    assert_eq!(
        app.screen.text_rows.len(),
        app.text_height,
        "PgDn stops there too"
    );
}

#[test]
fn help_scrolls_when_the_terminal_is_small() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(80, 24);
    settle(&mut terminal, &mut app);
    press(&mut app, &[ch('?')]);
    let mut seen = draw(&mut terminal, &mut app);
    assert!(seen.contains("↓ more"), "{seen}");
    assert!(!seen.contains("this help"), "the end is below");
    for _ in 0..KEY_HELP.len() * 2 {
        press(&mut app, &[ch('j')]);
        seen.push_str(&draw(&mut terminal, &mut app));
    }
    let last = screen_text(&terminal);
    assert!(last.contains("↑ more"), "{last}");
    assert!(last.contains("? F1") && last.contains("mouse"), "{last}");
    // Long entries wrap instead of being cut at 80 columns.
    for (keys, action) in KEY_HELP {
        assert!(seen.contains(keys), "{keys} never shown");
        let last_word = action.split_whitespace().last().unwrap();
        assert!(seen.contains(last_word), "{action:?} was cut");
    }
    press(&mut app, &[key(KeyCode::PageUp), key(KeyCode::PageUp)]);
    assert_eq!(app.help_scroll, 0);
    app.handle_mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 40,
        row: 12,
        modifiers: KeyModifiers::NONE,
    });
    assert!(app.help_scroll > 0, "the wheel scrolls the help");
    // Large enough, the overlay fits and shows no hint.
    terminal.backend_mut().resize(100, 32);
    terminal
        .resize(ratatui::layout::Rect::new(0, 0, 100, 32))
        .unwrap();
    let screen = draw(&mut terminal, &mut app);
    assert!(!screen.contains("more"), "{screen}");
    assert_eq!(app.help_scroll, 0);
}

#[test]
fn the_method_picker_keeps_the_selection_visible() {
    for (width, height) in [(40, 8), (100, 12)] {
        let mut app = app_with(&review_text(), ColorMode::TrueColor);
        let mut terminal = terminal(width, height);
        draw(&mut terminal, &mut app);
        press(&mut app, &[ch('m')]);
        for (index, method) in Method::ALL.iter().enumerate() {
            if index > 0 {
                press(&mut app, &[ch('j')]);
            }
            let screen = draw(&mut terminal, &mut app);
            assert!(
                screen.contains(method.name()),
                "{width}x{height}: {} not shown:\n{screen}",
                method.name()
            );
        }
        press(&mut app, &[ch('j')]);
        let screen = draw(&mut terminal, &mut app);
        assert!(
            screen.contains(Method::ALL[0].name()),
            "wrapped to the top:\n{screen}"
        );
    }
}

#[test]
fn the_search_prompt_follows_the_cursor() {
    let mut app = app_with(&review_text(), ColorMode::TrueColor);
    let mut terminal = terminal(40, 20);
    draw(&mut terminal, &mut app);
    press(&mut app, &[ch('/')]);
    let query = "the beginning of a long query that ends here";
    typed(&mut app, query);
    let screen = draw(&mut terminal, &mut app);
    let prompt = screen.lines().nth(18).unwrap();
    assert!(prompt.contains("ends here"), "{prompt}");
    assert!(prompt.contains('…'), "the cut start is marked: {prompt}");
    let cursor = terminal.backend().cursor_position();
    let end = prompt.find("ends here").unwrap() + "ends here".len();
    assert_eq!(
        usize::from(cursor.x),
        prompt[..end].chars().count(),
        "{prompt}"
    );
    assert!(cursor.x < 39);
}

#[test]
fn saving_over_a_change_on_disk_asks_first() {
    let directory = tempdir();
    let path = directory.join("changed.txt");
    std::fs::write(&path, "The film was fine.\n").unwrap();
    let mut app = app_for_file(&path);
    press(&mut app, &[ch('i')]);
    typed(&mut app, " Good.");
    press(&mut app, &[key(KeyCode::Enter)]);
    std::fs::write(&path, "Changed elsewhere, and longer.\n").unwrap();
    assert_eq!(press(&mut app, &[ctrl('s')]), [KeyOutcome::Handled]);
    let status = app.status.clone().unwrap_or_default();
    assert!(
        status.contains("changed on disk") && status.contains("Ctrl-s again"),
        "{status}"
    );
    assert_eq!(
        press(&mut app, &[ctrl('s')]),
        [KeyOutcome::Effect(Effect::Save)],
        "a second Ctrl-s writes"
    );
    app.document.save().unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "The film was fine. Good.\n"
    );

    // Noticed by the run loop earlier (its stamp moved on): still asked.
    std::fs::write(&path, "Changed again.\n").unwrap();
    app.document.stamp = app.document.current_stamp();
    app.document.changed_outside = true;
    press(&mut app, &[ch('i')]);
    typed(&mut app, "!");
    assert_eq!(
        press(&mut app, &[ctrl('s'), ch('j'), ctrl('s')]),
        [
            KeyOutcome::Handled,
            KeyOutcome::Handled,
            KeyOutcome::Handled
        ],
        "a key in between asks again"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "Changed again.\n");
}

#[test]
fn ctrl_s_in_the_edit_box_keeps_the_edit_and_saves() {
    let directory = tempdir();
    let path = directory.join("edit-save.txt");
    std::fs::write(&path, "The film was fine.\n").unwrap();
    let mut app = app_for_file(&path);
    press(&mut app, &[ch('i')]);
    typed(&mut app, " Truly.");
    assert_eq!(
        press(&mut app, &[ctrl('s')]),
        [KeyOutcome::Effect(Effect::Save)]
    );
    assert!(app.popup.is_none(), "the edit box closed");
    assert_eq!(app.document.text, "The film was fine. Truly.\n");
    app.document.save().unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "The film was fine. Truly.\n"
    );
}

fn tempdir() -> PathBuf {
    let directory = std::env::temp_dir().join(format!(
        "tokenlens-tui-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

#[test]
fn random_keys_and_clicks_never_panic() {
    let keys: Vec<KeyEvent> = ["jkgG]/[cCmnNpwei?qx🇯👨\u{200d}é "]
        .iter()
        .flat_map(|s| s.chars().map(ch))
        .chain([
            key(KeyCode::Enter),
            key(KeyCode::Esc),
            key(KeyCode::Tab),
            key(KeyCode::BackTab),
            key(KeyCode::Backspace),
            key(KeyCode::Delete),
            key(KeyCode::Left),
            key(KeyCode::Right),
            key(KeyCode::Home),
            key(KeyCode::End),
            key(KeyCode::PageDown),
            key(KeyCode::PageUp),
            key(KeyCode::Down),
            key(KeyCode::Up),
            ctrl('d'),
            ctrl('u'),
            ctrl('s'),
            ctrl('c'),
        ])
        .collect();
    let texts = [
        String::new(),
        "\n\n".into(),
        review_text(),
        long_unit_text(),
        "🇯🇵 e\u{301} 👨\u{200d}👩\u{200d}👧\u{200d}👦\r\nA\ttab.".into(),
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % bound as u64) as usize
    };
    for text in &texts {
        for (width, height) in [(12, 4), (40, 8), (100, 12)] {
            let mut app = app_with(text, ColorMode::TrueColor);
            let mut terminal = terminal(width, height);
            for step in 0..300 {
                if next(8) == 0 {
                    let kind = [
                        MouseEventKind::ScrollDown,
                        MouseEventKind::ScrollUp,
                        MouseEventKind::Down(MouseButton::Left),
                    ][next(3)];
                    app.handle_mouse(MouseEvent {
                        kind,
                        column: next(width as usize) as u16,
                        row: next(height as usize) as u16,
                        modifiers: KeyModifiers::NONE,
                    });
                } else {
                    app.handle_key(keys[next(keys.len())], Instant::now());
                }
                if step % 150 == 0 {
                    explain_wanted_now(&mut app, &explainer());
                }
                app.tick(Instant::now() + Duration::from_secs(1));
                draw(&mut terminal, &mut app);
            }
        }
    }
}
