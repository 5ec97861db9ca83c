//! How every convolution of the models runs: on ndarray, with or without autodiff, as one matrix product
//! on the arrays' buffers (`nn::cpu_conv`, with the `cpu-kernels` feature); everywhere else, burn's own
//! kernel, which is fast there and needs no k²-times larger buffer.

use burn::nn::conv::Conv2d;
use burn::prelude::*;

/// Runs `conv` on `x` (`[B, C, H, W]`), as `conv.forward(x)` would.
pub fn apply<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "cpu-kernels")]
    if let Some(geometry) = super::cpu_conv::Geometry::of(conv)
        && super::cpu_conv::runs_on::<B>()
    {
        let bias = conv.bias.as_ref().map(|bias| bias.val());
        return super::cpu_conv::conv2d(x, conv.weight.val(), bias, geometry)
            .expect("runs on this backend");
    }
    conv.forward(x)
}
