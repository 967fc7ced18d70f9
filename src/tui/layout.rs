//! Word wrapping of one unit's text into screen rows. Rows are byte ranges of the text, so colours
//! (byte spans of words) and mouse clicks (columns) map back to the original text exactly.

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// One screen row: `text[start..end]`, drawn from the first column of the text pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowSpan {
    pub start: usize,
    pub end: usize,
}

/// Columns a grapheme takes on screen. Tabs and control characters are drawn as one space
/// (see [`display_grapheme`]); zero-width graphemes are given one column so a click can reach them.
pub fn grapheme_width(grapheme: &str) -> usize {
    if grapheme.chars().any(char::is_control) {
        1
    } else {
        grapheme.width().max(1)
    }
}

/// What to put on screen for a grapheme: control characters (tabs, stray escapes) would move the
/// terminal's cursor or change its state, so they become a space.
pub fn display_grapheme(grapheme: &str) -> &str {
    if grapheme.chars().any(char::is_control) {
        " "
    } else {
        grapheme
    }
}

fn is_blank(grapheme: &str) -> bool {
    grapheme.chars().all(char::is_whitespace)
}

/// Splits `text` into rows of at most `width` columns: at line breaks, then at the last blank
/// before the edge, and inside a word only when the word alone is wider than the pane.
pub fn wrap(text: &str, width: usize) -> Vec<RowSpan> {
    let width = width.max(1);
    let mut rows = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        wrap_line(
            text,
            line_start,
            line_start + content.len(),
            width,
            &mut rows,
        );
        line_start += line.len();
    }
    if rows.is_empty() {
        rows.push(RowSpan { start: 0, end: 0 });
    }
    rows
}

fn wrap_line(text: &str, start: usize, end: usize, width: usize, rows: &mut Vec<RowSpan>) {
    let mut row_start = start;
    let mut column = 0;
    // The latest blank on this row: where the row may end and where the next one would begin.
    let mut last_blank: Option<(usize, usize)> = None;
    for (offset, grapheme) in text[start..end].grapheme_indices(true) {
        let at = start + offset;
        let cells = grapheme_width(grapheme);
        if is_blank(grapheme) {
            if column + cells > width {
                rows.push(RowSpan {
                    start: row_start,
                    end: at,
                });
                row_start = at + grapheme.len();
                column = 0;
                last_blank = None;
            } else {
                column += cells;
                last_blank = Some((at, at + grapheme.len()));
            }
            continue;
        }
        if column + cells > width && column > 0 {
            match last_blank {
                Some((blank, next)) if next > row_start => {
                    rows.push(RowSpan {
                        start: row_start,
                        end: blank,
                    });
                    row_start = next;
                    column = text[next..at].graphemes(true).map(grapheme_width).sum();
                }
                _ => {
                    rows.push(RowSpan {
                        start: row_start,
                        end: at,
                    });
                    row_start = at;
                    column = 0;
                }
            }
            last_blank = None;
        }
        column += cells;
    }
    rows.push(RowSpan {
        start: row_start,
        end,
    });
}

/// The byte offset of the grapheme drawn at `column` of `row`, if the row reaches that far.
pub fn byte_at_column(text: &str, row: RowSpan, column: usize) -> Option<usize> {
    let mut x = 0;
    for (offset, grapheme) in text[row.start..row.end].grapheme_indices(true) {
        let cells = grapheme_width(grapheme);
        if column < x + cells {
            return Some(row.start + offset);
        }
        x += cells;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str, width: usize) -> Vec<&str> {
        wrap(text, width)
            .iter()
            .map(|r| &text[r.start..r.end])
            .collect()
    }

    #[test]
    fn wraps_at_blanks_and_line_breaks() {
        assert_eq!(
            rows("a great film\nbad end", 8),
            ["a great", "film", "bad end"]
        );
        assert_eq!(rows("", 8), [""]);
    }

    #[test]
    fn breaks_words_wider_than_the_pane() {
        assert_eq!(rows("abcdefghij", 4), ["abcd", "efgh", "ij"]);
    }

    #[test]
    fn wide_characters_take_two_columns() {
        // Each ideograph is two columns wide: three fit in six columns.
        assert_eq!(rows("日本語の映画", 6), ["日本語", "の映画"]);
        let text = "日本語";
        let row = wrap(text, 10)[0];
        assert_eq!(byte_at_column(text, row, 0), Some(0));
        assert_eq!(byte_at_column(text, row, 1), Some(0));
        assert_eq!(byte_at_column(text, row, 2), Some(3));
        assert_eq!(byte_at_column(text, row, 6), None);
    }

    #[test]
    fn crlf_and_tabs_stay_inside_the_text() {
        let text = "one\ttwo\r\nthree";
        assert_eq!(rows(text, 20), ["one\ttwo", "three"]);
        assert_eq!(display_grapheme("\t"), " ");
    }
}
