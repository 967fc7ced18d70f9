//! Fused elementwise steps of the LRP rules: each is one pass over its tensors (one kernel on a
//! GPU) instead of the chain of tensor ops it replaces, with the same arithmetic per element, in
//! the same order. On a GPU an explanation is hundreds of small steps, and at batch 1 their
//! launches, not their arithmetic, take most of the time.
//!
//! Every op works on contiguous f32 or f64 tensors of one dtype, on the CPU and, with the `cuda`
//! feature, on a GPU (kernels compiled by NVRTC at first use; where that fails, [`available`]
//! says no and the callers keep the composite ops).

use candle_core::{CpuStorage, DType, Device, Layout, Shape, Tensor};

use crate::error::Result;

mod rows;
pub use rows::{
    attention_softmax, layer_norm, layer_norm_backward, masked_split, residual_split,
    softmax_backward,
};

/// Whether the fused ops can run on `device` for `tensors` (one float dtype, no empty tensor).
pub fn available(device: &Device, tensors: &[&Tensor]) -> bool {
    let Some(first) = tensors.first() else {
        return false;
    };
    let dtype = first.dtype();
    matches!(dtype, DType::F32 | DType::F64)
        && tensors
            .iter()
            .all(|t| t.dtype() == dtype && t.elem_count() > 0 && t.device().same_device(device))
        && (device.is_cpu() || cuda::available(device))
}

/// `a / b` with the reference's stabiliser (see [`safe_divide_element`]); one shape.
pub fn safe_divide(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(a.contiguous()?
        .apply_op2_no_bwd(&b.contiguous()?, &Fused::SafeDivide)?)
}

/// `S = R / (½ (xWᵀ + |x||W|ᵀ))` of the LRP-α1β0 rule, from `xw = xWᵀ` and `t = |x||W|ᵀ`.
pub fn alpha_beta_ratio(relevance: &Tensor, xw: &Tensor, t: &Tensor) -> Result<Tensor> {
    Ok(relevance.contiguous()?.apply_op3_no_bwd(
        &xw.contiguous()?,
        &t.contiguous()?,
        &Fused::AlphaBetaRatio,
    )?)
}

/// [`alpha_beta_ratio`] from the layer's output `y = xWᵀ + b` and its bias `b` ([out]):
/// `S = R / (½ ((y − b) + t))`, the bias subtracted within the same pass with the rounding of
/// the `broadcast_sub` it replaces.
pub fn alpha_beta_ratio_from_output(
    relevance: &Tensor,
    output: &Tensor,
    t: &Tensor,
    bias: &Tensor,
) -> Result<Tensor> {
    let op = RatioFromOutput {
        bias: bias.contiguous()?,
    };
    Ok(relevance
        .contiguous()?
        .apply_op3_no_bwd(&output.contiguous()?, &t.contiguous()?, &op)?)
}

/// `y + b` for `y` [.., C] and a row `b` [C]: a linear layer's bias add, as `broadcast_add`
/// computes it. candle's broadcast kernels find each element of the broadcast operand through
/// a loop of divisions by every dimension, and on a GPU are several times slower than this.
pub fn add_row(y: &Tensor, row: &Tensor) -> Result<Tensor> {
    broadcast(Broadcast::AddRow, y, row)
}

/// `x ⊙ f` for `x` whose elements fall into `f.elem_count()` equal consecutive groups (samples,
/// or parts then samples), each multiplied by its factor: as `broadcast_mul` by `f` reshaped
/// to [G, 1, …].
pub fn scale_groups(x: &Tensor, factors: &Tensor) -> Result<Tensor> {
    broadcast(Broadcast::ScaleGroups, x, factors)
}

/// `x ⊘ d` with `x`'s elements in `d.elem_count()` equal consecutive groups (rows), each
/// divided by its divisor: as `broadcast_div` by `d` reshaped to [G, 1, …].
pub fn divide_groups(x: &Tensor, divisors: &Tensor) -> Result<Tensor> {
    broadcast(Broadcast::DivideGroups, x, divisors)
}

fn broadcast(op: Broadcast, x: &Tensor, small: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op2_no_bwd(&small.contiguous()?, &op)?)
}

/// `½ (x ⊙ u + |x| ⊙ v)` of the LRP-α1β0 rule, from `u = S W` and `v = S |W|`.
pub fn alpha_beta_input(x: &Tensor, u: &Tensor, v: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op3_no_bwd(
        &u.contiguous()?,
        &v.contiguous()?,
        &Fused::AlphaBetaInput,
    )?)
}

/// GELU with the exact (erf) form: `x/2 · (1 + erf(x/√2))`.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1_no_bwd(&Fused::Gelu)?)
}

/// The gradient through [`gelu`] at `x` of the output gradient `dy`: `dy ⊙ (Φ(x) + x φ(x))`.
pub fn gelu_backward(dy: &Tensor, x: &Tensor) -> Result<Tensor> {
    Ok(dy
        .contiguous()?
        .apply_op2_no_bwd(&x.contiguous()?, &Fused::GeluBackward)?)
}

