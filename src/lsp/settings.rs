//! The server's configuration: `initializationOptions`, then the `tokenlens` section pulled with
//! `workspace/configuration`, both in the same shape (camelCase keys, every key optional).

use serde::Deserialize;
use serde_json::Value;

use crate::methods::Method;

/// How prominent the per-word diagnostics are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Information,
    #[default]
    Hint,
}

/// Which features are on. The zero-config ones default to on, the opt-in ones to off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Features {
    pub document_color: bool,
    pub hover: bool,
    pub diagnostics: bool,
    pub code_lens: bool,
    pub inlay_hints: bool,
    pub semantic_tokens: bool,
    /// "Fade the rest": words outside the top-k get an `Unnecessary`-tagged hint.
    pub fade: bool,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            document_color: true,
            hover: true,
            diagnostics: true,
            code_lens: true,
            inlay_hints: false,
            semantic_tokens: false,
            fade: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Settings {
    /// Model directory or hub id; empty: `$TOKENLENS_MODEL` / `--model`, else the default model.
    pub model: Option<String>,
    /// Relevance method name (see `tokenlens score --help`).
    pub method: String,
    /// Class to explain, by label or index; `auto` (or empty) is the predicted class.
    pub target: String,
    /// Words coloured per unit (documentColor, inlay hints).
    pub top_k: usize,
    /// Words per unit that get a diagnostic.
    pub diagnostics_per_unit: usize,
    pub diagnostic_severity: Severity,
    /// Quiet time after the last edit before the model runs.
    pub debounce_ms: u64,
    /// Language ids that are explained; the defaults are plain text, Markdown and git commits.
    pub languages: Vec<String>,
    pub features: Features,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: None,
            method: crate::methods::DEFAULT_METHOD.name().to_owned(),
            target: "auto".to_owned(),
            top_k: 25,
            diagnostics_per_unit: 3,
            diagnostic_severity: Severity::Hint,
            debounce_ms: 200,
            languages: super::units::DEFAULT_LANGUAGES
                .iter()
                .map(|l| l.to_string())
                .collect(),
            features: Features::default(),
        }
    }
}

impl Settings {
    /// Settings from a JSON value shaped like `{ "tokenlens": {…} }` or the bare `{…}`.
    /// Unknown keys (a typo in an editor's configuration) and keys with a value of the wrong
    /// type are reported and change nothing.
    pub fn merged(&self, value: &Value) -> (Settings, Vec<String>) {
        let section = match value.get("tokenlens") {
            Some(inner) if inner.is_object() => inner,
            _ => value,
        };
        let Some(object) = section.as_object() else {
            return (self.clone(), Vec::new());
        };
        let mut current = serde_json::to_value(SettingsView::from(self)).unwrap_or(Value::Null);
        let mut problems = Vec::new();
        for (key, given) in object {
            if given.is_null() {
                continue;
            }
            if current.get(key).is_none() {
                problems.push(format!(
                    "setting {key}: unknown; the settings are {}",
                    known_keys(&current)
                ));
                continue;
            }
            let mut candidate = current.clone();
            if key == "features" && !given.is_object() {
                problems.push(format!(
                    "setting features: expected an object of switches like {{\"hover\": false}}, not {given}"
                ));
                continue;
            }
            if key == "features" {
                if let (Some(features), Some(given)) =
                    (candidate.get_mut("features"), given.as_object())
                {
                    for (name, on) in given {
                        if features.get(name).is_none() {
                            problems.push(format!(
                                "setting features.{name}: unknown; the features are {}",
                                known_keys(features)
                            ));
                            continue;
                        }
                        features[name] = on.clone();
                    }
                }
            } else if let (true, Some(index)) = (key == "target", given.as_u64()) {
                // A class index may be given as a JSON number, as setTarget accepts.
                candidate[key] = Value::String(index.to_string());
            } else {
                candidate[key] = given.clone();
            }
            match serde_json::from_value::<Settings>(candidate.clone()) {
                Ok(_) => current = candidate,
                Err(error) => problems.push(format!("setting {key}: {error}")),
            }
        }
        let mut settings: Settings =
            serde_json::from_value(current).unwrap_or_else(|_| self.clone());
        if settings.method.parse::<Method>().is_err() {
            problems.push(format!(
                "setting method: unknown method {:?}; use one of {}",
                settings.method,
                Method::names().join(", ")
            ));
            settings.method = self.method.clone();
        }
        if settings.top_k == 0 {
            problems.push(format!(
                "setting topK: 0 would colour no word; give at least 1 (turn colours off with \
                 features.documentColor); keeping {}",
                self.top_k.max(1)
            ));
            settings.top_k = self.top_k.max(1);
        }
        (settings, problems)
    }

