//! Fused row-wise steps of the forward and backward passes: the softmax of masked attention
//! scores and its backward, LayerNorm and its backward. Each replaces five to sixteen tensor
//! ops (several of them broadcasts over attention maps, the largest tensors of an explanation)
//! with one pass over each row, with the composite ops' arithmetic per element in their order;
//! only the order of the sums within a row may differ on a GPU (one warp per row).
//!
//! None has a backward pass: they serve explanations, whose backward pass is written out by
//! hand; training and the autograd checks keep the composite ops.

use candle_core::{CpuStorage, Layout, Shape, Tensor};

use super::{CpuKernel, Float, on_cpu_slices};
use crate::error::Result;

/// `softmax(scores + mask)` over the last dimension, the mask ([B, …, M] with B·M elements)
/// broadcast over the rows of each sample of `scores` ([B, …, M]).
pub fn attention_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    apply2(Row::AttentionSoftmax, 0.0, scores, mask)
}

/// The gradient × input split of `scores + mask` (the mask broadcast as in
/// [`attention_softmax`]) for relevance `R`: the scores' share `scores ⊙ s` with
/// `s = R / (scores + mask)`, and per sample [3, B] the sums of that share, of the mask's share
/// `mask ⊙ s` and of `R`, which the add rule's re-normalisation needs.
pub fn masked_split(
    scores: &Tensor,
    mask: &Tensor,
    relevance: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (share, sums) = split_with_sums(Row::MaskedSplit, 1, scores, mask, relevance)?;
    Ok((share.reshape(scores.shape())?, sums))
}

/// The gradient × input split of `a + b` (one shape) for relevance `R`: `[a ⊙ s, b ⊙ s]` with
/// `s = R / (a + b)` stacked on a new first dimension, and per sample [3, B] the sums of the
/// two parts and of `R`, which the add rule's re-normalisation needs.
pub fn residual_split(a: &Tensor, b: &Tensor, relevance: &Tensor) -> Result<(Tensor, Tensor)> {
    let (split, sums) = split_with_sums(Row::ResidualSplit, 2, a, b, relevance)?;
    let mut shape = vec![2];
    shape.extend_from_slice(a.dims());
    Ok((split.reshape(shape)?, sums))
}

/// A split op's output taken apart: its `parts` shares of `a`'s size (flat), then its three
/// sums per row added up per sample ([3, B]).
fn split_with_sums(
    kind: Row,
    parts: usize,
    a: &Tensor,
    b: &Tensor,
    relevance: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let out = apply3(kind, 0.0, a, b, relevance)?;
    let shares = parts * a.elem_count();
    let sums = out
        .narrow(0, shares, out.elem_count() - shares)?
        .reshape((3, a.dim(0)?, ()))?
        .sum(2)?;
    Ok((out.narrow(0, 0, shares)?, sums))
}

/// The softmax backward pass for `P = softmax(S · scale)`: `scale · P ⊙ (dP − Σⱼ dP ⊙ P)`.
pub fn softmax_backward(probs: &Tensor, d_probs: &Tensor, scale: f64) -> Result<Tensor> {
    apply2(Row::SoftmaxBackward, scale, probs, d_probs)
}

/// LayerNorm over the last dimension: `(x − μ) / √(σ² + ε) ⊙ w + b`.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    apply3(Row::LayerNorm, eps, x, weight, bias)
}

/// ∂LayerNorm(x)/∂x applied to the output gradient `dy`.
pub fn layer_norm_backward(x: &Tensor, dy: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    apply3(Row::LayerNormBackward, eps, x, dy, weight)
}

fn apply2(kind: Row, param: f64, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let op = RowOp { kind, param };
    Ok(a.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &op)?)
}

