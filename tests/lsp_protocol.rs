//! `tokenlens lsp` over real JSON-RPC: the binary is started and spoken to through stdio, with
//! the tiny 3-layer test model (loads in milliseconds).

mod lsp_client;

use lsp_client::{LspClient, range, slice, tiny_model};
use serde_json::{Value, json};
use tokenlens::render::palette::{Bucket, Palette};

const REVIEW: &str = "The acting was wonderful and the story moved me deeply.\n\
                      I would watch it again tomorrow.\n\
                      \n\
                      The ending, however, was rushed and the sound was awful.\n";

fn utf16_client() -> Value {
    json!({"general": {"positionEncodings": ["utf-16"]}})
}

fn utf8_client() -> Value {
    json!({"general": {"positionEncodings": ["utf-8", "utf-16", "utf-32"]}})
}

fn server() -> LspClient {
    LspClient::start(&[])
}

#[test]
fn initialize_advertises_the_features_and_negotiates_utf8_when_offered() {
    let mut client = server();
    let result = client.initialize(utf8_client(), json!({"model": tiny_model()}));
    let capabilities = &result["capabilities"];
    assert_eq!(capabilities["positionEncoding"], "utf-8");
    assert_eq!(capabilities["textDocumentSync"], 2, "incremental sync");
    assert_eq!(capabilities["colorProvider"], true);
    assert_eq!(capabilities["hoverProvider"], true);
    assert_eq!(
        capabilities["executeCommandProvider"]["commands"],
        json!(["tokenlens.setTarget", "tokenlens.setMethod"])
    );
    let legend = &capabilities["semanticTokensProvider"]["legend"];
    assert_eq!(legend["tokenTypes"], json!(["relevance"]));
    assert!(
        legend["tokenModifiers"]
            .as_array()
            .unwrap()
            .contains(&json!("neg5"))
    );
    assert_eq!(
        capabilities["experimental"]["tokenlensScores"]["version"],
        1
    );
    assert!(client.shutdown().success());

    let mut client = server();
    let result = client.initialize(utf16_client(), json!({}));
    assert_eq!(result["capabilities"]["positionEncoding"], "utf-16");
    let mut client2 = server();
    let result = client2.initialize(json!({}), json!({}));
    assert_eq!(result["capabilities"]["positionEncoding"], "utf-16");
}

#[test]
fn open_document_gets_diagnostics_colors_hover_and_code_lenses() {
    let mut client = server();
    client.ready(utf16_client(), json!({}));
    let uri = "file:///tmp/review.txt";
    client.open(uri, "plaintext", REVIEW);

    let diagnostics = client.diagnostics(uri, 1);
    // Two paragraphs, the top 3 words of each, as hints.
    assert_eq!(diagnostics.len(), 6, "{diagnostics:#?}");
    for d in &diagnostics {
        assert_eq!(d["severity"], 4);
        assert_eq!(d["source"], "tokenlens");
        let word = slice(REVIEW, &d["range"], "utf-16");
        let message = d["message"].as_str().unwrap();
        assert!(message.starts_with(word), "{message:?} vs {word:?}");
        assert!(message.contains("(#"), "{message}");
    }

    let colors = client.request(
        "textDocument/documentColor",
        json!({"textDocument": {"uri": uri}}),
    );
    let colors = colors.as_array().unwrap();
    assert!(!colors.is_empty());
    let palette: Vec<(f64, f64, f64)> = (-5..=5)
        .filter(|&b| b != 0)
        .map(|b| {
            let c = Palette::BlueOrange.bucket_color(Bucket(b)).unwrap();
            (c.0 as f64 / 255.0, c.1 as f64 / 255.0, c.2 as f64 / 255.0)
        })
        .collect();
    for info in colors {
        let c = &info["color"];
        let rgb = (
            c["red"].as_f64().unwrap(),
            c["green"].as_f64().unwrap(),
            c["blue"].as_f64().unwrap(),
        );
        assert!(
            palette.iter().any(|p| (p.0 - rgb.0).abs() < 1e-6
                && (p.1 - rgb.1).abs() < 1e-6
                && (p.2 - rgb.2).abs() < 1e-6),
            "{rgb:?} is not a palette colour"
        );
        let word = slice(REVIEW, &info["range"], "utf-16");
        assert!(
            !word.is_empty() && !word.contains(char::is_whitespace),
            "{word:?}"
        );
    }

    // Picking a colour never edits the prose.
    let first = &colors[0];
    let presentations = client.request(
        "textDocument/colorPresentation",
        json!({"textDocument": {"uri": uri}, "color": first["color"], "range": first["range"]}),
    );
    let edit = &presentations[0]["textEdit"];
    assert_eq!(edit["range"], first["range"]);
    assert_eq!(edit["newText"], slice(REVIEW, &first["range"], "utf-16"));

    let top = &diagnostics[0]["range"];
    let hover = client.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": uri}, "position": top["start"]}),
    );
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(text.contains("rank"), "{text}");
    assert!(text.contains("Pieces:"), "{text}");
    assert!(text.contains("probability"), "{text}");
    assert_eq!(hover["range"], *top);
    // Past the end of a line there is no word, even though the position clamps to the end.
    let past_end = client.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": uri}, "position": {"line": top["start"]["line"], "character": 9999}}),
    );
    assert_eq!(past_end, Value::Null);

    let lenses = client.request(
        "textDocument/codeLens",
        json!({"textDocument": {"uri": uri}}),
    );
    let lenses = lenses.as_array().unwrap();
    // Per paragraph: probabilities, two other classes, the method.
    assert_eq!(lenses.len(), 8, "{lenses:#?}");
    assert!(lenses.iter().all(|l| {
        l["command"]["command"]
            .as_str()
            .unwrap()
            .starts_with("tokenlens.set")
    }));
    assert_eq!(lenses[0]["range"]["start"]["line"], 0);
    assert_eq!(lenses[4]["range"]["start"]["line"], 3);
    assert!(client.shutdown().success());
}

