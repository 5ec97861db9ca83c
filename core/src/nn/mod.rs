//! Building blocks shared by the U-Net, the VAE and the CLIP towers, one per file.

pub mod attention;
pub mod conv;
#[cfg(feature = "cpu-kernels")]
pub mod cpu_conv;
#[cfg(feature = "cpu-kernels")]
pub mod cpu_matmul;
#[cfg(feature = "cpu-kernels")]
pub mod cpu_pointwise;
#[cfg(feature = "cpu-kernels")]
pub mod cpu_pool;
pub mod lora;
pub mod matmul;
pub mod params;
pub mod pool;
pub mod recomputed_attention;
pub mod resnet;
pub mod sampling;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

/// `nn.Linear(d_in, d_out, bias)`.
pub fn linear<B: Backend>(d_in: usize, d_out: usize, bias: bool, device: &B::Device) -> Linear<B> {
    LinearConfig::new(d_in, d_out).with_bias(bias).init(device)
}

/// `nn.Conv2d(c_in, c_out, kernel, stride, padding)` with symmetric padding.
pub fn conv2d<B: Backend>(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    device: &B::Device,
) -> Conv2d<B> {
    Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .init(device)
}

/// `nn.GroupNorm(groups, channels, eps, affine=True)`.
pub fn group_norm<B: Backend>(
    groups: usize,
    channels: usize,
    eps: f64,
    device: &B::Device,
) -> GroupNorm<B> {
    GroupNormConfig::new(groups, channels)
        .with_epsilon(eps)
        .init(device)
}

/// `nn.LayerNorm(dim, eps)`.
pub fn layer_norm<B: Backend>(dim: usize, eps: f64, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(dim).with_epsilon(eps).init(device)
}

/// A normalisation computed in f32 whatever the input's dtype, and returned in that dtype. PyTorch's bf16
/// kernels (and CUDA autocast) do the same: a mean and a variance over hundreds of elements lose too much in
/// bf16's 8-bit mantissa. f32 and f64 inputs run as they are.
pub fn normalize_in_f32<B: Backend, const D: usize, M: Module<B>>(
    norm: &M,
    x: Tensor<B, D>,
    forward: fn(&M, Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    let half = match x.dtype() {
        DType::BF16 => FloatDType::BF16,
        DType::F16 => FloatDType::F16,
        _ => return forward(norm, x),
    };
    let norm = params::cast_params(norm.clone(), FloatDType::F32);
    forward(&norm, x.cast(FloatDType::F32)).cast(half)
}

/// `norm.forward(x)` as `normalize_in_f32` runs it; on plain ndarray in one threaded pass
/// (`nn::cpu_pointwise`), bit for bit.
pub fn group_normed<B: Backend, const D: usize>(
    norm: &GroupNorm<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    group_normed_then(norm, x, false)
}

/// `silu(group_normed(norm, x))`, the resnets' and the output's pre-activation; on plain ndarray in one
/// threaded pass.
pub fn group_normed_silu<B: Backend, const D: usize>(
    norm: &GroupNorm<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    group_normed_then(norm, x, true)
}

fn group_normed_then<B: Backend, const D: usize>(
    norm: &GroupNorm<B>,
    x: Tensor<B, D>,
    then_silu: bool,
) -> Tensor<B, D> {
    #[cfg(feature = "cpu-kernels")]
    let x = match cpu_pointwise::group_norm(norm, x, then_silu) {
        Ok(out) => return out,
        Err(x) => x,
    };
    let normed = normalize_in_f32(norm, x, GroupNorm::forward);
    if then_silu { silu(normed) } else { normed }
}

/// `a + b` for tensors of the same shape (a residual connection); on plain ndarray in one threaded pass
/// (`nn::cpu_pointwise`), bit for bit.
pub fn residual<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "cpu-kernels")]
    let (a, b) = match cpu_pointwise::sum(a, b) {
        Ok(out) => return out,
        Err(operands) => operands,
    };
    a + b
}

