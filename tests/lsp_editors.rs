//! The editor clients under `editors/` use the shared palette and the server's names.

mod common;

use std::path::PathBuf;

use common::palette_hex;
use serde_json::Value;
use tokenlens::Method;
use tokenlens::lsp::features::SEMANTIC_MODIFIERS;

fn read(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn vscode_package() -> Value {
    serde_json::from_str(&read("editors/vscode/package.json")).unwrap()
}

#[test]
fn vscode_contributed_colors_are_the_palette() {
    let package = vscode_package();
    let colors = package["contributes"]["colors"].as_array().unwrap();
    assert_eq!(colors.len(), 10);
    for (bucket, hex, _) in palette_hex() {
        let id = format!(
            "tokenlens.{}{}",
            if bucket < 0 { "negative" } else { "positive" },
            bucket.unsigned_abs()
        );
        let color = colors
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("package.json lacks colour {id}"));
        for theme in ["dark", "light", "highContrast", "highContrastLight"] {
            assert_eq!(color["defaults"][theme], hex, "{id} ({theme})");
        }
    }
}

#[test]
fn vscode_settings_and_semantic_legend_match_the_server() {
    let package = vscode_package();
    let contributes = &package["contributes"];
    let methods: Vec<&str> = contributes["configuration"]["properties"]["tokenlens.method"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(methods, Method::names());
    let modifiers: Vec<&str> = contributes["semanticTokenModifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(modifiers, SEMANTIC_MODIFIERS);
    let logic = read("editors/vscode/src/logic.ts");
    for method in Method::names() {
        assert!(
            logic.contains(&format!("'{method}'")),
            "logic.ts METHODS lacks {method}"
        );
    }
}

#[test]
fn neovim_plugin_palette_is_the_shared_palette() {
    let source = read("editors/nvim/lua/tokenlens/init.lua");
    for (bucket, bg, fg) in palette_hex() {
        let name = format!(
            "{}{}",
            if bucket < 0 { "Neg" } else { "Pos" },
            bucket.unsigned_abs()
        );
        let line = format!("{name} = {{ bg = '{bg}', fg = '{fg}' }}");
        assert!(source.contains(&line), "editors/nvim lacks `{line}`");
    }
}

#[test]
fn emacs_faces_are_the_shared_palette() {
    let source = read("editors/emacs/tokenlens.el");
    for (bucket, bg, fg) in palette_hex() {
        let face = format!(
            "(defface tokenlens-{}-{} '((t :background \"{bg}\" :foreground \"{fg}\"))",
            if bucket < 0 { "neg" } else { "pos" },
            bucket.unsigned_abs()
        );
        assert!(source.contains(&face), "editors/emacs lacks `{face}`");
    }
}

/// Settings an editor sends must be ones the server knows (a typo would be ignored silently
/// by the editor and reported by the server).
fn assert_known_settings(editor: &str, settings: &Value) {
    let (_, problems) = tokenlens::lsp::settings::Settings::default().merged(settings);
    assert!(problems.is_empty(), "{editor}: {problems:?}");
}

/// A TOML array of strings.
fn strings(value: &toml::Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn helix_config_starts_the_server_for_markdown_commits_and_text() {
    let config: toml::Table = read("editors/helix/languages.toml").parse().unwrap();
    let server = &config["language-server"]["tokenlens"];
    assert_eq!(server["command"].as_str(), Some("tokenlens"));
    assert_eq!(server["args"].as_array().unwrap()[0].as_str(), Some("lsp"));
    let settings: Value = serde_json::to_value(&server["config"]).unwrap();
    assert!(settings.as_object().is_some_and(|o| !o.is_empty()));
    assert_known_settings("helix", &settings);
    let languages: Vec<&str> = config["language"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| strings(&l["language-servers"]).contains(&"tokenlens"))
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(languages, ["markdown", "git-commit", "text"]);
}

#[test]
fn zed_extension_declares_the_server_for_prose_languages() {
    let manifest: toml::Table = read("editors/zed/extension.toml").parse().unwrap();
    let server = &manifest["language_servers"]["tokenlens"];
    assert_eq!(
        strings(&server["languages"]),
        ["Markdown", "Plain Text", "Git Commit"]
    );
    assert!(read("editors/zed/src/lib.rs").contains("\"lsp\""));
}

#[test]
fn vscode_settings_sent_to_the_server_are_known() {
    let package = vscode_package();
    let properties = package["contributes"]["configuration"]["properties"]
        .as_object()
        .unwrap();
    let mut settings = serde_json::Map::new();
    for (name, property) in properties {
        let key = name.trim_start_matches("tokenlens.");
        // Client-side settings (the binary, decorations) are not sent to the server.
        if ["path", "decorations", "trace.server"].contains(&key) {
            continue;
        }
        let default = property["default"].clone();
        match key.strip_prefix("features.") {
            Some(feature) => {
                let features = settings
                    .entry("features")
                    .or_insert_with(|| Value::Object(Default::default()));
                features[feature] = default;
            }
            None => {
                settings.insert(key.to_owned(), default);
            }
        }
    }
    assert!(!settings.is_empty());
    assert_known_settings("vscode", &Value::Object(settings));
}
