//! The one API every front-end uses: text in, prediction and per-token / per-word relevance out.

use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};

use crate::attnlrp::{PatchedRun, Rules};
use crate::bert::{BertClassifier, ForwardPass, Precision};
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::graphs::{self, Computed, CudaGraphs, GraphStats, Steps};
use crate::methods::{self, Method, MethodInputs};
use crate::model_dir::{ModelFiles, TokenizerFile};
use crate::relprop::AbsWeights;
use crate::text::{self, Aggregation, Piece, TextEncoder, Window};
use crate::weights::WeightStore;

/// Which class an explanation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Target {
    /// The class the model predicts for the text.
    #[default]
    Predicted,
    Class(usize),
}

#[derive(Debug, Clone)]
pub struct ExplainerOptions {
    pub precision: Precision,
    pub device: Device,
    /// Longest sequence (special tokens included) given to the model at once; longer texts are
    /// split into overlapping windows. Defaults to the model's `max_position_embeddings`.
    pub max_tokens: Option<usize>,
    pub aggregation: Aggregation,
    /// Sequences (windows) per forward pass.
    pub batch_size: usize,
    /// Most attention cells per forward pass (sequences × the longest one's length², special
    /// tokens included), so that memory stays bounded when windows are long: `None` is
    /// `batch_size` sequences of 128 tokens (16 × 128² = one 512-token window on the CPU's
    /// default batch size); a text longer than a pass is explained a pass at a time.
    pub batch_cells: Option<usize>,
    /// Explanations kept in memory, keyed by text, methods and target.
    pub cache_capacity: usize,
}

impl Default for ExplainerOptions {
    fn default() -> Self {
        ExplainerOptions {
            precision: Precision::F32,
            device: Device::Cpu,
            max_tokens: None,
            aggregation: Aggregation::Sum,
            batch_size: 16,
            batch_cells: None,
            cache_capacity: 4096,
        }
    }
}

/// A token position of the whole text: [CLS], the word-pieces, [SEP].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Token {
    pub token: String,
    pub id: u32,
    /// Byte span in the original text; empty (0, 0) for [CLS]/[SEP].
    pub start: usize,
    pub end: usize,
    pub special: bool,
}

/// A word of the original text (byte span) and the token positions it covers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Word {
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub tokens: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Attribution {
    pub method: String,
    /// One score per token position, [CLS] and [SEP] included (the method's own vector).
    pub token_scores: Vec<f64>,
    /// One score per word, aggregated from its pieces.
    pub word_scores: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Explanation {
    pub text: String,
    pub logits: Vec<f64>,
    pub probs: Vec<f64>,
    pub predicted: usize,
    pub target: usize,
    pub tokens: Vec<Token>,
    pub words: Vec<Word>,
    pub attributions: Vec<Attribution>,
    /// How many windows the text was split into (1 when it fits the model).
    pub windows: usize,
}

impl Explanation {
    pub fn attribution(&self, method: Method) -> Option<&Attribution> {
        self.attributions.iter().find(|a| a.method == method.name())
    }
}

type CacheKey = (String, Target, Vec<Method>);
/// A recorded CUDA graph is valid for one batch shape, real lengths and method list.
type GraphKey = (Vec<usize>, Vec<usize>, Vec<Method>);

pub struct Explainer {
    /// Dropped in `Drop` while holding the device (see there).
    model: ManuallyDrop<BertClassifier>,
    /// The model's |W| for relevance propagation, kept on a GPU only (see [`AbsWeights`]);
    /// dropped in `Drop` like the model.
    abs_weights: ManuallyDrop<AbsWeights>,
    encoder: TextEncoder,
    pub model_name: String,
    /// Dropped in `Drop` while holding the device (it holds a handle of it).
    options: ManuallyDrop<ExplainerOptions>,
    cache: Mutex<HashMap<CacheKey, Arc<Explanation>>>,
    /// Recorded CUDA graphs for one-window batches; `None` on the CPU.
    graphs: Option<CudaGraphs<Route, GraphKey>>,
}

impl Drop for Explainer {
    /// The last handle of a CUDA device tears down its cuBLAS and cuRAND state, which can
    /// invalidate a graph another explainer is recording: drop the model, the options (they hold
    /// the device) and the graphs while holding the device like any other device work.
    fn drop(&mut self) {
        let _device = graphs::shared_device_work();
        self.graphs.take();
        // SAFETY: dropped once, here, and never used again.
        unsafe {
            ManuallyDrop::drop(&mut self.model);
            ManuallyDrop::drop(&mut self.abs_weights);
            ManuallyDrop::drop(&mut self.options);
        }
    }
}

/// Per document of a batch: logits (mean over its windows), predicted and target class.
struct DocumentClasses {
    logits: Vec<Vec<f64>>,
    predicted: Vec<usize>,
    target: Vec<usize>,
}

/// One text's pieces and windows while it is being explained.
struct Document<'a> {
    text: &'a str,
    pieces: Vec<Piece>,
    windows: Vec<Window>,
}

