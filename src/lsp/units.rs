//! Which parts of a document are explained, and in which units.
//!
//! A unit is a paragraph (the engine windows long ones). Text that is not prose — Markdown code
//! blocks, inline code, front matter, link targets and HTML comments, the comment lines and the
//! diff below the scissors line of a git commit message — is *masked*: replaced by spaces of the
//! same byte length, so that every byte offset the engine returns for the masked copy is also an
//! offset into the real document. A masked block (code block, front matter, a comment that opens
//! a line) is a paragraph break; masked inline text is not, even where it fills a whole line.

use crate::segment::{self, Segment, Unit};

/// How a document's language is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Plain,
    Markdown,
    GitCommit,
}

impl Flavor {
    /// The flavour of an LSP language id (`markdown`, `gitcommit`, `git-commit` (Helix),
    /// anything else configured is read as plain text).
    pub fn of_language(language_id: &str) -> Flavor {
        match language_id {
            "markdown" | "mdx" | "quarto" | "rmd" => Flavor::Markdown,
            "gitcommit" | "git-commit" | "git_commit" => Flavor::GitCommit,
            _ => Flavor::Plain,
        }
    }
}

/// The language ids explained when the configuration does not list any.
pub const DEFAULT_LANGUAGES: [&str; 6] = [
    "plaintext",
    "text",
    "markdown",
    "gitcommit",
    "git-commit",
    "scminput",
];

/// Where a non-prose range stands in the document's structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extent {
    /// In place of a paragraph: code blocks, front matter, a comment that opens a line.
    Block,
    /// Inside a paragraph: inline code, link targets, autolinks, a comment within a line.
    Inline,
    /// A comment that opens a line: a block (CommonMark's HTML block interrupts a paragraph),
    /// so prose before it and prose after it on its last line are separate units.
    Opening,
}

fn non_prose(text: &str, flavor: Flavor) -> Vec<(usize, usize, Extent)> {
    match flavor {
        Flavor::Plain => Vec::new(),
        Flavor::Markdown => markdown_non_prose(text),
        Flavor::GitCommit => git_commit_non_prose(text),
    }
}

/// The fill that keeps a document's paragraph structure: blocks become blank, inline text
/// stays visible (as `_`), so that a line of only `code` continues its paragraph.
fn structure_fill(extent: Extent) -> u8 {
    match extent {
        Extent::Block | Extent::Opening => b' ',
        Extent::Inline => b'_',
    }
}

/// `text` with the given ranges overwritten byte by byte by `fill`, line breaks kept, so that
/// lines (and paragraph breaks) stay where they were.
fn overwrite<'a>(
    text: &str,
    ranges: impl Iterator<Item = &'a (usize, usize, Extent)>,
    fill: impl Fn(Extent) -> u8,
) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for &(start, end, extent) in ranges {
        for b in &mut bytes[start..end] {
            if *b != b'\n' && *b != b'\r' {
                *b = fill(extent);
            }
        }
    }
    // Ranges hold whole UTF-8 sequences, each replaced byte for byte by an ASCII character.
    String::from_utf8(bytes).unwrap_or_else(|_| text.to_owned())
}

/// The document with everything that is not prose replaced by spaces (same byte length).
pub fn mask(text: &str, flavor: Flavor) -> String {
    overwrite(text, non_prose(text, flavor).iter(), |_| b' ')
}

/// The masked document (see [`mask`]) and its paragraphs, as byte ranges of the document that
/// neither start nor end in masked text.
pub fn prose_units(text: &str, flavor: Flavor) -> (String, Vec<Segment>) {
    let ranges = non_prose(text, flavor);
    let masked = overwrite(text, ranges.iter(), |_| b' ');
    // Paragraphs are found on a copy where masked inline text is still visible, so that a line
    // of only `code` continues its paragraph instead of breaking it.
    let structure = overwrite(text, ranges.iter(), structure_fill);
    let openings: Vec<(usize, usize)> = ranges
        .iter()
        .filter(|r| r.2 == Extent::Opening)
        .map(|r| (r.0, r.1))
        .collect();
    let units = segment::segments(&structure, Unit::Paragraph)
        .into_iter()
        .flat_map(|unit| split_at(unit, &openings))
        .filter_map(|unit| {
            let span = unit.text(&masked);
            let start = unit.start + (span.len() - span.trim_start().len());
            let end = unit.end - (span.len() - span.trim_end().len());
            (start < end).then_some(Segment { start, end })
        })
        .collect();
    (masked, units)
}

