//! The engine against the float64 outputs of the reference implementation (fixtures/golden):
//! tokenisation, logits and every method for every input and every class, in f64 and f32.

mod common;

use candle_core::Tensor;
use common::*;
use serde_json::Value;
use tokenlens::relprop::{self, Depth};
use tokenlens::{Explainer, ExplainerOptions, Method, Precision, Target};

fn explainer(dir: &std::path::Path, precision: Precision) -> Explainer {
    let options = ExplainerOptions {
        precision,
        device: test_device(),
        ..Default::default()
    };
    Explainer::load(&path_str(dir), options).unwrap()
}

fn check_model(model: &str, dir: &std::path::Path, precision: Precision) {
    let golden = golden(model);
    let explainer = explainer(dir, precision);
    let key = match precision {
        Precision::F64 => "float64",
        Precision::F32 => "float32",
    };
    let tolerances = &golden["tolerances"][key];
    let cls_only_methods: Vec<Method> = Method::ALL
        .into_iter()
        .filter(|m| !m.needs_every_last_layer_row())
        .collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in golden["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        for explanation in case["explanations"].as_array().unwrap() {
            let class = explanation["target_class"].as_u64().unwrap() as usize;
            // As users ask for them: Grad-CAM alone (it needs every row of the last layer),
            // the other methods together, which computes the last layer for [CLS] only.
            let got = explainer
                .explain(text, &cls_only_methods, Target::Class(class))
                .unwrap();
            let gradcam = explainer
                .explain(text, &[Method::AttentionGradcam], Target::Class(class))
                .unwrap();
            // Tokenisation and offsets.
            let ids: Vec<u64> = got.tokens.iter().map(|t| t.id as u64).collect();
            let want_ids: Vec<u64> = case["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(ids, want_ids, "{model} {id}: input ids");
            for (t, off) in got
                .tokens
                .iter()
                .zip(case["offsets_utf8"].as_array().unwrap())
            {
                let off = floats(off);
                assert_eq!(
                    (t.start, t.end),
                    (off[0] as usize, off[1] as usize),
                    "{model} {id}: offsets of {}",
                    t.token
                );
            }
            // Logits (golden values carry 9 significant digits, hence 1e-8 in f64).
            let (want_logits, logit_tol) = match precision {
                Precision::F64 => (floats(&case["logits"]), 1e-8),
                Precision::F32 => (floats(&case["logits_float32"]), 1e-4),
            };
            if let Err(e) = check_close(&got.logits, &want_logits, logit_tol, 0.0) {
                failures.push(format!("{model} {id}: logits: {e}"));
            }
            assert_eq!(
                got.predicted,
                case["predicted_class"].as_u64().unwrap() as usize
            );
            for method in Method::ALL {
                let tol = &tolerances[method.name()];
                if tol.is_null() {
                    continue;
                }
                let want = floats(&explanation[method.name()]);
                let source = if method.needs_every_last_layer_row() {
                    &gradcam
                } else {
                    &got
                };
                let actual = &source.attribution(method).unwrap().token_scores;
                checked += 1;
                if let Err(e) = check_close(
                    actual,
                    &want,
                    tol["atol_rel_to_max"].as_f64().unwrap(),
                    tol["rtol"].as_f64().unwrap(),
                ) {
                    failures.push(format!("{model} {key} {id} class {class} {method}: {e}"));
                }
            }
        }
    }
    assert!(checked > 0);
    assert!(
        failures.is_empty(),
        "{} of {checked} vectors differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // On a GPU one-window explanations are recorded as CUDA graphs and replayed (docs/cuda.md):
    // every class after the first of a text, and every text of a length seen before, was a
    // replay, so the checks above cover replays. None may have fallen back to eager execution.
    let graphs_off = std::env::var("TOKENLENS_CUDA_GRAPHS").is_ok_and(|v| v.trim() == "0");
    if explainer.options().device.is_cuda() && !graphs_off {
        let stats = explainer.graph_stats();
        eprintln!("{model} {key}: CUDA graphs {stats:?}");
        assert!(
            stats.failed == 0 && stats.replayed > 0,
            "{model} {key}: CUDA graphs not used: {stats:?}"
        );
    }
}

/// Conservation diagnostics of the relevance pass (totals per layer), and full LRP in f32
/// through its total as the golden README prescribes.
fn check_diagnostics(model: &str, dir: &std::path::Path, precision: Precision, tol: f64) {
    let golden = golden(model);
    let explainer = explainer(dir, precision);
    // This drives the model directly, beside tests whose explainers record CUDA graphs on a GPU:
    // hold the device like the engine's own batches do, uploads and reads included.
    let _device = tokenlens::graphs::shared_device_work();
    for case in golden["cases"].as_array().unwrap() {
        let ids: Vec<u32> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let n = ids.len();
        let ids = Tensor::from_vec(ids, (1, n), &test_device()).unwrap();
        let mask = ids.ones_like().unwrap();
        let pass = explainer.model().forward(&ids, &mask, false).unwrap();
        for explanation in case["explanations"].as_array().unwrap() {
            let class = explanation["target_class"].as_u64().unwrap() as usize;
            let d: &Value = &explanation["diagnostics"];
            let rel = relprop::propagate(explainer.model(), &pass, &[class], Depth::EncoderInput)
                .unwrap();
            let total: f64 = rel
                .encoder_input
                .as_ref()
                .unwrap()
                .to_dtype(candle_core::DType::F64)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            let want = d["full_lrp_input_relevance_total"].as_f64().unwrap();
            assert!(
                (total - want).abs() <= tol,
                "{model} {} class {class}: total {total} vs {want}",
                case["id"]
            );
            let per_layer = floats(&d["relevance_sum_at_layer_input"]);
            for (layer, want) in per_layer.iter().enumerate() {
                let got: f64 = rel.layer_input_totals[layer]
                    .as_ref()
                    .unwrap()
                    .to_dtype(candle_core::DType::F64)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()[0];
                assert!(
                    (got - want).abs() <= tol,
                    "{model} {} layer {layer}: {got} vs {want}",
                    case["id"]
                );
            }
        }
    }
}

#[test]
fn tiny_bert_matches_reference_in_f64() {
    check_model("tiny-bert", &tiny_bert_dir(), Precision::F64);
}

#[test]
fn tiny_bert_matches_reference_in_f32() {
    check_model("tiny-bert", &tiny_bert_dir(), Precision::F32);
}

#[test]
fn minilm_head_matches_reference_in_f64() {
    check_model("minilm-head", &minilm_head_dir(), Precision::F64);
}

#[test]
fn minilm_head_matches_reference_in_f32() {
    check_model("minilm-head", &minilm_head_dir(), Precision::F32);
}

#[test]
fn relevance_totals_match_reference_diagnostics_in_f64() {
    check_diagnostics("tiny-bert", &tiny_bert_dir(), Precision::F64, 1e-8);
    check_diagnostics("minilm-head", &minilm_head_dir(), Precision::F64, 1e-8);
}

#[test]
fn full_lrp_total_is_conserved_in_f32() {
    // golden: float32_full_lrp_input_relevance_total_abs_dev_from_1 = 0.001
    check_diagnostics("tiny-bert", &tiny_bert_dir(), Precision::F32, 1e-3);
    check_diagnostics("minilm-head", &minilm_head_dir(), Precision::F32, 1e-3);
}
