//! `tokenlens eval`: the metric definitions on hand-made cases with a known answer, integrated
//! gradients' completeness, and the command on tiny-bert in every format with its SVG plot.

use std::collections::HashSet;
use std::process::Command;

use candle_core::{DType, Tensor};
use tokenlens::eval::metrics::{self, CURVE_STEPS};
use tokenlens::{Explainer, ExplainerOptions, Precision, Target};

const TINY: &str = "fixtures/golden/tiny-bert";
const DATA: &str = "fixtures/data/rt-snippets.test.tsv";

/// A fake classifier: p(kept words) = Σ of fixed per-word weights (the whole text has p = 1).
fn additive_oracle(plan: &metrics::Plan, weights: &[f64]) -> Vec<f64> {
    plan.subsets
        .iter()
        .map(|kept| kept.iter().map(|&w| weights[w]).sum())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn aopc_and_curves_on_a_hand_computed_case() {
    // Four words; word 3 has score 0, so ferret's only-positive rule never removes it.
    let scores = [3.0, 2.0, 1.0, 0.0];
    let weights = [0.4, 0.3, 0.2, 0.1];
    let plan = metrics::plan(&scores);
    let probs = additive_oracle(&plan, &weights);
    let unchanged: Vec<bool> = probs.iter().map(|&p| p > 0.5).collect();
    let result = metrics::faithfulness(&plan, 1.0, &probs, &unchanged);
    // Valid thresholds: q = 0.3 (k = 1), 0.5 (k = 2), 0.8 (k = 3); q = 1.0 has the same three
    // positive words as q = 0.8 and is skipped.
    assert_eq!(plan.comprehensiveness.len(), 3);
    assert!(close(result.comprehensiveness, (0.4 + 0.7 + 0.9) / 3.0));
    assert!(close(result.sufficiency, (0.6 + 0.3 + 0.1) / 3.0));
    // Words kept per step: 4, 3, 2, 1, then 0 from 80% on.
    let lerf = [1.0, 0.9, 0.7, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0];
    let morf = [1.0, 0.6, 0.3, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0];
    for i in 0..CURVE_STEPS.len() {
        assert!(
            close(result.least_relevant_first[i], lerf[i]),
            "LeRF step {i}"
        );
        assert!(
            close(result.most_relevant_first[i], morf[i]),
            "MoRF step {i}"
        );
    }
    assert!(close(result.least_relevant_first_area, 0.585));
    assert!(close(result.most_relevant_first_area, 0.365));
    assert_eq!(
        result.most_relevant_first_kept,
        vec![1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn a_faithful_ranking_beats_its_reverse_on_every_metric() {
    let weights = [0.05, 0.3, 0.01, 0.2, 0.1, 0.02, 0.15, 0.17];
    let faithful: Vec<f64> = weights.iter().map(|w| w + 1.0).collect();
    let reversed: Vec<f64> = weights.iter().map(|w| 2.0 - w).collect();
    let run = |scores: &[f64]| {
        let plan = metrics::plan(scores);
        let probs = additive_oracle(&plan, &weights);
        let unchanged = vec![true; probs.len()];
        metrics::faithfulness(&plan, 1.0, &probs, &unchanged)
    };
    let good = run(&faithful);
    let bad = run(&reversed);
    assert!(good.comprehensiveness > bad.comprehensiveness);
    assert!(good.sufficiency < bad.sufficiency);
    assert!(good.most_relevant_first_area < bad.most_relevant_first_area);
    assert!(good.least_relevant_first_area > bad.least_relevant_first_area);
}

#[test]
fn no_positive_score_gives_ferrets_defaults_and_subsets_are_distinct() {
    let plan = metrics::plan(&[-1.0, -2.0, 0.0]);
    let probs = vec![0.5; plan.subsets.len()];
    let result = metrics::faithfulness(&plan, 0.9, &probs, &vec![true; probs.len()]);
    assert_eq!(result.comprehensiveness, 0.0);
    assert_eq!(result.sufficiency, 1.0);
    let distinct: HashSet<&Vec<usize>> = plan.subsets.iter().collect();
    assert_eq!(distinct.len(), plan.subsets.len());
    // An empty text still has both curves (every word removed at 100%).
    let empty = metrics::plan(&[]);
    assert_eq!(empty.subsets, vec![Vec::<usize>::new()]);
    assert_eq!(empty.most_relevant_first.len(), CURVE_STEPS.len());
}

#[test]
fn integrated_gradients_is_complete_up_to_the_quadrature_error() {
    let options = ExplainerOptions {
        precision: Precision::F64,
        ..Default::default()
    };
    let explainer = Explainer::load(TINY, options).unwrap();
    let explanation = explainer
        .explain(
            "a gripping, beautifully acted film.",
            &[],
            Target::Predicted,
        )
        .unwrap();
    let scores =
        tokenlens::eval::integrated_gradients::token_scores(&explainer, &explanation, 64).unwrap();
    assert_eq!(scores.len(), explanation.tokens.len());
    assert_eq!((scores[0], scores[scores.len() - 1]), (0.0, 0.0));
    // f(input) − f(baseline) for the target logit, baseline = zero words, [CLS]/[SEP] kept.
    let model = explainer.model();
    let len = explanation.tokens.len();
    let ids: Vec<u32> = explanation.tokens.iter().map(|t| t.id).collect();
    let ids = Tensor::from_vec(ids, (1, len), &model.device).unwrap();
    let embedded = model.embed(&ids).unwrap();
    let keep: Vec<f64> = (0..len)
        .map(|i| if i == 0 || i + 1 == len { 1.0 } else { 0.0 })
        .collect();
    let keep = Tensor::from_vec(keep, (1, len, 1), &model.device).unwrap();
    let baseline = embedded.broadcast_mul(&keep).unwrap();
    let mask = Tensor::ones((1, len), DType::U32, &model.device).unwrap();
    let logit = |e: Tensor| -> f64 {
        let pass = model.forward_embedded(e, &mask, false).unwrap();
        pass.logits.to_vec2::<f64>().unwrap()[0][explanation.target]
    };
    let difference = logit(embedded.clone()) - logit(baseline);
    let total: f64 = scores.iter().sum();
    assert!(
        (total - difference).abs() <= 0.02 * difference.abs().max(1e-3),
        "Σ IG = {total}, f(x) − f(baseline) = {difference}"
    );
}

fn eval(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tokenlens"))
        .arg("eval")
        .args(["--data", DATA, "--model", TINY, "--threads", "1"])
        .args(args)
        .output()
        .expect("tokenlens runs")
}

const METHODS: &str =
    "cplrp,attnlrp,gradient_rollout_iccv21,integrated_gradients,leave_one_out,random";

#[test]
fn cli_json_report_has_every_metric_for_every_method() {
    let out = eval(&["--limit", "6", "--methods", METHODS, "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["examples"], 6);
    assert_eq!(report["labelled"], 6);
    let accuracy = report["accuracy"]["mean"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    let scorers = report["scorers"].as_array().unwrap();
    let names: Vec<&str> = scorers
        .iter()
        .map(|s| s["method"].as_str().unwrap())
        .collect();
    let mut sorted_names = names.clone();
    sorted_names.sort();
    let mut expected: Vec<&str> = METHODS.split(',').collect();
    expected.sort();
    assert_eq!(sorted_names, expected);
    let areas: Vec<f64> = scorers
        .iter()
        .map(|s| s["area_between_curves"]["mean"].as_f64().unwrap())
        .collect();
    assert!(
        areas.windows(2).all(|w| w[0] >= w[1]),
        "methods are ranked best first by LeRF − MoRF: {names:?} {areas:?}"
    );
    for s in scorers {
        assert_eq!(s["examples"], 6, "{}", s["method"]);
        for metric in [
            "comprehensiveness",
            "sufficiency",
            "most_relevant_first_area",
            "least_relevant_first_area",
        ] {
            let e = &s[metric];
            let (mean, low, high) = (
                e["mean"].as_f64().unwrap(),
                e["low"].as_f64().unwrap(),
                e["high"].as_f64().unwrap(),
            );
            assert!(low <= mean && mean <= high, "{} {metric}: {e}", s["method"]);
            assert!(
                (-1.0..=1.0).contains(&mean),
                "{} {metric}: {e}",
                s["method"]
            );
        }
        let curve = s["most_relevant_first_curve"].as_array().unwrap();
        assert_eq!(curve.len(), CURVE_STEPS.len());
    }
    // The same seed gives the same sample and the same numbers.
    let again = eval(&["--limit", "6", "--methods", METHODS, "--format", "json"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    for metric in ["comprehensiveness", "least_relevant_first_curve"] {
        assert_eq!(report["scorers"][5][metric], again["scorers"][5][metric]);
    }
    assert_eq!(
        report["scorers"][0]["comprehensiveness"],
        again["scorers"][0]["comprehensiveness"]
    );
}

#[test]
fn cli_table_and_csv_formats_and_the_svg_plot() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("curves.svg");
    let plot_arg = plot.to_str().unwrap();
    let json_path = dir.path().join("report.json");
    let methods = "cplrp,random";
    let table = eval(&[
        "--limit",
        "3",
        "--methods",
        methods,
        "--plot",
        plot_arg,
        "--json",
        json_path.to_str().unwrap(),
    ]);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("accuracy: "), "{table}");
    assert!(table.contains("| cplrp "), "{table}");
    assert!(table.contains("| random "), "{table}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(saved["examples"], 3);
    assert_eq!(saved["scorers"].as_array().unwrap().len(), 2);

    let svg = std::fs::read_to_string(&plot).unwrap();
    let document = roxmltree::Document::parse(&svg).expect("the plot is well-formed XML");
    assert_eq!(document.root_element().tag_name().name(), "svg");
    let lines: Vec<_> = document
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .collect();
    assert_eq!(lines.len(), 4, "two panels × two methods");
    for line in lines {
        let points = line.attribute("points").unwrap().split(' ').count();
        assert_eq!(points, CURVE_STEPS.len());
    }

    let csv = eval(&["--limit", "3", "--methods", methods, "--format", "csv"]);
    assert!(csv.status.success());
    let csv = String::from_utf8(csv.stdout).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][0], "method");
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));
    let mut csv_methods = vec![rows[1][0], rows[2][0]];
    csv_methods.sort();
    assert_eq!(csv_methods, ["cplrp", "random"]);
    assert_eq!(rows[1][1], "3");
    assert!(rows[1][3].parse::<f64>().is_ok());

    let none = eval(&["--limit", "3", "--methods", "none"]);
    assert!(none.status.success());
    assert!(
        String::from_utf8(none.stdout)
            .unwrap()
            .contains("accuracy: ")
    );
}

#[test]
fn cli_usage_errors_exit_with_status_2() {
    let unknown = eval(&["--limit", "2", "--methods", "shap"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("leave_one_out"));
    let column = eval(&["--limit", "2", "--text-column", "review"]);
    assert_eq!(column.status.code(), Some(2));
}

#[test]
fn cli_data_mistakes_fail_before_any_work_with_status_2_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = |data: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tokenlens"))
            .args(["eval", "--data", data, "--model", TINY, "--threads", "1"])
            .args(["--methods", "none"])
            .args(extra)
            .output()
            .expect("tokenlens runs")
    };
    let write = |name: &str, content: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let failure = |out: &std::process::Output, wanted: &[&str]| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        for w in wanted {
            assert!(stderr.contains(w), "{w:?} not in {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    };

    // A label the model does not have is an error, not an unlabelled row.
    let unknown = write(
        "unknown.tsv",
        b"text\tlabel\ngood film\t1\nbad film\tgreat\n",
    );
    failure(
        &run(&unknown, &[]),
        &["line 3", "\"great\"", "--label-column"],
    );
    // A tab inside a text would shift the columns.
    let shifted = write("shifted.tsv", b"text\tlabel\nGreat\tfun film\t1\n");
    failure(&run(&shifted, &[]), &["line 2", "3 fields", "tab"]);
    let bad_utf8 = write("bad.tsv", b"text\tlabel\nfine\t1\nnot \xff fine\t0\n");
    failure(&run(&bad_utf8, &[]), &["line 3", "UTF-8"]);
    failure(&run(dir.path().to_str().unwrap(), &[]), &["is a directory"]);
    failure(
        &run(&format!("{}/none.tsv", dir.path().display()), &[]),
        &["does not exist"],
    );
    // An unwritable report fails at once, not after the evaluation.
    let unwritable = format!("{}/missing-dir/report.json", dir.path().display());
    failure(
        &run(&unknown, &["--json", &unwritable]),
        &["missing-dir", "does not exist"],
    );
    failure(&run(&unknown, &["--bootstrap", "1"]), &["--bootstrap"]);

    // JSONL (by content here) and a byte-order mark are read, labels by name or index.
    let jsonl = write(
        "data.txt",
        b"{\"text\":\"good film\",\"label\":1}\n{\"text\":\"bad film\",\"label\":\"0\"}\n{\"text\":\"no label\"}\n",
    );
    let out = run(&jsonl, &["--format", "csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert_eq!(rows[0][..3], ["examples", "labelled", "accuracy"]);
    assert_eq!(rows[1][..2], ["3", "2"]);
    assert!(rows[1][2].parse::<f64>().is_ok(), "{csv}");
    // Rows with an empty text are skipped (and said so), not scored as perfect examples.
    let blank = write("blank.tsv", b"text\tlabel\n\t0\n   \t2\ngood film\t1\n");
    let out = run(&blank, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("(1 example, 1 labelled)"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 rows with an empty text skipped"));
    let bom = write("bom.tsv", b"\xEF\xBB\xBFtext\tlabel\ngood film\t1\n");
    let out = run(&bom, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("(1 example, 1 labelled)"));
}
