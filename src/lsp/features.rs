//! Protocol views of an [`Analysis`]: diagnostics, colours, hover, code lenses, inlay hints,
//! semantic tokens and the thin-client notification.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower_lsp_server::ls_types::{
    CodeLens, Color, ColorInformation, Command, Diagnostic, DiagnosticSeverity, DiagnosticTag,
    Hover, HoverContents, InlayHint, InlayHintLabel, MarkupContent, MarkupKind, Position, Range,
    SemanticToken, SemanticTokenModifier, SemanticTokenType, SemanticTokensLegend,
};

use crate::render::palette::{Bucket, Palette};

use super::analysis::{Analysis, PlacedUnit, UnitResult, WordScore};
use super::position::{Encoding, LinePosition, PositionCursor};
use super::settings::{Settings, Severity};

pub const SOURCE: &str = "tokenlens";
pub const COMMAND_SET_TARGET: &str = "tokenlens.setTarget";
pub const COMMAND_SET_METHOD: &str = "tokenlens.setMethod";
/// The custom notification, sent only to clients declaring `experimental.tokenlensScores`.
pub const SCORES_NOTIFICATION: &str = "tokenlens/publishScores";
pub const SCORES_CAPABILITY: &str = "tokenlensScores";
/// With `experimental.tokenlensScoresIncremental` too, a notification repeats unchanged units by
/// reference (`{range, sameAs}`) to the previous notification of the document (`base`).
pub const SCORES_INCREMENTAL_CAPABILITY: &str = "tokenlensScoresIncremental";

pub fn position(analysis: &Analysis, offset: usize, encoding: Encoding) -> Position {
    let p = analysis.index.position(&analysis.text, offset, encoding);
    Position::new(p.line, p.character)
}

pub fn range(analysis: &Analysis, start: usize, end: usize, encoding: Encoding) -> Range {
    Range::new(
        position(analysis, start, encoding),
        position(analysis, end, encoding),
    )
}

/// Whether `p` is past the end of its line (hover there shows nothing).
pub fn is_past_line_end(analysis: &Analysis, p: Position, encoding: Encoding) -> bool {
    let at = LinePosition {
        line: p.line,
        character: p.character,
    };
    analysis
        .index
        .is_past_line_end(&analysis.text, at, encoding)
}

pub fn offset(analysis: &Analysis, p: Position, encoding: Encoding) -> usize {
    let at = LinePosition {
        line: p.line,
        character: p.character,
    };
    analysis.index.offset(&analysis.text, at, encoding)
}

fn word_range(analysis: &Analysis, unit: &PlacedUnit, word: &WordScore, e: Encoding) -> Range {
    range(analysis, unit.start + word.start, unit.start + word.end, e)
}

/// Converts many ranges visited mostly in text order (see [`LineIndex::cursor`]); long
/// documents publish tens of thousands of ranges per edit.
///
/// [`LineIndex::cursor`]: super::position::LineIndex::cursor
struct Ranges<'a> {
    cursor: PositionCursor<'a>,
}

impl<'a> Ranges<'a> {
    fn new(analysis: &'a Analysis, e: Encoding) -> Self {
        Ranges {
            cursor: analysis.index.cursor(&analysis.text, e),
        }
    }

    fn position(&mut self, offset: usize) -> Position {
        let p = self.cursor.position(offset);
        Position::new(p.line, p.character)
    }

    fn span(&mut self, start: usize, end: usize) -> Range {
        Range::new(self.position(start), self.position(end))
    }

    fn word(&mut self, unit: &PlacedUnit, word: &WordScore) -> Range {
        self.span(unit.start + word.start, unit.start + word.end)
    }
}

fn percent(p: f64) -> String {
    format!("{:.0}%", p * 100.0)
}

/// `+0.82` / `−0.40`: the sign always shown, a real minus sign.
fn signed(score: f64) -> String {
    if score < 0.0 {
        format!("\u{2212}{:.2}", -score)
    } else {
        format!("+{score:.2}")
    }
}

fn severity(s: Severity) -> DiagnosticSeverity {
    match s {
        Severity::Error => DiagnosticSeverity::ERROR,
        Severity::Warning => DiagnosticSeverity::WARNING,
        Severity::Information => DiagnosticSeverity::INFORMATION,
        Severity::Hint => DiagnosticSeverity::HINT,
    }
}

