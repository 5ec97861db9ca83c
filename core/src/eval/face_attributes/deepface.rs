//! DeepFace's gender and race models (Serengil & Özpınar; `deepface.DeepFace.analyze(actions=['gender', 'race'])`),
//! the classifier of PopAlign's official evaluation. Each is its own VGG-Face trunk ([`super::vgg_face`]), fine-tuned,
//! with a 1×1 convolution `predictions` on the `fc7` features and a softmax:
//!
//! ```text
//! gender  [Woman, Man]
//! race    [asian, indian, black, white, middle eastern, latino hispanic]
//! ```
//!
//! **Weights.** DeepFace's `gender_model_weights.h5` and `race_model_single_batch.h5`, converted once by
//! `tools/convert_deepface.py` to `deepface_gender.safetensors` and `deepface_race.safetensors`.
//!
//! **Input.** Any face crop `[1, 3, h, w]` in [0, 1], RGB: [`deepface_input`] resizes and pads it as DeepFace does
//! (aspect kept, black borders, BGR). `analyze` reports percentages, and its `dominant_*` is the argmax; the
//! classes here are the same probabilities in the project's order (`data/attributes.toml`): gender
//! `[male, female]`, race `[white, asian, black, latino hispanic, indian, middle eastern]`.

use std::collections::BTreeMap;
use std::path::Path;

use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::deepface_input::{DEEPFACE_INPUT_SIZE, deepface_input};
use super::vgg_face::{VggFaceConfig, VggFaceTrunk};
use super::{GENDER_CLASSES, RACE_CLASSES};
use crate::eval::classify::kind::ClassifierKind;
use crate::eval::classify::{AttributeClassifier, Attributes, AxisSpec};
use crate::io::load::{self, LoadError};
use crate::nn::conv2d;

/// DeepFace's gender labels, in output order.
pub const DEEPFACE_GENDERS: [&str; 2] = ["Woman", "Man"];
/// DeepFace's race labels, in output order.
pub const DEEPFACE_RACES: [&str; 6] = [
    "asian",
    "indian",
    "black",
    "white",
    "middle eastern",
    "latino hispanic",
];
/// The converted weight files `popalign classify --classifier deepface` reads from its weights folder.
pub const GENDER_FILE: &str = "deepface_gender.safetensors";
pub const RACE_FILE: &str = "deepface_race.safetensors";

/// One of DeepFace's attribute models: the trunk and its `predictions` head.
#[derive(Module, Debug)]
pub struct DeepFaceNet<B: Backend> {
    pub backbone: VggFaceTrunk<B>,
    pub predictions: Conv2d<B>,
}

impl<B: Backend> DeepFaceNet<B> {
    pub fn new(config: &VggFaceConfig, classes: usize, device: &B::Device) -> Self {
        Self {
            backbone: VggFaceTrunk::new(config, device),
            predictions: conv2d(config.fc, classes, 1, 1, 0, device),
        }
    }

    /// Loads a converted file, naming any missing or mis-shaped tensor.
    pub fn load(
        file: &Path,
        config: &VggFaceConfig,
        classes: usize,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        load::load_weights(
            Self::new(config, classes, device),
            &[file.to_path_buf()],
            &[],
        )
    }

    /// DeepFace's input `[N, 3, 224, 224]` → class probabilities `[N, classes]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let logits = crate::nn::conv::apply(&self.predictions, self.backbone.forward(x));
        softmax(logits.flatten(1, 3), 1)
    }
}

/// Both models, as `analyze(actions=['gender', 'race'])` runs them.
#[derive(Debug)]
pub struct DeepFace<B: Backend> {
    pub gender: DeepFaceNet<B>,
    pub race: DeepFaceNet<B>,
}

/// DeepFace's probabilities of one face, in DeepFace's class order.
#[derive(Debug, Clone, PartialEq)]
pub struct DeepFaceReading {
    /// `[Woman, Man]`.
    pub gender: Vec<f64>,
    /// `[asian, indian, black, white, middle eastern, latino hispanic]`.
    pub race: Vec<f64>,
}

