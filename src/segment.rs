//! Splits a document into the units that are explained one at a time: lines, sentences
//! (Unicode UAX #29 sentence boundaries) or paragraphs (separated by blank lines). Units are
//! byte ranges of the original text with surrounding whitespace trimmed; empty units are dropped.

use unicode_segmentation::UnicodeSegmentation;

use crate::error::{Error, Result};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Line,
    #[default]
    Sentence,
    Paragraph,
}

impl std::str::FromStr for Unit {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "line" => Ok(Unit::Line),
            "sentence" => Ok(Unit::Sentence),
            "paragraph" => Ok(Unit::Paragraph),
            _ => Err(Error::Usage(format!(
                "unknown unit {s:?}; use line, sentence or paragraph"
            ))),
        }
    }
}

/// A unit of a document: `text[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segment {
    pub start: usize,
    pub end: usize,
}

impl Segment {
    pub fn text<'a>(&self, document: &'a str) -> &'a str {
        &document[self.start..self.end]
    }
}

/// The non-empty units of `text`, in order.
pub fn segments(text: &str, unit: Unit) -> Vec<Segment> {
    // A byte-order mark (Notepad, Excel) starts no unit; offsets stay those of the whole text.
    let after_mark = text
        .strip_prefix('\u{feff}')
        .map_or(0, |_| '\u{feff}'.len_utf8());
    let mut units = units_of(&text[after_mark..], unit);
    for segment in &mut units {
        segment.start += after_mark;
        segment.end += after_mark;
    }
    units
}

fn units_of(text: &str, unit: Unit) -> Vec<Segment> {
    let raw: Vec<(usize, &str)> = match unit {
        Unit::Line => line_ranges(text),
        Unit::Paragraph => paragraph_ranges(text),
        Unit::Sentence => paragraph_ranges(text)
            .into_iter()
            .flat_map(|(offset, paragraph)| {
                let unwrapped = unwrap_lines(paragraph);
                unwrapped
                    .split_sentence_bound_indices()
                    .map(|(i, s)| (offset + i, &paragraph[i..i + s.len()]))
                    .collect::<Vec<_>>()
            })
            .collect(),
    };
    raw.into_iter()
        .filter_map(|(offset, s)| trimmed(offset, s))
        .collect()
}

/// `paragraph` with each line break that continues a sentence (the next line starts with a
/// lower-case letter: hard-wrapped prose) replaced by spaces of the same byte length, so that
/// UAX #29, for which every line break ends a sentence, sees one line. Other line breaks stay
/// breaks: list items, headings, and one short text per line without final punctuation.
fn unwrap_lines(paragraph: &str) -> String {
    let mut out = String::with_capacity(paragraph.len());
    let mut lines = line_ranges(paragraph)
        .into_iter()
        .map(|(_, l)| l)
        .peekable();
    while let Some(line) = lines.next() {
        let continues = lines
            .peek()
            .and_then(|next| next.trim_start().chars().next())
            .is_some_and(char::is_lowercase);
        let body = line.trim_end_matches(['\n', '\r']);
        if continues && body.len() < line.len() {
            out.push_str(body);
            out.push_str(&" ".repeat(line.len() - body.len()));
        } else {
            out.push_str(line);
        }
    }
    out
}

fn trimmed(offset: usize, s: &str) -> Option<Segment> {
    let leading = s.len() - s.trim_start().len();
    let body = s.trim();
    (!body.is_empty()).then(|| Segment {
        start: offset + leading,
        end: offset + leading + body.len(),
    })
}

/// Lines with their byte offsets, each with its line break: `\n`, `\r\n` or a lone `\r` (all
/// three end a line in the Language Server Protocol, and old Mac text uses the last).
pub fn line_ranges(text: &str) -> Vec<(usize, &str)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let end = match bytes[i] {
            b'\n' => Some(i + 1),
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => Some(i + 2),
            b'\r' => Some(i + 1),
            _ => None,
        };
        match end {
            Some(end) => {
                out.push((start, &text[start..end]));
                start = end;
                i = end;
            }
            None => i += 1,
        }
    }
    if start < text.len() {
        out.push((start, &text[start..]));
    }
    out
}

