//! Labelled text from a tab-separated file with a header line.

use std::path::Path;

use crate::error::{Error, Result};

/// One row: the text and, when the file has a label column, its label as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub text: String,
    pub label: Option<String>,
}

/// Where a column is: its header name, or its 1-based number.
fn column_index(header: &[&str], wanted: &str) -> Option<usize> {
    header
        .iter()
        .position(|h| h.trim().eq_ignore_ascii_case(wanted.trim()))
        .or_else(|| {
            wanted
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n >= 1 && n <= header.len())
                .map(|n| n - 1)
        })
}

/// Reads `path`. The text column defaults to `text` (or the only column); the label column to
/// `label` when the header has one. An empty `label_column` means "no labels".
pub fn read_tsv(
    path: &Path,
    text_column: Option<&str>,
    label_column: Option<&str>,
) -> Result<Vec<Example>> {
    let content = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_tsv(&content, text_column, label_column)
        .map_err(|message| Error::Usage(format!("{}: {message}", path.display())))
}

/// [`read_tsv`] on the file's content; the error is a message without the path.
pub fn parse_tsv(
    content: &str,
    text_column: Option<&str>,
    label_column: Option<&str>,
) -> std::result::Result<Vec<Example>, String> {
    let mut lines = content.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or("the file is empty (a header line is expected)")?
        .split('\t')
        .collect();
    let text_at = match text_column {
        Some(name) => column_index(&header, name)
            .ok_or_else(|| format!("no column {name:?} in the header {header:?}"))?,
        None if header.len() == 1 => 0,
        None => column_index(&header, "text").ok_or_else(|| {
            format!("no column named \"text\" in the header {header:?}; pass --text-column")
        })?,
    };
    let label_at = match label_column {
        Some(name) if name.trim().is_empty() => None,
        Some(name) => Some(
            column_index(&header, name)
                .ok_or_else(|| format!("no column {name:?} in the header {header:?}"))?,
        ),
        None => column_index(&header, "label").filter(|&i| i != text_at),
    };
    let mut examples = Vec::new();
    for (number, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let field = |i: usize| {
            fields.get(i).map(|f| f.to_string()).ok_or_else(|| {
                format!(
                    "line {} has {} columns, the header {}",
                    number + 2,
                    fields.len(),
                    header.len()
                )
            })
        };
        examples.push(Example {
            text: field(text_at)?,
            label: label_at.map(field).transpose()?,
        });
    }
    Ok(examples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_by_name_number_and_default() {
        let tsv = "label\tmovie\ttext\n1\tm\tgood\n0\tn\tbad\n";
        let rows = parse_tsv(tsv, None, None).unwrap();
        assert_eq!(rows[1].text, "bad");
        assert_eq!(rows[1].label.as_deref(), Some("0"));
        let rows = parse_tsv(tsv, Some("2"), Some("")).unwrap();
        assert_eq!(rows[0].text, "m");
        assert_eq!(rows[0].label, None);
        assert!(parse_tsv(tsv, Some("review"), None).is_err());
        assert!(parse_tsv("label\ttext\n1\n", None, None).is_err());
    }
}
