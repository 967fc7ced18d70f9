//! An instrumented `BertForSequenceClassification`: the same arithmetic as Hugging Face (and the
//! reference implementation of Chefer et al.), built only from differentiable candle ops, keeping
//! the activations that relevance propagation needs and exposing ∂logit/∂attention per layer.

use std::sync::{Arc, Mutex};

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::Linear;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{Activation, BertConfig};
use crate::error::Result;
use crate::weights::WeightStore;

/// Numeric precision of the forward pass and of every relevance computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// The LRP rules are badly conditioned; float64 reproduces the reference to ~1e-9.
    F64,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F64 => DType::F64,
        }
    }
}

/// Which positions the last encoder layer computes after its keys and values.
///
/// A classifier reads only the [CLS] row of the last hidden state, so in the last layer only the
/// [CLS] query, its attention row, and the [CLS] row of the dense, FFN and LayerNorm steps
/// reach the logits: every gradient and every LRP relevance of the other rows is exactly zero.
/// Skipping them changes no number any method reports except `attention_gradcam`, which
/// min–max normalises over the whole last attention map; it saves about a sixth of an
/// explanation of a 6-layer model (a twelfth of BERT-base), more at long inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastLayer {
    /// Every position, as the reference implementation computes it.
    AllPositions,
    /// Only the [CLS] position (keys and values of every position).
    ClsOnly,
}

impl LastLayer {
    /// How many query positions layer `index` of `layers` computes for `len` positions.
    pub fn query_positions(self, index: usize, layers: usize, len: usize) -> usize {
        match self {
            LastLayer::ClsOnly if index + 1 == layers => 1,
            _ => len,
        }
    }
}

/// The first `positions` positions of `x` [B, N, …], contiguous (`x` itself when that is all).
pub fn leading_positions(x: &Tensor, positions: usize) -> Result<Tensor> {
    if positions == x.dim(1)? {
        return Ok(x.clone());
    }
    Ok(x.narrow(1, 0, positions)?.contiguous()?)
}

#[derive(Clone)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    /// One fused pass where no gradient flows through `x`; otherwise the composite ops
    /// (candle's own fused layer norm has no backward pass).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !x.track_op() && crate::fused::available(x.device(), &[x, &self.weight, &self.bias]) {
            return crate::fused::layer_norm(x, &self.weight, &self.bias, self.eps);
        }
        self.composite_forward(x)
    }

    /// LayerNorm from differentiable tensor ops.
    pub(crate) fn composite_forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let variance = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        Ok(normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)?)
    }
}

/// Dropout at Hugging Face's positions (embedding output, attention probabilities, both residual
/// branches, pooled vector), for fine-tuning only. The masks come from a seeded generator so that
/// a training run is reproducible (candle's own dropout draws from an unseeded thread RNG).
#[derive(Clone)]
pub struct TrainingDropout {
    probability: f32,
    rng: Arc<Mutex<StdRng>>,
}

impl TrainingDropout {
    pub fn new(probability: f32, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&probability) {
            return Err(crate::error::Error::Usage(format!(
                "dropout probability must be in [0, 1), got {probability}"
            )));
        }
        Ok(TrainingDropout {
            probability,
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
        })
    }

    pub fn probability(&self) -> f32 {
        self.probability
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if self.probability == 0.0 {
            return Ok(x.clone());
        }
        let keep_scale = 1.0 / (1.0 - self.probability);
        if !x.device().is_cpu() {
            // On a GPU the mask is drawn there (seeded through `Device::set_seed`): drawing
            // millions of numbers per step on the CPU and copying them would dominate a step.
            let uniform = Tensor::rand(0f32, 1f32, x.shape(), x.device())?;
            let mask = (uniform.ge(self.probability)?.to_dtype(x.dtype())? * keep_scale as f64)?;
            return Ok((x * mask)?);
        }
        let mask: Vec<f32> = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            (0..x.elem_count())
                .map(|_| {
                    if rng.random::<f32>() < self.probability {
                        0.0
                    } else {
                        keep_scale
                    }
                })
                .collect()
        };
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok((x * mask)?)
    }
}

#[derive(Clone)]
pub struct Embeddings {
    pub word: Tensor,
    pub position: Tensor,
    pub token_type: Tensor,
    pub layer_norm: LayerNorm,
}

