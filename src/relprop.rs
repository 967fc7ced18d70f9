//! Explicit relevance propagation with the rules of the reference implementation
//! (`layers_ours.py` of Chefer, Gur & Wolf 2021): LRP-α1β0 for Linear layers, gradient × input
//! with sum re-normalisation for residual adds, gradient × input halved for both operands of the
//! attention matmuls, identity through LayerNorm, softmax, GELU and tanh.
//!
//! Everything runs on the activations a [`ForwardPass`] kept, as plain tensor algebra (no
//! autograd). Sums that the reference takes over the whole tensor are taken per sample, so a
//! padded batch gives each sample the relevance it would get alone.

use std::collections::HashMap;

use candle_core::{D, Tensor, TensorId};
use candle_nn::Linear;

use crate::bert::{
    BertClassifier, ForwardPass, merge_heads, merge_query_key_value, one_hot_like, split_heads,
    zero_padded,
};
use crate::error::Result;
use crate::fused;

/// How far down the encoder relevance is propagated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Stop once the attention relevance of layer `b` is known (layers b..L−1 are done).
    AttentionOfLayer(usize),
    /// Propagate to the encoder input.
    EncoderInput,
}

/// |W| of a model's linear layers, made once for every explanation of an explainer. The α1β0
/// rule needs |W| of each layer it passes; made in the rule, that is one pass over all the
/// weights per explanation (on a GPU about 0.4 of BERT-base's 24 ms at 512 tokens). Where a
/// layer has no entry, the rule makes |W| itself: the explainer keeps none on the CPU, where the
/// saving was within the noise and the copy costs memory (42 MB for MiniLM, 340 MB for
/// BERT-base).
#[derive(Default)]
pub struct AbsWeights(HashMap<TensorId, Tensor>);

impl AbsWeights {
    /// No stored weights: every rule makes |W| itself.
    pub fn none() -> Self {
        Self::default()
    }

    /// |W| of every linear layer relevance propagation passes in `model`.
    pub fn of_model(model: &BertClassifier) -> Result<Self> {
        let mut layers = vec![&model.pooler, &model.classifier];
        for layer in &model.layers {
            match &layer.query_key_value {
                Some(merged) => layers.push(merged),
                None => layers.extend([&layer.query, &layer.key, &layer.value]),
            }
            layers.extend([&layer.attention_output, &layer.intermediate, &layer.output]);
        }
        let mut stored = HashMap::new();
        for layer in layers {
            stored.insert(layer.weight().id(), layer.weight().abs()?);
        }
        Ok(AbsWeights(stored))
    }

    /// |W| of `layer`: the stored one, or made now.
    fn of(&self, layer: &Linear) -> Result<Tensor> {
        let weight = layer.weight();
        Ok(match self.0.get(&weight.id()) {
            Some(stored) => stored.clone(),
            None => weight.abs()?,
        })
    }
}

/// Output of one propagation pass.
pub struct Relevance {
    /// R_P per layer, [B, H, N, N] (already halved by the matmul rule); `None` above the depth
    /// reached.
    pub attention: Vec<Option<Tensor>>,
    /// Relevance at the encoder input [B, N, D] when propagated that far.
    pub encoder_input: Option<Tensor>,
    /// Σ relevance at the input of each layer that was passed, per sample ([B] each).
    pub layer_input_totals: Vec<Option<Tensor>>,
    /// Σ relevance entering the encoder from the pooler, per sample [B].
    pub last_hidden_total: Tensor,
}

/// `a / (b + 1e-9) · [b ≠ 0]` (an extra 1e-9 where b + 1e-9 is exactly 0), exactly as the
/// reference's `safe_divide`: the stabiliser does not follow the sign of b.
pub fn safe_div(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dims() == b.dims() && fused::available(a.device(), &[a, b]) {
        // One pass (one kernel on a GPU) instead of the nine tensor ops below: this runs on
        // every attention map and about 30 times per layer.
        return fused::safe_divide(a, b);
    }
    let den = b.affine(1.0, 1e-9)?;
    let den = (&den + den.eq(0.0)?.to_dtype(den.dtype())?.affine(1e-9, 0.0)?)?;
    let keep = b.ne(0.0)?.to_dtype(b.dtype())?;
    Ok(a.broadcast_div(&den)?.broadcast_mul(&keep)?)
}

