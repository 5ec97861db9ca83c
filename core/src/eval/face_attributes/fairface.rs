//! FairFace (Kärkkäinen & Joo, WACV 2021): gender, race and age of face chips with torchvision's `resnet34`
//! whose `fc` gives 18 outputs, read as the official `predict.py` reads them:
//!
//! ```text
//! input  Resize((224, 224)), ToTensor, Normalize(ImageNet mean, std)
//! 0..7   race   softmax over [White, Black, Latino_Hispanic, East Asian, Southeast Asian, Indian, Middle Eastern]
//! 7..9   gender softmax over [Male, Female]
//! 9..18  age    softmax over [0-2, 3-9, 10-19, 20-29, 30-39, 40-49, 50-59, 60-69, 70+]
//! ```
//!
//! **Weights.** The public checkpoint (`res34_fair_align_multi_7_20190809.pt`) is a pickle, which we never
//! read; `tools/convert_fairface.py` turns it into safetensors once, with the same keys. Its
//! `num_batches_tracked` counters are ignored when loading. Only the 7-race checkpoint fits this reading:
//! FairFace's 4-race one (`res34_fair_align_multi_4_20190809.pt`) has the same 18 outputs, so shapes cannot
//! tell the two apart.
//!
//! **Our classes** are sums of FairFace's probabilities ([`RACE_SOURCES`], [`AGE_BUCKET_LOWER`]):
//! - race, DeepFace's six classes in `data/attributes.toml` order: `asian` = East Asian + Southeast Asian (DeepFace
//!   has one Asian class), the other five one to one;
//! - gender: `[male, female]`, FairFace's own order;
//! - age: each 10-year bucket goes to the band of its lower bound under [`AgeBands`] (default young < 40 ≤
//!   mid-aged < 60 ≤ very old, so the buckets split exactly: young = 0–39, mid-aged = 40–59, very old = 60+).
//!
//! **Input.** Chips `[N, 3, H, W]` in [0, 1]; FairFace was trained on dlib-aligned chips, and the detector
//! ([`crate::eval::classify::detected`]) supplies MTCNN crops at 224 instead. Other sizes are resized with
//! [`super::to_chip_size`] (the parity test feeds 224 chips, as `predict.py`'s resize is then the identity).

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::torchvision_resnet::{DOWNSAMPLE_KEYS, ResNet, ResNetConfig};
use super::{AGE_BAND_CLASSES, AgeBands, GENDER_CLASSES, RACE_CLASSES, to_chip_size};
use crate::eval::classify::{AttributeClassifier, Attributes, AxisSpec};
use crate::io::load::{self, LoadError};

pub const FAIRFACE_CHIP_SIZE: usize = 224;
pub const FAIRFACE_OUTPUTS: usize = 18;
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// FairFace's race classes, in output order (outputs 0..7).
pub const FAIRFACE_RACES: [&str; 7] = [
    "White",
    "Black",
    "Latino_Hispanic",
    "East Asian",
    "Southeast Asian",
    "Indian",
    "Middle Eastern",
];
/// Lower bound in years of FairFace's nine age buckets (outputs 9..18: 0-2, 3-9, …, 60-69, 70+).
pub const AGE_BUCKET_LOWER: [f64; 9] = [0.0, 3.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0];

/// The FairFace races each of our race classes sums, in [`RACE_CLASSES`] order (white, asian, black,
/// latino hispanic, indian, middle eastern).
pub const RACE_SOURCES: [&[&str]; 6] = [
    &["White"],
    &["East Asian", "Southeast Asian"],
    &["Black"],
    &["Latino_Hispanic"],
    &["Indian"],
    &["Middle Eastern"],
];

/// FairFace's three softmaxes of one chip, in FairFace's class order.
#[derive(Debug, Clone, PartialEq)]
pub struct FairFaceReading {
    pub race7: Vec<f64>,
    pub gender: [f64; 2],
    pub age9: Vec<f64>,
}

impl FairFaceReading {
    /// One row of 18 logits → the three softmaxes.
    fn from_probabilities(row: &[f64]) -> Self {
        Self {
            race7: row[0..7].to_vec(),
            gender: [row[7], row[8]],
            age9: row[9..18].to_vec(),
        }
    }

