//! MTCNN's output network (facenet-pytorch `ONet`) on 48×48 crops: final score, box offsets and the five
//! landmarks.
//!
//! conv1 3→32 (3×3) · PReLU · max-pool 3/2 (ceil) · conv2 32→64 (3×3) · PReLU · max-pool 3/2 (ceil) ·
//! conv3 64→64 (3×3) · PReLU · max-pool 2/2 (ceil) · conv4 64→128 (2×2) · PReLU · flatten in Caffe order ·
//! dense5 1152→256 · PReLU, then dense6_1 256→2 (softmax), dense6_2 256→4 and dense6_3 256→10.

use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::max_pool2d;

use super::prelu::PRelu;
use super::rnet::flatten_caffe;
use crate::nn::conv::apply;
use crate::nn::{conv2d, linear};

#[derive(Module, Debug)]
pub struct ONet<B: Backend> {
    pub conv1: Conv2d<B>,
    pub prelu1: PRelu<B>,
    pub conv2: Conv2d<B>,
    pub prelu2: PRelu<B>,
    pub conv3: Conv2d<B>,
    pub prelu3: PRelu<B>,
    pub conv4: Conv2d<B>,
    pub prelu4: PRelu<B>,
    pub dense5: Linear<B>,
    pub prelu5: PRelu<B>,
    pub dense6_1: Linear<B>,
    pub dense6_2: Linear<B>,
    pub dense6_3: Linear<B>,
}

/// ONet's heads: `reg` `[N, 4]`, `landmarks` `[N, 10]` (five x offsets, then five y offsets, as fractions
/// of the box size) and `prob` `[N, 2]` (column 1 = face).
#[derive(Debug, Clone)]
pub struct ONetOutput<B: Backend> {
    pub reg: Tensor<B, 2>,
    pub landmarks: Tensor<B, 2>,
    pub prob: Tensor<B, 2>,
}

impl<B: Backend> ONet<B> {
    pub fn new(device: &B::Device) -> Self {
        Self {
            conv1: conv2d(3, 32, 3, 1, 0, device),
            prelu1: PRelu::new(32, device),
            conv2: conv2d(32, 64, 3, 1, 0, device),
            prelu2: PRelu::new(64, device),
            conv3: conv2d(64, 64, 3, 1, 0, device),
            prelu3: PRelu::new(64, device),
            conv4: conv2d(64, 128, 2, 1, 0, device),
            prelu4: PRelu::new(128, device),
            dense5: linear(1152, 256, true, device),
            prelu5: PRelu::new(256, device),
            dense6_1: linear(256, 2, true, device),
            dense6_2: linear(256, 4, true, device),
            dense6_3: linear(256, 10, true, device),
        }
    }

    /// `x`: `[N, 3, 48, 48]`, normalised as for [`super::pnet::PNet::forward`].
    pub fn forward(&self, x: Tensor<B, 4>) -> ONetOutput<B> {
        let x = self.prelu1.forward(apply(&self.conv1, x));
        let x = max_pool2d(x, [3, 3], [2, 2], [0, 0], [1, 1], true);
        let x = self.prelu2.forward(apply(&self.conv2, x));
        let x = max_pool2d(x, [3, 3], [2, 2], [0, 0], [1, 1], true);
        let x = self.prelu3.forward(apply(&self.conv3, x));
        let x = max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], true);
        let x = self.prelu4.forward(apply(&self.conv4, x));
        let x = self.prelu5.forward(self.dense5.forward(flatten_caffe(x)));
        ONetOutput {
            reg: self.dense6_2.forward(x.clone()),
            landmarks: self.dense6_3.forward(x.clone()),
            prob: softmax(self.dense6_1.forward(x), 1),
        }
    }
}