fn apply3(kind: Row, param: f64, a: &Tensor, b: &Tensor, c: &Tensor) -> Result<Tensor> {
    let op = RowOp { kind, param };
    Ok(a.contiguous()?
        .apply_op3_no_bwd(&b.contiguous()?, &c.contiguous()?, &op)?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    AttentionSoftmax,
    MaskedSplit,
    SoftmaxBackward,
    LayerNorm,
    LayerNormBackward,
    ResidualSplit,
}

/// A row op with its scalar (softmax scale or LayerNorm ε).
#[derive(Debug, Clone, Copy)]
struct RowOp {
    kind: Row,
    param: f64,
}

/// The first input seen as `rows` rows of `cols`, `rows_per_sample` of them per sample.
#[derive(Debug, Clone, Copy)]
struct Rows {
    rows: usize,
    cols: usize,
    rows_per_sample: usize,
}

impl RowOp {
    fn kernel_name(&self) -> &'static str {
        match self.kind {
            Row::AttentionSoftmax => "attention_softmax",
            Row::MaskedSplit => "masked_split",
            Row::SoftmaxBackward => "softmax_backward",
            Row::LayerNorm => "layer_norm",
            Row::LayerNormBackward => "layer_norm_backward",
            Row::ResidualSplit => "residual_split_sums",
        }
    }

    /// The rows of the first input, after checking the other inputs' sizes against it.
    fn rows(&self, shapes: &[&Shape]) -> candle_core::Result<Rows> {
        let name = self.kernel_name();
        let dims = shapes[0].dims();
        let (Some(&cols), Some(&samples)) = (dims.last(), dims.first()) else {
            candle_core::bail!("{name}: a scalar input");
        };
        let elements = shapes[0].elem_count();
        if cols == 0 || elements == 0 {
            candle_core::bail!("{name}: an empty input");
        }
        let rows = elements / cols;
        let sizes_ok = match self.kind {
            Row::AttentionSoftmax | Row::MaskedSplit => {
                dims.len() >= 2
                    && shapes[1].elem_count() == samples * cols
                    && rows.is_multiple_of(samples)
                    && (self.kind == Row::AttentionSoftmax || shapes[2] == shapes[0])
            }
            Row::SoftmaxBackward => shapes[1] == shapes[0],
            Row::ResidualSplit => shapes[1] == shapes[0] && shapes[2] == shapes[0],
            Row::LayerNorm => shapes[1].elem_count() == cols && shapes[2].elem_count() == cols,
            Row::LayerNormBackward => shapes[1] == shapes[0] && shapes[2].elem_count() == cols,
        };
        if !sizes_ok {
            let shapes: Vec<_> = shapes.iter().map(|s| s.dims().to_vec()).collect();
            candle_core::bail!("{name}: inputs of shapes {shapes:?} do not fit");
        }
        Ok(Rows {
            rows,
            cols,
            rows_per_sample: rows / samples.max(1),
        })
    }

    fn cpu(&self, inputs: &[(&CpuStorage, &Layout)]) -> candle_core::Result<(CpuStorage, Shape)> {
        let shapes: Vec<&Shape> = inputs.iter().map(|(_, l)| l.shape()).collect();
        let rows = self.rows(&shapes)?;
        let out = on_cpu_slices(&CpuRows { op: *self, rows }, inputs)?;
        Ok((out, self.output_shape(inputs[0].1.shape(), rows)))
    }

    /// The input's shape, except for the masked split: its share, flat, then three sums per row.
    fn output_shape(&self, input: &Shape, rows: Rows) -> Shape {
        match self.kind {
            Row::MaskedSplit => Shape::from(rows.rows * (rows.cols + 3)),
            Row::ResidualSplit => Shape::from(rows.rows * (2 * rows.cols + 3)),
            _ => input.clone(),
        }
    }
}

/// The fewest elements a CPU thread is given at once.
const PARALLEL_GRAIN: usize = 1 << 15;

struct CpuRows {
    op: RowOp,
    rows: Rows,
}