#[test]
fn execute_command_switches_the_explained_class() {
    let mut client = server();
    client.ready(utf16_client(), json!({}));
    let uri = "file:///tmp/target.txt";
    client.open(uri, "plaintext", "A short and simple sentence.");
    client.diagnostics(uri, 1);
    let chosen = client.request(
        "workspace/executeCommand",
        json!({"command": "tokenlens.setTarget", "arguments": ["neutral"]}),
    );
    assert_eq!(chosen, "neutral");
    let explained = client.notification("textDocument/publishDiagnostics", |p| {
        p["diagnostics"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("for neutral"))
    });
    assert!(!explained["diagnostics"].as_array().unwrap().is_empty());
    let lenses = client.request(
        "textDocument/codeLens",
        json!({"textDocument": {"uri": uri}}),
    );
    assert!(
        lenses[0]["command"]["title"]
            .as_str()
            .unwrap()
            .ends_with("explaining neutral")
    );

    let error = client.request_async(
        "workspace/executeCommand",
        json!({"command": "tokenlens.setTarget", "arguments": ["nonsense"]}),
    );
    let response = client.response(error);
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("negative")
    );

    let method = client.request(
        "workspace/executeCommand",
        json!({"command": "tokenlens.setMethod", "arguments": ["attention_rollout"]}),
    );
    assert_eq!(method, "attention_rollout");
    assert_eq!(client.stats()["settings"]["method"], "attention_rollout");
    assert!(client.shutdown().success());
}

#[test]
fn did_change_reexplains_only_the_changed_paragraph() {
    let mut client = server();
    client.ready(utf16_client(), json!({"debounceMs": 0}));
    let uri = "file:///tmp/three.md";
    let text = "First paragraph is calm.\n\nSecond paragraph is angry.\n\nThird one is fine.\n";
    client.open(uri, "markdown", text);
    client.diagnostics(uri, 1);
    assert_eq!(client.stats()["unitsExplained"], 3);

    // Replace "angry" (line 2, characters 20..25) with "happy".
    client.change_range(uri, 2, range((2, 20), (2, 25)), "happy");
    client.diagnostics(uri, 2);
    let stats = client.stats();
    assert_eq!(stats["unitsExplained"], 4, "{stats}");
    let document = client.request("tokenlens/document", json!({"uri": uri}));
    assert_eq!(
        document["text"],
        text.replace("angry", "happy"),
        "incremental edit applied"
    );

    // Back to the original words: every paragraph is in the content cache.
    client.change_range(uri, 3, range((2, 20), (2, 25)), "angry");
    client.diagnostics(uri, 3);
    assert_eq!(client.stats()["unitsExplained"], 4);
    assert!(client.shutdown().success());
}

#[test]
fn rapid_edits_are_applied_in_order_and_only_the_last_version_is_published() {
    let mut client = server();
    // A debounce far longer than sending all the edits takes, even on a loaded machine.
    client.ready(utf16_client(), json!({"debounceMs": 1500}));
    let uri = "file:///tmp/typing.txt";
    client.open(uri, "plaintext", "");
    let mut expected = String::new();
    for (i, c) in "Typing quickly, one key at a time!".chars().enumerate() {
        let column = expected.len() as u32;
        client.change_range(
            uri,
            2 + i as i32,
            range((0, column), (0, column)),
            &c.to_string(),
        );
        expected.push(c);
    }
    let last = 1 + expected.len() as i32;
    client.diagnostics(uri, last);
    let document = client.request("tokenlens/document", json!({"uri": uri}));
    assert_eq!(document["text"], expected);
    assert_eq!(document["version"], last);
    // Every intermediate version was debounced away: nothing was published for them.
    let published: Vec<i64> = client
        .drain()
        .iter()
        .filter(|m| m["method"] == "textDocument/publishDiagnostics")
        .filter_map(|m| m["params"]["version"].as_i64())
        .collect();
    assert!(
        published.iter().all(|&v| v == 1 || v == last as i64),
        "{published:?}"
    );
    assert!(client.shutdown().success());
}

/// Emoji (surrogate pairs in UTF-16), combining and precomposed accents, CJK, CRLF and tabs.
const MIXED: &str = "Caf\u{e9} cr\u{e8}me was na\u{ef}ve \u{1F600} and fine.\r\n\
                     \tTabs\tand \u{65e5}\u{672c}\u{8a9e} text \u{1F44D}\u{1F3FD} here.\r\n\
                     \r\n\
                     Then e\u{301}tude \u{1F680} rockets \u{9ad8}\u{3044} quality.";

