//! Explicit relevance propagation with the rules of the reference implementation
//! (`layers_ours.py` of Chefer, Gur & Wolf 2021): LRP-α1β0 for Linear layers, gradient × input
//! with sum re-normalisation for residual adds, gradient × input halved for both operands of the
//! attention matmuls, identity through LayerNorm, softmax, GELU and tanh.
//!
//! Everything runs on the activations a [`ForwardPass`] kept, as plain tensor algebra (no
//! autograd). Sums that the reference takes over the whole tensor are taken per sample, so a
//! padded batch gives each sample the relevance it would get alone.

use candle_core::{CpuStorage, CustomOp2, D, DType, Layout, Shape, Tensor};
use candle_nn::Linear;

use crate::bert::{BertClassifier, ForwardPass, one_hot_like};
use crate::error::Result;

/// How far down the encoder relevance is propagated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Stop once the attention relevance of layer `b` is known (layers b..L−1 are done).
    AttentionOfLayer(usize),
    /// Propagate to the encoder input.
    EncoderInput,
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
    let fused = a.dims() == b.dims()
        && a.elem_count() > 0
        && a.dtype() == b.dtype()
        && matches!(a.dtype(), DType::F32 | DType::F64)
        && (a.device().is_cpu() || cuda_kernel::available(a.device()));
    if fused {
        // One pass (one kernel on a GPU) instead of the nine tensor ops below: this runs on
        // every attention map and about 30 times per layer.
        return Ok(a
            .contiguous()?
            .apply_op2_no_bwd(&b.contiguous()?, &SafeDivide)?);
    }
    let den = b.affine(1.0, 1e-9)?;
    let den = (&den + den.eq(0.0)?.to_dtype(den.dtype())?.affine(1e-9, 0.0)?)?;
    let keep = b.ne(0.0)?.to_dtype(b.dtype())?;
    Ok(a.broadcast_div(&den)?.broadcast_mul(&keep)?)
}

/// The reference's stabilised division of one element.
fn safe_divide_element<T: num_like::Float>(a: T, b: T) -> T {
    if b == T::ZERO {
        return T::ZERO;
    }
    let den = b + T::EPS;
    let den = if den == T::ZERO { den + T::EPS } else { den };
    a / den
}

mod num_like {
    pub trait Float:
        Copy + PartialEq + std::ops::Add<Output = Self> + std::ops::Div<Output = Self>
    {
        const ZERO: Self;
        const EPS: Self;
    }
    impl Float for f32 {
        const ZERO: Self = 0.0;
        const EPS: Self = 1e-9;
    }
    impl Float for f64 {
        const ZERO: Self = 0.0;
        const EPS: Self = 1e-9;
    }
}

struct SafeDivide;

impl CustomOp2 for SafeDivide {
    fn name(&self) -> &'static str {
        "safe-divide"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        fn slice<'a, T>(data: &'a [T], layout: &Layout) -> candle_core::Result<&'a [T]> {
            match layout.contiguous_offsets() {
                Some((start, end)) => Ok(&data[start..end]),
                None => candle_core::bail!("safe-divide needs contiguous inputs"),
            }
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(
                slice(a, l1)?
                    .iter()
                    .zip(slice(b, l2)?)
                    .map(|(&x, &y)| safe_divide_element(x, y))
                    .collect(),
            ),
            (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(
                slice(a, l1)?
                    .iter()
                    .zip(slice(b, l2)?)
                    .map(|(&x, &y)| safe_divide_element(x, y))
                    .collect(),
            ),
            _ => candle_core::bail!("safe-divide needs two f32 or two f64 tensors"),
        };
        Ok((out, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda_kernel::safe_divide(s1, l1, s2, l2)
    }
}