/// Σ over all but the first dimension, [B]. Rows first: a GPU reduces one output per thread
/// block, so one sum over a whole attention map (millions of values) would run on one
/// multiprocessor.
pub fn per_sample_total(x: &Tensor) -> Result<Tensor> {
    let mut x = x.clone();
    while x.rank() > 2 {
        x = x.sum(D::Minus1)?;
    }
    Ok(if x.rank() == 2 { x.sum(1)? } else { x })
}

/// LRP-α1β0 with sign-split inputs and the bias ignored:
/// `z = x⁺W⁺ᵀ + x⁻W⁻ᵀ`, `R_in = x⁺ ⊙ (S W⁺) + x⁻ ⊙ (S W⁻)` with `S = R / z`.
///
/// Evaluated through the identities `x⁺W⁺ᵀ + x⁻W⁻ᵀ = ½(x Wᵀ + |x| |W|ᵀ)` and
/// `x⁺ ⊙ (S W⁺) + x⁻ ⊙ (S W⁻) = ½(x ⊙ (S W) + |x| ⊙ (S |W|))`, which need one elementwise
/// pass over the weights instead of two and four matmuls on 2-D operands (no broadcast copies).
pub fn linear(x: &Tensor, layer: &Linear, abs: &AbsWeights, relevance: &Tensor) -> Result<Tensor> {
    linear_rule(x, layer, abs, None, relevance)
}

/// [`linear`] for a layer whose forward output `x Wᵀ + b` is at hand: `x Wᵀ` is taken from it
/// instead of being recomputed, which saves a quarter of the rule's matmuls.
pub fn linear_from_output(
    x: &Tensor,
    layer: &Linear,
    abs: &AbsWeights,
    output: &Tensor,
    relevance: &Tensor,
) -> Result<Tensor> {
    linear_rule(x, layer, abs, Some(output), relevance)
}

fn linear_rule(
    x: &Tensor,
    layer: &Linear,
    abs: &AbsWeights,
    output: Option<&Tensor>,
    relevance: &Tensor,
) -> Result<Tensor> {
    let _span = crate::profile::span("relprop.linear", x.device());
    let w = layer.weight();
    let (out_dim, in_dim) = w.dims2()?;
    let rows = x.elem_count() / in_dim;
    let x2 = x.reshape((rows, in_dim))?;
    let r2 = relevance.reshape((rows, out_dim))?;
    let w_abs = abs.of(layer)?;
    let x_abs = x2.abs()?;
    let t = x_abs.matmul(&w_abs.t()?)?;
    let fused = fused::available(x.device(), &[&r2, &x2, &t]);
    // S = R / z with z = ½(xWᵀ + |x||W|ᵀ); xWᵀ from the layer's output where it is at hand.
    let s = match (output.map(|y| y.reshape((rows, out_dim))), layer.bias()) {
        // `y − b` inside the ratio's pass: one pass over the output fewer.
        (Some(y), Some(b)) if fused => fused::alpha_beta_ratio_from_output(&r2, &y?, &t, b)?,
        (output, bias) => {
            let xw = match (output, bias) {
                (Some(y), Some(b)) => y?.broadcast_sub(b)?,
                (Some(y), None) => y?,
                (None, _) => x2.matmul(&w.t()?)?,
            };
            if fused {
                fused::alpha_beta_ratio(&r2, &xw, &t)?
            } else {
                safe_div(&r2, &(xw + t)?.affine(0.5, 0.0)?)?
            }
        }
    };
    let r_in = if fused {
        fused::alpha_beta_input(&x2, &s.matmul(w)?, &s.matmul(&w_abs)?)?
    } else {
        ((x2 * s.matmul(w)?)? + (x_abs * s.matmul(&w_abs)?)?)?.affine(0.5, 0.0)?
    };
    Ok(r_in.reshape(x.shape())?)
}

