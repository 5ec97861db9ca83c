//! Where the U-Net denoises: VAE latents (SD, SDXL) or pixels directly.
//!
//! A model root whose `model_index.json` lists `"vae": [null, null]` (diffusers' way of saying a
//! component is absent) is a pixel-space model: the U-Net sees images in [-1, 1] with `in_channels = 3`.
//! The toy world uses this so its base model needs no separately trained autoencoder.

use std::path::Path;

use burn::prelude::*;

use super::AutoencoderKL;
use crate::io::load::LoadError;

pub enum ImageSpace<B: Backend> {
    Latent(AutoencoderKL<B>),
    Pixel,
}

impl<B: Backend> ImageSpace<B> {
    /// `vae/` of a model root, unless the root declares it absent (`pixel_space`).
    pub fn from_root(
        root: &Path,
        pixel_space: bool,
        variant: Option<&str>,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        Ok(if pixel_space {
            Self::Pixel
        } else {
            Self::Latent(AutoencoderKL::from_dir(&root.join("vae"), variant, device)?)
        })
    }

    /// The same space with the VAE's parameters left out of gradients: a frozen decoder that gradients
    /// still flow through (AlignProp) on an autodiff backend.
    pub fn no_grad(self) -> Self {
        match self {
            Self::Latent(vae) => Self::Latent(burn::module::Module::no_grad(vae)),
            Self::Pixel => Self::Pixel,
        }
    }

    /// Pixels per U-Net cell: 2^(VAE levels − 1), or 1 in pixel space.
    pub fn scale_factor(&self) -> usize {
        match self {
            Self::Latent(vae) => 1 << (vae.decoder.up_blocks.len() - 1),
            Self::Pixel => 1,
        }
    }

    /// Images `[B, 3, H, W]` in [-1, 1] → what the U-Net denoises. In latent space a sample of the
    /// posterior, `mean + σ·posterior_noise`, shifted and scaled as diffusers' training scripts do.
    pub fn encode(&self, pixels: Tensor<B, 4>, posterior_noise: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::Latent(vae) => {
                let (mean, logvar) = vae.encode(pixels);
                self.sample_posterior(mean, logvar, posterior_noise)
            }
            Self::Pixel => pixels,
        }
    }

    /// The posterior `(mean, logvar)` of images `[B, 3, H, W]` in [-1, 1]; in pixel space the images
    /// themselves with a zero log-variance (sampling then returns them unchanged).
    pub fn moments(&self, pixels: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        match self {
            Self::Latent(vae) => vae.encode(pixels),
            Self::Pixel => (pixels.clone(), pixels.zeros_like()),
        }
    }

    /// [`Self::encode`] from the posterior's `(mean, logvar)` (what a latent cache keeps). In pixel space
    /// `mean` is the image itself.
    pub fn sample_posterior(
        &self,
        mean: Tensor<B, 4>,
        logvar: Tensor<B, 4>,
        posterior_noise: Tensor<B, 4>,
    ) -> Tensor<B, 4> {
        match self {
            Self::Latent(vae) => {
                let z = mean + (logvar * 0.5).exp() * posterior_noise;
                (z - vae.shift_factor) * vae.scaling_factor
            }
            Self::Pixel => mean,
        }
    }

    /// What the U-Net produced → image in [0, 1].
    pub fn decode_to_unit(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        let image = match self {
            Self::Latent(vae) => vae.decode_scaled(latents),
            Self::Pixel => latents,
        };
        ((image / 2.0) + 0.5).clamp(0.0, 1.0)
    }
}
