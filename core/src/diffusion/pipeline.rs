//! The SDXL (and SD 1.5) text-to-image pipeline: both text encoders, classifier-free guidance,
//! `time_ids` micro-conditioning, seeded noise, sampling, decoding to RGB.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::Distribution;

use crate::diffusion::precision::Precision;
use crate::diffusion::schedulers::{Sampler, SchedulerConfig};
use crate::io::load::{self, LoadError};
use crate::models::clip::{ClipTextModel, ClipTextOutput};
use crate::models::tokenizer::ClipTokenizer;
use crate::models::unet::{UNet2DConditionModel, UNetConditioning};
use crate::models::vae::ImageSpace;

/// A text encoder with its tokenizer (`text_encoder` + `tokenizer`, or the `_2` pair).
pub struct TextTower<B: Backend> {
    pub tokenizer: ClipTokenizer,
    pub encoder: ClipTextModel<B>,
}

/// The text side of a model root: one tower (SD 1.5) or two (SDXL).
pub struct TextConditioner<B: Backend> {
    pub towers: Vec<TextTower<B>>,
    /// SDXL reads penultimate hidden states and a pooled projection; SD 1.5 the last hidden state.
    pub sdxl: bool,
}

/// All components of a diffusers model root.
pub struct DiffusionPipeline<B: Backend> {
    pub text: TextConditioner<B>,
    pub unet: UNet2DConditionModel<B>,
    /// The VAE, or pixel space (`"vae": [null, null]` in `model_index.json`).
    pub image_space: ImageSpace<B>,
    pub scheduler: SchedulerConfig,
    /// SDXL: an empty negative prompt means zero embeddings (`force_zeros_for_empty_prompt`).
    pub force_zeros_for_empty_prompt: bool,
}

/// Prompt embeddings for one side of classifier-free guidance.
#[derive(Debug, Clone)]
pub struct PromptEmbeds<B: Backend> {
    /// `[B, 77, D1 + D2]`: the penultimate hidden states of the encoders, concatenated.
    pub hidden: Tensor<B, 3>,
    /// `[B, P]`: the last encoder's projected pooled output (SDXL only).
    pub pooled: Option<Tensor<B, 2>>,
}

impl<B: Backend> PromptEmbeds<B> {
    /// The embeddings of several prompts as one batch, in order.
    pub fn concat(embeds: &[&PromptEmbeds<B>]) -> Self {
        Self {
            hidden: Tensor::cat(embeds.iter().map(|e| e.hidden.clone()).collect(), 0),
            pooled: embeds[0]
                .pooled
                .as_ref()
                .map(|_| Tensor::cat(embeds.iter().filter_map(|e| e.pooled.clone()).collect(), 0)),
        }
    }
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub prompt: String,
    /// `None` is diffusers' default: zero embeddings for SDXL (`force_zeros_for_empty_prompt`), the
    /// encoded empty string otherwise. `Some("")` always encodes the empty string, as diffusers does.
    pub negative_prompt: Option<String>,
    pub width: usize,
    pub height: usize,
    pub guidance_scale: f64,
}

/// The parts of `model_index.json` the pipeline reads.
#[derive(serde::Deserialize)]
pub struct ModelIndex {
    #[serde(default)]
    pub force_zeros_for_empty_prompt: Option<bool>,
    /// `[library, class]`, or `[null, null]` when the model has no VAE.
    #[serde(default)]
    pub vae: Option<(Option<String>, Option<String>)>,
}

impl ModelIndex {
    pub fn read(root: &Path) -> Result<Self, LoadError> {
        load::read_config(&root.join("model_index.json"))
    }

    /// The model denoises pixels: its VAE entry is `[null, null]`.
    pub fn pixel_space(&self) -> bool {
        matches!(self.vae, Some((None, None)))
    }
}

/// The side in pixels a model root generates at by default: its U-Net's `sample_size` times the VAE's
/// factor (1024 for SDXL, 512 for SD 1.5), read from the configs alone, without loading weights.
pub fn default_resolution(root: &Path) -> Result<usize, LoadError> {
    #[derive(serde::Deserialize)]
    struct UNetSize {
        sample_size: Option<usize>,
    }
    #[derive(serde::Deserialize)]
    struct VaeLevels {
        block_out_channels: Vec<usize>,
    }
    let unet: UNetSize = load::read_config(&root.join("unet").join("config.json"))?;
    let factor = if ModelIndex::read(root)?.pixel_space() {
        1
    } else {
        let vae: VaeLevels = load::read_config(&root.join("vae").join("config.json"))?;
        1 << vae.block_out_channels.len().saturating_sub(1)
    };
    Ok(unet.sample_size.unwrap_or(128) * factor)
}

