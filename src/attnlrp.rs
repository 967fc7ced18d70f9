//! AttnLRP (Achtibat et al. 2024) and CP-LRP (Ali et al. 2022) in their efficient form: gradient ×
//! input through a *patched* forward pass whose values equal the model's but whose gradients
//! realise the LRP rules (docs: `algorithms.md` §6–7).
//!
//! Patches (forward values unchanged, only the backward altered by detach tricks):
//! - LayerNorm: the standard deviation σ is a constant (`(x − mean)/stopgrad(σ)·γ + β`), so the
//!   gradient realises the ε-rule on the centering;
//! - GELU and the pooler's tanh: identity rule, the backward multiplies by f(x)/x instead of f′(x);
//! - AttnLRP: the gradient is halved at the outputs of the two bilinear products Q·Kᵀ and P·V
//!   (uniform rule: each operand gets half the relevance), softmax is left as it is (its gradient
//!   × input is the AttnLRP softmax rule);
//! - CP-LRP: the attention probabilities P are constants (detached), so all relevance flows
//!   through V and nothing through softmax, Q or K; no halving.
//!
//! Relevance is read out at the encoder input e (the embedding LayerNorm output), summed over the
//! hidden units: R_token = Σ_D e ⊙ ∂y_c/∂e, starting from R = y_c (the target logit).

use candle_core::{D, DType, Module, Tensor, Var};

use crate::bert::{
    BertClassifier, EncoderLayer, ForwardPass, LastLayer, LayerNorm, leading_positions, split_heads,
};
use crate::config::Activation;
use crate::error::Result;

/// Which rule set the patched forward pass realises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    AttnLrp,
    CpLrp,
}

/// Below this |x| the identity-rule ratio f(x)/x is replaced by its limit at 0.
const RATIO_GUARD: f64 = 1e-6;

/// `t` in the forward pass, `t/2`-gradient in the backward (0.5t + 0.5t is exact in binary FP).
pub fn halve_gradient(t: &Tensor) -> Result<Tensor> {
    let half = t.affine(0.5, 0.0)?;
    Ok((&half + half.detach())?)
}

/// Forward value `f(x)` (given as `fx`), backward multiplies by `f(x)/x` (the identity rule);
/// `limit` is f(x)/x at x → 0.
pub fn identity_rule(x: &Tensor, fx: &Tensor, limit: f64) -> Result<Tensor> {
    let large = x.abs()?.ge(RATIO_GUARD)?;
    // Dividing by a guarded x keeps NaN/inf out of the branch that `where_cond` discards.
    let safe_x = large.where_cond(x, &x.ones_like()?)?;
    let ratio = large
        .where_cond(&(fx / &safe_x)?, &x.ones_like()?.affine(limit, 0.0)?)?
        .detach();
    let scaled = (x * &ratio)?;
    Ok((fx.detach() + (&scaled - scaled.detach())?)?)
}

/// LayerNorm with the standard deviation treated as a constant.
pub fn layer_norm_detached_std(norm: &LayerNorm, x: &Tensor) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let std = (centered.sqr()?.mean_keepdim(D::Minus1)? + norm.eps)?
        .sqrt()?
        .detach();
    Ok(centered
        .broadcast_div(&std)?
        .broadcast_mul(&norm.weight)?
        .broadcast_add(&norm.bias)?)
}

fn activation_identity(model: &BertClassifier, x: &Tensor) -> Result<Tensor> {
    let fx = match model.config.hidden_act {
        Activation::Gelu => {
            let erf = x
                .detach()
                .affine(std::f64::consts::FRAC_1_SQRT_2, 0.0)?
                .erf()?;
            ((x.detach() * 0.5)? * (erf + 1.0)?)?
        }
        Activation::GeluTanh => {
            let x = x.detach();
            let inner = (&x + (x.powf(3.0)? * 0.044715)?)?
                .affine((2.0 / std::f64::consts::PI).sqrt(), 0.0)?;
            ((&x * 0.5)? * (inner.tanh()? + 1.0)?)?
        }
        // ReLU(x)/x is 0 or 1: the identity rule coincides with the plain gradient.
        Activation::Relu => return Ok(x.relu()?),
    };
    // GELU(x)/x → 1/2 as x → 0.
    identity_rule(x, &fx, 0.5)
}

