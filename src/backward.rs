//! The backward pass of the target logits written out by hand: ∂y/∂P for every layer's
//! attention probabilities and ∂y/∂e at the encoder input. It computes only input gradients
//! (candle's autograd also forms every weight gradient) and keeps no autograd graph, which
//! makes explanations about twice as fast and their memory a fraction at long inputs. It is
//! checked against candle's autograd and against finite differences in the tests.

use candle_core::{D, Tensor};

use crate::bert::{
    BertClassifier, ForwardPass, Gradients, LayerNorm, dense_input_grad, merge_heads,
    merge_query_key_value, one_hot_like, split_heads, zero_padded,
};
use crate::config::Activation;
use crate::error::Result;

/// How far down gradients are needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GradientDepth {
    /// The lowest layer whose ∂y/∂P is needed.
    pub lowest_attention_layer: usize,
    /// Whether ∂y/∂e at the encoder input is needed (this implies all layers).
    pub encoder_input: bool,
}

/// Gradient of `LayerNorm(x)` with respect to `x`, given the output gradient `dy`.
fn layer_norm_backward(norm: &LayerNorm, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    if crate::fused::available(x.device(), &[x, dy, &norm.weight]) {
        return crate::fused::layer_norm_backward(x, dy, &norm.weight, norm.eps);
    }
    composite_layer_norm_backward(norm, x, dy)
}

/// [`layer_norm_backward`] from tensor ops.
pub(crate) fn composite_layer_norm_backward(
    norm: &LayerNorm,
    x: &Tensor,
    dy: &Tensor,
) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let variance = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let inv_std = (variance + norm.eps)?.sqrt()?.recip()?;
    let normed = centered.broadcast_mul(&inv_std)?;
    let d_normed = dy.broadcast_mul(&norm.weight)?;
    let mean_d = d_normed.mean_keepdim(D::Minus1)?;
    let mean_d_normed = (&d_normed * &normed)?.mean_keepdim(D::Minus1)?;
    let inner = d_normed
        .broadcast_sub(&mean_d)?
        .sub(&normed.broadcast_mul(&mean_d_normed)?)?;
    Ok(inner.broadcast_mul(&inv_std)?)
}

/// Derivative of the activation at `x`.
fn activation_derivative(act: Activation, x: &Tensor) -> Result<Tensor> {
    use std::f64::consts::{FRAC_1_SQRT_2, PI};
    Ok(match act {
        Activation::Gelu => {
            // Φ(x) + x φ(x)
            let cdf = ((x.affine(FRAC_1_SQRT_2, 0.0)?.erf()? + 1.0)? * 0.5)?;
            let pdf = (x.sqr()?.affine(-0.5, 0.0)?.exp()? * (1.0 / (2.0 * PI).sqrt()))?;
            (cdf + (x * pdf)?)?
        }
        Activation::GeluTanh => {
            let c = (2.0 / PI).sqrt();
            let inner = (x + (x.powf(3.0)? * 0.044715)?)?.affine(c, 0.0)?;
            let t = inner.tanh()?;
            let d_inner = (x.sqr()?.affine(3.0 * 0.044715, 1.0)?).affine(c, 0.0)?;
            let sech2 = t.sqr()?.affine(-1.0, 1.0)?;
            (((t + 1.0)? * 0.5)? + ((x * 0.5)? * sech2)?.mul(&d_inner)?)?
        }
        Activation::Relu => x.gt(0.0)?.to_dtype(x.dtype())?,
    })
}

/// ∂(Σ_b logits[b, targets[b]]) with respect to the attention probabilities of layers
/// `depth.lowest_attention_layer ..` and, if asked, the encoder input.
pub fn gradients(
    model: &BertClassifier,
    pass: &ForwardPass,
    targets: &[usize],
    depth: GradientDepth,
) -> Result<Gradients> {
    gradients_seeded(model, pass, &one_hot_like(&pass.logits, targets)?, depth)
}

