//! `tokenlens score`: texts from stdin or files, one output record per text (or per sentence /
//! paragraph of a document with `--doc`), written in input order and flushed as soon as each
//! is ready. The JSONL record layout is documented in `docs/score.md`.
//!
//! Reading runs on its own thread and feeds a bounded channel. The scoring loop takes what is
//! already waiting (up to `--batch-size`) so piped input is batched while a person typing at a
//! terminal gets each line back at once.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde_json::Value;

use super::ModelArgs;
use crate::error::{Error, Result, exit_code};
use crate::explainer::{Explainer, Explanation, Target};
use crate::methods::Method;
use crate::render::Palette;
use crate::render::ansi::{AnsiWriter, ColorDepth};
use crate::render::html::HtmlWriter;
use crate::render::json::{JsonArrayWriter, JsonLinesWriter};
use crate::render::markdown::MarkdownWriter;
use crate::render::scored::{
    Display, Origin, Outcome, Record, RecordWriter, ScoredText, ScoredToken, ScoredWord, UnitSpan,
};
use crate::render::tsv::TsvWriter;
use crate::render::{Normalization, Scale};
use crate::segment::{self, Unit};
use crate::text::Aggregation;

pub use crate::render::json::SCHEMA_VERSION;

/// Texts handed to the engine at once, in batches: the engine sorts them by length before
/// cutting forward passes of `--batch-size`, so a wider pool means less padding (attention and
/// relevance cost grow with the square of the padded length).
pub const BATCHES_PER_POOL: usize = 4;

/// The method used when `--method` is not given.
/// (the measured best, `crate::methods::DEFAULT_METHOD`; see docs/eval.md).
pub const DEFAULT_METHOD: &str = "attnlrp";

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct ScoreArgs {
    /// Files to read, one text per line ('-' is stdin). Default: stdin.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    #[command(flatten)]
    pub model: ModelArgs,

    /// Read each input (all of stdin, or each FILE) as one document and explain it unit by unit;
    /// offsets are into the whole document.
    #[arg(long, help_heading = "Input")]
    pub doc: bool,
    /// Unit of a --doc document: sentence (default), paragraph (blank-line separated) or line.
    #[arg(long, value_parser = parse_unit, requires = "doc", value_name = "UNIT", help_heading = "Input")]
    pub unit: Option<Unit>,
    /// Read one JSON object per line; the text is in --text-field, every other field is copied
    /// to the output record.
    #[arg(long, conflicts_with = "doc", help_heading = "Input")]
    pub jsonl: bool,
    /// Field of a --jsonl object holding the text [default: text].
    #[arg(long, requires = "jsonl", value_name = "NAME", help_heading = "Input")]
    pub text_field: Option<String>,

    /// Output format [default: ansi when stdout is a terminal, else jsonl].
    #[arg(long, short = 'f', value_enum, help_heading = "Output")]
    pub format: Option<Format>,
    /// When to colour ansi output; NO_COLOR and CLICOLOR_FORCE are honoured under auto.
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        value_name = "WHEN",
        help_heading = "Output"
    )]
    pub color: ColorChoice,
    /// Add every token position ([CLS] and [SEP] included) with its raw score (JSON formats).
    #[arg(long, help_heading = "Output")]
    pub tokens: bool,
    /// Mark only the N most relevant words of each text.
    #[arg(long, value_name = "N", help_heading = "Output")]
    pub top_k: Option<usize>,
    /// Display scaling of word scores: maxabs, minmax, l1 or none (raw scores stay in JSON).
    #[arg(long, value_parser = parse_normalization, default_value = "maxabs", help_heading = "Output")]
    pub normalize: Normalization,

    /// Relevance method (see docs/engine.md; docs/eval.md measures which to trust).
    #[arg(long, default_value = DEFAULT_METHOD, value_parser = parse_method, help_heading = "Explanation")]
    pub method: Method,
    /// Class to explain, by label or index [default: the predicted class].
    #[arg(long, value_name = "LABEL|INDEX", help_heading = "Explanation")]
    pub target: Option<String>,
    /// Explain A against B: relevance for A minus relevance for B, on a diverging scale.
    #[arg(
        long,
        value_name = "A,B",
        conflicts_with = "target",
        help_heading = "Explanation"
    )]
    pub contrast: Option<String>,
    /// How a word's sub-word scores combine: sum, max, mean or first.
    #[arg(long, value_parser = parse_aggregation, default_value = "sum", help_heading = "Explanation")]
    pub aggregate: Aggregation,

    /// Sequences per forward pass (a long text counts once per window), fewer when they are
    /// long: a pass holds at most N × 128² attention cells (N windows of 128 tokens, N/16 of
    /// 512), which bounds memory; a longer text is explained a pass at a time [default: 16 on
    /// cpu, 64 on cuda].
    #[arg(long, value_name = "N", help_heading = "Performance")]
    pub batch_size: Option<usize>,
    /// No progress bar and no hints on stderr (errors are still reported).
    #[arg(long, short = 'q', help_heading = "Performance")]
    pub quiet: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (the documented schema).
    Jsonl,
    /// One JSON array of the same objects.
    Json,
    /// One row per word, with a header row.
    Tsv,
    /// Coloured text for a terminal, with a legend line.
    Ansi,
    /// One self-contained HTML page.
    Html,
    /// Markdown: bold words with signed strength.
    #[value(alias = "markdown")]
    Md,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

