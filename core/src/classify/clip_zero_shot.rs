//! Zero-shot attribute classification with a CLIP model: each class of an axis gets a text prompt ("a photo
//! of a woman"), and an image's probabilities on that axis are the softmax over the classes of
//! `exp(logit_scale) · cos(image embedding, prompt embedding)`, exactly `CLIPModel(...).logits_per_image
//! .softmax(-1)` with that axis's prompts as the texts.
//!
//! The prompts are encoded once, at construction, and kept as unit vectors; classifying then costs one
//! vision pass per batch. Images go through [`crate::clip::images_to_pixel_values`]: transformers' CLIP
//! processor steps (shortest side to `image_size` with antialiased bicubic, centre crop, CLIP mean/std) in
//! floating point, so float images differ from the byte-rounded reference by at most a byte level. Every image
//! counts as a face (`face_found = true`): finding the face is [`super::detected::DetectedFaces`]' job
//! when this classifier reads face crops.

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::{AttributeClassifier, Attributes, AxisSpec};
use crate::clip::{ClipModel, images_to_pixel_values, token_ids, unit_rows};
use crate::face_attributes::{GENDER_CLASSES, RACE_CLASSES};
use crate::load::{self, LoadError};
use crate::tokenizer::ClipTokenizer;

/// One axis to classify: its classes, in output order, and one prompt per class.
#[derive(Debug, Clone, PartialEq)]
pub struct ZeroShotAxis {
    pub name: String,
    pub classes: Vec<String>,
    pub prompts: Vec<String>,
}

impl ZeroShotAxis {
    /// An axis whose prompts are given one by one (`gender`: "a photo of a man", "a photo of a woman").
    pub fn with_prompts(name: &str, classes: &[&str], prompts: &[&str]) -> Self {
        Self {
            name: name.into(),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            prompts: prompts.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// An axis whose prompts fill `{class}` in `template` with each class label
    /// (`"a photo of a {class} person"` → "a photo of a latino hispanic person").
    pub fn from_template(name: &str, classes: &[&str], template: &str) -> Self {
        let prompts: Vec<String> = classes
            .iter()
            .map(|c| template.replace("{class}", c))
            .collect();
        Self {
            name: name.into(),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            prompts,
        }
    }

    /// Refuses axes a softmax cannot be taken over or whose prompts do not pair with the classes.
    fn validate(&self) -> Result<(), String> {
        if self.classes.len() < 2 {
            return Err(format!("axis `{}` needs at least two classes", self.name));
        }
        if self.prompts.len() != self.classes.len() {
            return Err(format!(
                "axis `{}`: {} classes but {} prompts",
                self.name,
                self.classes.len(),
                self.prompts.len()
            ));
        }
        Ok(())
    }
}

/// The `gender` and `race` axes with the project's labels and order (`data/attributes.toml`): gender as
/// "a photo of a man" / "a photo of a woman" (CLIP reads nouns better than the adjectives "male"/"female"),
/// race as "a photo of a {class} person".
pub fn default_axes() -> Vec<ZeroShotAxis> {
    vec![
        ZeroShotAxis::with_prompts(
            "gender",
            &GENDER_CLASSES,
            &["a photo of a man", "a photo of a woman"],
        ),
        ZeroShotAxis::from_template("race", &RACE_CLASSES, "a photo of a {class} person"),
    ]
}

/// An axis with its prompts already embedded.
struct EncodedAxis<B: Backend> {
    spec: ZeroShotAxis,
    /// `[classes, E]`, each row of unit length.
    unit_text_embeds: Tensor<B, 2>,
}

pub struct ClipZeroShot<B: Backend> {
    pub model: ClipModel<B>,
    /// Recorded with the results; [`Self::from_dir`] puts the model folder's name in it.
    pub name: String,
    axes: Vec<EncodedAxis<B>>,
}

impl<B: Backend> ClipZeroShot<B> {
    /// Embeds every axis's prompts with `model`'s text tower, tokenized by `tokenizer`.
    pub fn new(
        model: ClipModel<B>,
        tokenizer: &ClipTokenizer,
        axes: Vec<ZeroShotAxis>,
    ) -> Result<Self, String> {
        if axes.is_empty() {
            return Err("no axes to classify".into());
        }
        let device = model.logit_scale.val().device();
        let encoded = axes
            .into_iter()
            .map(|spec| {
                spec.validate()?;
                let input_ids = token_ids::<B>(tokenizer, &spec.prompts, &device)?;
                let unit_text_embeds = unit_rows(model.text_embeds(input_ids));
                Ok(EncodedAxis {
                    spec,
                    unit_text_embeds,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            model,
            name: "clip-zero-shot".into(),
            axes: encoded,
        })
    }

    /// Loads a `CLIPModel` folder (`config.json`, `model.safetensors`) and its tokenizer (`vocab.json`,
    /// `merges.txt`, in the folder itself as on the hub, or in `tokenizer/`).
    pub fn from_dir(
        dir: &Path,
        axes: Vec<ZeroShotAxis>,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let model = ClipModel::from_dir(dir, None, device)?;
        let tokenizer = ClipTokenizer::from_dir(&load::component_dir(dir, "tokenizer"))?;
        let mut classifier =
            Self::new(model, &tokenizer, axes).map_err(|message| LoadError::Unsupported {
                path: dir.to_path_buf(),
                message,
            })?;
        let folder = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        classifier.name = format!("clip-zero-shot:{}", folder.unwrap_or_default());
        Ok(classifier)
    }

    /// The square input size of the vision tower.
    pub fn image_size(&self) -> usize {
        self.model.vision_model.embeddings.image_size
    }

    /// Normalised pixel values `[N, 3, S, S]` → per axis (in construction order) its name and the
    /// `[N, classes]` probabilities, still on the device.
    pub fn probability_tensors(&self, pixel_values: Tensor<B, 4>) -> Vec<(String, Tensor<B, 2>)> {
        let unit_image_embeds = unit_rows(self.model.image_embeds(pixel_values));
        let scale = self.model.logit_scale_exp();
        self.axes
            .iter()
            .map(|axis| {
                let cos = unit_image_embeds
                    .clone()
                    .matmul(axis.unit_text_embeds.clone().transpose());
                (axis.spec.name.clone(), softmax(cos * scale.clone(), 1))
            })
            .collect()
    }

    /// Normalised pixel values `[N, 3, S, S]` (e.g. the reference processor's exact tensor) → one result
    /// per image.
    pub fn classify_pixel_values(&self, pixel_values: Tensor<B, 4>) -> Vec<Attributes> {
        let n = pixel_values.dims()[0];
        let mut results: Vec<Attributes> = (0..n)
            .map(|_| Attributes {
                face_found: true,
                probabilities: BTreeMap::new(),
            })
            .collect();
        for (name, probabilities) in self.probability_tensors(pixel_values) {
            let k = probabilities.dims()[1];
            let values: Vec<f64> = probabilities.into_data().iter::<f64>().collect();
            for (result, row) in results.iter_mut().zip(values.chunks(k)) {
                result.probabilities.insert(name.clone(), row.to_vec());
            }
        }
        results
    }
}

impl<B: Backend> AttributeClassifier<B> for ClipZeroShot<B> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn axes(&self) -> Vec<AxisSpec> {
        self.axes
            .iter()
            .map(|axis| AxisSpec {
                name: axis.spec.name.clone(),
                classes: axis.spec.classes.clone(),
            })
            .collect()
    }

    fn classify(&self, images: Tensor<B, 4>) -> Vec<Attributes> {
        self.classify_pixel_values(images_to_pixel_values(images, self.image_size()))
    }
}
