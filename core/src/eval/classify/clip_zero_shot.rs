//! Zero-shot attribute classification with a CLIP model: each class of an axis gets a text prompt ("a photo
//! of a woman"), and an image's probabilities on that axis are the softmax over the classes of
//! `exp(logit_scale) · cos(image embedding, prompt embedding)`, exactly `CLIPModel(...).logits_per_image
//! .softmax(-1)` with that axis's prompts as the texts.
//!
//! The prompts are encoded once, at construction, and kept as unit vectors; classifying then costs one
//! vision pass per batch. Images go through [`crate::models::clip::images_to_pixel_values`]: transformers' CLIP
//! processor steps (shortest side to `image_size` with antialiased bicubic, centre crop, CLIP mean/std) in
//! floating point, so float images differ from the byte-rounded reference by at most a byte level. Every image
//! counts as a face (`face_found = true`): finding the face is [`super::detected::DetectedFaces`]' job
//! when this classifier reads face crops.
//!
//! Once the prompts are embedded only the image side is needed, so a report carries just that
//! ([`ClipZeroShot::carried_files`], read back by [`ClipZeroShot::from_carried`]): [`CARRIED_CONFIG`] and
//! [`CARRIED_VISION`] as transformers' `CLIPVisionModelWithProjection` saves them, and [`CARRIED_PROMPTS`]
//! with `logit_scale`, each axis's unit prompt embeddings (`text_embeds.<axis>`) and the axes as JSON metadata.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::softmax;
use serde_json::Value;

use super::{AttributeClassifier, Attributes, AxisSpec};
use crate::eval::face_attributes::{GENDER_CLASSES, RACE_CLASSES};
use crate::io::load::{self, LoadError};
use crate::io::tensor_io::{tensors_from_bytes, tensors_to_bytes};
use crate::models::clip::config::check_hidden_act;
use crate::models::clip::{
    ClipModel, ClipVisionConfig, ClipVisionModel, images_to_pixel_values, token_ids, unit_rows,
};
use crate::models::tokenizer::ClipTokenizer;

/// The carried vision tower's `config.json`: a `CLIPVisionConfig` of a `CLIPVisionModelWithProjection`.
pub const CARRIED_CONFIG: &str = "config.json";
/// The carried vision tower's weights: `vision_model.*` and `visual_projection.weight`.
pub const CARRIED_VISION: &str = "vision.safetensors";
/// `logit_scale`, `text_embeds.<axis>` (`[classes, E]`, unit rows) and the axes (`axes` metadata, JSON).
pub const CARRIED_PROMPTS: &str = "zero_shot.safetensors";

/// One axis to classify: its classes, in output order, and one prompt per class.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// The model's image side (`vision_model`, `visual_projection`); the text tower was needed only to embed
    /// the prompts.
    pub vision: ClipVisionModel<B>,
    /// The checkpoint's `logit_scale` (its exponential scales the cosines), `[1]`.
    logit_scale: Tensor<B, 1>,
    /// Recorded with the results; [`Self::from_dir`] puts the model folder's name in it.
    pub name: String,
    axes: Vec<EncodedAxis<B>>,
}