/// Gradient × input split of `a + b` followed by the reference's re-normalisation, which makes
/// the two parts sum to ΣR with shares proportional to their absolute sums. `b` may broadcast.
pub fn add(a: &Tensor, b: &Tensor, relevance: &Tensor) -> Result<(Tensor, Tensor)> {
    let _span = crate::profile::span("relprop.add", a.device());
    if a.dims() == b.dims() && fused::available(a.device(), &[a, b, relevance]) {
        // A residual connection: the split and its sums in one fused pass.
        let (split, sums) = fused::residual_split(a, b, relevance)?;
        let factors = renormalisation(&sums.get(0)?, &sums.get(1)?, &sums.get(2)?)?;
        // Groups in the order of `factors` [2, B]: part, then sample.
        let scaled = fused::scale_groups(&split, &factors)?;
        return Ok((scaled.get(0)?, scaled.get(1)?));
    }
    let total = per_sample_total(relevance)?;
    let z = a.broadcast_add(b)?;
    let s = safe_div(relevance, &z)?;
    let r_a = (a * &s)?;
    let s_b = reduce_to_shape(&s, b.dims())?;
    let r_b = (b * s_b)?;
    let factors = renormalisation(&per_sample_total(&r_a)?, &per_sample_total(&r_b)?, &total)?;
    Ok((
        scaled_per_sample(&r_a, &factors.get(0)?)?,
        scaled_per_sample(&r_b, &factors.get(1)?)?,
    ))
}

/// `x` [B, …] with each sample multiplied by its factor ([B]).
fn scaled_per_sample(x: &Tensor, factors: &Tensor) -> Result<Tensor> {
    let mut shape = vec![1usize; x.rank()];
    shape[0] = x.dim(0)?;
    Ok(x.broadcast_mul(&factors.reshape(shape)?)?)
}

/// The add rule for attention scores plus the broadcast mask ([B, 1, 1, M]), returning the
/// scores' share only: the mask's share is dropped, as in the reference, once it has taken its
/// part in the re-normalisation.
pub fn add_mask(scores: &Tensor, mask: &Tensor, relevance: &Tensor) -> Result<Tensor> {
    if scores.dims() == relevance.dims()
        && fused::available(scores.device(), &[scores, mask, relevance])
    {
        let _span = crate::profile::span("relprop.add", scores.device());
        // One pass over the maps for the split and its sums instead of about seven.
        let (share, sums) = fused::masked_split(scores, mask, relevance)?;
        let factors = renormalisation(&sums.get(0)?, &sums.get(1)?, &sums.get(2)?)?;
        return fused::scale_groups(&share, &factors.get(0)?);
    }
    Ok(add(scores, mask, relevance)?.0)
}

/// The reference's re-normalisation of a two-way split: from the per-sample sums of the parts
/// and of the relevance split ([B] each), the factors [2, B] that give each part a share of
/// the total proportional to its absolute sum (one fused pass where it can run).
fn renormalisation(sum_a: &Tensor, sum_b: &Tensor, total: &Tensor) -> Result<Tensor> {
    if fused::available(sum_a.device(), &[sum_a, sum_b, total]) {
        return fused::renormalisation(sum_a, sum_b, total);
    }
    let abs_a = sum_a.abs()?;
    let abs_b = sum_b.abs()?;
    let abs_total = (&abs_a + &abs_b)?;
    let factor_a = (safe_div(&abs_a, &abs_total)? * total)?;
    let factor_b = (safe_div(&abs_b, &abs_total)? * total)?;
    Ok(Tensor::stack(
        &[safe_div(&factor_a, sum_a)?, safe_div(&factor_b, sum_b)?],
        0,
    )?)
}

