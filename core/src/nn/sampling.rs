//! diffusers `Downsample2D` and `Upsample2D` (both with their convolution, the only form SD/SDXL use).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::conv::Conv2dConfig;
use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::{conv, conv2d};

#[derive(Module, Debug)]
pub struct Downsample2D<B: Backend> {
    pub conv: Conv2d<B>,
}

impl<B: Backend> Downsample2D<B> {
    /// `padding = 1` in the U-Net; the VAE encoder uses `padding = 0`, which diffusers implements as an
    /// asymmetric zero pad of one row/column at the bottom/right.
    pub fn new(channels: usize, padding: usize, device: &B::Device) -> Self {
        let conv = if padding == 0 {
            Conv2dConfig::new([channels, channels], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(0, 0, 1, 1))
                .init(device)
        } else {
            conv2d(channels, channels, 3, 2, padding, device)
        };
        Self { conv }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        conv::apply(&self.conv, x)
    }
}

#[derive(Module, Debug)]
pub struct Upsample2D<B: Backend> {
    pub conv: Conv2d<B>,
}

impl<B: Backend> Upsample2D<B> {
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            conv: conv2d(channels, channels, 3, 1, 1, device),
        }
    }

    /// Nearest-neighbour upsampling to `size` (twice the input by default), then a 3×3 convolution.
    /// The U-Net passes the size of the matching skip connection so odd latent sizes work.
    pub fn forward(&self, x: Tensor<B, 4>, size: Option<[usize; 2]>) -> Tensor<B, 4> {
        let [_, _, h, w] = x.dims();
        let size = size.unwrap_or([h * 2, w * 2]);
        let options = InterpolateOptions::new(InterpolateMode::Nearest);
        conv::apply(&self.conv, interpolate(x, size, options))
    }
}
