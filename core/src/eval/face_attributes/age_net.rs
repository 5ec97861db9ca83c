//! The age network (dlib-models `dnn_age_predictor_v1`, exported as `age-v1.onnx`): 64×64 chips → a softmax over
//! 81 age classes (`age_weights`: 0.25, 1, 2, …, 80 years).
//!
//! ```text
//! conv1 3→w0 7×7 s2 (no padding), affine1, relu, max_pool 3×3 s2      64 → 29 → 14
//! res1 (w0), res2 (w0→w1, down), res3 (w1), res4 (w1→w2, down), res5 (w2)   14 → 7 → 3
//! global average pool, fc w2→81, softmax
//! ```
//!
//! The real network has widths `[64, 128, 256]`; the committed test fixture is the same graph at `[16, 32, 64]`
//! (see `fixtures/age-gender`). Field ↔ ONNX layer: conv1 `layer_52`, affine1 `layer_51`, res1 `layer_47/46/44/43`,
//! res2 `layer_39/38/36/35`, res3 `layer_28/27/25/24`, res4 `layer_20/19/17/16`, res5 `layer_9/8/6/5` (each
//! conv1, affine1, conv2, affine2), fc `layer_1` (table `AGE_KEYS` of `tools/fixtures/make_age_gender.py`).

use std::path::Path;

use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};
use burn::tensor::module::max_pool2d;

use super::dlib_layers::Affine;
use super::dlib_resnet::ResBlock;
use crate::io::load::{self, LoadError};
use crate::nn::{conv, conv2d, linear};

/// The chip size the age network takes.
pub const AGE_CHIP_SIZE: usize = 64;
/// The number of age classes.
pub const AGE_CLASSES: usize = 81;

/// The age of each class in years, the manifest's `age_weights`: 0.25 (under one year), then 1, 2, …, 80.
pub fn age_weights() -> [f64; AGE_CLASSES] {
    std::array::from_fn(|i| if i == 0 { 0.25 } else { i as f64 })
}

/// Channel widths of the three stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeNetConfig {
    pub widths: [usize; 3],
}

impl AgeNetConfig {
    /// The real `age-v1.onnx`.
    pub const DLIB: Self = Self {
        widths: [64, 128, 256],
    };
}

impl Default for AgeNetConfig {
    fn default() -> Self {
        Self::DLIB
    }
}

#[derive(Module, Debug)]
pub struct AgeNet<B: Backend> {
    pub conv1: Conv2d<B>,
    pub affine1: Affine<B>,
    pub res1: ResBlock<B>,
    pub res2: ResBlock<B>,
    pub res3: ResBlock<B>,
    pub res4: ResBlock<B>,
    pub res5: ResBlock<B>,
    pub fc: Linear<B>,
}

impl<B: Backend> AgeNet<B> {
    /// The architecture with placeholder weights; see [`Self::load`].
    pub fn new(config: AgeNetConfig, device: &B::Device) -> Self {
        let [w0, w1, w2] = config.widths;
        Self {
            conv1: conv2d(3, w0, 7, 2, 0, device),
            affine1: Affine::new(w0, device),
            res1: ResBlock::new(w0, w0, false, device),
            res2: ResBlock::new(w0, w1, true, device),
            res3: ResBlock::new(w1, w1, false, device),
            res4: ResBlock::new(w1, w2, true, device),
            res5: ResBlock::new(w2, w2, false, device),
            fc: linear(w2, AGE_CLASSES, true, device),
        }
    }

    /// Loads an `age.safetensors` written by `tools/fixtures/make_age_gender.py`; a missing, extra or
    /// mis-shaped tensor (for example a file of other widths than `config`) is an error naming it.
    pub fn load(file: &Path, config: AgeNetConfig, device: &B::Device) -> Result<Self, LoadError> {
        load::load_weights(Self::new(config, device), &[file.to_path_buf()], &[])
    }

    /// [`Self::load`] from the file's bytes (the browser); `name` stands for the file in errors.
    pub fn from_bytes(
        name: &str,
        bytes: Vec<u8>,
        config: AgeNetConfig,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        load::load_weights_from_bytes(Self::new(config, device), name, bytes)
    }

    /// Normalised chips `[N, 3, 64, 64]` (see [`super::normalize`]) → logits `[N, 81]`.
    pub fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let [n, _, h, w] = x.dims();
        assert_eq!(
            [h, w],
            [AGE_CHIP_SIZE; 2],
            "the age network takes 64×64 chips"
        );
        let x = relu(self.affine1.forward(conv::apply(&self.conv1, x)));
        let x = max_pool2d(x, [3, 3], [2, 2], [0, 0], [1, 1], false);
        let x = self.res1.forward(x);
        let x = self.res2.forward(x);
        let x = self.res3.forward(x);
        let x = self.res4.forward(x);
        let x = self.res5.forward(x);
        let [_, c, h, w] = x.dims();
        let pooled = x.reshape([n, c, h * w]).mean_dim(2).reshape([n, c]);
        self.fc.forward(pooled)
    }

    /// Normalised chips → probabilities `[N, 81]` (the graph's `probabilities` output).
    pub fn probabilities(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        softmax(self.logits(x), 1)
    }
}
