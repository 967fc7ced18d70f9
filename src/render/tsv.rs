//! `--format tsv`: one row per word, for spreadsheets, `sort`, `awk` and pandas. Tabs and
//! newlines inside fields are written as `\t`, `\n` and `\r` so every row stays one line.

use std::io::{self, Write};

use super::scored::{Outcome, Record, RecordWriter};

pub const HEADER: [&str; 12] = [
    "source",
    "line",
    "unit_index",
    "start",
    "end",
    "word",
    "score",
    "normalized",
    "bucket",
    "target",
    "predicted",
    "probability",
];

pub struct TsvWriter;

fn field(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

impl RecordWriter for TsvWriter {
    fn begin(&mut self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", HEADER.join("\t"))
    }

    fn record(&mut self, out: &mut dyn Write, record: &Record) -> io::Result<()> {
        // Empty lines have no words and errors go to stderr: neither has a row.
        let Outcome::Scored(text) = &record.outcome else {
            return Ok(());
        };
        let origin = &record.origin;
        let offset = origin.unit.map_or(0, |u| u.offset());
        let unit_index = origin.unit.map_or(String::new(), |u| u.index.to_string());
        let target = match text.contrast {
            Some(b) => format!("{}-{}", text.labels[text.target], text.labels[b]),
            None => text.labels[text.target].clone(),
        };
        for word in &text.words {
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                field(&origin.source),
                origin.line,
                unit_index,
                word.start + offset,
                word.end + offset,
                field(&word.text),
                word.score,
                word.normalized,
                word.bucket.0,
                field(&target),
                field(&text.labels[text.predicted]),
                text.probs[text.predicted],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_never_break_a_row() {
        assert_eq!(super::field("a\tb\nc\\"), "a\\tb\\nc\\\\");
    }
}
