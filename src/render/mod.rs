//! Shared output helpers with no terminal or editor types: the palette, display normalisation
//! and relevance buckets. Every front-end (ANSI, HTML, TUI, LSP, editors) picks colours here.

pub mod palette;

pub use palette::{Bucket, Normalization, Palette, Rgb, Scale};
