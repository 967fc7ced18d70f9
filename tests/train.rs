//! `tokenlens train` on a small slice with the tiny golden BERT: the loss falls, the saved
//! Hugging Face directory reloads with the logits the trainer computed, and user mistakes get
//! errors that name the thing and the fix.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use tokenlens::model_dir::ModelFiles;
use tokenlens::train::{self, TrainOptions};

/// The first `rows` data lines of a fixtures/data file, header included.
fn slice_of(file: &str, rows: usize) -> String {
    let text = std::fs::read_to_string(common::root().join("fixtures/data").join(file)).unwrap();
    text.lines()
        .take(rows + 1)
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The same rows as JSONL objects {"text": ..., "label": <number>}.
fn as_jsonl(tsv: &str) -> String {
    tsv.lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let label: u32 = fields[0].parse().unwrap();
            format!(
                "{}\n",
                serde_json::json!({"text": fields[2], "label": label})
            )
        })
        .collect()
}

#[test]
fn short_run_lowers_the_loss_and_the_saved_model_reloads_with_identical_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let train_path = tmp.path().join("train.tsv");
    let dev_path = tmp.path().join("dev.jsonl");
    std::fs::write(&train_path, slice_of("rt-snippets.train.tsv", 64)).unwrap();
    std::fs::write(&dev_path, as_jsonl(&slice_of("rt-snippets.dev.tsv", 24))).unwrap();

    let labels = vec!["negative".to_owned(), "positive".to_owned()];
    let train_examples = train::examples(
        train::read_rows(&train_path, "text", "label").unwrap(),
        &labels,
        &train_path,
    )
    .unwrap();
    let dev_examples = train::examples(
        train::read_rows(&dev_path, "text", "label").unwrap(),
        &labels,
        &dev_path,
    )
    .unwrap();
    assert_eq!((train_examples.len(), dev_examples.len()), (64, 24));

    let base = ModelFiles::from_dir(&common::tiny_bert_dir()).unwrap();
    let out = tmp.path().join("model");
    let options = TrainOptions {
        epochs: 10,
        learning_rate: 3e-3,
        batch_size: 8,
        // No dropout, so the fall of the loss is not hidden by mask noise.
        dropout: 0.0,
        ..TrainOptions::default()
    };
    let mut steps_seen = 0;
    let report = train::train(
        &base,
        &labels,
        &train_examples,
        Some(&dev_examples),
        &out,
        &options,
        &mut |event| {
            if let train::TrainEvent::Step { .. } = event {
                steps_seen += 1
            }
        },
    )
    .unwrap();
    assert_eq!(steps_seen, 10 * 8);
    assert_eq!(report.step_losses.len(), 10 * 8);
    let first = report.epochs.first().unwrap().mean_loss;
    let last = report.epochs.last().unwrap().mean_loss;
    eprintln!("mean training loss: epoch 1 {first:.4}, epoch 10 {last:.4}");
    assert!(
        last < 0.8 * first,
        "mean training loss did not fall: epoch 1 {first:.4}, epoch 10 {last:.4}"
    );
    assert!(report.epochs.iter().all(|e| e.dev_accuracy.is_some()));
    let saved = report.epochs.iter().filter(|e| e.saved).count();
    assert!(saved >= 1 && report.epochs[report.best_epoch - 1].saved);
    // tiny-bert's pooler was trained (its bias is not zero), so it is kept.
    assert_eq!(report.pooler, train::PoolerStart::FromBase);

    // The directory is a Hugging Face classifier with our labels and HF tensor names.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert_eq!(config["id2label"]["1"], "positive");
    assert_eq!(config["label2id"]["negative"], 0);
    let tensors =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(tensors.contains_key("bert.encoder.layer.0.attention.self.query.weight"));
    assert!(tensors.contains_key("bert.pooler.dense.weight"));
    assert_eq!(tensors["classifier.weight"].dims(), [2, 32]);
    assert!(tensors.values().all(|t| t.dtype() == DType::F32));

    // Reloaded one text at a time, the model gives the logits the trainer computed in batches.
    assert_reloads_with_logits(&out, &labels, &dev_examples, &report.saved_dev_logits);
}

/// The model saved in `out`, reloaded and run one text at a time, gives `expected` (the logits the
/// trainer computed in batches for the model it saved).
fn assert_reloads_with_logits(
    out: &Path,
    labels: &[String],
    dev_examples: &[train::Example],
    expected_logits: &[Vec<f32>],
) {
    let model = common::SavedClassifier::load(out);
    assert_eq!(model.config.labels, labels);
    assert_eq!(expected_logits.len(), dev_examples.len());
    for (example, expected) in dev_examples.iter().zip(expected_logits) {
        let logits = model.logits(&example.text);
        for (a, b) in logits.iter().zip(expected) {
            // Batches pad to their longest text; padded keys get exactly zero attention, so
            // only the summation order of the kernels may differ.
            assert!(
                (a - b).abs() <= 1e-5,
                "{:?}: reloaded logits {:?} vs trained {:?}",
                example.text,
                logits[0],
                expected
            );
        }
    }
}

/// Training options of the weight-average tests: short, no dropout, a fixed seed.
fn quick_options() -> TrainOptions {
    TrainOptions {
        epochs: 3,
        learning_rate: 3e-3,
        batch_size: 8,
        dropout: 0.0,
        ..TrainOptions::default()
    }
}

