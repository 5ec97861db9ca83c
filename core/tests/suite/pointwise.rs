//! On plain ndarray `nn::silu`, `nn::gelu`, `nn::geglu`, `nn::group_normed`, `nn::group_normed_silu` and
//! `nn::residual` run `nn::cpu_pointwise` (one threaded pass each), and give burn's ops bit for bit: f32 and
//! f64, contiguous and transposed inputs, groups whose length is not a multiple of ndarray's eight summing
//! lanes, and values large enough to overflow `exp` inside burn's sigmoid.

use burn::backend::NdArray;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use popalign_core::nn;

/// burn's ops as `nn::silu` wrote them before the kernel: `activation::silu` in f32, `½x + ½x·tanh(½x)` in f64.
fn burns_silu<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    if x.dtype() == burn::tensor::DType::F64 {
        let half = x * 0.5;
        return half.clone() + half.clone() * half.tanh();
    }
    burn::tensor::activation::silu(x)
}

fn burns_gelu<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    (x.clone() / std::f64::consts::SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul(x)
        * 0.5
}

fn inputs<B: Backend>() -> Vec<(&'static str, Tensor<B, 4>)> {
    let device = Default::default();
    let normal =
        |shape: [usize; 4]| Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 3.0), &device);
    vec![
        ("contiguous", normal([2, 32, 5, 7])),
        ("transposed", normal([2, 32, 7, 5]).swap_dims(2, 3)),
        (
            "values to ±200",
            Tensor::random([1, 16, 4, 4], Distribution::Uniform(-200.0, 200.0), &device),
        ),
    ]
}

fn norm<B: Backend>(channels: usize) -> GroupNorm<B> {
    let device = Default::default();
    let mut norm = GroupNormConfig::new(8, channels)
        .with_epsilon(1e-6)
        .init::<B>(&device);
    let random = || Tensor::<B, 1>::random([channels], Distribution::Normal(0.0, 1.0), &device);
    norm.gamma = Some(burn::module::Param::from_tensor(random()));
    norm.beta = Some(burn::module::Param::from_tensor(random()));
    norm
}

fn same_bytes<B: Backend>(ours: Tensor<B, 4>, burns: Tensor<B, 4>, what: &str) {
    let (ours, burns) = (ours.into_data(), burns.into_data());
    assert_eq!(ours.shape, burns.shape, "{what}");
    assert_eq!(ours.as_bytes(), burns.as_bytes(), "{what}");
}

fn check<B: Backend>() {
    assert!(nn::cpu_matmul::runs_plain_on::<B>());
    for (name, x) in inputs::<B>() {
        same_bytes(
            nn::silu(x.clone()),
            burns_silu(x.clone()),
            &format!("silu, {name}"),
        );
        same_bytes(
            nn::gelu(x.clone()),
            burns_gelu(x.clone()),
            &format!("gelu, {name}"),
        );
        let other = Tensor::<B, 4>::random(x.dims(), Distribution::Normal(0.0, 1.0), &x.device());
        same_bytes(
            nn::residual(x.clone(), other.clone()),
            x.clone() + other.clone(),
            &format!("residual sum, {name}"),
        );
        same_bytes(
            nn::residual(other.clone(), x.clone()),
            other + x.clone(),
            &format!("residual sum, {name} second"),
        );
        let [n, c, h, w] = x.dims();
        let tokens = x.clone().reshape([n, c, h * w]).swap_dims(1, 2);
        let [value, gate] = tokens.clone().chunk(2, 2).try_into().unwrap();
        let burns_geglu = value * burns_gelu(gate.unsqueeze::<4>()).squeeze_dim::<3>(0);
        same_bytes(
            nn::geglu(tokens).unsqueeze::<4>(),
            burns_geglu.unsqueeze(),
            &format!("geglu, {name}"),
        );
        let norm = norm::<B>(x.dims()[1]);
        let burns = norm.forward(x.clone());
        same_bytes(
            nn::group_normed(&norm, x.clone()),
            burns.clone(),
            &format!("group norm, {name}"),
        );
        same_bytes(
            nn::group_normed_silu(&norm, x),
            burns_silu(burns),
            &format!("group norm and silu, {name}"),
        );
    }
}

#[test]
fn pointwise_kernels_are_burns_bit_for_bit_f32() {
    check::<NdArray<f32>>();
}

#[test]
fn pointwise_kernels_are_burns_bit_for_bit_f64() {
    check::<NdArray<f64>>();
}
