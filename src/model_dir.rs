//! Finds the files of a model: a local Hugging Face directory, or a hub id resolved through the
//! local Hugging Face cache (downloaded when the `hub` feature is on and a network exists).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub enum TokenizerFile {
    Json(PathBuf),
    Vocab { path: PathBuf, lowercase: bool },
}

#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// Where the model came from, for messages and the output's `model` field.
    pub name: String,
    pub config: PathBuf,
    pub weights: Vec<PathBuf>,
    pub tokenizer: TokenizerFile,
}

const WEIGHT_HINT: &str =
    "expected model.safetensors, model.safetensors.index.json (sharded) or pytorch_model.bin";
const TOKENIZER_HINT: &str = "expected tokenizer.json, or vocab.txt (+ tokenizer_config.json)";

impl ModelFiles {
    /// Resolves `model`: an existing directory, else a hub id.
    pub fn resolve(model: &str) -> Result<Self> {
        let path = Path::new(model);
        if path.is_dir() {
            return Self::from_dir(path);
        }
        let looks_like_path = model.starts_with('.')
            || model.starts_with('/')
            || model.starts_with('~')
            || path.exists()
            || model.matches('/').count() > 1;
        if path.is_file() {
            return Err(Error::ModelIsFile {
                given: model.to_owned(),
            });
        }
        if looks_like_path {
            return Err(Error::ModelNotFound {
                given: model.to_owned(),
            });
        }
        from_hub(model)
    }

    /// The files of a local Hugging Face directory.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let missing = |file: &str, hint: &str| Error::MissingModelFile {
            dir: dir.to_owned(),
            file: file.into(),
            hint: hint.into(),
        };
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(missing(
                "config.json",
                "a BertForSequenceClassification config (save it with model.save_pretrained)",
            ));
        }
        let weights = weight_files(dir).ok_or_else(|| missing("weights", WEIGHT_HINT))??;
        let tokenizer = tokenizer_file(dir).ok_or_else(|| missing("tokenizer", TOKENIZER_HINT))?;
        Ok(ModelFiles {
            name: dir.display().to_string(),
            config,
            weights,
            tokenizer,
        })
    }
}

fn weight_files(dir: &Path) -> Option<Result<Vec<PathBuf>>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Some(Ok(vec![single]));
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        return Some(shards_of(dir, &index));
    }
    let pickle = dir.join("pytorch_model.bin");
    if pickle.is_file() {
        return Some(Ok(vec![pickle]));
    }
    None
}