fn parse_method(s: &str) -> std::result::Result<Method, String> {
    s.parse::<Method>().map_err(|e| e.to_string())
}

fn parse_unit(s: &str) -> std::result::Result<Unit, String> {
    s.parse::<Unit>().map_err(|e| e.to_string())
}

fn parse_aggregation(s: &str) -> std::result::Result<Aggregation, String> {
    s.parse::<Aggregation>().map_err(|e| e.to_string())
}

fn parse_normalization(s: &str) -> std::result::Result<Normalization, String> {
    Normalization::from_name(s)
        .ok_or_else(|| format!("unknown normalization {s:?}; use maxabs, minmax, l1 or none"))
}

/// Default `--batch-size`: a GPU wants wide batches; on CPU, 16 (pooled, see
/// [`BATCHES_PER_POOL`]) ran 1.8x faster than one text per pass (docs/score.md, bench-score).
pub fn default_batch_size(device: &str) -> usize {
    if device.trim().to_ascii_lowercase().starts_with("cuda") {
        64
    } else {
        16
    }
}

/// Whether ANSI output gets colour, by the ripgrep/cargo rules: an explicit `--color` wins;
/// under `auto`, `NO_COLOR` (non-empty) turns colour off, then `CLICOLOR_FORCE` (non-empty, not
/// "0") turns it on, then `CLICOLOR=0` or `TERM=dumb` turn it off, else colour iff stdout is a
/// terminal.
pub fn use_color(
    choice: ColorChoice,
    env: impl Fn(&str) -> Option<String>,
    stdout_is_terminal: bool,
) -> bool {
    let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto if set("NO_COLOR") => false,
        ColorChoice::Auto
            if set("CLICOLOR_FORCE") && env("CLICOLOR_FORCE").as_deref() != Some("0") =>
        {
            true
        }
        ColorChoice::Auto => {
            let disabled =
                env("CLICOLOR").as_deref() == Some("0") || env("TERM").as_deref() == Some("dumb");
            stdout_is_terminal && !disabled
        }
    }
}

/// What one input yields before scoring.
pub enum Item {
    /// A text to explain.
    Text { origin: Origin, text: String },
    /// A record that needs no model: an empty line or an input error.
    Done(Record),
}

/// How inputs are split into texts.
#[derive(Debug, Clone)]
pub enum InputMode {
    Lines,
    Document(Unit),
    JsonLines { text_field: String },
}

/// An opened input: its display name and its bytes.
pub struct Input {
    pub name: String,
    pub reader: Box<dyn Read + Send>,
}

/// Opens every FILE before the model loads, so a typo fails fast with a usage error.
pub fn open_inputs(files: &[PathBuf]) -> Result<Vec<Input>> {
    if files.is_empty() {
        return Ok(vec![stdin_input()]);
    }
    files
        .iter()
        .map(|path| {
            if path.as_os_str() == "-" {
                return Ok(stdin_input());
            }
            let name = path.display().to_string();
            if path.is_dir() {
                return Err(Error::Usage(format!(
                    "{name} is a directory; pass the files inside it (e.g. {name}/*.txt)"
                )));
            }
            let file = File::open(path).map_err(|e| {
                Error::Usage(format!(
                    "cannot open {name}: {e}; check the path, or use - to read stdin"
                ))
            })?;
            Ok(Input {
                name,
                reader: Box::new(file),
            })
        })
        .collect()
}

