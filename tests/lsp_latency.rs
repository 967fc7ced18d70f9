//! Latency benchmark of `tokenlens lsp` (prints a table; it asserts nothing about time):
//!
//! ```sh
//! cargo test --test lsp_latency -- --ignored --nocapture
//! ```
//!
//! For each edit: the time from sending a `didChange` that rewrites one word of a ~60-token
//! paragraph to the arrival of the fresh diagnostics and of the `tokenlens/publishScores`
//! notification, with the default 200 ms debounce. "work" is that time minus the debounce.
//! The model is the default model when this build has one, else `target/models/minilm-head`
//! (`bash scripts/fetch-minilm.sh`, the same size), else `$TOKENLENS_BENCH_MODEL`.
//!
//! The documents: 5 paragraphs, and 1,000 paragraphs made of 25 distinct paragraphs
//! repeated. Repeating keeps the first full explanation of the big document short (the unit
//! cache explains each distinct text once). Every edit still re-segments and re-publishes
//! the whole document, so the per-edit cost of a long document shows.

mod lsp_client;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lsp_client::{LspClient, range};
use serde_json::json;

const DEBOUNCE_MS: u64 = 200;
const EDITS: usize = 10;

fn paragraph(i: usize) -> String {
    format!(
        "Review {i}: the film opens with a long and beautifully shot sequence in the mountains, \
         and the lead actor carries every scene with quiet confidence. Later the plot loses its \
         way, the dialogue turns clumsy, and the final act drags on far too long before an \
         ending that feels rushed."
    )
}

/// (model setting, what it is) — `None` means the server's default model.
fn model() -> (Option<String>, String) {
    if let Ok(path) = std::env::var("TOKENLENS_BENCH_MODEL") {
        return (Some(path.clone()), path);
    }
    if tokenlens::default_model::files().is_ok() {
        return (None, "the default model".into());
    }
    let minilm = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/models/minilm-head");
    if minilm.join("config.json").exists() {
        return (
            Some(minilm.display().to_string()),
            "target/models/minilm-head (no default model in this build; same size)".into(),
        );
    }
    panic!("no model: this build has no default model; run `bash scripts/fetch-minilm.sh`");
}

struct Timing {
    diagnostics: Duration,
    notification: Duration,
    /// The server's own account of the run (`tokenlens/stats` → `lastAnalysis`), in ms.
    model_ms: f64,
    server_ms: f64,
    publish_ms: f64,
    notification_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Opens a document of `paragraphs` paragraphs and times `EDITS` edits of paragraph `target`.
fn measure(paragraphs: usize, distinct: usize) -> (Vec<Timing>, Duration) {
    let (model, _) = model();
    let mut client = LspClient::start(&[]);
    let mut options = json!({"debounceMs": DEBOUNCE_MS});
    if let Some(model) = model {
        options["model"] = json!(model);
    }
    let capabilities = json!({
        "general": {"positionEncodings": ["utf-16"]},
        "experimental": {"tokenlensScores": true, "tokenlensScoresIncremental": true},
    });
    // Not `ready`, which fills in the tiny test model when none is named.
    client.initialize(capabilities, options);
    client.wait_model_loaded();
    let uri = format!("file:///tmp/bench-{paragraphs}.txt");
    let text: Vec<String> = (0..paragraphs).map(|i| paragraph(i % distinct)).collect();
    let opened = Instant::now();
    client.open(&uri, "plaintext", &text.join("\n\n"));
    client.diagnostics(&uri, 1);
    let first = opened.elapsed();
    client.notification("tokenlens/publishScores", |p| p["version"] == 1);

    // Edit the middle paragraph: "film" (after "Review N: the ") becomes another word.
    let line = (paragraphs / 2 * 2) as u32;
    let column = text[paragraphs / 2].find("film").unwrap() as u32;
    let words = [
        "movie", "picture", "drama", "story", "feature", "epic", "thriller", "romance", "comedy",
        "western", "satire", "musical",
    ];
    let mut current = "film";
    let mut timings = Vec::new();
    for (edit, word) in words.iter().take(EDITS).enumerate() {
        let version = 2 + edit as i32;
        let end = column + current.len() as u32;
        let sent = Instant::now();
        client.change_range(&uri, version, range((line, column), (line, end)), word);
        let diagnostics = client
            .wait_for(|m| {
                m["method"] == "textDocument/publishDiagnostics"
                    && m["params"]["version"] == version
            })
            .expect("diagnostics");
        let notification = client
            .wait_for(|m| {
                m["method"] == "tokenlens/publishScores" && m["params"]["version"] == version
            })
            .expect("notification");
        let last = client.stats()["lastAnalysis"].clone();
        timings.push(Timing {
            diagnostics: diagnostics.at - sent,
            notification: notification.at - sent,
            model_ms: last["modelMs"].as_f64().unwrap_or(f64::NAN),
            server_ms: last["serverMs"].as_f64().unwrap_or(f64::NAN),
            publish_ms: last["publishMs"].as_f64().unwrap_or(f64::NAN),
            notification_ms: last["notificationMs"].as_f64().unwrap_or(f64::NAN),
        });
        current = word;
    }
    let stats = client.stats();
    eprintln!("  {paragraphs} paragraphs: {stats}");
    assert!(client.shutdown().success());
    (timings, first)
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 0.5)
}

#[test]
#[ignore = "benchmark: cargo test --test lsp_latency -- --ignored --nocapture"]
fn latency_of_one_paragraph_edit() {
    let (_, described) = model();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nmodel: {described}\n{cores} CPU cores, load average {}; debounce {DEBOUNCE_MS} ms; \
         {EDITS} edits each; server binary: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        if cfg!(debug_assertions) {
            "debug (dependencies optimised)"
        } else {
            "release"
        }
    );
    println!(
        "{:<16} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>10}",
        "document",
        "open ms",
        "p50",
        "p90",
        "max",
        "work p50",
        "model",
        "server",
        "publish",
        "of: notif",
        "notif p50"
    );
    for (paragraphs, distinct) in [(5, 5), (1000, 25)] {
        let (timings, first) = measure(paragraphs, distinct);
        let mut total: Vec<f64> = timings
            .iter()
            .map(|t| t.diagnostics.as_secs_f64() * 1e3)
            .collect();
        total.sort_by(f64::total_cmp);
        let p50 = percentile(&total, 0.5);
        println!(
            "{:<16} {:>9.0} {:>8.0} {:>8.0} {:>8.0} {:>9.0} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>10.0}",
            format!("{paragraphs} paragraphs"),
            first.as_secs_f64() * 1e3,
            p50,
            percentile(&total, 0.9),
            total[total.len() - 1],
            p50 - DEBOUNCE_MS as f64,
            median(timings.iter().map(|t| t.model_ms)),
            median(timings.iter().map(|t| t.server_ms)),
            median(timings.iter().map(|t| t.publish_ms)),
            median(timings.iter().map(|t| t.notification_ms)),
            median(timings.iter().map(|t| t.notification.as_secs_f64() * 1e3)),
        );
    }
    println!(
        "times in ms from didChange to publishDiagnostics (p50/p90/max); work = p50 - debounce; \
         model/server/publish: medians of the server's own split of its work (publish includes \
         sending the notification, 'of: notif'); notif p50: didChange to the arrival of \
         tokenlens/publishScores"
    );
}
