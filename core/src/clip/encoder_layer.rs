//! One pre-norm CLIP encoder layer: causal self-attention and an MLP, each with a residual.

use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::nn::{gelu, layer_norm, linear, merge_heads, split_heads};

#[derive(Module, Debug)]
pub struct ClipAttention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub out_proj: Linear<B>,
    pub heads: usize,
}

#[derive(Module, Debug)]
pub struct ClipMlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    /// `true` for `quick_gelu` (x·σ(1.702x), OpenAI CLIP), `false` for exact `gelu` (OpenCLIP).
    pub quick_gelu: bool,
}

#[derive(Module, Debug)]
pub struct ClipEncoderLayer<B: Backend> {
    pub self_attn: ClipAttention<B>,
    pub layer_norm1: LayerNorm<B>,
    pub mlp: ClipMlp<B>,
    pub layer_norm2: LayerNorm<B>,
}

impl<B: Backend> ClipEncoderLayer<B> {
    pub fn new(
        d: usize,
        ffn: usize,
        heads: usize,
        quick_gelu: bool,
        eps: f64,
        device: &B::Device,
    ) -> Self {
        Self {
            self_attn: ClipAttention {
                q_proj: linear(d, d, true, device),
                k_proj: linear(d, d, true, device),
                v_proj: linear(d, d, true, device),
                out_proj: linear(d, d, true, device),
                heads,
            },
            layer_norm1: layer_norm(d, eps, device),
            mlp: ClipMlp {
                fc1: linear(d, ffn, true, device),
                fc2: linear(ffn, d, true, device),
                quick_gelu,
            },
            layer_norm2: layer_norm(d, eps, device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

impl<B: Backend> ClipAttention<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let q = split_heads(self.q_proj.forward(x.clone()), self.heads);
        let k = split_heads(self.k_proj.forward(x.clone()), self.heads);
        let v = split_heads(self.v_proj.forward(x), self.heads);
        let options = AttentionModuleOptions {
            is_causal: true,
            ..Default::default()
        };
        self.out_proj
            .forward(merge_heads(attention(q, k, v, None, None, options)))
    }
}

impl<B: Backend> ClipMlp<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self.fc1.forward(x);
        let h = if self.quick_gelu {
            h.clone() * sigmoid(h * 1.702)
        } else {
            gelu(h)
        };
        self.fc2.forward(h)
    }
}
