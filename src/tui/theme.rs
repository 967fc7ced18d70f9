//! Every style the TUI draws with. Relevance colours come from [`crate::render::palette`] (the one
//! palette shared with `score`, HTML and the editors); this module only converts them to ratatui
//! types for the terminal at hand and names the chrome styles by what they mean.

use ratatui::style::{Color, Modifier, Style};

use crate::render::palette::{Bucket, Palette, Rgb};

/// What the terminal can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    /// 24-bit colour (`COLORTERM=truecolor|24bit`).
    TrueColor,
    /// The xterm-256 palette: RGB is mapped to the nearest cube or grey entry, because terminals
    /// without truecolor misread `38;2;r;g;b` and paint random colours.
    Ansi256,
    /// `NO_COLOR` is set: relevance is shown with bold / underline markers instead.
    NoColor,
}

impl ColorMode {
    /// The mode the environment asks for (`NO_COLOR` wins, then `COLORTERM`).
    pub fn from_env() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let colorterm = std::env::var("COLORTERM").unwrap_or_default();
        Self::detect(no_color, &colorterm)
    }

    pub fn detect(no_color: bool, colorterm: &str) -> Self {
        if no_color {
            ColorMode::NoColor
        } else if matches!(colorterm, "truecolor" | "24bit") {
            ColorMode::TrueColor
        } else {
            ColorMode::Ansi256
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ColorMode::TrueColor => "truecolor",
            ColorMode::Ansi256 => "256 colours",
            ColorMode::NoColor => "no colour",
        }
    }
}

/// Styles for one colour mode and palette.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub mode: ColorMode,
    pub palette: Palette,
}

impl Theme {
    pub fn new(mode: ColorMode, palette: Palette) -> Self {
        Theme { mode, palette }
    }

    fn color(self, rgb: Rgb) -> Option<Color> {
        match self.mode {
            ColorMode::TrueColor => Some(Color::Rgb(rgb.0, rgb.1, rgb.2)),
            ColorMode::Ansi256 => Some(Color::Indexed(rgb.to_xterm256())),
            ColorMode::NoColor => None,
        }
    }

    /// The style of a word (or piece) whose display intensity is `intensity` (normalised, −1..1).
    pub fn relevance(self, intensity: f64) -> Style {
        self.bucket(Bucket::of(intensity))
    }

    /// The style of one relevance bucket: palette background with readable text, or without
    /// colour a marker: bold for strong evidence for the target, underline for evidence against.
    pub fn bucket(self, bucket: Bucket) -> Style {
        if self.mode == ColorMode::NoColor {
            return match (bucket.is_negative(), bucket.strength()) {
                (_, 0) => Style::new(),
                (true, s) if s >= 3 => {
                    Style::new().add_modifier(Modifier::UNDERLINED | Modifier::BOLD)
                }
                (true, _) => Style::new().add_modifier(Modifier::UNDERLINED),
                (false, s) if s >= 4 => {
                    Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)
                }
                (false, s) if s >= 2 => Style::new().add_modifier(Modifier::BOLD),
                (false, _) => Style::new(),
            };
        }
        match self.palette.bucket_color(bucket) {
            None => Style::new(),
            Some(background) => {
                let mut style = Style::new();
                if let Some(bg) = self.color(background) {
                    style = style.bg(bg);
                }
                if let Some(fg) = self.color(background.text_color()) {
                    style = style.fg(fg);
                }
                style
            }
        }
    }

    /// The palette's neutral swatch (the legend's zero).
    pub fn neutral(self) -> Style {
        match self.color(self.palette.neutral()) {
            Some(bg) => Style::new().bg(bg),
            None => Style::new(),
        }
    }

    /// The word the user selected (`]`, `[`, a click, the ranking).
    pub fn selected_word(self) -> Style {
        Style::new().add_modifier(Modifier::UNDERLINED | Modifier::BOLD | Modifier::ITALIC)
    }

    /// A search hit.
    pub fn search_match(self) -> Style {
        match self.mode {
            ColorMode::NoColor => Style::new().add_modifier(Modifier::REVERSED),
            _ => Style::new().fg(Color::Black).bg(Color::Yellow),
        }
    }

    pub fn title(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// Labels in the header and the ranking's captions.
    pub fn dim(self) -> Style {
        match self.mode {
            ColorMode::NoColor => Style::new(),
            _ => Style::new().fg(Color::DarkGray),
        }
    }

    /// The border of a pane, brighter when it has the focus.
    pub fn border(self, focused: bool) -> Style {
        match (self.mode, focused) {
            (ColorMode::NoColor, true) => Style::new().add_modifier(Modifier::BOLD),
            (ColorMode::NoColor, false) => Style::new(),
            (_, true) => Style::new().fg(Color::Cyan),
            (_, false) => Style::new().fg(Color::DarkGray),
        }
    }

    /// The gutter of the unit under the cursor.
    pub fn cursor_gutter(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }

    pub fn gutter(self) -> Style {
        self.dim()
    }

    /// A probability bar; the target class is drawn in the accent colour.
    pub fn probability_bar(self, is_target: bool) -> Style {
        match (self.mode, is_target) {
            (ColorMode::NoColor, true) => Style::new().add_modifier(Modifier::BOLD),
            (ColorMode::NoColor, false) => Style::new(),
            (_, true) => Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            (_, false) => Style::new().fg(Color::Gray),
        }
    }

    /// The highlighted row of a list (ranking, method picker).
    pub fn list_highlight(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn key_hint(self) -> Style {
        match self.mode {
            ColorMode::NoColor => Style::new().add_modifier(Modifier::BOLD),
            _ => Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        }
    }

    pub fn error(self) -> Style {
        match self.mode {
            ColorMode::NoColor => Style::new().add_modifier(Modifier::BOLD),
            _ => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        }
    }

    pub fn status_bar(self) -> Style {
        match self.mode {
            ColorMode::NoColor => Style::new().add_modifier(Modifier::REVERSED),
            _ => Style::new().bg(Color::Indexed(236)).fg(Color::White),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_picks_the_mode() {
        assert_eq!(ColorMode::detect(true, "truecolor"), ColorMode::NoColor);
        assert_eq!(ColorMode::detect(false, "truecolor"), ColorMode::TrueColor);
        assert_eq!(ColorMode::detect(false, "24bit"), ColorMode::TrueColor);
        assert_eq!(ColorMode::detect(false, ""), ColorMode::Ansi256);
    }

    #[test]
    fn colours_come_from_the_shared_palette() {
        let strongest = Palette::BlueOrange.bucket_color(Bucket(5)).unwrap();
        let true_color = Theme::new(ColorMode::TrueColor, Palette::BlueOrange).relevance(1.0);
        assert_eq!(
            true_color.bg,
            Some(Color::Rgb(strongest.0, strongest.1, strongest.2))
        );
        let indexed = Theme::new(ColorMode::Ansi256, Palette::BlueOrange).relevance(1.0);
        assert_eq!(indexed.bg, Some(Color::Indexed(strongest.to_xterm256())));
    }

    #[test]
    fn no_color_keeps_the_information_in_markers() {
        let theme = Theme::new(ColorMode::NoColor, Palette::BlueOrange);
        let strong_for = theme.relevance(0.9);
        let against = theme.relevance(-0.5);
        assert_eq!(strong_for.bg, None);
        assert!(strong_for.add_modifier.contains(Modifier::BOLD));
        assert!(against.add_modifier.contains(Modifier::UNDERLINED));
        assert_eq!(theme.relevance(0.01), Style::new());
    }
}
