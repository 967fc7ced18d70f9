//! Engine properties beyond the golden values: batching, gradients, word offsets, windows,
//! weight formats and the errors for malformed model directories.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use common::*;
use tokenlens::backward::{self, GradientDepth};
use tokenlens::model_dir::ModelFiles;
use tokenlens::{Error, Explainer, ExplainerOptions, Method, Precision, Target};

fn explainer_with(dir: &Path, precision: Precision, max_tokens: Option<usize>) -> Explainer {
    let options = ExplainerOptions {
        precision,
        max_tokens,
        ..Default::default()
    };
    Explainer::load(&path_str(dir), options).unwrap()
}

fn tensor_max_abs(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter()
        .filter(|x| x.is_finite())
        .fold(0f64, |m, x| m.max(x.abs()))
}

const TEXTS: [&str; 5] = [
    "A wonderful, heartfelt film.",
    "This was the worst meal I have ever had, and the waiter was rude about it.",
    "Brilliant",
    "The café served a naïve but charming crème brûlée 😍",
    "Honestly, it was not bad at all. I would go again, maybe next week with friends.",
];

#[test]
fn a_padded_batch_gives_each_text_its_single_result() {
    for dir in [tiny_bert_dir(), minilm_head_dir()] {
        let explainer = explainer_with(&dir, Precision::F64, None);
        for target in [Target::Predicted, Target::Class(1)] {
            let batched = explainer
                .explain_batch(&TEXTS, &Method::ALL, target)
                .unwrap();
            for (text, batch_result) in TEXTS.iter().zip(&batched) {
                let single = explainer_with(&dir, Precision::F64, None)
                    .explain(text, &Method::ALL, target)
                    .unwrap();
                assert_eq!(single.tokens, batch_result.tokens);
                check_close(&batch_result.logits, &single.logits, 1e-12, 0.0).unwrap();
                for (a, b) in single.attributions.iter().zip(&batch_result.attributions) {
                    check_close(&b.token_scores, &a.token_scores, 1e-9, 1e-9)
                        .unwrap_or_else(|e| panic!("{} {text:?} {}: {e}", dir.display(), a.method));
                }
            }
        }
    }
}

