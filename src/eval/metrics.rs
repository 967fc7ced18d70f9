//! Faithfulness metrics on word scores, independent of any model: which words to keep for each
//! perturbation, and what the class probabilities of the perturbed texts add up to.
//!
//! Definitions (`algorithms.md` §4.2 and §4.5), applied to words instead of word-pieces (a
//! removed word takes all its pieces with it; the rebuilt text is re-tokenised and [CLS]/[SEP]
//! are always kept):
//! - ferret AOPC: thresholds q = 0.1 … 1.0, k = ⌊q·n⌋ (skipped when 0), r_q = the k best words
//!   among those with a positive score, a q whose r_q equals the previous one is skipped;
//!   comprehensiveness = mean_q p(x) − p(x \ r_q) (↑, 0 when no q is valid), sufficiency =
//!   mean_q p(x) − p(r_q) (↓, 1 when no q is valid);
//! - ICCV'21 perturbation curves: at step s keep ⌊(1−s)·n⌋ words, either the most relevant
//!   ("least relevant first" removal, LeRF, ↑) or the least relevant ("most relevant first",
//!   MoRF, ↓); the area under each curve is the trapezoid rule over the steps.
//!
//! Ties in the ranking go to the earlier word, so results are deterministic.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Fractions q of the words in the ferret AOPC metrics.
pub const AOPC_FRACTIONS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
/// Fractions of the words removed along the ICCV'21 perturbation curves.
pub const CURVE_STEPS: [f64; 9] = [0.0, 0.25, 0.5, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0];

/// Word indices from the most to the least relevant; NaN ranks last, ties by position.
pub fn ranking(scores: &[f64]) -> Vec<usize> {
    let key = |i: usize| {
        if scores[i].is_nan() {
            f64::NEG_INFINITY
        } else {
            scores[i]
        }
    };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    order
}

/// `count` of `n` items, as ⌊fraction·n⌋ computed so that 0.3·10 is 3, not 2.
fn floor_count(fraction: f64, n: usize) -> usize {
    ((fraction * n as f64) + 1e-9).floor() as usize
}

/// The texts one explanation needs, as sets of kept word indices (sorted, distinct), and which
/// set each metric point uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub subsets: Vec<Vec<usize>>,
    /// Per valid AOPC threshold: the subset with the top words removed.
    pub comprehensiveness: Vec<usize>,
    /// Per valid AOPC threshold: the subset of only the top words.
    pub sufficiency: Vec<usize>,
    /// Per curve step: the subset left after removing the most relevant words first.
    pub most_relevant_first: Vec<usize>,
    /// Per curve step: the subset left after removing the least relevant words first.
    pub least_relevant_first: Vec<usize>,
}

impl Plan {
    fn subset(&mut self, mut kept: Vec<usize>) -> usize {
        kept.sort_unstable();
        match self.subsets.iter().position(|s| *s == kept) {
            Some(i) => i,
            None => {
                self.subsets.push(kept);
                self.subsets.len() - 1
            }
        }
    }
}

/// Which perturbed texts the metrics of the word scores `scores` need.
pub fn plan(scores: &[f64]) -> Plan {
    let n = scores.len();
    let order = ranking(scores);
    let mut plan = Plan {
        subsets: Vec::new(),
        comprehensiveness: Vec::new(),
        sufficiency: Vec::new(),
        most_relevant_first: Vec::new(),
        least_relevant_first: Vec::new(),
    };
    let positive: Vec<usize> = order.iter().copied().filter(|&i| scores[i] > 0.0).collect();
    let mut previous: Option<Vec<usize>> = None;
    for q in AOPC_FRACTIONS {
        let k = floor_count(q, n);
        if k == 0 {
            continue;
        }
        let mut top: Vec<usize> = positive.iter().copied().take(k).collect();
        top.sort_unstable();
        if top.is_empty() || previous.as_ref() == Some(&top) {
            continue;
        }
        let rest: Vec<usize> = (0..n).filter(|i| top.binary_search(i).is_err()).collect();
        let removed = plan.subset(rest);
        let only = plan.subset(top.clone());
        plan.comprehensiveness.push(removed);
        plan.sufficiency.push(only);
        previous = Some(top);
    }
    for step in CURVE_STEPS {
        let keep = floor_count(1.0 - step, n);
        let most_relevant = order[..keep].to_vec();
        let least_relevant = order[n - keep..].to_vec();
        let lerf = plan.subset(most_relevant);
        let morf = plan.subset(least_relevant);
        plan.least_relevant_first.push(lerf);
        plan.most_relevant_first.push(morf);
    }
    plan
}

