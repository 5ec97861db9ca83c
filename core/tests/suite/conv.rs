//! `nn::conv::apply` on ndarray runs `nn::cpu_conv` (im2col and one gemm on the buffers, with its own
//! backward), and equals burn's own convolution, values and gradients, for every shape the models use: 3×3
//! stride 1 and 2, the VAE's asymmetric pad, 1×1, an unpadded 3×3, MTCNN's 2×2; with and without bias; with
//! and without gradient checkpointing, in f32 and f64; with a frozen weight or an input that needs no gradient.

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::backend::AutodiffBackend;
use popalign_core::nn::{conv, cpu_conv};

fn max_abs<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f64 {
    (a - b).abs().max().into_scalar().elem()
}

/// `(kernel, stride, padding, [h, w], bias)`.
fn cases() -> Vec<(usize, usize, PaddingConfig2d, [usize; 2], bool)> {
    vec![
        (3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1), [7, 9], true),
        (3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1), [7, 9], false),
        (3, 2, PaddingConfig2d::Explicit(1, 1, 1, 1), [7, 9], true),
        (3, 2, PaddingConfig2d::Explicit(0, 0, 1, 1), [8, 10], true),
        (1, 1, PaddingConfig2d::Explicit(0, 0, 0, 0), [5, 6], true),
        (3, 1, PaddingConfig2d::Valid, [6, 7], true),
        (2, 1, PaddingConfig2d::Valid, [5, 4], true),
    ]
}

fn layer<B: Backend>(
    kernel: usize,
    stride: usize,
    padding: PaddingConfig2d,
    bias: bool,
) -> Conv2d<B> {
    Conv2dConfig::new([5, 6], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(padding)
        .with_bias(bias)
        .init::<B>(&Default::default())
}

/// Max errors of values, input, weight and bias gradients against burn's convolution.
fn errors<B: AutodiffBackend>(layer: &Conv2d<B>, x: Tensor<B, 4>) -> [f64; 4] {
    let ours = conv::apply(layer, x.clone());
    let burns = layer.forward(x.clone());
    // A weighted sum, so that every output position has its own gradient.
    let probe = Tensor::<B, 4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &x.device());
    let g_ours = (ours.clone() * probe.clone()).sum().backward();
    let g_burn = (burns.clone() * probe).sum().backward();
    let weight = layer.weight.val();
    let bias = layer.bias.as_ref().map(|bias| bias.val());
    let bias_err = bias.map_or(0.0, |b| gradient_error(b.grad(&g_ours), b.grad(&g_burn)));
    let x_err = gradient_error(x.grad(&g_ours), x.grad(&g_burn));
    let weight_err = gradient_error(weight.grad(&g_ours), weight.grad(&g_burn));
    [
        max_abs(ours.inner(), burns.inner()),
        x_err,
        weight_err,
        bias_err,
    ]
}

/// Max error between two gradients; 0 where neither exists.
fn gradient_error<B: Backend, const D: usize>(
    ours: Option<Tensor<B, D>>,
    burns: Option<Tensor<B, D>>,
) -> f64 {
    match (ours, burns) {
        (Some(a), Some(b)) => max_abs(a, b),
        (None, None) => 0.0,
        (a, b) => panic!(
            "gradient present in ours: {}, in burn's: {}",
            a.is_some(),
            b.is_some()
        ),
    }
}

fn check<B: AutodiffBackend>(name: &str, bound: f64) {
    assert!(
        cpu_conv::runs_on::<B>() && cpu_conv::runs_on::<B::InnerBackend>(),
        "{name}"
    );
    for (kernel, stride, padding, [h, w], bias) in cases() {
        let layer = layer::<B>(kernel, stride, padding.clone(), bias);
        let device = Default::default();
        let x = Tensor::<B, 4>::random([2, 5, h, w], Distribution::Normal(0.0, 1.0), &device);
        let [value, dx, dw, db] = errors(&layer, x.clone().require_grad());
        println!(
            "{name} k{kernel} s{stride} {padding:?} bias {bias}: values {value:.1e}, dx {dx:.1e}, dw {dw:.1e}, db {db:.1e}"
        );
        assert!(
            value < bound && dx < bound && dw < 10.0 * bound && db < 10.0 * bound,
            "{name}"
        );
        // Inference on the inner backend equals burn's too.
        let inner = layer.valid();
        let plain = max_abs(
            conv::apply(&inner, x.clone().inner()),
            inner.forward(x.clone().inner()),
        );
        assert!(plain < bound, "{name}: inference {plain:.1e}");
        // A frozen weight and bias get no gradient, and the input's is the same as burn's.
        let frozen = layer.clone().no_grad();
        let [_, dx, dw, db] = errors(&frozen, x.clone().require_grad());
        assert!(
            dx < bound && dw == 0.0 && db == 0.0,
            "{name}: frozen weight"
        );
        // An input that needs no gradient gets none; the weight's is the same as burn's.
        let [_, dx, dw, _] = errors(&layer, x);
        assert!(dx == 0.0 && dw < 10.0 * bound, "{name}: constant input");
    }
}

#[test]
fn cpu_kernels_match_burn_conv_values_and_gradients_f32() {
    check::<Autodiff<NdArray<f32>>>("f32", 1e-5);
    check::<Autodiff<NdArray<f32>, BalancedCheckpointing>>("f32, balanced checkpointing", 1e-5);
}

/// Its own test (nextest: its own process): burn's default float dtype is process-wide.
#[test]
fn cpu_kernels_match_burn_conv_values_and_gradients_f64() {
    check::<Autodiff<NdArray<f64>>>("f64", 1e-12);
}

#[test]
fn other_padding_modes_fall_back_to_burn() {
    let layer = Conv2dConfig::new([2, 3], [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .init::<NdArray<f32>>(&Default::default());
    assert!(cpu_conv::Geometry::of(&layer).is_none());
    let x = Tensor::<NdArray<f32>, 4>::random(
        [1, 2, 4, 5],
        Distribution::Normal(0.0, 1.0),
        &Default::default(),
    );
    assert_eq!(
        max_abs(conv::apply(&layer, x.clone()), layer.forward(x)),
        0.0
    );
}
