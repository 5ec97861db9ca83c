//! Attribute classifiers and quality scorers behind two traits, so evaluation, the CLI and the
//! browser treat the toy world's classifier and the face-attribute networks alike.

pub mod aesthetic;
pub mod clip_scores;
pub mod clip_zero_shot;
pub mod detected;
pub mod hps;
pub mod image_reward;
pub mod kind;

use std::collections::BTreeMap;

use burn::prelude::*;

use crate::models::clip::ImageProcessor;

/// One attribute axis: its name (`gender`, `race`, `age`) and its classes in output order.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct AxisSpec {
    pub name: String,
    pub classes: Vec<String>,
}

impl AxisSpec {
    /// An axis from its name and class labels.
    pub fn new(name: &str, classes: &[&str]) -> Self {
        Self {
            name: name.into(),
            classes: classes.iter().map(|c| c.to_string()).collect(),
        }
    }
}

/// What a classifier says about one image (or, from [`AttributeClassifier::classify_each_face`], one face).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Attributes {
    /// A face (in the toy world: a figure) was found; without one the probabilities are empty.
    pub face_found: bool,
    /// Per axis name, one probability per class of that axis.
    pub probabilities: BTreeMap<String, Vec<f64>>,
    /// Where the face was, for classifiers with a face detector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<FaceDetection>,
}

/// The detected face a result is about.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct FaceDetection {
    /// Faces the detector found in the image.
    pub count: usize,
    /// This face's place among them in the detector's order (MTCNN: largest first; YuNet: best score first); 0 is
    /// the one a single-face classification reads.
    pub index: usize,
    /// `[x1, y1, x2, y2]` in pixels of the classified image.
    pub bbox: [f32; 4],
    /// The detector's face probability.
    pub score: f32,
}

/// Longest side an image is classified at; larger images are downscaled first (triangle filter, aspect kept),
/// so a 12000×12000 photo costs what a 2048×2048 one does. The CLI and the browser both decode through this
/// limit, so they classify the same pixels.
pub const MAX_SIDE: u32 = 2048;

/// Interleaved 8-bit RGB (`image::RgbImage`'s buffer) → `[3, H, W]` values in [0, 1], the input every
/// classifier takes; the CLI and the browser both convert through here so they see the same numbers.
pub fn unit_rgb_planes(rgb: &[u8], width: usize, height: usize) -> Vec<f32> {
    let plane = width * height;
    let mut data = vec![0.0; 3 * plane];
    for (i, pixel) in rgb.chunks_exact(3).take(plane).enumerate() {
        for (c, value) in pixel.iter().enumerate() {
            data[c * plane + i] = f32::from(*value) / 255.0;
        }
    }
    data
}

/// An image file's bytes → `[3, H, W]` values in [0, 1] (alpha dropped, grayscale expanded, downscaled to
/// [`MAX_SIDE`]), its width and its height, or why not. The CLI and the browser both decode through here.
/// Decoding refuses images over 20000 px a side or 2 GiB of pixels, so a hostile header cannot exhaust memory.
pub fn decode_unit_rgb(bytes: &[u8]) -> Result<(Vec<f32>, usize, usize), String> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(20_000);
    limits.max_image_height = Some(20_000);
    limits.max_alloc = Some(2 << 30);
    reader.limits(limits);
    let mut image = reader
        .decode()
        .map_err(|e| e.to_string().trim().to_string())?;
    if image.width().max(image.height()) > MAX_SIDE {
        image = image.resize(MAX_SIDE, MAX_SIDE, image::imageops::FilterType::Triangle);
    }
    let rgb = image.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    Ok((unit_rgb_planes(rgb.as_raw(), w, h), w, h))
}

pub trait AttributeClassifier<B: Backend> {
    /// Recorded in `attributes/<set>.csv` so results from different classifiers are never mixed up.
    fn name(&self) -> String;
    /// Which of our classifiers this is (a face classifier's heads answer for the pipeline they belong to).
    fn kind(&self) -> kind::ClassifierKind;
    fn axes(&self) -> Vec<AxisSpec>;
    /// Images `[N, 3, H, W]` in [0, 1] → one result per image.
    fn classify(&self, images: Tensor<B, 4>) -> Vec<Attributes>;
    /// One image `[1, 3, H, W]` → one result per face it shows (one "no face" result without any).
    /// Classifiers without a face detector read the image as one.
    fn classify_each_face(&self, image: Tensor<B, 4>) -> Vec<Attributes> {
        self.classify(image)
    }
}