#[test]
fn weight_average_competes_on_dev_and_what_is_saved_is_what_was_measured() {
    let tmp = tempfile::tempdir().unwrap();
    let train_path = tmp.path().join("train.tsv");
    let dev_path = tmp.path().join("dev.tsv");
    std::fs::write(&train_path, slice_of("rt-snippets.train.tsv", 48)).unwrap();
    std::fs::write(&dev_path, slice_of("rt-snippets.dev.tsv", 24)).unwrap();
    let labels = vec!["negative".to_owned(), "positive".to_owned()];
    let read = |path: &Path| {
        train::examples(
            train::read_rows(path, "text", "label").unwrap(),
            &labels,
            path,
        )
        .unwrap()
    };
    let (train_examples, dev_examples) = (read(&train_path), read(&dev_path));
    let base = ModelFiles::from_dir(&common::tiny_bert_dir()).unwrap();
    let run = |out: &Path, decay: Option<f64>, dev: bool| {
        let options = TrainOptions {
            weight_average_decay: decay,
            ..quick_options()
        };
        let dev = dev.then_some(dev_examples.as_slice());
        train::train(
            &base,
            &labels,
            &train_examples,
            dev,
            out,
            &options,
            &mut |_| {},
        )
        .unwrap()
    };
    let max_difference = |a: &Path, b: &Path| {
        let (a, b) = (common::saved_weights(a), common::saved_weights(b));
        a.iter()
            .map(|(name, t)| common::max_abs_difference(t, &b[name]))
            .fold(0f32, f32::max)
    };

    // Without dev data the last epoch is saved: the trained weights, or their average.
    let trained = tmp.path().join("trained");
    let averaged = tmp.path().join("averaged");
    let barely_averaged = tmp.path().join("barely-averaged");
    assert!(!run(&trained, None, false).best_is_average);
    assert!(run(&averaged, Some(0.9), false).best_is_average);
    run(&barely_averaged, Some(1e-9), false);
    // Averaging does not change training: an average that keeps nothing of the past is the
    // trained model, and a real one is not.
    assert!(max_difference(&trained, &barely_averaged) < 1e-6);
    let moved = max_difference(&trained, &averaged);
    assert!(
        moved > 1e-4,
        "the average equals the trained weights ({moved})"
    );

    // With dev data both are measured every epoch, the better one is kept, and the saved model
    // reloads with the logits it was measured with, also when the average won (the tiny model
    // makes that a matter of seed, so seeds are tried until it happens; CPU runs are
    // deterministic, so the same seed wins every time).
    let mut average_saved = false;
    for seed in 0..12 {
        let out = tmp.path().join(format!("with-dev-{seed}"));
        let options = TrainOptions {
            weight_average_decay: Some(0.8),
            learning_rate: 1e-2,
            seed,
            ..quick_options()
        };
        let report = train::train(
            &base,
            &labels,
            &train_examples,
            Some(&dev_examples),
            &out,
            &options,
            &mut |_| {},
        )
        .unwrap();
        for epoch in &report.epochs {
            let trained = epoch.dev_accuracy.unwrap();
            let average = epoch.average_dev_accuracy.unwrap();
            assert!(!epoch.saved_average || (epoch.saved && average > trained));
        }
        let best = &report.epochs[report.best_epoch - 1];
        let best_accuracy = best
            .dev_accuracy
            .unwrap()
            .max(best.average_dev_accuracy.unwrap());
        assert_eq!(report.best_dev_accuracy, Some(best_accuracy));
        assert_eq!(report.best_is_average, best.saved_average);
        assert_reloads_with_logits(&out, &labels, &dev_examples, &report.saved_dev_logits);
        if report.best_is_average {
            eprintln!("seed {seed}: the weight average was saved");
            average_saved = true;
            break;
        }
    }
    assert!(average_saved, "the weight average never won on dev");
}

#[test]
fn cli_saves_float16_weights_that_the_engine_loads() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("train.tsv"),
        slice_of("rt-snippets.train.tsv", 16),
    )
    .unwrap();
    let base = common::tiny_bert_dir();
    let output = common::tokenlens_in(
        &[
            "train",
            "--base",
            base.to_str().unwrap(),
            "--train",
            "train.tsv",
            "--labels",
            "negative,positive",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--dtype",
            "f16",
            "--out",
            "out",
            "--quiet",
        ],
        tmp.path(),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stderr.is_empty(), "--quiet printed something");
    let out = tmp.path().join("out");
    let tensors =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(tensors.values().all(|t| t.dtype() == DType::F16));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["torch_dtype"], "float16");
    let explainer = tokenlens::Explainer::load(
        out.to_str().unwrap(),
        tokenlens::ExplainerOptions::default(),
    )
    .unwrap();
    assert_eq!(explainer.labels(), ["negative", "positive"]);
    let probs = explainer.classify_batch(&["a fine film"]).unwrap();
    assert!((probs[0].iter().sum::<f64>() - 1.0).abs() < 1e-6);
}

#[test]
fn cli_errors_name_the_label_the_column_and_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad-label.tsv"),
        "label\ttext\n0\tdull\nmaybe\tfine\n",
    )
    .unwrap();
    let base = common::tiny_bert_dir();
    let base = base.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["train", "--base", base, "--out", "out"];
        args.extend_from_slice(extra);
        let output = common::tokenlens_in(&args, tmp.path());
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (code, stderr) = run(&["--train", "bad-label.tsv", "--labels", "negative,positive"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("\"maybe\"") && stderr.contains("line 3") && stderr.contains("--labels"),
        "{stderr}"
    );

    let (code, stderr) = run(&["--train", "bad-label.tsv", "--text-column", "review"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("\"review\"") && stderr.contains("--text-column"),
        "{stderr}"
    );

    let (code, stderr) = run(&["--train", "missing.tsv"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("missing.tsv"), "{stderr}");
    assert!(
        !tmp.path().join("out").exists(),
        "nothing is written on error"
    );
}