/// The hand-written backward pass equals candle's autograd, and both equal central finite
/// differences of the target logit with respect to the encoder input.
#[test]
fn gradients_equal_autograd_and_finite_differences() {
    let explainer = explainer_with(&tiny_bert_dir(), Precision::F64, None);
    let model = explainer.model();
    let ids = Tensor::new(
        &[[101u32, 1037, 6919, 1010, 2540, 7959, 2143, 1012, 102]],
        &Device::Cpu,
    )
    .unwrap();
    let mask = ids.ones_like().unwrap();
    let target = [2usize];
    let autograd_pass = model.forward(&ids, &mask, true).unwrap();
    let autograd = autograd_pass.gradients(&target).unwrap();
    let plain = model.forward(&ids, &mask, false).unwrap();
    let depth = GradientDepth {
        lowest_attention_layer: 0,
        encoder_input: true,
    };
    let manual = backward::gradients(model, &plain, &target, depth).unwrap();
    for (a, m) in autograd.probs.iter().zip(&manual.probs) {
        let diff = tensor_max_abs(&(a - m).unwrap());
        let scale = tensor_max_abs(a);
        assert!(diff <= 1e-12 * scale.max(1.0), "dL/dP differs by {diff}");
    }
    let grad_e = manual.embedded.to_vec3::<f64>().unwrap();
    let auto_e = autograd.embedded.to_vec3::<f64>().unwrap();
    let embedded = model.embed(&ids).unwrap();
    let step = 1e-6;
    for &(pos, dim) in &[(0usize, 0usize), (1, 5), (3, 17), (8, 31), (4, 2)] {
        let logit_at = |delta: f64| -> f64 {
            let mut bump = vec![0f64; embedded.elem_count()];
            bump[pos * 32 + dim] = delta;
            let bumped = (&embedded
                + Tensor::from_vec(bump, embedded.shape(), &Device::Cpu).unwrap())
            .unwrap();
            let logits = model.forward_embedded(bumped, &mask, false).unwrap().logits;
            logits
                .i((0, target[0]))
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let numeric = (logit_at(step) - logit_at(-step)) / (2.0 * step);
        let analytic = grad_e[0][pos][dim];
        assert!(
            (numeric - analytic).abs() <= 1e-6 * analytic.abs().max(1e-3),
            "({pos},{dim}): {numeric} vs {analytic}"
        );
        assert!(
            (auto_e[0][pos][dim] - analytic).abs() <= 1e-12,
            "autograd vs manual at ({pos},{dim})"
        );
    }
    assert!(
        autograd_pass.logits.track_op(),
        "logits must be on the autograd graph"
    );
}

/// Largest |a − b| relative to the largest |a| (at least 1e-30).
fn relative_difference(a: &Tensor, b: &Tensor) -> f64 {
    tensor_max_abs(&(a - b).unwrap()) / tensor_max_abs(a).max(1e-30)
}

/// Both ways of running the last layer (every position, [CLS] only) on a padded batch of two
/// give the same logits, ∂y/∂P and attention relevance of every layer (the last one's [CLS] row;
/// its other rows are asserted to be exactly 0 in the full pass), ∂y/∂e, and relevance at the
/// encoder input and per layer, for every class. `what` names the model in failures.
fn assert_last_layer_modes_agree(model: &tokenlens::bert::BertClassifier, what: &str) {
    use tokenlens::bert::LastLayer;
    use tokenlens::relprop::{self, Depth};
    let layers = model.layers.len();
    let ids = Tensor::new(
        &[
            [101u32, 1037, 6919, 1010, 2540, 7959, 2143, 1012, 102],
            [101, 2023, 2001, 2919, 1012, 102, 0, 0, 0],
        ],
        &Device::Cpu,
    )
    .unwrap();
    let mask = Tensor::new(
        &[[1u32, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0, 0, 0]],
        &Device::Cpu,
    )
    .unwrap();
    let full = model
        .forward_with(&ids, &mask, false, LastLayer::AllPositions)
        .unwrap();
    let cls = model
        .forward_with(&ids, &mask, false, LastLayer::ClsOnly)
        .unwrap();
    let heads = model.config.num_attention_heads;
    assert_eq!(full.layers[layers - 1].probs.dims(), &[2, heads, 9, 9]);
    assert_eq!(
        cls.layers[layers - 1].probs.dims(),
        &[2, heads, 1, 9],
        "{what}: [CLS] only computes one query row"
    );
    assert!(relative_difference(&full.logits, &cls.logits) <= 1e-12);
    // Row 0 of the last layer's map, and all of every other layer's.
    let comparable = |layer: usize, t: &Tensor| -> Tensor {
        if layer + 1 == layers {
            t.narrow(2, 0, 1).unwrap()
        } else {
            t.clone()
        }
    };
    let classes = model.config.num_labels();
    for class in 0..classes {
        let targets = [class, (class + 1) % classes];
        let depth = GradientDepth {
            lowest_attention_layer: 0,
            encoder_input: true,
        };
        let g_full = backward::gradients(model, &full, &targets, depth).unwrap();
        let g_cls = backward::gradients(model, &cls, &targets, depth).unwrap();
        let r_full = relprop::propagate(model, &full, &targets, Depth::EncoderInput).unwrap();
        let r_cls = relprop::propagate(model, &cls, &targets, Depth::EncoderInput).unwrap();
        let r_full_last = r_full.attention[layers - 1].as_ref().unwrap();
        let g_full_last = &g_full.probs[layers - 1];
        for untouched in [g_full_last, r_full_last] {
            let rest = untouched.narrow(2, 1, 8).unwrap();
            assert_eq!(
                tensor_max_abs(&rest),
                0.0,
                "{what}: rows other than [CLS] are zero"
            );
        }
        for layer in 0..layers {
            let pairs = [
                ("∂y/∂P", &g_full.probs[layer], &g_cls.probs[layer]),
                (
                    "attention relevance",
                    r_full.attention[layer].as_ref().unwrap(),
                    r_cls.attention[layer].as_ref().unwrap(),
                ),
                (
                    "relevance at the layer input",
                    r_full.layer_input_totals[layer].as_ref().unwrap(),
                    r_cls.layer_input_totals[layer].as_ref().unwrap(),
                ),
            ];
            for (quantity, a, b) in pairs {
                let a = if a.rank() == 4 {
                    comparable(layer, a)
                } else {
                    a.clone()
                };
                let difference = relative_difference(&a, b);
                assert!(
                    difference <= 1e-10,
                    "{what} class {class} layer {layer} {quantity}: {difference}"
                );
            }
        }
        for (quantity, a, b) in [
            ("∂y/∂e", &g_full.embedded, &g_cls.embedded),
            (
                "relevance at the encoder input",
                r_full.encoder_input.as_ref().unwrap(),
                r_cls.encoder_input.as_ref().unwrap(),
            ),
        ] {
            let difference = relative_difference(a, b);
            assert!(difference <= 1e-10, "{what} {quantity}: {difference}");
        }
    }
}

/// Explanations compute the last layer for [CLS] only (`LastLayer::ClsOnly`) unless Grad-CAM is
/// asked for. That changes no number (see [`assert_last_layer_modes_agree`]), also for a model of
/// one layer (the last layer is also the first) and with query, key and value as three layers
/// (as while training), and no method's scores through the explainer.
#[test]
fn computing_the_last_layer_for_cls_only_changes_no_result() {
    use tokenlens::bert::LastLayer;
    for dir in [tiny_bert_dir(), minilm_head_dir()] {
        let explainer = explainer_with(&dir, Precision::F64, None);
        let model = explainer.model();
        assert_last_layer_modes_agree(model, &dir.display().to_string());
        // Every method but Grad-CAM (which needs every row) alone runs the [CLS]-only path;
        // all methods together run every row.
        let others: Vec<Method> = Method::ALL
            .into_iter()
            .filter(|m| !m.needs_every_last_layer_row())
            .collect();
        assert_eq!(Method::last_layer_for(&others), LastLayer::ClsOnly);
        assert_eq!(
            Method::last_layer_for(&Method::ALL),
            LastLayer::AllPositions
        );
        for target in [Target::Predicted, Target::Class(1)] {
            let every_row = explainer.explain(TEXTS[1], &Method::ALL, target).unwrap();
            let cls_only = explainer.explain(TEXTS[1], &others, target).unwrap();
            for method in &others {
                let a = &every_row.attribution(*method).unwrap().token_scores;
                let b = &cls_only.attribution(*method).unwrap().token_scores;
                check_close(b, a, 1e-10, 1e-10)
                    .unwrap_or_else(|e| panic!("{} {method}: {e}", dir.display()));
            }
        }
    }
    let tiny = explainer_with(&tiny_bert_dir(), Precision::F64, None);
    let mut one_layer = tiny.model().clone();
    one_layer.layers.truncate(1);
    assert_last_layer_modes_agree(&one_layer, "tiny-bert, first layer only");
    let mut three_projections = tiny.model().clone();
    for layer in &mut three_projections.layers {
        layer.query_key_value = None;
    }
    assert_last_layer_modes_agree(&three_projections, "tiny-bert, separate query/key/value");
}

/// On a GPU the explainer keeps |W| of every layer for the α1β0 rule (`AbsWeights`); with the
/// stored weights relevance is bit for bit what the rule gives making |W| itself, for the merged
/// query/key/value layer and for three separate ones, in both precisions.
#[test]
fn stored_absolute_weights_change_no_relevance() {
    use tokenlens::bert::{LastLayer, one_hot_like};
    use tokenlens::relprop::{self, AbsWeights, Depth};
    let ids = Tensor::new(&[[101u32, 1037, 6919, 1010, 2540, 102]], &Device::Cpu).unwrap();
    let mask = Tensor::new(&[[1u32; 6]], &Device::Cpu).unwrap();
    for precision in [Precision::F32, Precision::F64] {
        let explainer = explainer_with(&tiny_bert_dir(), precision, None);
        let mut three_projections = explainer.model().clone();
        for layer in &mut three_projections.layers {
            layer.query_key_value = None;
        }
        for (model, what) in [
            (explainer.model(), "merged"),
            (&three_projections, "separate"),
        ] {
            let pass = model
                .forward_with(&ids, &mask, false, LastLayer::ClsOnly)
                .unwrap();
            let seed = one_hot_like(&pass.logits, &[1]).unwrap();
            let stored = AbsWeights::of_model(model).unwrap();
            let with = relprop::propagate_seeded(model, &stored, &pass, &seed, Depth::EncoderInput)
                .unwrap();
            let without = relprop::propagate(model, &pass, &[1], Depth::EncoderInput).unwrap();
            let (a, b) = (
                with.encoder_input.as_ref().unwrap(),
                without.encoder_input.as_ref().unwrap(),
            );
            assert!(tensor_max_abs(b) > 0.0, "{what} {precision:?}");
            assert_eq!(
                f64_values(a),
                f64_values(b),
                "{what} {precision:?}: encoder input"
            );
            for (layer, (a, b)) in with.attention.iter().zip(&without.attention).enumerate() {
                assert_eq!(
                    f64_values(a.as_ref().unwrap()),
                    f64_values(b.as_ref().unwrap()),
                    "{what} {precision:?}: attention of layer {layer}"
                );
            }
        }
    }
}

#[test]
fn words_and_tokens_point_at_their_text() {
    let explainer = explainer_with(&tiny_bert_dir(), Precision::F32, None);
    let texts = [
        "Wait... what?! No way — that's brilliant!!!",
        "日本語のテキスト and English, mixed.",
        "tabs\tand  double  spaces, \"quotes\" (parens) [UNK-ish] 😍😍",
        "Ünïcödé ÀÉÎÕÜ straße",
    ];
    for text in texts {
        let e = explainer
            .explain(text, &[Method::GradientXInput], Target::Predicted)
            .unwrap();
        assert!(!e.words.is_empty());
        for w in &e.words {
            assert_eq!(&text[w.start..w.end], w.text, "{text:?}");
            assert!(!w.text.trim().is_empty());
            for &t in &w.tokens {
                let tok = &e.tokens[t];
                assert!(!tok.special && tok.start >= w.start && tok.end <= w.end);
            }
        }
        // Every non-special token belongs to exactly one word.
        let mut owners = vec![0; e.tokens.len()];
        e.words
            .iter()
            .flat_map(|w| &w.tokens)
            .for_each(|&t| owners[t] += 1);
        for (t, tok) in e.tokens.iter().enumerate() {
            assert_eq!(
                owners[t],
                usize::from(!tok.special),
                "{text:?} token {}",
                tok.token
            );
        }
        let a = e.attribution(Method::GradientXInput).unwrap();
        let word_total: f64 = a.word_scores.iter().sum();
        let piece_total: f64 = a.token_scores[1..a.token_scores.len() - 1].iter().sum();
        assert!(
            (word_total - piece_total).abs() < 1e-9,
            "sum aggregation keeps the total"
        );
    }
}

#[test]
fn long_texts_are_windowed_and_every_token_is_scored() {
    let long: String = (0..60)
        .map(|i| format!("sentence {i} was quite good but slow. "))
        .collect();
    let windowed = explainer_with(&tiny_bert_dir(), Precision::F64, Some(32));
    let e = windowed
        .explain(&long, &Method::ALL, Target::Class(0))
        .unwrap();
    let pieces = windowed.encoder().pieces(&long).unwrap().len();
    assert!(pieces > 200);
    assert_eq!(e.tokens.len(), pieces + 2);
    assert!(
        e.windows >= pieces / 30,
        "{} windows for {pieces} pieces",
        e.windows
    );
    for a in &e.attributions {
        assert_eq!(a.token_scores.len(), pieces + 2);
        if a.method != "attention_gradcam" {
            assert!(a.token_scores.iter().all(|s| s.is_finite()), "{}", a.method);
        }
    }
    // A text that fits is one window and identical to the unwindowed explanation.
    let short = "A wonderful, heartfelt film.";
    let a = windowed
        .explain(short, &Method::ALL, Target::Class(0))
        .unwrap();
    let b = explainer_with(&tiny_bert_dir(), Precision::F64, None)
        .explain(short, &Method::ALL, Target::Class(0))
        .unwrap();
    assert_eq!(a.windows, 1);
    assert_eq!(a, b);
    // Beyond the model's 512 positions, windows are used without being asked for.
    let very_long: String = (0..120).map(|_| "good movie, bad popcorn. ").collect();
    let e = explainer_with(&tiny_bert_dir(), Precision::F32, None)
        .explain(&very_long, &[Method::CheferLrpAllLayers], Target::Predicted)
        .unwrap();
    assert!(e.windows >= 2);
    assert!(max_abs(&e.attributions[0].token_scores) > 0.0);
}

fn temp_model_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tokenlens-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(tiny_bert_dir().join(file), dir.join(file)).unwrap();
    }
    dir
}

