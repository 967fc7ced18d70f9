//! The language server: document state, scheduling of model runs, and the protocol handlers.
//!
//! Ordering: tower-lsp-server polls handlers concurrently but starts them in arrival order, so
//! every handler that changes a document does so synchronously (a `std` mutex, no `.await`
//! before the change). Heavy work never runs in a handler: each change bumps the document's
//! revision and schedules a debounced job; the job checks the revision after the debounce and
//! between units (cancellation) and stores its result only if the revision is still current
//! (stale results are dropped).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tower_lsp_server::jsonrpc::{Error as RpcError, Result as RpcResult};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer};

use crate::cli::ModelArgs;
use crate::explainer::{Explainer, Target};
use crate::methods::Method;

use super::analysis::{Analysis, PlacedUnit, UnitResult};
use super::features::{
    self, COMMAND_SET_METHOD, COMMAND_SET_TARGET, SCORES_CAPABILITY, SCORES_INCREMENTAL_CAPABILITY,
};
use super::position::{Encoding, LineIndex, LinePosition};
use super::settings::Settings;
use super::units::{self, Flavor};

/// Documents with at least this many units to explain report `$/progress`.
const PROGRESS_MIN_UNITS: usize = 8;
/// Paragraphs explained together in one batch of the model.
const UNITS_PER_BATCH: usize = 16;
/// How often a long document's results so far are published while the rest is explained.
const PARTIAL_PUBLISH_INTERVAL: Duration = Duration::from_secs(2);
/// How long a request for colours, lenses, hints or tokens waits for the current revision.
const FRESH_RESULT_WAIT: Duration = Duration::from_secs(60);
/// Cached unit explanations before the cache is emptied.
const UNIT_CACHE_CAPACITY: usize = 50_000;

/// What the client said it can do, read once at `initialize`.
#[derive(Debug, Default, Clone)]
struct ClientFlags {
    work_done_progress: bool,
    configuration: bool,
    semantic_tokens_refresh: bool,
    inlay_hint_refresh: bool,
    code_lens_refresh: bool,
    scores_notification: bool,
    scores_incremental: bool,
}

enum ModelState {
    NotLoaded,
    Loading,
    Ready(Arc<Explainer>),
    Failed(String),
}