/// `½ (a ⊙ u)`: one operand's share in the matmul rule, from `u = S bᵀ` or `aᵀ S`.
pub fn half_product(a: &Tensor, u: &Tensor) -> Result<Tensor> {
    Ok(a.contiguous()?
        .apply_op2_no_bwd(&u.contiguous()?, &Fused::HalfProduct)?)
}

/// The reference's re-normalisation of a two-way split, per sample: from the sums of the two
/// parts and of the relevance that was split ([B] each), the factors [2, B] that give each part
/// a share of the total proportional to its absolute sum.
pub fn renormalisation(sum_a: &Tensor, sum_b: &Tensor, total: &Tensor) -> Result<Tensor> {
    let factors = sum_a.contiguous()?.apply_op3_no_bwd(
        &sum_b.contiguous()?,
        &total.contiguous()?,
        &Fused::Renormalisation,
    )?;
    Ok(factors.reshape((2, sum_a.elem_count()))?)
}

/// The reference's `safe_divide` of one element: `a / (b + ε)` with ε = 1e-9 whatever the sign
/// of b (and once more where that is exactly 0), and 0 where b is 0.
pub fn safe_divide_element<T: Float>(a: T, b: T) -> T {
    if b == T::ZERO {
        return T::ZERO;
    }
    let den = b + T::EPS;
    let den = if den == T::ZERO { den + T::EPS } else { den };
    a / den
}

/// `(x · ½) · (erf(x · 1/√2) + 1)`, the composite GELU's steps.
fn gelu_element<T: Float>(x: T) -> T {
    (x * T::HALF) * ((x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).erf() + T::ONE)
}

/// `Φ(x) + x φ(x)` as the composite derivative forms it.
fn gelu_derivative_element<T: Float>(x: T) -> T {
    let cdf = ((x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).erf() + T::ONE) * T::HALF;
    let pdf = ((x * x) * T::from_f64(-0.5)).exp()
        * T::from_f64(1.0 / (2.0 * std::f64::consts::PI).sqrt());
    cdf + x * pdf
}

pub trait Float:
    Copy
    + Send
    + Sync
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::AddAssign
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const HALF: Self;
    const EPS: Self;
    const NEG_INFINITY: Self;
    fn abs(self) -> Self;
    fn exp(self) -> Self;
    fn sqrt(self) -> Self;
    /// candle's own erf, so that the CPU op equals the composite one.
    fn erf(self) -> Self;
    /// Rounded as candle rounds the scalar of an affine op.
    fn from_f64(value: f64) -> Self;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const HALF: Self = 0.5;
    const EPS: Self = 1e-9;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    fn abs(self) -> Self {
        f32::abs(self)
    }
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn erf(self) -> Self {
        candle_core::cpu::erf::erf_f32(self)
    }
    fn from_f64(value: f64) -> Self {
        value as f32
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const HALF: Self = 0.5;
    const EPS: Self = 1e-9;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    fn abs(self) -> Self {
        f64::abs(self)
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn erf(self) -> Self {
        candle_core::cpu::erf::erf_f64(self)
    }
    fn from_f64(value: f64) -> Self {
        value
    }
}

#[derive(Debug, Clone, Copy)]
enum Fused {
    SafeDivide,
    AlphaBetaRatio,
    AlphaBetaInput,
    Gelu,
    GeluBackward,
    HalfProduct,
    Renormalisation,
}

impl Fused {
    fn kernel_name(&self) -> &'static str {
        match self {
            Fused::SafeDivide => "safe_divide",
            Fused::AlphaBetaRatio => "alpha_beta_ratio",
            Fused::AlphaBetaInput => "alpha_beta_input",
            Fused::Gelu => "gelu",
            Fused::GeluBackward => "gelu_backward",
            Fused::HalfProduct => "half_product",
            Fused::Renormalisation => "renormalisation",
        }
    }

    /// Elements written for inputs of `n` elements each.
    fn output_len(self, n: usize) -> usize {
        match self {
            Fused::Renormalisation => 2 * n,
            _ => n,
        }
    }

    /// The op on the CPU. Each arm is the element rule the CUDA kernel of the same name runs.
    fn run<T: Float>(self, inputs: &[&[T]]) -> Vec<T> {
        let n = inputs[0].len();
        let at = |k: usize, i: usize| inputs[k][i];
        match self {
            Fused::SafeDivide => (0..n)
                .map(|i| safe_divide_element(at(0, i), at(1, i)))
                .collect(),
            Fused::AlphaBetaRatio => (0..n)
                .map(|i| safe_divide_element(at(0, i), (at(1, i) + at(2, i)) * T::HALF))
                .collect(),
            Fused::AlphaBetaInput => (0..n)
                .map(|i| {
                    let x = at(0, i);
                    (x * at(1, i) + x.abs() * at(2, i)) * T::HALF
                })
                .collect(),
            Fused::HalfProduct => (0..n).map(|i| (at(0, i) * at(1, i)) * T::HALF).collect(),
            Fused::Gelu => (0..n).map(|i| gelu_element(at(0, i))).collect(),
            Fused::GeluBackward => (0..n)
                .map(|i| at(0, i) * gelu_derivative_element(at(1, i)))
                .collect(),
            Fused::Renormalisation => {
                let (mut first, mut second) = (Vec::with_capacity(2 * n), Vec::with_capacity(n));
                for i in 0..n {
                    let (sum_a, sum_b, total) = (at(0, i), at(1, i), at(2, i));
                    let (abs_a, abs_b) = (sum_a.abs(), sum_b.abs());
                    let abs_total = abs_a + abs_b;
                    let factor_a = safe_divide_element(abs_a, abs_total) * total;
                    let factor_b = safe_divide_element(abs_b, abs_total) * total;
                    first.push(safe_divide_element(factor_a, sum_a));
                    second.push(safe_divide_element(factor_b, sum_b));
                }
                first.extend(second);
                first
            }
        }
    }

    fn cpu(self, inputs: &[(&CpuStorage, &Layout)]) -> candle_core::Result<(CpuStorage, Shape)> {
        let shape = inputs[0].1.shape().clone();
        if inputs.iter().any(|(_, l)| l.shape() != &shape) {
            candle_core::bail!("{}: inputs of different shapes", self.kernel_name());
        }
        let out = on_cpu_slices(&self, inputs)?;
        let shape = match self.output_len(1) {
            1 => shape,
            _ => Shape::from(self.output_len(shape.elem_count())),
        };
        Ok((out, shape))
    }
}

