//! How the models' matrix products run: on ndarray, with or without autodiff, on the arrays' own strides
//! (`nn::cpu_matmul`, with the `cpu-kernels` feature); everywhere else, burn's own matmul.

use burn::prelude::*;

/// `lhs.matmul(rhs)`: batched over the leading dims, a size-1 batch dim broadcast.
pub fn apply<B: Backend, const D: usize>(lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "cpu-kernels")]
    let (lhs, rhs) = match super::cpu_matmul::matmul(lhs, rhs) {
        Ok(out) => return out,
        Err(operands) => operands,
    };
    lhs.matmul(rhs)
}

/// `x · weight + bias` with `weight` `[in, out]` (burn's layout), as `burn::tensor::module::linear`.
pub fn linear<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    #[cfg(feature = "cpu-kernels")]
    let x = match bias.clone() {
        Some(bias) => match super::cpu_matmul::linear_with_bias(x, weight.clone(), bias) {
            Ok(out) => return out,
            Err(x) => x,
        },
        None => x,
    };
    let out = apply(x, weight.unsqueeze());
    match bias {
        Some(bias) => out + bias.unsqueeze(),
        None => out,
    }
}