fn check_ranges(client: &mut LspClient, encoding: &str, mut capabilities: Value) {
    capabilities["experimental"] = json!({"tokenlensScores": true});
    let result = client.ready(
        capabilities,
        // A non-negative method marks every word, which is what a position test needs.
        json!({"topK": 100, "diagnosticsPerUnit": 100, "method": "chefer_lrp_all_layers"}),
    );
    assert_eq!(result["capabilities"]["positionEncoding"], encoding);
    let uri = "file:///tmp/mixed.txt";
    client.open(uri, "plaintext", MIXED);
    let diagnostics = client.diagnostics(uri, 1);
    assert!(diagnostics.len() >= 10, "{diagnostics:#?}");
    // The notification's unit and word ranges, in the same encoding.
    let scores = client.notification("tokenlens/publishScores", |p| p["uri"] == uri);
    assert_eq!(scores["encoding"], encoding);
    let units = scores["units"].as_array().unwrap();
    let unit_texts: Vec<&str> = units
        .iter()
        .map(|u| slice(MIXED, &u["range"], encoding))
        .collect();
    assert_eq!(unit_texts.len(), 2);
    assert!(unit_texts[0].starts_with("Caf\u{e9}") && unit_texts[0].ends_with("here."));
    assert!(unit_texts[1].starts_with("Then") && unit_texts[1].ends_with("quality."));
    for unit in units {
        for word in unit["words"].as_array().unwrap() {
            let text = slice(MIXED, &word["range"], encoding);
            assert!(
                !text.is_empty() && !text.contains(char::is_whitespace),
                "{encoding}: notification word {text:?}"
            );
        }
    }
    for d in &diagnostics {
        let word = slice(MIXED, &d["range"], encoding);
        let message = d["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{word} ")),
            "{encoding}: range covers {word:?}, message {message:?}"
        );
        assert!(!word.trim().is_empty());
    }
    let words: Vec<&str> = diagnostics
        .iter()
        .map(|d| slice(MIXED, &d["range"], encoding))
        .collect();
    for expected in [
        "rockets",
        "here",
        "\u{1F600}",
        // Each CJK ideograph is a word, as it is a token of BERT's tokenizer.
        "\u{8a9e}",
        "e\u{301}tude",
    ] {
        assert!(
            words.contains(&expected),
            "{encoding}: {expected} missing in {words:?}"
        );
    }
    // Hover anywhere inside a word after an emoji finds that word.
    let rockets = diagnostics
        .iter()
        .find(|d| slice(MIXED, &d["range"], encoding) == "rockets")
        .unwrap();
    let mut inside = rockets["range"]["start"].clone();
    inside["character"] = json!(inside["character"].as_u64().unwrap() + 3);
    let hover = client.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": uri}, "position": inside}),
    );
    assert!(
        hover["contents"]["value"]
            .as_str()
            .unwrap()
            .starts_with("**rockets**")
    );
    // An edit after the emoji on line 0, in the negotiated encoding.
    let fine = MIXED.find("fine").unwrap();
    let character = match encoding {
        "utf-8" => fine,
        _ => MIXED[..fine].encode_utf16().count(),
    } as u32;
    client.change_range(uri, 2, range((0, character), (0, character + 4)), "good");
    client.diagnostics(uri, 2);
    let document = client.request("tokenlens/document", json!({"uri": uri}));
    assert_eq!(document["text"], MIXED.replacen("fine", "good", 1));
}

#[test]
fn positions_are_exact_in_utf16() {
    let mut client = server();
    check_ranges(&mut client, "utf-16", utf16_client());
    assert!(client.shutdown().success());
}

#[test]
fn positions_are_exact_in_utf8() {
    let mut client = server();
    check_ranges(&mut client, "utf-8", utf8_client());
    assert!(client.shutdown().success());
}

#[test]
fn markdown_code_front_matter_and_link_targets_are_not_explained() {
    let mut client = server();
    client.ready(
        utf8_client(),
        json!({"topK": 1000, "diagnosticsPerUnit": 1000}),
    );
    let uri = "file:///tmp/post.md";
    let text = "---\ntitle: secretword\n---\n\nRead [the docs](https://hidden.example/secretword) now.\n\n\
                ```\nsecretword in code\n```\n\nPlain words here.\n";
    client.open(uri, "markdown", text);
    let diagnostics = client.diagnostics(uri, 1);
    let words: Vec<&str> = diagnostics
        .iter()
        .map(|d| slice(text, &d["range"], "utf-8"))
        .collect();
    assert!(
        words.contains(&"docs") && words.contains(&"Plain"),
        "{words:?}"
    );
    for hidden in ["secretword", "title", "code", "hidden"] {
        assert!(
            !words.contains(&hidden),
            "{hidden} was explained: {words:?}"
        );
    }
    // A git commit message: comment lines are skipped.
    let commit = "Fix the crash on startup\n\n# Please enter the commit message\n# secretword\n";
    client.open("file:///tmp/COMMIT_EDITMSG", "gitcommit", commit);
    let diagnostics = client.diagnostics("file:///tmp/COMMIT_EDITMSG", 1);
    assert!(
        diagnostics.iter().all(|d| d["range"]["start"]["line"] == 0),
        "{diagnostics:#?}"
    );
    // Other languages are left alone unless configured.
    client.open("file:///tmp/main.rs", "rust", "fn main() {}\n");
    let colors = client.request(
        "textDocument/documentColor",
        json!({"textDocument": {"uri": "file:///tmp/main.rs"}}),
    );
    assert_eq!(colors, json!([]));
    assert!(client.shutdown().success());
}

