//! MTCNN's refinement network (facenet-pytorch `RNet`) on 24×24 candidate crops.
//!
//! conv1 3→28 (3×3) · PReLU · max-pool 3/2 (ceil) · conv2 28→48 (3×3) · PReLU · max-pool 3/2 (ceil) ·
//! conv3 48→64 (2×2) · PReLU · flatten in Caffe order · dense4 576→128 · PReLU, then dense5_1 128→2
//! (softmax) and dense5_2 128→4.

use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::max_pool2d;

use super::prelu::PRelu;
use crate::nn::conv::apply;
use crate::nn::{conv2d, linear};

#[derive(Module, Debug)]
pub struct RNet<B: Backend> {
    pub conv1: Conv2d<B>,
    pub prelu1: PRelu<B>,
    pub conv2: Conv2d<B>,
    pub prelu2: PRelu<B>,
    pub conv3: Conv2d<B>,
    pub prelu3: PRelu<B>,
    pub dense4: Linear<B>,
    pub prelu4: PRelu<B>,
    pub dense5_1: Linear<B>,
    pub dense5_2: Linear<B>,
}

/// RNet's heads: `reg` `[N, 4]` and `prob` `[N, 2]` (column 1 = face).
#[derive(Debug, Clone)]
pub struct RNetOutput<B: Backend> {
    pub reg: Tensor<B, 2>,
    pub prob: Tensor<B, 2>,
}

/// The weights were converted from Caffe, which flattens `[C, H, W]` feature maps as `[W, H, C]`:
/// facenet-pytorch does `x.permute(0, 3, 2, 1)` before `view(N, -1)`, and so must we.
pub(crate) fn flatten_caffe<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    let [n, c, h, w] = x.dims();
    x.permute([0, 3, 2, 1]).reshape([n, w * h * c])
}

impl<B: Backend> RNet<B> {
    pub fn new(device: &B::Device) -> Self {
        Self {
            conv1: conv2d(3, 28, 3, 1, 0, device),
            prelu1: PRelu::new(28, device),
            conv2: conv2d(28, 48, 3, 1, 0, device),
            prelu2: PRelu::new(48, device),
            conv3: conv2d(48, 64, 2, 1, 0, device),
            prelu3: PRelu::new(64, device),
            dense4: linear(576, 128, true, device),
            prelu4: PRelu::new(128, device),
            dense5_1: linear(128, 2, true, device),
            dense5_2: linear(128, 4, true, device),
        }
    }

    /// `x`: `[N, 3, 24, 24]`, normalised as for [`super::pnet::PNet::forward`].
    pub fn forward(&self, x: Tensor<B, 4>) -> RNetOutput<B> {
        let x = self.prelu1.forward(apply(&self.conv1, x));
        let x = max_pool2d(x, [3, 3], [2, 2], [0, 0], [1, 1], true);
        let x = self.prelu2.forward(apply(&self.conv2, x));
        let x = max_pool2d(x, [3, 3], [2, 2], [0, 0], [1, 1], true);
        let x = self.prelu3.forward(apply(&self.conv3, x));
        let x = self.prelu4.forward(self.dense4.forward(flatten_caffe(x)));
        RNetOutput {
            reg: self.dense5_2.forward(x.clone()),
            prob: softmax(self.dense5_1.forward(x), 1),
        }
    }
}