    pub fn method(&self) -> Method {
        self.method
            .parse()
            .unwrap_or(crate::methods::DEFAULT_METHOD)
    }

    pub fn explains_language(&self, language_id: &str) -> bool {
        self.languages.iter().any(|l| l == language_id)
    }
}

/// The keys of a JSON object, for messages.
fn known_keys(object: &Value) -> String {
    object
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// The serialisable mirror of [`Settings`], used to merge partial updates key by key.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SettingsView {
    model: Option<String>,
    method: String,
    target: String,
    top_k: usize,
    diagnostics_per_unit: usize,
    diagnostic_severity: &'static str,
    debounce_ms: u64,
    languages: Vec<String>,
    features: Value,
}

impl From<&Settings> for SettingsView {
    fn from(s: &Settings) -> Self {
        let f = &s.features;
        SettingsView {
            model: s.model.clone(),
            method: s.method.clone(),
            target: s.target.clone(),
            top_k: s.top_k,
            diagnostics_per_unit: s.diagnostics_per_unit,
            diagnostic_severity: match s.diagnostic_severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Information => "information",
                Severity::Hint => "hint",
            },
            debounce_ms: s.debounce_ms,
            languages: s.languages.clone(),
            features: serde_json::json!({
                "documentColor": f.document_color,
                "hover": f.hover,
                "diagnostics": f.diagnostics,
                "codeLens": f.code_lens,
                "inlayHints": f.inlay_hints,
                "semanticTokens": f.semantic_tokens,
                "fade": f.fade,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partial_updates_keep_the_rest() {
        let base = Settings::default();
        let (s, problems) = base.merged(&json!({
            "tokenlens": {"topK": 5, "diagnosticSeverity": "warning", "features": {"inlayHints": true}}
        }));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.top_k, 5);
        assert_eq!(s.diagnostic_severity, Severity::Warning);
        assert!(s.features.inlay_hints && s.features.document_color);
        assert_eq!(s.debounce_ms, 200);
    }

    #[test]
    fn unknown_keys_are_reported_with_the_known_ones() {
        let (s, problems) = Settings::default().merged(&json!({
            "topk": 5, "features": {"hover": false, "colours": true}
        }));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("topk") && problems[0].contains("topK"));
        assert!(problems[1].contains("features.colours") && problems[1].contains("documentColor"));
        assert_eq!(s.top_k, 25);
        assert!(!s.features.hover);
    }

    #[test]
    fn target_takes_a_class_index_as_a_number_or_a_string() {
        for given in [json!(1), json!("1")] {
            let (s, problems) = Settings::default().merged(&json!({"target": given}));
            assert!(problems.is_empty(), "{problems:?}");
            assert_eq!(s.target, "1");
        }
        let (s, problems) = Settings::default().merged(&json!({"target": 1.5}));
        assert_eq!((s.target.as_str(), problems.len()), ("auto", 1));
    }

    #[test]
    fn features_that_are_not_an_object_are_reported() {
        let (settings, problems) = Settings::default().merged(&json!({"features": false}));
        assert_eq!(settings, Settings::default());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("setting features:"), "{problems:?}");
    }

    #[test]
    fn bad_values_are_reported_and_ignored() {
        let (s, problems) = Settings::default().merged(&json!({
            "topK": "many", "method": "nope", "debounceMs": 50
        }));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(s.top_k, 25);
        assert_eq!(s.method, "attnlrp");
        assert_eq!(s.debounce_ms, 50);
    }

    #[test]
    fn top_k_zero_is_reported_and_the_previous_value_kept() {
        let (s, _) = Settings::default().merged(&json!({"topK": 7}));
        let (s, problems) = s.merged(&json!({"topK": 0}));
        assert_eq!(s.top_k, 7);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("topK") && problems[0].contains("documentColor"),
            "{problems:?}"
        );
    }
}
