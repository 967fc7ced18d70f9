//! One scored record as every output format sees it (JSON, TSV, ANSI, HTML, Markdown), and the
//! rule that turns raw word scores into what is shown: normalised value, bucket, and whether
//! the word is marked at all (`--top-k`).

use std::io::{self, Write};

use super::palette::{Bucket, Normalization, Scale};

/// Where a record came from: the input it answers, so users can join output to input.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// File name as given on the command line, `-` for stdin.
    pub source: String,
    /// 1-based input line (for `--doc`: the line the unit starts on).
    pub line: usize,
    /// Set in `--doc` mode: which unit of the document this record is.
    pub unit: Option<UnitSpan>,
    /// The other fields of a `--jsonl` input object, passed through unchanged.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// A unit (sentence, paragraph, line) of a `--doc` document.
#[derive(Debug, Clone, Copy)]
pub struct UnitSpan {
    pub kind: &'static str,
    /// 1-based position of the unit in its document.
    pub index: usize,
    /// Byte range of the unit in the whole document.
    pub start: usize,
    pub end: usize,
}

impl UnitSpan {
    /// Byte offset that turns a unit-relative offset into a document offset.
    pub fn offset(&self) -> usize {
        self.start
    }
}

/// A word with its raw score and how it is displayed.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredWord {
    pub text: String,
    /// Byte span in the record's `text`.
    pub start: usize,
    pub end: usize,
    /// The method's score, aggregated over the word's pieces (A − B for `--contrast`).
    pub score: f64,
    /// The score after display normalisation.
    pub normalized: f64,
    /// The colour bucket (−5..5); 0 when the word is not marked.
    pub bucket: Bucket,
}

/// A token position ([CLS] and [SEP] included) with its raw score; JSON output only.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredToken {
    pub token: String,
    pub id: u32,
    pub start: usize,
    pub end: usize,
    pub score: f64,
}

/// A text that was explained.
#[derive(Debug, Clone)]
pub struct ScoredText {
    pub text: String,
    pub model: String,
    pub labels: Vec<String>,
    pub logits: Vec<f64>,
    pub probs: Vec<f64>,
    pub predicted: usize,
    /// The class explained (A of `--contrast A,B`).
    pub target: usize,
    /// B of `--contrast A,B`.
    pub contrast: Option<usize>,
    pub method: &'static str,
    pub aggregation: &'static str,
    pub windows: usize,
    pub words: Vec<ScoredWord>,
    pub tokens: Option<Vec<ScoredToken>>,
}

/// What became of one input record.
#[derive(Debug, Clone)]
pub enum Outcome {
    Scored(Box<ScoredText>),
    /// A blank input line: nothing to explain, reported so line numbers stay aligned.
    Empty {
        text: String,
    },
    /// The record could not be read or explained; the message names the problem and the fix.
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone)]
pub struct Record {
    pub origin: Origin,
    pub outcome: Outcome,
}

/// How scores are displayed; the same for every record of a run, so a legend can be printed
/// before the first record.
#[derive(Debug, Clone)]
pub struct Display {
    pub scale: Scale,
    pub normalization: Normalization,
    /// Only the N most relevant words are marked.
    pub top_k: Option<usize>,
    pub method: &'static str,
    /// What a positive score means, e.g. "for the explained class" or "for positive".
    pub for_meaning: String,
    /// What a negative score means, e.g. "against it" or "for negative" (diverging scale).
    pub against_meaning: String,
}

impl Display {
    /// Normalised score and bucket of each word; words outside the top-k get bucket 0.
    pub fn marks(&self, scores: &[f64]) -> Vec<(f64, Bucket)> {
        let normalized = self.normalization.apply(scores);
        let mut buckets: Vec<Bucket> = normalized
            .iter()
            .map(|&value| match self.scale {
                // Unsigned views have nothing to say below zero (tiny negative rounding noise).
                Scale::Sequential if value <= 0.0 => Bucket(0),
                _ => Bucket::of(value),
            })
            .collect();
        if let Some(k) = self.top_k {
            let mut ranked: Vec<usize> = (0..normalized.len())
                .filter(|&i| buckets[i] != Bucket(0))
                .collect();
            let relevance = |i: usize| match self.scale {
                Scale::Diverging => normalized[i].abs(),
                Scale::Sequential => normalized[i],
            };
            // Stable: among equal scores the earlier word ranks first.
            ranked.sort_by(|&a, &b| relevance(b).total_cmp(&relevance(a)));
            for &i in ranked.iter().skip(k) {
                buckets[i] = Bucket(0);
            }
        }
        normalized.into_iter().zip(buckets).collect()
    }

