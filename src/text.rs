//! From raw text to word-pieces with byte offsets into the original text, windows for long
//! inputs, and words built from pieces.

use std::path::Path;

use tokenizers::Tokenizer;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;

use crate::error::{Error, Result};

/// A word-piece of the input with its span in the original text (UTF-8 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub id: u32,
    pub token: String,
    pub start: usize,
    pub end: usize,
}

/// A tokenizer with the special tokens a BERT classifier needs.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    pub cls_id: u32,
    pub sep_id: u32,
    pub pad_id: u32,
}

fn tokenizer_error(path: &Path, message: impl ToString) -> Error {
    Error::BadTokenizer {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

impl TextEncoder {
    /// From a `tokenizer.json`; padding and truncation stored in the file are switched off.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self> {
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| tokenizer_error(path, e))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| tokenizer_error(path, e))?;
        Self::with_special_tokens(tokenizer, path)
    }

    /// A BERT WordPiece tokenizer from `vocab.txt` (the `do_lower_case` of tokenizer_config.json).
    pub fn from_vocab(path: &Path, lowercase: bool) -> Result<Self> {
        let vocab = path
            .to_str()
            .ok_or_else(|| tokenizer_error(path, "path is not valid UTF-8"))?;
        let model = WordPiece::from_file(vocab)
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| tokenizer_error(path, e))?;
        let mut tokenizer = Tokenizer::new(model);
        tokenizer
            .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .map_err(|e| tokenizer_error(path, e))?;
        tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
        let cls = tokenizer
            .token_to_id("[CLS]")
            .ok_or_else(|| tokenizer_error(path, "vocabulary has no [CLS] token"))?;
        let sep = tokenizer
            .token_to_id("[SEP]")
            .ok_or_else(|| tokenizer_error(path, "vocabulary has no [SEP] token"))?;
        tokenizer.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        Self::with_special_tokens(tokenizer, path)
    }

    fn with_special_tokens(tokenizer: Tokenizer, path: &Path) -> Result<Self> {
        let id = |name: &str| {
            tokenizer.token_to_id(name).ok_or_else(|| {
                tokenizer_error(
                    path,
                    format!("vocabulary has no {name} token (not a BERT tokenizer?)"),
                )
            })
        };
        Ok(TextEncoder {
            cls_id: id("[CLS]")?,
            sep_id: id("[SEP]")?,
            pad_id: tokenizer.token_to_id("[PAD]").unwrap_or(0),
            tokenizer,
        })
    }

    /// Word-pieces of `text` without special tokens; offsets are byte offsets into `text`.
    pub fn pieces(&self, text: &str) -> Result<Vec<Piece>> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Tokenize(e.to_string()))?;
        Ok(encoding
            .get_ids()
            .iter()
            .zip(encoding.get_tokens())
            .zip(encoding.get_offsets())
            .map(|((&id, token), &(start, end))| Piece {
                id,
                token: token.clone(),
                start,
                end,
            })
            .collect())
    }
}

/// A window of consecutive pieces `[start, end)` explained as one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: usize,
    pub end: usize,
}

/// Splits `count` pieces into windows of at most `capacity` pieces that overlap by about a
/// quarter, so that every piece is seen with context on both sides in some window.
pub fn windows(count: usize, capacity: usize) -> Vec<Window> {
    if count <= capacity || capacity == 0 {
        return vec![Window {
            start: 0,
            end: count,
        }];
    }
    let overlap = (capacity / 4).clamp(1, 128).min(capacity - 1);
    let stride = capacity - overlap;
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + capacity).min(count);
        out.push(Window {
            start: end.saturating_sub(capacity),
            end,
        });
        if end == count {
            break;
        }
        start += stride;
    }
    out
}

/// How sub-word scores become a word score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// Relevance is additive (LRP conserves it), so a word's share is the sum of its pieces.
    #[default]
    Sum,
    Max,
    Mean,
    First,
}

impl std::str::FromStr for Aggregation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sum" => Ok(Aggregation::Sum),
            "max" => Ok(Aggregation::Max),
            "mean" => Ok(Aggregation::Mean),
            "first" => Ok(Aggregation::First),
            _ => Err(Error::Usage(format!(
                "unknown aggregation {s:?}; use sum, max, mean or first"
            ))),
        }
    }
}

