//! `tokenlens lsp`: the language server (see `docs/lsp.md`).

use clap::Args;

use super::ModelArgs;
use crate::error::Result;

#[derive(Args, Debug)]
pub struct LspArgs {
    /// Default model options; the editor's `model` setting overrides `--model`.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Talk over stdin/stdout (the only transport; accepted because clients pass it).
    #[arg(long)]
    pub stdio: bool,
}

pub fn run(args: LspArgs) -> Result<i32> {
    crate::lsp::serve_stdio(args.model)
}