#[derive(Clone)]
pub struct EncoderLayer {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    /// Query, key and value as one layer ([3D, D]) whose weights the three above are views of;
    /// `None` when the weights are trained (variables of their own). Whoever replaces one of
    /// the three calls [`EncoderLayer::merge_projections`].
    pub query_key_value: Option<Linear>,
    pub attention_output: Linear,
    pub attention_norm: LayerNorm,
    pub intermediate: Linear,
    pub output: Linear,
    pub output_norm: LayerNorm,
}

impl EncoderLayer {
    /// Rebuilds [`EncoderLayer::query_key_value`] from the current query, key and value.
    pub fn merge_projections(&mut self) -> Result<()> {
        let (query, key, value, merged) =
            query_key_value(self.query.clone(), self.key.clone(), self.value.clone())?;
        (self.query, self.key, self.value, self.query_key_value) = (query, key, value, merged);
        Ok(())
    }
}

#[derive(Clone)]
pub struct BertClassifier {
    pub config: BertConfig,
    pub embeddings: Embeddings,
    pub layers: Vec<EncoderLayer>,
    pub pooler: Linear,
    pub classifier: Linear,
    pub dtype: DType,
    /// Dropout for fine-tuning (`tokenlens train`); `None` everywhere else.
    pub dropout: Option<TrainingDropout>,
    pub device: Device,
}

/// Activations of one encoder layer, as the LRP rules need them. Q stands for the number of
/// query positions computed: N, or 1 in a last layer computed for [CLS] only ([`LastLayer`]).
pub struct LayerActivations {
    /// Layer input [B, N, D].
    pub input: Tensor,
    /// Query [B, H, Q, d]; key, value in head layout [B, H, N, d].
    pub query: Tensor,
    pub key: Tensor,
    pub value: Tensor,
    /// The output of [`EncoderLayer::query_key_value`] [B, N, 3D], where it ran.
    pub query_key_value: Option<Tensor>,
    /// Scaled (not yet masked) attention scores [B, H, Q, N].
    pub scores: Tensor,
    /// Attention probabilities [B, H, Q, N] (softmax output).
    pub probs: Tensor,
    /// Attention context, heads merged [B, Q, D].
    pub context: Tensor,
    /// Output of the attention dense layer [B, Q, D].
    pub attention_dense: Tensor,
    /// After the attention residual LayerNorm [B, Q, D].
    pub attention_normed: Tensor,
    /// Activation output of the intermediate layer [B, Q, F].
    pub intermediate_act: Tensor,
    /// Input of the activation (intermediate dense output) [B, Q, F], for the backward pass.
    pub intermediate_pre: Tensor,
    /// Output of the output dense layer [B, Q, D].
    pub output_dense: Tensor,
}

impl LayerActivations {
    /// Q: the number of query positions this layer computed (N, or 1 for [CLS] only).
    pub fn query_positions(&self) -> Result<usize> {
        Ok(self.attention_dense.dim(1)?)
    }

    /// The layer input at the query positions [B, Q, D]: the residual branch of its attention
    /// block.
    pub fn residual_input(&self) -> Result<Tensor> {
        leading_positions(&self.input, self.query_positions()?)
    }
}

/// `x` extended with zeros along `dim` to `size` positions (the rows a [CLS]-only last layer did
/// not compute, whose gradient and relevance are zero).
pub fn zero_padded(x: &Tensor, dim: usize, size: usize) -> Result<Tensor> {
    let have = x.dim(dim)?;
    if have == size {
        return Ok(x.clone());
    }
    let mut shape = x.dims().to_vec();
    shape[dim] = size - have;
    let zeros = Tensor::zeros(shape, x.dtype(), x.device())?;
    Ok(Tensor::cat(&[x, &zeros], dim)?)
}

/// Everything one forward pass computed.
pub struct ForwardPass {
    /// Encoder input (output of the embedding LayerNorm) [B, N, D].
    pub embedded: Tensor,
    /// Additive attention mask `(1 - m) * -10000`, [B, 1, 1, N].
    pub extended_mask: Tensor,
    pub layers: Vec<LayerActivations>,
    /// [CLS] vector of the last hidden state [B, D].
    pub cls: Tensor,
    /// tanh pooler output [B, D].
    pub pooled: Tensor,
    /// [B, C].
    pub logits: Tensor,
    probes: Option<Probes>,
}