/// [`add_row`], [`scale_groups`] and [`divide_groups`]: a tensor and a smaller one repeated
/// over it.
#[derive(Debug, Clone, Copy)]
enum Broadcast {
    AddRow,
    ScaleGroups,
    DivideGroups,
}

impl Broadcast {
    fn kernel_name(&self) -> &'static str {
        match self {
            Broadcast::AddRow => "add_row",
            Broadcast::ScaleGroups => "scale_groups",
            Broadcast::DivideGroups => "divide_groups",
        }
    }

    /// The second operand's extent: the row length, or the elements per group.
    fn extent(&self, shapes: &[&Shape]) -> candle_core::Result<usize> {
        let &[large, small] = shapes else {
            candle_core::bail!("{} takes two inputs", self.kernel_name());
        };
        let (n, small) = (large.elem_count(), small.elem_count());
        let fits = small > 0
            && match self {
                Broadcast::AddRow => large.dims().last() == Some(&small),
                Broadcast::ScaleGroups | Broadcast::DivideGroups => n % small == 0,
            };
        if !fits {
            candle_core::bail!("{}: shapes {shapes:?} do not fit", self.kernel_name());
        }
        Ok(match self {
            Broadcast::AddRow => small,
            Broadcast::ScaleGroups | Broadcast::DivideGroups => n / small,
        })
    }

    fn cpu(&self, inputs: &[(&CpuStorage, &Layout)]) -> candle_core::Result<(CpuStorage, Shape)> {
        let shapes: Vec<&Shape> = inputs.iter().map(|(_, l)| l.shape()).collect();
        self.extent(&shapes)?;
        Ok((on_cpu_slices(self, inputs)?, shapes[0].clone()))
    }
}

impl CpuKernel for Broadcast {
    fn name(&self) -> &'static str {
        self.kernel_name()
    }
    fn run<T: Float>(&self, inputs: &[&[T]]) -> Vec<T> {
        let (x, small) = (inputs[0], inputs[1]);
        match self {
            Broadcast::AddRow => (0..x.len())
                .map(|i| x[i] + small[i % small.len()])
                .collect(),
            Broadcast::ScaleGroups => {
                let group = x.len() / small.len();
                (0..x.len()).map(|i| x[i] * small[i / group]).collect()
            }
            Broadcast::DivideGroups => {
                let group = x.len() / small.len();
                (0..x.len()).map(|i| x[i] / small[i / group]).collect()
            }
        }
    }
}

custom_ops!(Broadcast);

#[cfg(feature = "cuda")]
impl Broadcast {
    fn cuda(
        &self,
        inputs: &[(&candle_core::CudaStorage, &Layout)],
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let shapes: Vec<&Shape> = inputs.iter().map(|(_, l)| l.shape()).collect();
        let extent = self.extent(&shapes)?;
        let storage = cuda::launch_with_columns(self.kernel_name(), inputs, extent)?;
        Ok((storage, shapes[0].clone()))
    }
}

/// [`alpha_beta_ratio_from_output`]: three inputs [rows, out] and the bias it holds, a fourth
/// input that candle's custom ops have no slot for.
struct RatioFromOutput {
    bias: Tensor,
}

