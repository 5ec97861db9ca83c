//! **HPSv2** (Wu et al. 2023, `tgxs002/HPSv2`): an open_clip ViT-H/14 fine-tuned on human preferences. Its score
//! of an image for a prompt is the cosine of their normalised features (`torch.diagonal(image_features @
//! text_features.T)` in HPSv2's `score`), read here for each image against its own prompt. AlignProp's HPS loss is
//! `1 − score`.
//!
//! The folder is open_clip's layout (see [`crate::models::open_clip`]) plus a CLIP tokenizer (in the folder or in
//! `tokenizer/`); images go through open_clip's evaluation transform from `open_clip_config.json`.

use std::path::Path;

use burn::prelude::*;

use super::{PixelScorer, one_prompt_per_image, pixel_scorer};
use crate::io::load::{self, LoadError};
use crate::models::clip::{ImageProcessor, paired_cosines, token_ids};
use crate::models::open_clip::OpenClipModel;
use crate::models::tokenizer::ClipTokenizer;

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
        one_prompt_per_image(pixel_values.dims()[0], prompts)?;
        let ids = token_ids::<B>(&self.tokenizer, prompts, &pixel_values.device())?;
        Ok(paired_cosines(
            self.model.encode_image(pixel_values),
            self.model.encode_text(ids),
        ))
    }
}

/// [`super::Scorer`] and AlignProp's HPS reward (its loss is `1 − cos`, `loss = "one-minus"`).
impl<B: Backend> PixelScorer<B> for HpsScorer<B> {
    fn metric(&self) -> &'static str {
        "hps"
    }

    fn processor(&self) -> &ImageProcessor {
        &self.processor
    }

    fn pixel_scores(
        &self,
        pixel_values: Tensor<B, 4>,
        prompts: &[String],
    ) -> Result<Tensor<B, 1>, String> {
        self.cosines(pixel_values, prompts)
    }
}

pixel_scorer!(HpsScorer);
