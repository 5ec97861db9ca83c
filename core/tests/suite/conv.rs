//! The im2col lowering of `nn::conv::apply` (used on ndarray, with and without autodiff) equals burn's own convolution, values and
//! gradients, for every shape the models use: 3×3 stride 1 and 2, the VAE's asymmetric pad, 1×1, and an
//! unpadded 3×3.

use burn::backend::{Autodiff, NdArray};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::prelude::*;
use burn::tensor::Distribution;
use popalign_core::nn::conv;

type B = Autodiff<NdArray<f32>>;

fn max_abs<const D: usize>(a: Tensor<NdArray<f32>, D>, b: Tensor<NdArray<f32>, D>) -> f32 {
    (a - b).abs().max().into_scalar()
}

#[test]
fn im2col_matches_burn_conv_values_and_gradients() {
    let device = Default::default();
    assert!(conv::lowers_to_matmul::<B>(&device));
    assert!(conv::lowers_to_matmul::<NdArray<f32>>(&device));
    let cases = [
        (3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1), [7, 9]),
        (3, 2, PaddingConfig2d::Explicit(1, 1, 1, 1), [7, 9]),
        (3, 2, PaddingConfig2d::Explicit(0, 0, 1, 1), [8, 10]),
        (1, 1, PaddingConfig2d::Explicit(0, 0, 0, 0), [5, 6]),
        // Stride 1 without padding: the flattened windows' spare row is all the padding there is.
        (3, 1, PaddingConfig2d::Valid, [6, 7]),
    ];
    for (kernel, stride, padding, [h, w]) in cases {
        let layer = Conv2dConfig::new([5, 6], [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding(padding.clone())
            .init::<B>(&device);
        let x = Tensor::<B, 4>::random([2, 5, h, w], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let ours = conv::apply(&layer, x.clone());
        let burns = layer.forward(x.clone());
        // A weighted sum so every output position has its own gradient.
        let probe = Tensor::<B, 4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &device);
        let g_ours = (ours.clone() * probe.clone()).sum().backward();
        let g_burn = (burns.clone() * probe).sum().backward();
        let value_err = max_abs(ours.inner(), burns.inner());
        let input_err = max_abs(x.grad(&g_ours).unwrap(), x.grad(&g_burn).unwrap());
        let weight = layer.weight.val();
        let weight_err = max_abs(weight.grad(&g_ours).unwrap(), weight.grad(&g_burn).unwrap());
        println!(
            "k{kernel} s{stride} {padding:?}: values {value_err:.1e}, dx {input_err:.1e}, dw {weight_err:.1e}"
        );
        assert!(value_err < 1e-5 && input_err < 1e-5 && weight_err < 1e-4);
    }
}
