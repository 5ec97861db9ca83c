//! The gender network (dlib-models `dnn_gender_classifier_v1`, exported as `gender-v1.onnx`): 32×32 chips →
//! `[female, male]`.
//!
//! ```text
//! conv1 3→32 3×3 p1, affine1, relu, conv2 32→32, affine2, relu, avg_pool 2×2 s2     32×32 → 16×16
//! conv3 32→64 3×3 p1, affine3, relu, conv4 64→64, affine4, relu, avg_pool 2×2 s2    16×16 → 8×8
//! multiply1 (×0.5), flatten (C, H, W order) → fc1 4096→16, relu, multiply2 (×0.5), fc2 16→2, softmax
//! ```
//!
//! Field ↔ ONNX layer: conv1 `layer_19`, affine1 `layer_18`, conv2 `layer_16`, affine2 `layer_15`, conv3
//! `layer_12`, affine3 `layer_11`, conv4 `layer_9`, affine4 `layer_8`, multiply1 `layer_5`, fc1 `layer_4`,
//! multiply2 `layer_2`, fc2 `layer_1` (table `GENDER_KEYS` of `tools/fixtures/make_age_gender.py`).

use std::path::Path;

use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};
use burn::tensor::module::avg_pool2d;

use super::dlib_layers::{Affine, Multiply};
use crate::io::load::{self, LoadError};
use crate::nn::{conv, conv2d, linear};

/// The chip size the gender network takes.
pub const GENDER_CHIP_SIZE: usize = 32;
/// Output column of each class: the network's order is `[female, male]` (the manifest's `labels`).
pub const NET_FEMALE: usize = 0;
pub const NET_MALE: usize = 1;

#[derive(Module, Debug)]
pub struct GenderNet<B: Backend> {
    pub conv1: Conv2d<B>,
    pub affine1: Affine<B>,
    pub conv2: Conv2d<B>,
    pub affine2: Affine<B>,
    pub conv3: Conv2d<B>,
    pub affine3: Affine<B>,
    pub conv4: Conv2d<B>,
    pub affine4: Affine<B>,
    pub multiply1: Multiply<B>,
    pub fc1: Linear<B>,
    pub multiply2: Multiply<B>,
    pub fc2: Linear<B>,
}

impl<B: Backend> GenderNet<B> {
    /// The architecture with placeholder weights; see [`Self::load`].
    pub fn new(device: &B::Device) -> Self {
        Self {
            conv1: conv2d(3, 32, 3, 1, 1, device),
            affine1: Affine::new(32, device),
            conv2: conv2d(32, 32, 3, 1, 1, device),
            affine2: Affine::new(32, device),
            conv3: conv2d(32, 64, 3, 1, 1, device),
            affine3: Affine::new(64, device),
            conv4: conv2d(64, 64, 3, 1, 1, device),
            affine4: Affine::new(64, device),
            multiply1: Multiply::new(device),
            fc1: linear(64 * 8 * 8, 16, true, device),
            multiply2: Multiply::new(device),
            fc2: linear(16, 2, true, device),
        }
    }

    /// Loads a `gender.safetensors` written by `tools/fixtures/make_age_gender.py`; a missing, extra or
    /// mis-shaped tensor is an error naming it.
    pub fn load(file: &Path, device: &B::Device) -> Result<Self, LoadError> {
        load::load_weights(Self::new(device), &[file.to_path_buf()], &[])
    }

    /// [`Self::load`] from the file's bytes (the browser); `name` stands for the file in errors.
    pub fn from_bytes(name: &str, bytes: Vec<u8>, device: &B::Device) -> Result<Self, LoadError> {
        load::load_weights_from_bytes(Self::new(device), name, bytes)
    }

    /// Normalised chips `[N, 3, 32, 32]` (see [`super::normalize`]) → logits `[N, 2]`, `[female, male]`.
    pub fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let [n, _, h, w] = x.dims();
        assert_eq!(
            [h, w],
            [GENDER_CHIP_SIZE; 2],
            "the gender network takes 32×32 chips"
        );
        let block = |x, c1: &Conv2d<B>, a1: &Affine<B>, c2: &Conv2d<B>, a2: &Affine<B>| {
            let x = relu(a1.forward(conv::apply(c1, x)));
            let x = relu(a2.forward(conv::apply(c2, x)));
            avg_pool2d(x, [2, 2], [2, 2], [0, 0], false, false)
        };
        let x = block(x, &self.conv1, &self.affine1, &self.conv2, &self.affine2);
        let x = block(x, &self.conv3, &self.affine3, &self.conv4, &self.affine4);
        let x = self.multiply1.forward(x).reshape([n, 64 * 8 * 8]);
        let x = self.multiply2.forward(relu(self.fc1.forward(x)));
        self.fc2.forward(x)
    }

    /// Normalised chips → probabilities `[N, 2]`, `[female, male]` (the graph's `probabilities` output).
    pub fn probabilities(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        softmax(self.logits(x), 1)
    }
}
