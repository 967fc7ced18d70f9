//! `tokenlens eval` engine: accuracy of the model and faithfulness of every relevance method on
//! labelled text, with the perturbed texts of many examples classified in shared batches.
//! Front-end free: the report is plain data (serde), rendered by `cli/eval.rs`.

pub mod integrated_gradients;
pub mod metrics;
pub mod plot;

use std::collections::HashMap;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::explainer::{Explainer, Explanation, Target, argmax};
use crate::methods::Method;

/// A labelled (or unlabelled) text to evaluate, as read by [`crate::dataset::read`].
pub use crate::dataset::Record as Example;
pub use metrics::{Estimate, Faithfulness};

/// What is evaluated: a relevance method of the explainer or one of the references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scorer {
    Method(Method),
    /// Uniform random word scores (seeded): the floor every method must beat.
    Random,
    /// Leave-one-out occlusion: p(x) − p(x without the word).
    LeaveOneOut,
    /// Integrated gradients at the encoder input (zero baseline for the words).
    IntegratedGradients,
}

impl Scorer {
    /// Every method of the explainer, then the references.
    pub fn all() -> Vec<Scorer> {
        let mut all: Vec<Scorer> = Method::ALL.iter().map(|&m| Scorer::Method(m)).collect();
        all.extend([
            Scorer::IntegratedGradients,
            Scorer::LeaveOneOut,
            Scorer::Random,
        ]);
        all
    }

    pub fn name(self) -> &'static str {
        match self {
            Scorer::Method(m) => m.name(),
            Scorer::Random => "random",
            Scorer::LeaveOneOut => "leave_one_out",
            Scorer::IntegratedGradients => "integrated_gradients",
        }
    }

    /// A method name or a reference name (`random`, `leave_one_out`, `integrated_gradients`).
    pub fn parse(given: &str) -> Result<Scorer> {
        let wanted = given.trim().to_ascii_lowercase().replace('-', "_");
        if let Some(scorer) = Scorer::all().into_iter().find(|s| s.name() == wanted) {
            return Ok(scorer);
        }
        Err(Error::UnknownMethod {
            given: given.to_owned(),
            known: Scorer::all().iter().map(|s| s.name()).collect(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub scorers: Vec<Scorer>,
    /// Seeds the random baseline and the bootstrap.
    pub seed: u64,
    /// Interpolation points of integrated gradients.
    pub ig_steps: usize,
    /// Examples whose perturbed texts are classified together.
    pub chunk_size: usize,
    pub bootstrap_resamples: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            scorers: Scorer::all(),
            seed: 0,
            ig_steps: 20,
            chunk_size: 16,
            bootstrap_resamples: 1000,
        }
    }
}

/// Results of one scorer over all examples it could score.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScorerReport {
    pub method: String,
    pub examples: usize,
    /// Examples this scorer could not score (e.g. integrated gradients on a too-long text).
    pub skipped: usize,
    /// ferret AOPC comprehensiveness (↑).
    pub comprehensiveness: Estimate,
    /// ferret AOPC sufficiency (↓).
    pub sufficiency: Estimate,
    /// Area under p(target) when the most relevant words go first (↓).
    pub most_relevant_first_area: Estimate,
    /// Area under p(target) when the least relevant words go first (↑).
    pub least_relevant_first_area: Estimate,
    /// LeRF area − MoRF area (↑; the "ABPC" of AttnLRP).
    pub area_between_curves: Estimate,
    /// Mean p(target) per step of [`metrics::CURVE_STEPS`].
    pub most_relevant_first_curve: Vec<f64>,
    pub least_relevant_first_curve: Vec<f64>,
    /// Share of examples whose prediction is unchanged, per step.
    pub most_relevant_first_kept: Vec<f64>,
    pub least_relevant_first_kept: Vec<f64>,
    /// Mean wall time to explain one example (the method alone, batched like the run).
    pub seconds_per_example: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    pub model: String,
    pub examples: usize,
    /// Examples with a label the model knows.
    pub labelled: usize,
    pub accuracy: Option<Estimate>,
    /// Mean probability of the predicted class.
    pub mean_confidence: Estimate,
    pub seed: u64,
    pub ig_steps: usize,
    pub bootstrap_resamples: usize,
    pub curve_steps: Vec<f64>,
    pub aopc_fractions: Vec<f64>,
    /// Perturbed texts classified (after de-duplication).
    pub perturbed_texts: usize,
    pub wall_seconds: f64,
    pub scorers: Vec<ScorerReport>,
}

/// `examples` drawn at random (seeded) when `limit` is smaller than the data.
pub fn sample(mut examples: Vec<Example>, limit: Option<usize>, seed: u64) -> Vec<Example> {
    if let Some(limit) = limit
        && limit < examples.len()
    {
        examples.shuffle(&mut StdRng::seed_from_u64(seed));
        examples.truncate(limit);
    }
    examples
}

