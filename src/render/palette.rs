//! The one palette of tokenlens. Colour-blind safe: blue ↔ orange diverging for signed scores
//! (lightness carries magnitude, hue carries sign), a sequential orange scale for unsigned ones.

/// A colour in sRGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// WCAG relative luminance.
    pub fn luminance(self) -> f64 {
        let lin = |c: u8| {
            let c = c as f64 / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(self.0) + 0.7152 * lin(self.1) + 0.0722 * lin(self.2)
    }

    /// Black or white, whichever reads better on this background.
    pub fn text_color(self) -> Rgb {
        if self.luminance() > 0.179 {
            Rgb(0, 0, 0)
        } else {
            Rgb(255, 255, 255)
        }
    }

    /// The nearest colour of the xterm-256 palette (6×6×6 cube or grey ramp).
    pub fn to_xterm256(self) -> u8 {
        const LEVELS: [u8; 6] = [0, 95, 135, 175, 215, 255];
        let nearest_level = |c: u8| {
            (0..6)
                .min_by_key(|&i| (LEVELS[i] as i32 - c as i32).abs())
                .unwrap_or(0)
        };
        let (r, g, b) = (
            nearest_level(self.0),
            nearest_level(self.1),
            nearest_level(self.2),
        );
        let cube = Rgb(LEVELS[r], LEVELS[g], LEVELS[b]);
        let cube_index = 16 + 36 * r as u8 + 6 * g as u8 + b as u8;
        let mean = (self.0 as u32 + self.1 as u32 + self.2 as u32) / 3;
        let grey_step = ((mean as i32 - 8).max(0) / 10).min(23) as u8;
        let grey_value = 8 + 10 * grey_step;
        let grey = Rgb(grey_value, grey_value, grey_value);
        if distance(self, grey) < distance(self, cube) {
            232 + grey_step
        } else {
            cube_index
        }
    }
}

fn distance(a: Rgb, b: Rgb) -> i32 {
    let d = |x: u8, y: u8| (x as i32 - y as i32).pow(2);
    d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)
}

/// Which kind of scale a view uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Signed scores in [-1, 1]: blue (against) ↔ orange (for).
    Diverging,
    /// Unsigned scores in [0, 1]: white → dark orange.
    Sequential,
}

/// Named palettes (`--palette`); all keep the blue/orange meaning except `mono`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Palette {
    #[default]
    BlueOrange,
    /// Greys only, for printing and monochrome displays.
    Mono,
}

const NEUTRAL: Rgb = Rgb(247, 247, 247);
const DIVERGING_POSITIVE: [Rgb; 5] = [
    Rgb(254, 232, 200),
    Rgb(253, 208, 162),
    Rgb(253, 174, 107),
    Rgb(241, 105, 19),
    Rgb(166, 54, 3),
];
const DIVERGING_NEGATIVE: [Rgb; 5] = [
    Rgb(222, 235, 247),
    Rgb(198, 219, 239),
    Rgb(158, 202, 225),
    Rgb(66, 146, 198),
    Rgb(8, 81, 156),
];
const MONO: [Rgb; 5] = [
    Rgb(230, 230, 230),
    Rgb(200, 200, 200),
    Rgb(160, 160, 160),
    Rgb(110, 110, 110),
    Rgb(60, 60, 60),
];

impl Palette {
    pub fn names() -> &'static [&'static str] {
        &["blue-orange", "mono"]
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "blue-orange" | "default" => Some(Palette::BlueOrange),
            "mono" => Some(Palette::Mono),
            _ => None,
        }
    }

    /// Colour of a normalised score (clamped to [-1, 1]); `None` for scores too small to mark.
    pub fn color(self, score: f64) -> Option<Rgb> {
        let bucket = Bucket::of(score);
        self.bucket_color(bucket)
    }

    /// The colour of a bucket; the same table every front-end and editor client uses.
    pub fn bucket_color(self, bucket: Bucket) -> Option<Rgb> {
        let strength = bucket.strength();
        if strength == 0 {
            return None;
        }
        let i = strength as usize - 1;
        Some(match (self, bucket.is_negative()) {
            (Palette::Mono, _) => MONO[i],
            (Palette::BlueOrange, false) => DIVERGING_POSITIVE[i],
            (Palette::BlueOrange, true) => DIVERGING_NEGATIVE[i],
        })
    }

    pub fn neutral(self) -> Rgb {
        NEUTRAL
    }
}