/// Sums `x` over the dimensions where `shape` has size 1 (the gradient of a broadcast). The
/// innermost first: on a GPU the first sum runs over the big tensor, with one thread block per
/// output, and the heads dimension (12) would leave most of each block idle.
fn reduce_to_shape(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let mut out = x.clone();
    for (dim, &size) in shape.iter().enumerate().rev() {
        if size == 1 && out.dim(dim)? != 1 {
            out = out.sum_keepdim(dim)?;
        }
    }
    Ok(out)
}

/// Gradient × input of `a @ b`, each operand's share halved (the reference's `/= 2`).
pub fn matmul(a: &Tensor, b: &Tensor, relevance: &Tensor) -> Result<(Tensor, Tensor)> {
    let _span = crate::profile::span("relprop.matmul", a.device());
    let z = a.matmul(b)?;
    let s = safe_div(relevance, &z)?;
    let share = |x: &Tensor, u: Tensor| -> Result<Tensor> {
        if x.dims() == u.dims() && fused::available(x.device(), &[x, &u]) {
            return fused::half_product(x, &u);
        }
        Ok((x * u)?.affine(0.5, 0.0)?)
    };
    Ok((share(a, s.matmul(&b.t()?)?)?, share(b, a.t()?.matmul(&s)?)?))
}

/// Fan-out: `x ⊙ Σ_i R_i / x` (zero where x is zero).
pub fn clone(x: &Tensor, branches: &[&Tensor]) -> Result<Tensor> {
    let _span = crate::profile::span("relprop.clone", x.device());
    let mut sum = safe_div(branches[0], x)?;
    for r in &branches[1..] {
        sum = (sum + safe_div(r, x)?)?;
    }
    Ok((x * sum)?)
}

/// Propagates the one-hot relevance of `targets` (one class per sample) down to `depth`.
pub fn propagate(
    model: &BertClassifier,
    pass: &ForwardPass,
    targets: &[usize],
    depth: Depth,
) -> Result<Relevance> {
    let seed = one_hot_like(&pass.logits, targets)?;
    propagate_seeded(model, &AbsWeights::none(), pass, &seed, depth)
}