/// The top words of each unit, plus (in fade mode) one `Unnecessary` hint per run of the
/// unit's other words (a run ends where masked text lies between two words).
pub fn diagnostics(analysis: &Analysis, settings: &Settings, e: Encoding) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut ranges = Ranges::new(analysis, e);
    for unit in &analysis.units {
        let result = &unit.result;
        let total = result.words.len();
        if settings.features.diagnostics {
            let mut top = result.top(settings.diagnostics_per_unit);
            top.sort_by_key(|w| w.start);
            for word in top {
                out.push(Diagnostic {
                    range: ranges.word(unit, word),
                    severity: Some(severity(settings.diagnostic_severity)),
                    source: Some(SOURCE.into()),
                    message: format!(
                        "{} {} for {} (#{} of {total})",
                        word.text,
                        signed(word.score),
                        result.label(result.target),
                        word.rank
                    ),
                    ..Default::default()
                });
            }
        }
        if settings.features.fade {
            let shown: Vec<usize> = result.top(settings.top_k).iter().map(|w| w.rank).collect();
            let mut run: Option<(usize, usize)> = None;
            let flush = |run: &mut Option<(usize, usize)>,
                         out: &mut Vec<Diagnostic>,
                         ranges: &mut Ranges| {
                if let Some((start, end)) = run.take() {
                    out.push(Diagnostic {
                        range: ranges.span(unit.start + start, unit.start + end),
                        severity: Some(DiagnosticSeverity::HINT),
                        source: Some(SOURCE.into()),
                        message: "little relevance".into(),
                        tags: Some(vec![DiagnosticTag::UNNECESSARY]),
                        ..Default::default()
                    });
                }
            };
            for word in &result.words {
                // Between two words of a unit there is only white space, unless text was masked
                // there (inline code, a comment, blockquote markers): a run stops before it, so
                // that what was not explained is not faded either.
                let masked_before = run.is_some_and(|(_, end)| {
                    analysis
                        .text
                        .get(unit.start + end..unit.start + word.start)
                        .is_some_and(|gap| gap.chars().any(|c| !c.is_whitespace()))
                });
                if shown.contains(&word.rank) || masked_before {
                    flush(&mut run, &mut out, &mut ranges);
                }
                if !shown.contains(&word.rank) {
                    run = Some(match run {
                        Some((start, _)) => (start, word.end),
                        None => (word.start, word.end),
                    });
                }
            }
            flush(&mut run, &mut out, &mut ranges);
        }
    }
    out
}

fn rgba(bucket: Bucket) -> Option<Color> {
    let c = Palette::BlueOrange.bucket_color(bucket)?;
    Some(Color {
        red: c.0 as f32 / 255.0,
        green: c.1 as f32 / 255.0,
        blue: c.2 as f32 / 255.0,
        alpha: 1.0,
    })
}

/// The top-k words of each unit with their palette colour.
pub fn colors(analysis: &Analysis, settings: &Settings, e: Encoding) -> Vec<ColorInformation> {
    let mut out = Vec::new();
    let mut ranges = Ranges::new(analysis, e);
    for unit in &analysis.units {
        let mut top = unit.result.top(settings.top_k);
        top.sort_by_key(|w| w.start);
        for word in top {
            if let Some(color) = rgba(word.bucket) {
                out.push(ColorInformation {
                    range: ranges.word(unit, word),
                    color,
                });
            }
        }
    }
    out
}

/// `▇▇▇▇▁▁▁▁▁▁` for a probability.
fn bar(p: f64) -> String {
    let filled = (p.clamp(0.0, 1.0) * 10.0).round() as usize;
    format!("{}{}", "▇".repeat(filled), "▁".repeat(10 - filled))
}

fn probabilities_table(result: &UnitResult) -> String {
    let mut table = String::from("| class | probability | |\n|---|---:|---|\n");
    for (class, p) in result.probs.iter().enumerate() {
        let marker = if class == result.predicted {
            " (predicted)"
        } else {
            ""
        };
        table.push_str(&format!(
            "| {}{marker} | {:.3} | `{}` |\n",
            result.label(class),
            p,
            bar(*p)
        ));
    }
    table
}

