//! `tokenlens bench`: median time and peak memory of one explanation per sequence length.
//! Each (precision, length) runs in a child process so that its peak RSS is its own.

use std::process::Command;
use std::time::Instant;

use clap::Args;

use super::ModelArgs;
use crate::error::{Error, Result, exit_code};
use crate::explainer::{Explainer, ExplainerOptions, Target};
use crate::methods::Method;

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sequence lengths in tokens, [CLS] and [SEP] included.
    #[arg(long, value_delimiter = ',', default_value = "16,64,128,256,512")]
    pub lengths: Vec<usize>,
    /// Precisions to measure.
    #[arg(long, value_delimiter = ',', default_value = "f32,f64")]
    pub precisions: Vec<String>,
    #[arg(long, default_value = "chefer_lrp_all_layers", value_parser = |s: &str| s.parse::<Method>().map_err(|e| e.to_string()))]
    pub method: Method,
    /// Texts explained together (1 = one at a time).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Timed repetitions per length (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Also print where the time of one explanation goes, by stage (forward, backward, each
    /// relevance rule, scores). Synchronises the device after every stage and turns CUDA graphs
    /// off, so the times are of the eager path and a little slower than without it.
    #[arg(long)]
    pub profile: bool,
    /// Internal: measure one configuration in this process and print it as JSON.
    #[arg(long, hide = true, num_args = 2, value_names = ["LENGTH", "PRECISION"])]
    pub single: Option<Vec<String>>,
}

/// A text of exactly `tokens` positions ([CLS] and [SEP] included) for this tokenizer.
fn text_of_length(explainer: &Explainer, tokens: usize, variant: usize) -> Result<String> {
    const WORDS: [&str; 12] = [
        "the", "movie", "was", "good", "and", "the", "actors", "were", "not", "bad", "but", "slow",
    ];
    let count = tokens.saturating_sub(2);
    let mut words: Vec<&str> = (0..count)
        .map(|i| WORDS[(i + variant) % WORDS.len()])
        .collect();
    if variant % 2 == 1 && !words.is_empty() {
        // A different text per repetition, so that no cache can answer.
        words[0] = "a";
    }
    let text = words.join(" ");
    let pieces = explainer.encoder().pieces(&text)?.len();
    if pieces != count {
        return Err(Error::Usage(format!(
            "benchmark text has {pieces} pieces, wanted {count}; the tokenizer splits common words"
        )));
    }
    Ok(text)
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn measure_single(args: &BenchArgs, length: usize, precision: &str) -> Result<i32> {
    if args.profile {
        crate::profile::enable();
    }
    let mut model = args.model.clone();
    model.precision = match precision {
        "f64" => super::PrecisionArg::F64,
        _ => super::PrecisionArg::F32,
    };
    let files = model.model_files()?;
    let options = ExplainerOptions {
        precision: model.precision.into(),
        device: crate::device::parse_device(&model.device)?,
        batch_size: args.batch.max(1),
        // `--batch N` means N windows in one pass, however long they are.
        batch_cells: Some(usize::MAX),
        cache_capacity: 0,
        ..Default::default()
    };
    let explainer = Explainer::from_files(&files, options)?;
    let mut times = Vec::with_capacity(args.repeats);
    for repeat in 0..=args.repeats {
        let texts = (0..args.batch.max(1))
            .map(|i| text_of_length(&explainer, length, repeat * args.batch + i))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        if repeat == 1 {
            // The warm-up's stages are not counted.
            crate::profile::take();
        }
        let start = Instant::now();
        explainer.explain_batch(&refs, &[args.method], Target::Predicted)?;
        if repeat > 0 {
            times.push(start.elapsed().as_secs_f64() * 1000.0 / args.batch.max(1) as f64);
        }
    }
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let med = median(&mut times);
    let per_explanation = (args.repeats.max(1) * args.batch.max(1)) as f64;
    let stages: Vec<serde_json::Value> = crate::profile::take()
        .into_iter()
        .map(|t| {
            serde_json::json!({"name": t.name, "ms": t.total_ms / per_explanation,
                                    "calls": t.calls as f64 / per_explanation})
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "length": length, "precision": precision, "median_ms": med, "min_ms": min,
            "peak_rss_mib": peak_rss_mib(), "model": explainer.model_name,
            "graphs": explainer.graph_stats(), "stages": stages,
        })
    );
    Ok(0)
}

