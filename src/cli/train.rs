//! `tokenlens train`: fine-tune a BERT encoder into a sequence classifier (see `crate::train`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::DType;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::{Error, Result};
use crate::model_dir::ModelFiles;
use crate::train::{self, PoolerChoice, TrainEvent, TrainOptions};

#[derive(Args, Debug)]
#[command(
    about = "Fine-tune a BERT encoder into a text classifier (Hugging Face layout out)",
    long_about = "Fine-tune every weight of a BERT encoder together with a new classification head on \
                  labelled TSV or JSONL: AdamW (weight decay 0.01), linear warm-up over 10% of the steps \
                  then linear decay, dropout 0.1, length-grouped mini-batches, fixed seed. The dev set \
                  is evaluated after every epoch and the best model is kept. The output directory \
                  (config.json, model.safetensors, tokenizer.json) loads with --model and with \
                  Hugging Face transformers.",
    after_help = concat!(
        "Example:\n  tokenlens train --base target/models/all-MiniLM-L6-v2 \\\n    \
         --train fixtures/data/rt-snippets.train.tsv --dev fixtures/data/rt-snippets.dev.tsv \\\n    \
         --labels negative,positive --out my-model\n\n",
        super::exit_codes_help!()
    )
)]
pub struct TrainArgs {
    /// Encoder to fine-tune: a Hugging Face BERT directory (config.json, model.safetensors,
    /// tokenizer.json or vocab.txt) or hub id. A classifier head in it is replaced.
    #[arg(long, value_name = "DIR|ID")]
    pub base: String,
    /// Training data: TSV with a header line, or JSONL (.jsonl/.ndjson: one object per line).
    #[arg(long, value_name = "FILE")]
    pub train: PathBuf,
    /// Development data (same format), evaluated after every epoch; the epoch with the best
    /// accuracy is saved. Without it the last epoch is saved.
    #[arg(long, value_name = "FILE")]
    pub dev: Option<PathBuf>,
    /// Output directory (created; files in it are replaced).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub columns: DataColumns,
    /// Label names in class order, comma-separated (e.g. negative,positive). Default: the
    /// distinct labels of the training data, in numeric or text order.
    #[arg(long, value_delimiter = ',', value_name = "A,B,...")]
    pub labels: Option<Vec<String>>,
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Longest sequence in tokens ([CLS] and [SEP] included); longer texts are truncated.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub max_length: usize,
    /// Seed of the head initialisation, the shuffling and the dropout masks.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Seed of the new head (and pooler) weights alone, when it should differ from --seed. Runs
    /// that share it start from identical weights and differ only in data order and dropout,
    /// which is what `tokenlens soup` averages best.
    #[arg(long, value_name = "SEED")]
    pub init_seed: Option<u64>,
    /// Also keep an exponential moving average of the weights (Polyak averaging) with this decay
    /// per optimiser step, e.g. 0.995. After every epoch it is evaluated on dev beside the
    /// trained weights and the better of the two is the epoch's candidate for saving (without
    /// --dev the average is saved). Training itself is unchanged.
    #[arg(long, value_name = "DECAY")]
    pub weight_average: Option<f64>,
    /// Dropout probability while training.
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f32,
    /// Float type of the saved weights (f16 halves the size; the model is always loaded in f32
    /// or f64).
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: SaveDtype,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// The pooler (the dense layer over [CLS] under the head): auto keeps the base's unless it
    /// was never trained (bias all zeros, as in sentence-transformers encoders) and makes a new
    /// one then; keep always keeps it; new always starts a new one.
    #[arg(long, value_enum, default_value = "auto")]
    pub pooler: PoolerChoice,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar and no per-epoch lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Where the text and the label are in labelled TSV or JSONL (shared by `train` and `soup`).
#[derive(Args, Debug)]
pub struct DataColumns {
    /// Column (TSV header name or JSON field) holding the text.
    #[arg(long, default_value = "text", value_name = "NAME")]
    pub text_column: String,
    /// Column holding the label: a label name or a class index (into --labels for `train`).
    #[arg(long, default_value = "label", value_name = "NAME")]
    pub label_column: String,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum SaveDtype {
    F16,
    F32,
}

impl From<SaveDtype> for DType {
    fn from(dtype: SaveDtype) -> Self {
        match dtype {
            SaveDtype::F16 => DType::F16,
            SaveDtype::F32 => DType::F32,
        }
    }
}

/// Refuses an `--out` that is a file or one of `inputs` (described as `what`), which the write
/// would overwrite.
pub(super) fn check_out_dir(out: &Path, inputs: &[&str], what: &str) -> Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(Error::Usage(format!(
            "--out {} is a file; give a directory (it is created if missing)",
            out.display()
        )));
    }
    let out_path = std::fs::canonicalize(out).ok();
    if out_path.is_some()
        && inputs
            .iter()
            .any(|input| std::fs::canonicalize(input).ok() == out_path)
    {
        return Err(Error::Usage(format!(
            "--out {} is {what}; choose another directory so it is not overwritten",
            out.display()
        )));
    }
    Ok(())
}

/// Creates `--out` (and its parents).
pub(super) fn create_out_dir(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|source| Error::Output {
        path: out.to_path_buf(),
        source,
    })
}

pub(super) fn plural(count: usize, noun: &str) -> String {
    format!("{count} {noun}{}", if count == 1 { "" } else { "s" })
}

