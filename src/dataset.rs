//! Labelled text files, read the same way by `eval` and `train`: TSV with a header line, or JSONL
//! (one object per line). Every mistake in a file is reported with its path, line and the fix.

use std::path::Path;

use crate::error::{Error, Result};

/// One row of a data file: its text, its label as written (`None` when the file has no label
/// column or the field is empty), and its 1-based line number for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub text: String,
    pub label: Option<String>,
    pub line: usize,
}

/// Which fields hold the text and the label. A column is a TSV header name (matched without
/// regard to case) or a 1-based column number; in JSONL it is a field name.
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    /// `None`: `text`, or the only column of a one-column TSV file.
    pub text: Option<&'a str>,
    pub label: LabelColumn<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelColumn<'a> {
    /// This column, which every row must fill (training data).
    Required(&'a str),
    /// This column when given, else `label` when the file has one; empty fields are unlabelled
    /// rows (evaluation data).
    Optional(Option<&'a str>),
    /// Labels are ignored.
    None,
}

/// Reads `path` as JSONL when its extension is `.jsonl`, `.ndjson` or `.json` or its first
/// non-blank line starts with `{`, and as TSV otherwise. Errors are [`Error::Input`] (exit 2).
pub fn read(path: &Path, columns: Columns) -> Result<Vec<Record>> {
    let input_error = |message: String| Error::Input {
        path: path.to_owned(),
        message,
    };
    if path.is_dir() {
        return Err(input_error(
            "is a directory; give a TSV file with a header line or a JSONL file".into(),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        input_error(match e.kind() {
            std::io::ErrorKind::NotFound => {
                "does not exist; give a TSV file with a header line or a JSONL file".into()
            }
            _ => format!("cannot be read: {e}"),
        })
    })?;
    parse(path, &bytes, columns)
}

/// [`read`] on content already in memory; `path` names it in messages and its extension picks
/// the format.
pub fn parse(path: &Path, bytes: &[u8], columns: Columns) -> Result<Vec<Record>> {
    let input_error = |message: String| Error::Input {
        path: path.to_owned(),
        message,
    };
    let text = decode_utf8(bytes).map_err(&input_error)?;
    let rows = if looks_like_jsonl(path, text) {
        jsonl_records(text, columns)
    } else {
        tsv_records(text, columns)
    }
    .map_err(input_error)?;
    if rows.is_empty() {
        return Err(input_error(
            "has no examples (only a header or blank lines)".into(),
        ));
    }
    Ok(rows)
}

/// The text without a UTF-8 byte-order mark (Excel and Notepad write one), or the line and
/// byte of the first invalid sequence.
fn decode_utf8(bytes: &[u8]) -> std::result::Result<&str, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = valid.len() - valid.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        format!(
            "line {line}: invalid UTF-8 at byte {} of the line; save the file as UTF-8",
            column + 1
        )
    })
}

fn looks_like_jsonl(path: &Path, text: &str) -> bool {
    let by_extension = path.extension().and_then(|e| e.to_str()).map(|e| {
        ["jsonl", "ndjson", "json"]
            .iter()
            .any(|known| e.eq_ignore_ascii_case(known))
    });
    by_extension.unwrap_or(false)
        || text
            .lines()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim_start().starts_with('{'))
}

fn non_blank_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.trim().is_empty())
}

fn quoted_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Position of a column given by header name (any case) or 1-based number.
fn column_position(header: &[&str], wanted: &str) -> Option<usize> {
    let wanted = wanted.trim();
    header
        .iter()
        .position(|h| h.trim().eq_ignore_ascii_case(wanted))
        .or_else(|| {
            wanted
                .parse::<usize>()
                .ok()
                .filter(|&n| n >= 1 && n <= header.len())
                .map(|n| n - 1)
        })
}

