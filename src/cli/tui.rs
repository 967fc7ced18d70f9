//! `tokenlens tui FILE`: arguments, loading (errors are printed before the UI starts), then the
//! interactive view in [`crate::tui`].

use std::io::IsTerminal;
use std::sync::Arc;

use clap::Args;

use super::ModelArgs;
use crate::error::{Error, Result, exit_code};
use crate::methods::Method;
use crate::render::palette::{Normalization, Palette};
use crate::segment::Unit;
use crate::tui::app::{App, Granularity, TargetChoice, ViewSettings};
use crate::tui::document::Document;
use crate::tui::theme::ColorMode;

#[derive(Args, Debug)]
#[command(
    after_help = concat!(
        "Keys: ? shows them all inside the UI. NO_COLOR=1 draws markers instead of colours.\n\n",
        super::exit_codes_help!()
    )
)]
pub struct TuiArgs {
    /// Text file to explain (UTF-8), or - to read stdin.
    #[arg(value_name = "FILE")]
    pub file: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Relevance method (m switches inside the UI).
    #[arg(long, default_value = crate::cli::score::DEFAULT_METHOD, value_parser = parse_method)]
    pub method: Method,
    /// Class to explain, by label or index (default: each unit's predicted class; c switches).
    #[arg(long, value_name = "LABEL|INDEX")]
    pub target: Option<String>,
    /// What is explained at a time: line, sentence or paragraph.
    #[arg(long, default_value = "sentence", value_parser = parse_unit)]
    pub unit: Unit,
    /// Display normalisation: maxabs, minmax, l1 or none (n cycles).
    #[arg(long, visible_alias = "normalize", default_value = "maxabs", value_parser = parse_normalization)]
    pub normalization: Normalization,
    /// Palette: blue-orange or mono (p cycles).
    #[arg(long, default_value = "blue-orange", value_parser = parse_palette)]
    pub palette: Palette,
}

fn parse_method(s: &str) -> std::result::Result<Method, String> {
    s.parse::<Method>().map_err(|e| e.to_string())
}

fn parse_unit(s: &str) -> std::result::Result<Unit, String> {
    s.parse::<Unit>().map_err(|e| e.to_string())
}

fn parse_normalization(s: &str) -> std::result::Result<Normalization, String> {
    Normalization::from_name(s)
        .ok_or_else(|| format!("unknown normalisation {s:?}; use maxabs, minmax, l1 or none"))
}

fn parse_palette(s: &str) -> std::result::Result<Palette, String> {
    Palette::from_name(s).ok_or_else(|| {
        format!(
            "unknown palette {s:?}; use {}",
            Palette::names().join(" or ")
        )
    })
}

pub fn run(args: TuiArgs) -> Result<i32> {
    // The input first: a missing or binary file is reported before the model loads.
    let document = Document::open(&args.file, args.unit)?;
    if !std::io::stdout().is_terminal() {
        return Err(Error::Usage(
            "tokenlens tui draws on a terminal, but stdout is not one; use `tokenlens score` to write JSON lines"
                .into(),
        ));
    }
    let explainer = Arc::new(args.model.load(4)?);
    let target = match &args.target {
        Some(given) => TargetChoice::Class(explainer.parse_target(given)?),
        None => TargetChoice::Predicted,
    };
    let settings = ViewSettings {
        method: args.method,
        target,
        normalization: args.normalization,
        palette: args.palette,
        granularity: Granularity::Words,
    };
    let app = App::new(
        document,
        explainer.model_name.clone(),
        explainer.labels().to_vec(),
        settings,
        ColorMode::from_env(),
    );
    crate::tui::run(app, explainer)?;
    Ok(exit_code::OK)
}
