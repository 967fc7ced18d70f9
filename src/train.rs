//! Fine-tuning a BERT sequence classifier (`tokenlens train`): every weight of the encoder is
//! trained together with a new classification head, the recipe of Hugging Face's `Trainer` for
//! `BertForSequenceClassification` (AdamW, weight decay 0.01 except on biases and LayerNorm
//! weights, linear warm-up then linear decay, gradient norm clipped at 1, dropout 0.1,
//! length-grouped mini-batches, fixed seed). The result is saved in the Hugging Face layout, so both
//! this crate and `transformers` load it.
//!
//! Engine code only: progress is reported through [`TrainEvent`]s; terminal output belongs to
//! `cli::train`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Normal};

use crate::bert::{BertClassifier, TrainingDropout};
use crate::config::BertConfig;
use crate::dataset::{self, Columns, LabelColumn};
use crate::error::{Error, Result};
use crate::model_dir::{ModelFiles, TokenizerFile};
use crate::text::TextEncoder;
use crate::weights::WeightStore;

/// Hyper-parameters of a fine-tuning run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub epochs: usize,
    /// Peak learning rate, reached at the end of the warm-up.
    pub learning_rate: f64,
    pub batch_size: usize,
    /// Longest sequence, [CLS] and [SEP] included; longer texts are truncated.
    pub max_length: usize,
    pub seed: u64,
    /// Seed of the new head (and pooler) weights when it differs from `seed`; with `None` or
    /// `Some(seed)` one random stream serves initialisation and shuffling, as before it existed.
    pub init_seed: Option<u64>,
    /// Decoupled AdamW weight decay, applied to all weights except biases and LayerNorm weights.
    pub weight_decay: f64,
    /// Fraction of all optimiser steps spent warming the learning rate up from 0.
    pub warmup_fraction: f64,
    /// Dropout probability during training (Hugging Face BERT uses 0.1).
    pub dropout: f32,
    /// Gradients are rescaled so that their global L2 norm is at most this.
    pub max_grad_norm: f64,
    /// Also keep an exponential moving average of the weights with this decay per step, and let
    /// it compete with the trained weights on dev after every epoch. Training is unchanged.
    pub weight_average_decay: Option<f64>,
    /// Float type of the saved `model.safetensors` (training itself runs in float32).
    pub save_dtype: DType,
    pub device: Device,
    pub pooler: PoolerChoice,
}

/// What to do with the base's pooler, the dense layer over `[CLS]` that feeds the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolerChoice {
    /// Keep it when it was trained; a new one when the base has none or an untrained one.
    Auto,
    /// Keep the base's pooler whatever it holds (a new one only when there is none).
    Keep,
    /// Always a new pooler.
    New,
}

/// Where the pooler that training starts from came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolerStart {
    FromBase,
    /// The base has no pooler weights.
    NewMissing,
    /// The base's pooler was never trained (its bias is exactly zero everywhere).
    NewUntrained,
    /// `PoolerChoice::New`.
    NewRequested,
}

impl PoolerStart {
    pub fn describe(self) -> &'static str {
        match self {
            PoolerStart::FromBase => "the base's",
            PoolerStart::NewMissing => "new (the base has none)",
            PoolerStart::NewUntrained => {
                "new (the base's was never trained: its bias is all zeros)"
            }
            PoolerStart::NewRequested => "new (as requested)",
        }
    }

    fn is_new(self) -> bool {
        self != PoolerStart::FromBase
    }
}

/// A pooler bias that is exactly zero in every component never received an update: a linear
/// layer's bias starts at zero, and any gradient step moves it. Encoders trained for sentence
/// embeddings (sentence-transformers' mean pooling) carry such a pooler; its weights were never
/// trained either, so starting from them starts the head from noise, not from anything learned.
fn pooler_start(base: &WeightStore, hidden: usize, choice: PoolerChoice) -> Result<PoolerStart> {
    const BIAS: &str = "pooler.dense.bias";
    if choice == PoolerChoice::New {
        return Ok(PoolerStart::NewRequested);
    }
    if !(base.contains(BIAS) && base.contains("pooler.dense.weight")) {
        return Ok(PoolerStart::NewMissing);
    }
    if choice == PoolerChoice::Keep {
        return Ok(PoolerStart::FromBase);
    }
    let bias = base.get(BIAS, &[hidden])?.to_vec1::<f32>()?;
    Ok(if bias.iter().all(|&b| b == 0.0) {
        PoolerStart::NewUntrained
    } else {
        PoolerStart::FromBase
    })
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 3,
            learning_rate: 5e-5,
            batch_size: 32,
            max_length: 128,
            seed: 42,
            init_seed: None,
            weight_decay: 0.01,
            warmup_fraction: 0.1,
            dropout: 0.1,
            max_grad_norm: 1.0,
            weight_average_decay: None,
            save_dtype: DType::F32,
            device: Device::Cpu,
            pooler: PoolerChoice::Auto,
        }
    }
}

/// A labelled text; `label` indexes the label names of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub text: String,
    pub label: usize,
}

/// A row of a data file before its label is resolved to a class index.
#[derive(Debug, Clone)]
pub struct Row {
    pub text: String,
    pub label: String,
    /// 1-based line number in the file, for messages.
    pub line: usize,
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        source,
    }
}

