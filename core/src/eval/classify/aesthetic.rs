//! **LAION aesthetic predictor v2** (`christophschuhmann/improved-aesthetic-predictor`, the
//! `sac+logos+ava1-l14-linearMSE` weights): a linear stack without activations over the L2-normalised image
//! embedding of OpenAI's CLIP ViT-L/14,
//!
//! ```text
//! score = W₅ W₄ W₃ W₂ W₁ · e/‖e‖ (+ biases),   widths 768 → 1024 → 128 → 64 → 16 → 1
//! ```
//!
//! The checkpoint's `nn.Sequential` interleaves dropouts, so its linear layers are `layers.{0,2,4,6,7}`; the
//! widths are read from the file. Images go through OpenAI CLIP's own transform (Pillow bicubic, torchvision
//! centre crop), which the predictor's `simple_inference.py` uses. AlignProp's aesthetic loss is `|score − target|`.

use std::collections::BTreeMap;
use std::path::Path;

use burn::nn::Linear;
use burn::prelude::*;

use super::{PixelScorer, pixel_scorer};
use crate::io::load::{self, KeyRemap, LoadError};
use crate::models::clip::image_processor::CropRounding;
use crate::models::clip::resample::BytePrecision;
use crate::models::clip::{ClipModel, ImageProcessor, unit_rows};
use crate::nn::linear;

/// The five linear layers (`layers.{0,2,4,6,7}` in the checkpoint, `layers.{0..5}` here).
#[derive(Module, Debug)]
pub struct AestheticMlp<B: Backend> {
    pub layers: Vec<Linear<B>>,
}

const CHECKPOINT_LAYERS: [usize; 5] = [0, 2, 4, 6, 7];
/// `layers.{0,2,4,6,7}` → `layers.{0..5}`, under any prefix (ImageReward's head is `mlp.layers.*`). Applied in
/// order, so a key only ever moves down to an index already handled.
pub const LAYER_REMAPS: [KeyRemap; 5] = [
    (r"(^|\.)layers\.0\.", "${1}layers.0."),
    (r"(^|\.)layers\.2\.", "${1}layers.1."),
    (r"(^|\.)layers\.4\.", "${1}layers.2."),
    (r"(^|\.)layers\.6\.", "${1}layers.3."),
    (r"(^|\.)layers\.7\.", "${1}layers.4."),
];

impl<B: Backend> AestheticMlp<B> {
    /// Loads the predictor's safetensors (converted once from its `.pth` by `tools/convert_aesthetic.py`).
    pub fn load(file: &Path, device: &B::Device) -> Result<Self, LoadError> {
        let mlp = Self::from_shapes(&load::tensor_shapes(file)?, file, "", device)?;
        load::load_weights(mlp, &[file.to_path_buf()], &LAYER_REMAPS)
    }

    /// An uninitialised stack whose widths are those of `{prefix}layers.{0,2,4,6,7}.weight` in `shapes` (the
    /// header of `file`, named in errors: [`load::tensor_shapes`], so the weights are read once, when loaded).
    pub fn from_shapes(
        shapes: &BTreeMap<String, Vec<usize>>,
        file: &Path,
        prefix: &str,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let mut widths = Vec::new();
        for (i, layer) in CHECKPOINT_LAYERS.iter().enumerate() {
            let key = format!("{prefix}layers.{layer}.weight");
            let shape = shapes
                .get(&key)
                .cloned()
                .ok_or_else(|| LoadError::MissingTensor {
                    path: file.to_path_buf(),
                    key: key.clone(),
                    more: load::More(0),
                })?;
            let [out, input] = shape[..] else {
                return Err(LoadError::Tensor {
                    path: file.to_path_buf(),
                    key,
                    message: format!("shape {shape:?}, expected 2 dims"),
                });
            };
            if i == 0 {
                widths.push(input);
            }
            widths.push(out);
        }
        let layers = widths
            .windows(2)
            .map(|w| linear(w[0], w[1], true, device))
            .collect();
        Ok(Self { layers })
    }

    /// `[N, D]` unit embeddings → `[N]` scores.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 1> {
        let out = self.layers.iter().fold(x, |x, layer| layer.forward(x));
        let n = out.dims()[0];
        out.reshape([n])
    }
}

pub struct AestheticScorer<B: Backend> {
    /// OpenAI's CLIP ViT-L/14 in the transformers layout (`openai/clip-vit-large-patch14`).
    pub clip: ClipModel<B>,
    pub mlp: AestheticMlp<B>,
    pub processor: ImageProcessor,
}

impl<B: Backend> AestheticScorer<B> {
    pub fn load(mlp_file: &Path, clip_dir: &Path, device: &B::Device) -> Result<Self, LoadError> {
        let clip = ClipModel::from_dir(clip_dir, None, device)?;
        let processor = ImageProcessor {
            precision: BytePrecision::Pillow,
            crop_rounding: CropRounding::HalfEven,
            ..ImageProcessor::openai_clip(clip.vision_model.embeddings.image_size)
        };
        Ok(Self {
            clip,
            mlp: AestheticMlp::load(mlp_file, device)?,
            processor,
        })
    }

    /// Normalised pixel values `[N, 3, S, S]` → `[N]` scores (differentiable).
    pub fn scores(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 1> {
        self.mlp
            .forward(unit_rows(self.clip.image_embeds(pixel_values)))
    }
}

/// [`super::Scorer`] and AlignProp's aesthetic reward. Prompts are not used: the predictor scores the image alone.
impl<B: Backend> PixelScorer<B> for AestheticScorer<B> {
    fn metric(&self) -> &'static str {
        "aesthetic"
    }

    fn processor(&self) -> &ImageProcessor {
        &self.processor
    }

    fn pixel_scores(
        &self,
        pixel_values: Tensor<B, 4>,
        _prompts: &[String],
    ) -> Result<Tensor<B, 1>, String> {
        Ok(self.scores(pixel_values))
    }
}

pixel_scorer!(AestheticScorer);
