//! `tokenlens lsp`: the language server (see `docs/lsp.md`).

use clap::Args;

use super::ModelArgs;
use crate::error::Result;

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct LspArgs {
    /// Default model options; the editor's `model` setting overrides `--model`.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Talk over stdin/stdout (the only transport; accepted because clients pass it).
    #[arg(long)]
    pub stdio: bool,
}

/// Compute threads of the server unless `--threads` or `RAYON_NUM_THREADS` says otherwise. One
/// paragraph at a time is too little work to split: on a 2-core machine one thread explains a
/// 60-token paragraph in ~90 ms where two take ~130 ms (`docs/lsp.md`), and the other cores stay
/// free for the editor.
const DEFAULT_THREADS: usize = 1;

pub fn run(mut args: LspArgs) -> Result<i32> {
    // Set here, before the server's runtime starts its threads, and not again when a model
    // (re)loads on a worker thread.
    let threads = match args.model.threads.take() {
        Some(threads) => Some(threads),
        None if std::env::var_os("RAYON_NUM_THREADS").is_some() => None,
        None => Some(DEFAULT_THREADS),
    };
    if let Some(threads) = threads {
        super::set_compute_threads(threads);
    }
    crate::lsp::serve_stdio(args.model)
}