    /// `[white, asian, black, latino hispanic, indian, middle eastern]`.
    pub fn race(&self) -> Vec<f64> {
        RACE_SOURCES
            .iter()
            .map(|sources| {
                sources
                    .iter()
                    .map(|s| self.race7[FAIRFACE_RACES.iter().position(|r| r == s).unwrap()])
                    .sum()
            })
            .collect()
    }

    /// `[young, mid-aged, very old]`: each bucket's mass added to the band of its lower bound.
    pub fn age(&self, bands: &AgeBands) -> [f64; 3] {
        let mut out = [0.0; 3];
        for (p, lower) in self.age9.iter().zip(AGE_BUCKET_LOWER) {
            out[bands.band(lower)] += p;
        }
        out
    }
}

#[derive(Debug)]
pub struct FairFace<B: Backend> {
    pub net: ResNet<B>,
    pub bands: AgeBands,
}

impl<B: Backend> FairFace<B> {
    /// Loads a converted FairFace checkpoint (torchvision `resnet34`, 18 outputs).
    pub fn load(file: &Path, device: &B::Device) -> Result<Self, LoadError> {
        Self::load_with(file, &ResNetConfig::resnet34(FAIRFACE_OUTPUTS), device)
    }

    /// [`Self::load`] for another basic-block ResNet shape (the tests' narrow one).
    pub fn load_with(
        file: &Path,
        config: &ResNetConfig,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        assert_eq!(
            config.num_classes, FAIRFACE_OUTPUTS,
            "FairFace has 18 outputs"
        );
        let net = load::load_weights(
            ResNet::new(config, device),
            &[file.to_path_buf()],
            &DOWNSAMPLE_KEYS,
        )?;
        Ok(Self {
            net,
            bands: AgeBands::default(),
        })
    }

    /// Chips `[N, 3, H, W]` in [0, 1] → the network input: 224×224, ImageNet-normalised.
    pub fn normalize(images: Tensor<B, 4>) -> Tensor<B, 4> {
        let device = images.device();
        let channel =
            |v: [f32; 3]| Tensor::<B, 1>::from_floats(v.as_slice(), &device).reshape([1, 3, 1, 1]);
        (to_chip_size(images, FAIRFACE_CHIP_SIZE) - channel(IMAGENET_MEAN)) / channel(IMAGENET_STD)
    }

    /// Normalised input → `[N, 18]`: each of the three heads softmaxed over its own columns.
    pub fn head_probabilities(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let logits = self.net.forward(x);
        Tensor::cat(
            vec![
                softmax(logits.clone().slice(s![.., 0..7]), 1),
                softmax(logits.clone().slice(s![.., 7..9]), 1),
                softmax(logits.slice(s![.., 9..18]), 1),
            ],
            1,
        )
    }

    /// Chips `[N, 3, H, W]` in [0, 1] → one reading per chip.
    pub fn read(&self, images: Tensor<B, 4>) -> Vec<FairFaceReading> {
        let data = self.head_probabilities(Self::normalize(images)).into_data();
        let values: Vec<f64> = data.iter::<f64>().collect();
        values
            .chunks(FAIRFACE_OUTPUTS)
            .map(FairFaceReading::from_probabilities)
            .collect()
    }
}

impl<B: Backend> AttributeClassifier<B> for FairFace<B> {
    fn name(&self) -> String {
        "fairface-res34-7race".into()
    }

    fn kind(&self) -> crate::eval::classify::kind::ClassifierKind {
        crate::eval::classify::kind::ClassifierKind::Fairface
    }

    fn axes(&self) -> Vec<AxisSpec> {
        vec![
            AxisSpec::new("gender", &GENDER_CLASSES),
            AxisSpec::new("race", &RACE_CLASSES),
            AxisSpec::new("age", &AGE_BAND_CLASSES),
        ]
    }

    fn classify(&self, images: Tensor<B, 4>) -> Vec<Attributes> {
        self.read(images)
            .iter()
            .map(|r| Attributes {
                detection: None,
                face_found: true,
                probabilities: BTreeMap::from([
                    ("gender".to_string(), r.gender.to_vec()),
                    ("race".to_string(), r.race()),
                    ("age".to_string(), r.age(&self.bands).to_vec()),
                ]),
            })
            .collect()
    }
}
