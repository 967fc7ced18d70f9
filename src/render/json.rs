//! JSON Lines (`--format jsonl`, one record per line) and one JSON array (`--format json`).
//! The record layout is documented in `docs/score.md` and versioned by `schema_version`.

use std::io::{self, Write};

use serde_json::{Map, Value, json};

use super::scored::{Origin, Outcome, Record, RecordWriter, ScoredText};

/// Version of the record layout. Adding fields keeps the version; renaming, removing or
/// changing the meaning of one bumps it.
pub const SCHEMA_VERSION: u32 = 1;

/// The JSON object of one record.
pub fn record_value(record: &Record, display: &super::scored::Display) -> Value {
    let mut object = Map::new();
    object.insert("schema_version".into(), json!(SCHEMA_VERSION));
    let own = match &record.outcome {
        Outcome::Scored(text) => scored_fields(&record.origin, text, display),
        Outcome::Empty { text } => {
            let mut fields = origin_fields(&record.origin);
            fields.insert("text".into(), json!(text));
            fields.insert("empty".into(), json!(true));
            fields
        }
        Outcome::Failed { error } => {
            let mut fields = origin_fields(&record.origin);
            fields.insert("error".into(), json!(error));
            fields
        }
    };
    // Passed-through input fields come first so ids lead the line. One whose name tokenlens
    // writes in any record, or that starts with `input_`, gets an `input_` prefix: no field is
    // overwritten, and `input_X` always means the input's `X`, in every record.
    for (name, value) in &record.origin.fields {
        let key = if RESERVED_FIELDS.contains(&name.as_str()) || name.starts_with("input_") {
            format!("input_{name}")
        } else {
            name.clone()
        };
        object.insert(key, value.clone());
    }
    object.extend(own);
    Value::Object(object)
}

/// Every field name a record of tokenlens may have.
pub const RESERVED_FIELDS: &[&str] = &[
    "schema_version",
    "source",
    "line",
    "unit",
    "unit_index",
    "start",
    "end",
    "text",
    "empty",
    "error",
    "model",
    "labels",
    "logits",
    "probs",
    "predicted",
    "target",
    "contrast",
    "method",
    "aggregation",
    "normalization",
    "scale",
    "windows",
    "words",
    "tokens",
];

fn origin_fields(origin: &Origin) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("source".into(), json!(origin.source));
    fields.insert("line".into(), json!(origin.line));
    if let Some(unit) = &origin.unit {
        fields.insert("unit".into(), json!(unit.kind));
        fields.insert("unit_index".into(), json!(unit.index));
        fields.insert("start".into(), json!(unit.start));
        fields.insert("end".into(), json!(unit.end));
    }
    fields
}

/// NaN (attention GradCAM on a constant map) is not JSON; it is written as null.
fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn scored_fields(
    origin: &Origin,
    text: &ScoredText,
    display: &super::scored::Display,
) -> Map<String, Value> {
    // Word and token offsets are into the whole document in `--doc` mode.
    let offset = origin.unit.map_or(0, |u| u.offset());
    let mut fields = origin_fields(origin);
    let label = |i: usize| json!(text.labels[i]);
    fields.insert("text".into(), json!(text.text));
    fields.insert("model".into(), json!(text.model));
    fields.insert("labels".into(), json!(text.labels));
    fields.insert(
        "logits".into(),
        Value::Array(text.logits.iter().map(|&x| number(x)).collect()),
    );
    fields.insert(
        "probs".into(),
        Value::Array(
            text.labels
                .iter()
                .zip(&text.probs)
                .map(|(l, &p)| json!({"label": l, "score": number(p)}))
                .collect(),
        ),
    );
    fields.insert("predicted".into(), label(text.predicted));
    fields.insert("target".into(), label(text.target));
    if let Some(b) = text.contrast {
        fields.insert("contrast".into(), label(b));
    }
    fields.insert("method".into(), json!(text.method));
    fields.insert("aggregation".into(), json!(text.aggregation));
    fields.insert("normalization".into(), json!(display.normalization.name()));
    fields.insert("scale".into(), json!(display.scale));
    fields.insert("windows".into(), json!(text.windows));
    fields.insert(
        "words".into(),
        Value::Array(
            text.words
                .iter()
                .map(|w| {
                    json!({
                        "text": w.text,
                        "start": w.start + offset,
                        "end": w.end + offset,
                        "score": number(w.score),
                        "normalized": number(w.normalized),
                        "bucket": w.bucket.0,
                    })
                })
                .collect(),
        ),
    );
    if let Some(tokens) = &text.tokens {
        fields.insert(
            "tokens".into(),
            Value::Array(
                tokens
                    .iter()
                    .map(|t| {
                        // [CLS]/[SEP] have no span; they stay (0, 0) and are not shifted.
                        let shift = if t.end > 0 { offset } else { 0 };
                        json!({
                            "token": t.token,
                            "id": t.id,
                            "start": t.start + shift,
                            "end": t.end + shift,
                            "score": number(t.score),
                        })
                    })
                    .collect(),
            ),
        );
    }
    fields
}

/// `--format jsonl`: one object per line.
pub struct JsonLinesWriter {
    pub display: super::scored::Display,
}

impl RecordWriter for JsonLinesWriter {
    fn record(&mut self, out: &mut dyn Write, record: &Record) -> io::Result<()> {
        writeln!(out, "{}", record_value(record, &self.display))
    }

    fn writes_errors(&self) -> bool {
        true
    }
}

/// `--format json`: one array, streamed record by record (valid JSON once finished).
pub struct JsonArrayWriter {
    pub display: super::scored::Display,
    pub written: usize,
}

impl RecordWriter for JsonArrayWriter {
    fn begin(&mut self, out: &mut dyn Write) -> io::Result<()> {
        write!(out, "[")
    }

    fn record(&mut self, out: &mut dyn Write, record: &Record) -> io::Result<()> {
        let separator = if self.written == 0 { "\n" } else { ",\n" };
        self.written += 1;
        // One record per line inside the array: still greppable, and jq reads it whole.
        write!(out, "{separator}{}", record_value(record, &self.display))
    }

    fn finish(&mut self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "\n]")
    }

    fn writes_errors(&self) -> bool {
        true
    }
}