#[derive(Default)]
struct ScorerResults {
    faithfulness: Vec<Faithfulness>,
    seconds: f64,
    skipped: usize,
}

fn word_spans(explanation: &Explanation) -> Vec<(usize, usize)> {
    explanation.words.iter().map(|w| (w.start, w.end)).collect()
}

fn target_probability(explanation: &Explanation) -> f64 {
    explanation.probs[explanation.target]
}

/// Runs the evaluation; `progress(done, total)` is called after every chunk.
pub fn evaluate(
    explainer: &Explainer,
    examples: &[Example],
    options: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport> {
    let started = Instant::now();
    let mut results: Vec<ScorerResults> = options
        .scorers
        .iter()
        .map(|_| ScorerResults::default())
        .collect();
    let mut correct = Vec::new();
    let mut confidence = Vec::with_capacity(examples.len());
    let mut perturbed_texts = 0;
    let chunk_size = options.chunk_size.max(1);
    for (chunk_index, chunk) in examples.chunks(chunk_size).enumerate() {
        let first = chunk_index * chunk_size;
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        let base = explainer.explain_batch(&texts, &[], Target::Predicted)?;
        for (example, explained) in chunk.iter().zip(&base) {
            confidence.push(target_probability(explained));
            if let Some(label) = &example.label {
                let class = explainer.parse_target(label)?;
                correct.push(if class == explained.predicted {
                    1.0
                } else {
                    0.0
                });
            }
        }
        // word scores[scorer][example]; None where the scorer could not score the example.
        let mut scores: Vec<Vec<Option<Vec<f64>>>> = Vec::with_capacity(options.scorers.len());
        for (s, &scorer) in options.scorers.iter().enumerate() {
            let timer = Instant::now();
            let per_example = word_scores(explainer, scorer, &texts, &base, options, first, s)?;
            results[s].seconds += timer.elapsed().as_secs_f64();
            scores.push(per_example);
        }
        // Every perturbed text of the chunk, de-duplicated, classified in shared batches.
        let mut unique: HashMap<String, usize> = HashMap::new();
        let mut plans = Vec::with_capacity(scores.len());
        for per_example in &scores {
            let mut row = Vec::with_capacity(per_example.len());
            for (e, word_scores) in per_example.iter().enumerate() {
                row.push(word_scores.as_ref().map(|ws| {
                    let plan = metrics::plan(ws);
                    let spans = word_spans(&base[e]);
                    let text_ids: Vec<usize> = plan
                        .subsets
                        .iter()
                        .map(|kept| {
                            let text = metrics::kept_text(&base[e].text, &spans, kept);
                            let next = unique.len();
                            *unique.entry(text).or_insert(next)
                        })
                        .collect();
                    (plan, text_ids)
                }));
            }
            plans.push(row);
        }
        let mut ordered: Vec<(&String, &usize)> = unique.iter().collect();
        ordered.sort_by_key(|(_, i)| **i);
        let perturbed: Vec<&str> = ordered.iter().map(|(t, _)| t.as_str()).collect();
        perturbed_texts += perturbed.len();
        let probabilities = explainer.classify_batch(&perturbed)?;
        for (s, row) in plans.iter().enumerate() {
            for (e, planned) in row.iter().enumerate() {
                match planned {
                    Some((plan, text_ids)) => {
                        let target = base[e].target;
                        let probs: Vec<f64> =
                            text_ids.iter().map(|&t| probabilities[t][target]).collect();
                        let unchanged: Vec<bool> = text_ids
                            .iter()
                            .map(|&t| argmax(&probabilities[t]) == base[e].predicted)
                            .collect();
                        results[s].faithfulness.push(metrics::faithfulness(
                            plan,
                            target_probability(&base[e]),
                            &probs,
                            &unchanged,
                        ));
                    }
                    None => results[s].skipped += 1,
                }
            }
        }
        progress((first + chunk.len()).min(examples.len()), examples.len());
    }

    let resamples = options.bootstrap_resamples;
    let estimate =
        |values: &[f64], salt: u64| metrics::bootstrap(values, resamples, options.seed ^ salt);
    let scorers = options
        .scorers
        .iter()
        .zip(&results)
        .map(|(scorer, r)| {
            let field =
                |f: fn(&Faithfulness) -> f64| r.faithfulness.iter().map(f).collect::<Vec<_>>();
            let curve =
                |f: fn(&Faithfulness) -> &Vec<f64>| mean_curve(r.faithfulness.iter().map(f));
            let morf = field(|f| f.most_relevant_first_area);
            let lerf = field(|f| f.least_relevant_first_area);
            let between: Vec<f64> = lerf.iter().zip(&morf).map(|(l, m)| l - m).collect();
            ScorerReport {
                method: scorer.name().to_owned(),
                examples: r.faithfulness.len(),
                skipped: r.skipped,
                comprehensiveness: estimate(&field(|f| f.comprehensiveness), 1),
                sufficiency: estimate(&field(|f| f.sufficiency), 2),
                most_relevant_first_area: estimate(&morf, 3),
                least_relevant_first_area: estimate(&lerf, 4),
                area_between_curves: estimate(&between, 5),
                most_relevant_first_curve: curve(|f| &f.most_relevant_first),
                least_relevant_first_curve: curve(|f| &f.least_relevant_first),
                most_relevant_first_kept: curve(|f| &f.most_relevant_first_kept),
                least_relevant_first_kept: curve(|f| &f.least_relevant_first_kept),
                seconds_per_example: r.seconds / examples.len().max(1) as f64,
            }
        })
        .collect::<Vec<_>>();
    // Best first by the area between the curves, the one number that ranks methods (docs/eval.md);
    // methods that scored nothing (NaN) last.
    let mut scorers = scorers;
    let rank = |s: &ScorerReport| {
        let area = s.area_between_curves.mean;
        if area.is_nan() {
            f64::NEG_INFINITY
        } else {
            area
        }
    };
    scorers.sort_by(|a, b| rank(b).total_cmp(&rank(a)));
    Ok(EvalReport {
        model: explainer.model_name.clone(),
        examples: examples.len(),
        labelled: correct.len(),
        accuracy: (!correct.is_empty()).then(|| estimate(&correct, 6)),
        mean_confidence: estimate(&confidence, 7),
        seed: options.seed,
        ig_steps: options.ig_steps,
        bootstrap_resamples: resamples,
        curve_steps: metrics::CURVE_STEPS.to_vec(),
        aopc_fractions: metrics::AOPC_FRACTIONS.to_vec(),
        perturbed_texts,
        wall_seconds: started.elapsed().as_secs_f64(),
        scorers,
    })
}

fn mean_curve<'a>(curves: impl Iterator<Item = &'a Vec<f64>>) -> Vec<f64> {
    let mut sum = vec![0.0; metrics::CURVE_STEPS.len()];
    let mut count = 0usize;
    for curve in curves {
        for (s, v) in sum.iter_mut().zip(curve) {
            *s += v;
        }
        count += 1;
    }
    sum.iter().map(|s| s / count.max(1) as f64).collect()
}