impl CpuKernel for CpuRows {
    fn name(&self) -> &'static str {
        self.op.kernel_name()
    }

    fn run<T: Float>(&self, inputs: &[&[T]]) -> Vec<T> {
        use rayon::prelude::*;
        let Rows {
            rows,
            cols,
            rows_per_sample,
        } = self.rows;
        let param = T::from_f64(self.op.param);
        let inv_cols = T::from_f64(1.0 / cols as f64);
        let kind = self.op.kind;
        let mut out = vec![T::ZERO; rows * cols];
        // Threads only for work worth handing out: a short row costs less than its hand-off.
        let rows_per_task = (PARALLEL_GRAIN / cols).max(1);
        let row_sums: Vec<[T; 3]> = out
            .par_chunks_mut(cols)
            .with_min_len(rows_per_task)
            .enumerate()
            .map(|(row, out)| {
                let span = row * cols..(row + 1) * cols;
                let a = &inputs[0][span.clone()];
                let sample = row / rows_per_sample;
                let mask = || &inputs[1][sample * cols..(sample + 1) * cols];
                match kind {
                    Row::AttentionSoftmax => softmax_row(a, mask(), out),
                    Row::MaskedSplit => return split_row(a, mask(), &inputs[2][span], out),
                    Row::ResidualSplit => {
                        return split_row(a, &inputs[1][span.clone()], &inputs[2][span], out);
                    }
                    Row::SoftmaxBackward => softmax_backward_row(a, &inputs[1][span], param, out),
                    Row::LayerNorm => layer_norm_row(a, inputs[1], inputs[2], param, inv_cols, out),
                    Row::LayerNormBackward => layer_norm_backward_row(
                        a,
                        &inputs[1][span],
                        inputs[2],
                        param,
                        inv_cols,
                        out,
                    ),
                }
                [T::ZERO; 3]
            })
            .collect();
        if kind == Row::ResidualSplit {
            // The second part, `b ⊙ s`, with the same shares.
            let (a, b, r) = (inputs[0], inputs[1], inputs[2]);
            let second: Vec<T> = (0..rows * cols)
                .into_par_iter()
                .with_min_len(PARALLEL_GRAIN)
                .map(|i| b[i] * super::safe_divide_element(r[i], a[i] + b[i]))
                .collect();
            out.extend(second);
        }
        if matches!(kind, Row::MaskedSplit | Row::ResidualSplit) {
            for k in 0..3 {
                out.extend(row_sums.iter().map(|sums| sums[k]));
            }
        }
        out
    }
}

fn sum<T: Float>(values: impl Iterator<Item = T>) -> T {
    let mut total = T::ZERO;
    for v in values {
        total += v;
    }
    total
}

fn softmax_row<T: Float>(scores: &[T], mask: &[T], out: &mut [T]) {
    let mut top = T::NEG_INFINITY;
    for ((o, &s), &m) in out.iter_mut().zip(scores).zip(mask) {
        *o = s + m;
        if *o > top {
            top = *o;
        }
    }
    for o in out.iter_mut() {
        *o = (*o - top).exp();
    }
    let total = sum(out.iter().copied());
    for o in out.iter_mut() {
        *o = *o / total;
    }
}

/// One row of [`masked_split`] or [`residual_split`]: writes `a`'s share, returns the sums of
/// it, of `b`'s share and of the relevance.
fn split_row<T: Float>(a: &[T], b: &[T], relevance: &[T], out: &mut [T]) -> [T; 3] {
    let mut sums = [T::ZERO; 3];
    for j in 0..out.len() {
        let share = super::safe_divide_element(relevance[j], a[j] + b[j]);
        out[j] = a[j] * share;
        sums[0] += out[j];
        sums[1] += b[j] * share;
        sums[2] += relevance[j];
    }
    sums
}

fn softmax_backward_row<T: Float>(p: &[T], dp: &[T], scale: T, out: &mut [T]) {
    let dot = sum(dp.iter().zip(p).map(|(&d, &p)| d * p));
    for ((o, &p), &d) in out.iter_mut().zip(p).zip(dp) {
        *o = (p * (d - dot)) * scale;
    }
}

/// Mean and variance of a row, as `mean_keepdim` forms them (the sum times 1/n).
fn moments<T: Float>(x: &[T], inv_cols: T) -> (T, T) {
    let mean = sum(x.iter().copied()) * inv_cols;
    let variance = sum(x.iter().map(|&v| (v - mean) * (v - mean))) * inv_cols;
    (mean, variance)
}

fn layer_norm_row<T: Float>(x: &[T], w: &[T], b: &[T], eps: T, inv_cols: T, out: &mut [T]) {
    let (mean, variance) = moments(x, inv_cols);
    let den = (variance + eps).sqrt();
    for (j, o) in out.iter_mut().enumerate() {
        *o = ((x[j] - mean) / den) * w[j] + b[j];
    }
}

fn layer_norm_backward_row<T: Float>(
    x: &[T],
    dy: &[T],
    w: &[T],
    eps: T,
    inv_cols: T,
    out: &mut [T],
) {
    let (mean, variance) = moments(x, inv_cols);
    let inv_std = T::ONE / (variance + eps).sqrt();
    let normed = |j: usize| (x[j] - mean) * inv_std;
    let mean_d = sum((0..x.len()).map(|j| dy[j] * w[j])) * inv_cols;
    let mean_dn = sum((0..x.len()).map(|j| (dy[j] * w[j]) * normed(j))) * inv_cols;
    for (j, o) in out.iter_mut().enumerate() {
        *o = ((dy[j] * w[j] - mean_d) - normed(j) * mean_dn) * inv_std;
    }
}

