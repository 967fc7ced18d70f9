//! End to end: the real `tokenlens tui` binary in a tmux session, driven with `send-keys` and
//! read back with `capture-pane -e` (which keeps the colour escapes). Uses the bundled default
//! model when this build has one, otherwise the tiny random BERT fixture.
//!
//! Needs tmux (Debian: `apt-get install tmux`); the test fails with that hint when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_tokenlens");
/// Generous: the first run may load a real model on a busy 2-core machine.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Printed by the shell with the program's exit status after it ends.
const EXIT_MARKER: &str = "tokenlens-exit=";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `--model DIR` unless the build has a default model.
fn model_arguments() -> Vec<String> {
    if tokenlens::default_model::files().is_ok() {
        Vec::new()
    } else {
        let tiny = root().join("fixtures/golden/tiny-bert");
        vec!["--model".into(), tiny.display().to_string()]
    }
}

/// The labels of the model the test runs (the default model's may differ from tiny-bert's).
fn model_labels() -> Vec<String> {
    let files = match tokenlens::default_model::files() {
        Ok(files) => files,
        Err(_) => tokenlens::model_dir::ModelFiles::resolve(
            root()
                .join("fixtures/golden/tiny-bert")
                .to_str()
                .expect("UTF-8 path"),
        )
        .expect("tiny-bert fixture"),
    };
    tokenlens::config::BertConfig::from_file(&files.config)
        .expect("model config")
        .labels
}