fn stdin_input() -> Input {
    Input {
        name: "-".into(),
        reader: Box::new(io::stdin()),
    }
}

fn failed(origin: Origin, error: String) -> Item {
    Item::Done(Record {
        origin,
        outcome: Outcome::Failed { error },
    })
}

fn empty(origin: Origin, text: String) -> Item {
    Item::Done(Record {
        origin,
        outcome: Outcome::Empty { text },
    })
}

fn utf8_error(what: &str, error: &std::str::Utf8Error) -> String {
    format!(
        "{what} is not valid UTF-8 (invalid byte at offset {}); convert the input to UTF-8, e.g. \
         with `iconv -f latin1 -t utf-8`",
        error.valid_up_to()
    )
}

/// Reads every input in order and sends its items; stops early when the receiver is gone.
pub fn read_inputs(inputs: Vec<Input>, mode: &InputMode, items: &SyncSender<Item>) {
    for input in inputs {
        let sent = match mode {
            InputMode::Lines | InputMode::JsonLines { .. } => read_lines(input, mode, items),
            InputMode::Document(unit) => read_document(input, *unit, items),
        };
        if !sent {
            return;
        }
    }
}

/// Returns false when the receiver hung up.
fn read_lines(input: Input, mode: &InputMode, items: &SyncSender<Item>) -> bool {
    let reader = BufReader::new(input.reader);
    for (index, line) in reader.split(b'\n').enumerate() {
        let origin = Origin {
            source: input.name.clone(),
            line: index + 1,
            ..Origin::default()
        };
        let item = match line {
            Err(e) => {
                let item = failed(
                    origin,
                    format!(
                        "could not read {}: {e}; the rest of it is skipped",
                        input.name
                    ),
                );
                return items.send(item).is_ok();
            }
            Ok(mut bytes) => {
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
                // A byte-order mark (Notepad, Excel) is not part of the first text.
                if index == 0 && bytes.starts_with(b"\xEF\xBB\xBF") {
                    bytes.drain(..3);
                }
                match mode {
                    InputMode::JsonLines { text_field } => {
                        json_line_item(origin, &bytes, text_field)
                    }
                    _ => match std::str::from_utf8(&bytes) {
                        Err(e) => failed(origin, utf8_error("line", &e)),
                        Ok(text) if text.trim().is_empty() => empty(origin, text.to_owned()),
                        Ok(text) => Item::Text {
                            origin,
                            text: text.to_owned(),
                        },
                    },
                }
            }
        };
        if items.send(item).is_err() {
            return false;
        }
    }
    true
}

fn json_line_item(mut origin: Origin, bytes: &[u8], text_field: &str) -> Item {
    let line = match std::str::from_utf8(bytes) {
        Ok(line) => line,
        Err(e) => return failed(origin, utf8_error("line", &e)),
    };
    if line.trim().is_empty() {
        return empty(origin, String::new());
    }
    let mut object = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            return failed(
                origin,
                format!(
                    "line is JSON but not an object; with --jsonl each line must be an object like {{\"{text_field}\": \"...\"}}"
                ),
            );
        }
        Err(e) => {
            return failed(
                origin,
                format!(
                    "line is not valid JSON ({e}); with --jsonl each line must be one JSON object, \
                     or drop --jsonl to score plain text lines"
                ),
            );
        }
    };
    // shift_remove keeps the other fields in input order for the passthrough.
    let text = object.shift_remove(text_field);
    let fields: Vec<String> = object.keys().cloned().collect();
    origin.fields = object;
    match text {
        Some(Value::String(text)) if text.trim().is_empty() => empty(origin, text),
        Some(Value::String(text)) => Item::Text { origin, text },
        Some(other) => failed(
            origin,
            format!(
                "field \"{text_field}\" is not a string (it is {}); put the text in a string field",
                json_type(&other)
            ),
        ),
        None => failed(
            origin,
            format!(
                "object has no field \"{text_field}\" (it has: {}); name the text field with --text-field NAME",
                if fields.is_empty() {
                    "no fields".to_string()
                } else {
                    fields.join(", ")
                }
            ),
        ),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn read_document(mut input: Input, unit: Unit, items: &SyncSender<Item>) -> bool {
    let first_line = Origin {
        source: input.name.clone(),
        line: 1,
        ..Origin::default()
    };
    let mut bytes = Vec::new();
    if let Err(e) = input.reader.read_to_end(&mut bytes) {
        let message = format!("could not read {}: {e}", input.name);
        return items.send(failed(first_line, message)).is_ok();
    }
    let document = match String::from_utf8(bytes) {
        Ok(document) => document,
        Err(e) => {
            let message = utf8_error("document", &e.utf8_error());
            return items.send(failed(first_line, message)).is_ok();
        }
    };
    let units = segment::segments(&document, unit);
    if units.is_empty() {
        return items.send(empty(first_line, document)).is_ok();
    }
    let kind = match unit {
        Unit::Line => "line",
        Unit::Sentence => "sentence",
        Unit::Paragraph => "paragraph",
    };
    let mut line = 1;
    let mut counted_up_to = 0;
    for (index, span) in units.iter().enumerate() {
        line += document[counted_up_to..span.start].matches('\n').count();
        counted_up_to = span.start;
        let origin = Origin {
            source: input.name.clone(),
            line,
            unit: Some(UnitSpan {
                kind,
                index: index + 1,
                start: span.start,
                end: span.end,
            }),
            ..Origin::default()
        };
        let item = Item::Text {
            origin,
            text: span.text(&document).to_owned(),
        };
        if items.send(item).is_err() {
            return false;
        }
    }
    true
}

/// Turns texts into scored records: the explainer, what to explain and how to display it.
pub struct Scorer<'a> {
    pub explainer: &'a Explainer,
    pub method: Method,
    pub target: Target,
    /// B of `--contrast A,B` (A is `target`).
    pub contrast: Option<usize>,
    pub aggregation: Aggregation,
    pub display: Display,
    pub with_tokens: bool,
}

