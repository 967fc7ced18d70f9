//! End-to-end tests of `tokenlens score` (and `bench-score`): the real binary, real models.
//!
//! Tests named `default_model_*` run without `--model`, on the bundled default model; while a
//! build has no default model they fall back to the golden tiny BERT. Every other test uses
//! the tiny BERT (3 layers, 3 labels) so the suite stays fast.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn tiny_bert() -> String {
    common::path_str(&common::tiny_bert_dir())
}

/// The binary with an environment that does not leak the developer's colour or model settings.
fn tokenlens() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenlens"));
    for name in [
        "NO_COLOR",
        "CLICOLOR",
        "CLICOLOR_FORCE",
        "COLORTERM",
        "TERM",
        "TOKENLENS_MODEL",
    ] {
        command.env_remove(name);
    }
    command.current_dir(common::root());
    command
}

/// `--model` arguments for the default-model tests: none once the build has a default model.
fn default_model_args() -> Vec<String> {
    match tokenlens::default_model::files() {
        Ok(_) => Vec::new(),
        Err(_) => vec!["--model".into(), tiny_bert()],
    }
}

fn tiny_args() -> Vec<String> {
    vec!["--model".into(), tiny_bert()]
}

/// Runs `tokenlens <args>` with `stdin` and waits for it.
fn run(args: &[String], envs: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut child = tokenlens()
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tokenlens binary starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The process may stop reading early (usage errors); that is not this test's concern.
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().expect("tokenlens runs");
    writer.join().expect("stdin writer");
    output
}

fn score(args: &[&str], stdin: &str) -> Output {
    let mut all: Vec<String> = vec!["score".into()];
    all.extend(tiny_args());
    all.extend(args.iter().map(|s| s.to_string()));
    run(&all, &[], stdin.as_bytes())
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success, no error message and no progress bar (stderr is not a terminal here).
fn assert_ok(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}\nstdout: {}",
        stderr(output),
        stdout(output)
    );
    let errors = stderr(output);
    assert!(
        !errors.contains("tokenlens:") && !errors.contains("texts scored"),
        "stderr should carry no message or progress: {errors}"
    );
}

fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn word_scores(record: &Value) -> Vec<f64> {
    record["words"]
        .as_array()
        .expect("words")
        .iter()
        .map(|w| w["score"].as_f64().unwrap_or(f64::NAN))
        .collect()
}

/// Parses the page as XML: stricter than HTML, so unclosed or misnested tags fail here.
fn parse_html(html: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(html, options)
        .unwrap_or_else(|e| panic!("HTML is not well-formed: {e}\n{html}"))
}

const THREE_LINES: &str =
    "A gripping, beautifully acted film.\n\nDull & <boring> \"plot\", sadly.\n";

/// Kills `child` if it is still running after a generous deadline, so a test that waits for
/// output fails instead of hanging. Not a timing assertion: the deadline only bounds a hang.
fn watchdog(child: &Child) -> std::thread::JoinHandle<()> {
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            let alive = Command::new("kill")
                .args(["-0", &pid])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                return;
            }
        }
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    })
}

