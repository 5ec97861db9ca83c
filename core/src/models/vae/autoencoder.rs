//! `AutoencoderKL`: encode to a diagonal Gaussian (mean, log-variance clamped to [-30, 20]), decode.
//! Latents seen by the U-Net are `(z − shift) · scaling_factor`; `decode` takes them already unscaled.

use std::path::Path;

use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::config::VaeConfig;
use super::decoder::Decoder;
use super::encoder::Encoder;
use crate::io::load::{self, LoadError};
use crate::nn::conv2d;

#[derive(Module, Debug)]
pub struct AutoencoderKL<B: Backend> {
    pub encoder: Encoder<B>,
    pub decoder: Decoder<B>,
    pub quant_conv: Option<Conv2d<B>>,
    pub post_quant_conv: Option<Conv2d<B>>,
    pub scaling_factor: f64,
    pub shift_factor: f64,
}

/// Old diffusers VAE files name the mid-block attention `query/key/value/proj_attn`.
const LEGACY_ATTENTION: [load::KeyRemap; 4] = [
    (r"(attentions\.\d+)\.query\.", "$1.to_q."),
    (r"(attentions\.\d+)\.key\.", "$1.to_k."),
    (r"(attentions\.\d+)\.value\.", "$1.to_v."),
    (r"(attentions\.\d+)\.proj_attn\.", "$1.to_out.0."),
];

impl<B: Backend> AutoencoderKL<B> {
    pub fn new(config: &VaeConfig, device: &B::Device) -> Self {
        let moments = 2 * config.latent_channels;
        Self {
            encoder: Encoder::new(config, device),
            decoder: Decoder::new(config, device),
            quant_conv: config
                .use_quant_conv
                .then(|| conv2d(moments, moments, 1, 1, 0, device)),
            post_quant_conv: config.use_post_quant_conv.then(|| {
                conv2d(
                    config.latent_channels,
                    config.latent_channels,
                    1,
                    1,
                    0,
                    device,
                )
            }),
            scaling_factor: config.scaling_factor,
            shift_factor: config.shift_factor.unwrap_or(0.0),
        }
    }

    pub fn from_dir(
        dir: &Path,
        variant: Option<&str>,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let config_path = dir.join("config.json");
        let config: VaeConfig = load::read_config(&config_path)?;
        config
            .validate()
            .map_err(|message| LoadError::Unsupported {
                path: config_path,
                message,
            })?;
        let files = load::weight_files(dir, "diffusion_pytorch_model", variant)?;
        load::load_weights(Self::new(&config, device), &files, &LEGACY_ATTENTION)
    }

    /// Image `[B, 3, H, W]` in [-1, 1] → (mean, logvar), each `[B, latent, H/f, W/f]`.
    pub fn encode(&self, image: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let mut moments = self.encoder.forward(image);
        if let Some(conv) = &self.quant_conv {
            moments = crate::nn::conv::apply(conv, moments);
        }
        let [mean, logvar] = moments
            .chunk(2, 1)
            .try_into()
            .expect("moments split in two");
        (mean, logvar.clamp(-30.0, 20.0))
    }

    /// Latents (already divided by the scaling factor) → image, roughly in [-1, 1].
    pub fn decode(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        let z = match &self.post_quant_conv {
            Some(conv) => crate::nn::conv::apply(conv, latents),
            None => latents,
        };
        self.decoder.forward(z)
    }

    /// U-Net latents → image: undoes `(z − shift) · scaling_factor`, then decodes.
    pub fn decode_scaled(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        self.decode(latents / self.scaling_factor + self.shift_factor)
    }
}
