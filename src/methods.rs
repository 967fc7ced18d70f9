//! Relevance methods: one score per token position ([CLS] and [SEP] included), with the names
//! and the exact conventions of the reference `ExplanationGenerator` (see `docs/engine.md`).

use candle_core::{DType, IndexOp, Tensor};

use crate::attnlrp::{self, Rules};
use crate::backward::{self, GradientDepth};
use crate::bert::{BertClassifier, ForwardPass, Gradients, LastLayer};
use crate::error::{Error, Result};
use crate::relprop::{self, AbsWeights, Depth, Relevance};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// Chefer et al. CVPR'21 "transformer attribution", rollout over all layers (start_layer 0).
    CheferLrpAllLayers,
    /// The same with only the last layer (the reference's default start_layer = L−1).
    CheferLrpLastLayerRollout,
    /// LRP relevance of the last layer's attention, no gradient.
    PartialLrpLastLayer,
    /// LRP relevance at the encoder input summed over hidden units.
    FullLrp,
    RawAttentionLastLayer,
    AttentionRollout,
    AttentionGradcam,
    /// Chefer et al. ICCV'21 generic gradient-weighted attention rollout.
    GradientRolloutIccv21,
    GradientXInput,
    /// AttnLRP (Achtibat et al. 2024): gradient × input through a patched forward pass
    /// (`attnlrp.rs`), read out at the encoder input.
    AttnLrp,
    /// CP-LRP (Ali et al. 2022): as AttnLRP with the attention probabilities held constant.
    CpLrp,
}

/// The method front-ends show when none is chosen: AttnLRP is the most faithful method on the
/// default model over all of the RT test set (LeRF − MoRF 0.596 [0.586, 0.606], CP-LRP 0.579
/// [0.569, 0.590]; on the previous model 0.566 against 0.524) and tied with CP-LRP on tweets,
/// ahead of leave-one-out occlusion and the Chefer et al. methods (`docs/eval.md`).
pub const DEFAULT_METHOD: Method = Method::AttnLrp;

impl Method {
    pub const ALL: [Method; 11] = [
        Method::CheferLrpAllLayers,
        Method::CheferLrpLastLayerRollout,
        Method::PartialLrpLastLayer,
        Method::FullLrp,
        Method::RawAttentionLastLayer,
        Method::AttentionRollout,
        Method::AttentionGradcam,
        Method::GradientRolloutIccv21,
        Method::GradientXInput,
        Method::AttnLrp,
        Method::CpLrp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::CheferLrpAllLayers => "chefer_lrp_all_layers",
            Method::CheferLrpLastLayerRollout => "chefer_lrp_last_layer_rollout",
            Method::PartialLrpLastLayer => "partial_lrp_last_layer",
            Method::FullLrp => "full_lrp",
            Method::RawAttentionLastLayer => "raw_attention_last_layer",
            Method::AttentionRollout => "attention_rollout",
            Method::AttentionGradcam => "attention_gradcam",
            Method::GradientRolloutIccv21 => "gradient_rollout_iccv21",
            Method::GradientXInput => "gradient_x_input",
            Method::AttnLrp => "attnlrp",
            Method::CpLrp => "cplrp",
        }
    }

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|m| m.name()).collect()
    }

    /// Signed methods can give negative scores; the others are non-negative by construction.
    pub fn is_signed(self) -> bool {
        matches!(
            self,
            Method::FullLrp | Method::GradientXInput | Method::AttnLrp | Method::CpLrp
        )
    }

    /// Whether the scores depend on the target class.
    pub fn is_class_specific(self) -> bool {
        !matches!(
            self,
            Method::RawAttentionLastLayer | Method::AttentionRollout
        )
    }

    /// Whether the method reads rows of the last layer's attention other than [CLS]'s, so that
    /// the last layer cannot be computed for [CLS] only ([`LastLayer`]): Grad-CAM min–max
    /// normalises over the whole map.
    pub fn needs_every_last_layer_row(self) -> bool {
        self == Method::AttentionGradcam
    }

    /// The positions the last layer must compute for all of `methods`.
    pub fn last_layer_for(methods: &[Method]) -> LastLayer {
        if methods.iter().any(|m| m.needs_every_last_layer_row()) {
            LastLayer::AllPositions
        } else {
            LastLayer::ClsOnly
        }
    }

    pub fn needs_gradients(self) -> bool {
        matches!(
            self,
            Method::CheferLrpAllLayers
                | Method::CheferLrpLastLayerRollout
                | Method::AttentionGradcam
                | Method::GradientRolloutIccv21
                | Method::GradientXInput
        )
    }

    /// How deep the backward pass must go, if the method needs gradients at all.
    pub fn gradient_depth(self, layers: usize) -> Option<GradientDepth> {
        let attention_from = |lowest| GradientDepth {
            lowest_attention_layer: lowest,
            encoder_input: false,
        };
        match self {
            Method::CheferLrpAllLayers | Method::GradientRolloutIccv21 => Some(attention_from(0)),
            Method::CheferLrpLastLayerRollout | Method::AttentionGradcam => {
                Some(attention_from(layers - 1))
            }
            Method::GradientXInput => Some(GradientDepth {
                lowest_attention_layer: 0,
                encoder_input: true,
            }),
            _ => None,
        }
    }

    /// How deep relevance propagation must go, if the method needs it at all.
    pub fn relprop_depth(self, layers: usize) -> Option<Depth> {
        match self {
            Method::CheferLrpAllLayers => Some(Depth::AttentionOfLayer(0)),
            Method::CheferLrpLastLayerRollout | Method::PartialLrpLastLayer => {
                Some(Depth::AttentionOfLayer(layers - 1))
            }
            Method::FullLrp => Some(Depth::EncoderInput),
            _ => None,
        }
    }

    /// The rule set of the methods computed by a patched forward pass (`attnlrp.rs`).
    pub fn patched_rules(self) -> Option<Rules> {
        match self {
            Method::AttnLrp => Some(Rules::AttnLrp),
            Method::CpLrp => Some(Rules::CpLrp),
            _ => None,
        }
    }
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Method::ALL
            .iter()
            .copied()
            .find(|m| m.name() == wanted)
            .ok_or_else(|| Error::UnknownMethod {
                given: s.to_owned(),
                known: Method::names(),
            })
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The deepest propagation any of `methods` needs.
pub fn deepest(methods: &[Method], layers: usize) -> Option<Depth> {
    methods
        .iter()
        .filter_map(|m| m.relprop_depth(layers))
        .max_by_key(|d| match d {
            Depth::AttentionOfLayer(b) => layers - b,
            Depth::EncoderInput => layers + 1,
        })
}

