//! `tokenlens score`: text on stdin, one JSON record per text on stdout, in input order.

use std::io::{BufRead, Write};

use clap::Args;
use serde::Serialize;

use super::ModelArgs;
use crate::error::{Error, Result, exit_code};
use crate::explainer::{Explainer, Explanation, Target};
use crate::methods::Method;

/// Version of the JSONL record layout (`schema_version` field).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Relevance method.
    #[arg(long, default_value = "chefer_lrp_all_layers", value_parser = parse_method)]
    pub method: Method,
    /// Class to explain, by label or index (default: the predicted class).
    #[arg(long, value_name = "LABEL|INDEX")]
    pub target: Option<String>,
    /// Also print every token position ([CLS] and [SEP] included) with the method's raw score.
    #[arg(long)]
    pub tokens: bool,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
}

fn parse_method(s: &str) -> std::result::Result<Method, String> {
    s.parse::<Method>().map_err(|e| e.to_string())
}

#[derive(Serialize)]
struct LabelScore<'a> {
    label: &'a str,
    score: f64,
}

#[derive(Serialize)]
struct WordRecord<'a> {
    text: &'a str,
    start: usize,
    end: usize,
    score: f64,
}

#[derive(Serialize)]
struct TokenRecord<'a> {
    token: &'a str,
    id: u32,
    start: usize,
    end: usize,
    score: f64,
}

#[derive(Serialize)]
struct Record<'a> {
    schema_version: u32,
    line: usize,
    text: &'a str,
    model: &'a str,
    labels: &'a [String],
    logits: &'a [f64],
    probs: Vec<LabelScore<'a>>,
    predicted: &'a str,
    target: &'a str,
    method: &'a str,
    windows: usize,
    words: Vec<WordRecord<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<Vec<TokenRecord<'a>>>,
}

pub fn record_json(
    explainer: &Explainer,
    e: &Explanation,
    method: Method,
    line: usize,
    with_tokens: bool,
) -> String {
    let labels = explainer.labels();
    let attribution = e.attribution(method).expect("method was requested");
    let record = Record {
        schema_version: SCHEMA_VERSION,
        line,
        text: &e.text,
        model: &explainer.model_name,
        labels,
        logits: &e.logits,
        probs: labels
            .iter()
            .zip(&e.probs)
            .map(|(label, &score)| LabelScore { label, score })
            .collect(),
        predicted: &labels[e.predicted],
        target: &labels[e.target],
        method: method.name(),
        windows: e.windows,
        words: e
            .words
            .iter()
            .zip(&attribution.word_scores)
            .map(|(w, &score)| WordRecord {
                text: &w.text,
                start: w.start,
                end: w.end,
                score,
            })
            .collect(),
        tokens: with_tokens.then(|| {
            e.tokens
                .iter()
                .zip(&attribution.token_scores)
                .map(|(t, &score)| TokenRecord {
                    token: &t.token,
                    id: t.id,
                    start: t.start,
                    end: t.end,
                    score,
                })
                .collect()
        }),
    };
    // Through `Value` so NaN scores (attention GradCAM on a constant map) become null.
    serde_json::to_value(&record)
        .map(|v| v.to_string())
        .unwrap_or_else(|e| format!("{{\"line\":{line},\"error\":\"{e}\"}}"))
}

enum Input {
    Text(String),
    Invalid(String),
}

fn read_lines(reader: impl BufRead) -> impl Iterator<Item = std::io::Result<Input>> {
    reader.split(b'\n').map(|line| {
        line.map(|mut bytes| {
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
            match String::from_utf8(bytes) {
                Ok(text) => Input::Text(text),
                Err(e) => Input::Invalid(format!(
                    "line is not valid UTF-8 (invalid byte at offset {}); convert the input to UTF-8, e.g. with iconv",
                    e.utf8_error().valid_up_to()
                )),
            }
        })
    })
}

pub fn run(args: ScoreArgs) -> Result<i32> {
    let explainer = args.model.load(args.batch_size)?;
    let target = match &args.target {
        Some(t) => Target::Class(explainer.parse_target(t)?),
        None => Target::Predicted,
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = false;
    let mut batch: Vec<(usize, Input)> = Vec::new();
    let mut lines = read_lines(stdin.lock()).enumerate().peekable();
    loop {
        let next = lines.next();
        let done = next.is_none();
        if let Some((index, line)) = next {
            let line = line.map_err(|source| Error::Io {
                path: "<stdin>".into(),
                source,
            })?;
            batch.push((index + 1, line));
        }
        if batch.len() >= args.batch_size || (done && !batch.is_empty()) {
            let written = write_batch(&explainer, &args, target, &batch, &mut out);
            match written {
                Ok(any_failed) => failed |= any_failed,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(exit_code::OK),
                Err(source) => {
                    return Err(Error::Io {
                        path: "<stdout>".into(),
                        source,
                    });
                }
            }
            batch.clear();
        }
        if done {
            break;
        }
    }
    Ok(if failed {
        exit_code::SOME_FAILED
    } else {
        exit_code::OK
    })
}

/// Explains one batch and writes its records in input order; returns whether any failed.
fn write_batch(
    explainer: &Explainer,
    args: &ScoreArgs,
    target: Target,
    batch: &[(usize, Input)],
    out: &mut impl Write,
) -> std::io::Result<bool> {
    let texts: Vec<&str> = batch
        .iter()
        .filter_map(|(_, input)| match input {
            Input::Text(t) if !t.trim().is_empty() => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let explained = explainer.explain_batch(&texts, &[args.method], target);
    let mut explained = match explained {
        Ok(list) => list.into_iter().map(Ok).collect::<Vec<_>>(),
        // One bad text must not sink the batch: retry one by one to find it.
        Err(_) => texts
            .iter()
            .map(|t| explainer.explain(t, &[args.method], target))
            .collect(),
    }
    .into_iter();
    let mut failed = false;
    for (line, input) in batch {
        let json = match input {
            Input::Invalid(message) => {
                failed = true;
                serde_json::json!({"schema_version": SCHEMA_VERSION, "line": line, "error": message}).to_string()
            }
            Input::Text(t) if t.trim().is_empty() => {
                serde_json::json!({"schema_version": SCHEMA_VERSION, "line": line, "text": t, "empty": true}).to_string()
            }
            Input::Text(_) => match explained.next().expect("one result per text") {
                Ok(e) => record_json(explainer, &e, args.method, *line, args.tokens),
                Err(error) => {
                    failed = true;
                    serde_json::json!({"schema_version": SCHEMA_VERSION, "line": line, "error": error.to_string()})
                        .to_string()
                }
            },
        };
        writeln!(out, "{json}")?;
    }
    out.flush()?;
    Ok(failed)
}
