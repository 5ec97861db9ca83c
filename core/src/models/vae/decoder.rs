//! The VAE decoder: latents → image in [-1, 1] (not clamped here).

use crate::nn::silu;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::config::VaeConfig;
use super::encoder::{DecoderBlock, VAE_EPS, VaeMidBlock, resnets};
use crate::nn::sampling::Upsample2D;
use crate::nn::{conv2d, group_norm};

#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
    pub conv_in: Conv2d<B>,
    pub mid_block: VaeMidBlock<B>,
    pub up_blocks: Vec<DecoderBlock<B>>,
    pub conv_norm_out: GroupNorm<B>,
    pub conv_out: Conv2d<B>,
}

impl<B: Backend> Decoder<B> {
    pub fn new(config: &VaeConfig, device: &B::Device) -> Self {
        let channels: Vec<usize> = config.block_out_channels.iter().rev().copied().collect();
        let groups = config.norm_num_groups;
        let n = channels.len();
        let up_blocks = (0..n)
            .map(|i| DecoderBlock {
                resnets: resnets(
                    if i == 0 { channels[0] } else { channels[i - 1] },
                    channels[i],
                    config.layers_per_block + 1,
                    groups,
                    device,
                ),
                upsamplers: if i + 1 < n {
                    vec![Upsample2D::new(channels[i], device)]
                } else {
                    Vec::new()
                },
            })
            .collect();
        Self {
            conv_in: conv2d(config.latent_channels, channels[0], 3, 1, 1, device),
            mid_block: VaeMidBlock::new(
                channels[0],
                groups,
                config.mid_block_add_attention,
                device,
            ),
            up_blocks,
            conv_norm_out: group_norm(groups, channels[n - 1], VAE_EPS, device),
            conv_out: conv2d(channels[n - 1], config.out_channels, 3, 1, 1, device),
        }
    }

    pub fn forward(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = self
            .mid_block
            .forward(crate::nn::conv::apply(&self.conv_in, latents));
        for block in &self.up_blocks {
            for resnet in &block.resnets {
                x = resnet.forward(x, None);
            }
            for up in &block.upsamplers {
                x = up.forward(x, None);
            }
        }
        crate::nn::conv::apply(&self.conv_out, silu(self.conv_norm_out.forward(x)))
    }
}