impl Aggregation {
    pub fn apply(self, scores: &[f64]) -> f64 {
        match self {
            Aggregation::Sum => scores.iter().sum(),
            Aggregation::Max => scores.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Aggregation::Mean => scores.iter().sum::<f64>() / scores.len().max(1) as f64,
            Aggregation::First => scores.first().copied().unwrap_or(0.0),
        }
    }
}

/// A word: a span of the original text and the pieces (indices into the piece list) it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordSpan {
    pub start: usize,
    pub end: usize,
    pub pieces: Vec<usize>,
}

fn is_symbolic(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| !c.is_alphanumeric())
}

/// Whether the text between two pieces holds no whitespace. Characters the tokenizer drops
/// (combining accents, emoji variation selectors, zero-width and control characters) leave such
/// gaps inside a word.
fn joined_by(text: &str, gap_start: usize, gap_end: usize) -> bool {
    gap_start <= gap_end
        && text
            .get(gap_start..gap_end)
            .is_some_and(|gap| !gap.chars().any(char::is_whitespace))
}

/// Where a word ending at `end` really ends: after the characters the tokenizer dropped that
/// follow it up to the next whitespace (so "cliché" written with a combining accent and "❤️"
/// keep their last code points), never past `limit` (the next piece).
fn extend_over_dropped(text: &str, end: usize, limit: usize) -> usize {
    let Some(rest) = text.get(end..limit.max(end)) else {
        return end;
    };
    end + rest
        .char_indices()
        .find(|(_, c)| c.is_whitespace())
        .map_or(rest.len(), |(at, _)| at)
}

/// The CJK Unified Ideographs (and their extensions and compatibility blocks), the characters
/// BERT's basic tokenizer surrounds with spaces (`_is_chinese_char`).
fn is_cjk_ideograph(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

/// Whether punctuation at `start..end` written between two words without a space separates
/// them ("good,but", "movie.Terrible", "wait...What") rather than belonging to one token
/// ("don't", "well-made", "U.S.", "3.5", "example.com"): commas, semicolons, `!` and `?` between
/// letters do; full stops, ellipses and colons only before a capital letter. Both neighbours
/// must be at least two letters long.
fn separates_words(text: &str, start: usize, end: usize) -> bool {
    let (Some(before), Some(run), Some(after)) =
        (text.get(..start), text.get(start..end), text.get(end..))
    else {
        return false;
    };
    let left = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphabetic())
        .count();
    let right: Vec<char> = after.chars().take_while(|c| c.is_alphabetic()).collect();
    if left < 2 || right.len() < 2 || run.is_empty() {
        return false;
    }
    run.chars().all(|c| matches!(c, ',' | ';' | '!' | '?'))
        || (run.chars().all(|c| matches!(c, '.' | ':' | '…')) && right[0].is_uppercase())
}

/// Splits a group of pieces joined without whitespace where punctuation inside it separates
/// two words (see [`separates_words`]); the punctuation becomes a group of its own.
fn split_between_sentences(text: &str, pieces: &[Piece], group: Vec<usize>) -> Vec<Vec<usize>> {
    let symbolic = |i: usize| is_symbolic(text.get(pieces[i].start..pieces[i].end).unwrap_or(""));
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut k = 0;
    while k < group.len() {
        if k > 0 && symbolic(group[k]) {
            let run_end = (k..group.len())
                .find(|&j| !symbolic(group[j]))
                .unwrap_or(group.len());
            let (start, end) = (pieces[group[k]].start, pieces[group[run_end - 1]].end);
            if run_end < group.len() && separates_words(text, start, end) {
                out.push(std::mem::take(&mut current));
                out.push(group[k..run_end].to_vec());
                k = run_end;
                continue;
            }
        }
        current.push(group[k]);
        k += 1;
    }
    out.push(current);
    out.retain(|g| !g.is_empty());
    out
}

