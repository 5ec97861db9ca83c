//! Sinusoidal timestep features (diffusers `Timesteps`) and the MLP that embeds them (`TimestepEmbedding`).

use crate::nn::silu;
use burn::nn::Linear;
use burn::prelude::*;

use crate::nn::linear;

/// `get_timestep_embedding`: for `t` of shape `[N]`, `exp(−ln(10000)·i/(half − shift))` frequencies,
/// `[sin, cos]` (or `[cos, sin]` with `flip_sin_to_cos`), shape `[N, dim]`.
pub fn timestep_features<B: Backend>(
    t: Tensor<B, 1>,
    dim: usize,
    flip_sin_to_cos: bool,
    shift: f64,
) -> Tensor<B, 2> {
    let half = dim / 2;
    let device = t.device();
    let exponent = Tensor::<B, 1, Int>::arange(0..half as i64, &device).float()
        * (-(10000f64.ln()) / (half as f64 - shift));
    let angles = t.unsqueeze_dim::<2>(1) * exponent.exp().unsqueeze::<2>();
    let (first, second) = if flip_sin_to_cos {
        (angles.clone().cos(), angles.sin())
    } else {
        (angles.clone().sin(), angles.cos())
    };
    let features = Tensor::cat(vec![first, second], 1);
    if dim % 2 == 1 {
        let n = features.dims()[0];
        Tensor::cat(vec![features, Tensor::zeros([n, 1], &device)], 1)
    } else {
        features
    }
}

#[derive(Module, Debug)]
pub struct TimestepEmbedding<B: Backend> {
    pub linear_1: Linear<B>,
    pub linear_2: Linear<B>,
}

impl<B: Backend> TimestepEmbedding<B> {
    pub fn new(d_in: usize, d_out: usize, device: &B::Device) -> Self {
        Self {
            linear_1: linear(d_in, d_out, true, device),
            linear_2: linear(d_out, d_out, true, device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.linear_2.forward(silu(self.linear_1.forward(x)))
    }
}
