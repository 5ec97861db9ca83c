//! `CLIPVisionModel` / `CLIPVisionModelWithProjection`: images → the class token's pooled state and, with a
//! projection, `image_embeds`.
//!
//! The tower is a pre-norm ViT: non-overlapping `patch_size`² patches are embedded by a bias-free
//! convolution, a learnt class token is put in front, learnt position embeddings are added, then
//! `pre_layrnorm` (transformers' spelling, kept because it is the checkpoint key), the shared
//! [`ClipEncoder`] with full (non-causal) attention, and `post_layernorm` on the class token only.
//! Field names follow the checkpoint keys (`vision_model.embeddings.class_embedding`, …).

use std::path::Path;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, Linear};
use burn::prelude::*;

use super::config::{ClipVisionConfig, check_hidden_act};
use super::encoder_layer::ClipEncoder;
use crate::io::load::{self, LoadError};
use crate::nn::{layer_norm, linear, vit_tokens};

#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings<B: Backend> {
    /// The class token `[D]`, prepended to the patch tokens.
    pub class_embedding: Param<Tensor<B, 1>>,
    /// `Conv2d(C, D, kernel = stride = patch_size, bias = False)`.
    pub patch_embedding: Conv2d<B>,
    /// One learnt vector per position: the class token, then the patches row by row.
    pub position_embedding: Embedding<B>,
    /// The only input size the position embeddings fit (transformers raises on any other).
    pub image_size: usize,
}

/// The tower without projection: the `vision_model.*` tensors of every CLIP checkpoint.
#[derive(Module, Debug)]
pub struct ClipVisionTransformer<B: Backend> {
    pub embeddings: ClipVisionEmbeddings<B>,
    pub pre_layrnorm: LayerNorm<B>,
    pub encoder: ClipEncoder<B>,
    pub post_layernorm: LayerNorm<B>,
}

/// `CLIPVisionModel` (no projection) or `CLIPVisionModelWithProjection`.
#[derive(Module, Debug)]
pub struct ClipVisionModel<B: Backend> {
    pub vision_model: ClipVisionTransformer<B>,
    /// `visual_projection` (no bias) of `CLIPVisionModelWithProjection`.
    pub visual_projection: Option<Linear<B>>,
}

/// What the vision tower yields for a batch of images.
#[derive(Debug, Clone)]
pub struct ClipVisionOutput<B: Backend> {
    /// `[N, 1 + patches, D]`: the encoder output, before any final norm (as transformers returns it).
    pub last_hidden_state: Tensor<B, 3>,
    /// `[N, D]`: `post_layernorm` of the class token (`pooler_output`).
    pub pooled: Tensor<B, 2>,
    /// `[N, E]`: `visual_projection(pooled)` when the model has a projection (not normalised).
    pub image_embeds: Option<Tensor<B, 2>>,
}

/// transformers ≥ 5 writes `CLIPVisionModel` without the `vision_model.` prefix that hub files carry.
const ADD_VISION_MODEL_PREFIX: load::KeyRemap = (
    r"^(embeddings|pre_layrnorm|encoder|post_layernorm)\.",
    "vision_model.$1.",
);

impl<B: Backend> ClipVisionEmbeddings<B> {
    pub fn new(config: &ClipVisionConfig, device: &B::Device) -> Self {
        let d = config.hidden_size;
        let p = config.patch_size;
        Self {
            class_embedding: Param::from_tensor(Tensor::zeros([d], device)),
            patch_embedding: Conv2dConfig::new([config.num_channels, d], [p, p])
                .with_stride([p, p])
                .with_bias(false)
                .init(device),
            position_embedding: EmbeddingConfig::new(config.num_positions(), d).init(device),
            image_size: config.image_size,
        }
    }

    /// `[N, C, S, S]` pixel values → `[N, 1 + patches, D]` tokens with positions added.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 3> {
        vit_tokens(
            &self.patch_embedding,
            self.class_embedding.val(),
            self.position_embedding.weight.val(),
            pixel_values,
            self.image_size,
        )
    }
}

impl<B: Backend> ClipVisionTransformer<B> {
    pub fn new(config: &ClipVisionConfig, device: &B::Device) -> Self {
        let d = config.hidden_size;
        Self {
            embeddings: ClipVisionEmbeddings::new(config, device),
            pre_layrnorm: layer_norm(d, config.layer_norm_eps, device),
            encoder: ClipEncoder::new(&config.encoder_shape(), device),
            post_layernorm: layer_norm(d, config.layer_norm_eps, device),
        }
    }

    /// Pixel values `[N, C, S, S]` (already resized and normalised) → hidden states and pooled output;
    /// `image_embeds` is left to the caller, which owns the projection.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> ClipVisionOutput<B> {
        let tokens = self
            .pre_layrnorm
            .forward(self.embeddings.forward(pixel_values));
        let last_hidden_state = self.encoder.forward(tokens);
        let [n, _, d] = last_hidden_state.dims();
        let class_token = last_hidden_state
            .clone()
            .slice([0..n, 0..1, 0..d])
            .reshape([n, d]);
        ClipVisionOutput {
            last_hidden_state,
            pooled: self.post_layernorm.forward(class_token),
            image_embeds: None,
        }
    }
}

impl<B: Backend> ClipVisionModel<B> {
    pub fn new(config: &ClipVisionConfig, device: &B::Device) -> Self {
        let d = config.hidden_size;
        Self {
            vision_model: ClipVisionTransformer::new(config, device),
            visual_projection: config
                .with_projection()
                .then(|| linear(d, config.projection_dim.unwrap_or(d), false, device)),
        }
    }

    /// Loads `config.json` (a `CLIPVisionConfig`, or a `CLIPConfig`'s `vision_config`, see
    /// [`read_vision_config`]) and `model[.variant].safetensors` holding only vision tensors.
    pub fn from_dir(
        dir: &Path,
        variant: Option<&str>,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let config = read_vision_config(&dir.join("config.json"))?;
        let files = load::weight_files(dir, "model", variant)?;
        load::load_weights(
            Self::new(&config, device),
            &files,
            &[ADD_VISION_MODEL_PREFIX],
        )
    }

    /// Pixel values `[N, C, S, S]` → pooled output and, with a projection, `image_embeds`.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> ClipVisionOutput<B> {
        let mut out = self.vision_model.forward(pixel_values);
        out.image_embeds = self
            .visual_projection
            .as_ref()
            .map(|p| p.forward(out.pooled.clone()));
        out
    }
}

/// The vision config of a `config.json`: its `vision_config` when it is a `CLIPConfig`, otherwise the file
/// itself as a standalone `CLIPVisionConfig`. Errors name the file and the field.
pub fn read_vision_config(path: &Path) -> Result<ClipVisionConfig, LoadError> {
    #[derive(serde::Deserialize)]
    struct Nested {
        vision_config: ClipVisionConfig,
    }
    let json: serde_json::Map<String, serde_json::Value> = load::read_config(path)?;
    let config = if json.contains_key("vision_config") {
        load::read_config::<Nested>(path)?.vision_config
    } else {
        load::read_config::<ClipVisionConfig>(path)?
    };
    check_hidden_act(&config.hidden_act, path)?;
    Ok(config)
}
