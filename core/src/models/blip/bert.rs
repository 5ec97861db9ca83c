//! BLIP's text encoder (`blip.text_encoder.*`), the `BertModel` of BLIP's `med.py` as ImageReward runs it: word and
//! absolute position embeddings (no token types) with a LayerNorm, then post-norm BERT layers, each with
//! self-attention over the prompt, **cross-attention to the image tokens**, and a GELU feed-forward block.
//!
//! The checkpoint's `attention.self.*` and `*.LayerNorm.*` keys are read into `self_attention` and `layer_norm`
//! fields ([`KEY_REMAPS`]): `self` is a Rust keyword. Load errors name
//! tensors by these field paths. Padding is masked as BERT masks it, by adding
//! `(1 − mask) · −10000` to the attention scores, so a padded prompt matches the reference to the last bit
//! rather than merely approximately.

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::config::MedConfig;
use crate::io::load::KeyRemap;
use crate::nn::{gelu, layer_norm, linear, merge_heads, split_heads};

/// The checkpoint's names → ours.
pub const KEY_REMAPS: [KeyRemap; 2] = [
    (r"\.self\.", ".self_attention."),
    (r"\.LayerNorm\.", ".layer_norm."),
];

/// BERT's additive mask value for a padded key.
const MASKED: f64 = -10000.0;

#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    pub layer_norm: LayerNorm<B>,
}

/// `query` from the text; `key` and `value` from the text (self-attention) or the image tokens (cross-attention).
#[derive(Module, Debug)]
pub struct BertSelfAttention<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub heads: usize,
}

/// `dense`, then `layer_norm(dense(x) + residual)` (post-norm).
#[derive(Module, Debug)]
pub struct BertOutput<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
}

#[derive(Module, Debug)]
pub struct BertAttention<B: Backend> {
    pub self_attention: BertSelfAttention<B>,
    pub output: BertOutput<B>,
}

#[derive(Module, Debug)]
pub struct BertIntermediate<B: Backend> {
    pub dense: Linear<B>,
}

#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub attention: BertAttention<B>,
    pub crossattention: BertAttention<B>,
    pub intermediate: BertIntermediate<B>,
    pub output: BertOutput<B>,
}

#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    pub layer: Vec<BertLayer<B>>,
}

#[derive(Module, Debug)]
pub struct BertModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub encoder: BertEncoder<B>,
}

impl<B: Backend> BertModel<B> {
    /// The text encoder of `config`, its cross-attention reading `encoder_width`-wide image tokens.
    pub fn new(config: &MedConfig, encoder_width: usize, device: &B::Device) -> Self {
        let (d, eps) = (config.hidden_size, config.layer_norm_eps);
        let attention = |kv_width: usize| BertAttention {
            self_attention: BertSelfAttention {
                query: linear(d, d, true, device),
                key: linear(kv_width, d, true, device),
                value: linear(kv_width, d, true, device),
                heads: config.num_attention_heads,
            },
            output: BertOutput {
                dense: linear(d, d, true, device),
                layer_norm: layer_norm(d, eps, device),
            },
        };
        let layer = || BertLayer {
            attention: attention(d),
            crossattention: attention(encoder_width),
            intermediate: BertIntermediate {
                dense: linear(d, config.intermediate_size, true, device),
            },
            output: BertOutput {
                dense: linear(config.intermediate_size, d, true, device),
                layer_norm: layer_norm(d, eps, device),
            },
        };
        Self {
            embeddings: BertEmbeddings {
                word_embeddings: EmbeddingConfig::new(config.vocab_size, d).init(device),
                position_embeddings: EmbeddingConfig::new(config.max_position_embeddings, d)
                    .init(device),
                layer_norm: layer_norm(d, eps, device),
            },
            encoder: BertEncoder {
                layer: (0..config.num_hidden_layers).map(|_| layer()).collect(),
            },
        }
    }

    /// Token ids and their attention mask (1 for tokens, 0 for padding) `[N, L]`, and the image tokens
    /// `[N, T, encoder_width]` every token may attend to → the last hidden states `[N, L, hidden]`.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        image_embeds: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let [n, l] = input_ids.dims();
        let heads = self
            .encoder
            .layer
            .first()
            .map_or(1, |layer| layer.attention.self_attention.heads);
        let padding = (attention_mask.float().neg() + 1.0) * MASKED;
        let bias = padding.reshape([n, 1, 1, l]).expand([n, heads, l, l]);
        let x = self.embeddings.forward(input_ids);
        self.encoder.layer.iter().fold(x, |x, layer| {
            let x = layer.attention.forward(x, None, Some(bias.clone()));
            let x = layer
                .crossattention
                .forward(x, Some(image_embeds.clone()), None);
            let h = gelu(layer.intermediate.dense.forward(x.clone()));
            layer.output.forward(h, x)
        })
    }
}

impl<B: Backend> BertEmbeddings<B> {
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [n, l] = input_ids.dims();
        let positions = Tensor::<B, 1, Int>::arange(0..l as i64, &input_ids.device())
            .reshape([1, l])
            .expand([n, l]);
        let x =
            self.word_embeddings.forward(input_ids) + self.position_embeddings.forward(positions);
        self.layer_norm.forward(x)
    }
}

impl<B: Backend> BertAttention<B> {
    /// Self-attention over `x` (`context` None) or cross-attention to `context`, with an optional additive mask
    /// `[N, heads, L, L_context]`, then the post-norm residual.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        context: Option<Tensor<B, 3>>,
        bias: Option<Tensor<B, 4>>,
    ) -> Tensor<B, 3> {
        let attn = &self.self_attention;
        let context = context.unwrap_or_else(|| x.clone());
        let q = split_heads(attn.query.forward(x.clone()), attn.heads);
        let k = split_heads(attn.key.forward(context.clone()), attn.heads);
        let v = split_heads(attn.value.forward(context), attn.heads);
        let heads = attention(q, k, v, None, bias, AttentionModuleOptions::default());
        self.output.forward(merge_heads(heads), x)
    }
}

impl<B: Backend> BertOutput<B> {
    pub fn forward(&self, x: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        self.layer_norm.forward(self.dense.forward(x) + residual)
    }
}