/// [`propagate`] from a relevance seed [B, C] already on the device (one-hot per sample), with
/// the model's stored |W| where there are any.
pub fn propagate_seeded(
    model: &BertClassifier,
    abs: &AbsWeights,
    pass: &ForwardPass,
    seed: &Tensor,
    depth: Depth,
) -> Result<Relevance> {
    let _device = crate::graphs::shared_device_work();
    let (_, len, _) = pass.embedded.dims3()?;
    let heads = model.config.num_attention_heads;

    let _span = crate::profile::span("relprop (all)", &model.device);
    let r_pooled = linear_from_output(&pass.pooled, &model.classifier, abs, &pass.logits, seed)?;
    let r_cls = linear(&pass.cls, &model.pooler, abs, &r_pooled)?;
    // IndexSelect of position 0 (gradient × input over the selected row).
    let r_cls = (&pass.cls * safe_div(&r_cls, &pass.cls)?)?.unsqueeze(1)?;
    let layers = model.layers.len();
    let mut r = zero_padded(&r_cls, 1, pass.layers[layers - 1].query_positions()?)?;
    let last_hidden_total = per_sample_total(&r)?;

    let mut attention = vec![None; layers];
    let mut layer_input_totals = vec![None; layers];
    for index in (0..layers).rev() {
        let layer = &model.layers[index];
        let act = &pass.layers[index];
        // The residual rows: N, or 1 where the last layer ran for [CLS] only (the other rows'
        // relevance is zero, see `LastLayer`).
        let residual_input = act.residual_input()?;
        // Output block: LayerNorm (identity), residual add, dense, activation (identity), dense.
        let (r_out, r_residual) = add(&act.output_dense, &act.attention_normed, &r)?;
        let r_act = linear_from_output(
            &act.intermediate_act,
            &layer.output,
            abs,
            &act.output_dense,
            &r_out,
        )?;
        let r_ffn_in = linear_from_output(
            &act.attention_normed,
            &layer.intermediate,
            abs,
            &act.intermediate_pre,
            &r_act,
        )?;
        let r_normed = clone(&act.attention_normed, &[&r_ffn_in, &r_residual])?;
        // Attention block: LayerNorm (identity), residual add, dense.
        let (r_dense, r_skip) = add(&act.attention_dense, &residual_input, &r_normed)?;
        let r_context = linear_from_output(
            &act.context,
            &layer.attention_output,
            abs,
            &act.attention_dense,
            &r_dense,
        )?;
        let r_context = split_heads(&r_context, heads)?;
        let (r_probs, r_value) = matmul(&act.probs, &act.value, &r_context)?;
        attention[index] = Some(r_probs.clone());
        if depth == Depth::AttentionOfLayer(index) {
            return Ok(Relevance {
                attention,
                encoder_input: None,
                layer_input_totals,
                last_hidden_total,
            });
        }
        // Softmax (identity), mask add (the mask's share is dropped), Q·Kᵀ.
        let r_scores = add_mask(&act.scores, &pass.extended_mask, &r_probs)?;
        let key_t = act.key.t()?.contiguous()?;
        let (r_query, r_key_t) = matmul(&act.query, &key_t, &r_scores)?;
        let r_self = match (&layer.query_key_value, &act.query_key_value) {
            (Some(merged), Some(output)) => {
                // The three linear rules as one rule of the merged layer, whose input relevance
                // is their sum; the fan-out (clone) rule's `x ⊙ Σᵢ Rᵢ / (x + ε)` is kept for
                // its stabiliser (the reference's values move by 1e-7 without it).
                let r_query = zero_padded(&r_query, 2, len)?;
                let r_merged = merge_query_key_value(&r_query, &r_key_t.t()?, &r_value)?;
                let r_sum = linear_from_output(&act.input, merged, abs, output, &r_merged)?;
                clone(&act.input, &[&r_sum])?
            }
            _ => {
                let r_query = linear_from_output(
                    &residual_input,
                    &layer.query,
                    abs,
                    &merge_heads(&act.query)?,
                    &merge_heads(&r_query)?,
                )?;
                let r_query = zero_padded(&r_query, 1, len)?;
                let r_key = linear_from_output(
                    &act.input,
                    &layer.key,
                    abs,
                    &merge_heads(&act.key)?,
                    &merge_heads(&r_key_t.t()?)?,
                )?;
                let r_value = linear_from_output(
                    &act.input,
                    &layer.value,
                    abs,
                    &merge_heads(&act.value)?,
                    &merge_heads(&r_value)?,
                )?;
                clone(&act.input, &[&r_query, &r_key, &r_value])?
            }
        };
        r = clone(&act.input, &[&r_self, &zero_padded(&r_skip, 1, len)?])?;
        layer_input_totals[index] = Some(per_sample_total(&r)?);
    }
    Ok(Relevance {
        attention,
        encoder_input: Some(r),
        layer_input_totals,
        last_hidden_total,
    })
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    #[test]
    fn the_fused_mask_add_rule_equals_the_general_add_rule() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut random = |shape: &[usize]| {
            let n: usize = shape.iter().product();
            let values: Vec<f64> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
            Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
        };
        let scores = random(&[2, 3, 6, 6]);
        let relevance = random(&[2, 3, 6, 6]);
        // The second sample has two padded keys.
        let mut mask = vec![0f64; 12];
        mask[10] = -10000.0;
        mask[11] = -10000.0;
        let mask = Tensor::from_vec(mask, (2, 1, 1, 6), &Device::Cpu).unwrap();
        for dtype in [DType::F32, DType::F64] {
            let [scores, mask, relevance] =
                [&scores, &mask, &relevance].map(|t| t.to_dtype(dtype).unwrap());
            let fused = add_mask(&scores, &mask, &relevance).unwrap();
            let general = add(&scores, &mask, &relevance).unwrap().0;
            let difference = crate::fused::max_relative_difference(&fused, &general);
            let tolerance = if dtype == DType::F32 { 1e-5 } else { 1e-13 };
            assert!(
                difference <= tolerance,
                "{dtype:?}: relative difference {difference}"
            );
        }
    }
}