#[test]
fn thin_client_notification_carries_units_words_and_buckets() {
    let mut client = server();
    client.ready(
        json!({"general": {"positionEncodings": ["utf-16"]}, "experimental": {"tokenlensScores": true}}),
        json!({}),
    );
    let uri = "file:///tmp/notify.txt";
    client.open(uri, "plaintext", REVIEW);
    let scores = client.notification("tokenlens/publishScores", |p| p["uri"] == uri);
    assert_eq!(scores["version"], 1);
    let units = scores["units"].as_array().unwrap();
    assert_eq!(units.len(), 2);
    for unit in units {
        let probs = unit["probs"].as_array().unwrap();
        assert_eq!(probs.len(), 3);
        let total: f64 = probs
            .iter()
            .map(|p| p["probability"].as_f64().unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!(["negative", "neutral", "positive"].contains(&unit["label"].as_str().unwrap()));
        let words = unit["words"].as_array().unwrap();
        assert!(!words.is_empty());
        for w in words {
            let score = w["score"].as_f64().unwrap();
            let bucket = w["bucket"].as_i64().unwrap();
            assert_eq!(Bucket::of(score).0 as i64, bucket);
            let color = Palette::BlueOrange
                .bucket_color(Bucket(bucket as i8))
                .unwrap();
            assert_eq!(w["color"], color.hex());
            assert!(!slice(REVIEW, &w["range"], "utf-16").is_empty());
        }
        // The unit's strongest word is normalised to 1.
        assert!(
            words
                .iter()
                .any(|w| w["bucket"].as_i64().unwrap().abs() == 5)
        );
    }
    // Without the capability, the notification is not sent.
    let mut plain = server();
    plain.ready(utf16_client(), json!({}));
    plain.open(uri, "plaintext", REVIEW);
    plain.diagnostics(uri, 1);
    assert!(
        !plain
            .drain()
            .iter()
            .any(|m| m["method"] == "tokenlens/publishScores")
    );
    assert!(client.shutdown().success());
}

#[test]
fn opt_in_features_inlay_hints_semantic_tokens_and_fade() {
    let mut client = server();
    client.ready(
        utf16_client(),
        json!({"features": {"inlayHints": true, "semanticTokens": true, "fade": true}, "topK": 2}),
    );
    let uri = "file:///tmp/optin.txt";
    client.open(uri, "plaintext", REVIEW);
    let diagnostics = client.diagnostics(uri, 1);
    let faded: Vec<&Value> = diagnostics
        .iter()
        .filter(|d| d["tags"] == json!([1]))
        .collect();
    assert!(!faded.is_empty(), "{diagnostics:#?}");
    // Masked text between faded words is not faded with them.
    let markdown = "The plot `drags_on()` and the actors <!-- note --> seem bored, yet the music \
                    soars and the ending lands.\n";
    let md_uri = "file:///tmp/optin.md";
    client.open(md_uri, "markdown", markdown);
    let md_diagnostics = client.diagnostics(md_uri, 1);
    let md_faded: Vec<&Value> = md_diagnostics
        .iter()
        .filter(|d| d["tags"] == json!([1]))
        .collect();
    assert!(!md_faded.is_empty(), "{md_diagnostics:#?}");
    for d in &md_faded {
        let text = slice(markdown, &d["range"], "utf-16");
        assert!(
            !text.contains('`') && !text.contains("<!--"),
            "a faded run covers masked text: {text:?}"
        );
    }
    let hints = client.request(
        "textDocument/inlayHint",
        json!({"textDocument": {"uri": uri}, "range": range((0, 0), (10, 0))}),
    );
    assert_eq!(
        hints.as_array().unwrap().len(),
        4,
        "top 2 of two paragraphs: {hints}"
    );
    let label = hints[0]["label"].as_str().unwrap();
    assert!(
        label.starts_with('+') || label.starts_with('\u{2212}'),
        "{label}"
    );
    let tokens = client.request(
        "textDocument/semanticTokens/full",
        json!({"textDocument": {"uri": uri}}),
    );
    let data = tokens["data"].as_array().unwrap();
    assert!(!data.is_empty() && data.len().is_multiple_of(5));
    // Decode: every token is a whole word with a sign bit and a strength bit.
    let (mut line, mut start) = (0u64, 0u64);
    for token in data.chunks(5) {
        let delta_line = token[0].as_u64().unwrap();
        start = if delta_line == 0 {
            start + token[1].as_u64().unwrap()
        } else {
            token[1].as_u64().unwrap()
        };
        line += delta_line;
        let r = range(
            (line as u32, start as u32),
            (line as u32, (start + token[2].as_u64().unwrap()) as u32),
        );
        let word = slice(REVIEW, &r, "utf-16");
        assert!(!word.is_empty() && !word.contains(' '), "{word:?}");
        assert_eq!(token[3], 0);
        let bits = token[4].as_u64().unwrap();
        assert_eq!((bits & 0b11).count_ones(), 1, "one sign bit");
        assert_eq!((bits >> 2).count_ones(), 1, "one strength bit");
    }
    // Off by default.
    let mut plain = server();
    plain.ready(utf16_client(), json!({}));
    plain.open(uri, "plaintext", REVIEW);
    plain.diagnostics(uri, 1);
    let hints = plain.request(
        "textDocument/inlayHint",
        json!({"textDocument": {"uri": uri}, "range": range((0, 0), (10, 0))}),
    );
    assert_eq!(hints, Value::Null);
    assert!(client.shutdown().success());
}

#[test]
fn configuration_is_pulled_and_pulled_again_on_change() {
    let mut client = server();
    *client.configuration.lock().unwrap() = json!({"diagnosticSeverity": "warning"});
    client.ready(json!({"workspace": {"configuration": true}}), json!({}));
    let uri = "file:///tmp/config.txt";
    client.open(uri, "plaintext", "Configuration changes the severity.");
    let diagnostics = client.diagnostics(uri, 1);
    assert!(
        diagnostics.iter().all(|d| d["severity"] == 2),
        "{diagnostics:#?}"
    );

    *client.configuration.lock().unwrap() =
        json!({"diagnosticSeverity": "information", "diagnosticsPerUnit": 1});
    client.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": null}),
    );
    let updated = client.notification("textDocument/publishDiagnostics", |p| {
        p["diagnostics"]
            .as_array()
            .is_some_and(|d| d.len() == 1 && d[0]["severity"] == 3)
    });
    assert_eq!(updated["uri"], uri);
    let pulls = client
        .server_requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "workspace/configuration")
        .count();
    assert_eq!(pulls, 2);

    // Settings pushed in the notification itself apply too (the pull that follows agrees).
    *client.configuration.lock().unwrap() = json!({"diagnosticsPerUnit": 2});
    client.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"tokenlens": {"diagnosticsPerUnit": 2}}}),
    );
    client.notification("textDocument/publishDiagnostics", |p| {
        p["diagnostics"].as_array().is_some_and(|d| d.len() == 2)
    });
    assert!(client.shutdown().success());
}