impl RatioFromOutput {
    fn kernel_name(&self) -> &'static str {
        "alpha_beta_ratio_from_output"
    }

    /// The columns (the bias's length), after checking the inputs' shapes against them.
    fn columns(&self, shapes: &[&Shape]) -> candle_core::Result<usize> {
        let cols = self.bias.elem_count();
        let first = shapes[0];
        if cols == 0 || first.dims().last() != Some(&cols) || shapes.iter().any(|s| *s != first) {
            candle_core::bail!(
                "{}: inputs of one shape [.., {cols}] expected, got {shapes:?}",
                self.kernel_name()
            );
        }
        Ok(cols)
    }

    fn cpu(&self, inputs: &[(&CpuStorage, &Layout)]) -> candle_core::Result<(CpuStorage, Shape)> {
        let shapes: Vec<&Shape> = inputs.iter().map(|(_, l)| l.shape()).collect();
        self.columns(&shapes)?;
        let (bias, bias_layout) = self.bias.storage_and_layout();
        let candle_core::Storage::Cpu(bias) = &*bias else {
            candle_core::bail!("{}: the bias is on another device", self.kernel_name());
        };
        let mut all = inputs.to_vec();
        all.push((bias, bias_layout));
        Ok((on_cpu_slices(self, &all)?, shapes[0].clone()))
    }
}

impl CpuKernel for RatioFromOutput {
    fn name(&self) -> &'static str {
        self.kernel_name()
    }
    fn run<T: Float>(&self, inputs: &[&[T]]) -> Vec<T> {
        let (r, y, t, b) = (inputs[0], inputs[1], inputs[2], inputs[3]);
        let cols = b.len();
        (0..r.len())
            .map(|i| safe_divide_element(r[i], ((y[i] - b[i % cols]) + t[i]) * T::HALF))
            .collect()
    }
}

custom_ops!(RatioFromOutput);

#[cfg(feature = "cuda")]
impl RatioFromOutput {
    fn cuda(
        &self,
        inputs: &[(&candle_core::CudaStorage, &Layout)],
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let shapes: Vec<&Shape> = inputs.iter().map(|(_, l)| l.shape()).collect();
        let cols = self.columns(&shapes)?;
        let (bias, bias_layout) = self.bias.storage_and_layout();
        let candle_core::Storage::Cuda(bias) = &*bias else {
            candle_core::bail!("{}: the bias is on another device", self.kernel_name());
        };
        let mut all = inputs.to_vec();
        all.push((bias, bias_layout));
        let storage = cuda::launch_with_columns(self.kernel_name(), &all, cols)?;
        Ok((storage, shapes[0].clone()))
    }
}

/// An op's arithmetic on the CPU, for either float type.
pub(crate) trait CpuKernel {
    fn name(&self) -> &'static str;
    fn run<T: Float>(&self, inputs: &[&[T]]) -> Vec<T>;
}

impl CpuKernel for Fused {
    fn name(&self) -> &'static str {
        self.kernel_name()
    }
    fn run<T: Float>(&self, inputs: &[&[T]]) -> Vec<T> {
        Fused::run(*self, inputs)
    }
}