fn progress_bar(quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "epoch {prefix} [{bar:30}] {pos}/{len} examples · {msg} · {per_sec} · ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

pub fn run(args: TrainArgs) -> Result<i32> {
    if let Some(threads) = args.threads {
        super::set_compute_threads(threads);
    }
    let base = ModelFiles::resolve(&args.base)?;
    check_out_dir(&args.out, &[&args.base], "the base model's directory")?;
    let (text_column, label_column) = (
        args.columns.text_column.as_str(),
        args.columns.label_column.as_str(),
    );
    let train_rows = train::read_rows(&args.train, text_column, label_column)?;
    let labels = train::label_names(args.labels.as_deref(), &train_rows)?;
    let train_examples = train::examples(train_rows, &labels, &args.train)?;
    let dev_examples = match &args.dev {
        Some(path) => Some(train::examples(
            train::read_rows(path, text_column, label_column)?,
            &labels,
            path,
        )?),
        None => None,
    };
    // Made now, so that an unusable --out fails before the training, not after it.
    create_out_dir(&args.out)?;
    let options = TrainOptions {
        epochs: args.epochs,
        learning_rate: args.lr,
        batch_size: args.batch_size,
        max_length: args.max_length,
        seed: args.seed,
        init_seed: args.init_seed,
        dropout: args.dropout,
        weight_average_decay: args.weight_average,
        save_dtype: args.dtype.into(),
        device: crate::device::parse_device(&args.device)?,
        pooler: args.pooler,
        ..TrainOptions::default()
    };

    let bar = progress_bar(args.quiet);
    let say = |line: String| {
        if !args.quiet {
            bar.suspend(|| eprintln!("{line}"));
        }
    };
    let epochs = args.epochs;
    // Without a terminal (a log file, CI) the bar is hidden: a line every LOG_EVERY steps instead.
    const LOG_EVERY: usize = 25;
    let log_lines = !args.quiet && bar.is_hidden();
    let mut all_steps = 0;
    let mut recent = (0f64, 0usize, std::time::Instant::now());
    let mut on_event = |event: &TrainEvent| match event {
        TrainEvent::Started {
            train_examples,
            dev_examples,
            total_steps,
            parameters,
            pooler,
            ..
        } => {
            all_steps = *total_steps;
            say(format!(
                "training {} ({:.1}M parameters) on {}, {dev_examples} dev, labels {}: {}, {}",
                base.name,
                *parameters as f64 / 1e6,
                plural(*train_examples, "example"),
                labels.join(", "),
                plural(epochs, "epoch"),
                plural(*total_steps, "step")
            ));
            say(format!(
                "pooler: {}; classifier head: new",
                pooler.describe()
            ));
        }
        TrainEvent::Step {
            epoch,
            step,
            loss,
            examples,
            learning_rate,
        } => {
            recent.0 += loss;
            recent.1 += examples;
            if log_lines && step % LOG_EVERY == 0 {
                let seconds = recent.2.elapsed().as_secs_f64();
                say(format!(
                    "epoch {epoch}/{epochs} step {step}/{all_steps}: loss {:.4} (mean of {LOG_EVERY} steps), \
                     lr {learning_rate:.2e}, {:.1} examples/s",
                    recent.0 / LOG_EVERY as f64,
                    recent.1 as f64 / seconds.max(1e-9)
                ));
                recent = (0.0, 0, std::time::Instant::now());
            }
            if bar.prefix() != format!("{epoch}/{epochs}") {
                bar.set_prefix(format!("{epoch}/{epochs}"));
                bar.set_length(train_examples.len() as u64);
                bar.reset();
            }
            bar.set_message(format!("loss {loss:.4}"));
            bar.inc(*examples as u64);
        }
        TrainEvent::Evaluating { examples, .. } => {
            bar.set_message(format!("evaluating {examples} dev examples"));
        }
        TrainEvent::EpochDone(report) => {
            let dev = report
                .dev_accuracy
                .map(|a| format!(", dev accuracy {:.2}%", a * 100.0))
                .unwrap_or_default();
            let average = report
                .average_dev_accuracy
                .map(|a| format!(", weight average {:.2}%", a * 100.0))
                .unwrap_or_default();
            let saved = match (report.saved, report.saved_average) {
                (true, true) => " (weight average saved)",
                (true, false) => " (saved)",
                (false, _) => "",
            };
            say(format!(
                "epoch {}/{epochs}: mean loss {:.4}{dev}{average}{saved}, {:.0} s, {:.1} examples/s",
                report.epoch, report.mean_loss, report.train_seconds, report.examples_per_second
            ));
        }
    };
    let report = train::train(
        &base,
        &labels,
        &train_examples,
        dev_examples.as_deref(),
        &args.out,
        &options,
        &mut on_event,
    )?;
    bar.finish_and_clear();
    if !args.quiet {
        let dev = report
            .best_dev_accuracy
            .map(|a| format!(", dev accuracy {:.2}%", a * 100.0))
            .unwrap_or_default();
        eprintln!(
            "saved {} (epoch {}{}{dev}); trained in {:.0} s",
            report.out.display(),
            report.best_epoch,
            if report.best_is_average {
                ", weight average"
            } else {
                ""
            },
            report.seconds
        );
    }
    Ok(crate::error::exit_code::OK)
}