fn logits_of(dir: &Path) -> Vec<f64> {
    explainer_with(dir, Precision::F32, None)
        .explain("A wonderful, heartfelt film.", &[], Target::Predicted)
        .unwrap()
        .logits
}

#[test]
fn multi_label_models_give_each_class_its_sigmoid_probability() {
    let dir = temp_model_dir("multi-label");
    std::fs::copy(
        tiny_bert_dir().join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    config["problem_type"] = "multi_label_classification".into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let text = "A wonderful, heartfelt film.";
    let single = explainer_with(&tiny_bert_dir(), Precision::F64, None)
        .explain(text, &[Method::AttnLrp], Target::Predicted)
        .unwrap();
    let multi = explainer_with(&dir, Precision::F64, None)
        .explain(text, &[Method::AttnLrp], Target::Predicted)
        .unwrap();
    assert_eq!(multi.logits, single.logits);
    let sigmoid: Vec<f64> = multi
        .logits
        .iter()
        .map(|l| 1.0 / (1.0 + (-l).exp()))
        .collect();
    check_close(&multi.probs, &sigmoid, 1e-15, 0.0).unwrap();
    assert!(
        (multi.probs.iter().sum::<f64>() - 1.0).abs() > 1e-3,
        "not a softmax"
    );
    // What is explained does not change: the logit of the class.
    assert_eq!(multi.predicted, single.predicted);
    assert_eq!(
        multi.attributions[0].token_scores,
        single.attributions[0].token_scores
    );
}

#[test]
fn half_precision_pytorch_and_vocab_only_models_load() {
    let reference = logits_of(&tiny_bert_dir());
    let tensors =
        candle_core::safetensors::load(tiny_bert_dir().join("model.safetensors"), &Device::Cpu)
            .unwrap();
    for (name, dtype, tol) in [("f16", DType::F16, 2e-2), ("bf16", DType::BF16, 1e-1)] {
        let dir = temp_model_dir(name);
        let converted: std::collections::HashMap<String, Tensor> = tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.to_dtype(dtype).unwrap()))
            .collect();
        candle_core::safetensors::save(&converted, dir.join("model.safetensors")).unwrap();
        let logits = logits_of(&dir);
        check_close(&logits, &reference, tol, 0.0).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_ne!(logits, reference, "{name} weights must actually be rounded");
    }
    // pytorch_model.bin (torch.save zip format) with vocab.txt instead of tokenizer.json.
    let dir = temp_model_dir("pth");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    std::fs::copy(tiny_bert_dir().join("vocab.txt"), dir.join("vocab.txt")).unwrap();
    let status = std::process::Command::new("python3")
        .arg(root().join("tests/support/safetensors_to_pytorch_bin.py"))
        .arg(tiny_bert_dir().join("model.safetensors"))
        .arg(dir.join("pytorch_model.bin"))
        .status()
        .expect("python3 is needed to write a PyTorch checkpoint for this test");
    assert!(status.success());
    assert_eq!(logits_of(&dir), reference);
}

