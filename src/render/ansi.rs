//! Terminal output (`--format ansi`): a legend line, then per record a header (where it came
//! from, class probabilities, what is explained) and the text with words shaded by the palette.
//! Without colour the marks stay visible as `[word]+4` markers.

use std::io::{self, Write};

use super::palette::{Bucket, Palette, Rgb, Scale};
use super::scored::{
    Display, Outcome, Record, RecordWriter, ScoredText, explained_name, location,
    probability_summary,
};
use super::visible_controls;

/// How colours are written to the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorDepth {
    /// 24-bit `ESC[48;2;r;g;bm`, when `COLORTERM` is `truecolor` or `24bit`.
    TrueColor,
    /// The nearest xterm-256 colour, which every colour terminal understands.
    Xterm256,
}

impl ColorDepth {
    /// From the `COLORTERM` convention.
    pub fn from_colorterm(colorterm: Option<&str>) -> Self {
        match colorterm {
            Some(v) if v.eq_ignore_ascii_case("truecolor") || v.eq_ignore_ascii_case("24bit") => {
                ColorDepth::TrueColor
            }
            _ => ColorDepth::Xterm256,
        }
    }

    fn background(self, rgb: Rgb) -> String {
        match self {
            ColorDepth::TrueColor => format!("\x1b[48;2;{};{};{}m", rgb.0, rgb.1, rgb.2),
            ColorDepth::Xterm256 => format!("\x1b[48;5;{}m", rgb.to_xterm256()),
        }
    }

    fn foreground(self, rgb: Rgb) -> String {
        match self {
            ColorDepth::TrueColor => format!("\x1b[38;2;{};{};{}m", rgb.0, rgb.1, rgb.2),
            ColorDepth::Xterm256 => format!("\x1b[38;5;{}m", rgb.to_xterm256()),
        }
    }
}

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";

/// Without colour, only words at least this strong get a marker unless `--top-k` chose them,
/// so the plain text stays readable.
pub const PLAIN_MIN_STRENGTH: u8 = 3;

pub struct AnsiWriter {
    pub display: Display,
    pub palette: Palette,
    /// `None` writes no escape sequence at all (`--color never`, `NO_COLOR`, not a terminal).
    pub color: Option<ColorDepth>,
}

impl AnsiWriter {
    fn style(&self, bucket: Bucket) -> Option<String> {
        let depth = self.color?;
        let background = self.palette.bucket_color(bucket)?;
        Some(format!(
            "{}{}",
            depth.background(background),
            depth.foreground(background.text_color())
        ))
    }

    fn swatch(&self, bucket: Bucket) -> String {
        let label = format!("{:+}", bucket.0);
        match self.style(bucket) {
            Some(style) => format!("{style} {label} {RESET}"),
            None => label,
        }
    }

    fn legend(&self) -> String {
        let explanation = self.display.explanation();
        let Some(_) = self.color else {
            // Without colour the legend explains the `[word]+N` markers instead of swatches.
            let against = match self.display.scale {
                Scale::Diverging => format!(", [word]-N {}", self.display.against_meaning),
                Scale::Sequential => String::new(),
            };
            let which = match self.display.top_k {
                Some(_) => String::new(),
                None => format!(
                    "; only strength {PLAIN_MIN_STRENGTH}+ is marked, --top-k N marks the N most relevant"
                ),
            };
            return format!(
                "legend: [word]+N {}{against}; N = strength 1–5  ({explanation}{which})",
                self.display.for_meaning
            );
        };
        let swatches =
            |buckets: &[Bucket]| -> String { buckets.iter().map(|&b| self.swatch(b)).collect() };
        let (against, for_class): (Vec<Bucket>, Vec<Bucket>) = self
            .display
            .legend_buckets()
            .into_iter()
            .partition(|b| b.is_negative());
        let mut line = String::from("legend: ");
        if !against.is_empty() {
            line.push_str(&format!(
                "{} {} · ",
                self.display.against_meaning,
                swatches(&against)
            ));
        }
        line.push_str(&format!(
            "{} {}",
            swatches(&for_class),
            self.display.for_meaning
        ));
        format!("{line}  {DIM}({explanation}){RESET}")
    }