super::custom_ops!(RowOp);

#[cfg(feature = "cuda")]
impl RowOp {
    fn cuda(
        &self,
        inputs: &[(&candle_core::CudaStorage, &Layout)],
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::cuda_backend::CudaStorageSlice;
        use candle_core::cuda_backend::cudarc::driver::LaunchConfig;

        let shapes: Vec<&Shape> = inputs.iter().map(|(_, l)| l.shape()).collect();
        let rows = self.rows(&shapes)?;
        let config = LaunchConfig {
            grid_dim: (rows.rows.div_ceil(ROWS_PER_BLOCK) as u32, 1, 1),
            block_dim: (32, ROWS_PER_BLOCK as u32, 1),
            shared_mem_bytes: 0,
        };
        let counts = [
            rows.rows as u64,
            rows.cols as u64,
            rows.rows_per_sample as u64,
        ];
        let name = self.kernel_name();
        let shape = self.output_shape(shapes[0], rows);
        let elements = shape.elem_count();
        let launch = |f64s: bool| {
            if f64s {
                super::cuda::launch::<f64>(
                    name,
                    inputs,
                    elements,
                    &counts,
                    Some(self.param),
                    config,
                )
            } else {
                super::cuda::launch::<f32>(
                    name,
                    inputs,
                    elements,
                    &counts,
                    Some(self.param),
                    config,
                )
            }
        };
        let storage = match &inputs[0].0.slice {
            CudaStorageSlice::F32(_) => launch(false)?,
            CudaStorageSlice::F64(_) => launch(true)?,
            _ => candle_core::bail!("{name} needs f32 or f64 tensors"),
        };
        Ok((storage, shape))
    }
}

/// Rows (one warp each) per thread block of the CUDA kernels.
#[cfg(feature = "cuda")]
const ROWS_PER_BLOCK: usize = 4;

/// The CUDA kernels, compiled with the elementwise ones of `fused`: the row functions above,
/// one warp per row, in the same order of operations except for the order of the sums.
#[cfg(feature = "cuda")]
pub(super) const CUDA_SOURCE: &str = r#"
template <typename T> __device__ T warp_sum(T v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}
template <typename T> __device__ T warp_max(T v) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        const T w = __shfl_xor_sync(0xffffffffu, v, offset);
        v = w > v ? w : v;
    }
    return v;
}
#define ROW_PARAMS(T) u64 rows, u64 cols, u64 rows_per_sample, double param
#define ROW_START \
    const u64 row = blockIdx.x * (u64)blockDim.y + threadIdx.y; \
    if (row >= rows) return; \
    const u64 lane = threadIdx.x;
#define COLS for (u64 j = lane; j < cols; j += 32)

