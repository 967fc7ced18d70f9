//! `tokenlens eval`: model accuracy and faithfulness of every relevance method on a labelled TSV
//! file (engine: `crate::eval`), as a table, JSON or CSV, and the curves as an SVG plot.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};

use super::ModelArgs;
use crate::dataset::{self, Columns, LabelColumn};
use crate::error::{Error, Result};
use crate::eval::{self, Estimate, EvalOptions, EvalReport, Scorer};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct EvalArgs {
    /// Labelled texts: TSV with a header line (a text column and, optionally, a label column) or
    /// JSONL (.jsonl/.ndjson/.json, or lines starting with `{`: one object per line).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,

    #[command(flatten)]
    pub model: ModelArgs,

    /// Comma-separated methods to evaluate: any `score` method and the references
    /// integrated_gradients, leave_one_out, random; `none` measures only accuracy and confidence
    /// [default: all].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub methods: Vec<String>,
    /// Evaluate N examples drawn at random (seeded by --seed) instead of the whole file.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Seed of the sample, the random baseline and the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Column of the text: a header name or a 1-based number [default: text].
    #[arg(long, value_name = "NAME|N")]
    pub text_column: Option<String>,
    /// Column of the label (class name or index) [default: label, when present; "" for none].
    /// Rows with an empty label count as unlabelled; a label the model does not have is an error.
    #[arg(long, value_name = "NAME|N")]
    pub label_column: Option<String>,
    /// Output format (csv: one row per method; with `--methods none`, one row of accuracy and
    /// confidence).
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: Format,
    /// Also write the perturbation curves as an SVG plot to this file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Also write the full report as JSON to this file (whatever --format prints).
    #[arg(long, value_name = "FILE.json")]
    pub json: Option<PathBuf>,
    /// Interpolation steps of integrated gradients.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=512))]
    pub ig_steps: u16,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 32, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub batch_size: usize,
    /// Bootstrap resamples for the 95% confidence intervals (at least 100: fewer give intervals
    /// that are mostly noise).
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(100..).map(|n| n as usize))]
    pub bootstrap: usize,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

