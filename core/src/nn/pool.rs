//! How the models' adaptive average pooling (torch's `interpolate(mode="area")`) runs: on plain ndarray with
//! `nn::cpu_pool` (the `cpu-kernels` feature), everywhere else, autodiff included, with burn's own op.

use burn::prelude::*;

/// `burn::tensor::module::adaptive_avg_pool2d(x, size)`.
pub fn adaptive_avg_pool2d<B: Backend>(x: Tensor<B, 4>, size: [usize; 2]) -> Tensor<B, 4> {
    #[cfg(feature = "cpu-kernels")]
    let x = match super::cpu_pool::adaptive_avg_pool2d(x, size) {
        Ok(out) => return out,
        Err(x) => x,
    };
    burn::tensor::module::adaptive_avg_pool2d(x, size)
}