/// The distinct shard files named by a `model.safetensors.index.json`, in first-use order.
fn shards_of(dir: &Path, index: &Path) -> Result<Vec<PathBuf>> {
    let bad = |message: String| Error::BadWeights {
        path: index.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(index).map_err(|source| Error::Io {
        path: index.to_owned(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no \"weight_map\" object".into()))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for file in map.values() {
        let file = file
            .as_str()
            .ok_or_else(|| bad("weight_map values must be file names".into()))?;
        let path = dir.join(file);
        if !files.contains(&path) {
            if !path.is_file() {
                return Err(Error::MissingModelFile {
                    dir: dir.to_owned(),
                    file: file.to_owned(),
                    hint: format!("shard named in {}", index.display()),
                });
            }
            files.push(path);
        }
    }
    Ok(files)
}

fn tokenizer_file(dir: &Path) -> Option<TokenizerFile> {
    let json = dir.join("tokenizer.json");
    if json.is_file() {
        return Some(TokenizerFile::Json(json));
    }
    let vocab = dir.join("vocab.txt");
    if vocab.is_file() {
        let lowercase = std::fs::read_to_string(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("do_lower_case").and_then(|b| b.as_bool()))
            .unwrap_or(true);
        return Some(TokenizerFile::Vocab {
            path: vocab,
            lowercase,
        });
    }
    None
}

#[cfg(feature = "hub")]
fn from_hub(id: &str) -> Result<ModelFiles> {
    use hf_hub::{Cache, Repo, api::sync::ApiBuilder};
    let hub_error = |message: String| Error::Hub {
        id: id.to_owned(),
        message,
    };
    let repo = Repo::model(id.to_owned());
    // HF_HUB_CACHE (as Python's huggingface_hub reads it) wins over HF_HOME/hub.
    let cache_dir = std::env::var_os("HF_HUB_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let cache = match &cache_dir {
        Some(dir) => Cache::new(dir.clone()),
        None => Cache::from_env(),
    };
    let cached = cache.repo(repo.clone());
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v == "true");
    let api = if offline {
        None
    } else {
        let mut builder = ApiBuilder::from_env().with_progress(false);
        if let Some(dir) = &cache_dir {
            builder = builder.with_cache_dir(dir.clone());
        }
        Some(
            builder
                .build()
                .map_err(|e| hub_error(e.to_string()))?
                .repo(repo),
        )
    };
    // The first failure to reach the hub (no network) ends the asking: what the local cache
    // holds is used, and the failure is reported only if that is not enough.
    let unreachable: std::cell::RefCell<Option<String>> = std::cell::RefCell::new(None);
    let fetch = |file: &str| -> Result<Option<PathBuf>> {
        if let Some(path) = cached.get(file) {
            return Ok(Some(path));
        }
        let Some(api) = &api else { return Ok(None) };
        if unreachable.borrow().is_some() {
            return Ok(None);
        }
        match api.get(file) {
            Ok(path) => Ok(Some(path)),
            Err(hf_hub::api::sync::ApiError::RequestError(e)) if is_not_found(&e) => Ok(None),
            Err(hf_hub::api::sync::ApiError::RequestError(e)) => {
                *unreachable.borrow_mut() = Some(e.to_string());
                Ok(None)
            }
            Err(e) => Err(hub_error(e.to_string())),
        }
    };
    let not_there = |what: &str| {
        hub_error(if offline {
            format!("{what} is not in the local cache and HF_HUB_OFFLINE is set")
        } else if let Some(reason) = unreachable.borrow().as_ref() {
            format!("{what} is not in the local cache and the hub could not be reached ({reason})")
        } else {
            format!("the repository has no {what}")
        })
    };
    let config = fetch("config.json")?.ok_or_else(|| not_there("config.json"))?;
    let weights = if let Some(w) = fetch("model.safetensors")? {
        vec![w]
    } else if let Some(index) = fetch("model.safetensors.index.json")? {
        let text = std::fs::read_to_string(&index).map_err(|source| Error::Io {
            path: index.clone(),
            source,
        })?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| hub_error(e.to_string()))?;
        let mut files = Vec::new();
        if let Some(map) = json.get("weight_map").and_then(|m| m.as_object()) {
            for file in map.values().filter_map(|v| v.as_str()) {
                let path = fetch(file)?.ok_or_else(|| not_there(file))?;
                if !files.contains(&path) {
                    files.push(path);
                }
            }
        }
        files
    } else if let Some(w) = fetch("pytorch_model.bin")? {
        vec![w]
    } else {
        return Err(not_there("model weights"));
    };
    let tokenizer = if let Some(t) = fetch("tokenizer.json")? {
        TokenizerFile::Json(t)
    } else if let Some(v) = fetch("vocab.txt")? {
        let lowercase = fetch("tokenizer_config.json")?
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("do_lower_case").and_then(|b| b.as_bool()))
            .unwrap_or(true);
        TokenizerFile::Vocab { path: v, lowercase }
    } else {
        return Err(not_there("tokenizer.json or vocab.txt"));
    };
    Ok(ModelFiles {
        name: id.to_owned(),
        config,
        weights,
        tokenizer,
    })
}

#[cfg(feature = "hub")]
fn is_not_found(error: &impl std::fmt::Display) -> bool {
    error.to_string().contains("404")
}

#[cfg(not(feature = "hub"))]
fn from_hub(id: &str) -> Result<ModelFiles> {
    Err(Error::Hub {
        id: id.to_owned(),
        message: "this build has no hub support (built without the `hub` feature)".into(),
    })
}
