//! The full transformers `CLIPModel`: both towers, their projections into the shared embedding space, and
//! the learnt temperature `logit_scale`. This is the layout of `openai/clip-vit-*` and of CLIP-based scorers
//! such as `yuvalkirstain/PickScore_v1`: one folder with `config.json` (a `CLIPConfig`) and
//! `model.safetensors` (`text_model.*`, `vision_model.*`, `text_projection.weight`,
//! `visual_projection.weight`, `logit_scale`).
//!
//! `image_embeds` / `text_embeds` are the *unnormalised* projections (transformers' `get_image_features` /
//! `get_text_features`); [`ClipModel::logits`] normalises them, as `CLIPModel.forward` does.

use std::path::Path;

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;

use super::config::{ClipConfig, check_hidden_act};
use super::text_model::ClipTextTransformer;
use super::vision_model::{ClipVisionOutput, ClipVisionTransformer};
use crate::io::load::{self, LoadError};
use crate::models::tokenizer::ClipTokenizer;
use crate::nn::linear;

#[derive(Module, Debug)]
pub struct ClipModel<B: Backend> {
    pub text_model: ClipTextTransformer<B>,
    pub vision_model: ClipVisionTransformer<B>,
    /// `Linear(text hidden, projection_dim, bias = False)`.
    pub text_projection: Linear<B>,
    /// `Linear(vision hidden, projection_dim, bias = False)`.
    pub visual_projection: Linear<B>,
    /// The log of the softmax temperature's inverse, a 0-dim tensor in the checkpoint, `[1]` here.
    pub logit_scale: Param<Tensor<B, 1>>,
    pub eos_token_id: i64,
}

impl<B: Backend> ClipModel<B> {
    pub fn new(config: &ClipConfig, device: &B::Device) -> Self {
        let text = &config.text_config;
        let vision = &config.vision_config;
        let e = config.projection_dim;
        Self {
            text_model: ClipTextTransformer::new(text, device),
            vision_model: ClipVisionTransformer::new(vision, device),
            text_projection: linear(text.hidden_size, e, false, device),
            visual_projection: linear(vision.hidden_size, e, false, device),
            logit_scale: Param::from_tensor(Tensor::from_floats(
                [config.logit_scale_init_value as f32],
                device,
            )),
            eos_token_id: text.eos_token_id,
        }
    }

    /// Loads `config.json` and `model[.variant].safetensors` (or its shards) from a `CLIPModel` folder.
    /// Every tensor must be present with the right shape; errors name the file, the key and both shapes.
    pub fn from_dir(
        dir: &Path,
        variant: Option<&str>,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let config = read_clip_config(&dir.join("config.json"))?;
        let files = load::weight_files(dir, "model", variant)?;
        load::load_weights(Self::new(&config, device), &files, &[])
    }

    /// Normalised pixel values `[N, C, S, S]` → the vision tower's output with `image_embeds` set.
    pub fn vision(&self, pixel_values: Tensor<B, 4>) -> ClipVisionOutput<B> {
        let mut out = self.vision_model.forward(pixel_values);
        out.image_embeds = Some(self.visual_projection.forward(out.pooled.clone()));
        out
    }

    /// Normalised pixel values `[N, C, S, S]` → `[N, E]` unnormalised image embeddings.
    pub fn image_embeds(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 2> {
        self.visual_projection
            .forward(self.vision_model.forward(pixel_values).pooled)
    }

    /// Token ids `[M, L]` → `[M, E]` unnormalised text embeddings (pooled at the end-of-text token).
    pub fn text_embeds(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        let pooled = self.text_model.forward(input_ids, self.eos_token_id).pooled;
        self.text_projection.forward(pooled)
    }

    /// `exp(logit_scale)` as `[1, 1]`, ready to broadcast over a logits matrix.
    pub fn logit_scale_exp(&self) -> Tensor<B, 2> {
        self.logit_scale.val().exp().reshape([1, 1])
    }

    /// `[N, E]` image and `[M, E]` text embeddings → `[N, M]` `logits_per_image`:
    /// `exp(logit_scale) · cos(image, text)`.
    pub fn logits(&self, image_embeds: Tensor<B, 2>, text_embeds: Tensor<B, 2>) -> Tensor<B, 2> {
        let cos = unit_rows(image_embeds).matmul(unit_rows(text_embeds).transpose());
        cos * self.logit_scale_exp()
    }

    /// Pixel values `[N, C, S, S]` and token ids `[M, L]` → `[N, M]` `logits_per_image`.
    pub fn logits_per_image(
        &self,
        pixel_values: Tensor<B, 4>,
        input_ids: Tensor<B, 2, Int>,
    ) -> Tensor<B, 2> {
        self.logits(self.image_embeds(pixel_values), self.text_embeds(input_ids))
    }
}

/// Each row divided by its Euclidean norm, as transformers' `_get_vector_norm` (no epsilon).
pub fn unit_rows<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = (x.clone() * x.clone()).sum_dim(1).sqrt();
    x / norm
}

/// Row `i` of `a` against row `i` of `b`: `[N]` cosines of the pairs.
pub fn paired_cosines<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
    let n = a.dims()[0];
    (unit_rows(a) * unit_rows(b)).sum_dim(1).reshape([n])
}

/// Reads a `CLIPConfig`, refusing activations the towers do not implement.
pub fn read_clip_config(path: &Path) -> Result<ClipConfig, LoadError> {
    let config: ClipConfig = load::read_config(path)?;
    check_hidden_act(&config.text_config.hidden_act, path)?;
    check_hidden_act(&config.vision_config.hidden_act, path)?;
    Ok(config)
}

/// Prompts → `[M, max_length]` token ids (padded as the tokenizer folder says).
pub fn token_ids<B: Backend>(
    tokenizer: &ClipTokenizer,
    prompts: &[String],
    device: &B::Device,
) -> Result<Tensor<B, 2, Int>, String> {
    let mut ids: Vec<i64> = Vec::with_capacity(prompts.len() * tokenizer.max_length);
    for prompt in prompts {
        ids.extend(tokenizer.encode(prompt)?.into_iter().map(i64::from));
    }
    let shape = [prompts.len(), tokenizer.max_length];
    Ok(Tensor::from_data(TensorData::new(ids, shape), device))
}