#[test]
fn model_loading_reports_progress() {
    let mut client = server();
    client.ready(json!({"window": {"workDoneProgress": true}}), json!({}));
    let begin = client.notification("$/progress", |p| p["value"]["kind"] == "begin");
    assert!(
        begin["value"]["message"]
            .as_str()
            .unwrap()
            .contains("loading")
    );
    let token = begin["token"].clone();
    client.notification("$/progress", |p| {
        p["token"] == token && p["value"]["kind"] == "end"
    });
    let created =
        client.server_requests.lock().unwrap().iter().any(|r| {
            r["method"] == "window/workDoneProgress/create" && r["params"]["token"] == token
        });
    assert!(created);

    // A long document reports progress per paragraph.
    let long: String = (0..12)
        .map(|i| format!("Paragraph number {i} has words.\n\n"))
        .collect();
    client.open("file:///tmp/long.txt", "plaintext", &long);
    let begin = client.notification("$/progress", |p| {
        p["value"]["kind"] == "begin"
            && p["value"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("12 paragraphs"))
    });
    let token = begin["token"].clone();
    client.notification("$/progress", |p| {
        p["token"] == token && p["value"]["kind"] == "report"
    });
    client.notification("$/progress", |p| {
        p["token"] == token && p["value"]["kind"] == "end"
    });
    assert!(client.shutdown().success());
}

#[test]
fn bad_model_path_is_shown_and_the_server_keeps_running() {
    let mut client = server();
    client.initialize(utf16_client(), json!({"model": "/nonexistent/model/dir"}));
    let message = client.notification("window/showMessage", |p| p["type"] == 1);
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .contains("could not load the model")
    );
    let uri = "file:///tmp/nomodel.txt";
    client.open(uri, "plaintext", "Still running.");
    let colors = client.request(
        "textDocument/documentColor",
        json!({"textDocument": {"uri": uri}}),
    );
    assert_eq!(colors, json!([]));
    assert!(client.stats()["model"].get("failed").is_some());

    // Fixing the setting loads the model and explains the open document.
    client.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"tokenlens": {"model": tiny_model()}}}),
    );
    client.diagnostics(uri, 1);
    assert!(client.shutdown().success());
}