impl<B: Backend> DiffusionPipeline<B> {
    /// Loads a model root: `unet/`, `vae/`, `text_encoder[_2]/`, `tokenizer[_2]/`, `scheduler/`.
    pub fn from_dir(
        root: &Path,
        variant: Option<&str>,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let index = ModelIndex::read(root)?;
        let unet = UNet2DConditionModel::from_dir(&root.join("unet"), variant, device)?;
        let text =
            TextConditioner::from_dir(root, variant, unet.needs_added_conditioning(), device)?;
        let scheduler_path = root.join("scheduler").join("scheduler_config.json");
        let scheduler: SchedulerConfig = load::read_config(&scheduler_path)?;
        scheduler
            .validate()
            .map_err(|message| LoadError::Unsupported {
                path: scheduler_path,
                message,
            })?;
        Ok(Self {
            force_zeros_for_empty_prompt: index
                .force_zeros_for_empty_prompt
                .unwrap_or(unet.needs_added_conditioning()),
            text,
            unet,
            image_space: ImageSpace::from_root(root, index.pixel_space(), variant, device)?,
            scheduler,
        })
    }

    pub fn encode_prompt(
        &self,
        prompt: &str,
        device: &B::Device,
    ) -> Result<PromptEmbeds<B>, String> {
        self.text.encode(prompt, device)
    }

    /// Positive and negative embeddings for classifier-free guidance (see [`GenerateOptions`]).
    pub fn encode_guidance_pair(
        &self,
        prompt: &str,
        negative_prompt: Option<&str>,
        device: &B::Device,
    ) -> Result<(PromptEmbeds<B>, PromptEmbeds<B>), String> {
        let positive = self.encode_prompt(prompt, device)?;
        let negative = match negative_prompt {
            None if self.force_zeros_for_empty_prompt => PromptEmbeds {
                hidden: positive.hidden.zeros_like(),
                pooled: positive.pooled.as_ref().map(|p| p.zeros_like()),
            },
            other => self.encode_prompt(other.unwrap_or(""), device)?,
        };
        Ok((positive, negative))
    }

    /// Samples final latents from `latents` (already multiplied by the initial noise sigma if drawn by
    /// the caller) with guidance, calling `progress` after every step.
    pub fn denoise(
        &self,
        positive: &PromptEmbeds<B>,
        negative: &PromptEmbeds<B>,
        time_ids: Tensor<B, 2>,
        mut latents: Tensor<B, 4>,
        sampler: &dyn Sampler<B>,
        guidance_scale: f64,
        mut progress: impl FnMut(usize),
    ) -> Tensor<B, 4> {
        let cond = guidance_conditioning(positive, negative, time_ids);
        for i in 0..sampler.timesteps().len() {
            latents = guided_step(
                Precision::F32,
                &self.unet,
                &cond,
                latents,
                sampler,
                i,
                guidance_scale,
                None,
            );
            progress(i);
        }
        latents
    }