/// Per softmax, the masked scores entering it and the probabilities leaving it (with zero
/// variables added so that a backward pass yields their gradients); for conservation checks.
pub struct SoftmaxProbe {
    pub scores: Tensor,
    pub scores_probe: Var,
    pub probs: Tensor,
    pub probs_probe: Var,
}

/// The patched forward pass from an encoder input that requires gradients.
pub struct PatchedPass {
    pub logits: Tensor,
    pub softmax_probes: Vec<SoftmaxProbe>,
}

/// The attention block (self-attention, dense, residual LayerNorm) for the first `positions`
/// query positions of `hidden` (all of them, or [CLS] alone in a last layer, see [`LastLayer`]).
fn attention_block(
    model: &BertClassifier,
    layer: &EncoderLayer,
    hidden: &Tensor,
    positions: usize,
    extended_mask: &Tensor,
    rules: Rules,
    probes: Option<&mut Vec<SoftmaxProbe>>,
) -> Result<Tensor> {
    let (batch, _, d) = hidden.dims3()?;
    let heads = model.config.num_attention_heads;
    let head_dim = model.config.head_dim();
    let residual = leading_positions(hidden, positions)?;
    let value = split_heads(&layer.value.forward(hidden)?, heads)?;
    let probs = match rules {
        Rules::CpLrp => {
            // P is a constant: no relevance through softmax, Q or K.
            let query = split_heads(&layer.query.forward(&residual.detach())?, heads)?;
            let key = split_heads(&layer.key.forward(&hidden.detach())?, heads)?;
            let scores = (query.matmul(&key.t()?.contiguous()?)? / (head_dim as f64).sqrt())?;
            let masked = scores.broadcast_add(extended_mask)?;
            candle_nn::ops::softmax(&masked, D::Minus1)?.detach()
        }
        Rules::AttnLrp => {
            let query = split_heads(&layer.query.forward(&residual)?, heads)?;
            let key = split_heads(&layer.key.forward(hidden)?, heads)?;
            let raw = halve_gradient(&query.matmul(&key.t()?.contiguous()?)?)?;
            let scores = (raw / (head_dim as f64).sqrt())?;
            let mut masked = scores.broadcast_add(extended_mask)?;
            let mut probed = None;
            if probes.is_some() {
                let scores_probe = Var::zeros(masked.shape(), masked.dtype(), masked.device())?;
                let entering = masked.clone();
                masked = (&masked + scores_probe.as_tensor())?;
                probed = Some((entering, scores_probe));
            }
            let mut probs = candle_nn::ops::softmax(&masked, D::Minus1)?;
            if let (Some(list), Some((scores, scores_probe))) = (probes, probed) {
                let probs_probe = Var::zeros(probs.shape(), probs.dtype(), probs.device())?;
                let leaving = probs.clone();
                probs = (&probs + probs_probe.as_tensor())?;
                list.push(SoftmaxProbe {
                    scores,
                    scores_probe,
                    probs: leaving,
                    probs_probe,
                });
            }
            probs
        }
    };
    let mut context = probs.matmul(&value)?;
    if rules == Rules::AttnLrp {
        context = halve_gradient(&context)?;
    }
    let context = context
        .transpose(1, 2)?
        .contiguous()?
        .reshape((batch, positions, d))?;
    let attention_dense = layer.attention_output.forward(&context)?;
    layer_norm_detached_std(&layer.attention_norm, &(&attention_dense + &residual)?)
}

/// The position-wise feed-forward block of one layer (after its attention block), patched.
pub fn feed_forward_block(
    model: &BertClassifier,
    layer: &EncoderLayer,
    attention_normed: &Tensor,
) -> Result<Tensor> {
    let intermediate = activation_identity(model, &layer.intermediate.forward(attention_normed)?)?;
    let output_dense = layer.output.forward(&intermediate)?;
    layer_norm_detached_std(&layer.output_norm, &(&output_dense + attention_normed)?)
}

/// Pooler (tanh under the identity rule) and classifier from the last hidden state [B, N, D].
pub fn head(model: &BertClassifier, last_hidden: &Tensor) -> Result<Tensor> {
    let cls = last_hidden.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?;
    let pre = model.pooler.forward(&cls)?;
    // tanh(x)/x → 1 as x → 0.
    let pooled = identity_rule(&pre, &pre.detach().tanh()?, 1.0)?;
    Ok(model.classifier.forward(&pooled)?)
}

