//! Zed extension: starts `tokenlens lsp` (found on the worktree's PATH, or the path given in
//! `lsp.tokenlens.binary.path`) and passes the user's `initialization_options` through.

use zed_extension_api::{self as zed, settings::LspSettings, LanguageServerId, Result};

struct Tokenlens;

impl zed::Extension for Tokenlens {
    fn new() -> Self {
        Tokenlens
    }

    fn language_server_command(
        &mut self,
        language_server_id: &LanguageServerId,
        worktree: &zed::Worktree,
    ) -> Result<zed::Command> {
        let configured = LspSettings::for_worktree(language_server_id.as_ref(), worktree)
            .ok()
            .and_then(|settings| settings.binary)
            .and_then(|binary| binary.path);
        let command = configured
            .or_else(|| worktree.which("tokenlens"))
            .ok_or_else(|| {
                "tokenlens is not on PATH; install it with `cargo install tokenlens`".to_string()
            })?;
        Ok(zed::Command {
            command,
            args: vec!["lsp".into()],
            env: Default::default(),
        })
    }

    fn language_server_initialization_options(
        &mut self,
        language_server_id: &LanguageServerId,
        worktree: &zed::Worktree,
    ) -> Result<Option<zed::serde_json::Value>> {
        Ok(
            LspSettings::for_worktree(language_server_id.as_ref(), worktree)
                .ok()
                .and_then(|settings| settings.initialization_options),
        )
    }

    fn language_server_workspace_configuration(
        &mut self,
        language_server_id: &LanguageServerId,
        worktree: &zed::Worktree,
    ) -> Result<Option<zed::serde_json::Value>> {
        // The server pulls the `tokenlens` section; Zed answers from `settings`.
        Ok(
            LspSettings::for_worktree(language_server_id.as_ref(), worktree)
                .ok()
                .and_then(|settings| settings.settings)
                .map(|settings| zed::serde_json::json!({ "tokenlens": settings })),
        )
    }
}

zed::register_extension!(Tokenlens);
