//! Shared output helpers with no terminal or editor types: the palette, display normalisation
//! and relevance buckets. Every front-end (ANSI, HTML, TUI, LSP, editors) picks colours here.

pub mod palette;
// `tokenlens score` output formats over one record model (`scored`).
pub mod ansi;
pub mod html;
pub mod json;
pub mod markdown;
pub mod scored;
pub mod tsv;

pub use palette::{Bucket, Normalization, Palette, Rgb, Scale};

use std::borrow::Cow;

/// `text` with its control characters shown as Unicode control pictures (ESC as `␛`, NUL as
/// `␀`, C1 controls as `�`), tabs, newlines and CR-LF kept: input text must not move a
/// terminal's cursor, retitle its window or clear its screen, and XML forbids most of them.
pub fn visible_controls(text: &str) -> Cow<'_, str> {
    let shown = |c: char, next: Option<char>| match c {
        '\t' | '\n' => None,
        '\r' if next == Some('\n') => None,
        '\u{7f}' => Some('\u{2421}'),
        c if (c as u32) < 0x20 => char::from_u32(0x2400 + c as u32),
        c if ('\u{80}'..='\u{9f}').contains(&c) => Some('\u{fffd}'),
        _ => None,
    };
    let mut chars = text.chars().peekable();
    let mut needs_change = false;
    while let Some(c) = chars.next() {
        if shown(c, chars.peek().copied()).is_some() {
            needs_change = true;
            break;
        }
    }
    if !needs_change {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(shown(c, chars.peek().copied()).unwrap_or(c));
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::visible_controls;

    #[test]
    fn control_characters_become_pictures_and_line_breaks_stay() {
        assert_eq!(
            visible_controls("good \x1b]0;pwned\x07 \x1b[2J\0film\x7f\u{9b}"),
            "good \u{241b}]0;pwned\u{2407} \u{241b}[2J\u{2400}film\u{2421}\u{fffd}"
        );
        assert_eq!(visible_controls("a\tb\r\nc\n"), "a\tb\r\nc\n");
        assert_eq!(visible_controls("a\rb"), "a\u{240d}b");
    }
}
