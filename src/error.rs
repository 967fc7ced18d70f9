//! Errors a user can cause, each with the thing it concerns and the fix, plus the exit code the
//! command-line front-ends map it to.

use std::path::PathBuf;

/// Documented exit codes (README, "Exit codes").
pub mod exit_code {
    /// Everything was scored.
    pub const OK: i32 = 0;
    /// Some records failed (the others were written).
    pub const SOME_FAILED: i32 = 1;
    /// Bad command line or option value, an unusable input file or an unwritable output.
    pub const USAGE: i32 = 2;
    /// The model or its tokenizer could not be loaded.
    pub const MODEL_LOAD: i32 = 3;
    /// Interrupted by Ctrl-C.
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("model directory {dir} has no {file}: {hint}")]
    MissingModelFile {
        dir: PathBuf,
        file: String,
        hint: String,
    },
    #[error(
        "model {given:?} not found: no such directory (given with --model, --base or TOKENLENS_MODEL); \
         pass a Hugging Face model directory (config.json, model.safetensors, tokenizer.json) or a hub id"
    )]
    ModelNotFound { given: String },
    #[error(
        "model {given:?} is a file; pass the directory that holds config.json, model.safetensors \
         and tokenizer.json (or a hub id)"
    )]
    ModelIsFile { given: String },
    #[error("could not read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A data or text file given on the command line that cannot be used as input.
    #[error("{path} {message}")]
    Input { path: PathBuf, message: String },
    #[error("could not write {path}: {source}; check that its directory exists and is writable")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid model config: {message}")]
    BadConfig { path: PathBuf, message: String },
    #[error(
        "unsupported architecture {found:?} in {path}; supported: {}",
        supported.join(", ")
    )]
    UnsupportedArchitecture {
        path: PathBuf,
        found: String,
        supported: Vec<&'static str>,
    },
    #[error(
        "weights: tensor `{name}` is missing (looked for `{name}` and `bert.{name}` in {files})"
    )]
    MissingTensor { name: String, files: String },
    #[error("weights: tensor `{name}` has shape {found:?}, expected {expected:?} from config.json")]
    ShapeMismatch {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("could not read weights from {path}: {message}")]
    BadWeights { path: PathBuf, message: String },
    #[error("could not load tokenizer {path}: {message}")]
    BadTokenizer { path: PathBuf, message: String },
    #[error(
        "model {id:?} is not a local directory and could not be fetched from the Hugging Face hub: {message}. \
         Give a local directory instead (--model, --base for train, or TOKENLENS_MODEL) holding config.json, model.safetensors \
         (or pytorch_model.bin) and tokenizer.json (or vocab.txt)"
    )]
    Hub { id: String, message: String },
    #[error("unknown target {given:?}: the model's labels are {}", labels.join(", "))]
    UnknownLabel { given: String, labels: Vec<String> },
    #[error("unknown method {given:?}; known methods: {}", known.join(", "))]
    UnknownMethod {
        given: String,
        known: Vec<&'static str>,
    },
    #[error("{0}")]
    Usage(String),
    #[error("device: {0}")]
    Device(String),
    #[error("tokenizing the input failed: {0}")]
    Tokenize(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// The exit code a front-end should end with when this error stops the whole command.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::UnknownLabel { .. }
            | Error::UnknownMethod { .. }
            | Error::Usage(_)
            | Error::Input { .. }
            | Error::Output { .. } => exit_code::USAGE,
            Error::Tokenize(_) | Error::Candle(_) => exit_code::SOME_FAILED,
            _ => exit_code::MODEL_LOAD,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
