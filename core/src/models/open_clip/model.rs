//! open_clip's `CLIP` (HPSv2's ViT-H/14, LAION's CLIP releases): the image tower under `visual.`, the text tower's
//! tensors at the top level (`token_embedding`, `positional_embedding`, `transformer`, `ln_final`,
//! `text_projection`) and `logit_scale`.
//!
//! A folder holds `open_clip_config.json` and `open_clip_model.safetensors`, as open_clip's hub uploads do;
//! checkpoints published as pickles (HPSv2's `HPS_v2_compressed.pt`) are converted once by
//! `tools/convert_open_clip.py`. The text tower pools at the position of the largest token id, the end-of-text
//! token in CLIP's vocabulary (open_clip's `text_global_pool(..., 'argmax')`).

use std::path::Path;

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm};
use burn::prelude::*;

use super::config::{OpenClipConfig, OpenClipModelConfig};
use super::transformer::{Transformer, TransformerShape};
use super::visual::VisionTransformer;
use crate::io::load::{self, LoadError};
use crate::models::clip::ImageProcessor;
use crate::nn::layer_norm;

#[derive(Module, Debug)]
pub struct OpenClipModel<B: Backend> {
    pub visual: VisionTransformer<B>,
    pub token_embedding: Embedding<B>,
    /// `[context_length, width]`.
    pub positional_embedding: Param<Tensor<B, 2>>,
    pub transformer: Transformer<B>,
    pub ln_final: LayerNorm<B>,
    /// `[width, embed_dim]`, applied as `x · text_projection`.
    pub text_projection: Param<Tensor<B, 2>>,
    /// A 0-dim tensor in the checkpoint, `[1]` here.
    pub logit_scale: Param<Tensor<B, 1>>,
}

impl<B: Backend> OpenClipModel<B> {
    pub fn new(cfg: &OpenClipModelConfig, device: &B::Device) -> Self {
        let text = &cfg.text_cfg;
        let shape = TransformerShape {
            width: text.width,
            layers: text.layers,
            heads: text.heads,
            mlp_width: text.mlp_width(),
            quick_gelu: cfg.quick_gelu,
            causal: true,
        };
        Self {
            visual: VisionTransformer::new(&cfg.vision_cfg, cfg.embed_dim, cfg.quick_gelu, device),
            token_embedding: EmbeddingConfig::new(text.vocab_size, text.width).init(device),
            positional_embedding: Param::from_tensor(Tensor::zeros(
                [text.context_length, text.width],
                device,
            )),
            transformer: Transformer::new(&shape, device),
            ln_final: layer_norm(text.width, 1e-5, device),
            text_projection: Param::from_tensor(Tensor::zeros([text.width, cfg.embed_dim], device)),
            logit_scale: Param::from_tensor(Tensor::from_floats([(1.0f32 / 0.07).ln()], device)),
        }
    }

    /// Loads `open_clip_config.json` and `open_clip_model.safetensors` (or its shards) and returns the model with
    /// the evaluation transform its config describes.
    pub fn from_dir(dir: &Path, device: &B::Device) -> Result<(Self, ImageProcessor), LoadError> {
        let config_path = dir.join("open_clip_config.json");
        let config = OpenClipConfig::read(&config_path)?;
        let files = load::weight_files(dir, "open_clip_model", None)?;
        let model = load::load_weights(Self::new(&config.model_cfg, device), &files, &[])?;
        let size = config.model_cfg.vision_cfg.image_size;
        let processor = ImageProcessor::open_clip(size, &config.preprocess_cfg, &config_path)?;
        Ok((model, processor))
    }

    /// Pixel values `[N, 3, S, S]` → `[N, E]` unnormalised image features.
    pub fn encode_image(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 2> {
        self.visual.forward(pixel_values)
    }

    /// Token ids `[M, L]` (`L` ≤ the context length; open_clip pads to it) → `[M, E]` unnormalised text features.
    pub fn encode_text(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        let [m, l] = input_ids.dims();
        let [context, width] = self.positional_embedding.dims();
        assert!(
            l <= context,
            "{l} tokens, the text tower takes at most {context}"
        );
        let positions = self.positional_embedding.val().slice([0..l, 0..width]);
        let x = self.token_embedding.forward(input_ids.clone()) + positions.unsqueeze::<3>();
        let x = self.ln_final.forward(self.transformer.forward(x));
        let d = x.dims()[2];
        let eot = input_ids.argmax(1).reshape([m, 1, 1]).expand([m, 1, d]);
        x.gather(1, eot)
            .reshape([m, d])
            .matmul(self.text_projection.val())
    }

    /// `exp(logit_scale)` as `[1, 1]`.
    pub fn logit_scale_exp(&self) -> Tensor<B, 2> {
        self.logit_scale.val().exp().reshape([1, 1])
    }

    /// The input size of the image tower.
    pub fn image_size(&self) -> usize {
        self.visual.image_size
    }
}