fn tsv_records(text: &str, columns: Columns) -> std::result::Result<Vec<Record>, String> {
    let mut lines = non_blank_lines(text);
    let Some((_, header_line)) = lines.next() else {
        return Err(
            "is empty; a header line naming the columns (e.g. text<TAB>label) is expected".into(),
        );
    };
    let header: Vec<&str> = header_line.split('\t').map(str::trim).collect();
    let missing = |name: &str, flag: &str| {
        format!(
            "has no column {name:?} (its header has {}); choose one by name or number with {flag}",
            quoted_list(header.iter().copied())
        )
    };
    let text_at = match columns.text {
        Some(name) => {
            column_position(&header, name).ok_or_else(|| missing(name, "--text-column"))?
        }
        None if header.len() == 1 => 0,
        None => column_position(&header, "text").ok_or_else(|| missing("text", "--text-column"))?,
    };
    let label_at = match columns.label {
        LabelColumn::Required(name) => {
            Some(column_position(&header, name).ok_or_else(|| missing(name, "--label-column"))?)
        }
        LabelColumn::Optional(Some(name)) if name.trim().is_empty() => None,
        LabelColumn::Optional(Some(name)) => {
            Some(column_position(&header, name).ok_or_else(|| missing(name, "--label-column"))?)
        }
        LabelColumn::Optional(None) => {
            column_position(&header, "label").filter(|&at| at != text_at)
        }
        LabelColumn::None => None,
    };
    let mut records = Vec::new();
    for (line, content) in lines {
        let mut fields: Vec<&str> = content.split('\t').collect();
        // Trailing tabs (empty fields past the header's) are harmless; anything else means a
        // tab inside a text or a missing field, and the columns would be misread.
        while fields.len() > header.len() && fields.last().is_some_and(|f| f.trim().is_empty()) {
            fields.pop();
        }
        if fields.len() != header.len() {
            return Err(format!(
                "line {line}: {} field{}, but the header has {}; a field must not contain a tab \
                 (replace tabs inside texts with spaces) and every row needs every column",
                fields.len(),
                if fields.len() == 1 { "" } else { "s" },
                header.len()
            ));
        }
        let label = label_at
            .map(|at| fields[at].trim())
            .filter(|l| !l.is_empty());
        if label.is_none()
            && let (LabelColumn::Required(name), Some(_)) = (columns.label, label_at)
        {
            return Err(format!("line {line}: the label column {name:?} is empty"));
        }
        records.push(Record {
            text: fields[text_at].to_owned(),
            label: label.map(str::to_owned),
            line,
        });
    }
    Ok(records)
}