#[test]
fn malformed_model_directories_name_the_problem() {
    let load = |dir: &Path| {
        Explainer::load(&path_str(dir), ExplainerOptions::default())
            .err()
            .unwrap()
    };

    let empty = temp_model_dir("no-config");
    std::fs::remove_file(empty.join("config.json")).unwrap();
    let err = load(&empty);
    assert!(
        matches!(err, Error::MissingModelFile { ref file, .. } if file == "config.json"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 3);

    let no_weights = temp_model_dir("no-weights");
    let err = load(&no_weights);
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    let no_tokenizer = temp_model_dir("no-tokenizer");
    std::fs::copy(
        tiny_bert_dir().join("model.safetensors"),
        no_tokenizer.join("model.safetensors"),
    )
    .unwrap();
    std::fs::remove_file(no_tokenizer.join("tokenizer.json")).unwrap();
    assert!(load(&no_tokenizer).to_string().contains("vocab.txt"));

    let gpt = temp_model_dir("gpt");
    std::fs::copy(
        tiny_bert_dir().join("model.safetensors"),
        gpt.join("model.safetensors"),
    )
    .unwrap();
    std::fs::write(gpt.join("config.json"), r#"{"architectures":["GPT2LMHeadModel"],"vocab_size":1,"hidden_size":4,"num_hidden_layers":1,"num_attention_heads":1,"intermediate_size":4}"#).unwrap();
    let err = load(&gpt);
    assert!(
        matches!(err, Error::UnsupportedArchitecture { .. })
            && err.to_string().contains("BertForSequenceClassification"),
        "{err}"
    );

    let wrong_shape = temp_model_dir("shape");
    std::fs::copy(
        tiny_bert_dir().join("model.safetensors"),
        wrong_shape.join("model.safetensors"),
    )
    .unwrap();
    let config = std::fs::read_to_string(tiny_bert_dir().join("config.json")).unwrap();
    std::fs::write(
        wrong_shape.join("config.json"),
        config.replace("\"intermediate_size\": 64", "\"intermediate_size\": 65"),
    )
    .unwrap();
    let err = load(&wrong_shape);
    assert!(
        matches!(err, Error::ShapeMismatch { ref name, .. } if name.contains("intermediate")),
        "{err}"
    );

    let missing_tensor = temp_model_dir("missing-tensor");
    let mut tensors =
        candle_core::safetensors::load(tiny_bert_dir().join("model.safetensors"), &Device::Cpu)
            .unwrap();
    tensors.remove("classifier.weight");
    candle_core::safetensors::save(&tensors, missing_tensor.join("model.safetensors")).unwrap();
    let err = load(&missing_tensor);
    assert!(
        matches!(err, Error::MissingTensor { ref name, .. } if name == "classifier.weight"),
        "{err}"
    );

    let corrupt = temp_model_dir("corrupt");
    std::fs::write(corrupt.join("model.safetensors"), b"not a safetensors file").unwrap();
    assert!(matches!(load(&corrupt), Error::BadWeights { .. }));

    let not_there = ModelFiles::resolve("./no/such/model-dir").unwrap_err();
    assert!(
        matches!(not_there, Error::ModelNotFound { ref given } if given == "./no/such/model-dir"),
        "{not_there}"
    );
    assert!(
        not_there.to_string().contains("no such directory")
            && not_there.to_string().contains("TOKENLENS_MODEL"),
        "{not_there}"
    );
    assert_eq!(
        not_there.exit_code(),
        tokenlens::error::exit_code::MODEL_LOAD
    );
    let config_file = tiny_bert_dir().join("config.json");
    let a_file = ModelFiles::resolve(&path_str(&config_file)).unwrap_err();
    assert!(matches!(a_file, Error::ModelIsFile { .. }), "{a_file}");
    assert!(a_file.to_string().contains("is a file"), "{a_file}");
}

/// Puts `files` of the tiny BERT into a Hugging Face cache at `cache` as the repository
/// `models--{repo}`, the way the hub client lays out a download (a snapshot named by `refs/main`).
fn cache_tiny_bert(cache: &Path, repo: &str, files: &[&str]) {
    let repo = cache.join(format!("models--{repo}"));
    let snapshot = repo.join("snapshots/0123456789abcdef");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123456789abcdef").unwrap();
    for file in files {
        std::fs::copy(tiny_bert_dir().join(file), snapshot.join(file)).unwrap();
    }
}

/// A hub id resolves through the local Hugging Face cache (no network needed), and a missing
/// one fails at once with the fix in the message.
#[test]
fn hub_ids_resolve_through_the_cache_and_fail_clearly_offline() {
    let home = std::env::temp_dir().join(format!("tokenlens-hf-home-{}", std::process::id()));
    cache_tiny_bert(
        &home.join("hub"),
        "tokenlens--tiny-bert",
        &["config.json", "model.safetensors", "tokenizer.json"],
    );
    let run = |model: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tokenlens"))
            .args(["score", "--model", model])
            .env("HF_HOME", &home)
            .env("HF_HUB_OFFLINE", "1")
            .env_remove("TOKENLENS_MODEL")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"A wonderful film.\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let ok = run("tokenlens/tiny-bert");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let record: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(record["labels"].as_array().unwrap().len(), 3);

    let missing = run("tokenlens/not-cached");
    assert_eq!(missing.status.code(), Some(3));
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(
        message.contains("HF_HUB_OFFLINE") && message.contains("local directory"),
        "{message}"
    );
}

#[test]
fn a_text_of_more_windows_than_a_batch_is_explained_a_batch_at_a_time_with_the_same_result() {
    let long: String = (0..40)
        .map(|i| format!("scene {i} was dull but the music was lovely. "))
        .collect();
    let with_batch = |batch_size: usize| {
        let options = ExplainerOptions {
            precision: Precision::F64,
            max_tokens: Some(40),
            batch_size,
            ..Default::default()
        };
        Explainer::load(&path_str(&tiny_bert_dir()), options).unwrap()
    };
    let methods = [
        Method::CheferLrpAllLayers,
        Method::AttnLrp,
        Method::GradientXInput,
        Method::AttentionRollout,
    ];
    let together = with_batch(64);
    let texts = [long.as_str(), "A short one that fits."];
    for target in [Target::Predicted, Target::Class(1)] {
        let whole = together.explain_batch(&texts, &methods, target).unwrap();
        assert!(whole[0].windows > 8, "{} windows", whole[0].windows);
        for batch_size in [1, 3] {
            let chunked = with_batch(batch_size)
                .explain_batch(&texts, &methods, target)
                .unwrap();
            for (a, b) in whole.iter().zip(&chunked) {
                assert_eq!(a.windows, b.windows);
                assert_eq!((a.predicted, a.target), (b.predicted, b.target));
                for (x, y) in a.logits.iter().zip(&b.logits) {
                    assert!((x - y).abs() < 1e-9, "logits {x} vs {y}");
                }
                for (p, q) in a.attributions.iter().zip(&b.attributions) {
                    let scale = max_abs(&p.token_scores).max(1e-300);
                    for (x, y) in p.token_scores.iter().zip(&q.token_scores) {
                        assert!(
                            (x - y).abs() <= 1e-9 * scale || (x.is_nan() && y.is_nan()),
                            "{} at batch {batch_size}: {x} vs {y}",
                            p.method
                        );
                    }
                }
            }
        }
    }
}

/// Without a network (an endpoint that refuses connections) and without HF_HUB_OFFLINE, a hub
/// id still resolves through the cache that HF_HUB_CACHE names, also when the cache holds
/// `vocab.txt` instead of `tokenizer.json`; what the cache lacks is reported with the reason.
#[test]
fn hub_ids_resolve_through_hf_hub_cache_when_the_hub_cannot_be_reached() {
    let cache = std::env::temp_dir().join(format!("tokenlens-hf-cache-{}", std::process::id()));
    cache_tiny_bert(
        &cache,
        "tokenlens--vocab-only",
        &["config.json", "model.safetensors", "vocab.txt"],
    );
    let run = |model: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tokenlens"))
            .args(["score", "--model", model, "--format", "tsv"])
            .env("HF_HUB_CACHE", &cache)
            .env("HF_HOME", cache.join("elsewhere"))
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("TOKENLENS_MODEL")
            .stdin(std::fs::File::open(tiny_bert_dir().join("config.json")).unwrap())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
            output.stdout,
        )
    };
    let (code, stderr, stdout) = run("tokenlens/vocab-only");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stdout.is_empty());

    let (code, stderr, _) = run("tokenlens/not-cached");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("could not be reached") && stderr.contains("config.json"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&cache);
}