struct Probes {
    embedded: Var,
    probs: Vec<Var>,
}

/// Gradients of the summed target logits.
pub struct Gradients {
    /// ∂y_c/∂P per layer, [B, H, N, N].
    pub probs: Vec<Tensor>,
    /// ∂y_c/∂e at the encoder input [B, N, D].
    pub embedded: Tensor,
}

/// `x Wᵀ + b` for x of any rank, as one 2-D matmul: candle's batched matmul would copy the
/// broadcast weight for every call.
pub fn dense(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    let w = layer.weight();
    let (out_dim, in_dim) = w.dims2()?;
    let mut shape = x.dims().to_vec();
    let rows = x.elem_count() / in_dim;
    let y = x.reshape((rows, in_dim))?.matmul(&w.t()?)?;
    let y = match layer.bias() {
        Some(b) if !y.track_op() && crate::fused::available(y.device(), &[&y, b]) => {
            crate::fused::add_row(&y, b)?
        }
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    if let Some(last) = shape.last_mut() {
        *last = out_dim;
    }
    Ok(y.reshape(shape)?)
}

/// [B, N, H·d] → [B, H, N, d]: an attention tensor's `heads` apart (the inverse of
/// [`merge_heads`]); N may be the query positions of a [CLS]-only layer.
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (batch, len, width) = x.dims3()?;
    Ok(x.reshape((batch, len, heads, width / heads))?
        .transpose(1, 2)?
        .contiguous()?)
}

/// [B, H, N, d] → [B, N, H·d]: the heads of an attention tensor side by side again.
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (batch, heads, len, head_dim) = x.dims4()?;
    Ok(x.transpose(1, 2)?
        .contiguous()?
        .reshape((batch, len, heads * head_dim))?)
}

/// Query, key and value parts ([B, H, N, d] each), heads merged and side by side [B, N, 3D]:
/// the layout of [`EncoderLayer::query_key_value`]'s output.
pub fn merge_query_key_value(query: &Tensor, key: &Tensor, value: &Tensor) -> Result<Tensor> {
    Ok(Tensor::cat(
        &[merge_heads(query)?, merge_heads(key)?, merge_heads(value)?],
        2,
    )?)
}

/// One row per sample with 1 at its target class, shaped, typed and placed like `logits`
/// [B, C]: the seed of every gradient and relevance pass.
pub fn one_hot_like(logits: &Tensor, targets: &[usize]) -> Result<Tensor> {
    let (batch, classes) = logits.dims2()?;
    if targets.len() != batch || targets.iter().any(|&c| c >= classes) {
        return Err(crate::error::Error::Usage(format!(
            "internal: {} targets {targets:?} for {batch} sequences of {classes} classes",
            targets.len()
        )));
    }
    let mut onehot = vec![0f64; batch * classes];
    for (b, &c) in targets.iter().enumerate() {
        onehot[b * classes + c] = 1.0;
    }
    Ok(Tensor::from_vec(onehot, (batch, classes), logits.device())?.to_dtype(logits.dtype())?)
}

/// `dy W` for y = x Wᵀ + b: the gradient with respect to the input of a dense layer.
pub fn dense_input_grad(layer: &Linear, dy: &Tensor) -> Result<Tensor> {
    let w = layer.weight();
    let (out_dim, in_dim) = w.dims2()?;
    let mut shape = dy.dims().to_vec();
    let rows = dy.elem_count() / out_dim;
    let dx = dy.reshape((rows, out_dim))?.matmul(w)?;
    if let Some(last) = shape.last_mut() {
        *last = in_dim;
    }
    Ok(dx.reshape(shape)?)
}

fn linear(store: &WeightStore, name: &str, out_dim: usize, in_dim: usize) -> Result<Linear> {
    let weight = store.get(&format!("{name}.weight"), &[out_dim, in_dim])?;
    let bias = store.get(&format!("{name}.bias"), &[out_dim])?;
    Ok(Linear::new(weight, Some(bias)))
}