/// Sample `b`'s [.., Q, N] block restricted to its `len` real tokens, as [.., min(Q, len), len]
/// f64 (Q = 1 for the maps of a last layer computed for [CLS] only).
fn sample_square(x: &Tensor, b: usize, len: usize) -> Result<Tensor> {
    Ok(sample_square_native(x, b, len)?.to_dtype(DType::F64)?)
}

/// [`sample_square`] in the model's own dtype, for work that reduces over heads first.
fn sample_square_native(x: &Tensor, b: usize, len: usize) -> Result<Tensor> {
    let x = x.i(b)?;
    let rank = x.rank();
    let rows = x.dim(rank - 2)?.min(len);
    Ok(x.narrow(rank - 2, 0, rows)?
        .narrow(rank - 1, 0, len)?
        .contiguous()?)
}

/// `(M + I) / rowsum(M + I)` for M [Q, len] (the first Q rows of a [len, len] map), given I
/// [len, len] (made once for all layers: on a GPU it takes several kernels).
fn identity_row_normalised(m: &Tensor, eye: &Tensor) -> Result<Tensor> {
    let with_eye = (m + eye.narrow(0, 0, m.dim(0)?)?)?;
    let sums = with_eye.sum_keepdim(1)?;
    if crate::fused::available(m.device(), &[&with_eye, &sums]) {
        return crate::fused::divide_groups(&with_eye, &sums);
    }
    Ok(with_eye.broadcast_div(&sums)?)
}

/// Row 0 of `M[last] ⋯ M[0]` (last layer leftmost), evaluated as a row vector times matrices.
fn rollout_first_row(matrices: &[Tensor]) -> Result<Tensor> {
    let last = matrices.len() - 1;
    let mut row = matrices[last].narrow(0, 0, 1)?;
    for m in matrices[..last].iter().rev() {
        row = row.matmul(m)?;
    }
    Ok(row.squeeze(0)?)
}

/// mean_h[(a ⊙ b)⁺] as f64 [len, len]; the inputs may be in the model's dtype.
fn positive_head_mean_of_product(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(head_mean(&(a * b)?.relu()?)?.to_dtype(DType::F64)?)
}