    fn header(&self, place: &str, text: &ScoredText) -> String {
        let mut probabilities = probability_summary(text).into_iter();
        let mut header = String::new();
        let (bold, dim, reset) = match self.color {
            Some(_) => (BOLD, DIM, RESET),
            None => ("", "", ""),
        };
        header.push_str(&format!("{dim}{place}{reset}"));
        if let Some((first, p)) = probabilities.next() {
            let label = visible_controls(&text.labels[first]);
            header.push_str(&format!(" · {bold}{label}{reset} {p:.2}"));
        }
        for (i, p) in probabilities {
            header.push_str(&format!(" · {} {p:.2}", visible_controls(&text.labels[i])));
        }
        header.push_str(&format!(
            " {dim}· explaining {}{reset}",
            visible_controls(&explained_name(text))
        ));
        if text.windows > 1 {
            header.push_str(&format!(" {dim}· {} windows{reset}", text.windows));
        }
        header
    }

    fn body(&self, text: &ScoredText) -> String {
        let mut body = String::with_capacity(text.text.len() * 2);
        let mut cursor = 0;
        for word in &text.words {
            if word.start < cursor || word.end > text.text.len() {
                continue;
            }
            body.push_str(&visible_controls(&text.text[cursor..word.start]));
            let shown = &*visible_controls(&text.text[word.start..word.end]);
            match (self.color, self.style(word.bucket)) {
                (Some(_), Some(style)) => body.push_str(&format!("{style}{shown}{RESET}")),
                (None, _) if self.plain_marked(word.bucket) => {
                    body.push_str(&format!("[{shown}]{:+}", word.bucket.0))
                }
                _ => body.push_str(shown),
            }
            cursor = word.end;
        }
        body.push_str(&visible_controls(&text.text[cursor.min(text.text.len())..]));
        body
    }

    fn plain_marked(&self, bucket: Bucket) -> bool {
        let strength = bucket.strength();
        strength > 0 && (self.display.top_k.is_some() || strength >= PLAIN_MIN_STRENGTH)
    }
}

impl RecordWriter for AnsiWriter {
    fn begin(&mut self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}\n", self.legend())
    }

    fn record(&mut self, out: &mut dyn Write, record: &Record) -> io::Result<()> {
        let place = visible_controls(&location(&record.origin)).into_owned();
        match &record.outcome {
            Outcome::Scored(text) => {
                writeln!(out, "{}", self.header(&place, text))?;
                writeln!(out, "{}\n", self.body(text))
            }
            Outcome::Empty { .. } => {
                let (dim, reset) = match self.color {
                    Some(_) => (DIM, RESET),
                    None => ("", ""),
                };
                writeln!(out, "{dim}{place} · empty, nothing to explain{reset}\n")
            }
            // Errors are reported on stderr by the caller (see `writes_errors`).
            Outcome::Failed { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colorterm_selects_truecolor() {
        assert_eq!(
            ColorDepth::from_colorterm(Some("truecolor")),
            ColorDepth::TrueColor
        );
        assert_eq!(
            ColorDepth::from_colorterm(Some("24bit")),
            ColorDepth::TrueColor
        );
        assert_eq!(ColorDepth::from_colorterm(None), ColorDepth::Xterm256);
        assert_eq!(
            ColorDepth::from_colorterm(Some("yes")),
            ColorDepth::Xterm256
        );
    }

    #[test]
    fn xterm_codes_use_the_nearest_palette_entry() {
        let code = ColorDepth::Xterm256.background(Rgb(255, 0, 0));
        assert_eq!(code, "\x1b[48;5;196m");
        let code = ColorDepth::TrueColor.foreground(Rgb(1, 2, 3));
        assert_eq!(code, "\x1b[38;2;1;2;3m");
    }
}