/// The three projections of self-attention, and the one layer that computes them together (one
/// matmul three times as wide: on a GPU at batch 1 a single 768-wide product leaves most of the
/// chip idle). The three become views of the merged weights, so nothing is stored twice.
/// Trained weights stay as they are: an optimizer updates each variable in place.
fn query_key_value(
    query: Linear,
    key: Linear,
    value: Linear,
) -> Result<(Linear, Linear, Linear, Option<Linear>)> {
    let parts = [&query, &key, &value];
    let biases: Option<Vec<&Tensor>> = parts.iter().map(|l| l.bias()).collect();
    let (Some(biases), false) = (biases, parts.iter().any(|l| l.weight().is_variable())) else {
        return Ok((query, key, value, None));
    };
    let weights: Vec<&Tensor> = parts.iter().map(|l| l.weight()).collect();
    let weight = Tensor::cat(&weights, 0)?;
    let bias = Tensor::cat(&biases, 0)?;
    let view = |k: usize| -> Result<Linear> {
        let rows = weights[k].dim(0)?;
        let start = weights[..k]
            .iter()
            .map(|w| w.dim(0))
            .sum::<candle_core::Result<usize>>()?;
        Ok(Linear::new(
            weight.narrow(0, start, rows)?,
            Some(bias.narrow(0, start, rows)?),
        ))
    };
    Ok((
        view(0)?,
        view(1)?,
        view(2)?,
        Some(Linear::new(weight, Some(bias))),
    ))
}

fn layer_norm(store: &WeightStore, name: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
    Ok(LayerNorm {
        weight: store.get(&format!("{name}.weight"), &[dim])?,
        bias: store.get(&format!("{name}.bias"), &[dim])?,
        eps,
    })
}

