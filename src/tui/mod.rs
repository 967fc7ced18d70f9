//! `tokenlens tui FILE`: the text in the terminal, each word on the colour of its relevance.
//!
//! - `app`: state and key handling (no drawing); `keys`: the key table behind the help overlay.
//! - `view/`: one file per pane, drawing from `App` onto any ratatui backend.
//! - `worker`: the model runs on a background thread, most urgent units first.
//! - `document`: the file, its units and in-memory edits; `layout`: word wrapping.
//! - `theme`: palette colours for truecolor, 256-colour and NO_COLOR terminals.
//! - `export`: the visible units as HTML or JSON.
//!
//! This module owns the terminal: raw mode, the alternate screen and mouse capture are undone on
//! every exit path, a panic and SIGTERM, SIGHUP or SIGINT included (those end the program with
//! status 128 + the signal's number, as the shell reports a process killed by them).

pub mod app;
pub mod document;
pub mod export;
pub mod keys;
pub mod layout;
pub mod theme;
pub mod view;
pub mod worker;

use std::io::{self, Stdout};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::error::{Error, Result};
use crate::explainer::Explainer;
use app::{App, Effect, KeyOutcome, Popup};
use document::Source;
use worker::Worker;

/// How long the loop waits for input before it looks for results and redraws (the spinner's
/// pace, and the longest a finished explanation waits to be shown).
const FRAME: Duration = Duration::from_millis(80);
/// How often the file's modification time is compared with the one read.
const DISK_CHECK: Duration = Duration::from_millis(500);

/// Runs the UI until the user quits. The document and model are loaded by the caller, so their
/// errors are printed before the terminal is touched.
pub fn run(mut app: App, explainer: Arc<Explainer>) -> Result<()> {
    let worker = Worker::spawn(explainer);
    let handlers = signals::Handlers::install();
    signals::exit_when_the_terminal_hangs_up();
    let outcome = with_terminal(|terminal| event_loop(terminal, &mut app, &worker));
    // The terminal is restored by now. A signal outranks whatever the loop returned: after a
    // hangup, drawing fails only because the terminal is gone.
    if let Some(signal) = signals::received() {
        drop(handlers);
        std::process::exit(128 + signal);
    }
    outcome.map_err(terminal_error)?
}

/// Runs `body` with the terminal in raw mode on the alternate screen with mouse capture, and
/// restores it afterwards, also when `body` fails or panics (the panic hook restores it before
/// the message is printed).
pub fn with_terminal<T>(
    body: impl FnOnce(&mut Terminal<CrosstermBackend<Stdout>>) -> T,
) -> io::Result<T> {
    let mut session = TerminalSession::enter()?;
    let outcome = body(&mut session.terminal);
    drop(session);
    stderr_log::report();
    Ok(outcome)
}

fn terminal_error(source: io::Error) -> Error {
    Error::Io {
        path: "<terminal>".into(),
        source,
    }
}

