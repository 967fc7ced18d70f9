//! `config.json` of a Hugging Face BERT sequence classifier.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

pub const SUPPORTED_ARCHITECTURES: &[&str] = &["BertForSequenceClassification"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact erf GELU (`gelu`).
    Gelu,
    /// tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

#[derive(Debug, Clone)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    /// Label names in class-index order.
    pub labels: Vec<String>,
    /// `problem_type: multi_label_classification`: each class is a yes/no decision of its own,
    /// so its probability is the sigmoid of its logit rather than a share of a softmax.
    pub multi_label: bool,
}

#[derive(Deserialize)]
struct RawConfig {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    num_labels: Option<usize>,
    id2label: Option<BTreeMap<String, String>>,
    problem_type: Option<String>,
    position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

impl BertConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let bad = |message: String| Error::BadConfig {
            path: path.to_owned(),
            message,
        };
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let architecture = match (&raw.architectures, &raw.model_type) {
            (Some(archs), _) if !archs.is_empty() => archs[0].clone(),
            (_, Some(model_type)) if model_type == "bert" => {
                "BertForSequenceClassification".to_owned()
            }
            (_, Some(model_type)) => model_type.clone(),
            _ => "(none given)".to_owned(),
        };
        if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
            return Err(Error::UnsupportedArchitecture {
                path: path.to_owned(),
                found: architecture,
                supported: SUPPORTED_ARCHITECTURES.to_vec(),
            });
        }
        let hidden_act = match raw.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(bad(format!(
                    "hidden_act {other:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"
                )));
            }
        };
        if raw.num_attention_heads == 0 || !raw.hidden_size.is_multiple_of(raw.num_attention_heads)
        {
            return Err(bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                raw.hidden_size, raw.num_attention_heads
            )));
        }
        if let Some(kind) = raw.position_embedding_type.as_deref()
            && kind != "absolute"
        {
            return Err(bad(format!(
                "position_embedding_type {kind:?} is not supported (only \"absolute\", the BERT default)"
            )));
        }
        let multi_label = match raw.problem_type.as_deref() {
            None | Some("single_label_classification") => false,
            Some("multi_label_classification") => true,
            Some(other) => {
                return Err(bad(format!(
                    "problem_type {other:?} is not supported: tokenlens explains classifiers \
                     (single_label_classification or multi_label_classification)"
                )));
            }
        };
        let labels = labels_from(raw.id2label.as_ref(), raw.num_labels).map_err(bad)?;
        Ok(BertConfig {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            hidden_act,
            max_position_embeddings: raw.max_position_embeddings,
            type_vocab_size: raw.type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps,
            labels,
            multi_label,
        })
    }

    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

fn labels_from(
    id2label: Option<&BTreeMap<String, String>>,
    num_labels: Option<usize>,
) -> std::result::Result<Vec<String>, String> {
    match id2label {
        Some(map) if !map.is_empty() => {
            let mut labels = vec![None; map.len()];
            for (key, name) in map {
                let index: usize = key
                    .parse()
                    .map_err(|_| format!("id2label key {key:?} is not a class index"))?;
                if index >= labels.len() {
                    return Err(format!(
                        "id2label has {} entries but a key {index}; keys must be 0..{}",
                        map.len(),
                        map.len() - 1
                    ));
                }
                labels[index] = Some(name.clone());
            }
            if let Some(n) = num_labels
                && n != labels.len()
            {
                return Err(format!(
                    "num_labels is {n} but id2label has {} entries",
                    labels.len()
                ));
            }
            Ok(labels.into_iter().map(Option::unwrap_or_default).collect())
        }
        _ => {
            let n = num_labels.unwrap_or(2);
            Ok((0..n).map(|i| format!("LABEL_{i}")).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_type_and_position_embeddings_are_read_or_refused() {
        let config = |extra: &str| {
            let json = format!(
                r#"{{"architectures":["BertForSequenceClassification"],"vocab_size":1,"hidden_size":4,
                "num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8{extra}}}"#
            );
            BertConfig::from_json(&json, Path::new("config.json"))
        };
        assert!(!config("").unwrap().multi_label);
        let multi = config(r#","problem_type":"multi_label_classification""#).unwrap();
        assert!(multi.multi_label);
        let regression = config(r#","problem_type":"regression""#)
            .unwrap_err()
            .to_string();
        assert!(regression.contains("\"regression\""), "{regression}");
        let relative = config(r#","position_embedding_type":"relative_key""#).unwrap_err();
        assert!(relative.to_string().contains("relative_key"), "{relative}");
        assert!(config(r#","position_embedding_type":"absolute""#).is_ok());
    }

    #[test]
    fn rejects_other_architectures_naming_the_supported_ones() {
        let json = r#"{"architectures":["GPT2LMHeadModel"],"vocab_size":1,"hidden_size":4,
            "num_hidden_layers":1,"num_attention_heads":1,"intermediate_size":4}"#;
        let err = BertConfig::from_json(json, Path::new("c.json")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("GPT2LMHeadModel") && msg.contains("BertForSequenceClassification"));
    }

    #[test]
    fn labels_default_to_hf_names() {
        let json = r#"{"architectures":["BertForSequenceClassification"],"vocab_size":1,"hidden_size":4,
            "num_hidden_layers":1,"num_attention_heads":1,"intermediate_size":4,"num_labels":3}"#;
        let cfg = BertConfig::from_json(json, Path::new("c.json")).unwrap();
        assert_eq!(cfg.labels, ["LABEL_0", "LABEL_1", "LABEL_2"]);
    }
}