impl BertClassifier {
    pub fn load(
        config: BertConfig,
        store: &WeightStore,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let d = config.hidden_size;
        let f = config.intermediate_size;
        let eps = config.layer_norm_eps;
        let embeddings = Embeddings {
            word: store.get("embeddings.word_embeddings.weight", &[config.vocab_size, d])?,
            position: store.get(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, d],
            )?,
            token_type: store.get(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, d],
            )?,
            layer_norm: layer_norm(store, "embeddings.LayerNorm", d, eps)?,
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let (query, key, value, query_key_value) = query_key_value(
                linear(store, &format!("{p}.attention.self.query"), d, d)?,
                linear(store, &format!("{p}.attention.self.key"), d, d)?,
                linear(store, &format!("{p}.attention.self.value"), d, d)?,
            )?;
            layers.push(EncoderLayer {
                query,
                key,
                value,
                query_key_value,
                attention_output: linear(store, &format!("{p}.attention.output.dense"), d, d)?,
                attention_norm: layer_norm(
                    store,
                    &format!("{p}.attention.output.LayerNorm"),
                    d,
                    eps,
                )?,
                intermediate: linear(store, &format!("{p}.intermediate.dense"), f, d)?,
                output: linear(store, &format!("{p}.output.dense"), d, f)?,
                output_norm: layer_norm(store, &format!("{p}.output.LayerNorm"), d, eps)?,
            });
        }
        let pooler = linear(store, "pooler.dense", d, d)?;
        let classifier = linear(store, "classifier", config.num_labels(), d)?;
        Ok(BertClassifier {
            config,
            embeddings,
            layers,
            pooler,
            classifier,
            dtype,
            device: device.clone(),
            dropout: None,
        })
    }

    fn activation(&self, x: &Tensor) -> Result<Tensor> {
        // Composite forms: candle's fused GELU backward uses a 6-digit constant, which would
        // put a 1e-7 relative error into every gradient.
        Ok(match self.config.hidden_act {
            Activation::Gelu if !x.track_op() && crate::fused::available(x.device(), &[x]) => {
                crate::fused::gelu(x)?
            }
            Activation::Gelu => {
                let erf = x.affine(std::f64::consts::FRAC_1_SQRT_2, 0.0)?.erf()?;
                ((x * 0.5)? * (erf + 1.0)?)?
            }
            Activation::GeluTanh => {
                let inner = (x + (x.powf(3.0)? * 0.044715)?)?
                    .affine((2.0 / std::f64::consts::PI).sqrt(), 0.0)?;
                ((x * 0.5)? * (inner.tanh()? + 1.0)?)?
            }
            Activation::Relu => x.relu()?,
        })
    }

    /// Input ids and 0/1 mask, both [B, N] u32, to the embedding LayerNorm output [B, N, D].
    pub fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (batch, len) = input_ids.dims2()?;
        let d = self.config.hidden_size;
        let word = self
            .embeddings
            .word
            .index_select(&input_ids.flatten_all()?, 0)?
            .reshape((batch, len, d))?;
        let position = self.embeddings.position.narrow(0, 0, len)?.unsqueeze(0)?;
        // Token types are all 0: one segment per text.
        let token_type = self.embeddings.token_type.narrow(0, 0, 1)?.unsqueeze(0)?;
        // Same summation order as the reference: (token_type + position) + word.
        let summed = token_type.broadcast_add(&position)?.broadcast_add(&word)?;
        self.embeddings.layer_norm.forward(&summed)
    }

    /// The additive attention mask `(1 - m) * -10000` as [B, 1, 1, N], from a 0/1 mask [B, N].
    pub fn extended_mask(&self, mask: &Tensor) -> Result<Tensor> {
        let (batch, len) = mask.dims2()?;
        Ok(
            ((mask.to_dtype(self.dtype)?.affine(-1.0, 1.0)?) * -10000.0)?
                .reshape((batch, 1, 1, len))?,
        )
    }

    /// The forward pass. With `with_gradients` a zero variable is added to the encoder input and
    /// to every attention map so that one backward pass yields ∂y/∂P for all layers at once.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        mask: &Tensor,
        with_gradients: bool,
    ) -> Result<ForwardPass> {
        self.forward_with(input_ids, mask, with_gradients, LastLayer::AllPositions)
    }

    /// [`BertClassifier::forward`] with the positions of the last layer chosen.
    pub fn forward_with(
        &self,
        input_ids: &Tensor,
        mask: &Tensor,
        with_gradients: bool,
        last_layer: LastLayer,
    ) -> Result<ForwardPass> {
        self.forward_embedded_with(self.embed(input_ids)?, mask, with_gradients, last_layer)
    }

    /// The forward pass from the encoder input (the embedding LayerNorm output, [B, N, D]), for
    /// methods that perturb or interpolate the embeddings (integrated gradients).
    pub fn forward_embedded(
        &self,
        embedded: Tensor,
        mask: &Tensor,
        with_gradients: bool,
    ) -> Result<ForwardPass> {
        self.forward_embedded_with(embedded, mask, with_gradients, LastLayer::AllPositions)
    }

    /// [`BertClassifier::forward_embedded`] with the positions of the last layer chosen.
    pub fn forward_embedded_with(
        &self,
        embedded: Tensor,
        mask: &Tensor,
        with_gradients: bool,
        last_layer: LastLayer,
    ) -> Result<ForwardPass> {
        let _device = crate::graphs::shared_device_work();
        let (batch, len, _) = embedded.dims3()?;
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.head_dim();
        let d = self.config.hidden_size;
        let extended_mask = self.extended_mask(mask)?;

        let mut probes = if with_gradients {
            Some(Probes {
                embedded: Var::zeros((batch, len, d), self.dtype, &self.device)?,
                probs: Vec::new(),
            })
        } else {
            None
        };
        let mut hidden = match &probes {
            Some(p) => (&embedded + p.embedded.as_tensor())?,
            None => embedded.clone(),
        };
        hidden = self.training_dropout(hidden)?;
        let scale = (head_dim as f64).sqrt();
        let mut layers = Vec::with_capacity(self.layers.len());
        for (index, layer) in self.layers.iter().enumerate() {
            let positions = last_layer.query_positions(index, self.layers.len(), len);
            // The residual branch: the layer input at the query positions.
            let residual = leading_positions(&hidden, positions)?;
            let span = crate::profile::span("forward.attention", &self.device);
            let (query, key, value, query_key_value) = match &layer.query_key_value {
                Some(merged) if !hidden.track_op() => {
                    let out = dense(merged, &hidden)?;
                    // [B, N, 3, H, d] → [3, B, H, N, d] in one copy.
                    let heads_first = out
                        .reshape((batch, len, 3, heads, head_dim))?
                        .permute((2, 0, 3, 1, 4))?
                        .contiguous()?;
                    let query = heads_first.get(0)?;
                    let query = if positions == len {
                        query
                    } else {
                        query.narrow(2, 0, positions)?.contiguous()?
                    };
                    (query, heads_first.get(1)?, heads_first.get(2)?, Some(out))
                }
                _ => (
                    split_heads(&dense(&layer.query, &residual)?, heads)?,
                    split_heads(&dense(&layer.key, &hidden)?, heads)?,
                    split_heads(&dense(&layer.value, &hidden)?, heads)?,
                    None,
                ),
            };
            let scores = (query.matmul(&key.t()?.contiguous()?)? / scale)?;
            let probs = if !scores.track_op()
                && crate::fused::available(&self.device, &[&scores, &extended_mask])
            {
                // One pass over the attention map instead of seven.
                crate::fused::attention_softmax(&scores, &extended_mask)?
            } else {
                candle_nn::ops::softmax(&scores.broadcast_add(&extended_mask)?, D::Minus1)?
            };
            let probs_used = match probes.as_mut() {
                Some(p) => {
                    let var = Var::zeros(probs.shape(), self.dtype, &self.device)?;
                    let used = (&probs + var.as_tensor())?;
                    p.probs.push(var);
                    used
                }
                None => probs.clone(),
            };
            let probs_used = self.training_dropout(probs_used)?;
            let context = probs_used
                .matmul(&value)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((batch, positions, d))?;
            drop(span);
            let _span = crate::profile::span("forward.dense+ffn", &self.device);
            let attention_dense =
                self.training_dropout(dense(&layer.attention_output, &context)?)?;
            let attention_normed = layer
                .attention_norm
                .forward(&(&attention_dense + &residual)?)?;
            let intermediate_pre = dense(&layer.intermediate, &attention_normed)?;
            let intermediate_act = self.activation(&intermediate_pre)?;
            let output_dense = self.training_dropout(dense(&layer.output, &intermediate_act)?)?;
            let next = layer
                .output_norm
                .forward(&(&output_dense + &attention_normed)?)?;
            layers.push(LayerActivations {
                input: hidden,
                query,
                key,
                value,
                query_key_value,
                scores,
                probs,
                context,
                attention_dense,
                attention_normed,
                intermediate_act,
                intermediate_pre,
                output_dense,
            });
            hidden = next;
        }
        let cls = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = dense(&self.pooler, &cls)?.tanh()?;
        let logits = dense(&self.classifier, &self.training_dropout(pooled.clone())?)?;
        Ok(ForwardPass {
            embedded,
            extended_mask,
            layers,
            cls,
            pooled,
            logits,
            probes,
        })
    }

    /// `x` with training dropout applied, or `x` itself when dropout is off.
    fn training_dropout(&self, x: Tensor) -> Result<Tensor> {
        match &self.dropout {
            Some(dropout) => dropout.apply(&x),
            None => Ok(x),
        }
    }

    /// Logits only, for training and plain classification (keeps no activations alive).
    /// Without dropout the last layer computes [CLS] only; with it (training) every position,
    /// so that a run draws the same dropout masks as it always has and stays reproducible.
    pub fn logits(&self, input_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let last_layer = match self.dropout {
            Some(_) => LastLayer::AllPositions,
            None => LastLayer::ClsOnly,
        };
        Ok(self
            .forward_with(input_ids, mask, false, last_layer)?
            .logits)
    }
}

impl ForwardPass {
    /// One backward pass of Σ_b logits[b, targets[b]] (the pre-softmax logits, as the reference).
    pub fn gradients(&self, targets: &[usize]) -> Result<Gradients> {
        let probes = self.probes.as_ref().ok_or_else(|| {
            crate::error::Error::Usage("forward pass was run without gradient probes".into())
        })?;
        let onehot = one_hot_like(&self.logits, targets)?;
        let objective = (&self.logits * onehot)?.sum_all()?;
        let grads = objective.backward()?;
        let get = |var: &Var| -> Result<Tensor> {
            Ok(grads
                .get(var.as_tensor())
                .cloned()
                .unwrap_or(var.as_tensor().zeros_like()?))
        };
        Ok(Gradients {
            probs: probes.probs.iter().map(get).collect::<Result<_>>()?,
            embedded: get(&probes.embedded)?,
        })
    }
}