/// The mean over heads of [H, N, N] maps, as one matrix product (1/H)·1ᵀ X: a reduction over
/// the leading dimension would give a GPU one thread block per output with 12 values each.
fn head_mean(x: &Tensor) -> Result<Tensor> {
    let (heads, rows, cols) = x.dims3()?;
    let ones = Tensor::ones((1, heads), x.dtype(), x.device())?;
    let sum = ones.matmul(&x.reshape((heads, rows * cols))?)?;
    Ok((sum / heads as f64)?.reshape((rows, cols))?)
}

fn min_of(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Inputs a method reads.
pub struct MethodInputs<'a> {
    pub model: &'a BertClassifier,
    pub pass: &'a ForwardPass,
    pub gradients: Option<&'a Gradients>,
    pub relevance: Option<&'a Relevance>,
    /// Token relevance [B, N] of the patched-forward methods in the list (see [`patched_for`]).
    pub patched: &'a [(Method, Tensor)],
}

fn missing(what: &str, method: Method) -> Error {
    Error::Usage(format!("internal: {what} not computed for {method}"))
}

/// The score vector of `method` for sample `b` whose real length is `len`.
pub fn scores(method: Method, inputs: &MethodInputs, b: usize, len: usize) -> Result<Vec<f64>> {
    let raw = score_tensor(method, inputs, b, len)?.to_vec1::<f64>()?;
    Ok(finish_scores(method, raw))
}

/// The last, host-side step of every method (see [`score_tensor`]).
pub fn finish_scores(method: Method, mut scores: Vec<f64>) -> Vec<f64> {
    match method {
        // The reference overwrites the [CLS] entry of the rollout row with the row's minimum.
        Method::CheferLrpAllLayers | Method::CheferLrpLastLayerRollout => {
            if !scores.is_empty() {
                scores[0] = min_of(&scores);
            }
        }
        Method::GradientXInput | Method::AttnLrp | Method::CpLrp => {}
        _ => {
            if let Some(first) = scores.first_mut() {
                *first = 0.0;
            }
        }
    }
    scores
}

/// The score vector of `method` for sample `b` as an f64 tensor [len] on the model's device,
/// before [`finish_scores`]: nothing here copies to or from the host, so a whole explanation
/// can be recorded once as a CUDA graph and replayed.
pub fn score_tensor(method: Method, inputs: &MethodInputs, b: usize, len: usize) -> Result<Tensor> {
    let layers = inputs.model.layers.len();
    let last = layers - 1;
    let grads = || inputs.gradients.ok_or_else(|| missing("gradients", method));
    let rel = || inputs.relevance.ok_or_else(|| missing("relevance", method));
    let probs = |layer: usize| sample_square(&inputs.pass.layers[layer].probs, b, len);
    let attention_relevance_native = |layer: usize| -> Result<Tensor> {
        let r = rel()?.attention[layer]
            .as_ref()
            .ok_or_else(|| missing("attention relevance", method))?;
        sample_square_native(r, b, len)
    };
    let attention_relevance = |layer: usize| -> Result<Tensor> {
        Ok(attention_relevance_native(layer)?.to_dtype(DType::F64)?)
    };
    Ok(match method {
        Method::CheferLrpAllLayers | Method::CheferLrpLastLayerRollout => {
            let first = if method == Method::CheferLrpAllLayers {
                0
            } else {
                last
            };
            let g = grads()?;
            let eye = Tensor::eye(len, DType::F64, inputs.pass.logits.device())?;
            let mut matrices = Vec::new();
            for layer in first..layers {
                let grad = sample_square_native(&g.probs[layer], b, len)?;
                let cam =
                    positive_head_mean_of_product(&grad, &attention_relevance_native(layer)?)?;
                matrices.push(identity_row_normalised(&cam, &eye)?);
            }
            rollout_first_row(&matrices)?
        }
        Method::PartialLrpLastLayer => head_mean(&attention_relevance(last)?.relu()?)?.i(0)?,
        Method::FullLrp => {
            let r = rel()?
                .encoder_input
                .as_ref()
                .ok_or_else(|| missing("encoder relevance", method))?;
            r.i(b)?.narrow(0, 0, len)?.to_dtype(DType::F64)?.sum(1)?
        }
        Method::RawAttentionLastLayer => head_mean(&probs(last)?)?.i(0)?,
        Method::AttentionRollout => {
            let eye = Tensor::eye(len, DType::F64, inputs.pass.logits.device())?;
            let matrices = (0..layers)
                .map(|l| identity_row_normalised(&head_mean(&probs(l)?)?, &eye))
                .collect::<Result<Vec<_>>>()?;
            rollout_first_row(&matrices)?
        }
        Method::AttentionGradcam => {
            let grad = sample_square(&grads()?.probs[last], b, len)?;
            let head_weights = grad.mean_keepdim(2)?.mean_keepdim(1)?;
            let cam = head_mean(&probs(last)?.broadcast_mul(&head_weights)?)?.relu()?;
            let min = cam.min_all()?;
            let max = cam.max_all()?;
            // (x − min) / (max − min) is 0/0 = NaN when the map is constant: kept, as the reference.
            let normed = cam.broadcast_sub(&min)?.broadcast_div(&(max - &min)?)?;
            normed.i(0)?
        }
        Method::GradientRolloutIccv21 => {
            let g = grads()?;
            // e₀ as a row [1, len], made on the device (no upload).
            let mut row =
                Tensor::eye(len, DType::F64, inputs.pass.logits.device())?.narrow(0, 0, 1)?;
            for layer in (0..layers).rev() {
                let grad = sample_square_native(&g.probs[layer], b, len)?;
                let probs = sample_square_native(&inputs.pass.layers[layer].probs, b, len)?;
                let cam = positive_head_mean_of_product(&grad, &probs)?;
                // A [CLS]-only last layer has one row of cam; row is e₀ when it is reached
                // (the last layer comes first), so row · cam needs only that row.
                let reached = row.narrow(1, 0, cam.dim(0)?)?;
                row = (&row + reached.matmul(&cam)?)?;
            }
            row.squeeze(0)?
        }
        Method::GradientXInput => {
            let g = grads()?;
            let e = inputs.pass.embedded.i(b)?.narrow(0, 0, len)?;
            let grad = g.embedded.i(b)?.narrow(0, 0, len)?;
            (e * grad)?.to_dtype(DType::F64)?.sum(1)?
        }
        Method::AttnLrp | Method::CpLrp => {
            let (_, relevance) = inputs
                .patched
                .iter()
                .find(|(m, _)| *m == method)
                .ok_or_else(|| missing("patched relevance", method))?;
            patched_score_tensor(relevance, b, len)?
        }
    })
}