impl Scorer<'_> {
    /// Scores one batch; the records come back in the order of `items`.
    pub fn score(&self, items: Vec<Item>) -> Vec<Record> {
        let texts: Vec<&str> = items
            .iter()
            .filter_map(|item| match item {
                Item::Text { text, .. } => Some(text.as_str()),
                Item::Done(_) => None,
            })
            .collect();
        let mut outcomes = self.explain_all(&texts).into_iter();
        items
            .into_iter()
            .map(|item| match item {
                Item::Done(record) => record,
                Item::Text { origin, .. } => Record {
                    origin,
                    outcome: outcomes.next().unwrap_or_else(|| Outcome::Failed {
                        error: "internal error: no result for this text".into(),
                    }),
                },
            })
            .collect()
    }

    fn explain_all(&self, texts: &[&str]) -> Vec<Outcome> {
        if texts.is_empty() {
            return Vec::new();
        }
        match self.explain_batch(texts) {
            Ok(outcomes) => outcomes,
            // One bad text must not sink the batch: retry one by one to find it.
            Err(_) if texts.len() > 1 => texts
                .iter()
                .map(|&text| match self.explain_batch(&[text]) {
                    Ok(mut one) => one.remove(0),
                    Err(error) => explain_failure(&error),
                })
                .collect(),
            Err(error) => vec![explain_failure(&error)],
        }
    }

    fn explain_batch(&self, texts: &[&str]) -> Result<Vec<Outcome>> {
        let methods = [self.method];
        let explained = self.explainer.explain_batch(texts, &methods, self.target)?;
        let against = match self.contrast {
            Some(b) => Some(
                self.explainer
                    .explain_batch(texts, &methods, Target::Class(b))?,
            ),
            None => None,
        };
        Ok(explained
            .iter()
            .enumerate()
            .map(|(i, e)| {
                // Only characters the tokenizer drops (zero-width, control, a lone accent): the
                // model would see [CLS] [SEP] alone, and its "prediction" would mean nothing.
                if e.words.is_empty() {
                    return Outcome::Empty {
                        text: e.text.clone(),
                    };
                }
                let b = against.as_ref().map(|list| &list[i]);
                Outcome::Scored(Box::new(self.scored_text(e, b)))
            })
            .collect())
    }

    fn scored_text(&self, explained: &Explanation, against: Option<&Explanation>) -> ScoredText {
        let token_scores = |e: &Explanation| -> Vec<f64> {
            e.attribution(self.method)
                .map(|a| a.token_scores.clone())
                .unwrap_or_else(|| vec![f64::NAN; e.tokens.len()])
        };
        let word_scores = |e: &Explanation, tokens: &[f64]| -> Vec<f64> {
            e.words
                .iter()
                .map(|w| {
                    let pieces: Vec<f64> = w
                        .tokens
                        .iter()
                        .map(|&t| tokens.get(t).copied().unwrap_or(f64::NAN))
                        .collect();
                    self.aggregation.apply(&pieces)
                })
                .collect()
        };
        let mut tokens = token_scores(explained);
        let mut words = word_scores(explained, &tokens);
        if let Some(b) = against {
            // A − B per word: each class's word score first, so `--aggregate max` compares maxima.
            let tokens_b = token_scores(b);
            let words_b = word_scores(b, &tokens_b);
            words.iter_mut().zip(&words_b).for_each(|(a, b)| *a -= b);
            tokens.iter_mut().zip(&tokens_b).for_each(|(a, b)| *a -= b);
        }
        let marks = self.display.marks(&words);
        ScoredText {
            text: explained.text.clone(),
            model: self.explainer.model_name.clone(),
            labels: self.explainer.labels().to_vec(),
            logits: explained.logits.clone(),
            probs: explained.probs.clone(),
            predicted: explained.predicted,
            target: explained.target,
            contrast: self.contrast,
            method: self.method.name(),
            aggregation: aggregation_name(self.aggregation),
            windows: explained.windows,
            words: explained
                .words
                .iter()
                .zip(words.iter().zip(marks))
                .map(|(w, (&score, (normalized, bucket)))| ScoredWord {
                    text: w.text.clone(),
                    start: w.start,
                    end: w.end,
                    score,
                    normalized,
                    bucket,
                })
                .collect(),
            tokens: self.with_tokens.then(|| {
                explained
                    .tokens
                    .iter()
                    .zip(&tokens)
                    .map(|(t, &score)| ScoredToken {
                        token: t.token.clone(),
                        id: t.id,
                        start: t.start,
                        end: t.end,
                        score,
                    })
                    .collect()
            }),
        }
    }
}