/// `values` (in `from` order) rearranged into `to` order, names matched case-insensitively.
fn reorder(values: &[f64], from: &[&str], to: &[&str]) -> Vec<f64> {
    to.iter()
        .map(|name| {
            values[from
                .iter()
                .position(|f| f.eq_ignore_ascii_case(name))
                .expect("same classes")]
        })
        .collect()
}

impl DeepFaceReading {
    /// `[male, female]`.
    pub fn gender_ours(&self) -> Vec<f64> {
        reorder(&self.gender, &["female", "male"], &GENDER_CLASSES)
    }

    /// `[white, asian, black, latino hispanic, indian, middle eastern]`.
    pub fn race_ours(&self) -> Vec<f64> {
        reorder(&self.race, &DEEPFACE_RACES, &RACE_CLASSES)
    }
}

impl<B: Backend> DeepFace<B> {
    /// The two converted files in `dir` ([`GENDER_FILE`], [`RACE_FILE`]).
    pub fn from_dir(dir: &Path, device: &B::Device) -> Result<Self, LoadError> {
        Self::load(&dir.join(GENDER_FILE), &dir.join(RACE_FILE), device)
    }

    /// Two converted files, at the widths their headers give (VGG-Face's for DeepFace's own weights).
    pub fn load(gender: &Path, race: &Path, device: &B::Device) -> Result<Self, LoadError> {
        let net = |file: &Path, classes: usize| {
            let config = VggFaceConfig::of_file(file, "backbone.")?;
            DeepFaceNet::load(file, &config, classes, device)
        };
        Ok(Self {
            gender: net(gender, DEEPFACE_GENDERS.len())?,
            race: net(race, DEEPFACE_RACES.len())?,
        })
    }

    /// Crops `[N, 3, h, w]` in [0, 1] → DeepFace's input `[N, 3, 224, 224]` ([`deepface_input`] per crop).
    pub fn input(images: Tensor<B, 4>) -> Result<Tensor<B, 4>, String> {
        let [n, _, h, w] = images.dims();
        let device = images.device();
        let values: Vec<f32> = images
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| format!("{e:?}"))?;
        let mut out = Vec::with_capacity(n * 3 * DEEPFACE_INPUT_SIZE * DEEPFACE_INPUT_SIZE);
        for crop in values.chunks(3 * h * w) {
            out.extend(deepface_input(crop, h, w)?);
        }
        let side = DEEPFACE_INPUT_SIZE;
        Ok(Tensor::from_data(
            TensorData::new(out, [n, 3, side, side]),
            &device,
        ))
    }

    /// DeepFace's input → one reading per face.
    pub fn read(&self, input: Tensor<B, 4>) -> Vec<DeepFaceReading> {
        let rows = |p: Tensor<B, 2>| -> Vec<Vec<f64>> {
            let k = p.dims()[1];
            let values: Vec<f64> = p.into_data().iter::<f64>().collect();
            values.chunks(k).map(<[f64]>::to_vec).collect()
        };
        let genders = rows(self.gender.forward(input.clone()));
        let races = rows(self.race.forward(input));
        genders
            .into_iter()
            .zip(races)
            .map(|(gender, race)| DeepFaceReading { gender, race })
            .collect()
    }
}

impl<B: Backend> AttributeClassifier<B> for DeepFace<B> {
    fn name(&self) -> String {
        "deepface-vgg-face".into()
    }

    fn kind(&self) -> ClassifierKind {
        ClassifierKind::Deepface
    }

    fn axes(&self) -> Vec<AxisSpec> {
        vec![
            AxisSpec::new("gender", &GENDER_CLASSES),
            AxisSpec::new("race", &RACE_CLASSES),
        ]
    }

    fn classify(&self, images: Tensor<B, 4>) -> Vec<Attributes> {
        let input = Self::input(images).unwrap_or_else(|e| panic!("DeepFace input: {e}"));
        self.read(input)
            .iter()
            .map(|r| Attributes {
                detection: None,
                face_found: true,
                probabilities: BTreeMap::from([
                    ("gender".to_string(), r.gender_ours()),
                    ("race".to_string(), r.race_ours()),
                ]),
            })
            .collect()
    }
}