#[test]
fn cancelled_requests_answer_request_cancelled_and_edits_cancel_stale_work() {
    let mut client = server();
    // A long debounce keeps the colour request waiting for the edited text.
    client.ready(utf16_client(), json!({"debounceMs": 600000}));
    let uri = "file:///tmp/cancel.txt";
    client.open(uri, "plaintext", "Waiting for colours.");
    client.diagnostics(uri, 1);
    client.change_full(uri, 2, "Waiting for new colours.");
    let id = client.request_async(
        "textDocument/documentColor",
        json!({"textDocument": {"uri": uri}}),
    );
    client.notify("$/cancelRequest", json!({"id": id}));
    let response = client.response(id);
    assert_eq!(response["error"]["code"], -32800, "{response}");
    // The server still answers.
    assert!(client.stats()["model"].get("ready").is_some());
    assert!(client.shutdown().success());

    // An edit while a long document is being explained stops that work between paragraphs.
    let mut client = server();
    client.ready(
        json!({"window": {"workDoneProgress": true}}),
        json!({"debounceMs": 0}),
    );
    let long: String = (0..400)
        .map(|i| format!("Paragraph {i} talks about many different things at length.\n\n"))
        .collect();
    let uri = "file:///tmp/long.txt";
    client.open(uri, "plaintext", &long);
    // Edit once the server reports that it is working through the paragraphs.
    client.notification("$/progress", |p| {
        p["value"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("400 paragraphs"))
    });
    client.change_full(uri, 2, "Replaced by a short text.");
    let published = |m: &Value, version: i32| {
        m["method"] == "textDocument/publishDiagnostics"
            && m["params"]["uri"] == uri
            && m["params"]["version"] == version
    };
    let current = client
        .wait_for(|m| published(m, 2))
        .expect("version 2's diagnostics");
    let stats = client.stats();
    assert!(stats["analysesDropped"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["unitsExplained"].as_u64().unwrap() < 401, "{stats}");
    // Version 1's first paragraphs may be published before the edit reaches the server (partial
    // results of a long document); nothing of version 1 may follow version 2.
    let stale_after_edit = client
        .drain_received()
        .iter()
        .any(|r| published(&r.message, 1) && r.at > current.at);
    assert!(
        !stale_after_edit,
        "version 1's results were published after version 2's"
    );
    assert!(client.shutdown().success());
}

#[test]
fn shutdown_then_exit_ends_the_process_cleanly() {
    let mut client = server();
    client.ready(utf16_client(), json!({}));
    client.open("file:///tmp/bye.txt", "plaintext", "Goodbye.");
    let status = client.shutdown();
    assert_eq!(status.code(), Some(0));

    // `exit` right behind `shutdown`, without waiting for its answer, is still a clean exit.
    for _ in 0..3 {
        let mut client = server();
        client.ready(utf16_client(), json!({}));
        client.request_async("shutdown", json!(null));
        client.notify("exit", json!(null));
        assert_eq!(client.wait_exit().code(), Some(0));
    }

    // `exit` without `shutdown` is an error exit, as the protocol asks.
    let mut client = server();
    client.initialize(utf16_client(), json!({"model": tiny_model()}));
    client.notify("exit", json!(null));
    assert_eq!(client.wait_exit().code(), Some(1));
}

/// Rebuilds the full units of an incremental notification from the previous full units, as the
/// clients do: a `sameAs` unit takes that unit's words, moved by the change of its start.
fn expand_scores(scores: &Value, previous: &[Value]) -> Vec<Value> {
    let position = |p: &Value| {
        (
            p["line"].as_i64().unwrap(),
            p["character"].as_i64().unwrap(),
        )
    };
    scores["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|unit| {
            let Some(same_as) = unit["sameAs"].as_u64() else {
                return unit.clone();
            };
            let old = &previous[same_as as usize];
            let (old_line, old_character) = position(&old["range"]["start"]);
            let (new_line, new_character) = position(&unit["range"]["start"]);
            let moved = |p: &Value| {
                let (line, character) = position(p);
                let character = if line == old_line {
                    character + new_character - old_character
                } else {
                    character
                };
                json!({"line": line + new_line - old_line, "character": character})
            };
            let mut full = old.clone();
            full["range"] = unit["range"].clone();
            for word in full["words"].as_array_mut().unwrap() {
                let range = json!({
                    "start": moved(&word["range"]["start"]),
                    "end": moved(&word["range"]["end"]),
                });
                word["range"] = range;
            }
            full
        })
        .collect()
}