/// Runs `kernel` on the contiguous elements of `inputs`, which must share one float dtype.
pub(crate) fn on_cpu_slices<K: CpuKernel>(
    kernel: &K,
    inputs: &[(&CpuStorage, &Layout)],
) -> candle_core::Result<CpuStorage> {
    // The inputs' elements as slices of one type, picked from each storage by `pick`.
    fn slices<'a, T>(
        name: &str,
        inputs: &[(&'a CpuStorage, &Layout)],
        pick: impl Fn(&'a CpuStorage) -> Option<&'a [T]>,
    ) -> candle_core::Result<Vec<&'a [T]>> {
        inputs
            .iter()
            .map(
                |(storage, layout)| match (pick(storage), layout.contiguous_offsets()) {
                    (Some(data), Some((start, end))) => Ok(&data[start..end]),
                    (None, _) => candle_core::bail!("{name}: mixed dtypes"),
                    (_, None) => candle_core::bail!("{name} needs contiguous inputs"),
                },
            )
            .collect()
    }
    let name = kernel.name();
    Ok(match inputs[0].0 {
        CpuStorage::F32(_) => CpuStorage::F32(kernel.run(&slices(name, inputs, |s| match s {
            CpuStorage::F32(d) => Some(d.as_slice()),
            _ => None,
        })?)),
        CpuStorage::F64(_) => CpuStorage::F64(kernel.run(&slices(name, inputs, |s| match s {
            CpuStorage::F64(d) => Some(d.as_slice()),
            _ => None,
        })?)),
        _ => candle_core::bail!("{name} needs f32 or f64 tensors"),
    })
}

/// candle's `CustomOp1`, `CustomOp2` and `CustomOp3` for an op type with the methods
/// `kernel_name(&self)`, `cpu(&self, inputs)` and, with the `cuda` feature, `cuda(&self, inputs)`,
/// each over the (storage, layout) pairs of its inputs.
macro_rules! custom_ops {
    ($op:ty) => {
        impl candle_core::CustomOp1 for $op {
            fn name(&self) -> &'static str {
                self.kernel_name()
            }

            fn cpu_fwd(
                &self,
                s1: &candle_core::CpuStorage,
                l1: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                self.cpu(&[(s1, l1)])
            }

            #[cfg(feature = "cuda")]
            fn cuda_fwd(
                &self,
                s1: &candle_core::CudaStorage,
                l1: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
                self.cuda(&[(s1, l1)])
            }
        }

        impl candle_core::CustomOp2 for $op {
            fn name(&self) -> &'static str {
                self.kernel_name()
            }

            fn cpu_fwd(
                &self,
                s1: &candle_core::CpuStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CpuStorage,
                l2: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                self.cpu(&[(s1, l1), (s2, l2)])
            }

            #[cfg(feature = "cuda")]
            fn cuda_fwd(
                &self,
                s1: &candle_core::CudaStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CudaStorage,
                l2: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
                self.cuda(&[(s1, l1), (s2, l2)])
            }
        }

        impl candle_core::CustomOp3 for $op {
            fn name(&self) -> &'static str {
                self.kernel_name()
            }

            fn cpu_fwd(
                &self,
                s1: &candle_core::CpuStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CpuStorage,
                l2: &candle_core::Layout,
                s3: &candle_core::CpuStorage,
                l3: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                self.cpu(&[(s1, l1), (s2, l2), (s3, l3)])
            }

            #[cfg(feature = "cuda")]
            fn cuda_fwd(
                &self,
                s1: &candle_core::CudaStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CudaStorage,
                l2: &candle_core::Layout,
                s3: &candle_core::CudaStorage,
                l3: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
                self.cuda(&[(s1, l1), (s2, l2), (s3, l3)])
            }
        }
    };
}
use custom_ops;

custom_ops!(Fused);

#[cfg(feature = "cuda")]
impl Fused {
    fn cuda(
        &self,
        inputs: &[(&candle_core::CudaStorage, &Layout)],
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::run(*self, inputs)
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::sync::OnceLock;

    use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::cudarc::nvrtc::{self, CompileOptions};
    use candle_core::cuda_backend::{CudaDType, CudaStorage, CudaStorageSlice, WrapErr};
    use candle_core::{Device, Layout, Shape, WithDType};

    use super::Fused;

    const MODULE: &str = "tokenlens_fused";
    // The element rules of `Fused::run`, in the same order of operations; IEEE division and no
    // contraction of a product and a sum into one rounding, as on the CPU.
    const SOURCE: &str = r#"
typedef unsigned long long u64;
#define EACH(n) for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < (n); \
                     i += (u64)gridDim.x * blockDim.x)

template <typename T> __device__ T safe_div(T a, T b) {
    if (b == T(0)) return T(0);
    T den = b + T(1e-9);
    if (den == T(0)) den += T(1e-9);
    return a / den;
}
template <typename T> __device__ void safe_divide(const T *a, const T *b, T *out, u64 n) {
    EACH(n) out[i] = safe_div(a[i], b[i]);
}
template <typename T>
__device__ void alpha_beta_ratio(const T *r, const T *xw, const T *t, T *out, u64 n) {
    EACH(n) out[i] = safe_div(r[i], (xw[i] + t[i]) * T(0.5));
}
template <typename T>
__device__ void alpha_beta_ratio_from_output(const T *r, const T *y, const T *t, const T *b,
                                             T *out, u64 n, u64 cols) {
    EACH(n) out[i] = safe_div(r[i], ((y[i] - b[i % cols]) + t[i]) * T(0.5));
}
template <typename T>
__device__ void add_row(const T *y, const T *b, T *out, u64 n, u64 cols) {
    EACH(n) out[i] = y[i] + b[i % cols];
}
template <typename T>
__device__ void scale_groups(const T *x, const T *f, T *out, u64 n, u64 group) {
    EACH(n) out[i] = x[i] * f[i / group];
}
template <typename T>
__device__ void divide_groups(const T *x, const T *d, T *out, u64 n, u64 group) {
    EACH(n) out[i] = x[i] / d[i / group];
}
template <typename T>
__device__ void alpha_beta_input(const T *x, const T *u, const T *v, T *out, u64 n) {
    EACH(n) {
        const T xi = x[i];
        out[i] = (xi * u[i] + fabs(xi) * v[i]) * T(0.5);
    }
}
template <typename T> __device__ void gelu(const T *x, T *out, u64 n) {
    EACH(n) {
        const T v = x[i];
        out[i] = (v * T(0.5)) * (erf(v * T(0.70710678118654752440)) + T(1));
    }
}
template <typename T> __device__ void gelu_backward(const T *dy, const T *x, T *out, u64 n) {
    EACH(n) {
        const T v = x[i];
        const T cdf = (erf(v * T(0.70710678118654752440)) + T(1)) * T(0.5);
        const T pdf = exp((v * v) * T(-0.5)) * T(0.39894228040143267794);
        out[i] = dy[i] * (cdf + v * pdf);
    }
}
template <typename T> __device__ void half_product(const T *a, const T *u, T *out, u64 n) {
    EACH(n) out[i] = (a[i] * u[i]) * T(0.5);
}
template <typename T>
__device__ void renormalisation(const T *sum_a, const T *sum_b, const T *total, T *out, u64 n) {
    EACH(n) {
        const T abs_a = fabs(sum_a[i]);
        const T abs_b = fabs(sum_b[i]);
        const T abs_total = abs_a + abs_b;
        const T factor_a = safe_div(abs_a, abs_total) * total[i];
        const T factor_b = safe_div(abs_b, abs_total) * total[i];
        out[i] = safe_div(factor_a, sum_a[i]);
        out[n + i] = safe_div(factor_b, sum_b[i]);
    }
}

#define BOTH(name, params, args) \
    extern "C" __global__ void name##_f32 params(float) { name<float> args; } \
    extern "C" __global__ void name##_f64 params(double) { name<double> args; }
#define P1(T) (const T *a, T *out, u64 n)
#define P2(T) (const T *a, const T *b, T *out, u64 n)
#define P3(T) (const T *a, const T *b, const T *c, T *out, u64 n)
#define P2C(T) (const T *a, const T *b, T *out, u64 n, u64 cols)
#define P4C(T) (const T *a, const T *b, const T *c, const T *d, T *out, u64 n, u64 cols)
BOTH(safe_divide, P2, (a, b, out, n))
BOTH(half_product, P2, (a, b, out, n))
BOTH(gelu, P1, (a, out, n))
BOTH(gelu_backward, P2, (a, b, out, n))
BOTH(alpha_beta_ratio, P3, (a, b, c, out, n))
BOTH(alpha_beta_input, P3, (a, b, c, out, n))
BOTH(add_row, P2C, (a, b, out, n, cols))
BOTH(scale_groups, P2C, (a, b, out, n, cols))
BOTH(divide_groups, P2C, (a, b, out, n, cols))
BOTH(alpha_beta_ratio_from_output, P4C, (a, b, c, d, out, n, cols))
BOTH(renormalisation, P3, (a, b, c, out, n))
"#;

