//! The VAE encoder: image → `2 × latent_channels` moments (mean ‖ log-variance).

use crate::nn::silu;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::config::VaeConfig;
use crate::nn::attention::Attention;
use crate::nn::resnet::ResnetBlock2D;
use crate::nn::sampling::{Downsample2D, Upsample2D};
use crate::nn::{conv2d, group_norm};

/// The VAE uses ε = 1e-6 in every group norm.
pub const VAE_EPS: f64 = 1e-6;

/// `DownEncoderBlock2D` and `UpDecoderBlock2D`: resnets then an optional resampler.
#[derive(Module, Debug)]
pub struct EncoderBlock<B: Backend> {
    pub resnets: Vec<ResnetBlock2D<B>>,
    pub downsamplers: Vec<Downsample2D<B>>,
}

#[derive(Module, Debug)]
pub struct DecoderBlock<B: Backend> {
    pub resnets: Vec<ResnetBlock2D<B>>,
    pub upsamplers: Vec<Upsample2D<B>>,
}

/// `UNetMidBlock2D` without time embedding: resnet, spatial attention, resnet.
#[derive(Module, Debug)]
pub struct VaeMidBlock<B: Backend> {
    pub resnets: Vec<ResnetBlock2D<B>>,
    pub attentions: Vec<Attention<B>>,
}

#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    pub conv_in: Conv2d<B>,
    pub down_blocks: Vec<EncoderBlock<B>>,
    pub mid_block: VaeMidBlock<B>,
    pub conv_norm_out: GroupNorm<B>,
    pub conv_out: Conv2d<B>,
}

pub(crate) fn resnets<B: Backend>(
    c_in: usize,
    c_out: usize,
    count: usize,
    groups: usize,
    device: &B::Device,
) -> Vec<ResnetBlock2D<B>> {
    (0..count)
        .map(|i| {
            ResnetBlock2D::new(
                if i == 0 { c_in } else { c_out },
                c_out,
                None,
                groups,
                VAE_EPS,
                device,
            )
        })
        .collect()
}

impl<B: Backend> VaeMidBlock<B> {
    pub fn new(channels: usize, groups: usize, attention: bool, device: &B::Device) -> Self {
        let attentions = attention
            .then(|| {
                let mut attn = Attention::new(channels, channels, 1, channels, true, None, device);
                attn.group_norm = Some(group_norm(groups, channels, VAE_EPS, device));
                attn
            })
            .into_iter()
            .collect();
        Self {
            resnets: resnets(channels, channels, 2, groups, device),
            attentions,
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = self.resnets[0].forward(x, None);
        for attention in &self.attentions {
            x = attention.forward_spatial(x);
        }
        self.resnets[1].forward(x, None)
    }
}

impl<B: Backend> Encoder<B> {
    pub fn new(config: &VaeConfig, device: &B::Device) -> Self {
        let channels = &config.block_out_channels;
        let groups = config.norm_num_groups;
        let n = channels.len();
        let down_blocks = (0..n)
            .map(|i| EncoderBlock {
                resnets: resnets(
                    if i == 0 { channels[0] } else { channels[i - 1] },
                    channels[i],
                    config.layers_per_block,
                    groups,
                    device,
                ),
                downsamplers: if i + 1 < n {
                    vec![Downsample2D::new(channels[i], 0, device)]
                } else {
                    Vec::new()
                },
            })
            .collect();
        Self {
            conv_in: conv2d(config.in_channels, channels[0], 3, 1, 1, device),
            down_blocks,
            mid_block: VaeMidBlock::new(
                channels[n - 1],
                groups,
                config.mid_block_add_attention,
                device,
            ),
            conv_norm_out: group_norm(groups, channels[n - 1], VAE_EPS, device),
            conv_out: conv2d(channels[n - 1], 2 * config.latent_channels, 3, 1, 1, device),
        }
    }

    pub fn forward(&self, image: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = crate::nn::conv::apply(&self.conv_in, image);
        for block in &self.down_blocks {
            for resnet in &block.resnets {
                x = resnet.forward(x, None);
            }
            for down in &block.downsamplers {
                x = down.forward(x);
            }
        }
        x = self.mid_block.forward(x);
        crate::nn::conv::apply(&self.conv_out, silu(self.conv_norm_out.forward(x)))
    }
}