fn write_error(path: &Path, source: std::io::Error) -> Error {
    Error::Output {
        path: path.to_owned(),
        source,
    }
}

/// Reads a training or dev file (TSV with a header line, or JSONL; see [`crate::dataset`]);
/// every row must have a label.
pub fn read_rows(path: &Path, text_column: &str, label_column: &str) -> Result<Vec<Row>> {
    let columns = Columns {
        text: Some(text_column),
        label: LabelColumn::Required(label_column),
    };
    Ok(dataset::read(path, columns)?
        .into_iter()
        .map(|record| Row {
            text: record.text,
            label: record.label.unwrap_or_default(),
            line: record.line,
        })
        .collect())
}

/// The label names of a run: `given` (from `--labels`) or else the distinct label values of the
/// training rows, in numeric order when all are integers and in text order otherwise.
pub fn label_names(given: Option<&[String]>, train_rows: &[Row]) -> Result<Vec<String>> {
    if let Some(given) = given {
        let names: Vec<String> = given.iter().map(|l| l.trim().to_owned()).collect();
        if names.len() < 2 || names.iter().any(String::is_empty) {
            return Err(Error::Usage(format!(
                "--labels needs at least two non-empty names, in class order (e.g. --labels negative,positive); got {:?}",
                given.join(",")
            )));
        }
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(Error::Usage(format!("--labels names {name:?} twice")));
            }
        }
        return Ok(names);
    }
    let mut distinct: Vec<String> = train_rows.iter().map(|r| r.label.clone()).collect();
    distinct.sort();
    distinct.dedup();
    if distinct.iter().all(|l| l.parse::<u64>().is_ok()) {
        distinct.sort_by_key(|l| l.parse::<u64>().unwrap_or(u64::MAX));
    }
    if distinct.len() < 2 {
        return Err(Error::Usage(format!(
            "the training data has only the label {:?}; a classifier needs at least two classes",
            distinct.first().cloned().unwrap_or_default()
        )));
    }
    Ok(distinct)
}

/// Resolves every row's label: a label name, or a class index into `labels` (so data labelled
/// 0/1 trains with `--labels negative,positive`).
pub fn examples(rows: Vec<Row>, labels: &[String], path: &Path) -> Result<Vec<Example>> {
    rows.into_iter()
        .map(|row| {
            let by_name = labels.iter().position(|l| *l == row.label).or_else(|| {
                let mut same_but_case = labels
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.eq_ignore_ascii_case(&row.label));
                match (same_but_case.next(), same_but_case.next()) {
                    (Some((i, _)), None) => Some(i),
                    _ => None,
                }
            });
            let by_index = || {
                row.label
                    .parse::<usize>()
                    .ok()
                    .filter(|&i| i < labels.len())
            };
            let label = by_name.or_else(by_index).ok_or_else(|| {
                Error::Usage(format!(
                    "{} line {}: label {:?} is not one of the labels {} (by name or class index); \
                     fix the row or list every label with --labels",
                    path.display(),
                    row.line,
                    row.label,
                    labels.join(", ")
                ))
            })?;
            Ok(Example {
                text: row.text,
                label,
            })
        })
        .collect()
}

/// Progress of a run, in the order it happens.
#[derive(Debug, Clone)]
pub enum TrainEvent<'a> {
    Started {
        train_examples: usize,
        dev_examples: usize,
        steps_per_epoch: usize,
        total_steps: usize,
        parameters: usize,
        pooler: PoolerStart,
    },
    /// One optimiser step; `step` counts from 1 over the whole run.
    Step {
        epoch: usize,
        step: usize,
        loss: f64,
        examples: usize,
        learning_rate: f64,
    },
    Evaluating {
        epoch: usize,
        examples: usize,
    },
    EpochDone(&'a EpochReport),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EpochReport {
    /// From 1.
    pub epoch: usize,
    pub mean_loss: f64,
    pub dev_accuracy: Option<f64>,
    /// Dev accuracy of the moving average of the weights (with `weight_average_decay`).
    pub average_dev_accuracy: Option<f64>,
    /// Whether the model of this epoch was written to the output directory.
    pub saved: bool,
    /// Whether what was written is the moving average rather than the trained weights.
    pub saved_average: bool,
    pub train_seconds: f64,
    pub examples_per_second: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    pub epochs: Vec<EpochReport>,
    /// The epoch whose model was saved (the best on dev, else the last).
    pub best_epoch: usize,
    pub best_dev_accuracy: Option<f64>,
    /// Whether the saved weights are the moving average of the weights.
    pub best_is_average: bool,
    pub pooler: PoolerStart,
    /// Training loss of every optimiser step, in order.
    pub step_losses: Vec<f64>,
    /// Logits of the saved model (float32, before any conversion to the saved dtype) for every
    /// dev example, in order; empty without dev data.
    pub saved_dev_logits: Vec<Vec<f32>>,
    pub seconds: f64,
    pub out: PathBuf,
}

/// A trainable weight with its canonical name (no `bert.` prefix).
struct Parameter {
    name: String,
    var: Var,
    /// Biases and LayerNorm weights are not decayed (Hugging Face's `Trainer` convention).
    decay: bool,
}

