//! `tokenlens soup` and `train --init-seed` on the tiny golden BERT: the soup is the mean of its
//! ingredients, the greedy recipe never loses on dev and reports what the saved model measures,
//! and models that cannot be averaged are refused with a message that names them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device};
use tokenlens::model_dir::ModelFiles;
use tokenlens::soup::{self, SoupOptions, SoupRecipe};
use tokenlens::train::{self, Example, TrainOptions};

fn labels() -> Vec<String> {
    vec!["negative".to_owned(), "positive".to_owned()]
}

/// The first `rows` examples of a fixtures/data file.
fn examples(file: &str, rows: usize, tmp: &Path) -> (PathBuf, Vec<Example>) {
    let text = std::fs::read_to_string(common::root().join("fixtures/data").join(file)).unwrap();
    let slice: String = text
        .lines()
        .take(rows + 1)
        .map(|l| format!("{l}\n"))
        .collect();
    let path = tmp.join(file);
    std::fs::write(&path, slice).unwrap();
    let examples = train::examples(
        train::read_rows(&path, "text", "label").unwrap(),
        &labels(),
        &path,
    )
    .unwrap();
    (path, examples)
}

/// A short run of the tiny model: the head starts from `init_seed`, data order and dropout from
/// `seed`.
fn fine_tune(
    out: &Path,
    seed: u64,
    init_seed: Option<u64>,
    learning_rate: f64,
    train_examples: &[Example],
) {
    let options = TrainOptions {
        epochs: 2,
        learning_rate,
        batch_size: 8,
        seed,
        init_seed,
        ..TrainOptions::default()
    };
    let base = ModelFiles::from_dir(&common::tiny_bert_dir()).unwrap();
    train::train(
        &base,
        &labels(),
        train_examples,
        None,
        out,
        &options,
        &mut |_| {},
    )
    .unwrap();
}

/// Accuracy of the saved model in `dir` on `dev`, one text at a time.
fn accuracy_of(dir: &Path, dev: &[Example]) -> f64 {
    let model = common::SavedClassifier::load(dir);
    let correct = dev
        .iter()
        .filter(|example| {
            let logits = model.logits(&example.text);
            usize::from(logits[1] > logits[0]) == example.label
        })
        .count();
    correct as f64 / dev.len() as f64
}

#[test]
fn init_seed_fixes_the_starting_head_and_seed_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, train_examples) = examples("rt-snippets.train.tsv", 32, tmp.path());
    // A learning rate so small that the saved head is its initialisation.
    let frozen = |name: &str, seed: u64, init_seed: Option<u64>| {
        let out = tmp.path().join(name);
        fine_tune(&out, seed, init_seed, 1e-20, &train_examples);
        common::saved_weights(&out)["classifier.weight"].clone()
    };
    let init_7_seed_1 = frozen("a", 1, Some(7));
    let init_7_seed_2 = frozen("b", 2, Some(7));
    let init_8_seed_1 = frozen("c", 1, Some(8));
    assert_eq!(
        common::max_abs_difference(&init_7_seed_1, &init_7_seed_2),
        0.0
    );
    assert!(common::max_abs_difference(&init_7_seed_1, &init_8_seed_1) > 1e-3);
    // Runs with the same --seed and no --init-seed start where --init-seed SEED starts.
    assert_eq!(
        common::max_abs_difference(&frozen("d", 7, None), &init_7_seed_1),
        0.0
    );

    // With a real learning rate, --init-seed equal to --seed is exactly the run without it, and
    // another --seed from the same start trains to other weights.
    let trained = |name: &str, seed: u64, init_seed: Option<u64>| {
        let out = tmp.path().join(name);
        fine_tune(&out, seed, init_seed, 3e-3, &train_examples);
        common::saved_weights(&out)
    };
    let plain = trained("e", 7, None);
    let same = trained("f", 7, Some(7));
    let other = trained("g", 8, Some(7));
    for (name, tensor) in &plain {
        assert_eq!(
            common::max_abs_difference(tensor, &same[name]),
            0.0,
            "{name}"
        );
    }
    assert!(
        common::max_abs_difference(&plain["classifier.weight"], &other["classifier.weight"]) > 1e-4
    );
}

