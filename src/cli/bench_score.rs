//! `tokenlens bench-score`: sentences per second of the `score` pipeline (explain, build the
//! record, serialise it as JSONL) on a TSV of texts, one text per call versus batched.
//! Each mode loads its own explainer so the explanation cache cannot serve the second run.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::ModelArgs;
use super::score::{self, DEFAULT_METHOD, Item, Scorer};
use crate::dataset::{self, Columns, LabelColumn};
use crate::error::{Error, Result, exit_code};
use crate::explainer::Target;
use crate::methods::Method;
use crate::render::Normalization;
use crate::render::json::JsonLinesWriter;
use crate::render::scored::{Display, Origin, RecordWriter};
use crate::text::Aggregation;

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct BenchScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Texts to score: TSV with a header row, or JSONL [default: the 1,503 Rotten Tomatoes test
    /// snippets built into tokenlens].
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Column (or JSON field) of --input holding the texts.
    #[arg(long, default_value = "text", value_name = "NAME")]
    pub column: String,
    /// Use only the first N texts.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Relevance method.
    #[arg(long, default_value = DEFAULT_METHOD, value_parser = parse_method)]
    pub method: Method,
    /// Batch size of the batched run [default: as `score`].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
}

fn parse_method(s: &str) -> std::result::Result<Method, String> {
    s.parse::<Method>().map_err(|e| e.to_string())
}

/// The default texts, so that the benchmark runs from any directory after `cargo install`.
const BUNDLED_TEXTS: &str = include_str!("../../fixtures/data/rt-snippets.test.tsv");
const BUNDLED_NAME: &str = "the bundled Rotten Tomatoes test snippets";

/// The non-blank texts to score and where they came from.
fn texts(args: &BenchScoreArgs) -> Result<(Vec<String>, String)> {
    let columns = Columns {
        text: Some(&args.column),
        label: LabelColumn::None,
    };
    let (records, source) = match &args.input {
        Some(path) => (dataset::read(path, columns)?, path.display().to_string()),
        None => (
            dataset::parse(Path::new(BUNDLED_NAME), BUNDLED_TEXTS.as_bytes(), columns)?,
            BUNDLED_NAME.to_owned(),
        ),
    };
    let texts = records
        .into_iter()
        .map(|record| record.text)
        .filter(|text| !text.trim().is_empty())
        .collect();
    Ok((texts, source))
}

struct Measurement {
    mode: &'static str,
    batch_size: usize,
    seconds: f64,
}

fn measure(
    args: &BenchScoreArgs,
    texts: &[String],
    mode: &'static str,
    batch_size: usize,
) -> Result<Measurement> {
    let explainer = args.model.load(batch_size)?;
    let display = Display {
        scale: score::scale_for(args.method, false, Normalization::MaxAbs),
        normalization: Normalization::MaxAbs,
        top_k: None,
        method: args.method.name(),
        for_meaning: "for the explained class".into(),
        against_meaning: "against the explained class".into(),
    };
    let scorer = Scorer {
        explainer: &explainer,
        method: args.method,
        target: Target::Predicted,
        contrast: None,
        aggregation: Aggregation::Sum,
        display: display.clone(),
        with_tokens: false,
    };
    let mut writer = JsonLinesWriter { display };
    let mut sink = io::sink();
    let items = |chunk: &[String]| -> Vec<Item> {
        chunk
            .iter()
            .enumerate()
            .map(|(i, text)| Item::Text {
                origin: Origin {
                    source: "-".into(),
                    line: i + 1,
                    ..Origin::default()
                },
                text: text.clone(),
            })
            .collect()
    };
    // Lazy initialisation (thread pools, allocations) is not what is being measured; the
    // warm-up text is not in the data, so the cache cannot answer a measured text.
    scorer.score(items(&["tokenlens warm-up run.".to_string()]));
    let started = Instant::now();
    // The same pooling as `score`: the engine sorts each pool by length into batches.
    for chunk in texts.chunks(batch_size * score::BATCHES_PER_POOL) {
        for record in scorer.score(items(chunk)) {
            writer
                .record(&mut sink, &record)
                .map_err(|e| Error::Usage(format!("serialising a record failed: {e}")))?;
        }
    }
    Ok(Measurement {
        mode,
        batch_size,
        seconds: started.elapsed().as_secs_f64(),
    })
}

pub fn run(args: BenchScoreArgs) -> Result<i32> {
    let (mut texts, source) = texts(&args)?;
    if let Some(limit) = args.limit {
        texts.truncate(limit);
    }
    if texts.is_empty() {
        return Err(Error::Usage(format!(
            "{source} has no texts in column {:?}",
            args.column
        )));
    }
    let batch_size = args
        .batch_size
        .unwrap_or_else(|| score::default_batch_size(&args.model.device))
        .max(1);
    let threads = args.model.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let one_at_a_time = measure(&args, &texts, "one at a time", 1)?;
    let batched = measure(&args, &texts, "batched", batch_size)?;

    let model = args.model.model_files()?.name;
    let mut out = io::stdout().lock();
    let n = texts.len() as f64;
    let table = [&one_at_a_time, &batched]
        .iter()
        .map(|m| {
            format!(
                "{:<14} {:>10} {:>9.2} {:>13.1}\n",
                m.mode,
                m.batch_size,
                m.seconds,
                n / m.seconds
            )
        })
        .collect::<String>();
    let written = write!(
        out,
        "tokenlens bench-score: {} texts from {}\n\
         model {model} · method {} · precision {} · device {} · {threads} threads\n\n\
         {:<14} {:>10} {:>9} {:>13}\n{table}speed-up of batching: {:.2}x\n",
        texts.len(),
        source,
        args.method.name(),
        format!("{:?}", args.model.precision).to_lowercase(),
        args.model.device,
        "mode",
        "batch size",
        "seconds",
        "sentences/s",
        one_at_a_time.seconds / batched.seconds,
    );
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            eprintln!("tokenlens: could not write the output: {e}");
            Ok(exit_code::SOME_FAILED)
        }
        _ => Ok(exit_code::OK),
    }
}
