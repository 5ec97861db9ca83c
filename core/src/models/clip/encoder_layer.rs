//! One pre-norm CLIP encoder layer (self-attention and an MLP, each with a residual) and the stack of them.
//!
//! The text and vision towers share these blocks; they differ only in the attention mask. The text tower
//! attends causally (each token sees its prefix, as transformers' `create_causal_mask` builds it), the
//! vision tower attends over all patches (transformers passes no mask there). The mask is a property of
//! the tower, so it is fixed at construction ([`ClipAttention::causal`]) rather than passed per call.

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
    /// `true` in the text tower (causal mask), `false` in the vision tower (no mask).
    pub causal: bool,
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

/// The stack of encoder layers (`encoder.layers.N.*` in the checkpoints).
#[derive(Module, Debug)]
pub struct ClipEncoder<B: Backend> {
    pub layers: Vec<ClipEncoderLayer<B>>,
}

/// The shape of one tower's encoder, as both `CLIPTextConfig` and `CLIPVisionConfig` describe it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipEncoderShape {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    /// `hidden_act == "quick_gelu"` (otherwise exact `gelu`).
    pub quick_gelu: bool,
    pub layer_norm_eps: f64,
    /// Causal self-attention (text tower) or full self-attention (vision tower).
    pub causal: bool,
}

impl<B: Backend> ClipEncoder<B> {
    pub fn new(shape: &ClipEncoderShape, device: &B::Device) -> Self {
        let layers = (0..shape.num_hidden_layers)
            .map(|_| ClipEncoderLayer::new(shape, device))
            .collect();
        Self { layers }
    }

    /// Runs every layer on `[B, L, D]`; the vision tower reads only the last state.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.layers.iter().fold(x, |x, layer| layer.forward(x))
    }
}

impl<B: Backend> ClipEncoderLayer<B> {
    pub fn new(shape: &ClipEncoderShape, device: &B::Device) -> Self {
        let d = shape.hidden_size;
        let ffn = shape.intermediate_size;
        let eps = shape.layer_norm_eps;
        Self {
            self_attn: ClipAttention {
                q_proj: linear(d, d, true, device),
                k_proj: linear(d, d, true, device),
                v_proj: linear(d, d, true, device),
                out_proj: linear(d, d, true, device),
                heads: shape.num_attention_heads,
                causal: shape.causal,
            },
            layer_norm1: layer_norm(d, eps, device),
            mlp: ClipMlp {
                fc1: linear(d, ffn, true, device),
                fc2: linear(ffn, d, true, device),
                quick_gelu: shape.quick_gelu,
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
            is_causal: self.causal,
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
