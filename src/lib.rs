//! tokenlens: explain BERT text classifiers with exact LRP-based token relevance.
//!
//! The engine (model loading, instrumented forward, relevance methods, segmentation, word
//! alignment) is here; the command-line front-ends live in `main.rs` and `cli/`.

pub mod attnlrp;
pub mod backward;
pub mod bert;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod default_model;
pub mod device;
pub mod error;
pub mod eval;
pub mod explainer;
pub mod fused;
pub mod graphs;
pub mod lsp;
pub mod memory;
pub mod methods;
pub mod model_dir;
pub mod profile;
pub mod relprop;
pub mod render;
pub mod segment;
pub mod soup;
pub mod text;
pub mod train;
pub mod tui;
pub mod weights;

pub use bert::Precision;
pub use error::{Error, Result};
pub use explainer::{Attribution, Explainer, ExplainerOptions, Explanation, Target};
pub use methods::Method;