/// The safe division as one CUDA kernel, compiled by NVRTC on first use (the driver then
/// JIT-compiles it for the GPU, as it does candle's own kernels).
#[cfg(feature = "cuda")]
mod cuda_kernel {
    use std::sync::OnceLock;

    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::cudarc::nvrtc;
    use candle_core::cuda_backend::{CudaStorage, CudaStorageSlice, WrapErr};
    use candle_core::{Device, Layout, Shape};

    const MODULE: &str = "tokenlens_safe_divide";
    // IEEE division (NVRTC's default), the element rule of `safe_divide_element`.
    const SOURCE: &str = r#"
template <typename T>
__device__ void safe_divide(const T *a, const T *b, T *out, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const T y = b[i];
        if (y == T(0)) {
            out[i] = T(0);
        } else {
            T den = y + T(1e-9);
            if (den == T(0)) den += T(1e-9);
            out[i] = a[i] / den;
        }
    }
}
extern "C" __global__ void safe_divide_f32(const float *a, const float *b, float *out,
                                           unsigned long long n) {
    safe_divide<float>(a, b, out, n);
}
extern "C" __global__ void safe_divide_f64(const double *a, const double *b, double *out,
                                           unsigned long long n) {
    safe_divide<double>(a, b, out, n);
}
"#;

    /// The module's PTX, or why NVRTC could not make it (compiled once per process).
    fn ptx() -> &'static Result<String, String> {
        static PTX: OnceLock<Result<String, String>> = OnceLock::new();
        PTX.get_or_init(|| {
            nvrtc::compile_ptx(SOURCE)
                .map(|ptx| ptx.to_src())
                .map_err(|e| e.to_string())
        })
    }

    /// Whether `device` is a GPU that can run the kernel (otherwise the composite ops do).
    pub fn available(device: &Device) -> bool {
        matches!(device, Device::Cuda(_)) && ptx().is_ok()
    }

    pub fn safe_divide(
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let ptx = match ptx() {
            Ok(ptx) => ptx,
            Err(e) => candle_core::bail!("safe-divide kernel: NVRTC failed: {e}"),
        };
        let ((o1, e1), (o2, e2)) = match (l1.contiguous_offsets(), l2.contiguous_offsets()) {
            (Some(r1), Some(r2)) => (r1, r2),
            _ => candle_core::bail!("safe-divide needs contiguous inputs"),
        };
        let n = e1 - o1;
        if e2 - o2 != n {
            candle_core::bail!("safe-divide needs two tensors of one shape");
        }
        let device = &s1.device;
        let count = n as u64;
        let config = LaunchConfig::for_num_elems(n.max(1) as u32);
        let slice = match (&s1.slice, &s2.slice) {
            (CudaStorageSlice::F32(a), CudaStorageSlice::F32(b)) => {
                let func = device.get_or_load_custom_func("safe_divide_f32", MODULE, ptx)?;
                // SAFETY: every element is written by the kernel below.
                let out = unsafe { device.alloc::<f32>(n)? };
                let (a, b) = (a.slice(o1..e1), b.slice(o2..e2));
                let mut builder = func.builder();
                builder.arg(&a).arg(&b).arg(&out).arg(&count);
                // SAFETY: the argument list matches the kernel's signature.
                unsafe { builder.launch(config) }.w()?;
                CudaStorageSlice::F32(out)
            }
            (CudaStorageSlice::F64(a), CudaStorageSlice::F64(b)) => {
                let func = device.get_or_load_custom_func("safe_divide_f64", MODULE, ptx)?;
                // SAFETY: every element is written by the kernel below.
                let out = unsafe { device.alloc::<f64>(n)? };
                let (a, b) = (a.slice(o1..e1), b.slice(o2..e2));
                let mut builder = func.builder();
                builder.arg(&a).arg(&b).arg(&out).arg(&count);
                // SAFETY: the argument list matches the kernel's signature.
                unsafe { builder.launch(config) }.w()?;
                CudaStorageSlice::F64(out)
            }
            _ => candle_core::bail!("safe-divide needs two f32 or two f64 tensors"),
        };
        Ok((
            CudaStorage {
                slice,
                device: device.clone(),
            },
            l1.shape().clone(),
        ))
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda_kernel {
    pub fn available(_device: &candle_core::Device) -> bool {
        false
    }
}

/// Per-sample sum over all but the first dimension, shaped to broadcast against `like`.
fn sample_sums(x: &Tensor) -> Result<Tensor> {
    let batch = x.dim(0)?;
    let mut shape = vec![1usize; x.rank()];
    shape[0] = batch;
    Ok(per_sample_total(x)?.reshape(shape)?)
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
pub fn linear(x: &Tensor, layer: &Linear, relevance: &Tensor) -> Result<Tensor> {
    linear_rule(x, layer, None, relevance)
}

/// [`linear`] for a layer whose forward output `x Wᵀ + b` is at hand: `x Wᵀ` is taken from it
/// instead of being recomputed, which saves a quarter of the rule's matmuls.
pub fn linear_from_output(
    x: &Tensor,
    layer: &Linear,
    output: &Tensor,
    relevance: &Tensor,
) -> Result<Tensor> {
    linear_rule(x, layer, Some(output), relevance)
}

fn linear_rule(
    x: &Tensor,
    layer: &Linear,
    output: Option<&Tensor>,
    relevance: &Tensor,
) -> Result<Tensor> {
    let _span = crate::profile::span("relprop.linear", x.device());
    let w = layer.weight();
    let (out_dim, in_dim) = w.dims2()?;
    let rows = x.elem_count() / in_dim;
    let x2 = x.reshape((rows, in_dim))?;
    let r2 = relevance.reshape((rows, out_dim))?;
    let w_abs = w.abs()?;
    let x_abs = x2.abs()?;
    let xw = match (output, layer.bias()) {
        (Some(y), Some(b)) => y.reshape((rows, out_dim))?.broadcast_sub(b)?,
        (Some(y), None) => y.reshape((rows, out_dim))?,
        (None, _) => x2.matmul(&w.t()?)?,
    };
    let z = (xw + x_abs.matmul(&w_abs.t()?)?)?.affine(0.5, 0.0)?;
    let s = safe_div(&r2, &z)?;
    let r_in = ((x2 * s.matmul(w)?)? + (x_abs * s.matmul(&w_abs)?)?)?.affine(0.5, 0.0)?;
    Ok(r_in.reshape(x.shape())?)
}

/// Gradient × input split of `a + b` followed by the reference's re-normalisation, which makes
/// the two parts sum to ΣR with shares proportional to their absolute sums. `b` may broadcast.
pub fn add(a: &Tensor, b: &Tensor, relevance: &Tensor) -> Result<(Tensor, Tensor)> {
    let _span = crate::profile::span("relprop.add", a.device());
    let z = a.broadcast_add(b)?;
    let s = safe_div(relevance, &z)?;
    let r_a = (a * &s)?;
    let s_b = reduce_to_shape(&s, b.dims())?;
    let r_b = (b * s_b)?;
    let sum_a = sample_sums(&r_a)?;
    let sum_b = sample_sums(&r_b)?;
    let total = sample_sums(relevance)?;
    let abs_a = sum_a.abs()?;
    let abs_b = sum_b.abs()?;
    let abs_total = (&abs_a + &abs_b)?;
    let factor_a = (safe_div(&abs_a, &abs_total)? * &total)?;
    let factor_b = (safe_div(&abs_b, &abs_total)? * &total)?;
    let r_a = r_a.broadcast_mul(&safe_div(&factor_a, &sum_a)?)?;
    let r_b = r_b.broadcast_mul(&safe_div(&factor_b, &sum_b)?)?;
    Ok((r_a, r_b))
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
    let r_a = (a * s.matmul(&b.t()?)?)?.affine(0.5, 0.0)?;
    let r_b = (b * a.t()?.matmul(&s)?)?.affine(0.5, 0.0)?;
    Ok((r_a, r_b))
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
    propagate_seeded(model, pass, &one_hot_like(&pass.logits, targets)?, depth)
}

/// [`propagate`] from a relevance seed [B, C] already on the device (one-hot per sample).
pub fn propagate_seeded(
    model: &BertClassifier,
    pass: &ForwardPass,
    seed: &Tensor,
    depth: Depth,
) -> Result<Relevance> {
    let _device = crate::graphs::shared_device_work();
    let batch = pass.logits.dim(0)?;
    let (_, len, hidden) = pass.embedded.dims3()?;
    let heads = model.config.num_attention_heads;
    let head_dim = model.config.head_dim();

    let _span = crate::profile::span("relprop (all)", &model.device);
    let r_pooled = linear_from_output(&pass.pooled, &model.classifier, &pass.logits, seed)?;
    let r_cls = linear(&pass.cls, &model.pooler, &r_pooled)?;
    // IndexSelect of position 0 (gradient × input over the selected row).
    let r_cls = (&pass.cls * safe_div(&r_cls, &pass.cls)?)?.unsqueeze(1)?;
    let rest = Tensor::zeros((batch, len - 1, hidden), model.dtype, &model.device)?;
    let mut r = Tensor::cat(&[&r_cls, &rest], 1)?;
    let last_hidden_total = per_sample_total(&r)?;

    let layers = model.layers.len();
    let mut attention = vec![None; layers];
    let mut layer_input_totals = vec![None; layers];
    let merge_heads = |x: &Tensor| -> Result<Tensor> {
        Ok(x.transpose(1, 2)?
            .contiguous()?
            .reshape((batch, len, hidden))?)
    };
    for index in (0..layers).rev() {
        let layer = &model.layers[index];
        let act = &pass.layers[index];
        // Output block: LayerNorm (identity), residual add, dense, activation (identity), dense.
        let (r_out, r_residual) = add(&act.output_dense, &act.attention_normed, &r)?;
        let r_act = linear_from_output(
            &act.intermediate_act,
            &layer.output,
            &act.output_dense,
            &r_out,
        )?;
        let r_ffn_in = linear_from_output(
            &act.attention_normed,
            &layer.intermediate,
            &act.intermediate_pre,
            &r_act,
        )?;
        let r_normed = clone(&act.attention_normed, &[&r_ffn_in, &r_residual])?;
        // Attention block: LayerNorm (identity), residual add, dense.
        let (r_dense, r_skip) = add(&act.attention_dense, &act.input, &r_normed)?;
        let r_context = linear_from_output(
            &act.context,
            &layer.attention_output,
            &act.attention_dense,
            &r_dense,
        )?;
        let r_context = r_context
            .reshape((batch, len, heads, head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
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
        let (r_scores, _) = add(&act.scores, &pass.extended_mask, &r_probs)?;
        let key_t = act.key.t()?.contiguous()?;
        let (r_query, r_key_t) = matmul(&act.query, &key_t, &r_scores)?;
        let r_query = linear_from_output(
            &act.input,
            &layer.query,
            &merge_heads(&act.query)?,
            &merge_heads(&r_query)?,
        )?;
        let r_key = linear_from_output(
            &act.input,
            &layer.key,
            &merge_heads(&act.key)?,
            &merge_heads(&r_key_t.t()?)?,
        )?;
        let r_value = linear_from_output(
            &act.input,
            &layer.value,
            &merge_heads(&act.value)?,
            &merge_heads(&r_value)?,
        )?;
        let r_self = clone(&act.input, &[&r_query, &r_key, &r_value])?;
        r = clone(&act.input, &[&r_self, &r_skip])?;
        layer_input_totals[index] = Some(per_sample_total(&r)?);
    }
    Ok(Relevance {
        attention,
        encoder_input: Some(r),
        layer_input_totals,
        last_hidden_total,
    })
}
