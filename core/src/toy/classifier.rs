//! The toy world's attribute classifier and its quality proxy, written as tensor ops so the browser can
//! run them on WebGPU with the same numbers.
//!
//! It reads an image the way the renderer draws one: the border ring gives the background (hence the
//! occupation), the centre gives the figure's colour, and the pixels that only one of the two bars
//! covers give the shape (figure colour left and right of the centre and background above and below
//! means `wide`). Each decision is a softmax over squared colour
//! distances to the world's palette, so a blurry or off-palette image gets low confidence, not a guess
//! dressed up as certainty. No figure (centre ≈ background) counts as "no face found".

use std::collections::BTreeMap;

use crate::nn::pool::adaptive_avg_pool2d;
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};

use super::render::inside;
use super::world::{SIZE, World};
use crate::eval::classify::{AttributeClassifier, Attributes, AxisSpec, Scorer, argmax};

/// Softmax temperature on squared RGB distances ([0, 1] units).
const TEMPERATURE: f64 = 0.01;
/// Sharpness of the shape decision on the shape score (−1 tall … +1 wide).
const SHAPE_SHARPNESS: f64 = 8.0;
/// Minimum RGB distance between centre and background for a figure to count as present.
const FIGURE_CONTRAST: f64 = 0.25;

pub struct ToyClassifier<B: Backend> {
    world: &'static World,
    backgrounds: Tensor<B, 2>,
    colours: Tensor<B, 2>,
    border: Tensor<B, 4>,
    centre: Tensor<B, 4>,
    /// +1 where only a wide bar is drawn, −1 where only a tall one is, 0 elsewhere.
    shape_sign: Tensor<B, 4>,
    /// Number of non-zero pixels of `shape_sign` (counted on the host: wasm cannot read back synchronously).
    shape_pixels: f64,
}

/// Everything the classifier reads off one image.
#[derive(Debug, Clone)]
pub struct ToyReading {
    pub figure_found: bool,
    pub shape: Vec<f64>,
    pub colour: Vec<f64>,
    pub occupation: Vec<f64>,
}

impl<B: Backend> ToyClassifier<B> {
    pub fn new(world: &'static World, device: &B::Device) -> Self {
        let palette = |rows: Vec<[f32; 3]>| {
            let k = rows.len();
            Tensor::<B, 1>::from_floats(rows.concat().as_slice(), device).reshape([k, 3])
        };
        let mask = |value: &dyn Fn(usize, usize) -> f32| {
            let values: Vec<f32> = (0..SIZE * SIZE)
                .map(|i| value(i / SIZE, i % SIZE))
                .collect();
            Tensor::<B, 1>::from_floats(values.as_slice(), device).reshape([1, 1, SIZE, SIZE])
        };
        let flag = |keep: bool| f32::from(u8::from(keep));
        Self {
            world,
            backgrounds: palette(world.occupations.iter().map(|o| o.background).collect()),
            colours: palette(world.colours.iter().map(|c| c.rgb).collect()),
            border: mask(&|y, x| flag(y < 2 || x < 2 || y >= SIZE - 2 || x >= SIZE - 2)),
            centre: mask(&|y, x| flag((6..10).contains(&y) && (6..10).contains(&x))),
            shape_sign: mask(&|y, x| flag(inside(1, y, x)) - flag(inside(0, y, x))),
            shape_pixels: (0..SIZE * SIZE)
                .filter(|i| inside(1, i / SIZE, i % SIZE) != inside(0, i / SIZE, i % SIZE))
                .count() as f64,
        }
    }

    /// Images `[N, 3, 16, 16]` in [0, 1] → one reading each.
    pub fn read(&self, images: Tensor<B, 4>) -> Vec<ToyReading> {
        let t = self.read_tensors(images);
        readings([
            t.colour.into_data(),
            t.occupation.into_data(),
            t.wide.into_data(),
            t.contrast.into_data(),
        ])
    }

    /// The readings as tensors still on the device; wasm reads them back with `into_data_async` and
    /// then calls [`readings`], as [`Self::read`] does synchronously.
    pub fn read_tensors(&self, images: Tensor<B, 4>) -> ToyTensors<B> {
        let [n, _, h, w] = images.dims();
        // Any other size (a dropped photo, an upscaled render) is averaged down to the world's grid.
        let images = if [h, w] == [SIZE, SIZE] {
            images
        } else {
            adaptive_avg_pool2d(images, [SIZE, SIZE])
        };
        let background = masked_mean(images.clone(), self.border.clone()); // [N, 3]
        let figure = masked_mean(images.clone(), self.centre.clone());
        let occupation = nearest(background.clone(), self.backgrounds.clone());
        let colour = nearest(figure.clone(), self.colours.clone());
        let contrast = (figure.clone() - background.clone())
            .powi_scalar(2)
            .sum_dim(1); // [N, 1]
        // Per pixel: +1 where it has the figure's colour, −1 where the background's.
        let distance_to = |rgb: Tensor<B, 2>| {
            (images.clone() - rgb.reshape([n, 3, 1, 1]))
                .powi_scalar(2)
                .sum_dim(1)
        };
        let similarity = (distance_to(background) - distance_to(figure))
            / (contrast.clone().reshape([n, 1, 1, 1]) + 1e-6);
        // Mean of +similarity over the wide-only pixels and −similarity over the tall-only ones.
        let sign = self.shape_sign.clone();
        let shape_score =
            (similarity * sign).sum_dim(2).sum_dim(3).reshape([n]) / self.shape_pixels;
        ToyTensors {
            colour,
            occupation,
            wide: sigmoid(shape_score * SHAPE_SHARPNESS),
            contrast: contrast.reshape([n]),
        }
    }
}

