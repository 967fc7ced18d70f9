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