struct Document {
    uri: Uri,
    language_id: String,
    version: i32,
    text: Arc<str>,
    index: Arc<LineIndex>,
    revision: u64,
    analysis: Option<Arc<Analysis>>,
    /// The last `tokenlens/publishScores` sent for this document (incremental clients).
    sent_scores: Option<Arc<features::SentScores>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct UnitKey {
    text: String,
    target: Target,
    method: Method,
}

struct State {
    encoding: Encoding,
    client: ClientFlags,
    settings: Settings,
    /// The model the current explainer was loaded from (`None`: the default).
    model_spec: Option<Option<String>>,
    model: ModelState,
    documents: HashMap<String, Document>,
    unit_cache: HashMap<UnitKey, Arc<UnitResult>>,
    next_revision: u64,
    shutdown_requested: bool,
}

/// Counters that tests and the benchmark read through `tokenlens/stats`.
#[derive(Default)]
struct Counters {
    units_explained: AtomicU64,
    units_from_cache: AtomicU64,
    analyses_published: AtomicU64,
    analyses_dropped: AtomicU64,
    /// Of the last published analysis: time in the model, in the server before publishing
    /// (segmenting, cache, building results) and publishing (diagnostics, notification).
    last_model_micros: AtomicU64,
    last_server_micros: AtomicU64,
    last_publish_micros: AtomicU64,
    /// The part of publishing spent on the scores notification.
    last_notification_micros: AtomicU64,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped whenever an analysis is stored or a revision changes; waiters re-check.
    changes: watch::Sender<u64>,
    /// One model run at a time: the machine's cores go to that run.
    model_runs: Semaphore,
    counters: Counters,
    cli_model: ModelArgs,
    progress_tokens: AtomicU64,
}

/// How long `window/workDoneProgress/create` may take before the work goes on without progress.
const PROGRESS_CREATE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Backend {
    client: Client,
    shared: Arc<Shared>,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn model_spec(settings: &Settings, cli: &ModelArgs) -> Option<String> {
    settings
        .model
        .clone()
        .filter(|m| !m.trim().is_empty())
        .or_else(|| cli.model.clone().filter(|m| !m.trim().is_empty()))
}

fn experimental_flag(capabilities: &ClientCapabilities, name: &str) -> bool {
    capabilities
        .experimental
        .as_ref()
        .and_then(|e| e.get(name))
        .is_some_and(|v| v.as_bool().unwrap_or(!v.is_null()))
}

impl Backend {
    pub fn new(client: Client, cli_model: ModelArgs) -> Backend {
        let state = State {
            encoding: Encoding::Utf16,
            client: ClientFlags::default(),
            settings: Settings::default(),
            model_spec: None,
            model: ModelState::NotLoaded,
            documents: HashMap::new(),
            unit_cache: HashMap::new(),
            next_revision: 1,
            shutdown_requested: false,
        };
        Backend {
            client,
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                changes: watch::channel(0).0,
                model_runs: Semaphore::new(1),
                counters: Counters::default(),
                cli_model,
                progress_tokens: AtomicU64::new(1),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }

    fn notify_waiters(&self) {
        self.shared.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn shutdown_was_requested(&self) -> bool {
        self.state().shutdown_requested
    }

    /// Applies settings from a JSON value and reacts: reloads the model when it changed,
    /// re-explains every document when anything else that shows did.
    async fn apply_settings(&self, value: &Value) {
        let (problems, reload, reexplain) = {
            let mut state = self.state();
            let (mut settings, mut problems) = state.settings.merged(value);
            if let ModelState::Ready(explainer) = &state.model
                && let Some(problem) = unknown_target_problem(&settings.target, explainer)
            {
                problems.push(format!(
                    "{problem}; the target stays {:?}",
                    state.settings.target
                ));
                settings.target = state.settings.target.clone();
            }
            let spec = model_spec(&settings, &self.shared.cli_model);
            let reload = state.model_spec.as_ref() != Some(&spec);
            let reexplain = settings != state.settings;
            state.settings = settings;
            (problems, reload, reexplain)
        };
        for problem in problems {
            self.client
                .show_message(MessageType::WARNING, format!("tokenlens: {problem}"))
                .await;
        }
        if reload {
            self.load_model().await;
        } else if reexplain {
            self.reexplain_all();
        }
    }

    async fn pull_configuration(&self) {
        if !self.state().client.configuration {
            return;
        }
        let item = ConfigurationItem {
            scope_uri: None,
            section: Some("tokenlens".into()),
        };
        match self.client.configuration(vec![item]).await {
            Ok(values) => {
                if let Some(value) = values.into_iter().next() {
                    self.apply_settings(&value).await;
                }
            }
            Err(error) => {
                self.client
                    .log_message(
                        MessageType::WARNING,
                        format!("tokenlens: workspace/configuration failed: {error}"),
                    )
                    .await
            }
        }
    }

    /// Starts a `$/progress` report when the client supports it.
    async fn begin_progress(
        &self,
        title: &str,
        message: String,
    ) -> Option<
        tower_lsp_server::OngoingProgress<
            tower_lsp_server::Bounded,
            tower_lsp_server::NotCancellable,
        >,
    > {
        if !self.state().client.work_done_progress {
            return None;
        }
        let n = self.shared.progress_tokens.fetch_add(1, Ordering::Relaxed);
        let token = NumberOrString::String(format!("tokenlens/{n}"));
        // A client that never answers gets no progress rather than a stuck model run.
        tokio::time::timeout(
            PROGRESS_CREATE_TIMEOUT,
            self.client.create_work_done_progress(token.clone()),
        )
        .await
        .ok()?
        .ok()?;
        Some(
            self.client
                .progress(token, title)
                .with_message(message)
                .with_percentage(0)
                .begin()
                .await,
        )
    }

    /// When the document's language is switched off or the model failed, what the editor
    /// shows is of an older text or setting: forgets it and returns the URI whose diagnostics
    /// must be cleared (`None` when there was nothing, or results will come).
    fn drop_results_that_will_not_come(&self, key: &str) -> Option<(Uri, i32)> {
        let mut state = self.state();
        let explained = state
            .documents
            .get(key)
            .map(|d| state.settings.explains_language(&d.language_id))?;
        let model_failed = matches!(state.model, ModelState::Failed(_));
        if explained && !model_failed {
            return None;
        }
        let document = state.documents.get_mut(key)?;
        document.sent_scores = None;
        document
            .analysis
            .take()
            .map(|_| (document.uri.clone(), document.version))
    }

    /// Clears what a client that takes `tokenlens/publishScores` painted for the document
    /// (a notification without units), as empty diagnostics clear the diagnostics.
    async fn clear_scores(&self, uri: &Uri, version: i32) {
        let (encoding, flags) = {
            let state = self.state();
            (state.encoding, state.client.clone())
        };
        if !flags.scores_notification {
            return;
        }
        let params = features::ScoresParams {
            uri: uri.as_str().to_owned(),
            version,
            method: None,
            encoding: encoding.name().to_owned(),
            base: None,
            units: Vec::new(),
        };
        self.client
            .send_notification::<ScoresNotification>(params)
            .await;
    }

    /// Loads the configured model off the async threads, with progress; a failure is shown to
    /// the user and leaves the server running (requests then return nothing).
    async fn load_model(&self) {
        let spec = {
            let mut state = self.state();
            let spec = model_spec(&state.settings, &self.shared.cli_model);
            state.model_spec = Some(spec.clone());
            state.model = ModelState::Loading;
            spec
        };
        let shown = spec.clone().unwrap_or_else(|| "the default model".into());
        let progress = self
            .begin_progress("tokenlens", format!("loading {shown}"))
            .await;
        let mut args = self.shared.cli_model.clone();
        args.model = spec.clone();
        let loaded = tokio::task::spawn_blocking(move || args.load(16)).await;
        let outcome = match loaded {
            Ok(Ok(explainer)) => Ok(Arc::new(explainer)),
            Ok(Err(error)) => Err(error.to_string()),
            Err(join) => Err(format!("model loading crashed: {join}")),
        };
        if let Some(progress) = progress {
            let message = match &outcome {
                Ok(_) => format!("loaded {shown}"),
                Err(_) => format!("could not load {shown}"),
            };
            progress.finish_with_message(message).await;
        }
        let unknown_target = {
            let mut state = self.state();
            if state.model_spec.as_ref() != Some(&spec) {
                return; // A newer configuration asked for another model meanwhile.
            }
            state.unit_cache.clear();
            state.model = match &outcome {
                Ok(explainer) => ModelState::Ready(explainer.clone()),
                Err(error) => ModelState::Failed(error.clone()),
            };
            // A target set before the model was known, or a class of the previous model.
            match &outcome {
                Ok(explainer) => {
                    unknown_target_problem(&state.settings.target, explainer).map(|problem| {
                        state.settings.target = "auto".into();
                        format!("{problem}; explaining the predicted class")
                    })
                }
                Err(_) => None,
            }
        };
        if let Some(problem) = unknown_target {
            self.client
                .show_message(MessageType::WARNING, format!("tokenlens: {problem}"))
                .await;
        }
        match outcome {
            Ok(explainer) => {
                self.client
                    .log_message(
                        MessageType::INFO,
                        format!(
                            "tokenlens: loaded {} (classes: {})",
                            explainer.model_name,
                            explainer.labels().join(", ")
                        ),
                    )
                    .await;
                self.reexplain_all();
            }
            Err(error) => {
                self.client
                    .show_message(
                        MessageType::ERROR,
                        format!("tokenlens: could not load the model: {error}"),
                    )
                    .await;
                self.notify_waiters();
                self.reexplain_all();
            }
        }
    }

    /// Gives every open document a new revision and explains it again without debounce.
    fn reexplain_all(&self) {
        let jobs: Vec<(String, u64)> = {
            let mut state = self.state();
            let mut jobs = Vec::new();
            let mut next = state.next_revision;
            for (key, document) in state.documents.iter_mut() {
                document.revision = next;
                next += 1;
                jobs.push((key.clone(), document.revision));
            }
            state.next_revision = next;
            jobs
        };
        self.notify_waiters();
        for (key, revision) in jobs {
            self.schedule(key, revision, Duration::ZERO);
        }
    }

    fn is_current(&self, key: &str, revision: u64) -> bool {
        self.state()
            .documents
            .get(key)
            .is_some_and(|d| d.revision == revision)
    }

    /// Explains the document after `debounce` unless a newer revision replaces it first.
    fn schedule(&self, key: String, revision: u64, debounce: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            if !debounce.is_zero() {
                tokio::time::sleep(debounce).await;
            }
            // The model is taken per batch (`explain_units`), so that analyses of several
            // documents take turns instead of one long document holding it to its end.
            if this.is_current(&key, revision) {
                this.analyse(&key, revision).await;
            }
        });
    }

    async fn analyse(&self, key: &str, revision: u64) {
        let analysis_started = Instant::now();
        if let Some((stale, version)) = self.drop_results_that_will_not_come(key) {
            self.client
                .publish_diagnostics(stale.clone(), Vec::new(), None)
                .await;
            self.clear_scores(&stale, version).await;
            self.notify_waiters();
        }
        let (uri, version, text, index, flavor, settings, explainer) = {
            let state = self.state();
            let Some(document) = state.documents.get(key) else {
                return;
            };
            if !state.settings.explains_language(&document.language_id) {
                return;
            }
            let ModelState::Ready(explainer) = &state.model else {
                return; // Explained again once the model is ready.
            };
            (
                document.uri.clone(),
                document.version,
                document.text.clone(),
                document.index.clone(),
                Flavor::of_language(&document.language_id),
                state.settings.clone(),
                explainer.clone(),
            )
        };
        let method = settings.method();
        // A setting the model cannot use was reported when it was made.
        let target = setting_target(&settings.target, &explainer).unwrap_or(Target::Predicted);
        let (masked, segments) = units::prose_units(&text, flavor);
        let keys: Vec<UnitKey> = segments
            .iter()
            .map(|s| UnitKey {
                text: s.text(&masked).to_owned(),
                target,
                method,
            })
            .collect();
        let mut results: Vec<Option<Arc<UnitResult>>> = {
            let state = self.state();
            keys.iter()
                .map(|k| state.unit_cache.get(k).cloned())
                .collect()
        };
        // Each distinct missing text is explained once, however often it occurs.
        let mut missing: Vec<Vec<usize>> = Vec::new();
        {
            let mut first_of: HashMap<&UnitKey, usize> = HashMap::new();
            for (i, unit_key) in keys.iter().enumerate() {
                if results[i].is_some() {
                    continue;
                }
                match first_of.get(unit_key) {
                    Some(&group) => missing[group].push(i),
                    None => {
                        first_of.insert(unit_key, missing.len());
                        missing.push(vec![i]);
                    }
                }
            }
        }
        self.shared
            .counters
            .units_from_cache
            .fetch_add((results.len() - missing.len()) as u64, Ordering::Relaxed);
        let mut model_time = Duration::ZERO;
        let progress = if missing.len() >= PROGRESS_MIN_UNITS {
            self.begin_progress(
                "tokenlens",
                format!("explaining {} paragraphs", missing.len()),
            )
            .await
        } else {
            None
        };
        let labels = explainer.labels().to_vec();
        let total_missing = missing.len();
        let mut done = 0;
        let mut last_published: Option<Instant> = None;
        for batch in missing.chunks(UNITS_PER_BATCH) {
            // Cancellation: an edit (or a settings change) made this work stale.
            if !self.is_current(key, revision) {
                self.shared
                    .counters
                    .analyses_dropped
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(progress) = progress {
                    progress.finish_with_message("superseded by an edit").await;
                }
                return;
            }
            let texts: Vec<String> = batch.iter().map(|g| keys[g[0]].text.clone()).collect();
            let started = Instant::now();
            let explained = self
                .explain_units(&explainer, texts, method, target, &labels)
                .await;
            model_time += started.elapsed();
            {
                let mut state = self.state();
                for (group, result) in batch.iter().zip(explained) {
                    let Some(result) = result else { continue };
                    self.shared
                        .counters
                        .units_explained
                        .fetch_add(1, Ordering::Relaxed);
                    if state.unit_cache.len() >= UNIT_CACHE_CAPACITY {
                        state.unit_cache.clear();
                    }
                    state
                        .unit_cache
                        .insert(keys[group[0]].clone(), result.clone());
                    for &j in group {
                        results[j] = Some(result.clone());
                    }
                }
            }
            done += batch.len();
            if let Some(progress) = &progress {
                let percentage = (done * 100 / total_missing) as u32;
                progress
                    .report_with_message(format!("{done}/{total_missing} paragraphs"), percentage)
                    .await;
            }
            // A long document shows what is done so far: after the first batch, then every
            // PARTIAL_PUBLISH_INTERVAL, so the first results do not wait for the last paragraph.
            let more_to_come = done < total_missing;
            let due = last_published.is_none_or(|t| t.elapsed() >= PARTIAL_PUBLISH_INTERVAL);
            if more_to_come && due {
                let partial = analysis_of(version, revision, &text, &index, &segments, &results);
                if !self
                    .install_and_publish(key, &uri, partial, &settings)
                    .await
                {
                    return;
                }
                last_published = Some(Instant::now());
            }
        }
        if let Some(progress) = progress {
            progress.finish().await;
        }
        let analysis = analysis_of(version, revision, &text, &index, &segments, &results);
        let publish_started = Instant::now();
        if !self
            .install_and_publish(key, &uri, analysis, &settings)
            .await
        {
            return;
        }
        let counters = &self.shared.counters;
        let micros = |d: Duration| d.as_micros() as u64;
        counters
            .last_model_micros
            .store(micros(model_time), Ordering::Relaxed);
        counters.last_server_micros.store(
            micros(publish_started - analysis_started - model_time),
            Ordering::Relaxed,
        );
        counters
            .last_publish_micros
            .store(micros(publish_started.elapsed()), Ordering::Relaxed);
    }

    /// Explains unit texts together (one batch of the model); a failed batch is retried one
    /// text at a time, so that one bad paragraph costs only its own result. `None` for a text
    /// that could not be explained (logged).
    async fn explain_units(
        &self,
        explainer: &Arc<Explainer>,
        texts: Vec<String>,
        method: Method,
        target: Target,
        labels: &[String],
    ) -> Vec<Option<Arc<UnitResult>>> {
        let run = |texts: Vec<String>| {
            let model = explainer.clone();
            let labels = labels.to_vec();
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                model
                    .explain_batch(&refs, &[method], target)
                    .map(|explained| {
                        explained
                            .iter()
                            .map(|e| Arc::new(UnitResult::new(e, method, &labels)))
                            .collect::<Vec<_>>()
                    })
            })
        };
        let count = texts.len();
        let outcome = {
            let Ok(_model) = self.shared.model_runs.acquire().await else {
                return vec![None; count];
            };
            run(texts.clone()).await
        };
        match outcome {
            Ok(Ok(results)) => return results.into_iter().map(Some).collect(),
            Ok(Err(_)) if count > 1 => {}
            Ok(Err(error)) => {
                self.client
                    .log_message(
                        MessageType::WARNING,
                        format!("tokenlens: a paragraph could not be explained: {error}"),
                    )
                    .await;
                return vec![None];
            }
            Err(join) => {
                self.client
                    .log_message(
                        MessageType::ERROR,
                        format!("tokenlens: explaining paragraphs crashed: {join}"),
                    )
                    .await;
                return vec![None; count];
            }
        }
        let mut out = Vec::with_capacity(count);
        for text in texts {
            out.push(
                Box::pin(self.explain_units(explainer, vec![text], method, target, labels))
                    .await
                    .pop()
                    .flatten(),
            );
        }
        out
    }

