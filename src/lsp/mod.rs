//! `tokenlens lsp`: a language server (stdio) that shows which words drive a text classifier's
//! decision while one writes. See `docs/lsp.md`. This module is the only user of
//! `tower_lsp_server` / `ls_types`, so a future protocol-types migration stays local.

pub mod analysis;
pub mod features;
pub mod position;
pub mod server;
pub mod settings;
pub mod transport;
pub mod units;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tower_lsp_server::{LspService, Server};

use crate::cli::ModelArgs;
use crate::error::{Error, Result};

/// Requests handled at once. Colour, lens, hint and token requests wait for the model run of
/// the current text, so the default of 4 could leave no room for the edits that supersede them.
const CONCURRENT_REQUESTS: usize = 64;

/// Buffer of each in-memory pipe between stdio and the server.
const PIPE_BYTES: usize = 1 << 20;

/// Serves the protocol on stdin/stdout until `exit`. Returns the process exit code: 0 after a
/// `shutdown` request, 1 when `exit` came without one (as the protocol asks).
pub fn serve_stdio(model: ModelArgs) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("could not start the async runtime: {e}")))?;
    let clean = runtime.block_on(async move {
        let (service, socket) = LspService::build(|client| server::Backend::new(client, model))
            .custom_method("tokenlens/stats", server::Backend::stats)
            .custom_method("tokenlens/document", server::Backend::document)
            .finish();
        let backend = service.inner().clone();
        // The server talks to in-memory pipes; `transport` moves checked messages between them
        // and stdio (see there for why).
        let (server_input, to_server) = tokio::io::duplex(PIPE_BYTES);
        let (from_server, server_output) = tokio::io::duplex(PIPE_BYTES);
        let stdout = Arc::new(tokio::sync::Mutex::new(tokio::io::stdout()));
        let shutdown_seen = Arc::new(AtomicBool::new(false));
        tokio::spawn(transport::filter_input(
            tokio::io::stdin(),
            to_server,
            stdout.clone(),
            shutdown_seen.clone(),
        ));
        let output = tokio::spawn(transport::forward_output(from_server, stdout));
        Server::new(server_input, server_output, socket)
            .concurrency_level(CONCURRENT_REQUESTS)
            .serve(service)
            .await;
        // Everything the server wrote before it stopped reaches the editor.
        let _ = output.await;
        backend.shutdown_was_requested() || shutdown_seen.load(Ordering::SeqCst)
    });
    // Model runs in flight and the blocking stdin reader must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    Ok(if clean { 0 } else { 1 })
}