#[test]
fn incremental_notification_repeats_unchanged_paragraphs_by_reference() {
    let incremental = json!({
        "general": {"positionEncodings": ["utf-16"]},
        "experimental": {"tokenlensScores": true, "tokenlensScoresIncremental": true},
    });
    let mut client = server();
    client.ready(incremental, json!({"debounceMs": 0}));
    let uri = "file:///tmp/incremental.txt";
    let text = "First paragraph is calm.\n\nSecond paragraph is angry.\n\nThird one is fine.\n";
    client.open(uri, "plaintext", text);
    let first = client.notification("tokenlens/publishScores", |p| p["uri"] == uri);
    assert!(
        first.get("base").is_none(),
        "the first notification is full"
    );
    let first_units = first["units"].as_array().unwrap().clone();
    assert!(first_units.iter().all(|u| u.get("words").is_some()));

    // The first paragraph changes and grows by a line: the other two move down unchanged.
    client.change_range(uri, 2, range((0, 19), (0, 24)), "calm\nand quiet.");
    let second = client.notification("tokenlens/publishScores", |p| {
        p["uri"] == uri && p["version"] == 2
    });
    assert_eq!(second["base"], 1);
    let units = second["units"].as_array().unwrap();
    assert_eq!(units.len(), 3);
    assert!(units[0].get("sameAs").is_none() && units[0].get("words").is_some());
    assert_eq!(units[1]["sameAs"], 1);
    assert_eq!(units[2]["sameAs"], 2);
    assert!(
        units[1].get("words").is_none(),
        "a repeated unit carries no words"
    );
    let expanded = expand_scores(&second, &first_units);

    // The same text opened fresh by a client without the incremental capability.
    let edited =
        "First paragraph is calm\nand quiet.\n\nSecond paragraph is angry.\n\nThird one is fine.\n";
    let mut full_client = server();
    full_client.ready(
        json!({"general": {"positionEncodings": ["utf-16"]}, "experimental": {"tokenlensScores": true}}),
        json!({}),
    );
    full_client.open(uri, "plaintext", edited);
    let full = full_client.notification("tokenlens/publishScores", |p| p["uri"] == uri);
    assert!(full.get("base").is_none());
    assert_eq!(&expanded, full["units"].as_array().unwrap());
    for unit in &expanded {
        for word in unit["words"].as_array().unwrap() {
            assert!(!slice(edited, &word["range"], "utf-16").is_empty());
        }
    }
    assert!(client.shutdown().success());
    assert!(full_client.shutdown().success());
}

#[test]
fn malformed_messages_are_answered_and_the_session_goes_on() {
    let mut client = server();
    client.ready(utf16_client(), json!({}));
    let error_of = |client: &mut LspClient, id: Value| {
        let reply = client
            .wait_for(|m| m.get("error").is_some() && m["id"] == id)
            .unwrap_or_else(|| panic!("no error response with id {id}"))
            .message;
        reply["error"]["code"].as_i64().unwrap()
    };
    client.send_raw("{not json}");
    assert_eq!(error_of(&mut client, Value::Null), -32700);
    client.send_raw("[1]");
    assert_eq!(error_of(&mut client, Value::Null), -32600);
    client.send_raw(r#"{"jsonrpc":"1.0","id":77,"method":"tokenlens/stats"}"#);
    assert_eq!(error_of(&mut client, json!(77)), -32600);
    client.send_raw(r#"{"jsonrpc":"2.0","id":"q","method":"$/unknownRequest"}"#);
    assert_eq!(error_of(&mut client, json!("q")), -32601);
    // Still serving, in order.
    assert!(client.stats()["model"].get("ready").is_some());
    assert!(client.shutdown().success());
}

#[test]
fn exit_or_closed_input_end_the_server_while_the_client_owes_an_answer() {
    for close_input in [false, true] {
        let mut client = server();
        client
            .answers_server_requests
            .store(false, std::sync::atomic::Ordering::SeqCst);
        client.initialize(
            json!({"workspace": {"configuration": true}}),
            json!({"model": tiny_model()}),
        );
        client
            .wait_for(|m| m["method"] == "workspace/configuration" && m.get("id").is_some())
            .expect("the server pulls its configuration");
        if close_input {
            client.close_input();
        } else {
            client.notify("exit", json!(null));
        }
        // No shutdown request came first: exit status 1, as the protocol asks.
        assert_eq!(
            client.wait_exit().code(),
            Some(1),
            "close_input {close_input}"
        );
    }
}

#[test]
fn settings_the_model_cannot_use_are_reported_and_stale_diagnostics_cleared() {
    let mut client = server();
    client.ready(utf16_client(), json!({}));
    client.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"tokenlens": {"target": "postive", "features": false}}}),
    );
    for wanted in ["\"postive\"", "setting features"] {
        let message = client.notification("window/showMessage", |p| {
            p["message"].as_str().is_some_and(|m| m.contains(wanted))
        });
        assert_eq!(message["type"], 2, "{message}");
    }
    assert_eq!(client.stats()["settings"]["target"], "auto");

    // Command arguments: an index as a number works, other types are invalid.
    let chosen = client.request(
        "workspace/executeCommand",
        json!({"command": "tokenlens.setTarget", "arguments": [2]}),
    );
    assert_eq!(chosen, "positive");
    let id = client.request_async(
        "workspace/executeCommand",
        json!({"command": "tokenlens.setTarget", "arguments": [{}]}),
    );
    assert_eq!(client.response(id)["error"]["code"], -32602);

    let uri = "file:///tmp/stale.txt";
    client.open(uri, "plaintext", "The acting was wonderful.");
    assert!(!client.diagnostics(uri, 1).is_empty());
    client.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"tokenlens": {"languages": ["markdown"]}}}),
    );
    client.notification("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri && p["diagnostics"].as_array().is_some_and(Vec::is_empty)
    });
    let hover = client.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": uri}, "position": {"line": 0, "character": 5}}),
    );
    assert_eq!(hover, Value::Null);
    assert!(client.shutdown().success());
}

