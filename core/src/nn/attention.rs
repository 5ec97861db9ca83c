//! diffusers `Attention` (the `to_q`/`to_k`/`to_v`/`to_out.0` layout) used by the U-Net transformer blocks
//! and, with a group norm and a residual, by the VAE mid-block.

use burn::nn::GroupNorm;
use burn::prelude::*;

use super::lora::{Linear, LoraConfig};
use super::recomputed_attention::attention;
use super::{from_tokens, merge_heads, split_heads, to_tokens};

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub to_q: Linear<B>,
    pub to_k: Linear<B>,
    pub to_v: Linear<B>,
    /// `to_out.0` in the checkpoint (`to_out.1` is a dropout).
    pub to_out: Vec<Linear<B>>,
    /// Present in the VAE's spatial attention only.
    pub group_norm: Option<GroupNorm<B>>,
    pub heads: usize,
}

impl<B: Backend> Attention<B> {
    /// `query_dim` → `heads × dim_head`, keys and values from `context_dim`.
    pub fn new(
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        dim_head: usize,
        qkv_bias: bool,
        lora: Option<&LoraConfig>,
        device: &B::Device,
    ) -> Self {
        let inner = heads * dim_head;
        Self {
            to_q: Linear::new(query_dim, inner, qkv_bias, "to_q", lora, device),
            to_k: Linear::new(context_dim, inner, qkv_bias, "to_k", lora, device),
            to_v: Linear::new(context_dim, inner, qkv_bias, "to_v", lora, device),
            to_out: vec![Linear::new(
                inner, query_dim, true, "to_out.0", lora, device,
            )],
            group_norm: None,
            heads,
        }
    }

    /// Attention over tokens `[B, L, C]`; `context` defaults to `x` (self-attention).
    pub fn forward(&self, x: Tensor<B, 3>, context: Option<Tensor<B, 3>>) -> Tensor<B, 3> {
        let context = context.unwrap_or_else(|| x.clone());
        let q = split_heads(self.to_q.forward(x), self.heads);
        let k = split_heads(self.to_k.forward(context.clone()), self.heads);
        let v = split_heads(self.to_v.forward(context), self.heads);
        let out = attention(q, k, v);
        self.to_out[0].forward(merge_heads(out))
    }

    /// The VAE form: group norm, single-head attention over the feature map, residual.
    pub fn forward_spatial(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, _, h, w] = x.dims();
        let normed = match &self.group_norm {
            Some(norm) => norm.forward(x.clone()),
            None => x.clone(),
        };
        from_tokens(self.forward(to_tokens(normed), None), h, w) + x
    }
}