pub fn run(args: EvalArgs) -> Result<i32> {
    let scorers = if args.methods.is_empty() || args.methods.iter().any(|m| m.trim() == "all") {
        Scorer::all()
    } else if args.methods.iter().all(|m| m.trim() == "none") {
        Vec::new()
    } else if args.methods.iter().any(|m| m.trim() == "none") {
        return Err(Error::Usage(
            "--methods none (accuracy only) cannot be combined with methods; give one or the other"
                .into(),
        ));
    } else {
        let mut scorers = Vec::new();
        for name in &args.methods {
            let scorer = Scorer::parse(name)?;
            if !scorers.contains(&scorer) {
                scorers.push(scorer);
            }
        }
        scorers
    };
    for path in [&args.json, &args.plot].into_iter().flatten() {
        check_writable(path)?;
    }
    let columns = Columns {
        text: args.text_column.as_deref(),
        label: LabelColumn::Optional(args.label_column.as_deref()),
    };
    let mut examples = dataset::read(&args.data, columns)?;
    // An empty text has no word to remove or keep: it would count as a perfectly "faithful"
    // example for every method.
    let before = examples.len();
    examples.retain(|e| !e.text.trim().is_empty());
    if examples.len() < before {
        eprintln!(
            "tokenlens eval: {} rows with an empty text skipped",
            before - examples.len()
        );
    }
    if examples.is_empty() {
        return Err(Error::Input {
            path: args.data.clone(),
            message: "has no non-empty texts to evaluate".into(),
        });
    }
    let examples = eval::sample(examples, args.limit, args.seed);
    if examples.is_empty() {
        return Err(Error::Usage(
            "--limit 0 leaves no examples to evaluate; give at least 1".into(),
        ));
    }
    let explainer = args.model.load(args.batch_size)?;
    for example in &examples {
        if let Some(label) = &example.label
            && explainer.parse_target(label).is_err()
        {
            return Err(Error::Input {
                path: args.data.clone(),
                message: format!(
                    "line {}: label {label:?} is not one of the model's labels {} (by name or \
                     class index); fix the row, or choose the label column with --label-column \
                     (\"\" for none)",
                    example.line,
                    explainer
                        .labels()
                        .iter()
                        .enumerate()
                        .map(|(i, l)| format!("{l} ({i})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    let options = EvalOptions {
        scorers,
        seed: args.seed,
        ig_steps: args.ig_steps.into(),
        bootstrap_resamples: args.bootstrap,
        ..Default::default()
    };
    let show_progress = io::stderr().is_terminal();
    let started = Instant::now();
    let mut progress = |done: usize, total: usize| {
        if show_progress {
            eprint!(
                "\rtokenlens eval: {done}/{total} examples, {:.0} s",
                started.elapsed().as_secs_f64()
            );
            if done == total {
                eprintln!();
            }
        }
    };
    let report = eval::evaluate(&explainer, &examples, &options, &mut progress)?;
    let data_name = args.data.display().to_string();
    let json = || -> Result<String> {
        let mut value = serde_json::to_value(&report)
            .map_err(|e| Error::Usage(format!("internal: report as JSON: {e}")))?;
        value["data"] = serde_json::Value::String(data_name.clone());
        let mut text = serde_json::to_string_pretty(&value)
            .map_err(|e| Error::Usage(format!("internal: report as JSON: {e}")))?;
        text.push('\n');
        Ok(text)
    };
    let rendered = match args.format {
        Format::Table => table(&report, &data_name),
        Format::Json => json()?,
        Format::Csv if report.scorers.is_empty() => accuracy_csv(&report),
        Format::Csv => csv(&report),
    };
    if let Some(path) = &args.json {
        std::fs::write(path, json()?).map_err(|source| Error::Output {
            path: path.clone(),
            source,
        })?;
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "{} on {} ({} examples)",
            report.model, data_name, report.examples
        );
        std::fs::write(path, eval::plot::curves_svg(&report, &title)).map_err(|source| {
            Error::Output {
                path: path.clone(),
                source,
            }
        })?;
    }
    let mut stdout = io::stdout().lock();
    // A closed pipe (`| head`) is not an error of the evaluation.
    let _ = stdout.write_all(rendered.as_bytes());
    let _ = stdout.flush();
    Ok(0)
}

/// Fails before the evaluation, not after it, when `path` cannot be written.
fn check_writable(path: &Path) -> Result<()> {
    let problem = if path.is_dir() {
        Some("is a directory; give a file name".to_owned())
    } else {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (!parent.is_dir()).then(|| {
            format!(
                "cannot be written: its directory {} does not exist; create it first",
                parent.display()
            )
        })
    };
    match problem {
        Some(message) => Err(Error::Input {
            path: path.to_owned(),
            message,
        }),
        None => Ok(()),
    }
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

fn with_interval(e: &Estimate) -> String {
    format!("{:.3} [{:.3}, {:.3}]", e.mean, e.low, e.high)
}

/// A plain-text table (also valid Markdown).
pub fn table(report: &EvalReport, data: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "model: {}\ndata: {data} ({}, {} labelled)\n",
        report.model,
        plural(report.examples, "example", "examples"),
        report.labelled
    ));
    if let Some(accuracy) = &report.accuracy {
        out.push_str(&format!("accuracy: {}\n", with_interval(accuracy)));
    }
    out.push_str(&format!(
        "mean confidence: {}\nperturbed texts classified: {}\nwall time: {:.1} s\n\n",
        with_interval(&report.mean_confidence),
        report.perturbed_texts,
        report.wall_seconds
    ));
    if report.scorers.is_empty() {
        return out;
    }
    let header = [
        "method",
        "AOPC compr. ↑",
        "AOPC suff. ↓",
        "MoRF area ↓",
        "LeRF area ↑",
        "LeRF − MoRF ↑",
        "ms/example",
    ];
    let rows: Vec<Vec<String>> = report
        .scorers
        .iter()
        .map(|s| {
            let mut name = s.method.clone();
            if s.skipped > 0 {
                name.push_str(&format!(" ({} skipped)", s.skipped));
            }
            vec![
                name,
                with_interval(&s.comprehensiveness),
                with_interval(&s.sufficiency),
                with_interval(&s.most_relevant_first_area),
                with_interval(&s.least_relevant_first_area),
                with_interval(&s.area_between_curves),
                format!("{:.1}", s.seconds_per_example * 1000.0),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    out.push_str(&line(header.iter().map(|h| h.to_string()).collect()));
    out.push_str(&line(widths.iter().map(|&w| "-".repeat(w)).collect()));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// The model-level numbers as one CSV row (the `--methods none` run).
pub fn accuracy_csv(report: &EvalReport) -> String {
    let (accuracy, low, high) = report
        .accuracy
        .as_ref()
        .map(|a| (a.mean.to_string(), a.low.to_string(), a.high.to_string()))
        .unwrap_or_default();
    let c = &report.mean_confidence;
    format!(
        "examples,labelled,accuracy,accuracy_low,accuracy_high,mean_confidence,mean_confidence_low,mean_confidence_high\n\
         {},{},{accuracy},{low},{high},{},{},{}\n",
        report.examples, report.labelled, c.mean, c.low, c.high
    )
}

/// One row per method, best first; every estimate as mean, low and high columns.
pub fn csv(report: &EvalReport) -> String {
    let metrics = [
        "comprehensiveness",
        "sufficiency",
        "most_relevant_first_area",
        "least_relevant_first_area",
        "area_between_curves",
    ];
    let mut out = String::from("method,examples,skipped");
    for m in metrics {
        out.push_str(&format!(",{m},{m}_low,{m}_high"));
    }
    out.push_str(",seconds_per_example\n");
    for s in &report.scorers {
        out.push_str(&format!("{},{},{}", s.method, s.examples, s.skipped));
        for e in [
            &s.comprehensiveness,
            &s.sufficiency,
            &s.most_relevant_first_area,
            &s.least_relevant_first_area,
            &s.area_between_curves,
        ] {
            out.push_str(&format!(",{},{},{}", e.mean, e.low, e.high));
        }
        out.push_str(&format!(",{}\n", s.seconds_per_example));
    }
    out
}
