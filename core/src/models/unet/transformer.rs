//! diffusers `Transformer2DModel` (continuous input) and its `BasicTransformerBlock`:
//! self-attention, cross-attention to the text, GEGLU feed-forward, each pre-norm with a residual.

use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, LayerNorm};
use burn::prelude::*;

use crate::nn::attention::Attention;
use crate::nn::lora::{Linear, LoraConfig};
use crate::nn::{
    conv2d, from_tokens, group_norm, layer_norm, normalize_in_f32, residual, to_tokens,
};

/// `proj_in` / `proj_out`: a linear layer in SDXL, a 1×1 convolution in SD 1.5.
#[derive(Module, Debug)]
pub enum Projection<B: Backend> {
    Linear(Linear<B>),
    Conv(Conv2d<B>),
}

/// The GEGLU feed-forward: `net.0.proj` → value · gelu(gate) → `net.2`.
#[derive(Module, Debug)]
pub struct GegluProj<B: Backend> {
    pub proj: Linear<B>,
}

#[derive(Module, Debug)]
pub struct FeedForward<B: Backend> {
    /// `net.0` (GEGLU) and `net.2` (output); `net.1` is a dropout and has no weights.
    pub net: (GegluProj<B>, Linear<B>),
}

#[derive(Module, Debug)]
pub struct BasicTransformerBlock<B: Backend> {
    pub norm1: LayerNorm<B>,
    pub attn1: Attention<B>,
    pub norm2: LayerNorm<B>,
    pub attn2: Attention<B>,
    pub norm3: LayerNorm<B>,
    pub ff: FeedForward<B>,
}

#[derive(Module, Debug)]
pub struct Transformer2DModel<B: Backend> {
    pub norm: GroupNorm<B>,
    pub proj_in: Projection<B>,
    pub transformer_blocks: Vec<BasicTransformerBlock<B>>,
    pub proj_out: Projection<B>,
}

/// Shape parameters of one `Transformer2DModel`.
#[derive(Debug, Clone)]
pub struct TransformerSpec {
    pub channels: usize,
    pub heads: usize,
    pub depth: usize,
    pub context_dim: usize,
    pub groups: usize,
    pub norm_eps: f64,
    pub linear_projection: bool,
    pub lora: Option<LoraConfig>,
}

impl<B: Backend> Transformer2DModel<B> {
    pub fn new(spec: &TransformerSpec, device: &B::Device) -> Self {
        let c = spec.channels;
        let lora = spec.lora.as_ref();
        let projection = |name: &str| {
            if spec.linear_projection {
                Projection::Linear(Linear::new(c, c, true, name, lora, device))
            } else {
                Projection::Conv(conv2d(c, c, 1, 1, 0, device))
            }
        };
        let dim_head = c / spec.heads;
        let blocks = (0..spec.depth)
            .map(|_| BasicTransformerBlock {
                norm1: layer_norm(c, spec.norm_eps, device),
                attn1: Attention::new(c, c, spec.heads, dim_head, false, lora, device),
                norm2: layer_norm(c, spec.norm_eps, device),
                attn2: Attention::new(
                    c,
                    spec.context_dim,
                    spec.heads,
                    dim_head,
                    false,
                    lora,
                    device,
                ),
                norm3: layer_norm(c, spec.norm_eps, device),
                ff: FeedForward {
                    net: (
                        GegluProj {
                            proj: Linear::new(c, c * 8, true, "ff.net.0.proj", lora, device),
                        },
                        Linear::new(c * 4, c, true, "ff.net.2", lora, device),
                    ),
                },
            })
            .collect();
        Self {
            norm: group_norm(spec.groups, c, 1e-6, device),
            proj_in: projection("proj_in"),
            transformer_blocks: blocks,
            proj_out: projection("proj_out"),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>, context: Tensor<B, 3>) -> Tensor<B, 4> {
        let [_, _, h, w] = x.dims();
        let normed = crate::nn::group_normed(&self.norm, x.clone());
        let mut tokens = match &self.proj_in {
            Projection::Linear(proj) => proj.forward(to_tokens(normed)),
            Projection::Conv(conv) => to_tokens(crate::nn::conv::apply(conv, normed)),
        };
        for block in &self.transformer_blocks {
            tokens = block.forward(tokens, context.clone());
        }
        let out = match &self.proj_out {
            Projection::Linear(proj) => from_tokens(proj.forward(tokens), h, w),
            Projection::Conv(conv) => crate::nn::conv::apply(conv, from_tokens(tokens, h, w)),
        };
        crate::nn::residual(out, x)
    }
}

impl<B: Backend> BasicTransformerBlock<B> {
    pub fn forward(&self, x: Tensor<B, 3>, context: Tensor<B, 3>) -> Tensor<B, 3> {
        let attended = self.attn1.forward(
            normalize_in_f32(&self.norm1, x.clone(), LayerNorm::forward),
            None,
        );
        let x = residual(x, attended);
        let attended = self.attn2.forward(
            normalize_in_f32(&self.norm2, x.clone(), LayerNorm::forward),
            Some(context),
        );
        let x = residual(x, attended);
        let fed = self
            .ff
            .forward(normalize_in_f32(&self.norm3, x.clone(), LayerNorm::forward));
        residual(x, fed)
    }
}

impl<B: Backend> FeedForward<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.net
            .1
            .forward(crate::nn::geglu(self.net.0.proj.forward(x)))
    }
}