template <typename T>
__device__ void attention_softmax(const T *s, const T *m, T *out, ROW_PARAMS(T)) {
    ROW_START
    s += row * cols; out += row * cols; m += (row / rows_per_sample) * cols;
    T top = (T)__longlong_as_double(0xfff0000000000000ULL);
    COLS { const T v = s[j] + m[j]; out[j] = v; top = v > top ? v : top; }
    top = warp_max(top);
    T total = T(0);
    COLS { const T e = exp(out[j] - top); out[j] = e; total += e; }
    total = warp_sum(total);
    COLS out[j] = out[j] / total;
}
template <typename T>
__device__ void masked_split(const T *s, const T *m, const T *r, T *out, ROW_PARAMS(T)) {
    ROW_START
    T *sums = out + rows * cols;
    s += row * cols; r += row * cols; out += row * cols; m += (row / rows_per_sample) * cols;
    T sum_a = T(0), sum_b = T(0), total = T(0);
    COLS {
        const T share = safe_div(r[j], s[j] + m[j]);
        out[j] = s[j] * share;
        sum_a += out[j];
        sum_b += m[j] * share;
        total += r[j];
    }
    sum_a = warp_sum(sum_a);
    sum_b = warp_sum(sum_b);
    total = warp_sum(total);
    if (lane == 0) {
        sums[row] = sum_a;
        sums[rows + row] = sum_b;
        sums[2 * rows + row] = total;
    }
}
template <typename T>
__device__ void residual_split_sums(const T *a, const T *b, const T *r, T *out, ROW_PARAMS(T)) {
    ROW_START
    const u64 n = rows * cols, at = row * cols;
    T *sums = out + 2 * n;
    T sum_a = T(0), sum_b = T(0), total = T(0);
    COLS {
        const T share = safe_div(r[at + j], a[at + j] + b[at + j]);
        const T part_a = a[at + j] * share;
        const T part_b = b[at + j] * share;
        out[at + j] = part_a;
        out[n + at + j] = part_b;
        sum_a += part_a;
        sum_b += part_b;
        total += r[at + j];
    }
    sum_a = warp_sum(sum_a);
    sum_b = warp_sum(sum_b);
    total = warp_sum(total);
    if (lane == 0) {
        sums[row] = sum_a;
        sums[rows + row] = sum_b;
        sums[2 * rows + row] = total;
    }
}
template <typename T>
__device__ void softmax_backward(const T *p, const T *dp, T *out, ROW_PARAMS(T)) {
    ROW_START
    p += row * cols; dp += row * cols; out += row * cols;
    T dot = T(0);
    COLS dot += dp[j] * p[j];
    dot = warp_sum(dot);
    const T scale = (T)param;
    COLS out[j] = (p[j] * (dp[j] - dot)) * scale;
}
template <typename T>
__device__ void moments(const T *x, u64 cols, u64 lane, T inv_cols, T *mean, T *variance) {
    T total = T(0);
    COLS total += x[j];
    *mean = warp_sum(total) * inv_cols;
    T squares = T(0);
    COLS { const T c = x[j] - *mean; squares += c * c; }
    *variance = warp_sum(squares) * inv_cols;
}
template <typename T>
__device__ void layer_norm(const T *x, const T *w, const T *b, T *out, ROW_PARAMS(T)) {
    ROW_START
    x += row * cols; out += row * cols;
    T mean, variance;
    moments(x, cols, lane, (T)(1.0 / (double)cols), &mean, &variance);
    const T den = sqrt(variance + (T)param);
    COLS out[j] = ((x[j] - mean) / den) * w[j] + b[j];
}
template <typename T>
__device__ void layer_norm_backward(const T *x, const T *dy, const T *w, T *out, ROW_PARAMS(T)) {
    ROW_START
    x += row * cols; dy += row * cols; out += row * cols;
    const T inv_cols = (T)(1.0 / (double)cols);
    T mean, variance;
    moments(x, cols, lane, inv_cols, &mean, &variance);
    const T inv_std = T(1) / sqrt(variance + (T)param);
    T sum_d = T(0), sum_dn = T(0);
    COLS {
        const T d = dy[j] * w[j];
        sum_d += d;
        sum_dn += d * ((x[j] - mean) * inv_std);
    }
    const T mean_d = warp_sum(sum_d) * inv_cols;
    const T mean_dn = warp_sum(sum_dn) * inv_cols;
    COLS out[j] = ((dy[j] * w[j] - mean_d) - ((x[j] - mean) * inv_std) * mean_dn) * inv_std;
}

#define ROWS2(name) \
    extern "C" __global__ void name##_f32(const float *a, const float *b, float *out, \
        ROW_PARAMS(float)) { name<float>(a, b, out, rows, cols, rows_per_sample, param); } \
    extern "C" __global__ void name##_f64(const double *a, const double *b, double *out, \
        ROW_PARAMS(double)) { name<double>(a, b, out, rows, cols, rows_per_sample, param); }
#define ROWS3(name) \
    extern "C" __global__ void name##_f32(const float *a, const float *b, const float *c, \
        float *out, ROW_PARAMS(float)) { \
        name<float>(a, b, c, out, rows, cols, rows_per_sample, param); } \
    extern "C" __global__ void name##_f64(const double *a, const double *b, const double *c, \
        double *out, ROW_PARAMS(double)) { \
        name<double>(a, b, c, out, rows, cols, rows_per_sample, param); }
ROWS2(attention_softmax)
ROWS2(softmax_backward)
ROWS3(masked_split)
ROWS3(residual_split_sums)
ROWS3(layer_norm)
ROWS3(layer_norm_backward)
"#;

#[cfg(test)]
mod tests {
    use candle_core::{D, DType, Device};

    use super::*;
    use crate::fused::max_relative_difference;