/// Polyak averaging: an exponential moving average of every trainable weight, updated after each
/// optimiser step. The decay warms up as in TensorFlow's `ExponentialMovingAverage` with
/// `num_updates` (min(decay, (1 + n) / (10 + n))), so the randomly initialised head is not
/// averaged with its starting point for long.
struct WeightAverage {
    decay: f64,
    updates: usize,
    averages: Vec<Tensor>,
}

impl WeightAverage {
    fn new(params: &[Parameter], decay: f64) -> Result<Self> {
        let averages = params
            .iter()
            .map(|p| p.var.as_tensor().detach().copy())
            .collect::<candle_core::Result<_>>()?;
        Ok(WeightAverage {
            decay,
            updates: 0,
            averages,
        })
    }

    fn update(&mut self, params: &[Parameter]) -> Result<()> {
        self.updates += 1;
        let n = self.updates as f64;
        let decay = self.decay.min((1.0 + n) / (10.0 + n));
        for (average, p) in self.averages.iter_mut().zip(params) {
            let current = p.var.as_tensor().detach();
            *average = (average.affine(decay, 0.0)? + current.affine(1.0 - decay, 0.0)?)?;
        }
        Ok(())
    }

    /// Puts the averages into the parameters and returns the trained weights they replaced.
    fn swap_in(&self, params: &[Parameter]) -> Result<Vec<Tensor>> {
        let mut trained = Vec::with_capacity(params.len());
        for (average, p) in self.averages.iter().zip(params) {
            trained.push(p.var.as_tensor().detach().copy()?);
            p.var.set(average)?;
        }
        Ok(trained)
    }

    fn restore(params: &[Parameter], trained: &[Tensor]) -> Result<()> {
        for (weights, p) in trained.iter().zip(params) {
            p.var.set(weights)?;
        }
        Ok(())
    }
}

/// A tokenized example: [CLS] pieces [SEP].
pub(crate) struct Encoded {
    ids: Vec<u32>,
    label: usize,
}

/// The classifier's `config.json`: the base config with the labels, architecture and dtype set.
fn classifier_config(
    files: &ModelFiles,
    labels: &[String],
    save_dtype: DType,
) -> Result<(serde_json::Value, BertConfig)> {
    let path = &files.config;
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    let mut json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::BadConfig {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let object = json.as_object_mut().ok_or_else(|| Error::BadConfig {
        path: path.clone(),
        message: "not a JSON object".into(),
    })?;
    // Encoder checkpoints say BertModel or BertForMaskedLM; the encoder is the same.
    if let Some(model_type) = object.get("model_type").and_then(|t| t.as_str())
        && model_type != "bert"
    {
        return Err(Error::UnsupportedArchitecture {
            path: path.clone(),
            found: model_type.to_owned(),
            supported: vec!["bert (any BERT encoder: BertModel, BertForMaskedLM, ...)"],
        });
    }
    object.insert(
        "architectures".into(),
        serde_json::json!(["BertForSequenceClassification"]),
    );
    object.insert("model_type".into(), "bert".into());
    object.remove("num_labels");
    let id2label: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), l.clone().into()))
        .collect();
    let label2id: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), i.into()))
        .collect();
    object.insert("id2label".into(), id2label.into());
    object.insert("label2id".into(), label2id.into());
    object.insert("problem_type".into(), "single_label_classification".into());
    object.insert("torch_dtype".into(), torch_dtype(save_dtype).into());
    let config = BertConfig::from_json(&json.to_string(), path)?;
    Ok((json, config))
}

/// The `torch_dtype` a saved `config.json` states for weights saved as `dtype`.
pub(crate) fn torch_dtype(dtype: DType) -> &'static str {
    if dtype == DType::F16 {
        "float16"
    } else {
        "float32"
    }
}

/// Every weight `BertClassifier::load` reads, with its shape, in a fixed order.
pub(crate) fn parameter_shapes(config: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let d = config.hidden_size;
    let f = config.intermediate_size;
    let mut out = vec![
        (
            "embeddings.word_embeddings.weight".to_owned(),
            vec![config.vocab_size, d],
        ),
        (
            "embeddings.position_embeddings.weight".to_owned(),
            vec![config.max_position_embeddings, d],
        ),
        (
            "embeddings.token_type_embeddings.weight".to_owned(),
            vec![config.type_vocab_size, d],
        ),
    ];
    let mut linear = |name: String, out_dim: usize, in_dim: usize| {
        out.push((format!("{name}.weight"), vec![out_dim, in_dim]));
        out.push((format!("{name}.bias"), vec![out_dim]));
    };
    let mut norms = vec!["embeddings.LayerNorm".to_owned()];
    for i in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        linear(format!("{p}.attention.self.query"), d, d);
        linear(format!("{p}.attention.self.key"), d, d);
        linear(format!("{p}.attention.self.value"), d, d);
        linear(format!("{p}.attention.output.dense"), d, d);
        linear(format!("{p}.intermediate.dense"), f, d);
        linear(format!("{p}.output.dense"), d, f);
        norms.push(format!("{p}.attention.output.LayerNorm"));
        norms.push(format!("{p}.output.LayerNorm"));
    }
    linear("pooler.dense".to_owned(), d, d);
    linear("classifier".to_owned(), config.num_labels(), d);
    for norm in norms {
        out.push((format!("{norm}.weight"), vec![d]));
        out.push((format!("{norm}.bias"), vec![d]));
    }
    out
}