/// [`gradients`] of Σ seed ⊙ logits for a seed [B, C] already on the device (a one-hot row
/// per sample), so that the pass uploads nothing and can be captured in a CUDA graph.
pub fn gradients_seeded(
    model: &BertClassifier,
    pass: &ForwardPass,
    seed: &Tensor,
    depth: GradientDepth,
) -> Result<Gradients> {
    let _device = crate::graphs::shared_device_work();
    let _span = crate::profile::span("backward (all)", &model.device);
    let (_, len, _) = pass.embedded.dims3()?;
    let heads = model.config.num_attention_heads;
    let head_dim = model.config.head_dim();
    let scale = (head_dim as f64).sqrt();
    let d_logits = seed.clone();
    let d_pooled = dense_input_grad(&model.classifier, &d_logits)?;
    let d_pool_pre = (d_pooled * pass.pooled.sqr()?.affine(-1.0, 1.0)?)?;
    let d_cls = dense_input_grad(&model.pooler, &d_pool_pre)?.unsqueeze(1)?;
    let layers = model.layers.len();
    let top_positions = pass.layers[layers - 1].query_positions()?;
    let mut d_hidden = zero_padded(&d_cls, 1, top_positions)?;

    let lowest = if depth.encoder_input {
        0
    } else {
        depth.lowest_attention_layer
    };
    let mut probs_grads = vec![None; layers];
    for index in (lowest..layers).rev() {
        let layer = &model.layers[index];
        let act = &pass.layers[index];
        // The residual rows: N, or 1 where the last layer ran for [CLS] only.
        let residual_input = act.residual_input()?;
        // Output block: h_out = LN(o + h_att), o = W_out · act(W_i · h_att).
        let d_sum = layer_norm_backward(
            &layer.output_norm,
            &(&act.output_dense + &act.attention_normed)?,
            &d_hidden,
        )?;
        let d_act = dense_input_grad(&layer.output, &d_sum)?;
        let pre = &act.intermediate_pre;
        let d_pre = if model.config.hidden_act == Activation::Gelu
            && crate::fused::available(pre.device(), &[&d_act, pre])
        {
            crate::fused::gelu_backward(&d_act, pre)?
        } else {
            (d_act * activation_derivative(model.config.hidden_act, pre)?)?
        };
        let d_normed = (dense_input_grad(&layer.intermediate, &d_pre)? + &d_sum)?;
        // Attention block: h_att = LN(a + h), a = W_o · (P V).
        let d_sum = layer_norm_backward(
            &layer.attention_norm,
            &(&act.attention_dense + &residual_input)?,
            &d_normed,
        )?;
        let d_context = split_heads(&dense_input_grad(&layer.attention_output, &d_sum)?, heads)?;
        let d_probs = d_context.matmul(&act.value.t()?)?;
        probs_grads[index] = Some(d_probs.clone());
        if index == lowest && !depth.encoder_input {
            break;
        }
        let d_value = act.probs.t()?.matmul(&d_context)?;
        // Softmax: dS = P ⊙ (dP − Σ_j dP ⊙ P).
        let d_scores = if crate::fused::available(&model.device, &[&act.probs, &d_probs]) {
            crate::fused::softmax_backward(&act.probs, &d_probs, 1.0 / scale)?
        } else {
            let row = (&d_probs * &act.probs)?.sum_keepdim(D::Minus1)?;
            (act.probs.clone() * d_probs.broadcast_sub(&row)?)?.affine(1.0 / scale, 0.0)?
        };
        let d_query = d_scores.matmul(&act.key)?;
        let d_key = d_scores.t()?.matmul(&act.query)?;
        let d_residual = zero_padded(&d_sum, 1, len)?;
        d_hidden = match &layer.query_key_value {
            Some(merged) => {
                let d_query = zero_padded(&d_query, 2, len)?;
                let d_merged = merge_query_key_value(&d_query, &d_key, &d_value)?;
                (d_residual + dense_input_grad(merged, &d_merged)?)?
            }
            None => {
                let d_query = dense_input_grad(&layer.query, &merge_heads(&d_query)?)?;
                (d_residual
                    + zero_padded(&d_query, 1, len)?
                    + dense_input_grad(&layer.key, &merge_heads(&d_key)?)?
                    + dense_input_grad(&layer.value, &merge_heads(&d_value)?)?)?
            }
        };
    }
    let zeros_like_probs = |i: usize| pass.layers[i].probs.zeros_like();
    Ok(Gradients {
        probs: probs_grads
            .into_iter()
            .enumerate()
            .map(|(i, g)| g.map(Ok).unwrap_or_else(|| zeros_like_probs(i)))
            .collect::<candle_core::Result<_>>()?,
        embedded: if depth.encoder_input {
            d_hidden
        } else {
            pass.embedded.zeros_like()?
        },
    })
}
