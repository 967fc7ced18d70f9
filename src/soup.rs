//! Model soups (Wortsman et al., ICML 2022): one classifier whose weights are the element-wise
//! mean of several fine-tunes of the same base. Fine-tunes that start from the same weights and
//! differ only in data order and dropout stay in one basin of the loss, so their mean is one
//! model, as fast as each of them, that is usually at least as accurate as the best of them.
//!
//! The greedy recipe ranks the ingredients by dev accuracy, starts from the best and adds each
//! next one only if dev accuracy does not fall; the uniform recipe averages all of them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::model_dir::ModelFiles;
use crate::train::{self, Encoded, Example};
use crate::weights::WeightStore;

/// How the ingredients are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SoupRecipe {
    /// Best on dev first; each next ingredient stays only if dev accuracy does not fall.
    Greedy,
    /// The mean of every ingredient.
    Uniform,
}

#[derive(Debug, Clone)]
pub struct SoupOptions {
    pub recipe: SoupRecipe,
    /// Longest sequence for the dev evaluation, [CLS] and [SEP] included.
    pub max_length: usize,
    /// Float type of the saved `model.safetensors`.
    pub save_dtype: DType,
    pub device: Device,
}

impl Default for SoupOptions {
    fn default() -> Self {
        SoupOptions {
            recipe: SoupRecipe::Greedy,
            max_length: 128,
            save_dtype: DType::F32,
            device: Device::Cpu,
        }
    }
}

/// One ingredient as loaded, before any averaging.
pub struct Ingredient {
    pub files: ModelFiles,
    pub config: BertConfig,
    config_json: serde_json::Value,
    /// float32 weights in the order of [`train::parameter_shapes`].
    weights: Vec<Tensor>,
}

/// What happened to one ingredient, in the order the recipe tried them.
#[derive(Debug, Clone, PartialEq)]
pub struct IngredientReport {
    pub name: String,
    /// The ingredient's own dev accuracy (None without dev data).
    pub dev_accuracy: Option<f64>,
    /// Dev accuracy of the soup with this ingredient added (greedy recipe, after the first).
    pub soup_dev_accuracy: Option<f64>,
    pub kept: bool,
}

#[derive(Debug, Clone)]
pub struct SoupReport {
    pub ingredients: Vec<IngredientReport>,
    /// Dev accuracy of the saved soup.
    pub dev_accuracy: Option<f64>,
    pub out: PathBuf,
}

/// Progress, for a front-end to show.
pub enum SoupEvent<'a> {
    Scored(&'a IngredientReport),
    Tried(&'a IngredientReport),
}

/// Loads every model and checks that they can be averaged: same architecture, same labels, same
/// tokenizer, every weight present with the same shape.
pub fn load_ingredients(models: &[String], device: &Device) -> Result<Vec<Ingredient>> {
    if models.len() < 2 {
        return Err(Error::Usage(format!(
            "a soup needs at least two models, got {}",
            models.len()
        )));
    }
    let mut ingredients: Vec<Ingredient> = Vec::with_capacity(models.len());
    let mut first_tokenizer: Option<Vec<u8>> = None;
    for model in models {
        let files = ModelFiles::resolve(model)?;
        let text = std::fs::read_to_string(&files.config)
            .map_err(|e| train::io_error(&files.config, e))?;
        let config = BertConfig::from_json(&text, &files.config)?;
        let config_json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::BadConfig {
                path: files.config.clone(),
                message: e.to_string(),
            })?;
        match (ingredients.first(), first_tokenizer.as_deref()) {
            (Some(first), Some(tokenizer)) => check_compatible(first, tokenizer, &files, &config)?,
            _ => first_tokenizer = Some(tokenizer_bytes(&files)?),
        }
        let store = WeightStore::load(&files.weights, DType::F32, device)?;
        let weights = train::parameter_shapes(&config)
            .iter()
            .map(|(name, shape)| store.get(name, shape))
            .collect::<Result<Vec<_>>>()?;
        ingredients.push(Ingredient {
            files,
            config,
            config_json,
            weights,
        });
    }
    Ok(ingredients)
}

/// The tokenizer file's contents (tokenizer.json, or vocab.txt).
fn tokenizer_bytes(files: &ModelFiles) -> Result<Vec<u8>> {
    let path = match &files.tokenizer {
        crate::model_dir::TokenizerFile::Json(path) => path,
        crate::model_dir::TokenizerFile::Vocab { path, .. } => path,
    };
    std::fs::read(path).map_err(|e| train::io_error(path, e))
}

fn check_compatible(
    first: &Ingredient,
    first_tokenizer: &[u8],
    files: &ModelFiles,
    config: &BertConfig,
) -> Result<()> {
    let a = &first.config;
    let differs = |what: &str, mine: String, theirs: String| {
        Error::Usage(format!(
            "{} cannot join a soup with {}: its {what} is {theirs}, not {mine}; every \
             ingredient must be a fine-tune of the same base with the same labels",
            files.name, first.files.name
        ))
    };
    let shape = |c: &BertConfig| {
        format!(
            "{} layers, hidden {}, {} heads, intermediate {}, vocabulary {}",
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.intermediate_size,
            c.vocab_size
        )
    };
    if shape(a) != shape(config) {
        return Err(differs("architecture", shape(a), shape(config)));
    }
    if a.labels != config.labels {
        return Err(differs(
            "label list",
            a.labels.join(","),
            config.labels.join(","),
        ));
    }
    if tokenizer_bytes(files)? != first_tokenizer {
        return Err(Error::Usage(format!(
            "{} cannot join a soup with {}: their tokenizers differ",
            files.name, first.files.name
        )));
    }
    Ok(())
}