/// GEGLU: `value · gelu(gate)`, `[value, gate]` the two halves of the last dim; on plain ndarray in one
/// threaded pass (`nn::cpu_pointwise`), bit for bit.
pub fn geglu<B: Backend>(projected: Tensor<B, 3>) -> Tensor<B, 3> {
    #[cfg(feature = "cpu-kernels")]
    let projected = match cpu_pointwise::geglu(projected) {
        Ok(out) => return out,
        Err(projected) => projected,
    };
    let [value, gate] = projected
        .chunk(2, 2)
        .try_into()
        .expect("GEGLU splits in two");
    value * gelu(gate)
}

/// Splits `[B, L, H*D]` into heads `[B, H, L, D]`.
pub fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [b, l, c] = x.dims();
    x.reshape([b, l, heads, c / heads]).swap_dims(1, 2)
}

/// Merges heads `[B, H, L, D]` back into `[B, L, H*D]`.
pub fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, h, l, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, l, h * d])
}

/// `[B, C, H, W]` → `[B, H*W, C]` (channels last, as diffusers flattens feature maps for attention).
pub fn to_tokens<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h * w]).swap_dims(1, 2)
}

/// A ViT's input tokens: `[N, C, S, S]` pixel values cut into patches by `patch_embedding` (a stride-`patch`
/// convolution), the learnt class token `[D]` put in front, then the learnt positions `[1 + patches, D]` added.
/// `S` must be `image_size`, the only size the positions fit.
pub fn vit_tokens<B: Backend>(
    patch_embedding: &Conv2d<B>,
    class_embedding: Tensor<B, 1>,
    positions: Tensor<B, 2>,
    pixel_values: Tensor<B, 4>,
    image_size: usize,
) -> Tensor<B, 3> {
    let [n, _, h, w] = pixel_values.dims();
    assert!(
        h == image_size && w == image_size,
        "vision input is {h}×{w}, the model takes {image_size}×{image_size} (resize first)"
    );
    let patches = to_tokens(conv::apply(patch_embedding, pixel_values));
    let d = patches.dims()[2];
    let class_token = class_embedding.reshape([1, 1, d]).expand([n, 1, d]);
    Tensor::cat(vec![class_token, patches], 1) + positions.unsqueeze::<3>()
}

/// `[B, H*W, C]` → `[B, C, H, W]`.
pub fn from_tokens<B: Backend>(x: Tensor<B, 3>, h: usize, w: usize) -> Tensor<B, 4> {
    let [b, _, c] = x.dims();
    x.swap_dims(1, 2).reshape([b, c, h, w])
}

/// SiLU `x·σ(x)`. In f64 it is written `½x + ½x·tanh(x/2)` (σ(x) = ½(1 + tanh(x/2))) with tensor ops, since
/// burn 0.21's `sigmoid` (and so `activation::silu`) casts to f32 inside whatever the backend's float type,
/// which held an f64 U-Net to ≈ 1e-7 of PyTorch's float64. Other precisions keep burn's fused op, so f32
/// results (the toy world's, the demo's numbers) stay as they were.
///
/// On plain ndarray the same operations run in one threaded pass (`nn::cpu_pointwise`), bit for bit.
pub fn silu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "cpu-kernels")]
    let x = match cpu_pointwise::apply(cpu_pointwise::Pointwise::Silu, x) {
        Ok(out) => return out,
        Err(x) => x,
    };
    if x.dtype() != burn::tensor::DType::F64 {
        return burn::tensor::activation::silu(x);
    }
    let half = x * 0.5;
    half.clone() + half.clone() * half.tanh()
}

/// Exact GELU, `x·Φ(x) = ½x·(1 + erf(x/√2))`, written with tensor ops so autodiff differentiates it exactly.
/// burn 0.21's fused `gelu` computes the exact value but back-propagates the derivative of the tanh
/// approximation (≈ 7e-5 relative gradient error through the U-Net, against PyTorch). On plain ndarray the
/// same operations run in one threaded pass (`nn::cpu_pointwise`), bit for bit.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "cpu-kernels")]
    let x = match cpu_pointwise::apply(cpu_pointwise::Pointwise::Gelu, x) {
        Ok(out) => return out,
        Err(x) => x,
    };
    (x.clone() / std::f64::consts::SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul(x)
        * 0.5
}