/// A tmux server of our own (its own socket), killed when the test ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str, width: u16, height: u16) -> Tmux {
        let version = Command::new("tmux").arg("-V").output();
        assert!(
            version.is_ok_and(|o| o.status.success()),
            "tmux is needed for this test: apt-get install tmux"
        );
        let socket = format!("tokenlens-tui-test-{}-{}", std::process::id(), unique());
        let tmux = Tmux { socket };
        let output = tmux.run(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-s",
            "main",
            &format!("{command}; echo {EXIT_MARKER}$?; sleep 600"),
        ]);
        assert!(
            output.status.success(),
            "tmux new-session failed: {output:?}"
        );
        tmux
    }

    fn run(&self, arguments: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(arguments)
            .env("COLORTERM", "truecolor")
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR")
            .env_remove("TOKENLENS_MODEL")
            .output()
            .expect("tmux runs")
    }

    fn send(&self, keys: &[&str]) {
        for key in keys {
            let output = self.run(&["send-keys", "-t", "main", key]);
            assert!(output.status.success(), "send-keys {key}: {output:?}");
        }
    }

    /// The screen with colour escapes.
    fn capture(&self) -> String {
        let output = self.run(&["capture-pane", "-p", "-e", "-t", "main"]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn display(&self, format: &str) -> String {
        let output = self.run(&["display-message", "-p", "-t", "main", format]);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Waits until the plain screen contains every one of `needles`; returns the screen.
    fn wait_for(&self, needles: &[&str]) -> String {
        self.wait_for_without(needles, &[])
    }

    /// Waits until the plain screen contains every one of `needles` and none of `absent`.
    fn wait_for_without(&self, needles: &[&str], absent: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            let plain = strip_escapes(&screen);
            if needles.iter().all(|n| plain.contains(n))
                && !absent.iter().any(|a| plain.contains(a))
            {
                return screen;
            }
            assert!(
                start.elapsed() < SCREEN_TIMEOUT,
                "screen never showed {needles:?}; last screen:\n{plain}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The exit status once the program ended. The shell prints it after the program (see
    /// `start`): tmux's own `pane_dead_status` is sometimes never filled in when tmux is slow
    /// to reap the process.
    fn wait_for_exit(&self) -> String {
        let start = Instant::now();
        loop {
            let screen = strip_escapes(&self.capture());
            if let Some(at) = screen.find(EXIT_MARKER) {
                let rest = &screen[at + EXIT_MARKER.len()..];
                return rest.chars().take_while(char::is_ascii_digit).collect();
            }
            assert!(
                start.elapsed() < SCREEN_TIMEOUT,
                "tokenlens did not exit:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn strip_escapes(screen: &str) -> String {
    let mut out = String::with_capacity(screen.len());
    let mut chars = screen.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn tui_command(input: &Path, extra: &[&str]) -> String {
    let mut parts = vec![BINARY.to_string(), "tui".into()];
    parts.extend(model_arguments());
    parts.extend(extra.iter().map(|s| s.to_string()));
    parts.push(input.display().to_string());
    parts
        .iter()
        .map(|p| shell_quote(p))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn tui_in_tmux_colours_words_and_follows_keys() {
    // A copy, so the test can change it on disk.
    let directory = std::env::temp_dir().join(format!("tokenlens-tui-tmux-{}", unique()));
    std::fs::create_dir_all(&directory).unwrap();
    let fixture = directory.join("review.txt");
    let original = std::fs::read_to_string(root().join("fixtures/tui/review.txt")).unwrap();
    std::fs::write(&fixture, &original).unwrap();
    let tmux = Tmux::start(&tui_command(&fixture, &[]), 100, 30);
    // Explained: the word list shows the strongest word at +1.00 (maxabs).
    let screen = tmux.wait_for_without(
        &[
            "review.txt",
            "unit 1/5",
            "words of unit 1",
            "wonderful",
            "+1.00",
        ],
        &["explaining"],
    );
    assert!(
        screen.contains("\u{1b}[48;2;"),
        "words have truecolor backgrounds:\n{screen:?}"
    );

    tmux.send(&["c"]);
    let first_class = format!("target {}", model_labels()[0]);
    tmux.wait_for(&[&first_class]);
    tmux.send(&["j", "j"]);
    tmux.wait_for(&["unit 3/5", "words of unit 3"]);
    tmux.send(&["?"]);
    tmux.wait_for(&["keys — Esc closes", "contrast two classes"]);
    tmux.send(&["Escape"]);
    // Wait for Esc to land: a key sent right behind it would read as Alt+key.
    tmux.wait_for_without(&["unit 3/5"], &["keys — Esc closes"]);
    tmux.send(&["/", "café", "Enter"]);
    tmux.wait_for(&["unit 4/5", "/café"]);
    // Changed on disk: the view follows.
    std::fs::write(&fixture, format!("{original}\nA reloaded closing line.\n")).unwrap();
    tmux.wait_for(&[
        "A reloaded closing line.",
        "unit 4/6",
        // The message has priority over the legend, so it is shown whole.
        "reloaded: the file changed on disk",
    ]);
    assert_eq!(
        std::fs::read_to_string(&fixture).unwrap().len(),
        original.len() + 26
    );
    tmux.send(&["q"]);
    assert_eq!(tmux.wait_for_exit(), "0", "q exits cleanly");
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "0",
        "alternate screen left"
    );
    assert_eq!(
        tmux.display("#{mouse_any_flag}"),
        "0",
        "mouse capture released"
    );
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn tui_reads_stdin_and_honours_no_color() {
    let target = model_labels()
        .last()
        .cloned()
        .expect("the model has labels");
    let fixture = root().join("fixtures/tui/review.txt");
    let command = format!(
        "cat {} | NO_COLOR=1 {}",
        shell_quote(&fixture.display().to_string()),
        tui_command(
            Path::new("-"),
            &["--unit", "paragraph", "--target", &target]
        )
    );
    let tmux = Tmux::start(&command, 90, 24);
    let screen = tmux.wait_for(&[
        "<stdin>",
        "unit 1/3",
        "legend:",
        &format!("target {target}"),
    ]);
    assert!(
        !screen.contains("48;2;"),
        "NO_COLOR: no background colours:\n{screen:?}"
    );
    assert!(
        !screen.contains("48;5;"),
        "NO_COLOR: no indexed colours:\n{screen:?}"
    );
    tmux.send(&["C-c"]);
    assert_eq!(tmux.wait_for_exit(), "0");
}

#[test]
fn missing_and_binary_files_fail_before_the_ui_starts() {
    let missing = Command::new(BINARY)
        .args(["tui", "--model", "/nonexistent-model", "/no/such/file.txt"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("tokenlens: could not read /no/such/file.txt"),
        "{stderr}"
    );

    let binary = root().join("fixtures/golden/tiny-bert/model.safetensors");
    let output = Command::new(BINARY)
        .args(["tui", "--model", "/nonexistent-model"])
        .arg(&binary)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("looks like a binary file"), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "nothing drawn: {:?}",
        output.stdout
    );

    let fixture = root().join("fixtures/tui/review.txt");
    let piped = Command::new(BINARY)
        .arg("tui")
        .arg(&fixture)
        .output()
        .unwrap();
    assert_eq!(piped.status.code(), Some(2), "{piped:?}");
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(stderr.contains("stdout is not one"), "{stderr}");
}

/// The process ids whose parent is `parent` and whose name starts with `name` (from /proc).
fn children_named(parent: &str, name: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
            let (head, tail) = stat.rsplit_once(')')?;
            let (pid, comm) = head.split_once(" (")?;
            let ppid = tail.split_whitespace().nth(1)?;
            (ppid == parent && comm.starts_with(name)).then(|| pid.to_owned())
        })
        .collect()
}

#[test]
fn signals_restore_the_terminal_and_exit_with_128_plus_the_signal() {
    let fixture = root().join("fixtures/tui/review.txt");
    for (signal, status) in [("TERM", "143"), ("HUP", "129"), ("INT", "130")] {
        let tmux = Tmux::start(&tui_command(&fixture, &[]), 100, 30);
        tmux.wait_for(&["review.txt", "unit 1/5"]);
        assert_eq!(tmux.display("#{alternate_on}"), "1", "the UI is up");
        let shell = tmux.display("#{pane_pid}");
        let pids = children_named(&shell, "tokenlens");
        assert_eq!(
            pids.len(),
            1,
            "one tokenlens under the shell {shell}: {pids:?}"
        );
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &pids[0]])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        assert_eq!(tmux.wait_for_exit(), status, "SIG{signal}");
        assert_eq!(
            tmux.display("#{alternate_on}"),
            "0",
            "SIG{signal}: alternate screen left"
        );
        assert_eq!(
            tmux.display("#{mouse_any_flag}"),
            "0",
            "SIG{signal}: mouse capture released"
        );
        assert_eq!(
            tmux.display("#{cursor_flag}"),
            "1",
            "SIG{signal}: cursor shown"
        );
    }
}

#[test]
fn the_ui_ends_when_its_terminal_goes_away() {
    let fixture = root().join("fixtures/tui/review.txt");
    // `trap '' HUP` as under nohup: the hangup itself must end the UI, not only its signal.
    let command = format!("trap '' HUP; exec {}", tui_command(&fixture, &[]));
    let tmux = Tmux::start(&command, 100, 30);
    tmux.wait_for(&["review.txt", "unit 1/5"]);
    let shell = tmux.display("#{pane_pid}");
    let mut pids = children_named(&shell, "tokenlens");
    if pids.is_empty() {
        pids.push(shell); // the shell exec'ed into tokenlens
    }
    assert_eq!(pids.len(), 1, "{pids:?}");
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", pids[0]));
    drop(tmux); // kill-server: the pane's terminal is gone
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proc_dir.exists() && std::time::Instant::now() < deadline {
        let stat = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
        if stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        {
            break; // exited, waiting to be reaped
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stat = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
    assert!(
        stat.is_empty()
            || stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z')),
        "tokenlens {} still runs 10 s after its terminal went away: {stat}",
        pids[0]
    );
}

/// Not a test by itself: `terminal_is_restored_after_a_panic` runs it inside tmux.
#[test]
#[ignore = "helper: run by terminal_is_restored_after_a_panic inside tmux"]
fn panic_inside_the_ui() {
    if std::env::var_os("TOKENLENS_TUI_PANIC_HELPER").is_none() {
        return;
    }
    let _ = tokenlens::tui::with_terminal(|terminal| {
        terminal
            .draw(|frame| {
                frame.render_widget(
                    ratatui::widgets::Paragraph::new("inside the UI"),
                    frame.area(),
                )
            })
            .expect("draws");
        std::thread::sleep(Duration::from_millis(300));
        panic!("deliberate panic inside the UI");
    });
}

#[test]
fn terminal_is_restored_after_a_panic() {
    let test_binary = std::env::current_exe().expect("test binary path");
    let command = format!(
        "RUST_BACKTRACE=0 TOKENLENS_TUI_PANIC_HELPER=1 {} --exact panic_inside_the_ui --ignored --nocapture --test-threads 1",
        shell_quote(&test_binary.display().to_string())
    );
    let tmux = Tmux::start(&command, 120, 30);
    let status = tmux.wait_for_exit();
    assert_ne!(status, "0", "the helper panicked, so its test run failed");
    let screen = strip_escapes(&tmux.capture());
    assert!(
        screen.contains("deliberate panic inside the UI"),
        "panic message shown:\n{screen}"
    );
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "0",
        "alternate screen left"
    );
    assert_eq!(
        tmux.display("#{mouse_any_flag}"),
        "0",
        "mouse capture released"
    );
    // In raw mode a newline does not return the carriage, so lines would start mid-screen.
    assert!(
        screen
            .lines()
            .any(|line| line.starts_with("thread 'panic_inside_the_ui'")),
        "raw mode was left (lines start at column 0):\n{screen}"
    );
}
