//! diffusers `ResnetBlock2D` (`time_embedding_norm = "default"`, output scale 1).

use crate::nn::silu;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear};
use burn::prelude::*;

use super::{conv, conv2d, group_norm, group_normed_silu, linear};

#[derive(Module, Debug)]
pub struct ResnetBlock2D<B: Backend> {
    pub norm1: GroupNorm<B>,
    pub conv1: Conv2d<B>,
    /// Absent in the VAE, which has no time embedding.
    pub time_emb_proj: Option<Linear<B>>,
    pub norm2: GroupNorm<B>,
    pub conv2: Conv2d<B>,
    /// 1×1 convolution when the channel count changes.
    pub conv_shortcut: Option<Conv2d<B>>,
}

impl<B: Backend> ResnetBlock2D<B> {
    pub fn new(
        c_in: usize,
        c_out: usize,
        temb_channels: Option<usize>,
        groups: usize,
        eps: f64,
        device: &B::Device,
    ) -> Self {
        Self {
            norm1: group_norm(groups, c_in, eps, device),
            conv1: conv2d(c_in, c_out, 3, 1, 1, device),
            time_emb_proj: temb_channels.map(|t| linear(t, c_out, true, device)),
            norm2: group_norm(groups, c_out, eps, device),
            conv2: conv2d(c_out, c_out, 3, 1, 1, device),
            conv_shortcut: (c_in != c_out).then(|| conv2d(c_in, c_out, 1, 1, 0, device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>, temb: Option<Tensor<B, 2>>) -> Tensor<B, 4> {
        let mut h = conv::apply(&self.conv1, group_normed_silu(&self.norm1, x.clone()));
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            h = h + proj.forward(silu(temb)).unsqueeze_dims::<4>(&[2, 3]);
        }
        h = conv::apply(&self.conv2, group_normed_silu(&self.norm2, h));
        let shortcut = match &self.conv_shortcut {
            Some(shortcut) => conv::apply(shortcut, x),
            None => x,
        };
        super::residual(shortcut, h)
    }
}