/// The Hugging Face initialisation of a new linear layer: weights ~ N(0, 0.02), zero bias.
fn initial_tensor(
    name: &str,
    shape: &[usize],
    rng: &mut StdRng,
    device: &Device,
) -> Result<Tensor> {
    let count: usize = shape.iter().product();
    let values: Vec<f32> = if name.ends_with(".bias") {
        vec![0.0; count]
    } else {
        let normal = Normal::new(0.0f32, 0.02).map_err(|e| Error::Usage(e.to_string()))?;
        (0..count).map(|_| normal.sample(rng)).collect()
    };
    Ok(Tensor::from_vec(values, shape, device)?)
}

/// The trainable weights: the base encoder's, a new classifier head, and a pooler as `pooler`
/// says.
fn parameters(
    base: &WeightStore,
    config: &BertConfig,
    pooler: PoolerStart,
    rng: &mut StdRng,
    device: &Device,
) -> Result<Vec<Parameter>> {
    let mut out = Vec::new();
    for (name, shape) in parameter_shapes(config) {
        let fresh =
            name.starts_with("classifier.") || (name.starts_with("pooler.") && pooler.is_new());
        let tensor = if fresh {
            initial_tensor(&name, &shape, rng, device)?
        } else {
            base.get(&name, &shape)?
        };
        let decay = !(name.ends_with(".bias") || name.contains("LayerNorm"));
        out.push(Parameter {
            var: Var::from_tensor(&tensor)?,
            name,
            decay,
        });
    }
    Ok(out)
}

fn build_model(
    config: &BertConfig,
    params: &[Parameter],
    device: &Device,
) -> Result<BertClassifier> {
    let tensors: HashMap<String, Tensor> = params
        .iter()
        .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
        .collect();
    classifier_from_tensors(config, tensors, device)
}

/// A float32 classifier over weights keyed by the names of [`parameter_shapes`].
pub(crate) fn classifier_from_tensors(
    config: &BertConfig,
    tensors: HashMap<String, Tensor>,
    device: &Device,
) -> Result<BertClassifier> {
    let store = WeightStore::from_tensors(tensors, DType::F32, device);
    BertClassifier::load(config.clone(), &store, DType::F32, device)
}

pub(crate) fn text_encoder(files: &ModelFiles) -> Result<TextEncoder> {
    match &files.tokenizer {
        TokenizerFile::Json(path) => TextEncoder::from_tokenizer_json(path),
        TokenizerFile::Vocab { path, lowercase } => TextEncoder::from_vocab(path, *lowercase),
    }
}

pub(crate) fn encode(
    encoder: &TextEncoder,
    data: &[Example],
    max_length: usize,
) -> Result<Vec<Encoded>> {
    data.iter()
        .map(|example| {
            let mut ids = Vec::with_capacity(max_length);
            ids.push(encoder.cls_id);
            ids.extend(
                encoder
                    .pieces(&example.text)?
                    .iter()
                    .take(max_length - 2)
                    .map(|p| p.id),
            );
            ids.push(encoder.sep_id);
            Ok(Encoded {
                ids,
                label: example.label,
            })
        })
        .collect()
}