#[test]
fn default_model_every_format() {
    for format in ["jsonl", "json", "tsv", "ansi", "html", "md"] {
        let mut args: Vec<String> = vec!["score".into(), "--format".into(), format.into()];
        args.extend(default_model_args());
        let output = run(&args, &[], THREE_LINES.as_bytes());
        assert_ok(&output);
        let text = stdout(&output);
        match format {
            "jsonl" => {
                let records = json_lines(&output);
                assert_eq!(records.len(), 3, "{text}");
                assert_eq!(records[1]["empty"], true);
            }
            "json" => {
                let records: Value = serde_json::from_str(&text).expect("one JSON document");
                assert_eq!(records.as_array().map(Vec::len), Some(3), "{text}");
            }
            "tsv" => {
                let mut rows = text.lines();
                let header = rows.next().expect("header row");
                assert!(header.starts_with("source\tline\t"), "{header}");
                let rows: Vec<&str> = rows.collect();
                assert!(rows.len() >= 8, "one row per word: {text}");
                assert!(rows.iter().all(|r| r.split('\t').count() == 12), "{text}");
                assert!(rows.iter().any(|r| r.contains("\tDull\t")), "{text}");
            }
            "ansi" => {
                // stdout is a pipe, so auto colour is off and markers carry the information.
                assert!(text.starts_with("legend: "), "{text}");
                assert!(!text.contains('\x1b'), "{text}");
                assert!(text.contains("line 1 · "), "{text}");
                assert!(text.contains("line 2 · empty"), "{text}");
            }
            "html" => {
                parse_html(&text);
                assert!(text.contains("&lt;") && text.contains("&amp;"), "{text}");
            }
            "md" => {
                assert!(text.contains("#### line 3"), "{text}");
                assert!(text.contains("\\<"), "{text}");
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn default_model_order_survives_batching() {
    // Lengths vary a lot so the engine's length sorting reorders every batch.
    let texts: Vec<String> = (0..11)
        .map(|i| {
            let words = [1, 20, 3, 12, 7, 2][i % 6];
            format!("text {i}: {}", "very good acting ".repeat(words))
        })
        .collect();
    let input = texts.join("\n") + "\n";
    let mut records_by_batch = Vec::new();
    // Batch size 2 pools 8 texts per engine call, so texts are reordered across batches too.
    for batch in ["2", "1"] {
        let mut args: Vec<String> = vec![
            "score".into(),
            "--batch-size".into(),
            batch.into(),
            "--precision".into(),
            "f64".into(),
        ];
        args.extend(default_model_args());
        let output = run(&args, &[], input.as_bytes());
        assert_ok(&output);
        let records = json_lines(&output);
        assert_eq!(records.len(), texts.len());
        for (i, (record, text)) in records.iter().zip(&texts).enumerate() {
            assert_eq!(record["line"], i + 1);
            assert_eq!(record["text"], text.as_str());
        }
        records_by_batch.push(records);
    }
    for (batched, single) in records_by_batch[0].iter().zip(&records_by_batch[1]) {
        let (a, b) = (word_scores(batched), word_scores(single));
        common::check_close(&a, &b, 1e-6, 1e-6).expect("batching does not change scores");
    }
}

#[test]
fn jsonl_keeps_the_first_score_fields_and_spans() {
    let output = score(&["--tokens"], "Not bad at all, really.\n");
    assert_ok(&output);
    let record = &json_lines(&output)[0];
    for field in [
        "schema_version",
        "text",
        "labels",
        "logits",
        "probs",
        "predicted",
        "target",
        "method",
        "windows",
        "words",
        "tokens",
    ] {
        assert!(record.get(field).is_some(), "no {field} in {record}");
    }
    assert_eq!(record["schema_version"], 1);
    assert_eq!(
        record["method"], "attnlrp",
        "the measured-best default method"
    );
    assert_eq!(record["probs"][0]["label"], "negative");
    let text = record["text"].as_str().unwrap();
    for word in record["words"].as_array().unwrap() {
        let (start, end) = (
            word["start"].as_u64().unwrap(),
            word["end"].as_u64().unwrap(),
        );
        assert_eq!(
            &text[start as usize..end as usize],
            word["text"].as_str().unwrap()
        );
        assert!(word["bucket"].is_i64() && word["normalized"].is_number());
    }
}

#[test]
fn jsonl_input_passes_other_fields_through() {
    let input = concat!(
        r#"{"id": "a1", "body": "Wonderful.", "target": "gold-positive"}"#,
        "\n",
        r#"{"id": "a2", "text": "no body here"}"#,
        "\n",
        "not json\n",
        r#"{"id": "a4", "body": "Awful."}"#,
        "\n"
    );
    let output = score(&["--jsonl", "--text-field", "body"], input);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let records = json_lines(&output);
    assert_eq!(records.len(), 4);
    assert_eq!(records[0]["id"], "a1");
    assert_eq!(records[0]["text"], "Wonderful.");
    // A passed-through field never overwrites tokenlens' own `target`.
    assert_eq!(records[0]["input_target"], "gold-positive");
    assert!(records[0]["target"].is_string());
    assert_eq!(records[1]["id"], "a2", "ids stay attached to error records");
    let missing = records[1]["error"].as_str().unwrap();
    assert!(
        missing.contains("\"body\"") && missing.contains("--text-field"),
        "{missing}"
    );
    assert!(
        records[2]["error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    assert_eq!(records[2]["line"], 3);
    assert_eq!(records[3]["id"], "a4");
    assert!(records[3]["words"].is_array());
    // The error record of line 2 keeps its input `text` apart from tokenlens' fields too.
    assert_eq!(records[1]["input_text"], "no body here");
}

#[test]
fn jsonl_passthrough_keeps_every_field_in_order_and_renames_clashes_the_same_way() {
    let input = concat!(
        "\u{feff}",
        r#"{"start": 7, "id": 1, "text": "Wonderful.", "error": "none", "line": 5, "input_line": "mine"}"#,
        "\n",
        r#"{"words": 1, "text": "", "tokens": [1]}"#,
        "\n"
    );
    let output = score(&["--jsonl"], input);
    assert_ok(&output);
    let records = json_lines(&output);
    let keys = |r: &Value| -> Vec<String> { r.as_object().unwrap().keys().cloned().collect() };
    // A byte-order mark does not make the first line invalid JSON.
    assert!(records[0]["words"].is_array(), "{}", records[0]);
    assert_eq!(
        keys(&records[0])[1..6],
        [
            "input_start",
            "id",
            "input_error",
            "input_line",
            "input_input_line"
        ]
    );
    assert_eq!(records[0]["input_start"], 7);
    assert_eq!(records[0]["input_error"], "none");
    // `input_X` is always the input's `X`: its `input_line` becomes `input_input_line`.
    assert_eq!(records[0]["input_line"], 5);
    assert_eq!(records[0]["input_input_line"], "mine");
    assert!(records[0].get("error").is_none() && records[0].get("start").is_none());
    // An empty record renames the same fields a scored one does.
    assert_eq!(records[1]["empty"], true);
    assert_eq!(records[1]["input_words"], 1);
    assert_eq!(records[1]["input_tokens"], serde_json::json!([1]));
    assert!(records[1].get("words").is_none() && records[1].get("tokens").is_none());
}

#[test]
fn doc_mode_offsets_point_into_the_whole_document() {
    let document = "First sentence is fine. The second one is terrible!\n\nA new paragraph here.\nIt continues.\n";
    for (unit, expected) in [("sentence", 4), ("paragraph", 2)] {
        let output = score(&["--doc", "--unit", unit], document);
        assert_ok(&output);
        let records = json_lines(&output);
        assert_eq!(records.len(), expected, "{}", stdout(&output));
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record["unit"], unit);
            assert_eq!(record["unit_index"], i + 1);
            let (start, end) = (
                record["start"].as_u64().unwrap() as usize,
                record["end"].as_u64().unwrap() as usize,
            );
            assert_eq!(&document[start..end], record["text"].as_str().unwrap());
            for word in record["words"].as_array().unwrap() {
                let (s, e) = (
                    word["start"].as_u64().unwrap() as usize,
                    word["end"].as_u64().unwrap() as usize,
                );
                assert_eq!(&document[s..e], word["text"].as_str().unwrap());
            }
        }
        let last = records.last().unwrap();
        assert_eq!(last["line"], if unit == "sentence" { 4 } else { 3 });
    }
}

#[test]
fn files_and_stdin_are_read_in_argument_order() {
    let dir = std::env::temp_dir().join(format!("tokenlens-cli-score-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.txt"), dir.join("b.txt"));
    std::fs::write(&a, "from a one\nfrom a two\n").unwrap();
    std::fs::write(&b, "from b\n").unwrap();
    let (a, b) = (common::path_str(&a), common::path_str(&b));
    let output = score(&[&b, "-", &a], "from stdin\n");
    assert_ok(&output);
    let sources: Vec<(String, u64, String)> = json_lines(&output)
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().to_owned(),
                r["line"].as_u64().unwrap(),
                r["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [
            (b.clone(), 1, "from b".into()),
            ("-".into(), 1, "from stdin".into()),
            (a.clone(), 1, "from a one".into()),
            (a.clone(), 2, "from a two".into()),
        ]
    );
    let missing = common::path_str(&dir.join("missing.txt"));
    let output = score(&[&a, &missing], "");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("missing.txt"),
        "{}",
        stderr(&output)
    );
    assert!(output.stdout.is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn invalid_utf8_line_fails_alone_and_exits_1() {
    let mut input = b"Good one.\n".to_vec();
    input.extend_from_slice(b"caf\xe9 latin-1\n");
    input.extend_from_slice(b"Still scored.\n");
    let output = run(&[vec!["score".into()], tiny_args()].concat(), &[], &input);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let records = json_lines(&output);
    assert_eq!(records.len(), 3);
    assert_eq!(records[1]["line"], 2);
    let error = records[1]["error"].as_str().unwrap();
    assert!(
        error.contains("UTF-8") && error.contains("iconv"),
        "{error}"
    );
    assert!(records[0]["words"].is_array() && records[2]["words"].is_array());

    // Formats without error records report the line on stderr, with the same exit status.
    let mut args: Vec<String> = vec!["score".into(), "--format".into(), "tsv".into()];
    args.extend(tiny_args());
    let output = run(&args, &[], &input);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("line 2: line is not valid UTF-8"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn empty_lines_keep_line_numbers_aligned() {
    let output = score(&[], "first\n\n   \nfourth\n");
    assert_ok(&output);
    let records = json_lines(&output);
    assert_eq!(records.len(), 4);
    assert_eq!(records[1]["empty"], true);
    assert_eq!(records[2]["empty"], true);
    assert_eq!(records[3]["line"], 4);
    assert_eq!(records[3]["text"], "fourth");
}

#[test]
fn usage_errors_exit_2_and_name_the_fix() {
    let cases: [(&[&str], &str); 6] = [
        (&["--method", "magic"], "known methods"),
        (&["--target", "joyful"], "negative (0)"),
        (
            &["--contrast", "positive,positive"],
            "two different classes",
        ),
        (&["--contrast", "positive"], "separated by a comma"),
        (&["--top-k", "0"], "--top-k 1"),
        (&["--unit", "sentence"], "--doc"),
    ];
    for (args, hint) in cases {
        let output = score(args, "text\n");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(hint),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // The example is a valid --contrast (two classes), also for a model with three.
    let output = score(&["--contrast", "positive"], "text\n");
    let example = stderr(&output)
        .split("e.g. --contrast ")
        .nth(1)
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned());
    assert_eq!(
        example.as_deref(),
        Some("negative,neutral"),
        "{}",
        stderr(&output)
    );
    let output = score(
        &[
            "--contrast",
            "positive,negative",
            "--method",
            "attention_rollout",
        ],
        "text\n",
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("class-specific"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn model_that_fails_to_load_exits_3() {
    let dir = std::env::temp_dir().join(format!("tokenlens-empty-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = run(
        &["score".into(), "--model".into(), common::path_str(&dir)],
        &[],
        b"text\n",
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("config.json"),
        "{}",
        stderr(&output)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn broken_pipe_ends_quietly_with_0() {
    let mut child = tokenlens()
        .args(["score", "--batch-size", "1", "--model", &tiny_bert()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = watchdog(&child);
    let mut input = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for i in 0..400 {
            if writeln!(input, "line number {i} is a fine line").is_err() {
                return;
            }
        }
    });
    // Like `| head -1`: read one record, then close the pipe.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with('{'), "{first}");
    let status = child.wait().unwrap();
    let mut errors = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    feeder.join().unwrap();
    guard.join().unwrap();
    assert_eq!(status.code(), Some(0), "{errors}");
    assert!(!errors.contains("panicked"), "{errors}");
}

#[test]
fn records_stream_before_input_ends_and_ctrl_c_exits_130() {
    let mut child = tokenlens()
        .args(["score", "--model", &tiny_bert()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = watchdog(&child);
    let mut input = child.stdin.take().unwrap();
    writeln!(input, "An interactive line.").unwrap();
    input.flush().unwrap();
    // stdin stays open: the record must still arrive (flushed per record, not per batch).
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("An interactive line."), "{first:?}");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    drop(input);
    guard.join().unwrap();
    assert_eq!(status.code(), Some(130));
}

#[test]
fn colour_follows_flags_and_environment() {
    let ansi = |color: &str, envs: &[(&str, &str)]| {
        let mut args: Vec<String> = ["score", "--format", "ansi", "--color", color]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(tiny_args());
        let output = run(&args, envs, b"Great fun.\n");
        assert_ok(&output);
        stdout(&output)
    };
    // stdout is a pipe here, so `auto` means no colour unless CLICOLOR_FORCE asks for it.
    assert!(!ansi("auto", &[]).contains('\x1b'));
    assert!(ansi("auto", &[("CLICOLOR_FORCE", "1")]).contains("\x1b[48;5;"));
    let no_color = ansi("auto", &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")]);
    assert!(!no_color.contains('\x1b'), "NO_COLOR wins: {no_color}");
    assert!(
        no_color.contains("[word]+N"),
        "markers are explained: {no_color}"
    );
    assert!(!ansi("never", &[("CLICOLOR_FORCE", "1")]).contains('\x1b'));
    assert!(ansi("always", &[("NO_COLOR", "1")]).contains('\x1b'));
    assert!(ansi("always", &[("COLORTERM", "truecolor")]).contains("\x1b[48;2;"));
}

#[test]
fn without_colour_top_words_carry_markers() {
    let output = score(
        &[
            "--format",
            "ansi",
            "--top-k",
            "2",
            "--method",
            "chefer_lrp_all_layers",
        ],
        "An utterly wonderful little film.\n",
    );
    assert_ok(&output);
    let text = stdout(&output);
    let body = text.lines().nth(3).expect("text line");
    assert_eq!(body.matches(']').count(), 2, "{text}");
    assert!(body.contains("]+"), "{text}");
}

#[test]
fn color_always_snapshot() {
    let mut args: Vec<String> = [
        "score",
        "--format",
        "ansi",
        "--color",
        "always",
        "--precision",
        "f64",
        "--method",
        "gradient_x_input",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(tiny_args());
    let output = run(
        &args,
        &[],
        b"A gripping, beautifully acted film.\n\nDull plot, sadly.\n",
    );
    assert_ok(&output);
    // ESC made visible so the snapshot file is readable and diffable.
    insta::assert_snapshot!("ansi_color_always", stdout(&output).replace('\x1b', "␛"));
}

#[test]
fn html_is_well_formed_and_self_contained() {
    let output = score(&["--format", "html", "--top-k", "3"], THREE_LINES);
    assert_ok(&output);
    let html = stdout(&output);
    let document = parse_html(&html);
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "html");
    let has = |tag: &str| root.descendants().any(|n| n.tag_name().name() == tag);
    assert!(has("style") && has("title") && has("table"), "{html}");
    for forbidden in ["script", "link", "img", "iframe"] {
        assert!(!has(forbidden), "<{forbidden}> in {html}");
    }
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("url("));
    assert!(
        !root
            .descendants()
            .any(|n| n.attribute("src").is_some() || n.attribute("href").is_some())
    );
    let legend = root
        .descendants()
        .find(|n| n.attribute("class") == Some("legend"))
        .expect("a legend");
    assert!(legend.children().count() > 5);
    // Predicted label and probabilities are shown for every scored record.
    let predicted_rows = root
        .descendants()
        .filter(|n| n.attribute("class") == Some("predicted"))
        .count();
    assert_eq!(predicted_rows, 2);
    // Every word of every text, marked or not, has a hover title with its score.
    let words: Vec<_> = root
        .descendants()
        .filter(|n| n.attribute("class") == Some("text"))
        .flat_map(|text| text.children().filter(|n| n.is_element()))
        .collect();
    assert!(words.len() >= 8, "{html}");
    // Right-to-left lines find their direction; a long URL or token wraps instead of
    // overflowing the page.
    assert!(
        root.descendants()
            .filter(|n| n.attribute("class") == Some("text"))
            .all(|n| n.attribute("dir") == Some("auto")),
        "{html}"
    );
    assert!(html.contains("overflow-wrap:anywhere"), "{html}");
    assert!(
        words
            .iter()
            .all(|w| w.attribute("title").is_some_and(|t| t.contains("score")))
    );
    let marked_per_record = root
        .descendants()
        .filter(|n| n.attribute("class") == Some("text"))
        .map(|text| {
            text.children()
                .filter(|w| w.attribute("class").is_some_and(|c| c.starts_with("w ")))
                .count()
        })
        .collect::<Vec<_>>();
    assert!(
        marked_per_record.iter().all(|&n| (1..=3).contains(&n)),
        "{marked_per_record:?}"
    );
}

#[test]
fn contrast_is_target_a_minus_target_b() {
    let text = "Not great, not terrible either.\n";
    let scores_for = |args: &[&str]| {
        let output = score(&[&["--precision", "f64"], args].concat(), text);
        assert_ok(&output);
        json_lines(&output).remove(0)
    };
    let contrast = scores_for(&["--contrast", "positive,negative"]);
    let a = word_scores(&scores_for(&["--target", "positive"]));
    let b = word_scores(&scores_for(&["--target", "negative"]));
    let expected: Vec<f64> = a.iter().zip(&b).map(|(a, b)| a - b).collect();
    common::check_close(&word_scores(&contrast), &expected, 1e-9, 1e-9).unwrap();
    assert_eq!(contrast["target"], "positive");
    assert_eq!(contrast["contrast"], "negative");
    assert_eq!(contrast["scale"], "diverging");
}

#[test]
fn aggregate_normalize_and_top_k_shape_the_words() {
    let text = "Unbelievably overwrought screenplay.\n";
    let output = score(
        &[
            "--tokens",
            "--aggregate",
            "first",
            "--normalize",
            "l1",
            "--top-k",
            "1",
        ],
        text,
    );
    assert_ok(&output);
    let record = &json_lines(&output)[0];
    let tokens = record["tokens"].as_array().unwrap();
    let first_word = &record["words"][0];
    let first_piece = tokens
        .iter()
        .find(|t| t["start"] == first_word["start"] && t["end"].as_u64() > Some(0))
        .unwrap();
    assert_eq!(
        first_word["score"], first_piece["score"],
        "--aggregate first"
    );
    let words = record["words"].as_array().unwrap();
    let l1: f64 = words
        .iter()
        .map(|w| w["normalized"].as_f64().unwrap().abs())
        .sum();
    assert!((l1 - 1.0).abs() < 1e-9, "--normalize l1 sums to {l1}");
    let marked = words.iter().filter(|w| w["bucket"] != 0).count();
    assert!(marked <= 1, "--top-k 1 marked {marked}");
    assert_eq!(record["aggregation"], "first");
    assert_eq!(record["normalization"], "l1");
}

#[test]
fn bench_score_prints_a_throughput_table() {
    let output = run(
        &[
            "bench-score".into(),
            "--model".into(),
            tiny_bert(),
            "--limit".into(),
            "12".into(),
            "--batch-size".into(),
            "4".into(),
        ],
        &[],
        b"",
    );
    assert_ok(&output);
    let table = stdout(&output);
    assert!(
        table.contains("12 texts from the bundled Rotten Tomatoes test snippets"),
        "{table}"
    );
    assert!(table.contains("sentences/s"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("one at a time")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("batched") && l.contains(" 4 ")),
        "{table}"
    );
}

#[test]
fn progress_bar_only_on_a_terminal_and_not_with_quiet() {
    // `script` (util-linux) gives the command a pseudo-terminal; stdout goes to a file, so what
    // `script` echoes back is stderr alone.
    let dir = std::env::temp_dir().join(format!("tokenlens-progress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.txt");
    std::fs::write(&input, "One fine line.\nAnother line.\n".repeat(20)).unwrap();
    let terminal_stderr = |extra: &str| {
        let command = format!(
            "{} score --model {} {extra} {} > {}",
            env!("CARGO_BIN_EXE_tokenlens"),
            tiny_bert(),
            common::path_str(&input),
            common::path_str(&dir.join("out.jsonl")),
        );
        let output = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env_remove("TOKENLENS_MODEL")
            .stdin(Stdio::null())
            .output()
            .expect("script (util-linux) runs");
        assert!(output.status.success(), "{output:?}");
        let records = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
        assert_eq!(records.lines().count(), 40, "progress never reaches stdout");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(terminal_stderr("").contains("texts scored"));
    assert!(!terminal_stderr("--quiet").contains("texts scored"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn terminal_stdout_defaults_to_coloured_ansi() {
    let dir = std::env::temp_dir().join(format!("tokenlens-tty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.txt");
    std::fs::write(&input, "A fine line.\n").unwrap();
    let command = format!(
        "{} score --quiet --model {} {}",
        env!("CARGO_BIN_EXE_tokenlens"),
        tiny_bert(),
        common::path_str(&input),
    );
    // Under `script` stdout is a pseudo-terminal: no --format and no --color needed.
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .env_remove("COLORTERM")
        .env_remove("TOKENLENS_MODEL")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    assert!(output.status.success(), "{output:?}");
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(screen.starts_with("legend: "), "{screen}");
    assert!(screen.contains("\x1b[48;5;"), "{screen}");
    assert!(!screen.contains("\"schema_version\""), "{screen}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bench_prints_a_row_per_length_and_with_profile_the_stages_of_one_explanation() {
    let args = |profile: bool| {
        let mut args: Vec<String> = [
            "bench",
            "--model",
            &tiny_bert(),
            "--lengths",
            "16,24",
            "--precisions",
            "f32",
            "--repeats",
            "1",
        ]
        .map(String::from)
        .to_vec();
        if profile {
            args.push("--profile".into());
        }
        args
    };
    let plain = run(&args(false), &[], b"");
    assert_ok(&plain);
    let table = stdout(&plain);
    for tokens in ["16", "24"] {
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().take(2).eq([tokens, "f32"])),
            "{table}"
        );
    }
    assert!(!table.contains("relprop"), "{table}");

    let profiled = run(&args(true), &[], b"");
    assert_ok(&profiled);
    let table = stdout(&profiled);
    let stage = |name: &str| -> Vec<(f64, f64)> {
        table
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("{name} ")))
            .map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                let n = fields.len();
                (
                    fields[n - 4].parse().unwrap(),
                    fields[n - 2].parse().unwrap(),
                )
            })
            .collect()
    };
    // Per length: the tiny BERT's 3 layers have 4 linear rules each (query, key and value are one
    // merged layer), the lowest stops at its attention (no query, key, value), plus pooler and
    // classifier: 13 linear rules.
    let linear = stage("relprop.linear");
    assert_eq!(linear.len(), 2, "{table}");
    assert!(
        linear.iter().all(|&(ms, calls)| ms > 0.0 && calls == 13.0),
        "{table}"
    );
    for name in [
        "forward (all)",
        "backward (all)",
        "relprop (all)",
        "method scores",
    ] {
        let rows = stage(name);
        assert_eq!(rows.len(), 2, "{name}: {table}");
        assert!(
            rows.iter().all(|&(_, calls)| calls == 1.0),
            "{name}: {table}"
        );
    }
}

#[test]
fn markdown_bold_survives_a_commonmark_parser_also_on_punctuation() {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let text = "Terrible movie. Dull, slow and (sadly) predictable!\n";
    let output = score(&["--format", "md", "--top-k", "40"], text);
    assert_ok(&output);
    let markdown = stdout(&output);
    let mut strong = Vec::new();
    let mut inside = 0;
    for event in Parser::new(&markdown) {
        match event {
            Event::Start(Tag::Strong) => inside += 1,
            Event::End(TagEnd::Strong) => inside -= 1,
            Event::InlineHtml(tag) if tag.as_ref() == "<strong>" => inside += 1,
            Event::InlineHtml(tag) if tag.as_ref() == "</strong>" => inside -= 1,
            Event::Text(t) if inside > 0 => strong.push(t.to_string()),
            Event::Text(t) => assert!(
                !t.contains("**"),
                "asterisks left as text: {t:?}\n{markdown}"
            ),
            _ => {}
        }
    }
    // Every marked word (a bucket other than 0 in the JSON of the same run) is bold,
    // punctuation after a word ("movie." "Dull,") too.
    let records = json_lines(&score(&["--top-k", "40"], text));
    let marked: Vec<&str> = records[0]["words"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["bucket"] != 0)
        .map(|w| w["text"].as_str().unwrap())
        .collect();
    assert!(marked.contains(&".") && marked.contains(&","), "{marked:?}");
    for word in marked {
        assert!(
            strong.iter().any(|s| s == word),
            "{word:?} not bold in {strong:?}\n{markdown}"
        );
    }
}