fn explain_failure(error: &Error) -> Outcome {
    Outcome::Failed {
        error: format!(
            "could not explain this text: {error}; if it is very long, try a smaller --max-tokens"
        ),
    }
}

pub fn aggregation_name(aggregation: Aggregation) -> &'static str {
    match aggregation {
        Aggregation::Sum => "sum",
        Aggregation::Max => "max",
        Aggregation::Mean => "mean",
        Aggregation::First => "first",
    }
}

/// Which scale a view needs: contrasts and signed methods diverge around 0 (unless min-max
/// scaling maps them to [0, 1]); Chefer-style relevance is non-negative and sequential.
pub fn scale_for(method: Method, contrast: bool, normalization: Normalization) -> Scale {
    if normalization == Normalization::MinMax {
        Scale::Sequential
    } else if contrast || method.is_signed() {
        Scale::Diverging
    } else {
        Scale::Sequential
    }
}

/// The legend's words for what a mark means.
fn meanings(labels: &[String], target: Target, contrast: Option<usize>) -> (String, String) {
    match (target, contrast) {
        (Target::Class(a), Some(b)) => (
            format!("for {} rather than {}", labels[a], labels[b]),
            format!("for {} rather than {}", labels[b], labels[a]),
        ),
        (Target::Class(a), None) => (
            format!("for {}", labels[a]),
            format!("against {}", labels[a]),
        ),
        (Target::Predicted, _) => (
            "for the explained class".into(),
            "against the explained class".into(),
        ),
    }
}

/// Parses `--contrast A,B` into two different class indices.
fn parse_contrast(explainer: &Explainer, spec: &str, method: Method) -> Result<(usize, usize)> {
    let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
    let [a, b] = parts.as_slice() else {
        return Err(Error::Usage(format!(
            "--contrast {spec:?} needs two classes separated by a comma, e.g. --contrast {}",
            explainer.labels()[..explainer.labels().len().min(2)].join(",")
        )));
    };
    let class = |given: &str| {
        explainer.parse_target(given).map_err(|_| {
            Error::Usage(format!(
                "--contrast {spec:?}: unknown class {given:?}; the model's classes are {}",
                explainer.labels().join(", ")
            ))
        })
    };
    let (a, b) = (class(a)?, class(b)?);
    if a == b {
        return Err(Error::Usage(format!(
            "--contrast {spec:?} names the same class twice; name two different classes"
        )));
    }
    if !method.is_class_specific() {
        return Err(Error::Usage(format!(
            "--contrast needs a class-specific method, but {} gives the same scores for every \
             class; pick another --method, e.g. {DEFAULT_METHOD}",
            method.name()
        )));
    }
    Ok((a, b))
}