#[test]
fn soups_are_the_mean_of_their_ingredients_and_greedy_never_loses_on_dev() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, train_examples) = examples("rt-snippets.train.tsv", 48, tmp.path());
    let (_, dev) = examples("rt-snippets.dev.tsv", 40, tmp.path());
    let models: Vec<PathBuf> = (1..=3)
        .map(|seed| {
            let out = tmp.path().join(format!("run{seed}"));
            fine_tune(&out, seed, Some(5), 3e-3, &train_examples);
            out
        })
        .collect();
    let names: Vec<String> = models.iter().map(|m| common::path_str(m)).collect();
    let ingredients = soup::load_ingredients(&names, &Device::Cpu).unwrap();

    // Uniform: every weight is the mean of the three.
    let uniform = tmp.path().join("uniform");
    let report = soup::soup(
        &ingredients,
        Some(&dev),
        &uniform,
        &SoupOptions {
            recipe: SoupRecipe::Uniform,
            ..SoupOptions::default()
        },
        &mut |_| {},
    )
    .unwrap();
    assert!(report.ingredients.iter().all(|i| i.kept));
    let soup_weights = common::saved_weights(&uniform);
    let parts: Vec<_> = models.iter().map(|m| common::saved_weights(m)).collect();
    assert_eq!(soup_weights.len(), parts[0].len());
    for (name, tensor) in &soup_weights {
        let mean = ((&parts[0][name] + &parts[1][name]).unwrap() + &parts[2][name]).unwrap();
        let mean = (mean / 3.0).unwrap();
        assert!(common::max_abs_difference(tensor, &mean) < 1e-6, "{name}");
    }
    assert!(
        common::max_abs_difference(
            &parts[0]["classifier.weight"],
            &parts[1]["classifier.weight"]
        ) > 1e-4
    );
    assert!((accuracy_of(&uniform, &dev) - report.dev_accuracy.unwrap()).abs() < 1e-9);

    // Greedy: ranked by dev, never below the best ingredient, and the saved model measures what
    // the report says.
    let greedy = tmp.path().join("greedy");
    let mut tried = 0;
    let report = soup::soup(
        &ingredients,
        Some(&dev),
        &greedy,
        &SoupOptions::default(),
        &mut |event| {
            if let soup::SoupEvent::Tried(_) = event {
                tried += 1
            }
        },
    )
    .unwrap();
    assert_eq!(tried, 2);
    let own: Vec<f64> = report
        .ingredients
        .iter()
        .map(|i| i.dev_accuracy.unwrap())
        .collect();
    assert!(own.windows(2).all(|w| w[0] >= w[1]), "{own:?}");
    assert!(report.ingredients[0].kept && report.ingredients[0].soup_dev_accuracy.is_none());
    let soup_accuracy = report.dev_accuracy.unwrap();
    assert!(soup_accuracy >= own[0]);
    for (i, ingredient) in report.ingredients.iter().enumerate().skip(1) {
        let with_it = ingredient.soup_dev_accuracy.unwrap();
        let best_before = report.ingredients[..i]
            .iter()
            .rev()
            .find(|j| j.kept)
            .map(|j| j.soup_dev_accuracy.or(j.dev_accuracy).unwrap())
            .unwrap();
        assert_eq!(ingredient.kept, with_it >= best_before, "{report:?}");
    }
    assert!((accuracy_of(&greedy, &dev) - soup_accuracy).abs() < 1e-9);
    // Only one model kept: the soup is that model.
    if report.ingredients.iter().filter(|i| i.kept).count() == 1 {
        let best = models
            .iter()
            .position(|m| common::path_str(m) == report.ingredients[0].name)
            .unwrap();
        assert!(
            common::max_abs_difference(
                &common::saved_weights(&greedy)["classifier.weight"],
                &parts[best]["classifier.weight"]
            ) == 0.0
        );
    }

    // The greedy recipe needs dev data.
    let error = soup::soup(
        &ingredients,
        None,
        &tmp.path().join("no-dev"),
        &SoupOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(error.to_string().contains("--dev"), "{error}");
}

#[test]
fn cli_makes_a_soup_that_loads_and_refuses_models_that_cannot_be_averaged() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, train_examples) = examples("rt-snippets.train.tsv", 32, tmp.path());
    let (dev_path, _) = examples("rt-snippets.dev.tsv", 24, tmp.path());
    for seed in [1, 2] {
        fine_tune(
            &tmp.path().join(format!("run{seed}")),
            seed,
            Some(3),
            3e-3,
            &train_examples,
        );
    }
    let dev = common::path_str(&dev_path);
    let output = common::tokenlens_in(
        &[
            "soup", "run1", "run2", "--dev", &dev, "--dtype", "f16", "--out", "soup",
        ],
        tmp.path(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("run1: dev accuracy"), "{stderr}");
    assert!(stderr.contains("saved soup: the mean of"), "{stderr}");
    let saved = common::saved_weights(&tmp.path().join("soup"));
    assert!(saved.values().all(|t| t.dtype() == DType::F16));
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("soup/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["torch_dtype"], "float16");
    assert_eq!(config["id2label"]["1"], "positive");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenlens"))
        .args(["score", "--model", "soup"])
        .current_dir(tmp.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"a fine film\n").unwrap();
    let scored = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&scored.stdout);
    assert_eq!(
        scored.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&scored.stderr)
    );
    assert!(
        stdout.contains("\"a fine film\"") || stdout.contains("fine"),
        "{stdout}"
    );

    // One model is not a soup.
    let output = common::tokenlens_in(&["soup", "run1", "--out", "x"], tmp.path());
    assert_eq!(output.status.code(), Some(2));
    // Greedy without dev data names the fix.
    let output = common::tokenlens_in(&["soup", "run1", "run2", "--out", "x"], tmp.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--recipe uniform"));
    // Other labels: named, with the model and the reason.
    let other = tmp.path().join("other-labels");
    std::fs::create_dir(&other).unwrap();
    for file in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(tmp.path().join("run2").join(file), other.join(file)).unwrap();
    }
    let config_text = std::fs::read_to_string(tmp.path().join("run2/config.json"))
        .unwrap()
        .replace("positive", "favourable");
    std::fs::write(other.join("config.json"), config_text).unwrap();
    let output = common::tokenlens_in(
        &[
            "soup",
            "run1",
            "other-labels",
            "--recipe",
            "uniform",
            "--out",
            "x",
        ],
        tmp.path(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("other-labels cannot join a soup with run1")
            && stderr.contains("label list is negative,favourable"),
        "{stderr}"
    );
    // --out must not overwrite an ingredient.
    let output = common::tokenlens_in(
        &["soup", "run1", "run2", "--dev", &dev, "--out", "run1"],
        tmp.path(),
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is one of the models"));
}