/// A decoded image: interleaved 8-bit RGB, its width and its height.
pub type Rgb8<'a> = (&'a [u8], usize, usize);

/// A quality score per (image, prompt); higher is better.
pub trait Scorer<B: Backend> {
    fn name(&self) -> String;
    /// Images `[N, 3, H, W]` in [0, 1] and their prompts → one score each.
    fn score(&self, images: Tensor<B, 4>, prompts: &[String]) -> Vec<f64>;

    /// Decoded images (any sizes) and their prompts → one score each. The CLIP-based scorers override this to
    /// preprocess the bytes exactly as their reference processor does; the default scores each image's [0, 1]
    /// planes through [`Scorer::score`].
    fn score_rgb8(
        &self,
        images: &[Rgb8<'_>],
        prompts: &[String],
        device: &B::Device,
    ) -> Result<Vec<f64>, String> {
        let mut scores = Vec::with_capacity(images.len());
        for (&(rgb, width, height), prompt) in images.iter().zip(prompts) {
            let planes = unit_rgb_planes(rgb, width, height);
            let image = Tensor::<B, 1>::from_floats(planes.as_slice(), device)
                .reshape([1, 3, height, width]);
            scores.extend(self.score(image, std::slice::from_ref(prompt)));
        }
        Ok(scores)
    }
}

/// The CLIP-family scorers (PickScore, CLIP score, HPSv2, aesthetics): an image processor and a score of normalised
/// pixel values. [`pixel_scorer!`] gives each [`Scorer`] (decoded bytes preprocessed exactly as its reference, float
/// images through the processor's float path) and AlignProp's [`DifferentiableReward`] (the float path) from these.
pub trait PixelScorer<B: Backend> {
    fn metric(&self) -> &'static str;
    fn processor(&self) -> &ImageProcessor;
    /// Normalised pixel values `[N, 3, S, S]` and one prompt per image → `[N]` scores.
    fn pixel_scores(
        &self,
        pixel_values: Tensor<B, 4>,
        prompts: &[String],
    ) -> Result<Tensor<B, 1>, String>;
}

/// [`Scorer`] and [`DifferentiableReward`] for a [`PixelScorer`] type. (Not blanket impls: those would collide with
/// the toy world's scorer and the test reward, which implement the traits directly.)
macro_rules! pixel_scorer {
    ($scorer:ident) => {
        impl<B: Backend> $crate::align::objectives::alignprop::DifferentiableReward<B>
            for $scorer<B>
        {
            fn name(&self) -> String {
                self.metric().into()
            }

            /// Panics where the scorer cannot run at all: a prompt count other than the image count, or a crop
            /// larger than the resized image.
            fn reward(&self, images: Tensor<B, 4>, prompts: &[String]) -> Tensor<B, 1> {
                self.processor()
                    .pixel_values(images)
                    .and_then(|pixel_values| self.pixel_scores(pixel_values, prompts))
                    .unwrap_or_else(|e| panic!("{}: {e}", self.metric()))
            }
        }

        impl<B: Backend> $crate::eval::classify::Scorer<B> for $scorer<B> {
            fn name(&self) -> String {
                self.metric().into()
            }

            fn score(&self, images: Tensor<B, 4>, prompts: &[String]) -> Vec<f64> {
                use $crate::align::objectives::alignprop::DifferentiableReward;
                self.reward(images, prompts)
                    .into_data()
                    .iter::<f64>()
                    .collect()
            }

            fn score_rgb8(
                &self,
                images: &[$crate::eval::classify::Rgb8<'_>],
                prompts: &[String],
                device: &B::Device,
            ) -> Result<Vec<f64>, String> {
                let pixel_values = self.processor().batch_rgb8(images, device)?;
                let scores = self.pixel_scores(pixel_values, prompts)?;
                Ok(scores.into_data().iter::<f64>().collect())
            }
        }
    };
}
pub(crate) use pixel_scorer;

/// The check every prompt-conditioned scorer makes before pairing images with prompts.
pub fn one_prompt_per_image(images: usize, prompts: &[String]) -> Result<(), String> {
    if prompts.len() == images {
        Ok(())
    } else {
        Err(format!("{images} images but {} prompts", prompts.len()))
    }
}

/// The index of the largest probability.
pub fn argmax(probabilities: &[f64]) -> usize {
    probabilities
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &p)| {
            if p > best.1 { (i, p) } else { best }
        })
        .0
}