/// Word scores of one scorer for every text of a chunk (`first` = index of the chunk's first
/// example in the run, `salt` = the scorer's position, both seed the random baseline).
fn word_scores(
    explainer: &Explainer,
    scorer: Scorer,
    texts: &[&str],
    base: &[Explanation],
    options: &EvalOptions,
    first: usize,
    salt: usize,
) -> Result<Vec<Option<Vec<f64>>>> {
    let aggregation = explainer.options().aggregation;
    let to_words = |explanation: &Explanation, tokens: &[f64]| -> Vec<f64> {
        explanation
            .words
            .iter()
            .map(|w| {
                let s: Vec<f64> = w.tokens.iter().map(|&t| tokens[t]).collect();
                aggregation.apply(&s)
            })
            .collect()
    };
    match scorer {
        Scorer::Method(method) => {
            let explained = explainer.explain_batch(texts, &[method], Target::Predicted)?;
            Ok(explained
                .iter()
                .map(|e| e.attribution(method).map(|a| a.word_scores.clone()))
                .collect())
        }
        Scorer::Random => Ok(base
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let seed = options.seed
                    ^ ((first + i) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ salt as u64;
                let mut rng = StdRng::seed_from_u64(seed);
                Some((0..e.words.len()).map(|_| rng.random::<f64>()).collect())
            })
            .collect()),
        Scorer::LeaveOneOut => {
            let mut perturbed = Vec::new();
            for e in base {
                let spans = word_spans(e);
                for left_out in 0..spans.len() {
                    let kept: Vec<usize> = (0..spans.len()).filter(|&w| w != left_out).collect();
                    perturbed.push(metrics::kept_text(&e.text, &spans, &kept));
                }
            }
            let refs: Vec<&str> = perturbed.iter().map(String::as_str).collect();
            let probabilities = explainer.classify_batch(&refs)?;
            let mut at = 0;
            Ok(base
                .iter()
                .map(|e| {
                    let full = target_probability(e);
                    let scores = probabilities[at..at + e.words.len()]
                        .iter()
                        .map(|p| full - p[e.target])
                        .collect();
                    at += e.words.len();
                    Some(scores)
                })
                .collect())
        }
        // Texts longer than one model window are skipped (counted in the report).
        Scorer::IntegratedGradients => base
            .iter()
            .map(|e| {
                if e.windows != 1 {
                    return Ok(None);
                }
                let tokens = integrated_gradients::token_scores(explainer, e, options.ig_steps)?;
                Ok(Some(to_words(e, &tokens)))
            })
            .collect(),
    }
}