impl ToyReading {
    /// What the classifier trait reports: shape as `gender`, colour as `race`, nothing without a figure.
    pub fn attributes(self) -> Attributes {
        Attributes {
            detection: None,
            face_found: self.figure_found,
            probabilities: if self.figure_found {
                BTreeMap::from([("gender".into(), self.shape), ("race".into(), self.colour)])
            } else {
                BTreeMap::new()
            },
        }
    }
}

/// [`ToyClassifier::read_tensors`]'s output: colour `[N, 6]`, occupation `[N, 8]`, P(wide) `[N]`,
/// squared centre–border contrast `[N]`.
pub struct ToyTensors<B: Backend> {
    pub colour: Tensor<B, 2>,
    pub occupation: Tensor<B, 2>,
    pub wide: Tensor<B, 1>,
    pub contrast: Tensor<B, 1>,
}

/// The data of [`ToyTensors`]' four tensors, in field order, → one reading per image.
pub fn readings([colour, occupation, wide, contrast]: [TensorData; 4]) -> Vec<ToyReading> {
    let values = |d: TensorData| d.iter::<f64>().collect::<Vec<f64>>();
    let rows = |d: TensorData| -> Vec<Vec<f64>> {
        let k = d.shape[1];
        values(d).chunks(k).map(<[f64]>::to_vec).collect()
    };
    rows(colour)
        .into_iter()
        .zip(rows(occupation))
        .zip(values(wide).into_iter().zip(values(contrast)))
        .map(|((colour, occupation), (wide, contrast))| ToyReading {
            figure_found: contrast.sqrt() >= FIGURE_CONTRAST,
            shape: vec![1.0 - wide, wide],
            colour,
            occupation,
        })
        .collect()
}

/// Mean colour under a `[1, 1, H, W]` 0/1 mask: `[N, 3, H, W]` → `[N, 3]`.
fn masked_mean<B: Backend>(images: Tensor<B, 4>, mask: Tensor<B, 4>) -> Tensor<B, 2> {
    let [n, c, _, _] = images.dims();
    let count = mask.clone().sum();
    (images * mask).sum_dim(2).sum_dim(3).reshape([n, c]) / count.unsqueeze::<2>()
}

/// Softmax over negative squared distances of `[N, 3]` colours to a `[K, 3]` palette → `[N, K]`.
fn nearest<B: Backend>(rgb: Tensor<B, 2>, palette: Tensor<B, 2>) -> Tensor<B, 2> {
    let [n, _] = rgb.dims();
    let [k, _] = palette.dims();
    let d = (rgb.reshape([n, 1, 3]) - palette.reshape([1, k, 3]))
        .powi_scalar(2)
        .sum_dim(2)
        .reshape([n, k]);
    softmax(d.neg() / TEMPERATURE, 1)
}

impl<B: Backend> AttributeClassifier<B> for ToyClassifier<B> {
    fn name(&self) -> String {
        "toy-palette".into()
    }

    fn kind(&self) -> crate::eval::classify::kind::ClassifierKind {
        crate::eval::classify::kind::ClassifierKind::Toy
    }

    /// The axes keep their real names: shape plays gender, colour plays race.
    fn axes(&self) -> Vec<AxisSpec> {
        let labels = |values: Vec<&str>| values.into_iter().map(String::from).collect();
        vec![
            AxisSpec {
                name: "gender".into(),
                classes: labels(self.world.shapes.iter().map(|v| v.label).collect()),
            },
            AxisSpec {
                name: "race".into(),
                classes: labels(self.world.colours.iter().map(|c| c.value.label).collect()),
            },
        ]
    }

    fn classify(&self, images: Tensor<B, 4>) -> Vec<Attributes> {
        self.read(images)
            .into_iter()
            .map(ToyReading::attributes)
            .collect()
    }
}

/// The toy world's quality proxy: 100 when the background shows the prompt's occupation, else 0, so
/// its mean is the occupation accuracy in percent.
pub struct OccupationAccuracy<B: Backend>(pub ToyClassifier<B>);

impl<B: Backend> Scorer<B> for OccupationAccuracy<B> {
    fn name(&self) -> String {
        "occupation_accuracy".into()
    }

    fn score(&self, images: Tensor<B, 4>, prompts: &[String]) -> Vec<f64> {
        let world = self.0.world;
        self.0
            .read(images)
            .iter()
            .zip(prompts)
            .map(|(reading, prompt)| {
                let named = prompt
                    .rsplit(' ')
                    .next()
                    .and_then(|word| world.occupation_index(word));
                if named == Some(argmax(&reading.occupation)) {
                    100.0
                } else {
                    0.0
                }
            })
            .collect()
    }
}
