//! open_clip's image tower `VisionTransformer` (the `visual.*` tensors): a ViT whose patches are embedded by the
//! bias-free stride-`patch_size` convolution `conv1`, with a learnt `class_embedding` in front, learnt
//! `positional_embedding`, `ln_pre`, the [`Transformer`], `ln_post` on the class token and the projection
//! `proj` (`[width, embed_dim]`, applied as `x · proj`).

use burn::module::Param;
use burn::nn::LayerNorm;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;

use super::config::VisionCfg;
use super::transformer::{Transformer, TransformerShape};
use crate::nn::{layer_norm, vit_tokens};

#[derive(Module, Debug)]
pub struct VisionTransformer<B: Backend> {
    pub conv1: Conv2d<B>,
    /// `[width]`.
    pub class_embedding: Param<Tensor<B, 1>>,
    /// `[1 + grid², width]`: the class token, then the patches row by row.
    pub positional_embedding: Param<Tensor<B, 2>>,
    pub ln_pre: LayerNorm<B>,
    pub transformer: Transformer<B>,
    pub ln_post: LayerNorm<B>,
    /// `[width, embed_dim]`.
    pub proj: Param<Tensor<B, 2>>,
    pub image_size: usize,
}

impl<B: Backend> VisionTransformer<B> {
    pub fn new(cfg: &VisionCfg, embed_dim: usize, quick_gelu: bool, device: &B::Device) -> Self {
        let (d, p) = (cfg.width, cfg.patch_size);
        let shape = TransformerShape {
            width: d,
            layers: cfg.layers,
            heads: cfg.heads(),
            mlp_width: cfg.mlp_width(),
            quick_gelu,
            causal: false,
        };
        Self {
            conv1: Conv2dConfig::new([3, d], [p, p])
                .with_stride([p, p])
                .with_bias(false)
                .init(device),
            class_embedding: Param::from_tensor(Tensor::zeros([d], device)),
            positional_embedding: Param::from_tensor(Tensor::zeros(
                [cfg.grid().pow(2) + 1, d],
                device,
            )),
            ln_pre: layer_norm(d, 1e-5, device),
            transformer: Transformer::new(&shape, device),
            ln_post: layer_norm(d, 1e-5, device),
            proj: Param::from_tensor(Tensor::zeros([d, embed_dim], device)),
            image_size: cfg.image_size,
        }
    }

    /// Normalised pixel values `[N, 3, S, S]` → `[N, embed_dim]` unnormalised image features (`encode_image`).
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 2> {
        let tokens = vit_tokens(
            &self.conv1,
            self.class_embedding.val(),
            self.positional_embedding.val(),
            pixel_values,
            self.image_size,
        );
        let x = self.transformer.forward(self.ln_pre.forward(tokens));
        let [n, _, d] = x.dims();
        let class_state = x.slice([0..n, 0..1, 0..d]).reshape([n, d]);
        self.ln_post.forward(class_state).matmul(self.proj.val())
    }
}