    /// Prompt → image `[1, 3, H, W]` in [0, 1]. Noise is drawn from the backend's seeded RNG.
    pub fn generate(
        &self,
        options: &GenerateOptions,
        sampler: &dyn Sampler<B>,
        device: &B::Device,
        progress: impl FnMut(usize),
    ) -> Result<Tensor<B, 4>, String> {
        let factor = self.vae_scale_factor();
        if options.width % factor != 0 || options.height % factor != 0 {
            return Err(format!("width and height must be multiples of {factor}"));
        }
        let channels = self.unet.conv_in.weight.dims()[1];
        let shape = [1, channels, options.height / factor, options.width / factor];
        let noise = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), device);
        self.generate_batch(
            std::slice::from_ref(&options.prompt),
            options.negative_prompt.as_deref(),
            noise,
            sampler,
            options.guidance_scale,
            progress,
        )
    }

    /// One image per prompt, all denoised together: `noise` `[N, C, h, w]` is each image's initial
    /// standard-normal noise, drawn by the caller from that image's own seed. Returns `[N, 3, H, W]` in [0, 1].
    pub fn generate_batch(
        &self,
        prompts: &[String],
        negative_prompt: Option<&str>,
        noise: Tensor<B, 4>,
        sampler: &dyn Sampler<B>,
        guidance_scale: f64,
        progress: impl FnMut(usize),
    ) -> Result<Tensor<B, 4>, String> {
        let (positive, negative, time_ids) =
            self.batch_conditioning(prompts, negative_prompt, &noise)?;
        let latents = noise * sampler.init_noise_sigma();
        let latents = self.denoise(
            &positive,
            &negative,
            time_ids,
            latents,
            sampler,
            guidance_scale,
            progress,
        );
        Ok(self.decode_to_unit(latents))
    }

    /// [`Self::generate_batch`] for a stochastic sampler (DDIM η > 0), keeping the whole chain: returns the
    /// images and the latents `[x_0, x_1, …, x_S]` (`x_0` the scaled initial noise, each `[N, C, h, w]`),
    /// the trajectories dense-reward DPO trains on. `step_noise(i)` draws the noise of step `i`.
    pub fn generate_trajectories(
        &self,
        prompts: &[String],
        negative_prompt: Option<&str>,
        noise: Tensor<B, 4>,
        sampler: &dyn Sampler<B>,
        guidance_scale: f64,
        mut step_noise: impl FnMut(usize) -> Tensor<B, 4>,
    ) -> Result<(Tensor<B, 4>, Vec<Tensor<B, 4>>), String> {
        let (positive, negative, time_ids) =
            self.batch_conditioning(prompts, negative_prompt, &noise)?;
        let cond = guidance_conditioning(&positive, &negative, time_ids);
        let mut chain = vec![noise * sampler.init_noise_sigma()];
        for i in 0..sampler.timesteps().len() {
            let latents = chain
                .last()
                .expect("the chain starts with the noise")
                .clone();
            let next = guided_step(
                Precision::F32,
                &self.unet,
                &cond,
                latents,
                sampler,
                i,
                guidance_scale,
                Some(step_noise(i)),
            );
            chain.push(next);
        }
        let images = self.decode_to_unit(chain.last().expect("at least the noise").clone());
        Ok((images, chain))
    }

    /// Positive and negative embeddings stacked per prompt, and the `time_ids` of an unscaled, uncropped
    /// image of the noise's size.
    fn batch_conditioning(
        &self,
        prompts: &[String],
        negative_prompt: Option<&str>,
        noise: &Tensor<B, 4>,
    ) -> Result<(PromptEmbeds<B>, PromptEmbeds<B>, Tensor<B, 2>), String> {
        let device = noise.device();
        let [n, _, h, w] = noise.dims();
        if prompts.len() != n {
            return Err(format!("{} prompts for {n} noise tensors", prompts.len()));
        }
        let mut encoded: std::collections::HashMap<&str, (PromptEmbeds<B>, PromptEmbeds<B>)> =
            Default::default();
        for prompt in prompts {
            if !encoded.contains_key(prompt.as_str()) {
                let pair = self.encode_guidance_pair(prompt, negative_prompt, &device)?;
                encoded.insert(prompt, pair);
            }
        }
        let stack = |pick: fn(&(PromptEmbeds<B>, PromptEmbeds<B>)) -> &PromptEmbeds<B>| {
            let sides: Vec<&PromptEmbeds<B>> =
                prompts.iter().map(|p| pick(&encoded[p.as_str()])).collect();
            PromptEmbeds::concat(&sides)
        };
        let factor = self.vae_scale_factor();
        let size = (h * factor, w * factor);
        let time_ids = sdxl_time_ids::<B>(size, (0, 0), size, &device).repeat_dim(0, n);
        Ok((stack(|pair| &pair.0), stack(|pair| &pair.1), time_ids))
    }

    /// Final latents → image in [0, 1].
    pub fn decode_to_unit(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        self.image_space.decode_to_unit(latents)
    }

    /// Pixels per latent cell: 2^(VAE levels − 1), 1 in pixel space.
    pub fn vae_scale_factor(&self) -> usize {
        self.image_space.scale_factor()
    }
}

impl<B: Backend> TextConditioner<B> {
    /// Loads `text_encoder[_2]/` with `tokenizer[_2]/` from a model root.
    pub fn from_dir(
        root: &Path,
        variant: Option<&str>,
        sdxl: bool,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let mut towers = Vec::new();
        for suffix in ["", "_2"] {
            let encoder_dir = root.join(format!("text_encoder{suffix}"));
            if encoder_dir.is_dir() {
                towers.push(TextTower {
                    tokenizer: ClipTokenizer::from_dir(&root.join(format!("tokenizer{suffix}")))?,
                    encoder: ClipTextModel::from_dir(&encoder_dir, variant, device)?,
                });
            }
        }
        if towers.is_empty() {
            return Err(LoadError::Missing {
                path: root.join("text_encoder"),
            });
        }
        Ok(Self { towers, sdxl })
    }