fn writer_for(
    format: Format,
    display: Display,
    color: Option<ColorDepth>,
) -> Box<dyn RecordWriter> {
    let palette = Palette::default();
    match format {
        Format::Jsonl => Box::new(JsonLinesWriter { display }),
        Format::Json => Box::new(JsonArrayWriter {
            display,
            written: 0,
        }),
        Format::Tsv => Box::new(TsvWriter),
        Format::Ansi => Box::new(AnsiWriter {
            display,
            palette,
            color,
        }),
        Format::Html => Box::new(HtmlWriter { display, palette }),
        Format::Md => Box::new(MarkdownWriter { display }),
    }
}

/// Turns the (hidden) progress bar on: a spinner on stderr, only when stderr is a terminal.
fn show_progress(bar: &ProgressBar, quiet: bool) {
    if quiet || !io::stderr().is_terminal() {
        return;
    }
    let style = ProgressStyle::with_template("{spinner} {pos} texts scored · {rate} · {elapsed}")
        .map(|style| {
            style.with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1}/s", state.per_sec());
                },
            )
        })
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_draw_target(ProgressDrawTarget::stderr());
    // Keeps the spinner moving while a pool of long texts is being explained.
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
}

pub fn run(args: ScoreArgs) -> Result<i32> {
    if args.top_k == Some(0) {
        return Err(Error::Usage(
            "--top-k 0 would mark nothing; use --top-k 1 or more, or leave it out to mark every word".into(),
        ));
    }
    if args.batch_size == Some(0) {
        return Err(Error::Usage("--batch-size must be at least 1".into()));
    }
    let inputs = open_inputs(&args.files)?;
    let reads_terminal = inputs.iter().any(|i| i.name == "-") && io::stdin().is_terminal();
    let stdout_is_terminal = io::stdout().is_terminal();
    let format = args.format.unwrap_or(if stdout_is_terminal {
        Format::Ansi
    } else {
        Format::Jsonl
    });
    let color = use_color(
        args.color,
        |name| std::env::var(name).ok(),
        stdout_is_terminal,
    )
    .then(|| ColorDepth::from_colorterm(std::env::var("COLORTERM").ok().as_deref()));
    let batch_size = args
        .batch_size
        .unwrap_or_else(|| default_batch_size(&args.model.device));
    let mode = match (&args.doc, &args.jsonl) {
        (true, _) => InputMode::Document(args.unit.unwrap_or_default()),
        (false, true) => InputMode::JsonLines {
            text_field: args.text_field.clone().unwrap_or_else(|| "text".into()),
        },
        _ => InputMode::Lines,
    };

    // Installed before the model loads, so Ctrl-C during a slow load also ends with 130. The bar
    // is shown only once loading succeeded, so a load error is never drawn over.
    let bar = ProgressBar::hidden();
    let interrupted_bar = bar.clone();
    // Ctrl-C: records already written were flushed; end at once with the documented status.
    // (If a handler cannot be installed the default SIGINT behaviour still ends the process.)
    let _ = ctrlc::set_handler(move || {
        interrupted_bar.finish_and_clear();
        std::process::exit(exit_code::INTERRUPTED);
    });

    let explainer = args.model.load(batch_size)?;
    let (target, contrast) = match (&args.target, &args.contrast) {
        (_, Some(spec)) => {
            let (a, b) = parse_contrast(&explainer, spec, args.method)?;
            (Target::Class(a), Some(b))
        }
        (Some(t), None) => (Target::Class(explainer.parse_target(t)?), None),
        (None, None) => (Target::Predicted, None),
    };
    let (for_meaning, against_meaning) = meanings(explainer.labels(), target, contrast);
    let display = Display {
        scale: scale_for(args.method, contrast.is_some(), args.normalize),
        normalization: args.normalize,
        top_k: args.top_k,
        method: args.method.name(),
        for_meaning,
        against_meaning,
    };
    let scorer = Scorer {
        explainer: &explainer,
        method: args.method,
        target,
        contrast,
        aggregation: args.aggregate,
        display: display.clone(),
        with_tokens: args.tokens,
    };
    let mut writer = writer_for(format, display, color);
    show_progress(&bar, args.quiet);

    if reads_terminal && !args.quiet {
        eprintln!(
            "tokenlens: reading texts from the terminal, one per line; press Ctrl-D to finish \
             (or pass FILE arguments)"
        );
    }

    let (sender, receiver) = sync_channel::<Item>(batch_size * BATCHES_PER_POOL);
    std::thread::spawn(move || read_inputs(inputs, &mode, &sender));
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let written = write_all(
        &scorer,
        writer.as_mut(),
        &receiver,
        batch_size,
        &bar,
        &mut out,
    );
    bar.finish_and_clear();
    match written {
        Ok(false) => Ok(exit_code::OK),
        Ok(true) => Ok(exit_code::SOME_FAILED),
        // `| head` closed the pipe: the reader got what it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(exit_code::OK),
        Err(e) => {
            eprintln!("tokenlens: could not write the output: {e}");
            Ok(exit_code::SOME_FAILED)
        }
    }
}

