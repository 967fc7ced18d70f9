//! `--format html`: one self-contained page (inline CSS, no scripts, no external resources)
//! with a legend, each record's class probabilities and its words shaded by the palette; every
//! word's hover title gives its score. The markup is well-formed XML as well as HTML, which the
//! tests check with an XML parser.

use std::io::{self, Write};

use super::palette::{Bucket, Palette};
use super::scored::{
    Display, Outcome, Record, RecordWriter, ScoredText, explained_name, location,
    probability_summary,
};

pub struct HtmlWriter {
    pub display: Display,
    pub palette: Palette,
}

/// Escapes text for element content and attribute values (control characters, which XML
/// forbids, become visible pictures).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in super::visible_controls(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// CSS class of a bucket: `p1`..`p5` (for), `n1`..`n5` (against).
fn bucket_class(bucket: Bucket) -> String {
    let sign = if bucket.is_negative() { 'n' } else { 'p' };
    format!("{sign}{}", bucket.strength())
}

const BASE_CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;color:#222;background:#fff;line-height:1.5}
h1{font-size:1.2rem;margin:0 0 .4rem}
.legend{margin:.4rem 0 1.2rem;font-size:.9rem}
.legend .w{display:inline-block;min-width:2.2em;text-align:center;font-size:.8rem}
.note{color:#555;font-size:.85rem}
.record{border-top:1px solid #ddd;padding:.6rem 0 .9rem}
.where{color:#555;font-size:.85rem;margin:0 0 .3rem}
.probs{border-collapse:collapse;font-size:.85rem;margin:0 0 .5rem}
.probs th{text-align:left;font-weight:normal;padding:0 .6rem 0 0}
.probs tr.predicted th,.probs tr.predicted td{font-weight:600}
.probs td{padding:0 .4rem 0 0;font-variant-numeric:tabular-nums}
.track{display:inline-block;width:8rem;height:.6rem;background:#eee;vertical-align:middle}
.bar{display:block;height:100%;background:#777}
.text{white-space:pre-wrap;overflow-wrap:anywhere;font-size:1.05rem;margin:0}
.w{border-radius:3px;-webkit-print-color-adjust:exact;print-color-adjust:exact}
";

impl HtmlWriter {
    fn css(&self) -> String {
        let mut css = String::from(BASE_CSS);
        for strength in 1..=5i8 {
            for bucket in [Bucket(strength), Bucket(-strength)] {
                if let Some(background) = self.palette.bucket_color(bucket) {
                    // The shadow widens the shading without padding, which would shift the text.
                    css.push_str(&format!(
                        ".{}{{background:{bg};box-shadow:0 0 0 1px {bg};color:{}}}\n",
                        bucket_class(bucket),
                        background.text_color().hex(),
                        bg = background.hex(),
                    ));
                }
            }
        }
        css
    }

    fn legend(&self) -> String {
        let swatch = |b: Bucket| {
            format!(
                "<span class=\"w {}\" title=\"strength {:+}\">{:+}</span>",
                bucket_class(b),
                b.0,
                b.0
            )
        };
        let buckets = self.display.legend_buckets();
        let (against, for_class): (Vec<Bucket>, Vec<Bucket>) =
            buckets.iter().partition(|b| b.is_negative());
        let mut legend = String::from("<p class=\"legend\">Legend: ");
        if !against.is_empty() {
            legend.push_str(&format!(
                "{} {} · ",
                escape(&self.display.against_meaning),
                against.iter().map(|&b| swatch(b)).collect::<String>()
            ));
        }
        legend.push_str(&format!(
            "{} {}<br/><span class=\"note\">{}. Hover a word for its score.</span></p>\n",
            for_class.iter().map(|&b| swatch(b)).collect::<String>(),
            escape(&self.display.for_meaning),
            escape(&self.display.explanation())
        ));
        legend
    }

    fn probabilities(&self, text: &ScoredText) -> String {
        let mut table = String::from("<table class=\"probs\">");
        for (i, p) in probability_summary(text) {
            let class = if i == text.predicted {
                " class=\"predicted\""
            } else {
                ""
            };
            let percent = if p.is_finite() { p * 100.0 } else { 0.0 };
            table.push_str(&format!(
                "<tr{class}><th>{}</th><td><span class=\"track\"><span class=\"bar\" style=\"width:{percent:.1}%\"></span></span></td><td>{p:.3}</td></tr>",
                escape(&text.labels[i])
            ));
        }
        table.push_str("</table>");
        table
    }

    fn words(&self, text: &ScoredText) -> String {
        let mut body = String::with_capacity(text.text.len() * 4);
        let mut cursor = 0;
        for word in &text.words {
            if word.start < cursor || word.end > text.text.len() {
                continue;
            }
            body.push_str(&escape(&text.text[cursor..word.start]));
            let class = match word.bucket.strength() {
                0 => "w".to_string(),
                _ => format!("w {}", bucket_class(word.bucket)),
            };
            let title = format!(
                "{}: {:+.3} (score {:.4e}, strength {:+})",
                word.text, word.normalized, word.score, word.bucket.0
            );
            body.push_str(&format!(
                "<span class=\"{class}\" title=\"{}\">{}</span>",
                escape(&title),
                escape(&text.text[word.start..word.end])
            ));
            cursor = word.end;
        }
        body.push_str(&escape(&text.text[cursor.min(text.text.len())..]));
        body
    }
}

impl RecordWriter for HtmlWriter {
    fn begin(&mut self, out: &mut dyn Write) -> io::Result<()> {
        write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
             <meta name=\"generator\" content=\"tokenlens {}\"/>\n\
             <title>tokenlens · {}</title>\n<style>\n{}</style>\n</head>\n<body>\n\
             <h1>tokenlens · {}</h1>\n{}",
            env!("CARGO_PKG_VERSION"),
            escape(self.display.method),
            self.css(),
            escape(self.display.method),
            self.legend()
        )
    }

    fn record(&mut self, out: &mut dyn Write, record: &Record) -> io::Result<()> {
        let place = escape(&location(&record.origin));
        match &record.outcome {
            Outcome::Scored(text) => writeln!(
                out,
                "<section class=\"record\">\n<p class=\"where\">{place} · explaining <b>{}</b> · model {}</p>\n{}\n<p class=\"text\" dir=\"auto\">{}</p>\n</section>",
                escape(&explained_name(text)),
                escape(&text.model),
                self.probabilities(text),
                self.words(text)
            ),
            Outcome::Empty { .. } => writeln!(
                out,
                "<section class=\"record\">\n<p class=\"where\">{place} · empty, nothing to explain</p>\n</section>"
            ),
            // Errors are reported on stderr by the caller (see `writes_errors`).
            Outcome::Failed { .. } => Ok(()),
        }
    }

    fn finish(&mut self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "</body>\n</html>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">Tom's & co</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom&#39;s &amp; co&lt;/a&gt;"
        );
    }

    #[test]
    fn bucket_classes_name_sign_and_strength() {
        assert_eq!(bucket_class(Bucket(3)), "p3");
        assert_eq!(bucket_class(Bucket(-5)), "n5");
    }
}