/// Groups pieces into words. Pieces joined without whitespace form one word ("don't",
/// "well-made", "unbelievable"), except that punctuation runs at the start or the end of such a
/// group are words of their own ("movie" "." , "(" "great" ")"), so a full stop never takes
/// relevance away from the word it follows.
pub fn words(text: &str, pieces: &[Piece]) -> Vec<WordSpan> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        // Pieces of one character share its span (a Hangul syllable becomes two or three jamo
        // pieces, each with the syllable's offsets): an overlap joins them too.
        let overlaps = i > 0 && piece.start < pieces[i - 1].end;
        // A CJK ideograph is a word of its own, as BERT's pre-tokenizer makes it a token of
        // its own: Chinese is written without spaces.
        let ideograph = |p: &Piece| {
            text.get(p.start..p.end)
                .and_then(|t| t.chars().next())
                .is_some_and(is_cjk_ideograph)
        };
        let joined = i > 0
            && piece.start < piece.end
            && (overlaps
                || (!ideograph(piece)
                    && !ideograph(&pieces[i - 1])
                    && joined_by(text, pieces[i - 1].end, piece.start)));
        match groups.last_mut() {
            Some(group) if joined => group.push(i),
            _ => groups.push(vec![i]),
        }
    }
    let symbolic = |i: usize| is_symbolic(text.get(pieces[i].start..pieces[i].end).unwrap_or(""));
    let mut out: Vec<WordSpan> = Vec::new();
    let mut push = |indices: &[usize]| {
        let start = indices.iter().map(|&i| pieces[i].start).min();
        let end = indices.iter().map(|&i| pieces[i].end).max();
        if let (Some(start), Some(end)) = (start, end) {
            // Words never overlap: a part that shares a character with the word before joins it.
            match out.last_mut() {
                Some(previous) if start < previous.end => {
                    previous.end = previous.end.max(end);
                    previous.pieces.extend_from_slice(indices);
                }
                _ => out.push(WordSpan {
                    start,
                    end,
                    pieces: indices.to_vec(),
                }),
            }
        }
    };
    let groups: Vec<Vec<usize>> = groups
        .into_iter()
        .flat_map(|group| split_between_sentences(text, pieces, group))
        .collect();
    for group in groups {
        let core_start = group.iter().position(|&i| !symbolic(i));
        let core_end = group.iter().rposition(|&i| !symbolic(i));
        match (core_start, core_end) {
            (Some(a), Some(b)) => {
                push(&group[..a]);
                push(&group[a..=b]);
                push(&group[b + 1..]);
            }
            _ => push(&group),
        }
    }
    for word in &mut out {
        let next_piece = word
            .pieces
            .last()
            .and_then(|&p| pieces.get(p + 1))
            .map_or(text.len(), |p| p.start);
        word.end = extend_over_dropped(text, word.end, next_piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(start: usize, end: usize) -> Piece {
        Piece {
            id: 0,
            token: String::new(),
            start,
            end,
        }
    }

    #[test]
    fn windows_cover_every_piece_and_respect_capacity() {
        for count in [1, 5, 10, 11, 37, 100, 1000] {
            for capacity in [1, 2, 3, 8, 10, 510] {
                let ws = windows(count, capacity);
                let mut covered = vec![false; count];
                for w in &ws {
                    assert!(w.end - w.start <= capacity.max(count.min(capacity)));
                    covered[w.start..w.end].iter_mut().for_each(|c| *c = true);
                }
                assert!(
                    covered.iter().all(|&c| c),
                    "count {count} capacity {capacity}"
                );
                assert_eq!(ws.last().unwrap().end, count);
            }
        }
    }

    #[test]
    fn punctuation_at_word_edges_splits_off() {
        let text = "don't (stop), now.";
        // pieces as BERT splits them
        let spans = [
            (0, 3),
            (3, 4),
            (4, 5),
            (6, 7),
            (7, 11),
            (11, 12),
            (12, 13),
            (14, 17),
            (17, 18),
        ];
        let pieces: Vec<Piece> = spans.iter().map(|&(a, b)| piece(a, b)).collect();
        let words: Vec<&str> = words(text, &pieces)
            .iter()
            .map(|w| &text[w.start..w.end])
            .collect();
        assert_eq!(words, ["don't", "(", "stop", "),", "now", "."]);
    }

    /// Words of `text` with pieces at the spans of `tokens` (each found after the previous).
    fn words_of(text: &str, tokens: &[&str]) -> Vec<String> {
        let mut at = 0;
        let pieces: Vec<Piece> = tokens
            .iter()
            .map(|t| {
                let start = at + text[at..].find(t).unwrap();
                at = start + t.len();
                piece(start, at)
            })
            .collect();
        words(text, &pieces)
            .iter()
            .map(|w| text[w.start..w.end].to_string())
            .collect()
    }

    #[test]
    fn punctuation_between_words_without_a_space_separates_them() {
        let split = |text: &str, tokens: &[&str]| words_of(text, tokens);
        assert_eq!(
            split("movie.Terrible", &["movie", ".", "Terrible"]),
            ["movie", ".", "Terrible"]
        );
        assert_eq!(
            split(
                "good,but slow!!Loved it",
                &["good", ",", "but", "slow", "!", "!", "Loved", "it"]
            ),
            ["good", ",", "but", "slow", "!!", "Loved", "it"]
        );
        assert_eq!(
            split("wait...What", &["wait", ".", ".", ".", "What"]),
            ["wait", "...", "What"]
        );
        // One token each: abbreviations, numbers, domains, hyphens, apostrophes, lower case
        // after a full stop.
        for (text, tokens) in [
            ("U.S.A", &["U", ".", "S", ".", "A"][..]),
            ("3.5", &["3", ".", "5"]),
            ("example.com", &["example", ".", "com"]),
            ("well-made", &["well", "-", "made"]),
            ("don't", &["don", "'", "t"]),
        ] {
            assert_eq!(split(text, tokens), [text], "{text}");
        }
    }

    #[test]
    fn every_cjk_ideograph_is_a_word_and_other_scripts_are_not_split() {
        // BERT's tokenizer makes each ideograph a piece; kana and Latin keep joining.
        assert_eq!(
            words_of("这部电影很好", &["这", "部", "电", "影", "很", "好"]),
            ["这", "部", "电", "影", "很", "好"]
        );
        assert_eq!(
            words_of("映画はすばらしい", &["映", "画", "はすばらしい"]),
            ["映", "画", "はすばらしい"]
        );
        assert_eq!(
            words_of("K-pop好き", &["K", "-", "pop", "好", "き"]),
            ["K-pop", "好", "き"]
        );
    }

    #[test]
    fn pieces_sharing_a_character_form_one_word() {
        // "한국어 좋아" as the BERT tokenizer splits it: every jamo piece has its syllable's span.
        let text = "한국어 좋아";
        let spans = [
            (0, 3),
            (0, 3),
            (0, 3),
            (3, 6),
            (3, 6),
            (6, 9),
            (10, 13),
            (13, 16),
            (13, 16),
        ];
        let pieces: Vec<Piece> = spans.iter().map(|&(a, b)| piece(a, b)).collect();
        let found = words(text, &pieces);
        let shown: Vec<&str> = found.iter().map(|w| &text[w.start..w.end]).collect();
        assert_eq!(shown, ["한국어", "좋아"]);
        assert_eq!(found[0].pieces, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn characters_the_tokenizer_drops_stay_inside_their_word() {
        // "cliche\u{301}" with a combining accent, a heart with VS16, a zero-width space.
        let text = "A cliche\u{301} \u{2764}\u{fe0f} zero\u{200b}width cafe\u{301}.";
        let heart = text.find('\u{2764}').unwrap();
        let zero = text.find("zero").unwrap();
        let width = text.find("width").unwrap();
        let spans = [
            (0, 1),
            (2, 8),
            (heart, heart + 3),
            (zero, zero + 4),
            (width, width + 2),
            (width + 2, width + 5),
            (width + 6, width + 10),
            (width + 12, width + 13),
        ];
        let pieces: Vec<Piece> = spans.iter().map(|&(a, b)| piece(a, b)).collect();
        let words: Vec<&str> = words(text, &pieces)
            .iter()
            .map(|w| &text[w.start..w.end])
            .collect();
        assert_eq!(
            words,
            [
                "A",
                "cliche\u{301}",
                "\u{2764}\u{fe0f}",
                "zero\u{200b}width",
                "cafe\u{301}",
                "."
            ]
        );
    }
}