/// Raw mode, alternate screen and mouse capture, undone on drop and on panic.
struct TerminalSession {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalSession {
    fn enter() -> io::Result<Self> {
        install_panic_hook();
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        stderr_log::redirect();
        let entered = (|| {
            enable_raw_mode()?;
            execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
            Terminal::new(CrosstermBackend::new(io::stdout()))
        })();
        match entered {
            Ok(terminal) => Ok(TerminalSession { terminal }),
            Err(error) => {
                restore_terminal();
                Err(error)
            }
        }
    }
}

impl Drop for TerminalSession {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Whether the terminal is in the UI's modes (raw, alternate screen, mouse capture).
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Leaves the terminal as the shell expects it. Only the first call after `enter` acts: leaving
/// the alternate screen twice would move the cursor back over what was printed in between (the
/// panic hook restores first, then unwinding drops the session).
fn restore_terminal() {
    if !TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        return;
    }
    stderr_log::restore();
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Restores the terminal before the panic message is printed, so it is readable and the shell
/// is usable afterwards.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    worker: &Worker,
) -> Result<()> {
    let mut submitted = Vec::new();
    let mut last_disk_check = Instant::now();
    let mut background_split = app.document.split_in_background();
    loop {
        if signals::received().is_some() {
            return Ok(());
        }
        if let Some(Ok((revision, units))) = background_split.as_ref().map(|r| r.try_recv()) {
            background_split = None;
            // The units already shown keep their indices, so cursor, layout and edits stay valid.
            app.document.accept_units(revision, units);
        }
        for response in worker.responses() {
            app.receive(response);
        }
        let now = Instant::now();
        app.tick(now);
        if now.duration_since(last_disk_check) >= DISK_CHECK {
            last_disk_check = now;
            follow_disk_changes(app);
        }
        if !worker.is_running() {
            app.status = Some("the explain thread stopped; restart tokenlens".into());
        }
        terminal
            .draw(|frame| view::render(frame, app))
            .map_err(terminal_error)?;
        let wanted = app.wanted_requests();
        if wanted != submitted {
            worker.submit(wanted.clone());
            submitted = wanted;
        }
        if !submitted.is_empty() {
            app.spinner_tick = app.spinner_tick.wrapping_add(1);
        }
        if !event::poll(FRAME).map_err(terminal_error)? {
            continue;
        }
        // Take every event already waiting before drawing again (fast typing, pastes).
        loop {
            let outcome = match event::read().map_err(terminal_error)? {
                Event::Key(key) => app.handle_key(key, Instant::now()),
                Event::Mouse(mouse) => app.handle_mouse(mouse),
                _ => KeyOutcome::Handled,
            };
            if let KeyOutcome::Effect(effect) = outcome
                && perform(effect, app) == Flow::Quit
            {
                return Ok(());
            }
            if signals::received().is_some() {
                return Ok(());
            }
            if !event::poll(Duration::ZERO).map_err(terminal_error)? {
                break;
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// Carries out what a key asked for; failures become a status message.
fn perform(effect: Effect, app: &mut App) -> Flow {
    match effect {
        Effect::Quit => return Flow::Quit,
        Effect::Export(format) => {
            let directory = std::env::current_dir().unwrap_or_else(|_| ".".into());
            let path = export::export_path(&directory, &app.document.name(), format);
            let units = app.visible_units.len();
            app.status = Some(match std::fs::write(&path, export::render(app, format)) {
                Ok(()) => format!("exported {units} units to {}", path.display()),
                Err(error) => format!("export failed: {}: {error}", path.display()),
            });
        }
        Effect::Reload => reload(app, "reloaded"),
        Effect::Save => {
            app.status = Some(match app.document.save() {
                Ok(path) => format!("saved {}", path.display()),
                Err(error) => format!("not saved: {error}"),
            });
        }
    }
    Flow::Continue
}

fn reload(app: &mut App, message: &str) {
    if app.document.source == Source::Stdin {
        app.status = Some("the text came from stdin; there is nothing to reload".into());
        return;
    }
    match app.document.reload() {
        Ok(()) => {
            app.document_replaced();
            app.status = Some(message.to_owned());
        }
        Err(error) => app.status = Some(format!("reload failed: {error}")),
    }
}

/// Reloads a file that changed on disk, unless that would throw away edits made here.
fn follow_disk_changes(app: &mut App) {
    if !app.document.changed_on_disk() {
        return;
    }
    let editing = matches!(app.popup, Some(Popup::Edit(_)));
    if app.document.modified || editing {
        app.document.stamp = app.document.current_stamp();
        // Noticed once (the stamp moves on), but remembered for Ctrl-s, which asks before
        // overwriting the change.
        app.document.changed_outside = true;
        app.status = Some("the file changed on disk; r reloads it (and drops your edits)".into());
    } else if app.document.current_stamp().is_none() {
        app.document.stamp = None;
        app.status = Some("the file was removed from disk; showing the last version".into());
    } else {
        reload(app, "reloaded: the file changed on disk");
    }
}

/// Explains everything `app` wants right now on this thread: for tests and snapshots, where
/// results must not depend on timing.
pub fn explain_wanted_now(app: &mut App, explainer: &Explainer) {
    loop {
        let wanted = app.wanted_requests();
        if wanted.is_empty() {
            return;
        }
        let mut groups: Vec<Vec<worker::Request>> = Vec::new();
        for request in wanted {
            match groups
                .iter_mut()
                .find(|g| g[0].method == request.method && g[0].target == request.target)
            {
                Some(group) => group.push(request),
                None => groups.push(vec![request]),
            }
        }
        for group in groups {
            for response in worker::explain(explainer, group) {
                app.receive(response);
            }
        }
    }
}

/// SIGTERM, SIGHUP (the terminal closed) and SIGINT (`kill -INT`; Ctrl-c itself arrives as a key
/// in raw mode) would otherwise kill the process with the terminal still in raw mode on the
/// alternate screen. The handler only records the signal; the event loop sees it within a frame
/// and returns, so the terminal is restored on the normal path.
#[cfg(unix)]
mod signals {
    use std::sync::atomic::{AtomicI32, Ordering};

    const HANDLED: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGHUP, libc::SIGINT];

    /// The signal received (0: none).
    static RECEIVED: AtomicI32 = AtomicI32::new(0);

    extern "C" fn record(signal: libc::c_int) {
        // An atomic store is async-signal-safe.
        RECEIVED.store(signal, Ordering::SeqCst);
    }

    pub fn received() -> Option<i32> {
        match RECEIVED.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }

    /// When the terminal goes away (its window closed, an ssh connection dropped), crossterm's
    /// reader spins on end-of-file inside `event::read` and never returns to the event loop,
    /// which would burn a core forever. A thread checks twice a second that the controlling
    /// terminal still exists (opening `/dev/tty` fails once it is hung up) and ends the process
    /// as SIGHUP would: there is no screen left to restore.
    pub fn exit_when_the_terminal_hangs_up() {
        let terminal_exists = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/tty")
                .is_ok()
        };
        if !terminal_exists() {
            return;
        }
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(500));
                if !terminal_exists() {
                    std::process::exit(128 + libc::SIGHUP);
                }
            }
        });
    }

    /// The handlers while the UI runs; the previous ones come back on drop.
    pub struct Handlers {
        previous: Vec<(libc::c_int, libc::sigaction)>,
    }

    impl Handlers {
        pub fn install() -> Handlers {
            let mut previous = Vec::new();
            for signal in HANDLED {
                // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value before the
                // fields are set; `record` only touches an atomic, so it is safe to run as a
                // handler at any point of the program.
                unsafe {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = record as extern "C" fn(libc::c_int) as usize;
                    libc::sigemptyset(&mut action.sa_mask);
                    action.sa_flags = libc::SA_RESTART;
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(signal, &action, &mut old) == 0 {
                        previous.push((signal, old));
                    }
                }
            }
            Handlers { previous }
        }
    }

    impl Drop for Handlers {
        fn drop(&mut self) {
            for (signal, old) in &self.previous {
                // SAFETY: `old` is the action `sigaction` returned for this signal.
                unsafe {
                    libc::sigaction(*signal, old, std::ptr::null_mut());
                }
            }
        }
    }
}