impl Explainer {
    /// Loads a model directory or hub id.
    pub fn load(model: &str, options: ExplainerOptions) -> Result<Self> {
        Self::from_files(&ModelFiles::resolve(model)?, options)
    }

    pub fn from_files(files: &ModelFiles, options: ExplainerOptions) -> Result<Self> {
        // Uploading weights is device work (see graphs::shared_device_work).
        let _device = graphs::shared_device_work();
        let config = BertConfig::from_file(&files.config)?;
        let dtype = options.precision.dtype();
        let store = WeightStore::load(&files.weights, dtype, &options.device)?;
        let model = BertClassifier::load(config, &store, dtype, &options.device)?;
        let abs_weights = if options.device.is_cuda() {
            AbsWeights::of_model(&model)?
        } else {
            AbsWeights::none()
        };
        let encoder = match &files.tokenizer {
            TokenizerFile::Json(path) => TextEncoder::from_tokenizer_json(path)?,
            TokenizerFile::Vocab { path, lowercase } => TextEncoder::from_vocab(path, *lowercase)?,
        };
        Ok(Explainer {
            encoder,
            model_name: files.name.clone(),
            graphs: CudaGraphs::new(&options.device),
            model: ManuallyDrop::new(model),
            abs_weights: ManuallyDrop::new(abs_weights),
            options: ManuallyDrop::new(options),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn model(&self) -> &BertClassifier {
        &self.model
    }

    pub fn encoder(&self) -> &TextEncoder {
        &self.encoder
    }

    pub fn labels(&self) -> &[String] {
        &self.model.config.labels
    }

    pub fn options(&self) -> &ExplainerOptions {
        &self.options
    }

    /// A class given by label (case-insensitive) or index.
    pub fn parse_target(&self, given: &str) -> Result<usize> {
        let labels = self.labels();
        if let Some(i) = labels
            .iter()
            .position(|l| l.eq_ignore_ascii_case(given.trim()))
        {
            return Ok(i);
        }
        match given.trim().parse::<usize>() {
            Ok(i) if i < labels.len() => Ok(i),
            _ => Err(Error::UnknownLabel {
                given: given.to_owned(),
                labels: labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("{l} ({i})"))
                    .collect(),
            }),
        }
    }

    fn batch_cells(&self) -> usize {
        self.options.batch_cells.unwrap_or(
            self.options
                .batch_size
                .max(1)
                .saturating_mul(CELLS_PER_SEQUENCE),
        )
    }

    fn window_capacity(&self) -> usize {
        let positions = self.model.config.max_position_embeddings;
        let limit = self.options.max_tokens.unwrap_or(positions).min(positions);
        limit.saturating_sub(2).max(1)
    }

    pub fn explain(&self, text: &str, methods: &[Method], target: Target) -> Result<Explanation> {
        let mut out = self.explain_batch(&[text], methods, target)?;
        Ok(out.remove(0))
    }

    /// Explains every text; results are in input order. Cached texts are not recomputed.
    pub fn explain_batch(
        &self,
        texts: &[&str],
        methods: &[Method],
        target: Target,
    ) -> Result<Vec<Explanation>> {
        let mut results: Vec<Option<Explanation>> = vec![None; texts.len()];
        let mut todo = Vec::new();
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            for (i, text) in texts.iter().enumerate() {
                match cache.get(&(text.to_string(), target, methods.to_vec())) {
                    Some(hit) => results[i] = Some((**hit).clone()),
                    None => todo.push(i),
                }
            }
        }
        let capacity = self.window_capacity();
        let mut documents = Vec::with_capacity(todo.len());
        for &i in &todo {
            let pieces = self.encoder.pieces(texts[i])?;
            let windows = text::windows(pieces.len(), capacity);
            documents.push((
                i,
                Document {
                    text: texts[i],
                    pieces,
                    windows,
                },
            ));
        }
        // Similar lengths together keep padding small; each text's windows stay in one batch
        // (one text of more windows than a batch is split by `explain_documents`).
        let longest = |d: &Document| d.windows.iter().map(|w| w.end - w.start + 2).max();
        documents.sort_by_key(|(_, d)| longest(d));
        let batch_cells = self.batch_cells();
        let mut start = 0;
        while start < documents.len() {
            let mut end = start;
            let mut sequences = 0;
            while end < documents.len() && {
                let doc = &documents[end].1;
                // Sorted by length: this text's longest window is the batch's longest.
                end == start
                    || fits_one_pass(
                        sequences + doc.windows.len(),
                        longest(doc).unwrap_or(2),
                        self.options.batch_size,
                        batch_cells,
                    )
            } {
                sequences += documents[end].1.windows.len();
                end += 1;
            }
            let docs: Vec<&Document> = documents[start..end].iter().map(|(_, d)| d).collect();
            let explained = self.explain_documents(&docs, methods, target)?;
            for ((i, _), explanation) in documents[start..end].iter().zip(explained) {
                results[*i] = Some(explanation);
            }
            start = end;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if self.options.cache_capacity == 0 {
            return Ok(results
                .into_iter()
                .map(|r| r.expect("every text explained"))
                .collect());
        }
        if cache.len() + todo.len() > self.options.cache_capacity {
            cache.clear();
        }
        for &i in &todo {
            if let Some(e) = &results[i] {
                cache.insert(
                    (texts[i].to_string(), target, methods.to_vec()),
                    Arc::new(e.clone()),
                );
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every text explained"))
            .collect())
    }

    /// Padded ids and mask for sequences of piece ids (special tokens added here).
    fn batch_tensors(&self, sequences: &[Vec<u32>]) -> Result<(Tensor, Tensor, Vec<usize>)> {
        let longest = sequences.iter().map(|s| s.len() + 2).max().unwrap_or(2);
        let mut ids = Vec::with_capacity(sequences.len() * longest);
        let mut mask = Vec::with_capacity(sequences.len() * longest);
        let mut lengths = Vec::with_capacity(sequences.len());
        for seq in sequences {
            let len = seq.len() + 2;
            ids.push(self.encoder.cls_id);
            ids.extend_from_slice(seq);
            ids.push(self.encoder.sep_id);
            ids.extend(std::iter::repeat_n(self.encoder.pad_id, longest - len));
            mask.extend(std::iter::repeat_n(1u32, len));
            mask.extend(std::iter::repeat_n(0u32, longest - len));
            lengths.push(len);
        }
        let device = &self.options.device;
        let shape = (sequences.len(), longest);
        Ok((
            Tensor::from_vec(ids, shape, device)?,
            Tensor::from_vec(mask, shape, device)?,
            lengths,
        ))
    }

    fn explain_documents(
        &self,
        docs: &[&Document],
        methods: &[Method],
        target: Target,
    ) -> Result<Vec<Explanation>> {
        let mut sequences = Vec::new();
        let mut owner = Vec::new();
        for (d, doc) in docs.iter().enumerate() {
            for w in &doc.windows {
                sequences.push(
                    doc.pieces[w.start..w.end]
                        .iter()
                        .map(|p| p.id)
                        .collect::<Vec<_>>(),
                );
                owner.push(d);
            }
        }
        // Window logits → the target class of every window (its document's target).
        let choose_targets = |window_logits: &[Vec<f64>]| -> Result<Vec<usize>> {
            let classes = self.document_targets(window_logits, &owner, docs, target)?;
            Ok(owner.iter().map(|&d| classes.target[d]).collect())
        };
        let lengths: Vec<usize> = sequences.iter().map(|s| s.len() + 2).collect();
        let passes = pass_ranges(&lengths, self.options.batch_size, self.batch_cells());
        let computed = if passes.len() <= 1 {
            self.compute(&sequences, methods, &choose_targets)?
        } else {
            // One text with more windows than a pass holds: its target needs the logits of
            // all of them, so they are classified first (no activations kept), then explained
            // a pass at a time, which bounds memory by the batch, not by the text's length.
            let mut window_logits = Vec::with_capacity(sequences.len());
            for pass in &passes {
                let (ids, mask, _) = self.batch_tensors(&sequences[pass.clone()])?;
                let logits = {
                    let _device = graphs::shared_device_work();
                    self.model.logits(&ids, &mask)?.to_dtype(DType::F64)?
                };
                window_logits.extend(logits.to_vec2::<f64>()?);
            }
            let targets = choose_targets(&window_logits)?;
            let mut scores: Vec<Vec<Vec<f64>>> = vec![Vec::new(); methods.len()];
            for pass in passes {
                let chosen = &targets[pass.clone()];
                let part_computed =
                    self.compute(&sequences[pass], methods, &|_| Ok(chosen.to_vec()))?;
                for (all, per_window) in scores.iter_mut().zip(part_computed.scores) {
                    all.extend(per_window);
                }
            }
            Computed {
                logits: window_logits,
                scores,
            }
        };
        let DocumentClasses {
            logits: doc_logits,
            predicted,
            target: doc_target,
        } = self.document_targets(&computed.logits, &owner, docs, target)?;
        // window_scores[method][sequence] = vector over that window's positions.
        let window_scores: Vec<Vec<Vec<f64>>> = methods
            .iter()
            .zip(computed.scores)
            .map(|(&method, per_window)| {
                per_window
                    .into_iter()
                    .map(|raw| methods::finish_scores(method, raw))
                    .collect()
            })
            .collect();
        let mut out = Vec::with_capacity(docs.len());
        let mut first_seq = 0;
        for (d, doc) in docs.iter().enumerate() {
            let seqs = first_seq..first_seq + doc.windows.len();
            first_seq = seqs.end;
            let tokens = self.tokens_of(doc);
            let words = self.words_of(doc);
            let attributions = methods
                .iter()
                .zip(&window_scores)
                .map(|(method, per_seq)| {
                    let token_scores = merge_windows(doc, &per_seq[seqs.clone()]);
                    let word_scores = words
                        .iter()
                        .map(|w| {
                            let s: Vec<f64> = w.tokens.iter().map(|&t| token_scores[t]).collect();
                            self.options.aggregation.apply(&s)
                        })
                        .collect();
                    Attribution {
                        method: method.name().to_owned(),
                        token_scores,
                        word_scores,
                    }
                })
                .collect();
            out.push(Explanation {
                text: doc.text.to_owned(),
                probs: if self.model.config.multi_label {
                    sigmoid(&doc_logits[d])
                } else {
                    softmax(&doc_logits[d])
                },
                logits: doc_logits[d].clone(),
                predicted: predicted[d],
                target: doc_target[d],
                tokens,
                words,
                attributions,
                windows: doc.windows.len(),
            });
        }
        Ok(out)
    }

    /// Logits and raw scores of `sequences` (piece ids of windows), explained together as one
    /// batch, with the target of each window chosen by `choose` from the logits of all.
    fn compute(
        &self,
        sequences: &[Vec<u32>],
        methods: &[Method],
        choose: graphs::ChooseTargets,
    ) -> Result<Computed> {
        let (ids, mask, lengths) = self.batch_tensors(sequences)?;
        let first = |ids: &Tensor, mask: &Tensor| self.start_route(ids, mask, methods);
        let second =
            |route: &Route, seed: &Tensor| self.route_scores(route, seed, &lengths, methods);
        let steps = Steps {
            first: &first,
            logits: &Route::logits,
            choose,
            second: &second,
        };
        match &self.graphs {
            // Replaying pays off for one window at a time (interactive use): batches are rarely
            // the same shape twice, and batching already hides the launch overhead.
            Some(graphs) if sequences.len() == 1 => {
                let key = (ids.dims().to_vec(), lengths.clone(), methods.to_vec());
                graphs.run(key, &ids, &mask, &steps)
            }
            _ => graphs::run_eager(&ids, &mask, &steps),
        }
    }

    /// Per document: logits (mean over its windows), predicted class and target class.
    fn document_targets(
        &self,
        window_logits: &[Vec<f64>],
        owner: &[usize],
        docs: &[&Document],
        target: Target,
    ) -> Result<DocumentClasses> {
        let classes = self.labels().len();
        let mut doc_logits = vec![vec![0f64; classes]; docs.len()];
        for (seq, logits) in window_logits.iter().enumerate() {
            let d = owner[seq];
            let n = docs[d].windows.len() as f64;
            for (acc, l) in doc_logits[d].iter_mut().zip(logits) {
                *acc += l / n;
            }
        }
        let predicted: Vec<usize> = doc_logits.iter().map(|l| argmax(l)).collect();
        let doc_target: Vec<usize> = match target {
            Target::Predicted => predicted.clone(),
            Target::Class(c) if c < classes => vec![c; docs.len()],
            Target::Class(c) => {
                return Err(Error::UnknownLabel {
                    given: c.to_string(),
                    labels: self.labels().to_vec(),
                });
            }
        };
        Ok(DocumentClasses {
            logits: doc_logits,
            predicted,
            target: doc_target,
        })
    }

    /// The first step of a batch: the forward pass the methods read, up to the logits.
    /// AttnLRP and CP-LRP alone need no instrumented forward pass: their patched pass has the
    /// model's logits, so the targets are chosen from it before its backward pass.
    fn start_route(&self, ids: &Tensor, mask: &Tensor, methods: &[Method]) -> Result<Route> {
        let patched_rules: Option<Vec<Rules>> = methods
            .iter()
            .map(|m| m.patched_rules())
            .collect::<Option<Vec<_>>>()
            .filter(|rules| !rules.is_empty());
        Ok(match patched_rules {
            Some(rules) => {
                let embedded = self.model.embed(ids)?;
                let extended_mask = self.model.extended_mask(mask)?;
                let first = PatchedRun::start(&self.model, &embedded, &extended_mask, rules[0])?;
                Route::PatchedOnly {
                    embedded,
                    extended_mask,
                    rules,
                    first,
                }
            }
            None => {
                let _span = crate::profile::span("forward (all)", &self.model.device);
                let last_layer = Method::last_layer_for(methods);
                Route::Instrumented(Box::new(
                    self.model.forward_with(ids, mask, false, last_layer)?,
                ))
            }
        })
    }

    /// The second step: score tensors [method][window] for the one-hot targets `seed` [B, C].
    fn route_scores(
        &self,
        route: &Route,
        seed: &Tensor,
        lengths: &[usize],
        methods: &[Method],
    ) -> Result<Vec<Vec<Tensor>>> {
        let per_window = |score: &dyn Fn(usize, usize) -> Result<Tensor>| {
            lengths
                .iter()
                .enumerate()
                .map(|(seq, &len)| score(seq, len))
                .collect::<Result<Vec<_>>>()
        };
        let mut window_scores = Vec::with_capacity(methods.len());
        match route {
            Route::PatchedOnly {
                embedded,
                extended_mask,
                rules,
                first,
            } => {
                for (k, &rules) in rules.iter().enumerate() {
                    let relevance = if k == 0 {
                        first.relevance_seeded(seed)?
                    } else {
                        PatchedRun::start(&self.model, embedded, extended_mask, rules)?
                            .relevance_seeded(seed)?
                    };
                    window_scores.push(per_window(&|seq, len| {
                        methods::patched_score_tensor(&relevance, seq, len)
                    })?);
                }
            }
            Route::Instrumented(pass) => {
                let gradients = methods::gradients_for(methods, &self.model, pass, seed)?;
                let relevance =
                    methods::propagate_for(methods, &self.model, &self.abs_weights, pass, seed)?;
                let patched = methods::patched_for(methods, &self.model, pass, seed)?;
                let inputs = MethodInputs {
                    model: &self.model,
                    pass,
                    gradients: gradients.as_ref(),
                    relevance: relevance.as_ref(),
                    patched: &patched,
                };
                let _span = crate::profile::span("method scores", &self.model.device);
                for &method in methods {
                    window_scores.push(per_window(&|seq, len| {
                        methods::score_tensor(method, &inputs, seq, len)
                    })?);
                }
            }
        }
        Ok(window_scores)
    }

    /// What the CUDA graph cache has done (all zero on the CPU or with graphs off).
    pub fn graph_stats(&self) -> GraphStats {
        self.graphs.as_ref().map(|g| g.stats()).unwrap_or_default()
    }

    fn tokens_of(&self, doc: &Document) -> Vec<Token> {
        let special = |token: &str, id| Token {
            token: token.into(),
            id,
            start: 0,
            end: 0,
            special: true,
        };
        let mut tokens = vec![special("[CLS]", self.encoder.cls_id)];
        tokens.extend(doc.pieces.iter().map(|p| Token {
            token: p.token.clone(),
            id: p.id,
            start: p.start,
            end: p.end,
            special: false,
        }));
        tokens.push(special("[SEP]", self.encoder.sep_id));
        tokens
    }

    fn words_of(&self, doc: &Document) -> Vec<Word> {
        text::words(doc.text, &doc.pieces)
            .into_iter()
            .map(|w| Word {
                text: doc.text[w.start..w.end].to_owned(),
                start: w.start,
                end: w.end,
                // token position = piece index + 1 ([CLS] first)
                tokens: w.pieces.iter().map(|p| p + 1).collect(),
            })
            .collect()
    }

    /// Class probabilities only (no explanation), batched; for evaluation and training reports.
    pub fn classify_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f64>>> {
        let explained = self.explain_batch(texts, &[], Target::Predicted)?;
        Ok(explained.into_iter().map(|e| e.probs).collect())
    }
}

/// Attention cells a sequence of the default batch is counted with (128 tokens).
const CELLS_PER_SEQUENCE: usize = 128 * 128;

/// Whether `sequences` sequences padded to `longest` positions fit one forward pass of at most
/// `count` sequences and `cells` attention cells.
fn fits_one_pass(sequences: usize, longest: usize, count: usize, cells: usize) -> bool {
    sequences <= count.max(1) && sequences.saturating_mul(longest * longest) <= cells
}

/// Consecutive ranges of sequences of `lengths` for one forward pass each: at most `count`
/// sequences and at most `cells` attention cells when padded to the longest, and at least one
/// sequence per pass.
fn pass_ranges(lengths: &[usize], count: usize, cells: usize) -> Vec<std::ops::Range<usize>> {
    let mut passes = Vec::new();
    let mut start = 0;
    while start < lengths.len() {
        let mut end = start + 1;
        let mut longest = lengths[start];
        while end < lengths.len() {
            let length = longest.max(lengths[end]);
            if !fits_one_pass(end + 1 - start, length, count, cells) {
                break;
            }
            longest = length;
            end += 1;
        }
        passes.push(start..end);
        start = end;
    }
    passes
}

/// Per token position of the whole text: the mean over the windows that contain it ([CLS] and
/// [SEP] of every window count for the text's [CLS] and [SEP]).
fn merge_windows(doc: &Document, per_window: &[Vec<f64>]) -> Vec<f64> {
    if per_window.len() == 1 {
        return per_window[0].clone();
    }
    let n = doc.pieces.len() + 2;
    let mut sum = vec![0f64; n];
    let mut count = vec![0usize; n];
    for (w, scores) in doc.windows.iter().zip(per_window) {
        let last = scores.len() - 1;
        sum[0] += scores[0];
        count[0] += 1;
        sum[n - 1] += scores[last];
        count[n - 1] += 1;
        for (offset, piece) in (w.start..w.end).enumerate() {
            sum[piece + 1] += scores[offset + 1];
            count[piece + 1] += 1;
        }
    }
    sum.iter()
        .zip(&count)
        .map(|(s, &c)| s / c.max(1) as f64)
        .collect()
}

pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Per-class probabilities of a multi-label classifier.
pub fn sigmoid(logits: &[f64]) -> Vec<f64> {
    logits.iter().map(|l| 1.0 / (1.0 + (-l).exp())).collect()
}

pub fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}

/// How one batch of windows is explained: the instrumented forward pass that most methods read, or
/// only the patched pass of AttnLRP/CP-LRP.
enum Route {
    Instrumented(Box<ForwardPass>),
    /// `rules[k]` is that of the k-th requested method; `first` is its pass for `rules[0]`.
    PatchedOnly {
        embedded: Tensor,
        extended_mask: Tensor,
        rules: Vec<Rules>,
        first: PatchedRun,
    },
}

impl Route {
    fn logits(&self) -> &Tensor {
        match self {
            Route::Instrumented(pass) => &pass.logits,
            Route::PatchedOnly { first, .. } => first.logits(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pass_ranges;

    #[test]
    fn passes_hold_at_most_the_batch_size_and_the_attention_cells_padded_to_the_longest() {
        // Short sequences: the count decides.
        assert_eq!(pass_ranges(&[10; 7], 3, usize::MAX), [0..3, 3..6, 6..7]);
        // 512-token windows on the CPU default (16 × 128²): one per pass.
        let budget = 16 * 128 * 128;
        assert_eq!(pass_ranges(&[512; 3], 16, budget), [0..1, 1..2, 2..3]);
        // 256-token windows: four per pass; a long one after short ones pads them all.
        assert_eq!(pass_ranges(&[256; 5], 16, budget), [0..4, 4..5]);
        assert_eq!(pass_ranges(&[100, 100, 300, 100], 16, budget), [0..2, 2..4]);
        // A window beyond the budget still gets a pass of its own.
        assert_eq!(pass_ranges(&[600, 20], 16, budget), [0..1, 1..2]);
        assert!(pass_ranges(&[], 16, budget).is_empty());
    }
}
