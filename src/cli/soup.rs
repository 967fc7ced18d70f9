//! `tokenlens soup`: average fine-tunes of one base into one model (see `crate::soup`).

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::soup::{self, SoupEvent, SoupOptions, SoupRecipe};
use crate::train;

use super::train::{DataColumns, SaveDtype, check_out_dir, create_out_dir, plural};

#[derive(Args, Debug)]
#[command(
    about = "Average several fine-tunes of one base into one model (a model soup)",
    long_about = "Average the weights of several fine-tunes of the same base into one classifier \
                  (Wortsman et al., ICML 2022, \"Model soups\"). The greedy recipe ranks the models \
                  by dev accuracy, starts from the best and adds each next one only if dev accuracy \
                  does not fall, so the soup is never worse on dev than the best model. It works when \
                  the models start from the same weights: train them with the same --init-seed and \
                  different --seed. The output loads with --model and with Hugging Face transformers.",
    after_help = concat!(
        "Example:\n  for s in 1 2 3; do tokenlens train --base BASE --train train.tsv --dev dev.tsv \\\n      \
         --init-seed 0 --seed $s --out runs/$s; done\n  \
         tokenlens soup runs/1 runs/2 runs/3 --dev dev.tsv --out soup\n\n",
        super::exit_codes_help!()
    )
)]
pub struct SoupArgs {
    /// The ingredients: model directories or hub ids, fine-tunes of the same base with the same
    /// labels and tokenizer.
    #[arg(value_name = "MODEL", required = true, num_args = 2..)]
    pub models: Vec<String>,
    /// Development data (TSV with a header, or JSONL) that ranks the models and decides which
    /// join the greedy soup.
    #[arg(long, value_name = "FILE")]
    pub dev: Option<PathBuf>,
    /// greedy (needs --dev) or uniform (every model).
    #[arg(long, value_enum, default_value = "greedy")]
    pub recipe: SoupRecipe,
    /// Output directory (created; files in it are replaced).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub columns: DataColumns,
    /// Longest sequence in tokens for the dev evaluation; longer texts are truncated.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub max_length: usize,
    /// Float type of the saved weights.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: SaveDtype,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No per-model lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

fn percent(accuracy: Option<f64>) -> String {
    accuracy.map_or_else(|| "-".into(), |a| format!("{:.2}%", a * 100.0))
}

pub fn run(args: SoupArgs) -> Result<i32> {
    if let Some(threads) = args.threads {
        super::set_compute_threads(threads);
    }
    let models: Vec<&str> = args.models.iter().map(String::as_str).collect();
    check_out_dir(&args.out, &models, "one of the models")?;
    let device = crate::device::parse_device(&args.device)?;
    let ingredients = soup::load_ingredients(&args.models, &device)?;
    let dev = match &args.dev {
        Some(path) => {
            let rows =
                train::read_rows(path, &args.columns.text_column, &args.columns.label_column)?;
            Some(train::examples(rows, &ingredients[0].config.labels, path)?)
        }
        None => None,
    };
    create_out_dir(&args.out)?;
    let options = SoupOptions {
        recipe: args.recipe,
        max_length: args.max_length,
        save_dtype: args.dtype.into(),
        device,
    };
    let quiet = args.quiet;
    let mut on_event = |event: SoupEvent| {
        if quiet {
            return;
        }
        match event {
            SoupEvent::Scored(report) => {
                eprintln!(
                    "{}: dev accuracy {}",
                    report.name,
                    percent(report.dev_accuracy)
                );
            }
            SoupEvent::Tried(report) => eprintln!(
                "  + {}: soup dev accuracy {} ({})",
                report.name,
                percent(report.soup_dev_accuracy),
                if report.kept { "kept" } else { "left out" }
            ),
        }
    };
    let report = soup::soup(
        &ingredients,
        dev.as_deref(),
        &args.out,
        &options,
        &mut on_event,
    )?;
    if !quiet {
        let kept: Vec<&str> = report
            .ingredients
            .iter()
            .filter(|i| i.kept)
            .map(|i| i.name.as_str())
            .collect();
        eprintln!(
            "saved {}: the mean of {} ({}), dev accuracy {}",
            report.out.display(),
            plural(kept.len(), "model"),
            kept.join(", "),
            percent(report.dev_accuracy)
        );
    }
    Ok(crate::error::exit_code::OK)
}
