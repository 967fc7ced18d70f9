//! Byte offsets ↔ LSP positions, in the encoding negotiated with the client.
//!
//! The engine works in byte offsets of the document text. LSP positions are (line, character)
//! where "character" counts UTF-8 bytes, UTF-16 code units or code points, depending on the
//! `positionEncoding` chosen at `initialize`. Lines end at `\n`, `\r\n` or a lone `\r`.

/// How a position's `character` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    Utf8,
    /// The LSP default, and the only one every client supports.
    #[default]
    Utf16,
    Utf32,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf16 => "utf-16",
            Encoding::Utf32 => "utf-32",
        }
    }

    /// The server's choice among the encodings a client offers: UTF-8 (free with byte offsets)
    /// when offered, otherwise UTF-16, which every client must accept.
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Encoding {
        if offered.into_iter().any(|e| e == "utf-8") {
            Encoding::Utf8
        } else {
            Encoding::Utf16
        }
    }

    fn units(self, c: char) -> u32 {
        match self {
            Encoding::Utf8 => c.len_utf8() as u32,
            Encoding::Utf16 => c.len_utf16() as u32,
            Encoding::Utf32 => 1,
        }
    }
}

/// (line, character) with the character counted in some [`Encoding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinePosition {
    pub line: u32,
    pub character: u32,
}

/// Where each line of a text starts, for fast conversions in both directions.
#[derive(Debug, Clone)]
pub struct LineIndex {
    line_starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let bytes = text.as_bytes();
        let mut line_starts = vec![0];
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\n' => line_starts.push(i + 1),
                b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                    line_starts.push(i + 2);
                    i += 1;
                }
                b'\r' => line_starts.push(i + 1),
                _ => {}
            }
            i += 1;
        }
        LineIndex {
            line_starts,
            len: text.len(),
        }
    }

    /// The line holding byte `offset` and that line's start.
    fn line_of(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        (line, self.line_starts[line])
    }

    /// The byte range of a line's content, its line break excluded.
    fn line_content(&self, text: &str, line: usize) -> (usize, usize) {
        let start = self.line_starts[line];
        let mut end = self.line_starts.get(line + 1).copied().unwrap_or(self.len);
        let bytes = text.as_bytes();
        if end > start && bytes[end - 1] == b'\n' {
            end -= 1;
        }
        if end > start && bytes[end - 1] == b'\r' {
            end -= 1;
        }
        (start, end)
    }

    /// The position of byte `offset` (clamped to the text and moved back to a char boundary).
    pub fn position(&self, text: &str, offset: usize, encoding: Encoding) -> LinePosition {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let (line, start) = self.line_of(offset);
        let character = match encoding {
            Encoding::Utf8 => (offset - start) as u32,
            _ => text[start..offset].chars().map(|c| encoding.units(c)).sum(),
        };
        LinePosition {
            line: line as u32,
            character,
        }
    }

    /// A cursor that converts offsets visited in increasing order in time linear in the
    /// distance walked (instead of the distance from each line start).
    pub fn cursor<'a>(&'a self, text: &'a str, encoding: Encoding) -> PositionCursor<'a> {
        PositionCursor {
            index: self,
            text,
            encoding,
            offset: 0,
            position: LinePosition {
                line: 0,
                character: 0,
            },
        }
    }

    /// The byte offset of a position. Lines past the end map to the end of the text and
    /// characters past the end of a line (or inside a line break) to the end of that line, as
    /// the protocol asks; a character inside a multi-unit char maps to that char's start.
    /// Whether `position` lies past the end of its line's text (or below the last line): a
    /// position there names no character, though [`LineIndex::offset`] clamps it to the end.
    pub fn is_past_line_end(&self, text: &str, position: LinePosition, encoding: Encoding) -> bool {
        let line = position.line as usize;
        if line >= self.line_starts.len() {
            return true;
        }
        let (start, end) = self.line_content(text, line);
        let length: usize = match encoding {
            Encoding::Utf8 => end - start,
            _ => text[start..end]
                .chars()
                .map(|c| encoding.units(c) as usize)
                .sum(),
        };
        position.character as usize > length
    }

    pub fn offset(&self, text: &str, position: LinePosition, encoding: Encoding) -> usize {
        let line = position.line as usize;
        if line >= self.line_starts.len() {
            return self.len;
        }
        let (start, end) = self.line_content(text, line);
        let wanted = position.character as usize;
        if encoding == Encoding::Utf8 {
            let mut offset = (start + wanted).min(end);
            while !text.is_char_boundary(offset) {
                offset -= 1;
            }
            return offset;
        }
        let mut counted = 0usize;
        for (i, c) in text[start..end].char_indices() {
            let next = counted + encoding.units(c) as usize;
            if next > wanted {
                return start + i;
            }
            counted = next;
        }
        end
    }
}

