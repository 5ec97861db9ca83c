//! **ImageReward** (Xu et al. 2023, `THUDM/ImageReward`, pip `image-reward`): BLIP's ViT-L/16 reads the image,
//! BLIP's BERT text encoder reads the prompt while cross-attending to every image token, and a linear stack
//! without activations (the aesthetic predictor's layout, 768 → 1024 → 128 → 64 → 16 → 1) maps the `[CLS]`
//! state to a reward, which is then standardised:
//!
//! ```text
//! score = (MLP(BERT(prompt | ViT(image))[CLS]) − 0.16717362830052426) / 1.0333394966054072
//! ```
//!
//! The folder is what `tools/convert_imagereward.py` writes from the official `ImageReward.pt` and
//! `med_config.json`: `model.safetensors` (the checkpoint's own key names), `med_config.json`,
//! `vision_config.json` and bert-base-uncased's `vocab.txt`. Images go through the package's `_transform`, which
//! is OpenAI CLIP's (Pillow bicubic resize of the shorter side, centre crop, CLIP mean and std).

use std::path::Path;

use burn::prelude::*;

use super::aesthetic::{AestheticMlp, LAYER_REMAPS};
use super::{PixelScorer, one_prompt_per_image, pixel_scorer};
use crate::io::load::{self, LoadError};
use crate::models::blip::bert::{BertModel, KEY_REMAPS};
use crate::models::blip::config::{BlipVisionConfig, MedConfig};
use crate::models::blip::tokenizer::BlipTokenizer;
use crate::models::blip::vit::VisionTransformer;
use crate::models::clip::ImageProcessor;
use crate::models::clip::image_processor::CropRounding;
use crate::models::clip::resample::BytePrecision;

/// ImageReward's `self.mean` and `self.std`.
pub const REWARD_MEAN: f64 = 0.16717362830052426;
pub const REWARD_STD: f64 = 1.0333394966054072;

/// The parts of BLIP the score reads (`blip.*`).
#[derive(Module, Debug)]
pub struct Blip<B: Backend> {
    pub visual_encoder: VisionTransformer<B>,
    pub text_encoder: BertModel<B>,
}

/// The package's `ImageReward` module, laid out as its checkpoint.
#[derive(Module, Debug)]
pub struct ImageReward<B: Backend> {
    pub blip: Blip<B>,
    pub mlp: AestheticMlp<B>,
}

pub struct ImageRewardScorer<B: Backend> {
    pub model: ImageReward<B>,
    pub tokenizer: BlipTokenizer,
    pub processor: ImageProcessor,
}

impl<B: Backend> ImageReward<B> {
    /// Normalised pixel values `[N, 3, S, S]` and token ids with their mask `[N, L]` → `[N]` standardised
    /// rewards (differentiable).
    pub fn forward(
        &self,
        pixel_values: Tensor<B, 4>,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
    ) -> Tensor<B, 1> {
        let image_embeds = self.blip.visual_encoder.forward(pixel_values);
        let states = self
            .blip
            .text_encoder
            .forward(input_ids, attention_mask, image_embeds);
        let [n, _, d] = states.dims();
        let cls = states.slice([0..n, 0..1, 0..d]).reshape([n, d]);
        (self.mlp.forward(cls) - REWARD_MEAN) / REWARD_STD
    }
}

impl<B: Backend> ImageRewardScorer<B> {
    /// Loads a folder written by `tools/convert_imagereward.py`.
    pub fn from_dir(dir: &Path, device: &B::Device) -> Result<Self, LoadError> {
        let vision = BlipVisionConfig::read(&dir.join("vision_config.json"))?;
        let text = MedConfig::read(&dir.join("med_config.json"))?;
        let vocab = dir.join("vocab.txt");
        let tokenizer = BlipTokenizer::from_vocab(&vocab)?;
        if tokenizer.vocab_size != text.vocab_size {
            return Err(LoadError::Config {
                path: vocab,
                message: format!(
                    "{} tokens with BLIP's [DEC] and [ENC], but med_config.json's vocab_size is {}: \
                     the vocabulary is not the one the text encoder was trained on",
                    tokenizer.vocab_size, text.vocab_size
                ),
            });
        }
        let file = dir.join("model.safetensors");
        let mlp = AestheticMlp::from_shapes(&load::tensor_shapes(&file)?, &file, "mlp.", device)?;
        let model = ImageReward {
            blip: Blip {
                visual_encoder: VisionTransformer::new(&vision, device),
                text_encoder: BertModel::new(&text, vision.hidden_size, device),
            },
            mlp,
        };
        let remaps: Vec<_> = KEY_REMAPS.iter().chain(&LAYER_REMAPS).copied().collect();
        let model = load::load_weights(model, &[file], &remaps)?;
        let processor = ImageProcessor {
            precision: BytePrecision::Pillow,
            crop_rounding: CropRounding::HalfEven,
            ..ImageProcessor::openai_clip(vision.image_size)
        };
        Ok(Self {
            model,
            tokenizer,
            processor,
        })
    }
}

/// [`super::Scorer`] and an AlignProp reward (higher is better).
impl<B: Backend> PixelScorer<B> for ImageRewardScorer<B> {
    fn metric(&self) -> &'static str {
        "imagereward"
    }

    fn processor(&self) -> &ImageProcessor {
        &self.processor
    }

    fn pixel_scores(
        &self,
        pixel_values: Tensor<B, 4>,
        prompts: &[String],
    ) -> Result<Tensor<B, 1>, String> {
        one_prompt_per_image(pixel_values.dims()[0], prompts)?;
        let text = self.tokenizer.batch::<B>(prompts, &pixel_values.device())?;
        Ok(self
            .model
            .forward(pixel_values, text.input_ids, text.attention_mask))
    }
}

pixel_scorer!(ImageRewardScorer);