    /// Makes `analysis` the document's current one and publishes it, unless an edit made it
    /// stale meanwhile (then `false`).
    async fn install_and_publish(
        &self,
        key: &str,
        uri: &Uri,
        analysis: Arc<Analysis>,
        settings: &Settings,
    ) -> bool {
        let (encoding, flags) = {
            let mut state = self.state();
            let Some(document) = state.documents.get_mut(key) else {
                return false;
            };
            if document.revision != analysis.revision {
                drop(state);
                self.shared
                    .counters
                    .analyses_dropped
                    .fetch_add(1, Ordering::Relaxed);
                return false;
            }
            document.analysis = Some(analysis.clone());
            (state.encoding, state.client.clone())
        };
        self.notify_waiters();
        self.publish(uri, key, &analysis, settings, encoding, &flags)
            .await;
        true
    }

    async fn publish(
        &self,
        uri: &Uri,
        key: &str,
        analysis: &Analysis,
        settings: &Settings,
        encoding: Encoding,
        flags: &ClientFlags,
    ) {
        let diagnostics = features::diagnostics(analysis, settings, encoding);
        self.client
            .publish_diagnostics(uri.clone(), diagnostics, Some(analysis.version))
            .await;
        let diagnostics_sent = Instant::now();
        if flags.scores_notification {
            let previous = if flags.scores_incremental {
                self.state()
                    .documents
                    .get(key)
                    .and_then(|d| d.sent_scores.clone())
            } else {
                None
            };
            let (params, sent) =
                features::scores_notification(key, analysis, encoding, previous.as_deref());
            if flags.scores_incremental
                && let Some(document) = self.state().documents.get_mut(key)
            {
                document.sent_scores = Some(Arc::new(sent));
            }
            self.client
                .send_notification::<ScoresNotification>(params)
                .await;
        }
        self.shared.counters.last_notification_micros.store(
            diagnostics_sent.elapsed().as_micros() as u64,
            Ordering::Relaxed,
        );
        self.shared
            .counters
            .analyses_published
            .fetch_add(1, Ordering::Relaxed);
        // Lenses, hints and tokens are pulled by the client; tell it they changed. The
        // replies are not waited for here: this task holds the model until it returns.
        let refresh_lenses = settings.features.code_lens && flags.code_lens_refresh;
        let refresh_hints = settings.features.inlay_hints && flags.inlay_hint_refresh;
        let refresh_tokens = settings.features.semantic_tokens && flags.semantic_tokens_refresh;
        if refresh_lenses || refresh_hints || refresh_tokens {
            let client = self.client.clone();
            tokio::spawn(async move {
                if refresh_lenses {
                    let _ = client.code_lens_refresh().await;
                }
                if refresh_hints {
                    let _ = client.inlay_hint_refresh().await;
                }
                if refresh_tokens {
                    let _ = client.semantic_tokens_refresh().await;
                }
            });
        }
    }

