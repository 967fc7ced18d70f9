//! Integrated gradients (Sundararajan et al. 2017) at the encoder input, all interpolation steps
//! of one text in one batched forward/backward pass.

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::explainer::{Explainer, Explanation};

/// Token scores [CLS … SEP] of integrated gradients for the explanation's target class.
///
/// The baseline is the zero vector at the encoder input for every word-piece, with [CLS] and
/// [SEP] left as they are (so only the words are attributed); the path integral is the midpoint
/// rule with `steps` points. Texts longer than one model window are refused.
pub fn token_scores(
    explainer: &Explainer,
    explanation: &Explanation,
    steps: usize,
) -> Result<Vec<f64>> {
    if explanation.windows != 1 {
        return Err(Error::Usage(format!(
            "integrated gradients needs a text that fits one model window ({} windows)",
            explanation.windows
        )));
    }
    let model = explainer.model();
    let device = &model.device;
    let steps = steps.max(1);
    let len = explanation.tokens.len();
    let ids: Vec<u32> = explanation.tokens.iter().map(|t| t.id).collect();
    let ids = Tensor::from_vec(ids, (1, len), device)?;
    let embedded = model.embed(&ids)?;
    let keep: Vec<f64> = (0..len)
        .map(|i| if i == 0 || i + 1 == len { 1.0 } else { 0.0 })
        .collect();
    let keep = Tensor::from_vec(keep, (1, len, 1), device)?.to_dtype(model.dtype)?;
    let baseline = embedded.broadcast_mul(&keep)?;
    let difference = (&embedded - &baseline)?;
    let alphas: Vec<f64> = (0..steps)
        .map(|k| (k as f64 + 0.5) / steps as f64)
        .collect();
    let alphas = Tensor::from_vec(alphas, (steps, 1, 1), device)?.to_dtype(model.dtype)?;
    let path = baseline.broadcast_add(&alphas.broadcast_mul(&difference)?)?;
    let mask = Tensor::ones((steps, len), DType::U32, device)?;
    let pass = model.forward_embedded(path, &mask, true)?;
    let gradients = pass.gradients(&vec![explanation.target; steps])?;
    let mean_gradient = gradients.embedded.mean_keepdim(0)?;
    Ok((difference * mean_gradient)?
        .sum(2)?
        .squeeze(0)?
        .to_dtype(DType::F64)?
        .to_vec1()?)
}
