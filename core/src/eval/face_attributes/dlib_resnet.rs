//! dlib's ResNet blocks, as the age network uses them (dlib's `dnn_imagenet_ex` style):
//!
//! ```text
//! block          = affine2(conv2(relu(affine1(conv1(x)))))      conv1: 3×3, stride s; conv2: 3×3, stride 1
//! residual       = relu(add_prev(x, block))                      s = 1, conv padding 1
//! residual_down  = relu(add_prev(avg_pool_2x2_s2(x), block))     s = 2, conv1 without padding (dlib's default for
//!                                                                stride 2), channels usually doubled
//! ```
//!
//! In a down block the two branches differ in size: at a 14×14 input the convolution gives 6×6 (`(14−3)/2+1`),
//! the pool 7×7, and the pool keeps the input's channel count. `add_prev` pads both with trailing zeros to the
//! larger size (the ONNX export's `Pad` nodes), so the sum is 7×7 with the block's channel count.

use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::avg_pool2d;

use super::dlib_layers::{Affine, add_prev};
use crate::nn::{conv, conv2d};

/// One `residual` (`down == false`) or `residual_down` (`down == true`) block.
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    pub conv1: Conv2d<B>,
    pub affine1: Affine<B>,
    pub conv2: Conv2d<B>,
    pub affine2: Affine<B>,
    pub down: bool,
}

impl<B: Backend> ResBlock<B> {
    pub fn new(c_in: usize, c_out: usize, down: bool, device: &B::Device) -> Self {
        let (stride, padding) = if down { (2, 0) } else { (1, 1) };
        Self {
            conv1: conv2d(c_in, c_out, 3, stride, padding, device),
            affine1: Affine::new(c_out, device),
            conv2: conv2d(c_out, c_out, 3, 1, 1, device),
            affine2: Affine::new(c_out, device),
            down,
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = relu(self.affine1.forward(conv::apply(&self.conv1, x.clone())));
        let h = self.affine2.forward(conv::apply(&self.conv2, h));
        let skip = if self.down {
            // count_include_pad is irrelevant without padding; ceil_mode off drops an odd last row/column.
            avg_pool2d(x, [2, 2], [2, 2], [0, 0], false, false)
        } else {
            x
        };
        relu(add_prev(skip, h))
    }
}