    /// The buckets a legend shows, weakest "against" to strongest "for".
    pub fn legend_buckets(&self) -> Vec<Bucket> {
        match self.scale {
            Scale::Diverging => (-5..=-1).chain(1..=5).map(Bucket).collect(),
            Scale::Sequential => (1..=5).map(Bucket).collect(),
        }
    }

    /// One sentence on what the marks mean, shared by the legends of every format.
    pub fn explanation(&self) -> String {
        let scaling = match self.normalization {
            Normalization::MaxAbs => "score / largest |score| of the text",
            Normalization::MinMax => "(score − min) / (max − min) of the text",
            Normalization::L1 => "score / sum of |scores| of the text",
            Normalization::None => "raw score",
        };
        let top = self
            .top_k
            .map(|k| format!("; only the {k} most relevant words of each text are marked"))
            .unwrap_or_default();
        format!(
            "{}, {scaling}; strength 1–5 = 0.1–1.0, weaker words unmarked{top}",
            self.method
        )
    }
}

/// Writes records in one output format. `begin` and `finish` frame the stream (legend, HTML
/// head, JSON array brackets); `record` writes one record and is called in input order.
pub trait RecordWriter {
    fn begin(&mut self, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
    fn record(&mut self, out: &mut dyn Write, record: &Record) -> io::Result<()>;
    fn finish(&mut self, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
    /// Whether failed records are part of this format (JSON) or must go to stderr instead.
    fn writes_errors(&self) -> bool {
        false
    }
}

/// "positive 0.91 · negative 0.06 · neutral 0.03", predicted class first.
pub fn probability_summary(text: &ScoredText) -> Vec<(usize, f64)> {
    let mut order: Vec<usize> = (0..text.labels.len()).collect();
    order.sort_by(|&a, &b| text.probs[b].total_cmp(&text.probs[a]));
    order.into_iter().map(|i| (i, text.probs[i])).collect()
}

/// Name of the explained view: "positive", or "positive − negative" for a contrast.
pub fn explained_name(text: &ScoredText) -> String {
    match text.contrast {
        Some(b) => format!("{} − {}", text.labels[text.target], text.labels[b]),
        None => text.labels[text.target].clone(),
    }
}

/// Where a record came from, for people: "line 3", "notes.txt:3", "line 3, sentence 2".
pub fn location(origin: &Origin) -> String {
    let mut place = if origin.source == "-" {
        format!("line {}", origin.line)
    } else {
        format!("{}:{}", origin.source, origin.line)
    };
    if let Some(unit) = &origin.unit {
        place.push_str(&format!(", {} {}", unit.kind, unit.index));
    }
    place
}

#[cfg(test)]
mod tests {
    use super::*;

    fn display(scale: Scale, top_k: Option<usize>) -> Display {
        Display {
            scale,
            normalization: Normalization::MaxAbs,
            top_k,
            method: "m",
            for_meaning: "for".into(),
            against_meaning: "against".into(),
        }
    }

    #[test]
    fn top_k_keeps_only_the_largest_magnitudes() {
        let marks = display(Scale::Diverging, Some(2)).marks(&[0.5, -1.0, 0.2, 0.9]);
        let buckets: Vec<i8> = marks.iter().map(|(_, b)| b.0).collect();
        assert_eq!(buckets, [0, -5, 0, 5]);
    }

    #[test]
    fn sequential_scale_never_marks_negative_scores() {
        let marks = display(Scale::Sequential, None).marks(&[1.0, -0.5, f64::NAN]);
        let buckets: Vec<i8> = marks.iter().map(|(_, b)| b.0).collect();
        assert_eq!(buckets, [5, 0, 0]);
    }

    #[test]
    fn legend_runs_from_against_to_for() {
        let buckets = display(Scale::Diverging, None).legend_buckets();
        assert_eq!(buckets.first(), Some(&Bucket(-5)));
        assert_eq!(buckets.last(), Some(&Bucket(5)));
        assert_eq!(display(Scale::Sequential, None).legend_buckets().len(), 5);
    }
}
