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
        if let Some(first) = ingredients.first() {
            check_compatible(first, &files, &config)?;
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

fn check_compatible(first: &Ingredient, files: &ModelFiles, config: &BertConfig) -> Result<()> {
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
    let tokenizer_bytes = |files: &ModelFiles| -> Result<Vec<u8>> {
        let path = match &files.tokenizer {
            crate::model_dir::TokenizerFile::Json(path) => path,
            crate::model_dir::TokenizerFile::Vocab { path, .. } => path,
        };
        std::fs::read(path).map_err(|e| train::io_error(path, e))
    };
    if tokenizer_bytes(&first.files)? != tokenizer_bytes(files)? {
        return Err(Error::Usage(format!(
            "{} cannot join a soup with {}: their tokenizers differ",
            files.name, first.files.name
        )));
    }
    Ok(())
}

/// The element-wise mean of the chosen ingredients' weights.
fn mean_weights(ingredients: &[Ingredient], chosen: &[usize]) -> Result<Vec<Tensor>> {
    let count = chosen.len() as f64;
    (0..ingredients[chosen[0]].weights.len())
        .map(|w| {
            let mut sum = ingredients[chosen[0]].weights[w].clone();
            for &i in &chosen[1..] {
                sum = (sum + &ingredients[i].weights[w])?;
            }
            Ok((sum / count)?)
        })
        .collect()
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

    let (chosen, order, weights, soup_accuracy) = match options.recipe {
        SoupRecipe::Uniform => {
            let chosen: Vec<usize> = (0..ingredients.len()).collect();
            let weights = mean_weights(ingredients, &chosen)?;
            let accuracy = score(&weights)?;
            (chosen.clone(), chosen, weights, accuracy)
        }
        SoupRecipe::Greedy => {
            // Stable: among equal dev accuracies the order given on the command line decides.
            let mut order: Vec<usize> = (0..ingredients.len()).collect();
            order.sort_by(|&a, &b| {
                let key = |i: usize| reports[i].dev_accuracy.unwrap_or(0.0);
                key(b).total_cmp(&key(a))
            });
            let mut chosen = vec![order[0]];
            reports[order[0]].kept = true;
            let mut weights = ingredients[order[0]].weights.clone();
            let mut accuracy = reports[order[0]].dev_accuracy;
            for &next in &order[1..] {
                let mut candidate = chosen.clone();
                candidate.push(next);
                let candidate_weights = mean_weights(ingredients, &candidate)?;
                let candidate_accuracy = score(&candidate_weights)?;
                reports[next].soup_dev_accuracy = candidate_accuracy;
                // Wortsman et al. keep an ingredient when held-out accuracy does not fall.
                if candidate_accuracy >= accuracy {
                    reports[next].kept = true;
                    chosen = candidate;
                    weights = candidate_weights;
                    accuracy = candidate_accuracy;
                }
                on_event(SoupEvent::Tried(&reports[next]));
            }
            (chosen, order, weights, accuracy)
        }
    };
    debug_assert!(chosen.iter().all(|&i| reports[i].kept));

    let mut config_json = first.config_json.clone();
    if let Some(object) = config_json.as_object_mut() {
        let torch_dtype = if options.save_dtype == DType::F16 {
            "float16"
        } else {
            "float32"
        };
        object.insert("torch_dtype".into(), torch_dtype.into());
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