impl<B: Backend> ClipZeroShot<B> {
    /// Embeds every axis's prompts with `model`'s text tower, tokenized by `tokenizer`, and keeps the
    /// image side of `model`.
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
            logit_scale: model.logit_scale.val(),
            vision: ClipVisionModel {
                vision_model: model.vision_model,
                visual_projection: Some(model.visual_projection),
            },
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
        self.vision.vision_model.embeddings.image_size
    }

    /// Normalised pixel values `[N, 3, S, S]` → per axis (in construction order) its name and the
    /// `[N, classes]` probabilities, still on the device.
    pub fn probability_tensors(&self, pixel_values: Tensor<B, 4>) -> Vec<(String, Tensor<B, 2>)> {
        let image_embeds = self
            .vision
            .forward(pixel_values)
            .image_embeds
            .expect("the zero-shot vision tower has its projection");
        let unit_image_embeds = unit_rows(image_embeds);
        let scale = self.logit_scale.clone().exp().reshape([1, 1]);
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
        let read: Vec<(String, TensorData)> = self
            .probability_tensors(pixel_values)
            .into_iter()
            .map(|(name, p)| (name, p.into_data()))
            .collect();
        attributes_of(n, read)
    }

    /// [`AttributeClassifier::classify`] reading the probabilities back asynchronously, as a browser must.
    pub async fn classify_async(&self, images: Tensor<B, 4>) -> Result<Vec<Attributes>, String> {
        let n = images.dims()[0];
        let pixel_values = images_to_pixel_values(images, self.image_size());
        let mut read = Vec::new();
        for (name, p) in self.probability_tensors(pixel_values) {
            let data = p
                .into_data_async()
                .await
                .map_err(|e| format!("reading back the {name} probabilities: {e:?}"))?;
            read.push((name, data));
        }
        Ok(attributes_of(n, read))
    }

    /// The files a report carries for this classifier (names as [`CARRIED_CONFIG`], [`CARRIED_VISION`],
    /// [`CARRIED_PROMPTS`]) and their bytes; `clip_config` is the `config.json` of the `CLIPModel` folder
    /// the classifier was loaded from. The weights are written to `scratch` on the way (burn-store saves
    /// to files).
    pub fn carried_files(
        &self,
        clip_config: &Value,
        scratch: &Path,
    ) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
        let config = carried_vision_config(clip_config)?;
        let vision_file = scratch.join(CARRIED_VISION);
        load::save_weights(&self.vision, &vision_file, |_, _| true, &[])?;
        let vision =
            std::fs::read(&vision_file).map_err(|e| format!("{}: {e}", vision_file.display()))?;
        let _ = std::fs::remove_file(&vision_file);
        let mut tensors = BTreeMap::from([("logit_scale".to_string(), self.logit_scale.to_data())]);
        for axis in &self.axes {
            let key = format!("text_embeds.{}", axis.spec.name);
            tensors.insert(key, axis.unit_text_embeds.to_data());
        }
        let specs: Vec<&ZeroShotAxis> = self.axes.iter().map(|a| &a.spec).collect();
        let axes = serde_json::to_string(&specs).map_err(|e| e.to_string())?;
        let prompts = tensors_to_bytes(&tensors, Some(HashMap::from([("axes".into(), axes)])))?;
        let config = serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?;
        Ok(vec![
            (CARRIED_CONFIG, config),
            (CARRIED_VISION, vision),
            (CARRIED_PROMPTS, prompts),
        ])
    }

    /// The classifier from the bytes of the files [`Self::carried_files`] wrote; `dir` names their folder
    /// in errors.
    pub fn from_carried(
        dir: &str,
        config: &[u8],
        vision: Vec<u8>,
        prompts: &[u8],
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let path = |file: &str| PathBuf::from(format!("{dir}/{file}"));
        let config_path = path(CARRIED_CONFIG);
        let config: ClipVisionConfig =
            serde_json::from_slice(config).map_err(|e| LoadError::Config {
                path: config_path.clone(),
                message: e.to_string(),
            })?;
        check_hidden_act(&config.hidden_act, &config_path)?;
        if !config.with_projection() {
            return Err(LoadError::Unsupported {
                path: config_path,
                message: "not a CLIPVisionModelWithProjection".into(),
            });
        }
        let vision = load::load_weights_from_bytes(
            ClipVisionModel::new(&config, device),
            &path(CARRIED_VISION).to_string_lossy(),
            vision,
        )?;
        let (logit_scale, axes) = read_prompts(&path(CARRIED_PROMPTS), prompts, device)?;
        Ok(Self {
            vision,
            logit_scale,
            name: format!("clip-zero-shot:{dir}"),
            axes,
        })
    }
}