/// `unit` cut into the parts before, between and after the given ranges that lie inside it.
fn split_at(unit: Segment, ranges: &[(usize, usize)]) -> Vec<Segment> {
    let mut parts = Vec::new();
    let mut start = unit.start;
    for &(from, to) in ranges {
        if from >= start && to <= unit.end {
            parts.push(Segment { start, end: from });
            start = to;
        }
    }
    parts.push(Segment {
        start,
        end: unit.end,
    });
    parts
}

/// Lines with their byte offsets, line breaks (`\n`, `\r\n`, a lone `\r`) included.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    segment::line_ranges(text).into_iter()
}

fn git_commit_non_prose(text: &str) -> Vec<(usize, usize, Extent)> {
    let mut out = Vec::new();
    for (start, line) in lines(text) {
        // `git commit -v` puts the diff under this line; everything below it is not message.
        if line.starts_with("# ------------------------ >8 ------------------------") {
            out.push((start, text.len(), Extent::Block));
            break;
        }
        if line.starts_with('#') {
            out.push((start, start + line.len(), Extent::Block));
        }
    }
    out
}

/// Byte ranges of a Markdown document that are not prose.
fn markdown_non_prose(text: &str) -> Vec<(usize, usize, Extent)> {
    let mut out = Vec::new();
    // An open fence: its marker, the marker's length, and the blockquote depth it opened in.
    let mut fence: Option<(u8, usize, usize)> = None;
    let mut in_comment = None;
    let front_matter_end = front_matter_end(text);
    for (index, (start, line)) in lines(text).enumerate() {
        let full = line.trim_end_matches(['\n', '\r']);
        let (depth, content) = inside_blockquotes(full);
        let trimmed = content.trim_start();
        let whole_line = (start, start + line.len(), Extent::Block);
        if front_matter_end.is_some_and(|end| index <= end) {
            out.push(whole_line);
            continue;
        }
        if let Some((marker, length, fence_depth)) = fence {
            // A fence inside a blockquote ends with the blockquote.
            if depth >= fence_depth {
                out.push(whole_line);
                let run = trimmed.bytes().take_while(|&b| b == marker).count();
                if run >= length && trimmed[run..].trim().is_empty() {
                    fence = None;
                }
                continue;
            }
            fence = None;
        }
        let indent = content.len() - trimmed.len();
        if indent <= 3 {
            for marker in [b'`', b'~'] {
                let run = trimmed.bytes().take_while(|&b| b == marker).count();
                if run >= 3 {
                    fence = Some((marker, run, depth));
                }
            }
            if fence.is_some() {
                out.push(whole_line);
                continue;
            }
            if is_link_reference_definition(trimmed) {
                out.push(whole_line);
                continue;
            }
        }
        // The blockquote markers are syntax, not words: masked, as a block so that a line of
        // only markers stays a paragraph break.
        let markers = full.len() - content.len();
        if markers > 0 {
            out.push((start, start + markers, Extent::Block));
        }
        let content_start = start + markers;
        markdown_prose_line(
            content,
            content_start,
            line.len() - markers,
            &mut in_comment,
            &mut out,
        );
    }
    let spans = multi_line_code_spans(text, &out);
    out.extend(spans);
    out
}

/// Code spans that go on over line breaks (CommonMark allows them within a paragraph), which the
/// line-by-line pass leaves as unmatched backtick runs: within each paragraph of what is still
/// visible, a run of n backticks opens a span that the next run of exactly n closes; a run
/// without one is literal text.
fn multi_line_code_spans(
    text: &str,
    found: &[(usize, usize, Extent)],
) -> Vec<(usize, usize, Extent)> {
    let visible = overwrite(text, found.iter(), structure_fill);
    let bytes = visible.as_bytes();
    let run_at = |at: usize| bytes[at..].iter().take_while(|&&b| b == b'`').count();
    let mut spans = Vec::new();
    for paragraph in segment::segments(&visible, Unit::Paragraph) {
        let mut at = paragraph.start;
        while at < paragraph.end {
            if bytes[at] != b'`' {
                at += 1;
                continue;
            }
            let run = run_at(at);
            let mut close = at + run;
            let mut end = None;
            while close < paragraph.end {
                if bytes[close] == b'`' {
                    let other = run_at(close);
                    if other == run {
                        end = Some(close + run);
                        break;
                    }
                    close += other;
                } else {
                    close += 1;
                }
            }
            match end {
                Some(end) => {
                    spans.push((at, end, Extent::Inline));
                    at = end;
                }
                None => at += run,
            }
        }
    }
    spans
}

