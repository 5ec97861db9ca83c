//! SiLU, GELU, GEGLU, group norm (optionally followed by SiLU) and residual sums on burn-ndarray's buffers,
//! each one threaded pass.
//!
//! burn 0.21 writes these as chains of element-wise ops, each a single-threaded pass into a new array: SiLU
//! is seven (burn's sigmoid is `exp(−ln(exp(−x) + 1))`, then the product with `x`), our exact GELU five, group
//! norm nine. In the U-Net's forward pass they were about a third of the main thread's time (bench/NOTES.md,
//! "Element-wise layers in one pass"). Here each element goes through the same scalar operations in the same
//! order, and each group's sums are ndarray's eight-lane sums, so the results are burn's bit for bit; rayon
//! splits elements and groups, never a sum. Inference only: under autodiff the models keep burn's ops, whose
//! backward the tape needs.

use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::ops::FloatTensor;
use rayon::prelude::*;

use super::cpu_conv::{Real, recast, values};
use super::cpu_matmul::{eightfold_sum, float_tensor, for_plain_ndarray};

/// Elements per task of the element-wise passes.
const CHUNK: usize = 1 << 14;

/// SiLU as `nn::silu` computes it: burn's `x · sigmoid(x)` in f32, `½x + ½x·tanh(½x)` in f64.
fn silu<E: Real>(x: E) -> E {
    if E::DOUBLE {
        let half = x * E::of_f64(0.5);
        return half + half * half.tanh();
    }
    let minus = E::of_f64(-1.0);
    x * (((x * minus).exp() + E::of_f64(1.0)).ln() * minus).exp()
}

/// Exact GELU as `nn::gelu` computes it: `(erf(x / √2) + 1) · x · ½`.
fn gelu<E: Real>(x: E) -> E {
    ((x / E::of_f64(std::f64::consts::SQRT_2)).erf() + E::of_f64(1.0)) * x * E::of_f64(0.5)
}

/// `f` applied to every element of `x`, as a new tensor of the same shape.
fn mapped<E: Real, const D: usize>(x: FloatTensor<E::Cpu>, f: fn(E) -> E) -> FloatTensor<E::Cpu> {
    use burn::tensor::TensorMetadata;
    let shape = x.shape();
    let mut out = values::<E, D>(&x).into_owned();
    out.par_chunks_mut(CHUNK)
        .for_each(|chunk| chunk.iter_mut().for_each(|v| *v = f(*v)));
    float_tensor::<E>(out, shape)
}

/// A group norm's settings and affine parameters, as plain values.
struct GroupNorm<E> {
    groups: usize,
    epsilon: f64,
    gamma: Option<Vec<E>>,
    beta: Option<Vec<E>>,
    then_silu: bool,
}

/// burn's `group_norm` on `[n, c, …]`, each `[c / groups, …]` group of one sample a row: mean and variance as
/// `sum_dim(2) / len`, then `(x − mean) / sqrt(var + ε) · γ + β`, then SiLU where asked.
fn group_normed<E: Real, const D: usize>(
    x: FloatTensor<E::Cpu>,
    norm: &GroupNorm<E>,
) -> FloatTensor<E::Cpu> {
    use burn::tensor::TensorMetadata;
    let shape = x.shape();
    let channels = shape[1];
    let plane: usize = shape.iter().skip(2).product();
    let row = channels / norm.groups * plane;
    let mut out = values::<E, D>(&x).into_owned();
    let length = E::of_f64(row as f64);
    let epsilon = E::of_f64(norm.epsilon);
    if row > 0 {
        out.par_chunks_mut(row)
            .enumerate()
            .for_each(|(index, row)| {
                let mean = eightfold_sum(row) / length;
                row.iter_mut().for_each(|v| *v = *v - mean);
                let squares: Vec<E> = row.iter().map(|&v| v * v).collect();
                let denominator = (eightfold_sum(&squares) / length + epsilon).sqrt();
                let first_channel = index % norm.groups * (channels / norm.groups);
                for (i, v) in row.iter_mut().enumerate() {
                    let c = first_channel + i / plane;
                    let mut y = *v / denominator;
                    if let (Some(gamma), Some(beta)) = (&norm.gamma, &norm.beta) {
                        y = y * gamma[c] + beta[c];
                    }
                    *v = if norm.then_silu { silu(y) } else { y };
                }
            });
    }
    float_tensor::<E>(out, shape)
}

/// The kernel for plain ndarray `B`, where `x` holds `B`'s own float type (an `NdArray<f32>` tensor may hold
/// f64 values, which the f32 kernel must not convert).
fn kernel_for<B: Backend, const D: usize, F>(
    x: &Tensor<B, D>,
    f32_kernel: F,
    f64_kernel: F,
) -> Option<F> {
    let wanted = if std::any::TypeId::of::<B>() == std::any::TypeId::of::<<f64 as Real>::Cpu>() {
        burn::tensor::DType::F64
    } else {
        burn::tensor::DType::F32
    };
    for_plain_ndarray::<B, F>(f32_kernel, f64_kernel).filter(|_| x.dtype() == wanted)
}

fn primitive<B: Backend, const D: usize>(x: Tensor<B, D>) -> FloatTensor<B> {
    x.into_primitive().tensor()
}

fn tensor<B: Backend, const D: usize>(x: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(x))
}

/// An element-wise layer.
#[derive(Clone, Copy)]
pub enum Pointwise {
    /// `nn::silu`.
    Silu,
    /// `nn::gelu`.
    Gelu,
}

