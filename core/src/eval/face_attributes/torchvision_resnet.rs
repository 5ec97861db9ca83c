//! torchvision's ResNet with basic blocks (`resnet18`, `resnet34`), inference only, field names as in its
//! `state_dict` (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`, `fc`, …).
//!
//! ```text
//! conv1 7×7 s2 p3, bn1, relu, maxpool 3×3 s2 p1
//! layer1..4: BasicBlock × layers[i], width widths[i], the first block of layer2..4 with stride 2:
//!     out = relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x))      downsample = bn(conv 1×1 stride s)
//! global average pool, fc
//! ```
//!
//! BatchNorm always uses the running statistics ([`batch_norm`]): these are classifiers, and burn's own
//! `BatchNorm::forward` would switch to batch statistics on an autodiff backend.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;

use crate::nn::pool::adaptive_avg_pool2d;

use crate::nn::{conv, linear};

/// The shape of a basic-block ResNet.
#[derive(Debug, Clone, PartialEq)]
pub struct ResNetConfig {
    /// Blocks per stage: `[2, 2, 2, 2]` is resnet18, `[3, 4, 6, 3]` resnet34.
    pub layers: [usize; 4],
    /// Channels per stage: `[64, 128, 256, 512]` in torchvision.
    pub widths: [usize; 4],
    pub num_classes: usize,
}

impl ResNetConfig {
    /// torchvision's `resnet34(num_classes)`.
    pub fn resnet34(num_classes: usize) -> Self {
        Self {
            layers: [3, 4, 6, 3],
            widths: [64, 128, 256, 512],
            num_classes,
        }
    }
}

/// torchvision's `BatchNorm2d` defaults to eps 1e-5.
const BATCH_NORM_EPS: f64 = 1e-5;

/// `(x − running_mean) / sqrt(running_var + eps) · weight + bias` per channel of `[N, C, H, W]`.
pub fn batch_norm<B: Backend>(bn: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let channels = x.dims()[1];
    let per_channel = |t: Tensor<B, 1>| t.reshape([1, channels, 1, 1]);
    let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
    let shift = bn.beta.val() - bn.running_mean.value() * scale.clone();
    x * per_channel(scale) + per_channel(shift)
}

fn conv_no_bias<B: Backend>(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    device: &B::Device,
) -> Conv2d<B> {
    let pad = kernel / 2;
    Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

fn bn<B: Backend>(channels: usize, device: &B::Device) -> BatchNorm<B> {
    BatchNormConfig::new(channels)
        .with_epsilon(BATCH_NORM_EPS)
        .init(device)
}

/// `downsample = Sequential(conv1x1, BatchNorm2d)`: keys `downsample.0.*` and `downsample.1.*` are loaded
/// into `conv` and `bn` by [`DOWNSAMPLE_KEYS`].
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: BatchNorm<B>,
}

/// Maps torchvision's `Sequential` indices of `downsample` to [`Downsample`]'s fields.
pub const DOWNSAMPLE_KEYS: [crate::io::load::KeyRemap; 2] = [
    (r"\.downsample\.0\.", ".downsample.conv."),
    (r"\.downsample\.1\.", ".downsample.bn."),
];

#[derive(Module, Debug)]
pub struct BasicBlock<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm<B>,
    pub conv2: Conv2d<B>,
    pub bn2: BatchNorm<B>,
    pub downsample: Option<Downsample<B>>,
}

impl<B: Backend> BasicBlock<B> {
    fn new(c_in: usize, c_out: usize, stride: usize, device: &B::Device) -> Self {
        let downsample = (stride != 1 || c_in != c_out).then(|| Downsample {
            conv: conv_no_bias(c_in, c_out, 1, stride, device),
            bn: bn(c_out, device),
        });
        Self {
            conv1: conv_no_bias(c_in, c_out, 3, stride, device),
            bn1: bn(c_out, device),
            conv2: conv_no_bias(c_out, c_out, 3, 1, device),
            bn2: bn(c_out, device),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let identity = match &self.downsample {
            Some(d) => batch_norm(&d.bn, conv::apply(&d.conv, x.clone())),
            None => x.clone(),
        };
        let h = relu(batch_norm(&self.bn1, conv::apply(&self.conv1, x)));
        let h = batch_norm(&self.bn2, conv::apply(&self.conv2, h));
        relu(h + identity)
    }
}

#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm<B>,
    pub layer1: Vec<BasicBlock<B>>,
    pub layer2: Vec<BasicBlock<B>>,
    pub layer3: Vec<BasicBlock<B>>,
    pub layer4: Vec<BasicBlock<B>>,
    pub fc: Linear<B>,
}

impl<B: Backend> ResNet<B> {
    /// The architecture with placeholder weights.
    pub fn new(config: &ResNetConfig, device: &B::Device) -> Self {
        let w = config.widths;
        let stage = |i: usize| {
            let c_in = if i == 0 { w[0] } else { w[i - 1] };
            let stride = if i == 0 { 1 } else { 2 };
            (0..config.layers[i])
                .map(|b| match b {
                    0 => BasicBlock::new(c_in, w[i], stride, device),
                    _ => BasicBlock::new(w[i], w[i], 1, device),
                })
                .collect()
        };
        Self {
            conv1: conv_no_bias(3, w[0], 7, 2, device),
            bn1: bn(w[0], device),
            layer1: stage(0),
            layer2: stage(1),
            layer3: stage(2),
            layer4: stage(3),
            fc: linear(w[3], config.num_classes, true, device),
        }
    }

    /// Normalised images `[N, 3, H, W]` → logits `[N, num_classes]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = relu(batch_norm(&self.bn1, conv::apply(&self.conv1, x)));
        let mut x = max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], false);
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = block.forward(x);
        }
        let pooled: Tensor<B, 2> = adaptive_avg_pool2d(x, [1, 1]).flatten(1, 3);
        self.fc.forward(pooled)
    }
}
