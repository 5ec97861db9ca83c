//! open_clip's `Transformer`: a stack of pre-norm `ResidualAttentionBlock`s, shared by both towers.
//!
//! Field names are the checkpoint's (`transformer.resblocks.{i}.ln_1`, `.attn.in_proj_weight`, `.mlp.c_fc`, …).
//! Attention is PyTorch's `nn.MultiheadAttention` with its fused input projection: one `[3D, D]` matrix
//! `in_proj_weight` and bias whose row blocks are the query, key and value projections, so
//! `q ‖ k ‖ v = x · in_proj_weightᵀ + in_proj_bias`. The text tower attends causally (open_clip's `attn_mask`
//! of −∞ above the diagonal), the image tower over all tokens.

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::nn::{gelu, layer_norm, linear, merge_heads, split_heads};

/// `nn.MultiheadAttention(width, heads, batch_first=True)`.
#[derive(Module, Debug)]
pub struct MultiheadAttention<B: Backend> {
    /// `[3D, D]` in PyTorch's `[out, in]` order.
    pub in_proj_weight: Param<Tensor<B, 2>>,
    pub in_proj_bias: Param<Tensor<B, 1>>,
    pub out_proj: Linear<B>,
    pub heads: usize,
    pub causal: bool,
}

/// `c_fc`, the activation, `c_proj`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub c_fc: Linear<B>,
    pub c_proj: Linear<B>,
    pub quick_gelu: bool,
}

#[derive(Module, Debug)]
pub struct ResidualAttentionBlock<B: Backend> {
    pub ln_1: LayerNorm<B>,
    pub attn: MultiheadAttention<B>,
    pub ln_2: LayerNorm<B>,
    pub mlp: Mlp<B>,
}

#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    pub resblocks: Vec<ResidualAttentionBlock<B>>,
}

/// The shape of one tower's transformer.
#[derive(Debug, Clone, Copy)]
pub struct TransformerShape {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_width: usize,
    pub quick_gelu: bool,
    pub causal: bool,
}

/// open_clip's `LayerNorm` keeps PyTorch's default ε.
const LAYER_NORM_EPS: f64 = 1e-5;

impl<B: Backend> Transformer<B> {
    pub fn new(shape: &TransformerShape, device: &B::Device) -> Self {
        Self {
            resblocks: (0..shape.layers)
                .map(|_| ResidualAttentionBlock::new(shape, device))
                .collect(),
        }
    }

    /// `[N, L, D]` → `[N, L, D]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.resblocks.iter().fold(x, |x, block| block.forward(x))
    }
}

impl<B: Backend> ResidualAttentionBlock<B> {
    pub fn new(shape: &TransformerShape, device: &B::Device) -> Self {
        let d = shape.width;
        Self {
            ln_1: layer_norm(d, LAYER_NORM_EPS, device),
            attn: MultiheadAttention {
                in_proj_weight: Param::from_tensor(Tensor::zeros([3 * d, d], device)),
                in_proj_bias: Param::from_tensor(Tensor::zeros([3 * d], device)),
                out_proj: linear(d, d, true, device),
                heads: shape.heads,
                causal: shape.causal,
            },
            ln_2: layer_norm(d, LAYER_NORM_EPS, device),
            mlp: Mlp {
                c_fc: linear(d, shape.mlp_width, true, device),
                c_proj: linear(shape.mlp_width, d, true, device),
                quick_gelu: shape.quick_gelu,
            },
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x));
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
    }
}

impl<B: Backend> MultiheadAttention<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [n, l, d] = x.dims();
        let weight = self.in_proj_weight.val().transpose().unsqueeze::<3>();
        let qkv = x.matmul(weight) + self.in_proj_bias.val().reshape([1, 1, 3 * d]);
        let part = |i: usize| {
            split_heads(
                qkv.clone().slice([0..n, 0..l, i * d..(i + 1) * d]),
                self.heads,
            )
        };
        let options = AttentionModuleOptions {
            is_causal: self.causal,
            ..Default::default()
        };
        let heads = attention(part(0), part(1), part(2), None, None, options);
        self.out_proj.forward(merge_heads(heads))
    }
}

impl<B: Backend> Mlp<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self.c_fc.forward(x);
        let h = if self.quick_gelu {
            h.clone() * sigmoid(h * 1.702)
        } else {
            gelu(h)
        };
        self.c_proj.forward(h)
    }
}