/// See [`LineIndex::cursor`].
pub struct PositionCursor<'a> {
    index: &'a LineIndex,
    text: &'a str,
    encoding: Encoding,
    offset: usize,
    position: LinePosition,
}

impl PositionCursor<'_> {
    pub fn position(&mut self, offset: usize) -> LinePosition {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let (line, _) = self.index.line_of(offset);
        let same_line = line as u32 == self.position.line && offset >= self.offset;
        self.position = if same_line {
            let walked: u32 = match self.encoding {
                Encoding::Utf8 => (offset - self.offset) as u32,
                encoding => self.text[self.offset..offset]
                    .chars()
                    .map(|c| encoding.units(c))
                    .sum(),
            };
            LinePosition {
                line: self.position.line,
                character: self.position.character + walked,
            }
        } else {
            self.index.position(self.text, offset, self.encoding)
        };
        self.offset = offset;
        self.position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str, encoding: Encoding) {
        let index = LineIndex::new(text);
        for (offset, _) in text.char_indices().chain([(text.len(), ' ')]) {
            // Between the \r and \n of a CRLF is not a position a client can name.
            if text[..offset].ends_with('\r') && text[offset..].starts_with('\n') {
                continue;
            }
            let position = index.position(text, offset, encoding);
            assert_eq!(
                index.offset(text, position, encoding),
                offset,
                "{text:?} at {offset} ({position:?}, {encoding:?})"
            );
        }
    }

    #[test]
    fn every_char_boundary_round_trips_in_every_encoding() {
        let text = "a😀b\r\ncafé\tnaïve\n日本語のテキスト\rlast 👍🏽 e\u{301}";
        for encoding in [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32] {
            round_trip(text, encoding);
        }
    }

    #[test]
    fn cursor_agrees_with_direct_conversion_in_any_order() {
        let text = "a😀b\r\ncafé\tnaïve\n日本語 👍🏽\rlast";
        let index = LineIndex::new(text);
        let offsets: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        let mut visits = offsets.clone();
        visits.extend(offsets.iter().rev());
        visits.extend([3, 3, text.len(), 0]);
        for encoding in [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32] {
            let mut cursor = index.cursor(text, encoding);
            for &offset in &visits {
                assert_eq!(
                    cursor.position(offset),
                    index.position(text, offset, encoding),
                    "{offset} {encoding:?}"
                );
            }
        }
    }

    #[test]
    fn utf16_counts_surrogate_pairs_twice() {
        let text = "x😀y";
        let index = LineIndex::new(text);
        let y = text.find('y').unwrap();
        assert_eq!(
            index.position(text, y, Encoding::Utf16),
            LinePosition {
                line: 0,
                character: 3
            }
        );
        assert_eq!(index.position(text, y, Encoding::Utf8).character, 5);
        assert_eq!(index.position(text, y, Encoding::Utf32).character, 2);
        // A position between the two halves of a surrogate pair lands on the emoji's start.
        let inside = LinePosition {
            line: 0,
            character: 2,
        };
        assert_eq!(index.offset(text, inside, Encoding::Utf16), 1);
    }

    #[test]
    fn crlf_and_lone_cr_both_end_lines() {
        let text = "one\r\ntwo\rthree";
        let index = LineIndex::new(text);
        let three = text.find("three").unwrap();
        assert_eq!(
            index.position(text, three, Encoding::Utf16),
            LinePosition {
                line: 2,
                character: 0
            }
        );
        // Past the end of line 0 is its end, before the \r\n.
        let past = LinePosition {
            line: 0,
            character: 99,
        };
        assert_eq!(index.offset(text, past, Encoding::Utf16), 3);
        let beyond = LinePosition {
            line: 9,
            character: 0,
        };
        assert_eq!(index.offset(text, beyond, Encoding::Utf8), text.len());
        assert!(index.is_past_line_end(text, past, Encoding::Utf16));
        assert!(index.is_past_line_end(text, beyond, Encoding::Utf8));
        let at_end = |character| LinePosition { line: 0, character };
        assert!(!index.is_past_line_end(text, at_end(3), Encoding::Utf16));
        assert!(index.is_past_line_end(text, at_end(4), Encoding::Utf16));
    }

    #[test]
    fn negotiation_prefers_utf8_and_falls_back_to_utf16() {
        assert_eq!(Encoding::negotiate(["utf-16", "utf-8"]), Encoding::Utf8);
        assert_eq!(Encoding::negotiate(["utf-32"]), Encoding::Utf16);
        assert_eq!(Encoding::negotiate([]), Encoding::Utf16);
    }
}
