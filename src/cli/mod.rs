//! Command-line front-ends. Each subcommand is a thin adapter over [`crate::Explainer`].

pub mod bench;
pub mod bench_score;
pub mod eval;
pub mod lsp;
pub mod score;
pub mod soup;
pub mod train;
pub mod tui;

use clap::{Args, Parser, Subcommand};

use crate::bert::Precision;
use crate::error::{Error, Result};
use crate::explainer::{Explainer, ExplainerOptions};
use crate::model_dir::ModelFiles;

/// The exit-code table of every subcommand's `--help` (a macro so that `concat!` can append it
/// to a subcommand's own text).
macro_rules! exit_codes_help {
    () => {
        "\
Exit codes:
  0    success
  1    score: some records failed (their error records were written, the rest was
       scored); lsp: `exit` came without a `shutdown` request
  2    usage error (bad flag, unknown method or label, unusable input file,
       unwritable output)
  3    the model or its tokenizer failed to load
  130  interrupted (Ctrl-C); tui: 128 + the signal for SIGHUP (129), SIGINT (130)
       and SIGTERM (143)"
    };
}
pub(crate) use exit_codes_help;

pub const EXIT_CODES_HELP: &str = exit_codes_help!();

#[derive(Parser, Debug)]
#[command(
    name = "tokenlens",
    version,
    about = "Explain BERT text classifiers: which words drove the decision",
    long_about = "Explain BERT text classifiers with exact LRP-based relevance (Chefer, Gur & Wolf, CVPR 2021) \
                  and related methods, word by word, for any class, on CPU or CUDA.",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Score texts from stdin or files (lines, --doc sentences/paragraphs, --jsonl objects) and
    /// show each word's relevance as JSONL, JSON, TSV, ANSI, HTML or Markdown.
    Score(score::ScoreArgs),
    /// Fine-tune a BERT encoder into a text classifier on labelled TSV or JSONL.
    Train(train::TrainArgs),
    /// Average several fine-tunes of one base into one model (greedy or uniform model soup).
    Soup(soup::SoupArgs),
    /// Benchmark explanation time and peak memory per sequence length (prints a table).
    Bench(bench::BenchArgs),
    /// Measure model accuracy and the faithfulness of every method on labelled TSV or JSONL.
    Eval(eval::EvalArgs),
    /// Measure `score` throughput (sentences/s), one text per call versus batched.
    BenchScore(bench_score::BenchScoreArgs),
    /// Run the language server on stdin/stdout (see docs/lsp.md).
    Lsp(lsp::LspArgs),
    /// Open a text file in an interactive terminal view, each word coloured by its relevance.
    Tui(tui::TuiArgs),
}

/// Options every model-using subcommand shares.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory (Hugging Face layout) or hub id. Default: $TOKENLENS_MODEL, else the
    /// bundled sentiment model.
    #[arg(long, short = 'm', env = "TOKENLENS_MODEL", value_name = "DIR|ID")]
    pub model: Option<String>,
    /// Numeric precision of the model and the relevance pass (f64 reproduces the reference
    /// implementation to ~1e-9; f32 is faster).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads (default: all cores; 1 for `lsp`, see docs/lsp.md).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Longest sequence given to the model at once (special tokens included); longer texts are
    /// split into overlapping windows. Default: the model's maximum (512 for BERT).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum PrecisionArg {
    F32,
    F64,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::F64 => Precision::F64,
        }
    }
}

impl ModelArgs {
    pub fn model_files(&self) -> Result<ModelFiles> {
        match &self.model {
            Some(model) if !model.is_empty() => ModelFiles::resolve(model),
            _ => crate::default_model::files(),
        }
    }

    /// Loads the explainer these options describe (`--threads` takes effect only before the
    /// first candle operation and before other threads start).
    pub fn load(&self, batch_size: usize) -> Result<Explainer> {
        if let Some(threads) = self.threads {
            set_compute_threads(threads);
        }
        if self.max_tokens.is_some_and(|n| n < 3) {
            return Err(Error::Usage("--max-tokens must be at least 3".into()));
        }
        let options = ExplainerOptions {
            precision: self.precision.into(),
            device: crate::device::parse_device(&self.device)?,
            max_tokens: self.max_tokens,
            batch_size: batch_size.max(1),
            ..Default::default()
        };
        Explainer::from_files(&self.model_files()?, options)
    }
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Score(args) => score::run(args),
        Command::Train(args) => train::run(args),
        Command::Soup(args) => soup::run(args),
        Command::Tui(args) => tui::run(args),
        Command::Bench(args) => bench::run(args),
        Command::BenchScore(args) => bench_score::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Lsp(args) => lsp::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => report(&error),
    }
}

/// Prints an error the ripgrep way (`tokenlens: ...`) and returns its exit code.
pub fn report(error: &Error) -> i32 {
    eprintln!("tokenlens: {error}");
    error.exit_code()
}

/// Sets the number of threads candle's CPU kernels use (at least 1). Their thread pools read
/// `RAYON_NUM_THREADS` on first use, so this must run before any model work.
pub fn set_compute_threads(threads: usize) {
    // SAFETY: the callers run before the process starts any other thread.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.max(1).to_string()) };
}
