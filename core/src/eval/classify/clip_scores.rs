//! Quality scores from a CLIP model, behind [`Scorer`]: one score per (image, its prompt).
//!
//! - **PickScore** (Kirstain et al. 2023, `yuvalkirstain/PickScore_v1`, a `CLIPModel`): the reference code's
//!   `model.logit_scale.exp() * (text_embs @ image_embs.T)` with unit embeddings, read for each image against its
//!   own prompt: `s = exp(logit_scale) · cos(image, prompt)`. Its preference probability between images of one
//!   prompt is the softmax of their scores ([`pickscore_probabilities`]).
//! - **CLIP score** (Hessel et al. 2021, as torchmetrics computes it): `max(100 · cos(image, prompt), 0)`.
//!
//! Decoded images go through the model's [`ImageProcessor`] byte for byte ([`super::Scorer::score_rgb8`]), float images
//! through its differentiable float path; the parity tests feed the reference's pixel values to
//! [`ClipScorer::score_pixel_values`].

use std::path::Path;

use burn::prelude::*;

use super::{PixelScorer, one_prompt_per_image, pixel_scorer};
use crate::io::load::{self, LoadError};
use crate::models::clip::resample::BytePrecision;
use crate::models::clip::{ClipModel, ImageProcessor, paired_cosines, token_ids};
use crate::models::tokenizer::ClipTokenizer;

/// Which score a [`ClipScorer`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipScoreKind {
    /// `exp(logit_scale) · cos`.
    PickScore,
    /// `max(100 · cos, 0)`.
    ClipScore,
}

impl ClipScoreKind {
    fn name(self) -> &'static str {
        match self {
            Self::PickScore => "pickscore",
            Self::ClipScore => "clip-score",
        }
    }
}

pub struct ClipScorer<B: Backend> {
    pub model: ClipModel<B>,
    pub tokenizer: ClipTokenizer,
    pub kind: ClipScoreKind,
    /// From the folder's `preprocessor_config.json` (transformers 5's torchvision backend), or transformers'
    /// CLIP defaults at the tower's size when the folder has none.
    pub processor: ImageProcessor,
}

impl<B: Backend> ClipScorer<B> {
    /// Loads a `CLIPModel` folder, its tokenizer (in the folder or in `tokenizer/`), as
    /// [`super::clip_zero_shot::ClipZeroShot::from_dir`] does, and its image processor.
    pub fn from_dir(
        dir: &Path,
        kind: ClipScoreKind,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let model = ClipModel::from_dir(dir, None, device)?;
        let processor_config = dir.join("preprocessor_config.json");
        let processor = if processor_config.exists() {
            ImageProcessor::from_preprocessor_config(&processor_config, BytePrecision::TorchInt16)?
        } else {
            ImageProcessor::openai_clip(model.vision_model.embeddings.image_size)
        };
        Ok(Self {
            model,
            tokenizer: ClipTokenizer::from_dir(&load::component_dir(dir, "tokenizer"))?,
            kind,
            processor,
        })
    }

    /// Normalised pixel values `[N, 3, S, S]` and one prompt per image → one score per image.
    pub fn score_pixel_values(
        &self,
        pixel_values: Tensor<B, 4>,
        prompts: &[String],
    ) -> Result<Vec<f64>, String> {
        Ok(self
            .scores(pixel_values, prompts)?
            .into_data()
            .iter::<f64>()
            .collect())
    }

    /// [`ClipScorer::score_pixel_values`] as a tensor (differentiable).
    pub fn scores(
        &self,
        pixel_values: Tensor<B, 4>,
        prompts: &[String],
    ) -> Result<Tensor<B, 1>, String> {
        one_prompt_per_image(pixel_values.dims()[0], prompts)?;
        let device = pixel_values.device();
        let ids = token_ids::<B>(&self.tokenizer, prompts, &device)?;
        let cos = paired_cosines(
            self.model.image_embeds(pixel_values),
            self.model.text_embeds(ids),
        );
        Ok(match self.kind {
            ClipScoreKind::PickScore => cos * self.model.logit_scale_exp().reshape([1]),
            ClipScoreKind::ClipScore => (cos * 100.0).clamp_min(0.0),
        })
    }
}

/// [`super::Scorer`] and, as an AlignProp reward, [`crate::align::objectives::alignprop::DifferentiableReward`].
impl<B: Backend> PixelScorer<B> for ClipScorer<B> {
    fn metric(&self) -> &'static str {
        self.kind.name()
    }

    fn processor(&self) -> &ImageProcessor {
        &self.processor
    }

    fn pixel_scores(
        &self,
        pixel_values: Tensor<B, 4>,
        prompts: &[String],
    ) -> Result<Tensor<B, 1>, String> {
        self.scores(pixel_values, prompts)
    }
}

pixel_scorer!(ClipScorer);

/// PickScore's preference probabilities among images of one prompt: the softmax of their scores.
pub fn pickscore_probabilities(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}