/// The hand-written backward pass, as deep as the deepest of `methods` needs it.
pub fn gradients_for(
    methods: &[Method],
    model: &BertClassifier,
    pass: &ForwardPass,
    seed: &Tensor,
) -> Result<Option<Gradients>> {
    let layers = model.layers.len();
    let depths: Vec<GradientDepth> = methods
        .iter()
        .filter_map(|m| m.gradient_depth(layers))
        .collect();
    if depths.is_empty() {
        return Ok(None);
    }
    let depth = GradientDepth {
        lowest_attention_layer: depths
            .iter()
            .map(|d| d.lowest_attention_layer)
            .min()
            .unwrap_or(0),
        encoder_input: depths.iter().any(|d| d.encoder_input),
    };
    Ok(Some(backward::gradients_seeded(model, pass, seed, depth)?))
}

/// Runs relevance propagation when any of `methods` needs it.
pub fn propagate_for(
    methods: &[Method],
    model: &BertClassifier,
    abs_weights: &AbsWeights,
    pass: &ForwardPass,
    seed: &Tensor,
) -> Result<Option<Relevance>> {
    match deepest(methods, model.layers.len()) {
        Some(depth) => Ok(Some(relprop::propagate_seeded(
            model,
            abs_weights,
            pass,
            seed,
            depth,
        )?)),
        None => Ok(None),
    }
}

/// Scores of sequence `b` (its first `len` positions) from a patched method's relevance [B, N].
pub fn patched_score_tensor(relevance: &Tensor, b: usize, len: usize) -> Result<Tensor> {
    Ok(relevance.i(b)?.narrow(0, 0, len)?.to_dtype(DType::F64)?)
}

/// Runs the patched forward/backward pass of every patched-forward method in `methods`.
pub fn patched_for(
    methods: &[Method],
    model: &BertClassifier,
    pass: &ForwardPass,
    seed: &Tensor,
) -> Result<Vec<(Method, Tensor)>> {
    methods
        .iter()
        .filter_map(|&m| m.patched_rules().map(|rules| (m, rules)))
        .map(|(m, rules)| {
            let _span = crate::profile::span("patched (all)", &model.device);
            Ok((
                m,
                attnlrp::token_relevance_seeded(model, pass, seed, rules)?,
            ))
        })
        .collect()
}
