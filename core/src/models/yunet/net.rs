//! YuNet-n's network (libfacedetection.train's `configs/yunet_n.py`), laid out as its modules are named there, with
//! BatchNorm already folded into the convolutions (as in the released ONNX file and in what
//! `tools/convert_yunet.py` writes).
//!
//! - [`Dp`]: a 1×1 convolution, then a 3×3 depthwise one, then ReLU where the block had BatchNorm + ReLU.
//! - Backbone: the stride-2 3×3 stem `model0` (+ a `Dp`), then five blocks of two `Dp`s, a 2×2 max pool after
//!   blocks 0, 2, 3 and 4; blocks 3, 4, 5 are the stride 8, 16 and 32 features.
//! - Neck: from the coarsest level down, each level goes through its lateral `Dp` and is added, upsampled 2×
//!   (nearest), to the next finer one.
//! - Head: one shared `Dp` per level, then class, box, objectness and landmark `Dp`s without ReLU.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::max_pool2d;

use crate::nn::conv;

#[derive(Module, Debug)]
pub struct Dp<B: Backend> {
    pub conv1: Conv2d<B>,
    pub conv2: Conv2d<B>,
    pub relu: bool,
}

#[derive(Module, Debug)]
pub struct Stem<B: Backend> {
    pub conv1: Conv2d<B>,
    pub conv2: Dp<B>,
}

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub conv1: Dp<B>,
    pub conv2: Dp<B>,
}

#[derive(Module, Debug)]
pub struct Backbone<B: Backend> {
    pub model0: Stem<B>,
    pub model1: Block<B>,
    pub model2: Block<B>,
    pub model3: Block<B>,
    pub model4: Block<B>,
    pub model5: Block<B>,
}

#[derive(Module, Debug)]
pub struct Neck<B: Backend> {
    pub lateral_convs: Vec<Dp<B>>,
}

/// Per level (strides 8, 16, 32): the shared block (an `nn.Sequential` of one, hence `Vec<Vec<_>>`) and the four
/// prediction blocks.
#[derive(Module, Debug)]
pub struct Head<B: Backend> {
    pub multi_level_share_convs: Vec<Vec<Dp<B>>>,
    pub multi_level_cls: Vec<Dp<B>>,
    pub multi_level_bbox: Vec<Dp<B>>,
    pub multi_level_obj: Vec<Dp<B>>,
    pub multi_level_kps: Vec<Dp<B>>,
}

#[derive(Module, Debug)]
pub struct YuNetNet<B: Backend> {
    pub backbone: Backbone<B>,
    pub neck: Neck<B>,
    pub bbox_head: Head<B>,
}

/// One level's predictions, each `[H·W, C]` in row-major anchor order: class and objectness probabilities
/// (sigmoid applied, C = 1), box offsets (C = 4: centre x, y in strides, log width, log height) and landmark offsets
/// (C = 10: five `x, y` in strides).
pub struct LevelOutput<B: Backend> {
    pub cls: Tensor<B, 2>,
    pub obj: Tensor<B, 2>,
    pub bbox: Tensor<B, 2>,
    pub kps: Tensor<B, 2>,
}

const LEVELS: usize = 3;

fn conv<B: Backend>(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &B::Device,
) -> Conv2d<B> {
    let pad = kernel / 2;
    Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_groups(groups)
        .init(device)
}

impl<B: Backend> Dp<B> {
    pub fn new(c_in: usize, c_out: usize, relu: bool, device: &B::Device) -> Self {
        Self {
            conv1: conv(c_in, c_out, 1, 1, 1, device),
            conv2: conv(c_out, c_out, 3, 1, c_out, device),
            relu,
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = conv::apply(&self.conv2, conv::apply(&self.conv1, x));
        if self.relu { relu(x) } else { x }
    }
}

impl<B: Backend> Block<B> {
    fn new(c_in: usize, c_out: usize, device: &B::Device) -> Self {
        Self {
            conv1: Dp::new(c_in, c_in, true, device),
            conv2: Dp::new(c_in, c_out, true, device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.conv2.forward(self.conv1.forward(x))
    }
}

fn pool<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], false)
}

/// Nearest-neighbour 2× upsampling, exactly (every value copied into a 2×2 square).
fn upsample2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h, 1, w, 1])
        .expand([n, c, h, 2, w, 2])
        .reshape([n, c, 2 * h, 2 * w])
}

impl<B: Backend> YuNetNet<B> {
    pub fn new(device: &B::Device) -> Self {
        let dps = |c_out: usize, relu: bool| {
            (0..LEVELS)
                .map(|_| Dp::new(64, c_out, relu, device))
                .collect()
        };
        Self {
            backbone: Backbone {
                model0: Stem {
                    conv1: conv(3, 16, 3, 2, 1, device),
                    conv2: Dp::new(16, 16, true, device),
                },
                model1: Block::new(16, 64, device),
                model2: Block::new(64, 64, device),
                model3: Block::new(64, 64, device),
                model4: Block::new(64, 64, device),
                model5: Block::new(64, 64, device),
            },
            neck: Neck {
                lateral_convs: dps(64, true),
            },
            bbox_head: Head {
                multi_level_share_convs: (0..LEVELS)
                    .map(|_| vec![Dp::new(64, 64, true, device)])
                    .collect(),
                multi_level_cls: dps(1, false),
                multi_level_bbox: dps(4, false),
                multi_level_obj: dps(1, false),
                multi_level_kps: dps(10, false),
            },
        }
    }

    /// BGR pixel values in 0..255, `[1, 3, H, W]` with H and W multiples of 32 → the three levels' predictions.
    pub fn forward(&self, x: Tensor<B, 4>) -> Vec<LevelOutput<B>> {
        let b = &self.backbone;
        let x = b
            .model0
            .conv2
            .forward(relu(conv::apply(&b.model0.conv1, x)));
        let x = b.model2.forward(b.model1.forward(pool(x)));
        let stride8 = b.model3.forward(pool(x));
        let stride16 = b.model4.forward(pool(stride8.clone()));
        let stride32 = b.model5.forward(pool(stride16.clone()));
        let lateral = &self.neck.lateral_convs;
        let top = lateral[2].forward(stride32);
        let middle = lateral[1].forward(stride16 + upsample2(top.clone()));
        let fine = lateral[0].forward(stride8 + upsample2(middle.clone()));
        let head = &self.bbox_head;
        [fine, middle, top]
            .into_iter()
            .enumerate()
            .map(|(level, feature)| {
                let shared = head.multi_level_share_convs[level][0].forward(feature);
                let flat = |dp: &Dp<B>| {
                    let out = dp.forward(shared.clone());
                    let [_, c, h, w] = out.dims();
                    out.reshape([c, h * w]).swap_dims(0, 1)
                };
                LevelOutput {
                    cls: sigmoid(flat(&head.multi_level_cls[level])),
                    obj: sigmoid(flat(&head.multi_level_obj[level])),
                    bbox: flat(&head.multi_level_bbox[level]),
                    kps: flat(&head.multi_level_kps[level]),
                }
            })
            .collect()
    }
}
