//! The U-Net's down, mid and up blocks. `CrossAttnDownBlock2D` and `DownBlock2D` share one struct
//! (the latter has no `attentions`), likewise for the up blocks, so the field names match both layouts.

use burn::prelude::*;

use super::transformer::{Transformer2DModel, TransformerSpec};
use crate::nn::resnet::ResnetBlock2D;
use crate::nn::sampling::{Downsample2D, Upsample2D};

/// What every block needs to know besides its channel counts.
pub struct BlockSpec {
    pub temb: usize,
    pub groups: usize,
    pub resnet_eps: f64,
    pub layers: usize,
    /// `Some` for the cross-attention variants.
    pub transformer: Option<TransformerSpec>,
}

#[derive(Module, Debug)]
pub struct DownBlock<B: Backend> {
    pub resnets: Vec<ResnetBlock2D<B>>,
    pub attentions: Vec<Transformer2DModel<B>>,
    pub downsamplers: Vec<Downsample2D<B>>,
}

#[derive(Module, Debug)]
pub struct MidBlock<B: Backend> {
    pub resnets: Vec<ResnetBlock2D<B>>,
    pub attentions: Vec<Transformer2DModel<B>>,
}

#[derive(Module, Debug)]
pub struct UpBlock<B: Backend> {
    pub resnets: Vec<ResnetBlock2D<B>>,
    pub attentions: Vec<Transformer2DModel<B>>,
    pub upsamplers: Vec<Upsample2D<B>>,
}

fn transformers<B: Backend>(
    spec: &BlockSpec,
    channels: usize,
    count: usize,
    device: &B::Device,
) -> Vec<Transformer2DModel<B>> {
    match &spec.transformer {
        Some(t) => (0..count)
            .map(|_| {
                Transformer2DModel::new(
                    &TransformerSpec {
                        channels,
                        ..t.clone()
                    },
                    device,
                )
            })
            .collect(),
        None => Vec::new(),
    }
}

impl BlockSpec {
    fn resnet<B: Backend>(
        &self,
        c_in: usize,
        c_out: usize,
        device: &B::Device,
    ) -> ResnetBlock2D<B> {
        ResnetBlock2D::new(
            c_in,
            c_out,
            Some(self.temb),
            self.groups,
            self.resnet_eps,
            device,
        )
    }
}

impl<B: Backend> DownBlock<B> {
    pub fn new(
        c_in: usize,
        c_out: usize,
        downsample: Option<usize>,
        spec: &BlockSpec,
        device: &B::Device,
    ) -> Self {
        let resnets = (0..spec.layers)
            .map(|i| spec.resnet(if i == 0 { c_in } else { c_out }, c_out, device))
            .collect();
        Self {
            resnets,
            attentions: transformers(spec, c_out, spec.layers, device),
            downsamplers: downsample
                .map(|padding| Downsample2D::new(c_out, padding, device))
                .into_iter()
                .collect(),
        }
    }

    /// Returns the block output and the skip connections it contributes (one per resnet, one after
    /// the downsampler).
    pub fn forward(
        &self,
        mut x: Tensor<B, 4>,
        temb: &Tensor<B, 2>,
        context: &Tensor<B, 3>,
    ) -> (Tensor<B, 4>, Vec<Tensor<B, 4>>) {
        let mut skips = Vec::new();
        for (i, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, Some(temb.clone()));
            if let Some(attention) = self.attentions.get(i) {
                x = attention.forward(x, context.clone());
            }
            skips.push(x.clone());
        }
        for down in &self.downsamplers {
            x = down.forward(x);
            skips.push(x.clone());
        }
        (x, skips)
    }
}

impl<B: Backend> MidBlock<B> {
    /// `UNetMidBlock2DCrossAttn`: resnet, then (attention, resnet) pairs.
    pub fn new(channels: usize, spec: &BlockSpec, device: &B::Device) -> Self {
        let resnet = || spec.resnet(channels, channels, device);
        Self {
            resnets: (0..spec.layers + 1).map(|_| resnet()).collect(),
            attentions: transformers(spec, channels, spec.layers, device),
        }
    }

    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        temb: &Tensor<B, 2>,
        context: &Tensor<B, 3>,
    ) -> Tensor<B, 4> {
        let mut x = self.resnets[0].forward(x, Some(temb.clone()));
        for (attention, resnet) in self.attentions.iter().zip(&self.resnets[1..]) {
            x = attention.forward(x, context.clone());
            x = resnet.forward(x, Some(temb.clone()));
        }
        x
    }
}

impl<B: Backend> UpBlock<B> {
    /// `prev` is the previous up block's output channels, `skip_in` the channels of the deepest skip
    /// this block consumes last (diffusers' `in_channels`).
    pub fn new(
        skip_in: usize,
        c_out: usize,
        prev: usize,
        upsample: bool,
        spec: &BlockSpec,
        device: &B::Device,
    ) -> Self {
        let resnets = (0..spec.layers)
            .map(|i| {
                let skip = if i + 1 == spec.layers { skip_in } else { c_out };
                let input = if i == 0 { prev } else { c_out };
                spec.resnet(input + skip, c_out, device)
            })
            .collect();
        Self {
            resnets,
            attentions: transformers(spec, c_out, spec.layers, device),
            upsamplers: if upsample {
                vec![Upsample2D::new(c_out, device)]
            } else {
                Vec::new()
            },
        }
    }

    /// Consumes skips from the end of `skips`; `upsample_size` is the spatial size of the next skip.
    pub fn forward(
        &self,
        mut x: Tensor<B, 4>,
        skips: &mut Vec<Tensor<B, 4>>,
        temb: &Tensor<B, 2>,
        context: &Tensor<B, 3>,
    ) -> Tensor<B, 4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = skips
                .pop()
                .expect("the U-Net provides one skip per up-block resnet");
            x = resnet.forward(Tensor::cat(vec![x, skip], 1), Some(temb.clone()));
            if let Some(attention) = self.attentions.get(i) {
                x = attention.forward(x, context.clone());
            }
        }
        for up in &self.upsamplers {
            let size = skips.last().map(|s| {
                let [_, _, h, w] = s.dims();
                [h, w]
            });
            x = up.forward(x, size);
        }
        x
    }
}
