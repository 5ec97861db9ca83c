//! How every convolution of the models runs: on ndarray, with or without autodiff, as one matrix product
//! on the arrays' buffers (`nn::cpu_conv`, with the `cpu-kernels` feature); everywhere else, burn's own
//! kernel, which is fast there and needs no k²-times larger buffer.

use burn::nn::conv::Conv2d;
use burn::prelude::*;

/// Runs `conv` on `x` (`[B, C, H, W]`), as `conv.forward(x)` would.
pub fn apply<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "cpu-kernels")]
    let x = match super::cpu_conv::conv2d(conv, x) {
        Ok(out) => return out,
        Err(x) => x,
    };
    conv.forward(x)
}