    /// Encodes a prompt with every tower, as `StableDiffusionXLPipeline.encode_prompt` does: the
    /// penultimate hidden states (SDXL) or the last hidden state (SD 1.5), concatenated, and the
    /// projected pooled output of the last tower.
    pub fn encode(&self, prompt: &str, device: &B::Device) -> Result<PromptEmbeds<B>, String> {
        let mut hidden = Vec::new();
        let mut pooled = None;
        for tower in &self.towers {
            let ids: Vec<i64> = tower
                .tokenizer
                .encode(prompt)?
                .into_iter()
                .map(i64::from)
                .collect();
            let input =
                Tensor::<B, 1, Int>::from_ints(ids.as_slice(), device).reshape([1, ids.len()]);
            let ClipTextOutput {
                last_hidden_state,
                penultimate,
                pooled: raw_pooled,
                text_embeds,
            } = tower.encoder.forward(input);
            hidden.push(if self.sdxl {
                penultimate
            } else {
                last_hidden_state
            });
            pooled = Some(text_embeds.unwrap_or(raw_pooled));
        }
        Ok(PromptEmbeds {
            hidden: Tensor::cat(hidden, 2),
            pooled: if self.sdxl { pooled } else { None },
        })
    }
}

/// The U-Net conditioning of a classifier-free-guidance batch: `[negative_1..N, positive_1..N]`.
pub fn guidance_conditioning<B: Backend>(
    positive: &PromptEmbeds<B>,
    negative: &PromptEmbeds<B>,
    time_ids: Tensor<B, 2>,
) -> UNetConditioning<B> {
    UNetConditioning {
        encoder_hidden_states: Tensor::cat(
            vec![negative.hidden.clone(), positive.hidden.clone()],
            0,
        ),
        text_embeds: match (&negative.pooled, &positive.pooled) {
            (Some(n), Some(p)) => Some(Tensor::cat(vec![n.clone(), p.clone()], 0)),
            _ => None,
        },
        time_ids: Some(Tensor::cat(vec![time_ids.clone(), time_ids], 0)),
    }
}

/// One guided sampler step `i`: `ε̂ = ε_u + s·(ε_c − ε_u)` from one U-Net call on the doubled batch
/// (`cond` from [`guidance_conditioning`]), then the sampler's update. `noise` feeds stochastic samplers.
/// The U-Net and `cond` come in `precision` (cast once by the caller); the latents, the guidance and the
/// sampler's update stay f32.
#[allow(clippy::too_many_arguments)]
pub fn guided_step<B: Backend>(
    precision: Precision,
    unet: &UNet2DConditionModel<B>,
    cond: &UNetConditioning<B>,
    latents: Tensor<B, 4>,
    sampler: &dyn Sampler<B>,
    i: usize,
    guidance_scale: f64,
    noise: Option<Tensor<B, 4>>,
) -> Tensor<B, 4> {
    let input =
        sampler.scale_model_input(Tensor::cat(vec![latents.clone(), latents.clone()], 0), i);
    let t = sampler.timesteps()[i];
    let timesteps = Tensor::<B, 1>::full([input.dims()[0]], t as f32, &input.device());
    let out = precision.output(unet.forward(precision.input(input), timesteps, cond));
    let [uncond, text] = out
        .chunk(2, 0)
        .try_into()
        .expect("guidance batch splits in two");
    let guided = uncond.clone() + (text - uncond) * guidance_scale;
    sampler.step(guided, i, latents, noise)
}

/// SDXL micro-conditioning `[original_h, original_w, crop_top, crop_left, target_h, target_w]`, `[1, 6]`.
pub fn sdxl_time_ids<B: Backend>(
    original: (usize, usize),
    crop_top_left: (usize, usize),
    target: (usize, usize),
    device: &B::Device,
) -> Tensor<B, 2> {
    let values = [
        original.0,
        original.1,
        crop_top_left.0,
        crop_top_left.1,
        target.0,
        target.1,
    ]
    .map(|v| v as f32);
    Tensor::<B, 1>::from_floats(values, device).reshape([1, 6])
}