/// Per axis its name and `[N, classes]` probabilities read back → one result per image.
fn attributes_of(n: usize, read: Vec<(String, TensorData)>) -> Vec<Attributes> {
    let mut results: Vec<Attributes> = (0..n)
        .map(|_| Attributes {
            detection: None,
            face_found: true,
            probabilities: BTreeMap::new(),
        })
        .collect();
    for (name, data) in read {
        let k = data.shape.get(1).copied().unwrap_or(1);
        let values: Vec<f64> = data.iter::<f64>().collect();
        for (result, row) in results.iter_mut().zip(values.chunks(k)) {
            result.probabilities.insert(name.clone(), row.to_vec());
        }
    }
    results
}

/// A `CLIPModel`'s `config.json` → the `CLIPVisionConfig` of its image side as a
/// `CLIPVisionModelWithProjection` (the model's `projection_dim`, that architecture).
pub fn carried_vision_config(clip_config: &Value) -> Result<Value, String> {
    let mut vision = clip_config
        .get("vision_config")
        .cloned()
        .ok_or("the CLIP config has no vision_config")?;
    let projection_dim = clip_config
        .get("projection_dim")
        .cloned()
        .ok_or("the CLIP config has no projection_dim")?;
    let fields = vision
        .as_object_mut()
        .ok_or("vision_config is not an object")?;
    fields.insert("projection_dim".into(), projection_dim);
    fields.insert(
        "architectures".into(),
        serde_json::json!(["CLIPVisionModelWithProjection"]),
    );
    Ok(vision)
}

/// [`CARRIED_PROMPTS`]' bytes → `logit_scale` and the encoded axes, each checked against the metadata.
fn read_prompts<B: Backend>(
    path: &Path,
    bytes: &[u8],
    device: &B::Device,
) -> Result<(Tensor<B, 1>, Vec<EncodedAxis<B>>), LoadError> {
    let invalid = |message: String| LoadError::Config {
        path: path.to_path_buf(),
        message,
    };
    let (_, metadata) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| LoadError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let axes_json = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get("axes"))
        .ok_or_else(|| invalid("no `axes` metadata".into()))?;
    let specs: Vec<ZeroShotAxis> =
        serde_json::from_str(axes_json).map_err(|e| invalid(format!("`axes` metadata: {e}")))?;
    let mut tensors = tensors_from_bytes(path, bytes)?;
    let mut take = |key: &str| {
        tensors.remove(key).ok_or_else(|| LoadError::MissingTensor {
            path: path.to_path_buf(),
            key: key.into(),
            more: load::More(0),
        })
    };
    let scale = take("logit_scale")?.to_vec::<f32>().unwrap_or_default();
    let [scale] = scale[..] else {
        return Err(LoadError::Tensor {
            path: path.to_path_buf(),
            key: "logit_scale".into(),
            message: format!("{} values, expected one", scale.len()),
        });
    };
    let logit_scale = Tensor::from_floats([scale], device);
    let mut axes = Vec::new();
    for spec in specs {
        spec.validate().map_err(invalid)?;
        let key = format!("text_embeds.{}", spec.name);
        let data = take(&key)?;
        if data.shape.len() != 2 || data.shape[0] != spec.classes.len() {
            return Err(LoadError::Tensor {
                path: path.to_path_buf(),
                key,
                message: format!(
                    "shape {:?}, expected [{}, E] (one row per class)",
                    data.shape,
                    spec.classes.len()
                ),
            });
        }
        axes.push(EncodedAxis {
            spec,
            unit_text_embeds: Tensor::from_data(data, device),
        });
    }
    Ok((logit_scale, axes))
}

impl<B: Backend> AttributeClassifier<B> for ClipZeroShot<B> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn kind(&self) -> super::kind::ClassifierKind {
        super::kind::ClassifierKind::Clip
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