/// `sum` + `weights`, weight by weight.
fn add_weights(sum: &[Tensor], weights: &[Tensor]) -> Result<Vec<Tensor>> {
    sum.iter().zip(weights).map(|(s, w)| Ok((s + w)?)).collect()
}

/// A sum of `count` ingredients' weights divided by `count`.
fn mean_of_sum(sum: &[Tensor], count: usize) -> Result<Vec<Tensor>> {
    sum.iter().map(|s| Ok((s / count as f64)?)).collect()
}

/// Dev accuracy of a model with these weights.
fn dev_accuracy(
    config: &BertConfig,
    weights: &[Tensor],
    dev: &[Encoded],
    pad_id: u32,
    device: &Device,
) -> Result<f64> {
    let tensors: HashMap<String, Tensor> = train::parameter_shapes(config)
        .into_iter()
        .map(|(name, _)| name)
        .zip(weights.iter().cloned())
        .collect();
    let model = train::classifier_from_tensors(config, tensors, device)?;
    let logits = train::predict(&model, dev, 64, pad_id)?;
    Ok(train::accuracy(dev, &logits))
}

/// Averages `ingredients` by `options.recipe` (greedy needs `dev`) and saves the soup to `out` in
/// the Hugging Face layout of the first ingredient.
pub fn soup(
    ingredients: &[Ingredient],
    dev: Option<&[Example]>,
    out: &Path,
    options: &SoupOptions,
    on_event: &mut dyn FnMut(SoupEvent),
) -> Result<SoupReport> {
    let first = ingredients
        .first()
        .ok_or_else(|| Error::Usage("a soup needs at least two models, got 0".into()))?;
    if options.recipe == SoupRecipe::Greedy && dev.is_none() {
        return Err(Error::Usage(
            "the greedy recipe ranks the models on dev data: give --dev FILE, or --recipe \
             uniform to average every model without it"
                .into(),
        ));
    }
    let device = &options.device;
    let encoder = train::text_encoder(&first.files)?;
    let dev = dev
        .map(|d| train::encode(&encoder, d, options.max_length))
        .transpose()?;
    let score = |weights: &[Tensor]| -> Result<Option<f64>> {
        dev.as_deref()
            .map(|dev| dev_accuracy(&first.config, weights, dev, encoder.pad_id, device))
            .transpose()
    };

    let mut reports = Vec::with_capacity(ingredients.len());
    for ingredient in ingredients {
        let report = IngredientReport {
            name: ingredient.files.name.clone(),
            dev_accuracy: score(&ingredient.weights)?,
            soup_dev_accuracy: None,
            kept: options.recipe == SoupRecipe::Uniform,
        };
        on_event(SoupEvent::Scored(&report));
        reports.push(report);
    }

    let (order, weights, soup_accuracy) = match options.recipe {
        SoupRecipe::Uniform => {
            let mut sum = first.weights.clone();
            for ingredient in &ingredients[1..] {
                sum = add_weights(&sum, &ingredient.weights)?;
            }
            let weights = mean_of_sum(&sum, ingredients.len())?;
            let accuracy = score(&weights)?;
            ((0..ingredients.len()).collect(), weights, accuracy)
        }
        SoupRecipe::Greedy => {
            // Stable: among equal dev accuracies the order given on the command line decides.
            let mut order: Vec<usize> = (0..ingredients.len()).collect();
            order.sort_by(|&a, &b| {
                let key = |i: usize| reports[i].dev_accuracy.unwrap_or(0.0);
                key(b).total_cmp(&key(a))
            });
            reports[order[0]].kept = true;
            // The kept ingredients' summed weights, so each candidate costs one addition.
            let mut sum = ingredients[order[0]].weights.clone();
            let mut kept = 1;
            let mut weights = sum.clone();
            let mut accuracy = reports[order[0]].dev_accuracy;
            for &next in &order[1..] {
                let candidate_sum = add_weights(&sum, &ingredients[next].weights)?;
                let candidate_weights = mean_of_sum(&candidate_sum, kept + 1)?;
                let candidate_accuracy = score(&candidate_weights)?;
                reports[next].soup_dev_accuracy = candidate_accuracy;
                // Wortsman et al. keep an ingredient when held-out accuracy does not fall.
                if candidate_accuracy >= accuracy {
                    reports[next].kept = true;
                    sum = candidate_sum;
                    kept += 1;
                    weights = candidate_weights;
                    accuracy = candidate_accuracy;
                }
                on_event(SoupEvent::Tried(&reports[next]));
            }
            (order, weights, accuracy)
        }
    };

    let mut config_json = first.config_json.clone();
    if let Some(object) = config_json.as_object_mut() {
        object.insert(
            "torch_dtype".into(),
            train::torch_dtype(options.save_dtype).into(),
        );
    }
    let names = train::parameter_shapes(&first.config);
    train::save(
        out,
        &config_json,
        names.iter().map(|(name, _)| name.as_str()).zip(&weights),
        options.save_dtype,
        &first.files.tokenizer,
    )?;
    Ok(SoupReport {
        ingredients: order.into_iter().map(|i| reports[i].clone()).collect(),
        dev_accuracy: soup_accuracy,
        out: out.to_path_buf(),
    })
}