/// Random batches of examples of similar length (Hugging Face's `group_by_length`): shuffle, sort
/// each run of 50 batches' worth by length, cut into batches, shuffle the batches. Less padding,
/// so fewer wasted FLOPs, with nearly the randomness of plain shuffling.
fn length_grouped_batches(
    lengths: &[usize],
    batch_size: usize,
    rng: &mut StdRng,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(rng);
    let mut batches = Vec::new();
    for group in order.chunks(batch_size * 50) {
        let mut group = group.to_vec();
        group.sort_by_key(|&i| Reverse(lengths[i]));
        batches.extend(group.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(rng);
    batches
}

/// Input ids, attention mask and labels of a batch, padded to its longest sequence.
fn batch_tensors(
    data: &[Encoded],
    batch: &[usize],
    pad_id: u32,
    device: &Device,
) -> Result<(Tensor, Tensor, Tensor)> {
    let len = batch.iter().map(|&i| data[i].ids.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(batch.len() * len);
    let mut mask = Vec::with_capacity(batch.len() * len);
    for &i in batch {
        let seq = &data[i].ids;
        ids.extend_from_slice(seq);
        ids.extend(std::iter::repeat_n(pad_id, len - seq.len()));
        mask.extend(std::iter::repeat_n(1u32, seq.len()));
        mask.extend(std::iter::repeat_n(0u32, len - seq.len()));
    }
    let labels: Vec<u32> = batch.iter().map(|&i| data[i].label as u32).collect();
    Ok((
        Tensor::from_vec(ids, (batch.len(), len), device)?,
        Tensor::from_vec(mask, (batch.len(), len), device)?,
        Tensor::from_vec(labels, batch.len(), device)?,
    ))
}

/// Hugging Face's linear schedule: from 0 up to the peak over the warm-up steps, then down to 0 at
/// the last step. `step` counts from 0.
pub fn scheduled_learning_rate(
    peak: f64,
    step: usize,
    warmup_steps: usize,
    total_steps: usize,
) -> f64 {
    if step < warmup_steps {
        peak * step as f64 / warmup_steps.max(1) as f64
    } else {
        let remaining = total_steps.saturating_sub(step) as f64;
        peak * (remaining / total_steps.saturating_sub(warmup_steps).max(1) as f64).max(0.0)
    }
}

/// Rescales the gradients in place so their global L2 norm is at most `max_norm`.
fn clip_gradients(
    grads: &mut candle_core::backprop::GradStore,
    params: &[Parameter],
    max_norm: f64,
) -> Result<()> {
    let mut squared = 0f64;
    for p in params {
        if let Some(g) = grads.get(p.var.as_tensor()) {
            squared += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = squared.sqrt();
    if norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for p in params {
            if let Some(g) = grads.remove(p.var.as_tensor()) {
                grads.insert(p.var.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(())
}

/// The logits of every example of `data`, in order (batched by length; dropout off).
pub(crate) fn predict(
    model: &BertClassifier,
    data: &[Encoded],
    batch_size: usize,
    pad_id: u32,
) -> Result<Vec<Vec<f32>>> {
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| data[i].ids.len());
    let mut logits = vec![Vec::new(); data.len()];
    for batch in order.chunks(batch_size.max(1)) {
        let (ids, mask, _) = batch_tensors(data, batch, pad_id, &model.device)?;
        let rows = model
            .logits(&ids, &mask)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        for (&i, row) in batch.iter().zip(rows) {
            logits[i] = row;
        }
    }
    Ok(logits)
}

/// Fraction of `data` whose highest logit is its label.
pub(crate) fn accuracy(data: &[Encoded], logits: &[Vec<f32>]) -> f64 {
    let correct = data
        .iter()
        .zip(logits)
        .filter(|(example, row)| argmax(row) == example.label)
        .count();
    correct as f64 / data.len().max(1) as f64
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 { (i, x) } else { best }
        })
        .0
}

/// Writes `config.json`, `model.safetensors` (Hugging Face names: `bert.` prefix on the encoder
/// and pooler) and the tokenizer files to `out`.
pub(crate) fn save<'a>(
    out: &Path,
    config: &serde_json::Value,
    weights: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    dtype: DType,
    tokenizer: &TokenizerFile,
) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| write_error(out, e))?;
    let mut tensors = BTreeMap::new();
    for (name, tensor) in weights {
        let name = if name.starts_with("classifier.") {
            name.to_owned()
        } else {
            format!("bert.{name}")
        };
        tensors.insert(name, tensor.to_dtype(dtype)?.contiguous()?);
    }
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    // Written beside and renamed, so an interrupted save never leaves a truncated model.
    let weights = out.join("model.safetensors");
    let partial = out.join("model.safetensors.partial");
    // Serialised in memory and written with std::fs::write, so the file gets the same
    // permissions (umask) as the config beside it.
    let bytes =
        safetensors::tensor::serialize(tensors, Some(metadata)).map_err(|e| Error::BadWeights {
            path: partial.clone(),
            message: e.to_string(),
        })?;
    std::fs::write(&partial, bytes).map_err(|e| write_error(&partial, e))?;
    std::fs::rename(&partial, &weights).map_err(|e| write_error(&weights, e))?;
    let config_text = serde_json::to_string_pretty(config).map_err(|e| Error::BadConfig {
        path: out.join("config.json"),
        message: e.to_string(),
    })?;
    let config_path = out.join("config.json");
    std::fs::write(&config_path, config_text + "\n").map_err(|e| write_error(&config_path, e))?;
    let copy = |from: &Path, name: &str| -> Result<()> {
        let to = out.join(name);
        if from != to {
            std::fs::copy(from, &to).map_err(|e| write_error(&to, e))?;
        }
        Ok(())
    };
    match tokenizer {
        TokenizerFile::Json(path) => copy(path, "tokenizer.json")?,
        TokenizerFile::Vocab { path, lowercase } => {
            copy(path, "vocab.txt")?;
            let tokenizer_config = serde_json::json!({ "do_lower_case": lowercase });
            let path = out.join("tokenizer_config.json");
            std::fs::write(&path, tokenizer_config.to_string())
                .map_err(|e| write_error(&path, e))?;
        }
    }
    Ok(())
}

fn check_options(options: &TrainOptions, config_positions: usize) -> Result<()> {
    if options.epochs == 0 {
        return Err(Error::Usage("--epochs must be at least 1".into()));
    }
    if options.batch_size == 0 {
        return Err(Error::Usage("--batch-size must be at least 1".into()));
    }
    if !(options.learning_rate > 0.0 && options.learning_rate.is_finite()) {
        return Err(Error::Usage(format!(
            "--lr must be a positive number, got {}",
            options.learning_rate
        )));
    }
    if options.max_length < 3 || options.max_length > config_positions {
        return Err(Error::Usage(format!(
            "--max-length must be between 3 and the model's {config_positions} positions, got {}",
            options.max_length
        )));
    }
    if let Some(decay) = options.weight_average_decay
        && !(decay > 0.0 && decay < 1.0)
    {
        return Err(Error::Usage(format!(
            "--weight-average must be a decay between 0 and 1 (e.g. 0.995), got {decay}"
        )));
    }
    if !(0.0..=1.0).contains(&options.warmup_fraction) {
        return Err(Error::Usage(format!(
            "warm-up fraction must be in [0, 1], got {}",
            options.warmup_fraction
        )));
    }
    Ok(())
}

/// Fine-tunes `base` on `train`, evaluates `dev` after every epoch and writes the best model (by
/// dev accuracy; the last one without dev data) to `out`.
pub fn train(
    base: &ModelFiles,
    labels: &[String],
    train: &[Example],
    dev: Option<&[Example]>,
    out: &Path,
    options: &TrainOptions,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<TrainReport> {
    let started = Instant::now();
    let device = &options.device;
    let (config_json, config) = classifier_config(base, labels, options.save_dtype)?;
    check_options(options, config.max_position_embeddings)?;
    if train.is_empty() {
        return Err(Error::Usage("no training examples".into()));
    }
    let encoder = text_encoder(base)?;
    let train_data = encode(&encoder, train, options.max_length)?;
    let dev_data = dev
        .map(|d| encode(&encoder, d, options.max_length))
        .transpose()?;

    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut separate_init_rng = options
        .init_seed
        .filter(|&init_seed| init_seed != options.seed)
        .map(StdRng::seed_from_u64);
    let (params, pooler) = {
        let store = WeightStore::load(&base.weights, DType::F32, device)?;
        let pooler = pooler_start(&store, config.hidden_size, options.pooler)?;
        let init_rng = separate_init_rng.as_mut().unwrap_or(&mut rng);
        (
            parameters(&store, &config, pooler, init_rng, device)?,
            pooler,
        )
    };
    if !device.is_cpu() {
        // Dropout masks are drawn on the GPU from its generator (see `TrainingDropout`).
        device.set_seed(options.seed.wrapping_add(1))?;
    }
    let mut model = build_model(&config, &params, device)?;
    let eval_model = model.clone();
    // A separate stream, so the dropout masks do not shift the shuffling when dropout changes.
    model.dropout = Some(TrainingDropout::new(
        options.dropout,
        options.seed.wrapping_add(1),
    )?);

    let adam = |vars: Vec<Var>, weight_decay: f64| {
        AdamW::new(
            vars,
            ParamsAdamW {
                lr: options.learning_rate,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay,
            },
        )
    };
    let decayed: Vec<Var> = params
        .iter()
        .filter(|p| p.decay)
        .map(|p| p.var.clone())
        .collect();
    let not_decayed: Vec<Var> = params
        .iter()
        .filter(|p| !p.decay)
        .map(|p| p.var.clone())
        .collect();
    let mut optimizers = [
        adam(decayed, options.weight_decay)?,
        adam(not_decayed, 0.0)?,
    ];

    let lengths: Vec<usize> = train_data.iter().map(|e| e.ids.len()).collect();
    let steps_per_epoch = train_data.len().div_ceil(options.batch_size);
    let total_steps = steps_per_epoch * options.epochs;
    let warmup_steps = (total_steps as f64 * options.warmup_fraction).ceil() as usize;
    on_event(&TrainEvent::Started {
        train_examples: train_data.len(),
        dev_examples: dev_data.as_ref().map_or(0, Vec::len),
        steps_per_epoch,
        total_steps,
        parameters: params.iter().map(|p| p.var.elem_count()).sum(),
        pooler,
    });

    let mut average = options
        .weight_average_decay
        .map(|decay| WeightAverage::new(&params, decay))
        .transpose()?;
    let mut step = 0usize;
    let mut step_losses = Vec::with_capacity(total_steps);
    let mut epochs = Vec::with_capacity(options.epochs);
    let mut best: Option<(usize, f64, bool)> = None;
    let mut saved_dev_logits = Vec::new();
    for epoch in 1..=options.epochs {
        let epoch_started = Instant::now();
        let mut loss_sum = 0f64;
        let batches = length_grouped_batches(&lengths, options.batch_size, &mut rng);
        for batch in &batches {
            let learning_rate =
                scheduled_learning_rate(options.learning_rate, step, warmup_steps, total_steps);
            let (ids, mask, targets) = batch_tensors(&train_data, batch, encoder.pad_id, device)?;
            let logits = model.logits(&ids, &mask)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
            let mut grads = loss.backward()?;
            clip_gradients(&mut grads, &params, options.max_grad_norm)?;
            for optimizer in &mut optimizers {
                optimizer.set_learning_rate(learning_rate);
                optimizer.step(&grads)?;
            }
            if let Some(average) = &mut average {
                average.update(&params)?;
            }
            let loss = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !loss.is_finite() {
                return Err(Error::Usage(format!(
                    "training diverged at step {} (loss {loss}); lower --lr",
                    step + 1
                )));
            }
            step += 1;
            loss_sum += loss * batch.len() as f64;
            step_losses.push(loss);
            on_event(&TrainEvent::Step {
                epoch,
                step,
                loss,
                examples: batch.len(),
                learning_rate,
            });
        }
        let train_seconds = epoch_started.elapsed().as_secs_f64();
        let dev_logits = match &dev_data {
            Some(dev_data) => {
                on_event(&TrainEvent::Evaluating {
                    epoch,
                    examples: dev_data.len(),
                });
                Some(predict(&eval_model, dev_data, 64, encoder.pad_id)?)
            }
            None => None,
        };
        let dev_accuracy = dev_data
            .as_ref()
            .zip(dev_logits.as_ref())
            .map(|(data, logits)| accuracy(data, logits));
        // The moving average competes with the trained weights; ties go to the trained ones.
        let mut average_dev = None;
        if let (Some(average), Some(dev_data)) = (&average, &dev_data) {
            let trained = average.swap_in(&params)?;
            let logits = predict(&eval_model, dev_data, 64, encoder.pad_id);
            let restored = WeightAverage::restore(&params, &trained);
            let logits = logits?;
            restored?;
            average_dev = Some((accuracy(dev_data, &logits), logits));
        }
        let use_average = match (&average_dev, dev_accuracy) {
            (Some((average_accuracy, _)), Some(accuracy)) => *average_accuracy > accuracy,
            // Without dev data there is nothing to compare: the average is what was asked for.
            _ => average.is_some() && dev_data.is_none(),
        };
        let candidate = match &average_dev {
            Some((average_accuracy, _)) if use_average => Some(*average_accuracy),
            _ => dev_accuracy,
        };
        let improved = match (candidate, best) {
            (Some(accuracy), Some((_, best_accuracy, _))) => accuracy > best_accuracy,
            (Some(_), None) => true,
            // Without dev data the last epoch is kept.
            (None, _) => epoch == options.epochs,
        };
        if improved {
            let mut logits = dev_logits.unwrap_or_default();
            // The average is saved by swapping it into the parameters for the write.
            let trained = match (use_average, &average) {
                (true, Some(average)) => Some(average.swap_in(&params)?),
                _ => None,
            };
            let saved = save(
                out,
                &config_json,
                params.iter().map(|p| (p.name.as_str(), p.var.as_tensor())),
                options.save_dtype,
                &base.tokenizer,
            );
            if let Some(trained) = &trained {
                WeightAverage::restore(&params, trained)?;
                if let Some((_, average_logits)) = &mut average_dev {
                    logits = std::mem::take(average_logits);
                }
            }
            saved?;
            best = Some((epoch, candidate.unwrap_or(f64::NAN), use_average));
            saved_dev_logits = logits;
        }
        let report = EpochReport {
            epoch,
            mean_loss: loss_sum / train_data.len() as f64,
            dev_accuracy,
            average_dev_accuracy: average_dev.as_ref().map(|(a, _)| *a),
            saved: improved,
            saved_average: improved && use_average,
            train_seconds,
            examples_per_second: train_data.len() as f64 / train_seconds.max(1e-9),
        };
        on_event(&TrainEvent::EpochDone(&report));
        epochs.push(report);
    }
    let (best_epoch, best_accuracy, best_is_average) =
        best.unwrap_or((options.epochs, f64::NAN, false));
    Ok(TrainReport {
        epochs,
        best_epoch,
        best_dev_accuracy: dev_data.as_ref().map(|_| best_accuracy),
        best_is_average,
        pooler,
        step_losses,
        saved_dev_logits,
        seconds: started.elapsed().as_secs_f64(),
        out: out.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_average_follows_the_weights_with_a_warming_decay_and_swaps_in_and_out() {
        let var = Var::from_tensor(&Tensor::new(&[1f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let params = [Parameter {
            name: "w".into(),
            var: var.clone(),
            decay: true,
        }];
        let values = |t: &Tensor| t.to_vec1::<f32>().unwrap();
        let mut average = WeightAverage::new(&params, 0.9).unwrap();
        var.set(&Tensor::new(&[3f32, 0.0], &Device::Cpu).unwrap())
            .unwrap();
        average.update(&params).unwrap();
        // First update: decay min(0.9, 2/11).
        let d = 2.0 / 11.0;
        let expected = [d * 1.0 + (1.0 - d) * 3.0, d * -2.0];
        for (a, e) in values(&average.averages[0]).iter().zip(expected) {
            assert!((a - e as f32).abs() < 1e-6, "{a} vs {e}");
        }
        // Many updates at a fixed point converge to it; the decay is capped at 0.9.
        for _ in 0..200 {
            average.update(&params).unwrap();
        }
        assert!((values(&average.averages[0])[0] - 3.0).abs() < 1e-6);
        var.set(&Tensor::new(&[5f32, 0.0], &Device::Cpu).unwrap())
            .unwrap();
        average.update(&params).unwrap();
        assert!((values(&average.averages[0])[0] - (0.9 * 3.0 + 0.1 * 5.0)).abs() < 1e-5);

        let trained = average.swap_in(&params).unwrap();
        assert!((values(var.as_tensor())[0] - 3.2).abs() < 1e-5);
        assert_eq!(values(&trained[0]), [5.0, 0.0]);
        WeightAverage::restore(&params, &trained).unwrap();
        assert_eq!(values(var.as_tensor()), [5.0, 0.0]);
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let lr = |s| scheduled_learning_rate(1.0, s, 10, 100);
        assert_eq!(lr(0), 0.0);
        assert!((lr(5) - 0.5).abs() < 1e-12);
        assert!((lr(10) - 1.0).abs() < 1e-12);
        assert!((lr(55) - 0.5).abs() < 1e-12);
        assert_eq!(lr(100), 0.0);
    }

    #[test]
    fn batches_cover_every_example_once_and_group_lengths() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 7919) % 97).collect();
        let mut rng = StdRng::seed_from_u64(1);
        let batches = length_grouped_batches(&lengths, 8, &mut rng);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        // Grouped: the mean spread of lengths within a batch is far below the overall range.
        let spread: f64 = batches
            .iter()
            .map(|b| {
                let max = b.iter().map(|&i| lengths[i]).max().unwrap();
                let min = b.iter().map(|&i| lengths[i]).min().unwrap();
                (max - min) as f64
            })
            .sum::<f64>()
            / batches.len() as f64;
        assert!(spread < 10.0, "mean spread {spread}");
        let again = length_grouped_batches(&lengths, 8, &mut StdRng::seed_from_u64(1));
        assert_eq!(batches, again, "same seed, same batches");
    }

    #[test]
    fn an_untrained_pooler_is_replaced_and_a_trained_one_kept_unless_told_otherwise() {
        let store = |bias: &[f32]| {
            let mut tensors = HashMap::new();
            let n = bias.len();
            let weight = Tensor::full(0.01f32, (n, n), &Device::Cpu).unwrap();
            tensors.insert("pooler.dense.weight".to_owned(), weight);
            let bias = Tensor::from_slice(bias, n, &Device::Cpu).unwrap();
            tensors.insert("pooler.dense.bias".to_owned(), bias);
            WeightStore::from_tensors(tensors, DType::F32, &Device::Cpu)
        };
        let untrained = store(&[0.0, 0.0, -0.0]);
        let trained = store(&[0.0, 1e-7, 0.0]);
        let none = WeightStore::from_tensors(HashMap::new(), DType::F32, &Device::Cpu);
        let start = |s: &WeightStore, choice| pooler_start(s, 3, choice).unwrap();
        use PoolerChoice::{Auto, Keep, New};
        assert_eq!(start(&untrained, Auto), PoolerStart::NewUntrained);
        assert_eq!(start(&trained, Auto), PoolerStart::FromBase);
        assert_eq!(start(&none, Auto), PoolerStart::NewMissing);
        assert_eq!(start(&untrained, Keep), PoolerStart::FromBase);
        assert_eq!(start(&none, Keep), PoolerStart::NewMissing);
        assert_eq!(start(&trained, New), PoolerStart::NewRequested);
        // A bias of the wrong size is the base's mistake, reported with the tensor's name.
        let err = pooler_start(&trained, 4, Auto).unwrap_err().to_string();
        assert!(err.contains("pooler.dense.bias"), "{err}");
    }

    #[test]
    fn labels_resolve_by_name_or_index_and_unknown_ones_are_named() {
        let rows = |labels: &[&str]| {
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| Row {
                    text: format!("text {i}"),
                    label: l.to_string(),
                    line: i + 2,
                })
                .collect::<Vec<_>>()
        };
        let names = label_names(None, &rows(&["10", "2", "2"])).unwrap();
        assert_eq!(names, ["2", "10"]);
        let given = vec!["negative".to_owned(), "positive".to_owned()];
        let names = label_names(Some(&given), &[]).unwrap();
        let resolved = examples(rows(&["1", "negative", "0"]), &names, Path::new("d.tsv")).unwrap();
        assert_eq!(
            resolved.iter().map(|e| e.label).collect::<Vec<_>>(),
            [1, 0, 0]
        );
        let err = examples(rows(&["neutral"]), &names, Path::new("d.tsv")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("\"neutral\"")
                && message.contains("line 2")
                && message.contains("--labels"),
            "{message}"
        );
    }

    #[test]
    fn unknown_column_names_the_columns_and_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.tsv");
        std::fs::write(&path, "label\tsentence\n1\tgood\n").unwrap();
        let message = read_rows(&path, "text", "label").unwrap_err().to_string();
        assert!(
            message.contains("\"sentence\"") && message.contains("--text-column"),
            "{message}"
        );
        let missing = dir.path().join("nope.tsv");
        assert!(
            read_rows(&missing, "text", "label")
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
    }

    #[test]
    fn labels_match_names_in_any_case_unless_ambiguous() {
        let row = |label: &str| Row {
            text: "x".into(),
            label: label.into(),
            line: 2,
        };
        let labels = ["negative".to_owned(), "positive".to_owned()];
        let resolved = examples(
            vec![row("Positive"), row("NEGATIVE")],
            &labels,
            Path::new("d"),
        );
        let classes: Vec<usize> = resolved.unwrap().iter().map(|e| e.label).collect();
        assert_eq!(classes, [1, 0]);
        let ambiguous = ["yes".to_owned(), "YES".to_owned()];
        assert!(examples(vec![row("Yes")], &ambiguous, Path::new("d")).is_err());
    }
}
