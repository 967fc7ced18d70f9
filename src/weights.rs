//! Named weight tensors from safetensors (single or sharded) or `pytorch_model.bin`, with the
//! `bert.` prefix made optional so encoder-only checkpoints and full classifiers load alike.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// Tensors keyed by their canonical name: the Hugging Face name without the `bert.` prefix and
/// with the old `gamma`/`beta` LayerNorm names mapped to `weight`/`bias`.
pub struct WeightStore {
    tensors: HashMap<String, Tensor>,
    dtype: DType,
    device: Device,
    sources: String,
}

pub fn canonical_name(name: &str) -> String {
    let name = name.strip_prefix("bert.").unwrap_or(name);
    if let Some(stem) = name.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = name.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        name.to_owned()
    }
}

impl WeightStore {
    /// Loads every tensor of `files`; tensors are converted to `dtype` when requested.
    pub fn load(files: &[PathBuf], dtype: DType, device: &Device) -> Result<Self> {
        let mut tensors = HashMap::new();
        for path in files {
            for (name, tensor) in read_tensor_file(path)? {
                tensors.insert(canonical_name(&name), tensor);
            }
        }
        let sources = files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(WeightStore {
            tensors,
            dtype,
            device: device.clone(),
            sources,
        })
    }

    /// A store over tensors already in memory (training builds the model from its variables).
    pub fn from_tensors(tensors: HashMap<String, Tensor>, dtype: DType, device: &Device) -> Self {
        WeightStore {
            tensors: tensors
                .into_iter()
                .map(|(k, v)| (canonical_name(&k), v))
                .collect(),
            dtype,
            device: device.clone(),
            sources: "in-memory tensors".into(),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    /// The tensor `name` (canonical), checked against `shape`, in the store's dtype and device.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let tensor = self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_owned(),
            files: self.sources.clone(),
        })?;
        if tensor.dims() != shape {
            return Err(Error::ShapeMismatch {
                name: name.to_owned(),
                found: tensor.dims().to_vec(),
                expected: shape.to_vec(),
            });
        }
        let tensor = if tensor.dtype() == self.dtype {
            tensor.clone()
        } else {
            tensor.to_dtype(self.dtype)?
        };
        Ok(tensor.to_device(&self.device)?)
    }
}

fn read_tensor_file(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bad = |message: String| Error::BadWeights {
        path: path.to_owned(),
        message,
    };
    if !path.exists() {
        return Err(Error::Io {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    let is_pickle = path
        .extension()
        .is_some_and(|ext| ext == "bin" || ext == "pt" || ext == "pth");
    if is_pickle {
        let tensors = candle_core::pickle::read_all(path).map_err(|e| {
            bad(format!(
                "{e} (only PyTorch state dicts saved with torch.save are readable)"
            ))
        })?;
        return Ok(keep_float_tensors(tensors));
    }
    let map = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| bad(e.to_string()))?;
    Ok(keep_float_tensors(map))
}

/// Buffers such as `embeddings.position_ids` are integer tensors the model never reads.
fn keep_float_tensors(
    tensors: impl IntoIterator<Item = (String, Tensor)>,
) -> Vec<(String, Tensor)> {
    tensors
        .into_iter()
        .filter(|(_, t)| t.dtype().is_float())
        .collect()
}