/// Scores everything the reader sends and writes it; returns whether any record failed.
fn write_all(
    scorer: &Scorer,
    writer: &mut dyn RecordWriter,
    items: &Receiver<Item>,
    batch_size: usize,
    bar: &ProgressBar,
    out: &mut dyn Write,
) -> io::Result<bool> {
    bar.suspend(|| {
        writer.begin(out)?;
        out.flush()
    })?;
    let mut any_failed = false;
    // Block for the first item of a pool, then take only what is already waiting.
    let pool_size = batch_size * BATCHES_PER_POOL;
    while let Ok(first) = items.recv() {
        let mut batch = vec![first];
        while batch.len() < pool_size {
            match items.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        for record in scorer.score(batch) {
            if let Outcome::Failed { error } = &record.outcome {
                any_failed = true;
                if !writer.writes_errors() {
                    let place = crate::render::scored::location(&record.origin);
                    bar.suspend(|| eprintln!("tokenlens: {place}: {error}"));
                    continue;
                }
            }
            bar.suspend(|| {
                writer.record(out, &record)?;
                out.flush()
            })?;
            bar.inc(1);
        }
    }
    bar.suspend(|| {
        writer.finish(out)?;
        out.flush()
    })?;
    Ok(any_failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn color_rules_follow_no_color_and_clicolor_force() {
        let auto = ColorChoice::Auto;
        assert!(use_color(auto, env_of(&[]), true));
        assert!(!use_color(auto, env_of(&[]), false));
        assert!(!use_color(auto, env_of(&[("NO_COLOR", "1")]), true));
        assert!(use_color(auto, env_of(&[("NO_COLOR", "")]), true));
        assert!(use_color(auto, env_of(&[("CLICOLOR_FORCE", "1")]), false));
        assert!(!use_color(auto, env_of(&[("CLICOLOR_FORCE", "0")]), false));
        assert!(!use_color(
            auto,
            env_of(&[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")]),
            true
        ));
        assert!(!use_color(auto, env_of(&[("TERM", "dumb")]), true));
        assert!(use_color(
            ColorChoice::Always,
            env_of(&[("NO_COLOR", "1")]),
            false
        ));
        assert!(!use_color(ColorChoice::Never, env_of(&[]), true));
    }

    #[test]
    fn json_lines_pass_fields_through_and_explain_missing_text() {
        let origin = Origin::default();
        match json_line_item(origin.clone(), br#"{"id": 7, "body": "hi"}"#, "text") {
            Item::Done(Record {
                origin,
                outcome: Outcome::Failed { error },
            }) => {
                assert!(error.contains("--text-field"), "{error}");
                assert!(error.contains("id, body"), "{error}");
                assert_eq!(origin.fields["id"], 7);
            }
            _ => panic!("expected an error record"),
        }
        match json_line_item(origin, br#"{"id": 7, "body": "hi"}"#, "body") {
            Item::Text { origin, text } => {
                assert_eq!(text, "hi");
                assert_eq!(origin.fields.len(), 1);
            }
            _ => panic!("expected a text"),
        }
    }

    #[test]
    fn scales_match_the_kind_of_score() {
        let chefer = Method::CheferLrpAllLayers;
        let signed = Method::GradientXInput;
        assert_eq!(
            scale_for(chefer, false, Normalization::MaxAbs),
            Scale::Sequential
        );
        assert_eq!(
            scale_for(chefer, true, Normalization::MaxAbs),
            Scale::Diverging
        );
        assert_eq!(
            scale_for(signed, false, Normalization::L1),
            Scale::Diverging
        );
        assert_eq!(
            scale_for(signed, false, Normalization::MinMax),
            Scale::Sequential
        );
    }
}