fn jsonl_records(text: &str, columns: Columns) -> std::result::Result<Vec<Record>, String> {
    let text_field = columns.text.unwrap_or("text");
    let mut records = Vec::new();
    for (line, content) in non_blank_lines(text) {
        let value: serde_json::Value = serde_json::from_str(content)
            .map_err(|e| format!("line {line}: not a JSON object: {e}"))?;
        let object = value
            .as_object()
            .ok_or_else(|| format!("line {line}: not a JSON object (one object per line)"))?;
        let missing = |name: &str, flag: &str| {
            format!(
                "line {line}: no field {name:?} (fields: {}); choose one with {flag}",
                quoted_list(object.keys().map(String::as_str))
            )
        };
        let text = match object.get(text_field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(format!(
                    "line {line}: field {text_field:?} must be a string, found {other}"
                ));
            }
            None => return Err(missing(text_field, "--text-column")),
        };
        // An explicitly named label field must exist in every object; the default one may not.
        let (label_field, must_exist) = match columns.label {
            LabelColumn::Required(name) => (Some(name), true),
            LabelColumn::Optional(Some(name)) if name.trim().is_empty() => (None, false),
            LabelColumn::Optional(Some(name)) => (Some(name), true),
            LabelColumn::Optional(None) => (Some("label"), false),
            LabelColumn::None => (None, false),
        };
        let label = match label_field {
            None => None,
            Some(name) => match object.get(name) {
                None if must_exist => return Err(missing(name, "--label-column")),
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.trim().to_owned()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
                Some(other) => {
                    return Err(format!(
                        "line {line}: label field {name:?} must be a string or a number, found {other}"
                    ));
                }
            },
        }
        .filter(|l| !l.is_empty());
        if label.is_none() && matches!(columns.label, LabelColumn::Required(_)) {
            return Err(format!(
                "line {line}: the label field {:?} is empty",
                label_field.unwrap_or_default()
            ));
        }
        records.push(Record { text, label, line });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tsv(text: &str, columns: Columns) -> std::result::Result<Vec<Record>, String> {
        tsv_records(text, columns)
    }

    const EVAL: Columns = Columns {
        text: None,
        label: LabelColumn::Optional(None),
    };
    const TRAIN: Columns = Columns {
        text: None,
        label: LabelColumn::Required("label"),
    };

    #[test]
    fn columns_by_name_any_case_or_number() {
        let data = "Label\tmovie\tText\n1\tm\tgood\n0\tn\tbad\n";
        let rows = tsv(data, EVAL).unwrap();
        assert_eq!(rows[1].text, "bad");
        assert_eq!(rows[1].label.as_deref(), Some("0"));
        assert_eq!(rows[1].line, 3);
        let by_number = Columns {
            text: Some("2"),
            label: LabelColumn::Optional(Some("")),
        };
        let rows = tsv(data, by_number).unwrap();
        assert_eq!(rows[0].text, "m");
        assert_eq!(rows[0].label, None);
        let review = Columns {
            text: Some("review"),
            label: LabelColumn::None,
        };
        let message = tsv(data, review).unwrap_err();
        assert!(
            message.contains("\"review\"") && message.contains("--text-column"),
            "{message}"
        );
    }

    #[test]
    fn rows_with_more_or_fewer_fields_than_the_header_are_errors() {
        for bad in [
            "text\tlabel\nGreat\tfun film\tpositive\n",
            "text\tlabel\nGreat\n",
        ] {
            let message = tsv(bad, EVAL).unwrap_err();
            assert!(message.starts_with("line 2:"), "{message}");
            assert!(message.contains("tab"), "{message}");
        }
        let trailing_tabs = tsv("text\tlabel\nGreat\tpositive\t\t\n", TRAIN).unwrap();
        assert_eq!(trailing_tabs[0].label.as_deref(), Some("positive"));
    }

    #[test]
    fn empty_labels_are_unlabelled_for_eval_and_errors_for_training() {
        let data = "text\tlabel\nA film.\t\nDull.\tnegative\n";
        assert_eq!(tsv(data, EVAL).unwrap()[0].label, None);
        assert_eq!(
            tsv(data, TRAIN).unwrap_err(),
            "line 2: the label column \"label\" is empty"
        );
        let jsonl = "{\"text\":\"A film.\",\"label\":\"\"}\n";
        assert!(
            jsonl_records(jsonl, TRAIN)
                .unwrap_err()
                .starts_with("line 1:")
        );
        assert_eq!(jsonl_records(jsonl, EVAL).unwrap()[0].label, None);
    }

    #[test]
    fn jsonl_labels_may_be_numbers_and_are_optional_for_eval() {
        let data = "{\"text\":\"good\",\"label\":1}\n\n{\"text\":\"plain\"}\n";
        let rows = jsonl_records(data, EVAL).unwrap();
        assert_eq!(rows[0].label.as_deref(), Some("1"));
        assert_eq!((rows[1].label.clone(), rows[1].line), (None, 3));
        let message = jsonl_records(data, TRAIN).unwrap_err();
        assert!(
            message.starts_with("line 3: no field \"label\""),
            "{message}"
        );
        let message = jsonl_records("{\"text\":3,\"label\":1}\n", EVAL).unwrap_err();
        assert!(message.contains("must be a string"), "{message}");
    }

    #[test]
    fn byte_order_mark_is_dropped_and_invalid_utf8_is_located() {
        assert_eq!(decode_utf8(b"\xEF\xBB\xBFtext\n").unwrap(), "text\n");
        let message = decode_utf8(b"text\tlabel\nA wonderful \xff film.\tpositive\n").unwrap_err();
        assert_eq!(
            message,
            "line 2: invalid UTF-8 at byte 13 of the line; save the file as UTF-8"
        );
    }

    #[test]
    fn jsonl_is_recognised_by_extension_or_content() {
        assert!(looks_like_jsonl(Path::new("a.JSONL"), "text\tlabel"));
        assert!(looks_like_jsonl(
            Path::new("a.txt"),
            "\n  {\"text\": \"x\"}"
        ));
        assert!(!looks_like_jsonl(Path::new("a.tsv"), "text\tlabel\n"));
    }

    #[test]
    fn files_that_are_missing_directories_or_empty_name_the_problem() {
        let dir = std::env::temp_dir().join(format!("tokenlens-dataset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let message = |path: &Path| read(path, EVAL).unwrap_err().to_string();
        assert!(message(&dir).contains("is a directory"));
        assert!(message(&dir.join("missing.tsv")).contains("does not exist"));
        let header_only = dir.join("header.tsv");
        std::fs::write(&header_only, "text\tlabel\n").unwrap();
        assert!(message(&header_only).contains("has no examples"));
        let err = read(&header_only, EVAL).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit_code::USAGE);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