/// How many blockquote markers (`>`, each after at most three spaces and followed by an
/// optional space) open a line, and the line after them.
fn inside_blockquotes(line: &str) -> (usize, &str) {
    let mut depth = 0;
    let mut rest = line;
    loop {
        let trimmed = rest.trim_start_matches(' ');
        if rest.len() - trimmed.len() > 3 {
            return (depth, rest);
        }
        match trimmed.strip_prefix('>') {
            Some(after) => {
                depth += 1;
                rest = after.strip_prefix(' ').unwrap_or(after);
            }
            None => return (depth, rest),
        }
    }
}

/// The index of the line that closes front matter opened on the first line (`---` or `+++`,
/// after a byte-order mark, trailing blanks allowed). Without a closing line there is no front
/// matter: a lone `---` at the top is a horizontal rule, or front matter still being typed.
fn front_matter_end(text: &str) -> Option<usize> {
    let mut lines = lines(text).map(|(_, line)| line.trim_end());
    let opening = lines.next()?.trim_start_matches('\u{feff}');
    if opening != "---" && opening != "+++" {
        return None;
    }
    let closings: &[&str] = if opening == "---" {
        &["---", "..."]
    } else {
        &["+++"]
    };
    lines
        .position(|line| closings.contains(&line))
        .map(|i| i + 1)
}

/// The non-prose parts of one Markdown line outside code blocks: inline code, link targets,
/// autolinks, and HTML comments, which may start and end anywhere, also on other lines
/// (`in_comment` carries an open one, and its extent, to the next line). A comment that opens a
/// line is a block, as an HTML block is in CommonMark; `line_length` includes the line break.
fn markdown_prose_line(
    content: &str,
    start: usize,
    line_length: usize,
    in_comment: &mut Option<Extent>,
    out: &mut Vec<(usize, usize, Extent)>,
) {
    let mut from = 0;
    // Where the comment being closed began on this line (0 when it began on an earlier one).
    let mut comment_from = 0;
    loop {
        if let Some(extent) = *in_comment {
            // `from` is past the opening `<!--`, so `<!-->` does not close what it opens.
            match content[from..].find("-->") {
                Some(end) => {
                    let end = from + end + 3;
                    out.push((start + comment_from, start + end, extent));
                    *in_comment = None;
                    from = end;
                }
                None => {
                    out.push((start + comment_from, start + line_length, extent));
                    return;
                }
            }
        } else {
            let rest = &content[from..];
            let code = inline_non_prose(rest);
            let opening = rest
                .match_indices("<!--")
                .map(|(at, _)| at)
                .find(|&at| !code.iter().any(|&(s, e)| s <= at && at < e));
            let shift =
                |&(s, e): &(usize, usize)| (start + from + s, start + from + e, Extent::Inline);
            match opening {
                Some(at) => {
                    out.extend(code.iter().filter(|&&(s, _)| s < at).map(shift));
                    comment_from = from + at;
                    let opens_line = content[..comment_from].trim().is_empty();
                    from = comment_from + 4;
                    *in_comment = Some(if opens_line {
                        Extent::Opening
                    } else {
                        Extent::Inline
                    });
                }
                None => {
                    out.extend(code.iter().map(shift));
                    return;
                }
            }
        }
    }
}

/// `[label]: https://…` (a whole line that only defines a link target).
fn is_link_reference_definition(line: &str) -> bool {
    line.starts_with('[')
        && line
            .find("]:")
            .is_some_and(|close| !line[1..close].contains(']'))
}