/// The profile of one row: ms per explanation by stage, the slowest first. Stages nest (a
/// name without a dot holds the dotted ones of its pass), so the column does not add up.
fn print_stages(stages: &[serde_json::Value]) {
    let mut rows: Vec<(&str, f64, f64)> = stages
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("?"),
                s["ms"].as_f64().unwrap_or(f64::NAN),
                s["calls"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, ms, calls) in rows {
        println!("{:>18}  {name:<24} {ms:>9.2} ms  {calls:>6.0} calls", "");
    }
}

pub fn run(args: BenchArgs) -> Result<i32> {
    if let Some(single) = &args.single {
        let length: usize = single[0]
            .parse()
            .map_err(|_| Error::Usage(format!("bad length {:?}", single[0])))?;
        return measure_single(&args, length, &single[1]);
    }
    for p in &args.precisions {
        if p != "f32" && p != "f64" {
            return Err(Error::Usage(format!(
                "unknown precision {p:?}; use f32 or f64"
            )));
        }
    }
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        path: "current executable".into(),
        source,
    })?;
    let files = args.model.model_files()?;
    // A device that cannot work fails here, with its own message and exit code, before the
    // table starts.
    crate::device::parse_device(&args.model.device)?;
    println!(
        "method {}  model {}  batch {}  repeats {}  threads {}",
        args.method,
        files.name,
        args.batch,
        args.repeats,
        args.model
            .threads
            .map(|t| t.to_string())
            .unwrap_or_else(|| std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_default())
    );
    println!(
        "{:>7}  {:>9}  {:>12}  {:>10}  {:>14}  {:>20}",
        "tokens", "precision", "median ms", "min ms", "peak RSS MiB", "CUDA graphs (c/r/f)"
    );
    for precision in &args.precisions {
        for &length in &args.lengths {
            let mut child = Command::new(&exe);
            child.arg("bench");
            if let Some(model) = &args.model.model {
                child.arg("--model").arg(model);
            }
            child
                .arg("--device")
                .arg(&args.model.device)
                .arg("--method")
                .arg(args.method.name())
                .arg("--batch")
                .arg(args.batch.to_string())
                .arg("--repeats")
                .arg(args.repeats.to_string())
                .arg("--single")
                .arg(length.to_string())
                .arg(precision);
            if let Some(t) = args.model.threads {
                child.arg("--threads").arg(t.to_string());
            }
            if args.profile {
                child.arg("--profile");
            }
            let output = child.output().map_err(|source| Error::Io {
                path: exe.clone(),
                source,
            })?;
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let reason = stderr.trim().trim_start_matches("tokenlens: ");
                eprintln!("tokenlens: benchmark at {length} tokens ({precision}) failed: {reason}");
                return Ok(output.status.code().unwrap_or(exit_code::SOME_FAILED));
            }
            let row: serde_json::Value = serde_json::from_slice(&output.stdout)
                .map_err(|e| Error::Usage(format!("benchmark child printed no result: {e}")))?;
            let graphs = &row["graphs"];
            let count = |field: &str| graphs[field].as_u64().unwrap_or(0);
            println!(
                "{:>7}  {:>9}  {:>12.1}  {:>10.1}  {:>14.0}  {:>20}",
                length,
                precision,
                row["median_ms"].as_f64().unwrap_or(f64::NAN),
                row["min_ms"].as_f64().unwrap_or(f64::NAN),
                row["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
                format!(
                    "{}/{}/{}",
                    count("captured"),
                    count("replayed"),
                    count("failed")
                )
            );
            if let Some(reason) = graphs["last_error"].as_str() {
                eprintln!("  CUDA graph not used at {length} tokens: {reason}");
            }
            if let Some(stages) = row["stages"].as_array().filter(|s| !s.is_empty()) {
                print_stages(stages);
            }
        }
    }
    Ok(0)
}