impl Pointwise {
    fn of<E: Real>(self) -> fn(E) -> E {
        match self {
            Self::Silu => silu::<E>,
            Self::Gelu => gelu::<E>,
        }
    }
}

/// `layer(x)` in one threaded pass on plain ndarray (f32, f64), or `x` back elsewhere.
pub fn apply<B: Backend, const D: usize>(
    layer: Pointwise,
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    type Kernel<B> = fn(FloatTensor<B>, Pointwise) -> FloatTensor<B>;
    fn via<B: Backend, E: Real, const D: usize>(
        x: FloatTensor<B>,
        layer: Pointwise,
    ) -> FloatTensor<B> {
        recast(mapped::<E, D>(recast(x), layer.of::<E>()))
    }
    match kernel_for(&x, via::<B, f32, D> as Kernel<B>, via::<B, f64, D>) {
        Some(kernel) => Ok(tensor(kernel(primitive(x), layer))),
        None => Err(x),
    }
}

/// `a + b` for tensors of the same shape, in one threaded pass on plain ndarray (f32, f64), or both back
/// elsewhere: the residual connections.
#[allow(clippy::type_complexity)]
pub fn sum<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    type Kernel<B> = fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>;
    fn via<B: Backend, E: Real, const D: usize>(
        a: FloatTensor<B>,
        b: FloatTensor<B>,
    ) -> FloatTensor<B> {
        use burn::tensor::TensorMetadata;
        let (a, b) = (
            recast::<_, FloatTensor<E::Cpu>>(a),
            recast::<_, FloatTensor<E::Cpu>>(b),
        );
        let shape = a.shape();
        let mut out = values::<E, D>(&a).into_owned();
        let addend = values::<E, D>(&b);
        out.par_chunks_mut(CHUNK)
            .zip(addend.par_chunks(CHUNK))
            .for_each(|(out, addend)| out.iter_mut().zip(addend).for_each(|(v, &w)| *v += w));
        recast(float_tensor::<E>(out, shape))
    }
    let kernel = kernel_for(&a, via::<B, f32, D> as Kernel<B>, via::<B, f64, D>)
        .filter(|_| a.dims() == b.dims() && b.dtype() == a.dtype());
    match kernel {
        Some(kernel) => Ok(tensor(kernel(primitive(a), primitive(b)))),
        None => Err((a, b)),
    }
}

/// GEGLU, `value · gelu(gate)` with `[value, gate]` the two halves of `projected`'s last dim, in one threaded
/// pass on plain ndarray (f32, f64), or `projected` back elsewhere.
pub fn geglu<B: Backend>(projected: Tensor<B, 3>) -> Result<Tensor<B, 3>, Tensor<B, 3>> {
    type Kernel<B> = fn(FloatTensor<B>) -> FloatTensor<B>;
    fn via<B: Backend, E: Real>(projected: FloatTensor<B>) -> FloatTensor<B> {
        use burn::tensor::TensorMetadata;
        let projected = recast::<_, FloatTensor<E::Cpu>>(projected);
        let shape = projected.shape();
        let half = shape[2] / 2;
        let input = values::<E, 3>(&projected);
        let mut out = vec![E::default(); shape[0] * shape[1] * half];
        if half > 0 {
            out.par_chunks_mut(half)
                .zip(input.par_chunks(2 * half))
                .for_each(|(out, row)| {
                    let (value, gate) = row.split_at(half);
                    out.iter_mut()
                        .zip(value.iter().zip(gate))
                        .for_each(|(o, (&v, &g))| *o = v * gelu(g));
                });
        }
        recast(float_tensor::<E>(out, [shape[0], shape[1], half]))
    }
    let kernel = kernel_for(&projected, via::<B, f32> as Kernel<B>, via::<B, f64>)
        .filter(|_| projected.dims()[2].is_multiple_of(2));
    match kernel {
        Some(kernel) => Ok(tensor(kernel(primitive(projected)))),
        None => Err(projected),
    }
}

/// `norm.forward(x)`, then SiLU where `then_silu`, in one threaded pass on plain ndarray (f32, f64), or `x`
/// back elsewhere.
pub fn group_norm<B: Backend, const D: usize>(
    norm: &burn::nn::GroupNorm<B>,
    x: Tensor<B, D>,
    then_silu: bool,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    type Kernel<B> = fn(FloatTensor<B>, &burn::nn::GroupNorm<B>, bool) -> FloatTensor<B>;
    fn via<B: Backend, E: Real, const D: usize>(
        x: FloatTensor<B>,
        norm: &burn::nn::GroupNorm<B>,
        then_silu: bool,
    ) -> FloatTensor<B> {
        let parameter = |p: &Option<burn::module::Param<Tensor<B, 1>>>| {
            p.as_ref()
                .map(|p| values::<E, 1>(&recast(primitive(p.val()))).into_owned())
        };
        let settings = GroupNorm {
            groups: norm.num_groups,
            epsilon: norm.epsilon,
            gamma: parameter(&norm.gamma),
            beta: parameter(&norm.beta),
            then_silu,
        };
        recast(group_normed::<E, D>(recast(x), &settings))
    }
    let usable = norm.affine == (norm.gamma.is_some() && norm.beta.is_some())
        && x.dims().len() >= 3
        && x.dims()[1] == norm.num_channels
        && norm.num_channels.is_multiple_of(norm.num_groups);
    match kernel_for(&x, via::<B, f32, D> as Kernel<B>, via::<B, f64, D>) {
        Some(kernel) if usable => Ok(tensor(kernel(primitive(x), norm, then_silu))),
        _ => Err(x),
    }
}
