//! **HPSv2** (Wu et al. 2023, `tgxs002/HPSv2`): an open_clip ViT-H/14 fine-tuned on human preferences. Its score
//! of an image for a prompt is the cosine of their normalised features (`torch.diagonal(image_features @
//! text_features.T)` in HPSv2's `score`), read here for each image against its own prompt. AlignProp's HPS loss is
//! `1 − score`.
//!
//! The folder is open_clip's layout (see [`crate::open_clip`]) plus a CLIP tokenizer (in the folder or in
//! `tokenizer/`); images go through open_clip's evaluation transform from `open_clip_config.json`.

use std::path::Path;

use burn::prelude::*;

use super::{Rgb8, Scorer};
use crate::clip::{ImageProcessor, token_ids, unit_rows};
use crate::load::{self, LoadError};
use crate::objectives::alignprop::DifferentiableReward;
use crate::open_clip::OpenClipModel;
use crate::tokenizer::ClipTokenizer;

pub struct HpsScorer<B: Backend> {
    pub model: OpenClipModel<B>,
    pub tokenizer: ClipTokenizer,
    pub processor: ImageProcessor,
}

impl<B: Backend> HpsScorer<B> {
    pub fn from_dir(dir: &Path, device: &B::Device) -> Result<Self, LoadError> {
        let (model, processor) = OpenClipModel::from_dir(dir, device)?;
        let tokenizer = ClipTokenizer::from_dir(&load::component_dir(dir, "tokenizer"))?;
        Ok(Self {
            model,
            tokenizer,
            processor,
        })
    }

    /// Normalised pixel values `[N, 3, S, S]` and one prompt per image → `[N]` cosines (differentiable).
    pub fn cosines(
        &self,
        pixel_values: Tensor<B, 4>,
        prompts: &[String],
    ) -> Result<Tensor<B, 1>, String> {
        let n = pixel_values.dims()[0];
        if prompts.len() != n {
            return Err(format!("{n} images but {} prompts", prompts.len()));
        }
        let device = pixel_values.device();
        let images = unit_rows(self.model.encode_image(pixel_values));
        let ids = token_ids::<B>(&self.tokenizer, prompts, &device)?;
        let texts = unit_rows(self.model.encode_text(ids));
        Ok((images * texts).sum_dim(1).reshape([n]))
    }
}

/// AlignProp's HPS reward (its loss is `1 − cos`, `loss = "one-minus"`): the float preprocessing path.
impl<B: Backend> DifferentiableReward<B> for HpsScorer<B> {
    fn name(&self) -> String {
        "hps".into()
    }

    fn reward(&self, images: Tensor<B, 4>, prompts: &[String]) -> Tensor<B, 1> {
        self.processor
            .pixel_values(images)
            .and_then(|pixel_values| self.cosines(pixel_values, prompts))
            .unwrap_or_else(|e| panic!("hps: {e}"))
    }
}

impl<B: Backend> Scorer<B> for HpsScorer<B> {
    fn name(&self) -> String {
        "hps".into()
    }

    fn score(&self, images: Tensor<B, 4>, prompts: &[String]) -> Vec<f64> {
        self.processor
            .pixel_values(images)
            .and_then(|pixel_values| self.cosines(pixel_values, prompts))
            .map(|scores| scores.into_data().iter::<f64>().collect())
            .unwrap_or_else(|e| panic!("hps: {e}"))
    }

    fn score_rgb8(
        &self,
        images: &[Rgb8<'_>],
        prompts: &[String],
        device: &B::Device,
    ) -> Result<Vec<f64>, String> {
        let scores = self.cosines(self.processor.batch_rgb8(images, device)?, prompts)?;
        Ok(scores.into_data().iter::<f64>().collect())
    }
}