/// Inline code spans, link and image targets `(…)` and autolinks `<…://…>` in one line.
fn inline_non_prose(line: &str) -> Vec<(usize, usize)> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'`' => {
                let run = bytes[i..].iter().take_while(|&&b| b == b'`').count();
                let closing = "`".repeat(run);
                match line[i + run..].find(&closing) {
                    Some(found) => {
                        let end = i + run + found + run;
                        out.push((i, end));
                        i = end;
                    }
                    None => i += run,
                }
            }
            b']' if bytes.get(i + 1) == Some(&b'(') => match matching_paren(line, i + 1) {
                Some(end) => {
                    out.push((i + 1, end));
                    i = end;
                }
                None => i += 1,
            },
            b'<' => match line[i..].find('>') {
                Some(close)
                    if line[i..i + close].contains("://") || line[i..i + close].contains('@') =>
                {
                    out.push((i, i + close + 1));
                    i += close + 1;
                }
                _ => i += 1,
            },
            _ => i += 1,
        }
    }
    out
}

/// The end (exclusive) of the parenthesised group opening at `open`, nested parens allowed.
fn matching_paren(line: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in line.bytes().enumerate().skip(open) {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_texts(text: &str, flavor: Flavor) -> Vec<String> {
        let (masked, units) = prose_units(text, flavor);
        assert_eq!(masked, mask(text, flavor));
        assert_eq!(masked.len(), text.len());
        units
            .iter()
            .map(|s| {
                s.text(&masked)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn markdown_skips_front_matter_code_and_link_targets() {
        let doc = "---\ntitle: Great\n---\n# Review\n\nI loved [this film](https://x.org/a_(b)) \
                   and `bad_code()`.\n\n```rust\nfn terrible() {}\n\nlet awful = 1;\n```\n\
                   [ref]: https://example.com/awful\n\nSee <https://x.org/worst> today.\n";
        assert_eq!(
            unit_texts(doc, Flavor::Markdown),
            ["# Review", "I loved [this film] and .", "See today."]
        );
    }

    #[test]
    fn html_comments_are_masked_wherever_they_start_and_end() {
        let doc = "Good <!-- awful --> film.\nNice <!-- horrible\nstill hidden --> acting `<!--` here.\n<!-- a --> after";
        let masked = mask(doc, Flavor::Markdown);
        let visible: Vec<&str> = masked.split_whitespace().collect();
        assert_eq!(
            visible,
            ["Good", "film.", "Nice", "acting", "here.", "after"]
        );
        assert_eq!(masked.len(), doc.len());
    }

    #[test]
    fn a_comment_that_opens_a_line_separates_the_prose_around_it() {
        let doc = "The film is dull.\n<!-- note --> The ending is superb.\nNext line.\n\
                   Before <!-- inline --> after.\n<!-- two\nlines --> Tail.";
        assert_eq!(
            unit_texts(doc, Flavor::Markdown),
            [
                "The film is dull.",
                "The ending is superb. Next line. Before after.",
                "Tail."
            ]
        );
    }

    #[test]
    fn tilde_fences_and_html_comments_are_masked() {
        let doc = "Before.\n~~~~\ncode ~~~ still code\n~~~~\n<!-- a\nhidden -->\nAfter.";
        assert_eq!(unit_texts(doc, Flavor::Markdown), ["Before.", "After."]);
    }

    #[test]
    fn git_commit_comments_and_diff_are_not_explained() {
        let doc = "Fix the awful crash\n\nIt was bad.\n# Please enter the commit message\n\
                   # ------------------------ >8 ------------------------\ndiff --git a b\n+great\n";
        assert_eq!(
            unit_texts(doc, Flavor::GitCommit),
            ["Fix the awful crash", "It was bad."]
        );
    }

    #[test]
    fn masking_keeps_byte_offsets_of_multibyte_text() {
        let doc = "Café `naïve ☕` 😀 fine\r\n\r\nnext";
        let (masked, found) = prose_units(doc, Flavor::Markdown);
        assert_eq!(masked.len(), doc.len());
        assert_eq!(&doc[found[1].start..found[1].end], "next");
        assert!(doc[found[0].start..found[0].end].starts_with("Café"));
    }

    #[test]
    fn fences_inside_blockquotes_are_masked_and_end_with_the_blockquote() {
        let doc = "> Quoted prose before.\n> ```\n> let secret = code();\n> ```\n> Quoted after.\n\n\
                   > ```\n> unclosed();\n\nPlain prose.\n\n>> ~~~\n>> nested();\n>> ~~~\nEnd.";
        assert_eq!(
            unit_texts(doc, Flavor::Markdown),
            [
                "Quoted prose before.",
                "Quoted after.",
                "Plain prose.",
                "End."
            ]
        );
        assert_eq!(inside_blockquotes("> > x"), (2, "x"));
        assert_eq!(inside_blockquotes("    > x"), (0, "    > x"));
    }

    #[test]
    fn blockquote_markers_are_masked_and_inline_code_in_quotes_is_masked_where_it_is() {
        let doc = "> The acting was `bad_code()` awful.\n> Loved it.\n>\n> > Second `x` one.\nEnd.";
        let (masked, units) = prose_units(doc, Flavor::Markdown);
        assert!(!masked.contains('>') && !masked.contains('`'), "{masked:?}");
        assert!(
            !masked.contains("bad_code") && masked.contains("awful"),
            "{masked:?}"
        );
        assert_eq!(
            unit_texts(doc, Flavor::Markdown),
            ["The acting was awful. Loved it.", "Second one. End."]
        );
        // Offsets still point into the document.
        assert_eq!(&doc[units[0].start..units[0].start + 3], "The");
    }

    #[test]
    fn code_spans_over_line_breaks_are_masked_and_a_lone_backtick_is_text() {
        let doc = "The plot `drags\non and on` yet the cast shines.\n\nA lone ` backtick stays.\n\n\
                   > Slow ``x\n> y`` end, `one` line.\n";
        let (masked, _) = prose_units(doc, Flavor::Markdown);
        assert_eq!(masked.len(), doc.len());
        assert!(
            !masked.contains("drags") && !masked.contains("on and on"),
            "{masked:?}"
        );
        assert_eq!(
            unit_texts(doc, Flavor::Markdown),
            [
                "The plot yet the cast shines.",
                "A lone ` backtick stays.",
                "Slow end, line."
            ]
        );
    }

    #[test]
    fn lone_carriage_returns_separate_paragraphs_and_close_fences() {
        let doc = "First paragraph\rgoes on.\r\r```\rcode();\r```\rSecond paragraph.";
        for flavor in [Flavor::Plain, Flavor::Markdown] {
            let (_, found) = prose_units(doc, flavor);
            let texts: Vec<&str> = found.iter().map(|u| &doc[u.start..u.end]).collect();
            assert_eq!(texts[0], "First paragraph\rgoes on.", "{flavor:?}");
            assert_eq!(texts.len(), 2, "{flavor:?}: {texts:?}");
        }
        assert_eq!(
            unit_texts(doc, Flavor::Markdown),
            ["First paragraph goes on.", "Second paragraph."]
        );
    }

    #[test]
    fn masked_inline_text_filling_a_line_does_not_break_its_paragraph() {
        let doc = "The helper\n`parse_config()`\nis a joy to use.\n<https://x.org/a>\nReally.\n\n\
                   Before\n<!-- block comment -->\nAfter\n\n`only code`\n\nLast";
        assert_eq!(
            unit_texts(doc, Flavor::Markdown),
            [
                "The helper is a joy to use. Really.",
                "Before",
                "After",
                "Last"
            ]
        );
        // Units start and end on prose, never on masked text.
        let (masked, units) = prose_units("`x` Good film `y`", Flavor::Markdown);
        assert_eq!(units[0].text(&masked), "Good film");
    }

    #[test]
    fn only_closed_front_matter_is_masked_also_after_a_byte_order_mark() {
        let unclosed = "---\n\nGreat film, I loved it.\n\nTerrible plot.\n";
        assert_eq!(
            unit_texts(unclosed, Flavor::Markdown),
            ["---", "Great film, I loved it.", "Terrible plot."]
        );
        let with_mark = "\u{feff}--- \ntitle: awful terrible\n---\nGreat film.\n";
        assert_eq!(unit_texts(with_mark, Flavor::Markdown), ["Great film."]);
        let toml = "+++\ntitle = \"awful\"\n+++\nNice.";
        assert_eq!(unit_texts(toml, Flavor::Markdown), ["Nice."]);
    }

    #[test]
    fn plain_text_is_untouched() {
        let doc = "`not code` here\n\n# not a comment";
        assert_eq!(mask(doc, Flavor::Plain), doc);
    }
}