/// Paragraphs are separated by lines that are empty or whitespace only.
fn paragraph_ranges(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    for (offset, line) in line_ranges(text) {
        if line.trim().is_empty() {
            if let Some(s) = start.take() {
                out.push((s, &text[s..end]));
            }
        } else {
            start.get_or_insert(offset);
            end = offset + line.len();
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..end]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(doc: &str, unit: Unit) -> Vec<&str> {
        segments(doc, unit).iter().map(|s| s.text(doc)).collect()
    }

    #[test]
    fn a_lone_carriage_return_ends_a_line_as_newlines_do() {
        let doc = "First line\rstill first.\r\rSecond. Two sentences!\rThird line";
        assert_eq!(
            texts(doc, Unit::Paragraph),
            [
                "First line\rstill first.",
                "Second. Two sentences!\rThird line"
            ]
        );
        assert_eq!(
            texts(doc, Unit::Line),
            [
                "First line",
                "still first.",
                "Second. Two sentences!",
                "Third line"
            ]
        );
        assert_eq!(
            texts(doc, Unit::Sentence),
            [
                "First line\rstill first.",
                "Second.",
                "Two sentences!",
                "Third line"
            ]
        );
        assert_eq!(
            line_ranges("a\r\nb\rc\n\nd"),
            [(0, "a\r\n"), (3, "b\r"), (5, "c\n"), (7, "\n"), (8, "d")]
        );
    }

    #[test]
    fn a_byte_order_mark_starts_no_unit_and_offsets_stay_in_the_document() {
        let document = "\u{feff}Great film. Dull plot.\n\nSecond paragraph.";
        for (unit, first) in [
            (Unit::Sentence, "Great film."),
            (Unit::Line, "Great film. Dull plot."),
            (Unit::Paragraph, "Great film. Dull plot."),
        ] {
            let units = segments(document, unit);
            assert_eq!(units[0].start, 3, "{unit:?}");
            assert_eq!(units[0].text(document), first);
            assert_eq!(units.last().unwrap().text(document), "Second paragraph.");
        }
        assert!(segments("\u{feff}", Unit::Sentence).is_empty());
    }

    #[test]
    fn paragraphs_split_on_blank_lines_with_crlf() {
        let doc = "First line\r\nstill first.\r\n\r\n  \r\nSecond. Two sentences!\r\n";
        assert_eq!(
            texts(doc, Unit::Paragraph),
            ["First line\r\nstill first.", "Second. Two sentences!"]
        );
        assert_eq!(
            texts(doc, Unit::Line),
            ["First line", "still first.", "Second. Two sentences!"]
        );
    }

    #[test]
    fn sentences_never_cross_paragraphs() {
        let doc = "Great film. I cried\n\nBad ending? Yes.";
        assert_eq!(
            texts(doc, Unit::Sentence),
            ["Great film.", "I cried", "Bad ending?", "Yes."]
        );
    }

    #[test]
    fn hard_wrapped_sentences_continue_across_a_line_break() {
        let doc = "The acting in this film was one of the most\r\nwonderful things I have seen. It\n\
                   was long.\n- a list item\n- another\nTerrible pacing\nDull dialogue\n";
        assert_eq!(
            texts(doc, Unit::Sentence),
            [
                "The acting in this film was one of the most\r\nwonderful things I have seen.",
                "It\nwas long.",
                "- a list item",
                "- another",
                "Terrible pacing",
                "Dull dialogue"
            ]
        );
    }

    #[test]
    fn offsets_point_into_the_original_text() {
        let doc = "  Café crème. Über gut!  ";
        for s in segments(doc, Unit::Sentence) {
            assert_eq!(&doc[s.start..s.end], s.text(doc).trim());
        }
    }
}