    /// The module's PTX, or why NVRTC could not make it (compiled once per process).
    fn ptx() -> &'static Result<String, String> {
        static PTX: OnceLock<Result<String, String>> = OnceLock::new();
        PTX.get_or_init(|| {
            let options = CompileOptions {
                fmad: Some(false),
                ..Default::default()
            };
            let source = [SOURCE, super::rows::CUDA_SOURCE].concat();
            let ptx = nvrtc::compile_ptx_with_opts(source, options)
                .map(|ptx| ptx.to_src())
                .map_err(|e| e.to_string());
            if let Err(e) = &ptx {
                // Results stay right (the composite ops run instead), but slower: say so once.
                eprintln!("tokenlens: fused GPU kernels unavailable, NVRTC failed: {e}");
            }
            ptx
        })
    }

    pub(super) fn available(device: &Device) -> bool {
        matches!(device, Device::Cuda(_)) && ptx().is_ok()
    }

    /// Launches kernel `name` (suffixed with the dtype) on contiguous `inputs`, followed in its
    /// parameters by the output (`output_len` elements), the `counts` and, if any, `param`.
    pub(super) fn launch<T: CudaDType + DeviceRepr + WithDType>(
        name: &str,
        inputs: &[(&CudaStorage, &Layout)],
        output_len: usize,
        counts: &[u64],
        param: Option<f64>,
        config: LaunchConfig,
    ) -> candle_core::Result<CudaStorage> {
        let ptx = match ptx() {
            Ok(ptx) => ptx,
            Err(e) => candle_core::bail!("{name}: NVRTC failed: {e}"),
        };
        let device = &inputs[0].0.device;
        let views = inputs
            .iter()
            .map(|(storage, layout)| match layout.contiguous_offsets() {
                Some((start, end)) => Ok(storage.as_cuda_slice::<T>()?.slice(start..end)),
                None => candle_core::bail!("{name} needs contiguous inputs"),
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let func = device.get_or_load_custom_func(
            &format!("{name}_{}", T::DTYPE.as_str()),
            MODULE,
            ptx,
        )?;
        // SAFETY: every kernel of the module writes each of its output's elements.
        let out = unsafe { device.alloc::<T>(output_len)? };
        let mut builder = func.builder();
        for view in &views {
            builder.arg(view);
        }
        builder.arg(&out);
        for count in counts {
            builder.arg(count);
        }
        if let Some(param) = &param {
            builder.arg(param);
        }
        // SAFETY: the arguments match the kernel's parameters (inputs, output, counts, param).
        unsafe { builder.launch(config) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(out, device.clone()))
    }

    fn launch_elementwise<T: CudaDType + DeviceRepr + WithDType>(
        op: Fused,
        inputs: &[(&CudaStorage, &Layout)],
    ) -> candle_core::Result<CudaStorage> {
        let n = inputs[0].1.shape().elem_count();
        launch::<T>(
            op.kernel_name(),
            inputs,
            op.output_len(n),
            &[n as u64],
            None,
            LaunchConfig::for_num_elems(n as u32),
        )
    }

    /// An elementwise kernel over the first input's elements whose last input is repeated over
    /// them (parameters: inputs, output, count, and `cols`: that input's extent).
    pub(super) fn launch_with_columns(
        name: &str,
        inputs: &[(&CudaStorage, &Layout)],
        cols: usize,
    ) -> candle_core::Result<CudaStorage> {
        let n = inputs[0].1.shape().elem_count();
        let counts = [n as u64, cols as u64];
        let config = LaunchConfig::for_num_elems(n as u32);
        match &inputs[0].0.slice {
            CudaStorageSlice::F32(_) => launch::<f32>(name, inputs, n, &counts, None, config),
            CudaStorageSlice::F64(_) => launch::<f64>(name, inputs, n, &counts, None, config),
            _ => candle_core::bail!("{name} needs f32 or f64 tensors"),
        }
    }

    pub fn run(
        op: Fused,
        inputs: &[(&CudaStorage, &Layout)],
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let shape = inputs[0].1.shape().clone();
        if inputs.iter().any(|(_, l)| l.shape() != &shape) {
            candle_core::bail!("{}: inputs of different shapes", op.kernel_name());
        }
        let storage = match &inputs[0].0.slice {
            CudaStorageSlice::F32(_) => launch_elementwise::<f32>(op, inputs)?,
            CudaStorageSlice::F64(_) => launch_elementwise::<f64>(op, inputs)?,
            _ => candle_core::bail!("{} needs f32 or f64 tensors", op.kernel_name()),
        };
        let shape = match op.output_len(1) {
            1 => shape,
            _ => Shape::from(op.output_len(shape.elem_count())),
        };
        Ok((storage, shape))
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    pub fn available(_device: &candle_core::Device) -> bool {
        false
    }
}

/// Every element of `t` as f64, in row-major order (tests).
#[cfg(test)]
fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// max |a − b| / max |b| over all elements: the tests' measure of how far a fused op is from the
/// composite ops it replaces.
#[cfg(test)]
pub(crate) fn max_relative_difference(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (values(a), values(b));
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The composite tensor ops each fused op replaces, as the rules were written before.
    fn composite_safe_div(a: &Tensor, b: &Tensor) -> Tensor {
        let den = b.affine(1.0, 1e-9).unwrap();
        let den = (&den
            + den
                .eq(0.0)
                .unwrap()
                .to_dtype(den.dtype())
                .unwrap()
                .affine(1e-9, 0.0)
                .unwrap())
        .unwrap();
        let keep = b.ne(0.0).unwrap().to_dtype(b.dtype()).unwrap();
        a.broadcast_div(&den).unwrap().broadcast_mul(&keep).unwrap()
    }

    fn tensor(values: &[f64], dtype: DType) -> Tensor {
        Tensor::new(values, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    #[test]
    fn fused_ops_equal_the_composite_ops_they_replace_in_both_precisions() {
        // Zeros, a sum that cancels, a denominator of exactly -1e-9, signs of every kind.
        let a = [0.5, -2.0, 0.0, 3.0, -1e-9, 7.25, 1e-12, -0.3];
        let b = [0.25, 2.0, 0.0, -3.0, 1e-9, -1e-9, 4.0, 0.0];
        let r = [1.0, -0.5, 2.0, 0.75, 3.0, -1.5, 0.0, 0.2];
        for dtype in [DType::F32, DType::F64] {
            let (a, b, r) = (tensor(&a, dtype), tensor(&b, dtype), tensor(&r, dtype));
            assert!(available(&Device::Cpu, &[&a, &b, &r]));

            assert_eq!(
                values(&safe_divide(&r, &b).unwrap()),
                values(&composite_safe_div(&r, &b)),
                "{dtype:?}"
            );

            let z = (&a + &b).unwrap().affine(0.5, 0.0).unwrap();
            assert_eq!(
                values(&alpha_beta_ratio(&r, &a, &b).unwrap()),
                values(&composite_safe_div(&r, &z)),
                "{dtype:?}"
            );

            // The same ratio from an output with a bias ([4], broadcast over 2 rows).
            let bias = tensor(&[0.5, -0.25, 1e-9, 3.0], dtype);
            let rows = |t: &Tensor| t.reshape((2, 4)).unwrap();
            let output = rows(&a).broadcast_add(&bias).unwrap();
            let xw = output.broadcast_sub(&bias).unwrap();
            let z = (&xw + rows(&b)).unwrap().affine(0.5, 0.0).unwrap();
            assert_eq!(
                values(
                    &alpha_beta_ratio_from_output(&rows(&r), &output, &rows(&b), &bias).unwrap()
                ),
                values(&composite_safe_div(&rows(&r), &z)),
                "{dtype:?}"
            );
            assert!(alpha_beta_ratio_from_output(&r, &a, &b, &bias).is_err());
            assert_eq!(
                values(&add_row(&rows(&a), &bias).unwrap()),
                values(&output),
                "{dtype:?}"
            );
            let factors = tensor(&[2.0, -0.5], dtype);
            assert_eq!(
                values(&scale_groups(&rows(&a), &factors).unwrap()),
                values(
                    &rows(&a)
                        .broadcast_mul(&factors.reshape((2, 1)).unwrap())
                        .unwrap()
                ),
                "{dtype:?}"
            );
            let four = tensor(&[2.0, -0.5, 3.0, 1e-3], dtype);
            let cube = a.reshape((4, 2, 1)).unwrap();
            assert_eq!(
                values(&scale_groups(&cube, &four).unwrap()),
                values(
                    &cube
                        .broadcast_mul(&four.reshape((4, 1, 1)).unwrap())
                        .unwrap()
                ),
                "{dtype:?}"
            );
            let divisors = tensor(&[3.0, -7.0, 0.1, 1e-3], dtype);
            assert_eq!(
                values(&divide_groups(&cube, &divisors).unwrap()),
                values(
                    &cube
                        .broadcast_div(&divisors.reshape((4, 1, 1)).unwrap())
                        .unwrap()
                ),
                "{dtype:?}"
            );
            assert!(add_row(&a, &bias).is_err());
            assert!(scale_groups(&a, &tensor(&[1.0, 2.0, 3.0], dtype)).is_err());

            let expected = ((&a * &b).unwrap() + (a.abs().unwrap() * &r).unwrap())
                .unwrap()
                .affine(0.5, 0.0)
                .unwrap();
            assert_eq!(
                values(&alpha_beta_input(&a, &b, &r).unwrap()),
                values(&expected),
                "{dtype:?}"
            );

            let x = (&a * 1e8).unwrap().clamp(-6.0, 6.0).unwrap();
            let erf = x
                .affine(std::f64::consts::FRAC_1_SQRT_2, 0.0)
                .unwrap()
                .erf()
                .unwrap();
            let expected = ((&x * 0.5).unwrap() * (&erf + 1.0).unwrap()).unwrap();
            assert_eq!(values(&gelu(&x).unwrap()), values(&expected), "{dtype:?}");
            let cdf = ((erf + 1.0).unwrap() * 0.5).unwrap();
            let pdf = (x.sqr().unwrap().affine(-0.5, 0.0).unwrap().exp().unwrap()
                * (1.0 / (2.0 * std::f64::consts::PI).sqrt()))
            .unwrap();
            let derivative = (cdf + (&x * pdf).unwrap()).unwrap();
            assert_eq!(
                values(&gelu_backward(&r, &x).unwrap()),
                values(&(&r * derivative).unwrap()),
                "{dtype:?}"
            );

            assert_eq!(
                values(&half_product(&a, &b).unwrap()),
                values(&(&a * &b).unwrap().affine(0.5, 0.0).unwrap()),
                "{dtype:?}"
            );

            let total = (&r * 3.0).unwrap();
            let (abs_a, abs_b) = (a.abs().unwrap(), b.abs().unwrap());
            let abs_total = (&abs_a + &abs_b).unwrap();
            let factor_a = (composite_safe_div(&abs_a, &abs_total) * &total).unwrap();
            let factor_b = (composite_safe_div(&abs_b, &abs_total) * &total).unwrap();
            let mut expected = values(&composite_safe_div(&factor_a, &a));
            expected.extend(values(&composite_safe_div(&factor_b, &b)));
            let factors = renormalisation(&a, &b, &total).unwrap();
            assert_eq!(factors.dims(), &[2, 8]);
            assert_eq!(values(&factors), expected, "{dtype:?}");
        }
    }

    #[test]
    fn fused_ops_read_views_and_refuse_mixed_or_integer_inputs() {
        let base = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let transposed = base.t().unwrap();
        let divided = safe_divide(
            &transposed,
            &Tensor::ones((2, 2), DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap();
        assert_eq!(values(&divided), [1.0, 3.0, 2.0, 4.0]);

        let f64s = base.to_dtype(DType::F64).unwrap();
        assert!(!available(&Device::Cpu, &[&base, &f64s]));
        assert!(safe_divide(&base, &f64s).is_err());
        let ints = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
        assert!(!available(&Device::Cpu, &[&ints]));
        let empty = Tensor::zeros(0, DType::F32, &Device::Cpu).unwrap();
        assert!(!available(&Device::Cpu, &[&empty]));
    }
}