/// The text with only the words `kept` (sorted indices into `words`, byte spans of `text`):
/// neighbouring kept words keep the original text between them, others are joined by a space.
pub fn kept_text(text: &str, words: &[(usize, usize)], kept: &[usize]) -> String {
    let mut out = String::new();
    let mut previous: Option<usize> = None;
    for &w in kept {
        let (start, end) = words[w];
        match previous {
            Some(p) if p + 1 == w => out.push_str(text.get(words[p].1..start).unwrap_or(" ")),
            Some(_) => out.push(' '),
            None => {}
        }
        out.push_str(text.get(start..end).unwrap_or(""));
        previous = Some(w);
    }
    out
}

/// Area under `values` over `steps` by the trapezoid rule.
pub fn area(steps: &[f64], values: &[f64]) -> f64 {
    steps
        .windows(2)
        .zip(values.windows(2))
        .map(|(s, v)| (s[1] - s[0]) * (v[0] + v[1]) / 2.0)
        .sum()
}

/// What a model did on the perturbed texts of one explanation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Faithfulness {
    pub comprehensiveness: f64,
    pub sufficiency: f64,
    /// p(target) along the steps, most relevant words removed first.
    pub most_relevant_first: Vec<f64>,
    /// p(target) along the steps, least relevant words removed first.
    pub least_relevant_first: Vec<f64>,
    /// Whether the prediction is still the original one, per step (1 or 0).
    pub most_relevant_first_kept: Vec<f64>,
    pub least_relevant_first_kept: Vec<f64>,
    pub most_relevant_first_area: f64,
    pub least_relevant_first_area: f64,
}

/// Metrics from `full` = p(target | whole text) and, per subset of `plan`, p(target) and
/// whether the predicted class is unchanged.
pub fn faithfulness(
    plan: &Plan,
    full: f64,
    subset_probs: &[f64],
    unchanged: &[bool],
) -> Faithfulness {
    let mean_drop = |subsets: &[usize], empty: f64| {
        if subsets.is_empty() {
            empty
        } else {
            subsets.iter().map(|&s| full - subset_probs[s]).sum::<f64>() / subsets.len() as f64
        }
    };
    let along = |subsets: &[usize]| subsets.iter().map(|&s| subset_probs[s]).collect::<Vec<_>>();
    let kept = |subsets: &[usize]| {
        subsets
            .iter()
            .map(|&s| if unchanged[s] { 1.0 } else { 0.0 })
            .collect::<Vec<_>>()
    };
    let morf = along(&plan.most_relevant_first);
    let lerf = along(&plan.least_relevant_first);
    Faithfulness {
        comprehensiveness: mean_drop(&plan.comprehensiveness, 0.0),
        sufficiency: mean_drop(&plan.sufficiency, 1.0),
        most_relevant_first_area: area(&CURVE_STEPS, &morf),
        least_relevant_first_area: area(&CURVE_STEPS, &lerf),
        most_relevant_first: morf,
        least_relevant_first: lerf,
        most_relevant_first_kept: kept(&plan.most_relevant_first),
        least_relevant_first_kept: kept(&plan.least_relevant_first),
    }
}

/// A mean with a 95% percentile-bootstrap confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

/// Mean of `values` and its 95% bootstrap interval from `resamples` resamples (seeded).
pub fn bootstrap(values: &[f64], resamples: usize, seed: u64) -> Estimate {
    let n = values.len();
    if n == 0 {
        return Estimate {
            mean: f64::NAN,
            low: f64::NAN,
            high: f64::NAN,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 || resamples == 0 {
        return Estimate {
            mean,
            low: mean,
            high: mean,
        };
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |p: f64| means[((p * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Estimate {
        mean,
        low: at(0.025),
        high: at(0.975),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_breaks_ties_by_position_and_puts_nan_last() {
        assert_eq!(ranking(&[0.5, f64::NAN, 0.9, 0.5]), vec![2, 0, 3, 1]);
    }

    #[test]
    fn kept_text_keeps_original_gaps_between_neighbours() {
        let text = "not good, really.";
        let words = [(0, 3), (4, 8), (8, 9), (10, 16), (16, 17)];
        assert_eq!(kept_text(text, &words, &[0, 1, 2, 3, 4]), text);
        assert_eq!(kept_text(text, &words, &[0, 3, 4]), "not really.");
        assert_eq!(kept_text(text, &words, &[]), "");
    }

    #[test]
    fn bootstrap_interval_contains_the_mean_and_is_seeded() {
        let values: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let a = bootstrap(&values, 500, 7);
        assert_eq!(a, bootstrap(&values, 500, 7));
        assert!((a.mean - 24.5).abs() < 1e-12);
        assert!(a.low < a.mean && a.mean < a.high, "{a:?}");
        assert!(a.high - a.low < 20.0);
    }
}