    fn random(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let values: Vec<f64> = (0..n).map(|_| rng.random_range(-3.0..3.0)).collect();
        Tensor::from_vec(values, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    fn dy_like(x: &Tensor) -> Tensor {
        random(x.dims(), 10, x.dtype())
    }

    /// Within a few roundings of the composite ops (the sums may run in another order).
    fn tolerance(dtype: DType) -> f64 {
        if dtype == DType::F32 { 1e-6 } else { 1e-14 }
    }

    #[test]
    fn row_ops_equal_the_composite_ops_they_replace() {
        for dtype in [DType::F32, DType::F64] {
            // Two samples, three heads, rows of 37 (not a multiple of a warp), a padded key.
            let scores = random(&[2, 3, 5, 37], 1, dtype);
            let mut mask = vec![0f64; 2 * 37];
            mask[37 + 36] = -10000.0;
            let mask = Tensor::from_vec(mask, (2, 1, 1, 37), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let probs = attention_softmax(&scores, &mask).unwrap();
            let expected =
                candle_nn::ops::softmax(&scores.broadcast_add(&mask).unwrap(), D::Minus1).unwrap();
            assert!(
                max_relative_difference(&probs, &expected) < tolerance(dtype),
                "{dtype:?}"
            );
            let padded: f64 = probs
                .get(1)
                .unwrap()
                .narrow(2, 36, 1)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(padded < 1e-30, "a masked key gets no probability: {padded}");

            let d_probs = random(&[2, 3, 5, 37], 2, dtype);
            let row = (&d_probs * &probs).unwrap().sum_keepdim(D::Minus1).unwrap();
            let expected = (probs.clone() * d_probs.broadcast_sub(&row).unwrap())
                .unwrap()
                .affine(0.125, 0.0)
                .unwrap();
            let got = softmax_backward(&probs, &d_probs, 0.125).unwrap();
            assert!(
                max_relative_difference(&got, &expected) < tolerance(dtype),
                "{dtype:?}"
            );

            let x = (random(&[2, 7, 48], 3, dtype) + 5.0).unwrap();
            let norm = crate::bert::LayerNorm {
                weight: random(&[48], 4, dtype),
                bias: random(&[48], 5, dtype),
                eps: 1e-12,
            };
            let got = layer_norm(&x, &norm.weight, &norm.bias, norm.eps).unwrap();
            let expected = norm.composite_forward(&x).unwrap();
            assert!(
                max_relative_difference(&got, &expected) < tolerance(dtype),
                "{dtype:?}"
            );

            let (a, b, r) = (
                random(&[2, 7, 48], 8, dtype),
                random(&[2, 7, 48], 9, dtype),
                dy_like(&x),
            );
            let share = super::super::safe_divide(&r, &(&a + &b).unwrap()).unwrap();
            let (parts, sums) = residual_split(&a, &b, &r).unwrap();
            let expected =
                Tensor::stack(&[(&a * &share).unwrap(), (&b * &share).unwrap()], 0).unwrap();
            assert_eq!(max_relative_difference(&parts, &expected), 0.0, "{dtype:?}");
            let per_sample = |t: &Tensor| t.flatten_from(1).unwrap().sum(1).unwrap();
            let expected_sums = Tensor::stack(
                &[
                    per_sample(&expected.get(0).unwrap()),
                    per_sample(&expected.get(1).unwrap()),
                    per_sample(&r),
                ],
                0,
            )
            .unwrap();
            assert!(
                max_relative_difference(&sums, &expected_sums) < tolerance(dtype),
                "{dtype:?}"
            );

            let dy = random(&[2, 7, 48], 6, dtype);
            let got = layer_norm_backward(&x, &dy, &norm.weight, norm.eps).unwrap();
            let expected = crate::backward::composite_layer_norm_backward(&norm, &x, &dy).unwrap();
            assert!(
                max_relative_difference(&got, &expected) < tolerance(dtype),
                "{dtype:?}"
            );
        }
    }

    #[test]
    fn row_ops_refuse_inputs_that_do_not_fit() {
        let x = random(&[2, 3, 4], 7, DType::F32);
        assert!(
            layer_norm(
                &x,
                &random(&[3], 8, DType::F32),
                &random(&[4], 9, DType::F32),
                1e-5
            )
            .is_err()
        );
        assert!(attention_softmax(&x, &random(&[3, 4], 10, DType::F32)).is_err());
        assert!(softmax_backward(&x, &random(&[2, 3, 5], 11, DType::F32), 1.0).is_err());
        let f64s = random(&[2, 3, 4], 12, DType::F64);
        assert!(softmax_backward(&x, &f64s, 1.0).is_err());
    }
}