/// A score's strength (1–5) and sign; 0 is "not worth marking" (|score| < 0.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Bucket(pub i8);

impl Bucket {
    /// Buckets of a normalised score: |s| in [0.1, 0.2) → 1, … , [0.8, 1] → 5; signed.
    pub fn of(score: f64) -> Bucket {
        if !score.is_finite() {
            return Bucket(0);
        }
        let magnitude = score.abs().min(1.0);
        let strength = if magnitude < 0.1 {
            0
        } else {
            ((magnitude * 5.0).ceil() as i8).clamp(1, 5)
        };
        Bucket(if score < 0.0 { -strength } else { strength })
    }

    pub fn strength(self) -> u8 {
        self.0.unsigned_abs()
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

/// How raw scores are scaled for display (raw scores are always kept in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    /// Divide by the largest |score|: keeps 0 at 0 and the sign.
    #[default]
    MaxAbs,
    /// Map [min, max] to [0, 1] (the reference notebook's display).
    MinMax,
    /// Divide by Σ|score| (ferret, LIT).
    L1,
    None,
}

impl Normalization {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "maxabs" => Some(Normalization::MaxAbs),
            "minmax" => Some(Normalization::MinMax),
            "l1" => Some(Normalization::L1),
            "none" => Some(Normalization::None),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Normalization::MaxAbs => "maxabs",
            Normalization::MinMax => "minmax",
            Normalization::L1 => "l1",
            Normalization::None => "none",
        }
    }

    /// Normalises `scores`; NaN entries stay NaN and are ignored for the scale.
    pub fn apply(self, scores: &[f64]) -> Vec<f64> {
        let finite = scores.iter().copied().filter(|s| s.is_finite());
        match self {
            Normalization::None => scores.to_vec(),
            Normalization::MaxAbs => {
                let max = finite.fold(0f64, |m, s| m.max(s.abs()));
                scores
                    .iter()
                    .map(|s| if max > 0.0 { s / max } else { 0.0 * s })
                    .collect()
            }
            Normalization::L1 => {
                let total: f64 = finite.map(f64::abs).sum();
                scores
                    .iter()
                    .map(|s| if total > 0.0 { s / total } else { 0.0 * s })
                    .collect()
            }
            Normalization::MinMax => {
                let (min, max) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| {
                    (lo.min(s), hi.max(s))
                });
                scores
                    .iter()
                    .map(|s| {
                        if max > min {
                            (s - min) / (max - min)
                        } else {
                            0.0 * s
                        }
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_magnitude_and_sign() {
        assert_eq!(Bucket::of(0.05), Bucket(0));
        assert_eq!(Bucket::of(0.15), Bucket(1));
        assert_eq!(Bucket::of(-0.5), Bucket(-3));
        assert_eq!(Bucket::of(1.0), Bucket(5));
        assert_eq!(Bucket::of(f64::NAN), Bucket(0));
    }

    #[test]
    fn xterm_mapping_hits_exact_cube_and_grey_entries() {
        assert_eq!(Rgb(255, 0, 0).to_xterm256(), 196);
        assert_eq!(Rgb(0, 0, 0).to_xterm256(), 16);
        assert_eq!(Rgb(128, 128, 128).to_xterm256(), 244);
    }

    #[test]
    fn normalizations() {
        assert_eq!(Normalization::MaxAbs.apply(&[1.0, -2.0]), [0.5, -1.0]);
        assert_eq!(
            Normalization::MinMax.apply(&[1.0, 3.0, 2.0]),
            [0.0, 1.0, 0.5]
        );
        assert_eq!(Normalization::L1.apply(&[1.0, -3.0]), [0.25, -0.75]);
        assert_eq!(Normalization::MaxAbs.apply(&[0.0, 0.0]), [0.0, 0.0]);
    }

    #[test]
    fn text_stays_readable() {
        for b in 1..=5 {
            for sign in [-1, 1] {
                let bg = Palette::BlueOrange.bucket_color(Bucket(b * sign)).unwrap();
                let fg = bg.text_color();
                let (l1, l2) = (
                    bg.luminance().max(fg.luminance()),
                    bg.luminance().min(fg.luminance()),
                );
                assert!((l1 + 0.05) / (l2 + 0.05) >= 4.5, "contrast of {bg:?}");
            }
        }
    }
}