#[cfg(not(unix))]
mod signals {
    pub fn received() -> Option<i32> {
        None
    }

    pub fn exit_when_the_terminal_hangs_up() {}

    pub struct Handlers;

    impl Handlers {
        pub fn install() -> Handlers {
            Handlers
        }
    }
}

/// While the UI draws, anything written to stderr (a library's warning, a stray debug line) would
/// land in the middle of the screen. Stderr is pointed at a log file instead and put back when the
/// terminal is restored (the panic hook does that first, so panic messages still reach the user).
#[cfg(unix)]
mod stderr_log {
    use std::os::fd::AsRawFd;
    use std::path::PathBuf;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicI32, Ordering};

    /// A duplicate of the original stderr while it is redirected; -1 otherwise.
    static SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);
    static LOG_PATH: Mutex<Option<PathBuf>> = Mutex::new(None);

    pub fn redirect() {
        let path = std::env::temp_dir().join(format!("tokenlens-tui-{}.log", std::process::id()));
        let Ok(log) = std::fs::File::create(&path) else {
            return;
        };
        // SAFETY: dup and dup2 on file descriptors this process owns; `log` outlives the dup2,
        // and fd 2 keeps its own reference to the file afterwards.
        unsafe {
            let saved = libc::dup(libc::STDERR_FILENO);
            if saved < 0 {
                return;
            }
            if libc::dup2(log.as_raw_fd(), libc::STDERR_FILENO) < 0 {
                libc::close(saved);
                return;
            }
            SAVED_STDERR.store(saved, Ordering::SeqCst);
        }
        *LOG_PATH.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
    }

    pub fn restore() {
        let saved = SAVED_STDERR.swap(-1, Ordering::SeqCst);
        if saved >= 0 {
            // SAFETY: `saved` is the duplicate made in `redirect`, still open; it is closed once.
            unsafe {
                libc::dup2(saved, libc::STDERR_FILENO);
                libc::close(saved);
            }
        }
    }

    /// Tells the user where messages written during the session went (and removes an empty log).
    pub fn report() {
        let Some(path) = LOG_PATH.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.len() > 0 => {
                eprintln!(
                    "tokenlens: messages written while the TUI ran are in {}",
                    path.display()
                );
            }
            _ => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

#[cfg(not(unix))]
mod stderr_log {
    pub fn redirect() {}
    pub fn restore() {}
    pub fn report() {}
}