    /// The analysis of the document's current text, waiting for it when a run is due. When
    /// the text changes meanwhile, it waits for the newer text (whose positions the client
    /// has by then). `None` when nothing will come: unknown document, language not explained,
    /// no model.
    async fn fresh_analysis(&self, uri: &Uri) -> Option<Arc<Analysis>> {
        let key = uri.as_str();
        let mut changes = self.shared.changes.subscribe();
        let deadline = tokio::time::Instant::now() + FRESH_RESULT_WAIT;
        loop {
            {
                let state = self.state();
                let document = state.documents.get(key)?;
                if !state.settings.explains_language(&document.language_id) {
                    return None;
                }
                if let Some(analysis) = &document.analysis
                    && analysis.revision == document.revision
                {
                    return Some(analysis.clone());
                }
                if state.shutdown_requested || matches!(state.model, ModelState::Failed(_)) {
                    return None;
                }
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }

    fn encoding(&self) -> Encoding {
        self.state().encoding
    }

    fn settings(&self) -> Settings {
        self.state().settings.clone()
    }

    /// `tokenlens/stats`: counters for tests and the latency benchmark.
    pub async fn stats(&self) -> RpcResult<Value> {
        let state = self.state();
        let counters = &self.shared.counters;
        let model = match &state.model {
            ModelState::NotLoaded => json!("not loaded"),
            ModelState::Loading => json!("loading"),
            ModelState::Ready(e) => json!({"ready": e.model_name}),
            ModelState::Failed(error) => json!({"failed": error}),
        };
        Ok(json!({
            "unitsExplained": counters.units_explained.load(Ordering::Relaxed),
            "unitsFromCache": counters.units_from_cache.load(Ordering::Relaxed),
            "analysesPublished": counters.analyses_published.load(Ordering::Relaxed),
            "analysesDropped": counters.analyses_dropped.load(Ordering::Relaxed),
            "lastAnalysis": {
                "modelMs": counters.last_model_micros.load(Ordering::Relaxed) as f64 / 1e3,
                "serverMs": counters.last_server_micros.load(Ordering::Relaxed) as f64 / 1e3,
                "publishMs": counters.last_publish_micros.load(Ordering::Relaxed) as f64 / 1e3,
                "notificationMs": counters.last_notification_micros.load(Ordering::Relaxed) as f64 / 1e3,
            },
            "positionEncoding": state.encoding.name(),
            "model": model,
            "settings": {
                "method": state.settings.method,
                "target": state.settings.target,
                "debounceMs": state.settings.debounce_ms,
                "topK": state.settings.top_k,
            },
        }))
    }

    /// `tokenlens/document`: the server's copy of a document (to check edit ordering).
    pub async fn document(&self, params: DocumentQuery) -> RpcResult<Value> {
        let state = self.state();
        let document = state
            .documents
            .get(params.uri.as_str())
            .ok_or_else(|| RpcError::invalid_params("document is not open"))?;
        Ok(json!({
            "version": document.version,
            "text": &*document.text,
            "analysedVersion": document.analysis.as_ref().map(|a| a.version),
        }))
    }

    async fn set_target(&self, argument: Option<&Value>) -> RpcResult<Option<Value>> {
        let chosen = {
            let state = self.state();
            let labels: Vec<String> = match &state.model {
                ModelState::Ready(e) => e.labels().to_vec(),
                _ => Vec::new(),
            };
            match command_argument(argument)?.as_deref().map(str::trim) {
                Some("auto") | Some("predicted") | Some("") => "auto".to_owned(),
                Some(given) => {
                    let known = labels.iter().position(|l| l.eq_ignore_ascii_case(given));
                    let index = given.parse::<usize>().ok().filter(|&i| i < labels.len());
                    match known.or(index) {
                        Some(i) => labels[i].clone(),
                        None => {
                            return Err(RpcError::invalid_params(format!(
                                "unknown class {given:?}; the model's classes are {}",
                                labels.join(", ")
                            )));
                        }
                    }
                }
                // No argument: the next class after the current one, then back to auto.
                None => {
                    let current = labels
                        .iter()
                        .position(|l| l.eq_ignore_ascii_case(&state.settings.target));
                    match current {
                        None if !labels.is_empty() => labels[0].clone(),
                        Some(i) if i + 1 < labels.len() => labels[i + 1].clone(),
                        _ => "auto".to_owned(),
                    }
                }
            }
        };
        self.apply_settings(&json!({ "target": chosen })).await;
        Ok(Some(json!(chosen)))
    }

    async fn set_method(&self, argument: Option<&Value>) -> RpcResult<Option<Value>> {
        let chosen = match command_argument(argument)? {
            Some(given) => match given.parse::<usize>() {
                Ok(i) if i < Method::ALL.len() => Method::ALL[i],
                _ => given
                    .parse::<Method>()
                    .map_err(|e| RpcError::invalid_params(e.to_string()))?,
            },
            None => {
                let current = self.settings().method();
                let i = Method::ALL.iter().position(|&m| m == current).unwrap_or(0);
                Method::ALL[(i + 1) % Method::ALL.len()]
            }
        };
        self.apply_settings(&json!({ "method": chosen.name() }))
            .await;
        Ok(Some(json!(chosen.name())))
    }
}

/// The argument of a `setTarget`/`setMethod` command: a string, or an index as a JSON number;
/// `null` or none means "the next one"; anything else is invalid.
fn command_argument(argument: Option<&Value>) -> RpcResult<Option<String>> {
    match argument {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        Some(other) => Err(RpcError::invalid_params(format!(
            "the argument must be a name or an index (a string or a non-negative integer), not {other}"
        ))),
    }
}

/// What the `target` setting asks `explainer` to explain, or why it names no class of it.
fn setting_target(target: &str, explainer: &Explainer) -> Result<Target, String> {
    match target.trim() {
        "" | "auto" | "predicted" => Ok(Target::Predicted),
        given => explainer
            .parse_target(given)
            .map(Target::Class)
            .map_err(|_| {
                format!(
                    "setting target: unknown class {given:?}; the model's classes are {} (or auto)",
                    explainer.labels().join(", ")
                )
            }),
    }
}

/// Why `target` (a setting) names no class of `explainer`, if it does not.
fn unknown_target_problem(target: &str, explainer: &Explainer) -> Option<String> {
    setting_target(target, explainer).err()
}

/// Params of `tokenlens/document`.
#[derive(Debug, serde::Deserialize)]
pub struct DocumentQuery {
    pub uri: Uri,
}

enum ScoresNotification {}

impl notification::Notification for ScoresNotification {
    type Params = features::ScoresParams;
    const METHOD: &'static str = features::SCORES_NOTIFICATION;
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> RpcResult<InitializeResult> {
        let capabilities = &params.capabilities;
        let offered: Vec<String> = capabilities
            .general
            .as_ref()
            .and_then(|g| g.position_encodings.as_ref())
            .map(|list| list.iter().map(|e| e.as_str().to_owned()).collect())
            .unwrap_or_default();
        let encoding = Encoding::negotiate(offered.iter().map(String::as_str));
        let workspace = capabilities.workspace.as_ref();
        let flags = ClientFlags {
            work_done_progress: capabilities
                .window
                .as_ref()
                .and_then(|w| w.work_done_progress)
                .unwrap_or(false),
            configuration: workspace.and_then(|w| w.configuration).unwrap_or(false),
            semantic_tokens_refresh: workspace
                .and_then(|w| w.semantic_tokens.as_ref())
                .and_then(|s| s.refresh_support)
                .unwrap_or(false),
            inlay_hint_refresh: workspace
                .and_then(|w| w.inlay_hint.as_ref())
                .and_then(|s| s.refresh_support)
                .unwrap_or(false),
            code_lens_refresh: workspace
                .and_then(|w| w.code_lens.as_ref())
                .and_then(|s| s.refresh_support)
                .unwrap_or(false),
            scores_notification: experimental_flag(capabilities, SCORES_CAPABILITY),
            scores_incremental: experimental_flag(capabilities, SCORES_INCREMENTAL_CAPABILITY),
        };
        let problems = {
            let mut state = self.state();
            state.encoding = encoding;
            state.client = flags;
            match &params.initialization_options {
                Some(options) => {
                    let (settings, problems) = state.settings.merged(options);
                    state.settings = settings;
                    problems
                }
                None => Vec::new(),
            }
        };
        for problem in problems {
            self.client
                .show_message(MessageType::WARNING, format!("tokenlens: {problem}"))
                .await;
        }
        let position_encoding = match encoding {
            Encoding::Utf8 => PositionEncodingKind::UTF8,
            _ => PositionEncodingKind::UTF16,
        };
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                position_encoding: Some(position_encoding),
                text_document_sync: Some(TextDocumentSyncCapability::Kind(
                    TextDocumentSyncKind::INCREMENTAL,
                )),
                hover_provider: Some(HoverProviderCapability::Simple(true)),
                color_provider: Some(ColorProviderCapability::Simple(true)),
                code_lens_provider: Some(CodeLensOptions {
                    resolve_provider: Some(false),
                }),
                execute_command_provider: Some(ExecuteCommandOptions {
                    commands: vec![COMMAND_SET_TARGET.into(), COMMAND_SET_METHOD.into()],
                    work_done_progress_options: Default::default(),
                }),
                inlay_hint_provider: Some(OneOf::Left(true)),
                semantic_tokens_provider: Some(
                    SemanticTokensServerCapabilities::SemanticTokensOptions(
                        SemanticTokensOptions {
                            legend: features::semantic_legend(),
                            full: Some(SemanticTokensFullOptions::Bool(true)),
                            range: Some(false),
                            work_done_progress_options: Default::default(),
                        },
                    ),
                ),
                experimental: Some(json!({
                    SCORES_CAPABILITY: { "version": 1 },
                    SCORES_INCREMENTAL_CAPABILITY: true,
                })),
                ..Default::default()
            },
            server_info: Some(ServerInfo {
                name: "tokenlens".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            offset_encoding: None,
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        // On a task of its own: the configuration pull waits for the client's answer, and a
        // handler still waiting when `exit` comes (or stdin closes) would keep the process alive.
        let backend = self.clone();
        tokio::spawn(async move {
            backend.pull_configuration().await;
            // The configuration pull may already have loaded the model it names.
            let needs_load = matches!(backend.state().model, ModelState::NotLoaded);
            if needs_load {
                backend.load_model().await;
            }
        });
    }

    async fn shutdown(&self) -> RpcResult<()> {
        self.state().shutdown_requested = true;
        // Requests waiting for an analysis are answered now (empty), not when their wait ends.
        self.notify_waiters();
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let item = params.text_document;
        let key = item.uri.as_str().to_owned();
        let (revision, debounce) = {
            let mut state = self.state();
            let revision = state.next_revision;
            state.next_revision += 1;
            let text: Arc<str> = item.text.into();
            state.documents.insert(
                key.clone(),
                Document {
                    uri: item.uri,
                    language_id: item.language_id,
                    version: item.version,
                    index: Arc::new(LineIndex::new(&text)),
                    text,
                    revision,
                    analysis: None,
                    sent_scores: None,
                },
            );
            (revision, Duration::ZERO)
        };
        self.notify_waiters();
        // A freshly opened document is explained at once; only typing is debounced.
        self.schedule(key, revision, debounce);
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let key = params.text_document.uri.as_str().to_owned();
        let version = params.text_document.version;
        // Applied synchronously, before any `.await`, so edits keep their arrival order.
        let scheduled = {
            let mut state = self.state();
            let encoding = state.encoding;
            let revision = state.next_revision;
            let debounce = Duration::from_millis(state.settings.debounce_ms);
            let Some(document) = state.documents.get_mut(&key) else {
                return;
            };
            if version <= document.version {
                None // A replayed or out-of-date change; the text already went past it.
            } else {
                let mut text = document.text.to_string();
                let mut index = LineIndex::new(&text);
                for change in params.content_changes {
                    match change.range {
                        Some(range) => {
                            let at = |p: Position| LinePosition {
                                line: p.line,
                                character: p.character,
                            };
                            let start = index.offset(&text, at(range.start), encoding);
                            let end = index.offset(&text, at(range.end), encoding).max(start);
                            text.replace_range(start..end, &change.text);
                        }
                        None => text = change.text,
                    }
                    index = LineIndex::new(&text);
                }
                document.text = text.into();
                document.index = Arc::new(index);
                document.version = version;
                document.revision = revision;
                state.next_revision += 1;
                Some((revision, debounce))
            }
        };
        if let Some((revision, debounce)) = scheduled {
            self.notify_waiters();
            self.schedule(key, revision, debounce);
        }
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        let uri = params.text_document.uri;
        self.state().documents.remove(uri.as_str());
        self.notify_waiters();
        self.client.publish_diagnostics(uri, Vec::new(), None).await;
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        // Many clients send `settings: null` and expect a pull; others push the values.
        if !params.settings.is_null() {
            self.apply_settings(&params.settings).await;
        }
        // Not awaited here, for the reason given in `initialized`.
        let backend = self.clone();
        tokio::spawn(async move { backend.pull_configuration().await });
    }

    async fn hover(&self, params: HoverParams) -> RpcResult<Option<Hover>> {
        let at = params.text_document_position_params;
        if !self.settings().features.hover {
            return Ok(None);
        }
        // Hover must be quick: it uses the last analysis if it matches the current text.
        let (analysis, encoding) = {
            let state = self.state();
            let Some(document) = state.documents.get(at.text_document.uri.as_str()) else {
                return Ok(None);
            };
            match &document.analysis {
                Some(a) if a.version == document.version => (a.clone(), state.encoding),
                _ => return Ok(None),
            }
        };
        if features::is_past_line_end(&analysis, at.position, encoding) {
            return Ok(None);
        }
        let offset = features::offset(&analysis, at.position, encoding);
        Ok(features::hover(&analysis, offset, encoding))
    }

    async fn document_color(
        &self,
        params: DocumentColorParams,
    ) -> RpcResult<Vec<ColorInformation>> {
        let settings = self.settings();
        if !settings.features.document_color {
            return Ok(Vec::new());
        }
        let Some(analysis) = self.fresh_analysis(&params.text_document.uri).await else {
            return Ok(Vec::new());
        };
        Ok(features::colors(
            &analysis,
            &self.settings(),
            self.encoding(),
        ))
    }

    async fn color_presentation(
        &self,
        params: ColorPresentationParams,
    ) -> RpcResult<Vec<ColorPresentation>> {
        // Picking a colour must never edit the prose: the presentation replaces the range with
        // the text that is already there.
        let state = self.state();
        let Some(document) = state.documents.get(params.text_document.uri.as_str()) else {
            return Ok(Vec::new());
        };
        let at = |p: Position| LinePosition {
            line: p.line,
            character: p.character,
        };
        let start = document
            .index
            .offset(&document.text, at(params.range.start), state.encoding);
        let end = document
            .index
            .offset(&document.text, at(params.range.end), state.encoding)
            .max(start);
        let existing = document.text[start..end].to_owned();
        Ok(vec![ColorPresentation {
            label: existing.clone(),
            text_edit: Some(TextEdit {
                range: params.range,
                new_text: existing,
            }),
            additional_text_edits: None,
        }])
    }

    async fn code_lens(&self, params: CodeLensParams) -> RpcResult<Option<Vec<CodeLens>>> {
        if !self.settings().features.code_lens {
            return Ok(None);
        }
        let Some(analysis) = self.fresh_analysis(&params.text_document.uri).await else {
            return Ok(None);
        };
        Ok(Some(features::code_lenses(
            &analysis,
            &self.settings(),
            self.encoding(),
        )))
    }

    async fn inlay_hint(&self, params: InlayHintParams) -> RpcResult<Option<Vec<InlayHint>>> {
        if !self.settings().features.inlay_hints {
            return Ok(None);
        }
        let Some(analysis) = self.fresh_analysis(&params.text_document.uri).await else {
            return Ok(None);
        };
        Ok(Some(features::inlay_hints(
            &analysis,
            &self.settings(),
            self.encoding(),
            params.range,
        )))
    }

    async fn semantic_tokens_full(
        &self,
        params: SemanticTokensParams,
    ) -> RpcResult<Option<SemanticTokensResult>> {
        if !self.settings().features.semantic_tokens {
            return Ok(None);
        }
        let Some(analysis) = self.fresh_analysis(&params.text_document.uri).await else {
            return Ok(None);
        };
        Ok(Some(SemanticTokensResult::Tokens(SemanticTokens {
            result_id: None,
            data: features::semantic_tokens(&analysis, self.encoding()),
        })))
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> RpcResult<Option<LSPAny>> {
        let argument = params.arguments.first();
        match params.command.as_str() {
            COMMAND_SET_TARGET => self.set_target(argument).await,
            COMMAND_SET_METHOD => self.set_method(argument).await,
            other => Err(RpcError::invalid_params(format!("unknown command {other}"))),
        }
    }
}

/// The analysis of a document from the results found so far (units without one are left out).
fn analysis_of(
    version: i32,
    revision: u64,
    text: &Arc<str>,
    index: &Arc<LineIndex>,
    segments: &[crate::segment::Segment],
    results: &[Option<Arc<UnitResult>>],
) -> Arc<Analysis> {
    Arc::new(Analysis {
        version,
        revision,
        text: text.clone(),
        index: index.clone(),
        units: segments
            .iter()
            .zip(results)
            .filter_map(|(s, r)| {
                Some(PlacedUnit {
                    start: s.start,
                    end: s.end,
                    result: r.clone()?,
                })
            })
            .collect(),
    })
}
