//! MTCNN's proposal network (facenet-pytorch `PNet`): fully convolutional, so it runs on a whole pyramid
//! level at once and gives, per 12×12 window at stride 2, a face probability and four box offsets.
//!
//! conv1 3→10 (3×3) · PReLU · max-pool 2/2 (ceil) · conv2 10→16 (3×3) · PReLU · conv3 16→32 (3×3) · PReLU,
//! then the heads conv4_1 32→2 (1×1, softmax over dim 1) and conv4_2 32→4 (1×1).

use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::max_pool2d;

use super::prelu::PRelu;
use crate::nn::conv::apply;
use crate::nn::conv2d;

#[derive(Module, Debug)]
pub struct PNet<B: Backend> {
    pub conv1: Conv2d<B>,
    pub prelu1: PRelu<B>,
    pub conv2: Conv2d<B>,
    pub prelu2: PRelu<B>,
    pub conv3: Conv2d<B>,
    pub prelu3: PRelu<B>,
    pub conv4_1: Conv2d<B>,
    pub conv4_2: Conv2d<B>,
}

/// PNet's two heads for `[N, 3, H, W]` input: `reg` `[N, 4, h, w]` and `prob` `[N, 2, h, w]` (channel 1 =
/// face), with h = ⌈(H − 2)/2⌉ − 4 and w alike.
#[derive(Debug, Clone)]
pub struct PNetOutput<B: Backend> {
    pub reg: Tensor<B, 4>,
    pub prob: Tensor<B, 4>,
}

impl<B: Backend> PNet<B> {
    pub fn new(device: &B::Device) -> Self {
        Self {
            conv1: conv2d(3, 10, 3, 1, 0, device),
            prelu1: PRelu::new(10, device),
            conv2: conv2d(10, 16, 3, 1, 0, device),
            prelu2: PRelu::new(16, device),
            conv3: conv2d(16, 32, 3, 1, 0, device),
            prelu3: PRelu::new(32, device),
            conv4_1: conv2d(32, 2, 1, 1, 0, device),
            conv4_2: conv2d(32, 4, 1, 1, 0, device),
        }
    }

    /// `x`: `[N, 3, H, W]`, already normalised as `(pixel − 127.5) · 0.0078125`, H and W ≥ 12.
    pub fn forward(&self, x: Tensor<B, 4>) -> PNetOutput<B> {
        let x = self.prelu1.forward(apply(&self.conv1, x));
        let x = max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], true);
        let x = self.prelu2.forward(apply(&self.conv2, x));
        let x = self.prelu3.forward(apply(&self.conv3, x));
        PNetOutput {
            reg: apply(&self.conv4_2, x.clone()),
            prob: softmax(apply(&self.conv4_1, x), 1),
        }
    }
}
