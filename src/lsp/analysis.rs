//! What the server knows about a document once the model has run: per unit, the prediction and
//! every word's score, normalised, bucketed and ranked. Free of protocol types.

use std::sync::Arc;

use crate::explainer::Explanation;
use crate::methods::Method;
use crate::render::palette::{Bucket, Normalization};

use super::position::LineIndex;

/// One word of a unit. Offsets are relative to the unit's start.
#[derive(Debug, Clone)]
pub struct WordScore {
    pub start: usize,
    pub end: usize,
    pub text: String,
    /// The method's score, aggregated over the word's pieces.
    pub raw: f64,
    /// Divided by the unit's largest |score| (so in [-1, 1]).
    pub score: f64,
    pub bucket: Bucket,
    /// 1 for the most relevant word of the unit (by |score|).
    pub rank: usize,
    /// Sub-word pieces with their raw scores.
    pub pieces: Vec<(String, f64)>,
}

/// The explanation of one unit's text, independent of where the unit sits in a document.
#[derive(Debug, Clone)]
pub struct UnitResult {
    pub labels: Vec<String>,
    pub probs: Vec<f64>,
    pub predicted: usize,
    pub target: usize,
    pub method: Method,
    pub windows: usize,
    /// In text order.
    pub words: Vec<WordScore>,
}

impl UnitResult {
    pub fn new(explanation: &Explanation, method: Method, labels: &[String]) -> UnitResult {
        let raw_scores = explanation
            .attribution(method)
            .map(|a| a.word_scores.clone())
            .unwrap_or_default();
        let token_scores = explanation
            .attribution(method)
            .map(|a| a.token_scores.clone())
            .unwrap_or_default();
        let normalised = Normalization::MaxAbs.apply(&raw_scores);
        let mut order: Vec<usize> = (0..normalised.len()).collect();
        order.sort_by(|&a, &b| {
            normalised[b]
                .abs()
                .partial_cmp(&normalised[a].abs())
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(&b))
        });
        let mut rank = vec![0; normalised.len()];
        for (position, &word) in order.iter().enumerate() {
            rank[word] = position + 1;
        }
        let words = explanation
            .words
            .iter()
            .zip(raw_scores.iter().zip(&normalised))
            .enumerate()
            .map(|(i, (word, (&raw, &score)))| WordScore {
                start: word.start,
                end: word.end,
                text: word.text.clone(),
                raw,
                score,
                bucket: Bucket::of(score),
                rank: rank[i],
                pieces: word
                    .tokens
                    .iter()
                    .filter_map(|&t| {
                        let token = explanation.tokens.get(t)?;
                        Some((token.token.clone(), token_scores.get(t).copied()?))
                    })
                    .collect(),
            })
            .collect();
        UnitResult {
            labels: labels.to_vec(),
            probs: explanation.probs.clone(),
            predicted: explanation.predicted,
            target: explanation.target,
            method,
            windows: explanation.windows,
            words,
        }
    }

    pub fn label(&self, class: usize) -> &str {
        self.labels.get(class).map(String::as_str).unwrap_or("?")
    }

    /// The `k` most relevant words worth marking (non-zero bucket), most relevant first.
    pub fn top(&self, k: usize) -> Vec<&WordScore> {
        let mut marked: Vec<&WordScore> = self
            .words
            .iter()
            .filter(|w| w.bucket.strength() > 0)
            .collect();
        marked.sort_by_key(|w| w.rank);
        marked.truncate(k);
        marked
    }
}

/// A unit placed in a document: byte range of the document and its result.
#[derive(Debug, Clone)]
pub struct PlacedUnit {
    pub start: usize,
    pub end: usize,
    pub result: Arc<UnitResult>,
}

/// The results for one revision of a document.
#[derive(Debug)]
pub struct Analysis {
    /// The LSP version of the text analysed.
    pub version: i32,
    /// The server's revision counter (bumped by edits and by settings changes).
    pub revision: u64,
    pub text: Arc<str>,
    pub index: Arc<LineIndex>,
    pub units: Vec<PlacedUnit>,
}

impl Analysis {
    /// The unit and word at a byte offset of the document (a word's end counts as inside it,
    /// so the cursor just after a word still finds it).
    pub fn word_at(&self, offset: usize) -> Option<(&PlacedUnit, &WordScore)> {
        let unit = self
            .units
            .iter()
            .find(|u| u.start <= offset && offset <= u.end)?;
        let relative = offset - unit.start;
        let word = unit
            .result
            .words
            .iter()
            .find(|w| w.start <= relative && relative < w.end)
            .or_else(|| unit.result.words.iter().find(|w| w.end == relative))?;
        Some((unit, word))
    }
}
