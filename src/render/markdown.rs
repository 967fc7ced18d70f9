//! `--format md`: Markdown for issues, notebooks and reports. Markdown has no colour, so
//! marked words are bold with their signed strength as a superscript (`**great**⁺⁵`).

use std::io::{self, Write};

use super::ansi::PLAIN_MIN_STRENGTH;
use super::palette::{Bucket, Scale};
use super::scored::{
    Display, Outcome, Record, RecordWriter, ScoredText, explained_name, location,
    probability_summary,
};

pub struct MarkdownWriter {
    pub display: Display,
}

/// Backslash-escapes the characters Markdown would read as markup.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in super::visible_controls(text).chars() {
        // Only what changes rendering inside a paragraph; "(", "-", "!" are left readable
        // (line starts are handled by `escape_line_start`).
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~' | '&'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A line of a paragraph without what Markdown reads as a block at a line start: indentation
/// (a code block), list markers (`-`, `+`, `1.`, `1)`), thematic breaks and setext underlines
/// (`---`, `===`).
fn escape_line_start(line: &str) -> String {
    let line = line.trim_start();
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if line.starts_with(['-', '+', '=']) {
        format!("\\{line}")
    } else if (1..=9).contains(&digits) && line[digits..].starts_with(['.', ')']) {
        format!("{}\\{}", &line[..digits], &line[digits..])
    } else {
        line.to_owned()
    }
}

/// `**word**`, or `<strong>word</strong>` where CommonMark would not read the asterisks as
/// emphasis: an opening `**` followed by punctuation must itself follow whitespace or
/// punctuation ("movie**.**" stays literal asterisks). The closing `**` is always followed by
/// the superscript, which is punctuation to CommonMark, so it always closes.
fn strong(shown: &str, before: Option<char>) -> String {
    let punctuation = |c: char| !c.is_alphanumeric() && !c.is_whitespace();
    let opens = match shown.chars().next() {
        Some(first) if punctuation(first) => {
            before.is_none_or(|b| b.is_whitespace() || punctuation(b))
        }
        _ => true,
    };
    if opens {
        format!("**{shown}**")
    } else {
        format!("<strong>{shown}</strong>")
    }
}

fn superscript(bucket: Bucket) -> String {
    const DIGITS: [char; 6] = ['⁰', '¹', '²', '³', '⁴', '⁵'];
    let sign = if bucket.is_negative() { '⁻' } else { '⁺' };
    format!("{sign}{}", DIGITS[bucket.strength().min(5) as usize])
}

impl MarkdownWriter {
    /// Bold for every shaded word would bury the text; like plain ANSI, only strong words
    /// (or the `--top-k` words) are marked.
    fn marked(&self, bucket: Bucket) -> bool {
        let strength = bucket.strength();
        strength > 0 && (self.display.top_k.is_some() || strength >= PLAIN_MIN_STRENGTH)
    }

    fn words(&self, text: &ScoredText) -> String {
        let mut body = String::with_capacity(text.text.len() * 2);
        let mut cursor = 0;
        for word in &text.words {
            if word.start < cursor || word.end > text.text.len() {
                continue;
            }
            body.push_str(&escape(&text.text[cursor..word.start]));
            let shown = escape(&text.text[word.start..word.end]);
            if self.marked(word.bucket) {
                let before = text.text[..word.start].chars().next_back();
                body.push_str(&strong(&shown, before));
                body.push_str(&superscript(word.bucket));
            } else {
                body.push_str(&shown);
            }
            cursor = word.end;
        }
        body.push_str(&escape(&text.text[cursor.min(text.text.len())..]));
        // A Markdown paragraph must not contain blank lines; keep the unit's lines as hard breaks.
        body.lines()
            .filter(|line| !line.trim().is_empty())
            .map(escape_line_start)
            .collect::<Vec<_>>()
            .join("  \n")
    }
}

impl RecordWriter for MarkdownWriter {
    fn begin(&mut self, out: &mut dyn Write) -> io::Result<()> {
        let scale: Vec<String> = self
            .display
            .legend_buckets()
            .into_iter()
            .map(superscript)
            .collect();
        let against = match self.display.scale {
            Scale::Diverging => format!(", ⁻ {}", escape(&self.display.against_meaning)),
            Scale::Sequential => String::new(),
        };
        let which = match self.display.top_k {
            Some(_) => String::new(),
            None => format!("; words of strength {PLAIN_MIN_STRENGTH}+ are bold"),
        };
        writeln!(
            out,
            "**Legend:** the superscript after a bold word is its signed strength ({}): ⁺ {}{against}. \
             {}{which}.\n",
            scale.join(" "),
            escape(&self.display.for_meaning),
            escape(&self.display.explanation())
        )
    }

    fn record(&mut self, out: &mut dyn Write, record: &Record) -> io::Result<()> {
        let place = escape(&location(&record.origin));
        match &record.outcome {
            Outcome::Scored(text) => {
                let probabilities: Vec<String> = probability_summary(text)
                    .into_iter()
                    .map(|(i, p)| {
                        if i == text.predicted {
                            format!("**{}** {p:.2}", escape(&text.labels[i]))
                        } else {
                            format!("{} {p:.2}", escape(&text.labels[i]))
                        }
                    })
                    .collect();
                writeln!(
                    out,
                    "#### {place}\n\n{} · explaining *{}* with `{}`\n\n{}\n",
                    probabilities.join(" · "),
                    escape(&explained_name(text)),
                    text.method,
                    self.words(text)
                )
            }
            Outcome::Empty { .. } => writeln!(out, "#### {place}\n\n*empty, nothing to explain*\n"),
            // Errors are reported on stderr by the caller (see `writes_errors`).
            Outcome::Failed { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a*b_[c]"), "a\\*b\\_\\[c\\]");
    }

    #[test]
    fn superscripts_carry_sign_and_strength() {
        assert_eq!(superscript(Bucket(5)), "⁺⁵");
        assert_eq!(superscript(Bucket(-2)), "⁻²");
    }
}
