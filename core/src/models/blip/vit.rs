//! BLIP's image tower (`blip.visual_encoder.*`), the timm-style `VisionTransformer` of BLIP's `vit.py`: patches
//! embedded by a stride-`patch_size` convolution (`patch_embed.proj`, with bias), a learnt `cls_token` in front,
//! learnt `pos_embed` added, pre-norm blocks (`norm1`, fused-`qkv` attention, `norm2`, a GELU MLP, each with a
//! residual), and a final `norm`. All tokens come out (`[N, 1 + grid², width]`): ImageReward's text encoder
//! cross-attends to every one of them.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::config::BlipVisionConfig;
use crate::nn::{gelu, layer_norm, linear, merge_heads, split_heads, vit_tokens};

#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    pub proj: Conv2d<B>,
}

/// timm's `Attention`: one `[3D, D]` `qkv` projection whose output splits into query, key and value.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub qkv: Linear<B>,
    pub proj: Linear<B>,
    pub heads: usize,
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub norm1: LayerNorm<B>,
    pub attn: Attention<B>,
    pub norm2: LayerNorm<B>,
    pub mlp: Mlp<B>,
}

#[derive(Module, Debug)]
pub struct VisionTransformer<B: Backend> {
    pub patch_embed: PatchEmbed<B>,
    /// `[1, 1, width]`.
    pub cls_token: Param<Tensor<B, 3>>,
    /// `[1, 1 + grid², width]`.
    pub pos_embed: Param<Tensor<B, 3>>,
    pub blocks: Vec<Block<B>>,
    pub norm: LayerNorm<B>,
    pub image_size: usize,
}

impl<B: Backend> VisionTransformer<B> {
    pub fn new(config: &BlipVisionConfig, device: &B::Device) -> Self {
        let (d, p) = (config.hidden_size, config.patch_size);
        let eps = config.layer_norm_eps;
        let block = || Block {
            norm1: layer_norm(d, eps, device),
            attn: Attention {
                qkv: linear(d, 3 * d, true, device),
                proj: linear(d, d, true, device),
                heads: config.num_attention_heads,
            },
            norm2: layer_norm(d, eps, device),
            mlp: Mlp {
                fc1: linear(d, config.intermediate_size, true, device),
                fc2: linear(config.intermediate_size, d, true, device),
            },
        };
        Self {
            patch_embed: PatchEmbed {
                proj: Conv2dConfig::new([3, d], [p, p])
                    .with_stride([p, p])
                    .init(device),
            },
            cls_token: Param::from_tensor(Tensor::zeros([1, 1, d], device)),
            pos_embed: Param::from_tensor(Tensor::zeros([1, config.grid().pow(2) + 1, d], device)),
            blocks: (0..config.num_hidden_layers).map(|_| block()).collect(),
            norm: layer_norm(d, eps, device),
            image_size: config.image_size,
        }
    }

    /// Normalised pixel values `[N, 3, S, S]` → image tokens `[N, 1 + grid², width]`.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 3> {
        let [_, positions, d] = self.pos_embed.dims();
        let tokens = vit_tokens(
            &self.patch_embed.proj,
            self.cls_token.val().reshape([d]),
            self.pos_embed.val().reshape([positions, d]),
            pixel_values,
            self.image_size,
        );
        let x = self.blocks.iter().fold(tokens, |x, block| block.forward(x));
        self.norm.forward(x)
    }
}

impl<B: Backend> Block<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.attn.forward(self.norm1.forward(x));
        x.clone()
            + self
                .mlp
                .fc2
                .forward(gelu(self.mlp.fc1.forward(self.norm2.forward(x))))
    }
}

impl<B: Backend> Attention<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [n, l, d] = x.dims();
        let qkv = self.qkv.forward(x);
        let part = |i: usize| {
            split_heads(
                qkv.clone().slice([0..n, 0..l, i * d..(i + 1) * d]),
                self.heads,
            )
        };
        let heads = attention(
            part(0),
            part(1),
            part(2),
            None,
            None,
            AttentionModuleOptions::default(),
        );
        self.proj.forward(merge_heads(heads))
    }
}