/// The patched forward pass from the encoder input `embedded` [B, N, D] with the additive mask
/// [B, 1, 1, N]. With `probe_softmax` (AttnLRP only) every softmax gets gradient probes.
pub fn patched_forward(
    model: &BertClassifier,
    embedded: &Tensor,
    extended_mask: &Tensor,
    rules: Rules,
    probe_softmax: bool,
    last_layer: LastLayer,
) -> Result<PatchedPass> {
    let _device = crate::graphs::shared_device_work();
    let mut probes = Vec::new();
    let mut hidden = embedded.clone();
    let len = embedded.dim(1)?;
    for (index, layer) in model.layers.iter().enumerate() {
        let positions = last_layer.query_positions(index, model.layers.len(), len);
        let attended = attention_block(
            model,
            layer,
            &hidden,
            positions,
            extended_mask,
            rules,
            probe_softmax.then_some(&mut probes),
        )?;
        hidden = feed_forward_block(model, layer, &attended)?;
    }
    Ok(PatchedPass {
        logits: head(model, &hidden)?,
        softmax_probes: probes,
    })
}

/// Σ_b logits[b, targets[b]] as a scalar to differentiate.
pub fn target_objective(logits: &Tensor, targets: &[usize]) -> Result<Tensor> {
    seeded_objective(logits, &crate::bert::one_hot_like(logits, targets)?)
}

/// Σ seed ⊙ logits for a one-hot seed [B, C] already on the device.
fn seeded_objective(logits: &Tensor, seed: &Tensor) -> Result<Tensor> {
    Ok((logits * seed)?.sum_all()?)
}

/// A patched forward pass from a fresh encoder-input variable: its logits equal the model's, so
/// the targets can be chosen from them before the backward pass (no separate plain forward).
pub struct PatchedRun {
    input: Var,
    pass: PatchedPass,
}

impl PatchedRun {
    /// Runs the patched forward pass on the encoder input `embedded` [B, N, D] with the additive
    /// mask [B, 1, 1, N].
    pub fn start(
        model: &BertClassifier,
        embedded: &Tensor,
        extended_mask: &Tensor,
        rules: Rules,
    ) -> Result<Self> {
        let input = Var::from_tensor(&embedded.detach())?;
        let pass = patched_forward(
            model,
            input.as_tensor(),
            &extended_mask.detach(),
            rules,
            false,
            // Relevance is read at the encoder input, which the other rows of the last
            // layer do not reach.
            LastLayer::ClsOnly,
        )?;
        Ok(PatchedRun { input, pass })
    }

    /// The model's logits [B, C].
    pub fn logits(&self) -> &Tensor {
        &self.pass.logits
    }

    /// Relevance per token position [B, N] (f64) for the one-hot target classes `seed` [B, C]
    /// (on the device): R = e ⊙ ∂y/∂e summed over the hidden units.
    pub fn relevance_seeded(&self, seed: &Tensor) -> Result<Tensor> {
        let _device = crate::graphs::shared_device_work();
        let grads = seeded_objective(&self.pass.logits, seed)?.backward()?;
        let input = self.input.as_tensor();
        let gradient = grads.get(input).cloned().unwrap_or(input.zeros_like()?);
        Ok((input * gradient)?.sum(D::Minus1)?.to_dtype(DType::F64)?)
    }
}

/// Relevance per token position [B, N] for the target class of every sequence, from a forward
/// pass of the unpatched model (its encoder input and mask are reused).
pub fn token_relevance(
    model: &BertClassifier,
    pass: &ForwardPass,
    targets: &[usize],
    rules: Rules,
) -> Result<Tensor> {
    token_relevance_seeded(
        model,
        pass,
        &crate::bert::one_hot_like(&pass.logits, targets)?,
        rules,
    )
}

/// [`token_relevance`] for a one-hot seed [B, C] already on the device.
pub fn token_relevance_seeded(
    model: &BertClassifier,
    pass: &ForwardPass,
    seed: &Tensor,
    rules: Rules,
) -> Result<Tensor> {
    PatchedRun::start(model, &pass.embedded, &pass.extended_mask, rules)?.relevance_seeded(seed)
}