#[test]
fn a_client_without_capabilities_gets_no_requests_and_plain_diagnostics() {
    let mut client = server();
    client.ready(json!({}), json!({}));
    let uri = "file:///tmp/bare.txt";
    client.open(
        uri,
        "plaintext",
        "A bare client still sees the words that matter.",
    );
    let diagnostics = client.diagnostics(uri, 1);
    assert!(!diagnostics.is_empty());
    client.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"tokenlens": {"diagnosticsPerUnit": 1}}}),
    );
    client.notification("textDocument/publishDiagnostics", |p| {
        p["diagnostics"].as_array().is_some_and(|d| d.len() == 1)
    });
    let sent = client.server_requests.lock().unwrap().clone();
    assert!(
        sent.is_empty(),
        "no configuration pull, progress or refresh was offered: {sent:#?}"
    );
    let notifications = client.drain();
    assert!(
        notifications
            .iter()
            .all(|n| n["method"] != "tokenlens/publishScores" && n["method"] != "$/progress"),
        "{notifications:#?}"
    );
    assert!(client.shutdown().success());
}

#[test]
fn scores_painted_by_a_client_are_cleared_when_the_language_is_switched_off() {
    let mut client = server();
    client.ready(
        json!({"experimental": {"tokenlensScores": true}}),
        json!({}),
    );
    let uri = "file:///tmp/painted.txt";
    client.open(uri, "plaintext", "The acting was wonderful.");
    let painted = client.notification("tokenlens/publishScores", |p| p["uri"] == uri);
    assert!(!painted["units"].as_array().unwrap().is_empty());
    client.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"tokenlens": {"languages": ["markdown"]}}}),
    );
    let cleared = client.notification("tokenlens/publishScores", |p| p["uri"] == uri);
    assert_eq!(cleared["units"], json!([]), "{cleared}");
    assert_eq!(cleared["version"], 1);
    // Switched on again, the scores come back.
    client.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"tokenlens": {"languages": ["plaintext"]}}}),
    );
    let again = client.notification("tokenlens/publishScores", |p| p["uri"] == uri);
    assert_eq!(again["units"], painted["units"]);
    assert!(client.shutdown().success());
}

#[test]
fn a_long_document_publishes_its_first_paragraphs_before_the_rest_is_explained() {
    let mut client = server();
    client.ready(utf16_client(), json!({}));
    let uri = "file:///tmp/long-review.txt";
    let long: String = (0..40)
        .map(|i| format!("Paragraph {i} says the acting was wonderful.\n\n"))
        .collect();
    client.open(uri, "plaintext", &long);
    let line_of = |d: &Value| d["range"]["start"]["line"].as_u64().unwrap();
    // The first publication: the first batch of 16 paragraphs (two lines each), not the rest.
    let first = client.notification("textDocument/publishDiagnostics", |p| p["uri"] == uri);
    let lines: Vec<u64> = first["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(line_of)
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|&l| l < 32), "{lines:?}");
    // Then all of it, the last paragraph included.
    let last = client.notification("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri
            && p["diagnostics"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| line_of(d) == 78))
    });
    assert_eq!(last["version"], 1);
    assert!(client.shutdown().success());
}

#[test]
fn a_short_document_is_not_kept_waiting_by_a_long_one() {
    let mut client = server();
    client.ready(utf16_client(), json!({}));
    let long_uri = "file:///tmp/very-long.txt";
    let long: String = (0..300)
        .map(|i| format!("Paragraph {i} says the acting was wonderful.\n\n"))
        .collect();
    client.open(long_uri, "plaintext", &long);
    let short_uri = "file:///tmp/short.txt";
    client.open(short_uri, "plaintext", "A short note that was great.");
    // The analyses take turns per batch: the short document is published before the long
    // one is complete (its last paragraph is on line 598).
    let mut long_complete = false;
    loop {
        let published = client.notification("textDocument/publishDiagnostics", |_| true);
        if published["uri"] == short_uri {
            assert!(!long_complete, "the short document waited for the long one");
            break;
        }
        long_complete = published["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["range"]["start"]["line"] == 598);
    }
    client.notification("textDocument/publishDiagnostics", |p| {
        p["uri"] == long_uri
            && p["diagnostics"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["range"]["start"]["line"] == 598))
    });
    assert!(client.shutdown().success());
}

#[test]
fn requests_waiting_for_an_analysis_are_answered_at_shutdown() {
    let mut client = server();
    // A long debounce keeps the colour request waiting for the edited text.
    client.ready(utf16_client(), json!({"debounceMs": 600000}));
    let uri = "file:///tmp/waiting.txt";
    client.open(uri, "plaintext", "Waiting for colours.");
    client.diagnostics(uri, 1);
    client.change_full(uri, 2, "Still waiting for colours.");
    let colors = client.request_async(
        "textDocument/documentColor",
        json!({"textDocument": {"uri": uri}}),
    );
    let started = std::time::Instant::now();
    let shutdown = client.request_async("shutdown", json!(null));
    let answer = client.response(colors);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "documentColor answered only after {:?}",
        started.elapsed()
    );
    assert_eq!(answer["result"], json!([]), "{answer}");
    assert_eq!(client.response(shutdown)["result"], Value::Null);
    client.notify("exit", json!(null));
    assert!(client.wait_exit().success());
}