pub fn hover(analysis: &Analysis, offset: usize, e: Encoding) -> Option<Hover> {
    let (unit, word) = analysis.word_at(offset)?;
    let result = &unit.result;
    let pieces: Vec<String> = word
        .pieces
        .iter()
        .map(|(piece, score)| format!("`{piece}` {score:+.4}"))
        .collect();
    let mut text = format!(
        "**{}** · score **{}** (raw {:+.4}) · rank {} of {} toward **{}**\n\n",
        word.text,
        signed(word.score),
        word.raw,
        word.rank,
        result.words.len(),
        result.label(result.target),
    );
    text.push_str(&format!(
        "Paragraph prediction: **{}** ({})",
        result.label(result.predicted),
        percent(result.probs.get(result.predicted).copied().unwrap_or(0.0))
    ));
    if result.windows > 1 {
        text.push_str(&format!(", read in {} windows", result.windows));
    }
    text.push_str("\n\n");
    text.push_str(&probabilities_table(result));
    text.push_str(&format!(
        "\nPieces: {}\n\nMethod: `{}`",
        pieces.join(", "),
        result.method.name()
    ));
    Some(Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value: text,
        }),
        range: Some(word_range(analysis, unit, word, e)),
    })
}

/// Per unit: the probabilities (clicking cycles the explained class), one lens per other class
/// to explain it, and the method (clicking cycles it).
pub fn code_lenses(analysis: &Analysis, settings: &Settings, e: Encoding) -> Vec<CodeLens> {
    let mut out = Vec::new();
    for unit in &analysis.units {
        let result = &unit.result;
        let at = position(analysis, unit.start, e);
        let range = Range::new(at, at);
        let lens = |title: String, command: &str, arguments: Vec<Value>| CodeLens {
            range,
            command: Some(Command {
                title,
                command: command.to_owned(),
                arguments: Some(arguments),
            }),
            data: None,
        };
        let mut classes: Vec<usize> = (0..result.probs.len()).collect();
        classes.sort_by(|&a, &b| {
            result.probs[b]
                .partial_cmp(&result.probs[a])
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let summary: Vec<String> = classes
            .iter()
            .map(|&c| format!("{} {}", result.label(c), percent(result.probs[c])))
            .collect();
        out.push(lens(
            format!(
                "{} · explaining {}",
                summary.join(" · "),
                result.label(result.target)
            ),
            COMMAND_SET_TARGET,
            vec![],
        ));
        for &class in &classes {
            if class != result.target {
                out.push(lens(
                    format!("explain {}", result.label(class)),
                    COMMAND_SET_TARGET,
                    vec![json!(result.label(class))],
                ));
            }
        }
        if settings.target != "auto" && !settings.target.is_empty() {
            out.push(lens(
                "explain the prediction".into(),
                COMMAND_SET_TARGET,
                vec![json!("auto")],
            ));
        }
        out.push(lens(
            format!("method: {}", result.method.name()),
            COMMAND_SET_METHOD,
            vec![],
        ));
    }
    out
}

pub fn inlay_hints(
    analysis: &Analysis,
    settings: &Settings,
    e: Encoding,
    visible: Range,
) -> Vec<InlayHint> {
    let mut out = Vec::new();
    for unit in &analysis.units {
        let mut words = unit.result.top(settings.top_k);
        words.sort_by_key(|w| w.start);
        for word in words {
            let at = position(analysis, unit.start + word.end, e);
            if at < visible.start || at > visible.end {
                continue;
            }
            out.push(InlayHint {
                position: at,
                label: InlayHintLabel::String(signed(word.score)),
                kind: None,
                text_edits: None,
                tooltip: None,
                padding_left: Some(true),
                padding_right: None,
                data: None,
            });
        }
    }
    out
}

/// Modifiers of the `relevance` token type: the sign, then sign and strength together (bit i
/// of a token's modifier set is entry i).
pub const SEMANTIC_MODIFIERS: [&str; 12] = [
    "positive", "negative", "pos1", "pos2", "pos3", "pos4", "pos5", "neg1", "neg2", "neg3", "neg4",
    "neg5",
];

/// Token type `relevance` with [`SEMANTIC_MODIFIERS`].
pub fn semantic_legend() -> SemanticTokensLegend {
    SemanticTokensLegend {
        token_types: vec![SemanticTokenType::new("relevance")],
        token_modifiers: SEMANTIC_MODIFIERS
            .iter()
            .map(|&m| SemanticTokenModifier::new(m))
            .collect(),
    }
}

fn modifier_bits(bucket: Bucket) -> u32 {
    let strength = bucket.strength() as u32;
    if bucket.is_negative() {
        (1 << 1) | (1 << (6 + strength))
    } else {
        1 | (1 << (1 + strength))
    }
}

/// Every marked word (non-zero bucket), delta-encoded; words never span lines.
pub fn semantic_tokens(analysis: &Analysis, e: Encoding) -> Vec<SemanticToken> {
    let mut spans = Vec::new();
    let mut ranges = Ranges::new(analysis, e);
    for unit in &analysis.units {
        for word in &unit.result.words {
            if word.bucket.strength() > 0 {
                let r = ranges.word(unit, word);
                if r.start.line == r.end.line && r.end.character > r.start.character {
                    spans.push((r, word.bucket));
                }
            }
        }
    }
    spans.sort_by_key(|(r, _)| (r.start.line, r.start.character));
    let mut out = Vec::with_capacity(spans.len());
    let (mut line, mut character) = (0, 0);
    for (r, bucket) in spans {
        let delta_line = r.start.line - line;
        let delta_start = if delta_line == 0 {
            r.start.character - character
        } else {
            r.start.character
        };
        out.push(SemanticToken {
            delta_line,
            delta_start,
            length: r.end.character - r.start.character,
            token_type: 0,
            token_modifiers_bitset: modifier_bits(bucket),
        });
        (line, character) = (r.start.line, r.start.character);
    }
    out
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoredWord {
    pub range: Range,
    pub score: f64,
    pub bucket: i8,
    pub color: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassProbability {
    pub label: String,
    pub probability: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoredUnit {
    pub range: Range,
    /// The predicted class.
    pub label: String,
    /// The class the scores explain.
    pub target: String,
    pub probs: Vec<ClassProbability>,
    pub words: Vec<ScoredWord>,
}

/// An incremental notification's unit whose text (and so its scores) is that of unit `same_as`
/// of the notification `base`: the client reuses those words, moved from that unit's start to
/// this one's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepeatedUnit {
    pub range: Range,
    pub same_as: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UnitScores {
    Scored(ScoredUnit),
    Repeated(RepeatedUnit),
}

/// Params of `tokenlens/publishScores`. Typed (not a `Value`) so that a long document's
/// tens of thousands of words are converted to JSON once, by the transport.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScoresParams {
    pub uri: String,
    pub version: i32,
    pub method: Option<String>,
    pub encoding: String,
    /// Incremental notifications only: the version of the previous notification that
    /// `sameAs` indices refer to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<i32>,
    pub units: Vec<UnitScores>,
}

/// What a client was last sent for a document, for the next incremental notification. The
/// results are kept alive so that their addresses identify them.
pub struct SentScores {
    version: i32,
    /// Address of a result → index of its first unit in that notification.
    first_index: HashMap<usize, usize>,
    results: Vec<Arc<UnitResult>>,
}

/// Params of `tokenlens/publishScores`: every marked word of every unit; with `previous` (an
/// incremental client), units whose result the previous notification had are sent by reference.
/// Also returns what was sent, for the next one.
pub fn scores_notification(
    uri: &str,
    analysis: &Analysis,
    e: Encoding,
    previous: Option<&SentScores>,
) -> (ScoresParams, SentScores) {
    let mut ranges = Ranges::new(analysis, e);
    let mut sent = SentScores {
        version: analysis.version,
        first_index: HashMap::new(),
        results: Vec::with_capacity(analysis.units.len()),
    };
    let units: Vec<UnitScores> = analysis
        .units
        .iter()
        .enumerate()
        .map(|(index, unit)| {
            let result = &unit.result;
            let key = Arc::as_ptr(result) as usize;
            sent.first_index.entry(key).or_insert(index);
            sent.results.push(result.clone());
            let start = ranges.position(unit.start);
            if let Some(&same_as) = previous.and_then(|p| p.first_index.get(&key)) {
                return UnitScores::Repeated(RepeatedUnit {
                    range: Range::new(start, ranges.position(unit.end)),
                    same_as,
                });
            }
            let words = result
                .words
                .iter()
                .filter_map(|w| {
                    let color = Palette::BlueOrange.bucket_color(w.bucket)?;
                    Some(ScoredWord {
                        range: ranges.word(unit, w),
                        score: w.score,
                        bucket: w.bucket.0,
                        color: color.hex(),
                    })
                })
                .collect();
            UnitScores::Scored(ScoredUnit {
                range: Range::new(start, ranges.position(unit.end)),
                label: result.label(result.predicted).to_owned(),
                target: result.label(result.target).to_owned(),
                probs: result
                    .probs
                    .iter()
                    .enumerate()
                    .map(|(c, &probability)| ClassProbability {
                        label: result.label(c).to_owned(),
                        probability,
                    })
                    .collect(),
                words,
            })
        })
        .collect();
    let params = ScoresParams {
        uri: uri.to_owned(),
        version: analysis.version,
        method: analysis
            .units
            .first()
            .map(|u| u.result.method.name().to_owned()),
        encoding: e.name().to_owned(),
        base: previous.map(|p| p.version),
        units,
    };
    (params, sent)
}
