//! `UNet2DConditionModel`: ε-prediction from a noisy latent, per-sample timesteps and text conditioning.
//! SDXL adds the `text_time` embedding: pooled text embeds ‖ sinusoidal features of the 6 `time_ids`
//! (original size, crop top-left, target size) → `add_embedding`, summed with the timestep embedding.

use std::path::Path;

use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::blocks::{BlockSpec, DownBlock, MidBlock, UpBlock};
use super::config::UNetConfig;
use super::embeddings::{TimestepEmbedding, timestep_features};
use super::transformer::TransformerSpec;
use crate::io::load::{self, LoadError};
use crate::nn::lora::LoraConfig;
use crate::nn::{conv2d, group_norm};

#[derive(Module, Debug)]
pub struct UNet2DConditionModel<B: Backend> {
    pub conv_in: Conv2d<B>,
    pub time_embedding: TimestepEmbedding<B>,
    /// SDXL's `text_time` embedding.
    pub add_embedding: Option<TimestepEmbedding<B>>,
    pub down_blocks: Vec<DownBlock<B>>,
    pub mid_block: MidBlock<B>,
    pub up_blocks: Vec<UpBlock<B>>,
    pub conv_norm_out: GroupNorm<B>,
    pub conv_out: Conv2d<B>,
    pub time_proj_dim: usize,
    pub add_time_proj_dim: usize,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    /// The config's default latent size.
    pub sample_size: Option<usize>,
}

/// Text conditioning of one batch.
#[derive(Debug, Clone)]
pub struct UNetConditioning<B: Backend> {
    /// `[B, 77, cross_attention_dim]`.
    pub encoder_hidden_states: Tensor<B, 3>,
    /// SDXL only: pooled projected text embeddings `[B, P]` and `time_ids` `[B, 6]`.
    pub text_embeds: Option<Tensor<B, 2>>,
    pub time_ids: Option<Tensor<B, 2>>,
}

/// `ff.net.2` follows a weightless dropout at `ff.net.1`; our tuple numbers it 1.
const FEED_FORWARD_OUTPUT: load::KeyRemap = (r"\.ff\.net\.2\.", ".ff.net.1.");

impl<B: Backend> UNet2DConditionModel<B> {
    pub fn new(config: &UNetConfig, device: &B::Device) -> Self {
        Self::with_lora(config, None, device)
    }

    /// The model with LoRA adapters (freshly initialised) on the layers `lora` targets.
    pub fn with_lora(config: &UNetConfig, lora: Option<&LoraConfig>, device: &B::Device) -> Self {
        let channels = &config.block_out_channels;
        let n = channels.len();
        let temb = channels[0] * 4;
        let heads = config.heads();
        let layers = config.layers_per_block.expand(n);
        let depth = config.transformer_layers_per_block.expand(n);
        let block_spec = |i: usize, layers: usize, cross_attention: bool| BlockSpec {
            temb,
            groups: config.norm_num_groups,
            resnet_eps: config.norm_eps,
            layers,
            transformer: cross_attention.then_some(TransformerSpec {
                channels: channels[i],
                heads: heads[i],
                depth: depth[i],
                context_dim: config.cross_attention_dim,
                groups: config.norm_num_groups,
                norm_eps: config.norm_eps,
                linear_projection: config.use_linear_projection,
                lora: lora.cloned(),
            }),
        };

        let mut down_blocks = Vec::new();
        for (i, kind) in config.down_block_types.iter().enumerate() {
            let c_in = if i == 0 { channels[0] } else { channels[i - 1] };
            let downsample = (i + 1 < n).then_some(config.downsample_padding);
            let spec = block_spec(i, layers[i], kind.starts_with("CrossAttn"));
            down_blocks.push(DownBlock::new(c_in, channels[i], downsample, &spec, device));
        }
        let mid_block = MidBlock::new(channels[n - 1], &block_spec(n - 1, 1, true), device);
        let mut up_blocks = Vec::new();
        for (i, kind) in config.up_block_types.iter().enumerate() {
            let level = n - 1 - i;
            let prev = channels[(level + 1).min(n - 1)];
            let skip_in = channels[level.saturating_sub(1)];
            let spec = block_spec(level, layers[level] + 1, kind.starts_with("CrossAttn"));
            up_blocks.push(UpBlock::new(
                skip_in,
                channels[level],
                prev,
                i + 1 < n,
                &spec,
                device,
            ));
        }

        let add_time_proj_dim = config.addition_time_embed_dim.unwrap_or(0);
        Self {
            conv_in: conv2d(config.in_channels, channels[0], 3, 1, 1, device),
            time_embedding: TimestepEmbedding::new(channels[0], temb, device),
            add_embedding: config.addition_embed_type.as_ref().map(|_| {
                TimestepEmbedding::new(
                    config.projection_class_embeddings_input_dim.unwrap_or(0),
                    temb,
                    device,
                )
            }),
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(config.norm_num_groups, channels[0], config.norm_eps, device),
            conv_out: conv2d(channels[0], config.out_channels, 3, 1, 1, device),
            time_proj_dim: channels[0],
            add_time_proj_dim,
            flip_sin_to_cos: config.flip_sin_to_cos,
            freq_shift: config.freq_shift,
            sample_size: config.sample_size,
        }
    }

    /// [`Self::from_dir`], then a diffusers LoRA file (its targets and rank read from the file) if given.
    pub fn from_dir_and_lora_file(
        dir: &Path,
        variant: Option<&str>,
        lora: Option<&Path>,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        match lora {
            None => Self::from_dir(dir, variant, device),
            Some(file) => {
                let config = LoraConfig::from_file(file)?;
                Self::from_dir_with_lora(dir, variant, Some(&config), device)?.load_lora(file)
            }
        }
    }

    /// Loads `config.json` and `diffusion_pytorch_model[.variant].safetensors` from the `unet` folder.
    pub fn from_dir(
        dir: &Path,
        variant: Option<&str>,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        Self::from_dir_with_lora(dir, variant, None, device)
    }

    /// [`Self::from_dir`] with fresh LoRA adapters on the layers `lora` targets.
    pub fn from_dir_with_lora(
        dir: &Path,
        variant: Option<&str>,
        lora: Option<&LoraConfig>,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let config_path = dir.join("config.json");
        let config: UNetConfig = load::read_config(&config_path)?;
        config
            .validate()
            .map_err(|message| LoadError::Unsupported {
                path: config_path.clone(),
                message,
            })?;
        if config.addition_embed_type.is_some()
            && (config.addition_time_embed_dim.is_none()
                || config.projection_class_embeddings_input_dim.is_none())
        {
            return Err(LoadError::Config {
                path: config_path,
                message: "text_time needs addition_time_embed_dim and projection_class_embeddings_input_dim".into(),
            });
        }
        let files = load::weight_files(dir, "diffusion_pytorch_model", variant)?;
        load::load_weights_except(
            Self::with_lora(&config, lora, device),
            &files,
            &[FEED_FORWARD_OUTPUT],
            is_lora_key,
        )
    }

    /// `sample` `[B, C, h, w]`, `timesteps` `[B]` (one per sample) → predicted noise `[B, C, h, w]`.
    pub fn forward(
        &self,
        sample: Tensor<B, 4>,
        timesteps: Tensor<B, 1>,
        cond: &UNetConditioning<B>,
    ) -> Tensor<B, 4> {
        let temb = self.embed_time(timesteps, cond, sample.dtype());
        let context = &cond.encoder_hidden_states;
        let mut x = crate::nn::conv::apply(&self.conv_in, sample);
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            let (out, block_skips) = block.forward(x, &temb, context);
            x = out;
            skips.extend(block_skips);
        }
        x = self.mid_block.forward(x, &temb, context);
        for block in &self.up_blocks {
            x = block.forward(x, &mut skips, &temb, context);
        }
        crate::nn::conv::apply(
            &self.conv_out,
            crate::nn::group_normed_silu(&self.conv_norm_out, x),
        )
    }

    /// The sinusoidal features are computed in the timesteps' precision and then cast to the sample's
    /// (`dtype`), as diffusers does: a bf16 timestep could not even hold 999.
    fn embed_time(
        &self,
        timesteps: Tensor<B, 1>,
        cond: &UNetConditioning<B>,
        dtype: burn::tensor::DType,
    ) -> Tensor<B, 2> {
        let features = timestep_features(
            timesteps,
            self.time_proj_dim,
            self.flip_sin_to_cos,
            self.freq_shift,
        )
        .cast(dtype);
        let emb = self.time_embedding.forward(features);
        let Some(add_embedding) = &self.add_embedding else {
            return emb;
        };
        let (Some(text_embeds), Some(time_ids)) = (&cond.text_embeds, &cond.time_ids) else {
            panic!(
                "an SDXL U-Net needs `text_embeds` and `time_ids`; check with `needs_added_conditioning`"
            )
        };
        let [batch, n_ids] = time_ids.dims();
        let time_features = timestep_features(
            time_ids.clone().reshape([batch * n_ids]),
            self.add_time_proj_dim,
            self.flip_sin_to_cos,
            self.freq_shift,
        )
        .reshape([batch, n_ids * self.add_time_proj_dim])
        .cast(dtype);
        emb + add_embedding.forward(Tensor::cat(vec![text_embeds.clone(), time_features], 1))
    }

    /// Whether `forward` needs `text_embeds` and `time_ids` (SDXL's `text_time` embedding).
    pub fn needs_added_conditioning(&self) -> bool {
        self.add_embedding.is_some()
    }
}

fn is_lora_key(path: &str) -> bool {
    path.contains(".lora_")
}

/// diffusers LoRA files prefix U-Net keys with `unet.`; files converted with diffusers'
/// `convert_state_dict_to_diffusers` (as the official PopAlign trainer saves them) say `lora.down/up`.
const LORA_KEYS: [load::KeyRemap; 3] = [
    (r"^unet\.", ""),
    (r"\.lora\.down\.", ".lora_A."),
    (r"\.lora\.up\.", ".lora_B."),
];

impl<B: Backend> UNet2DConditionModel<B> {
    /// Loads adapter weights from a diffusers/peft LoRA file (`unet.<module>.lora_A.weight`, …) into the
    /// adapters this model was built with. Every tensor of the file must find its adapter.
    pub fn load_lora(self, file: &Path) -> Result<Self, LoadError> {
        let remaps = [
            LORA_KEYS[0],
            LORA_KEYS[1],
            LORA_KEYS[2],
            FEED_FORWARD_OUTPUT,
        ];
        load::load_weights_except(self, &[file.to_path_buf()], &remaps, |path| {
            !is_lora_key(path)
        })
    }

    /// Writes the adapters as diffusers' `save_lora_weights` does (`unet.` prefix, PyTorch `[out, in]`),
    /// so `pipeline.load_lora_weights(file)` reads them.
    pub fn save_lora(&self, file: &Path) -> Result<(), String> {
        self.save_matching(file, |path, _| is_lora_key(path), "unet.")
    }

    /// Writes the base weights (no adapters) as a diffusers `diffusion_pytorch_model.safetensors`.
    pub fn save_weights(&self, file: &Path) -> Result<(), String> {
        self.save_matching(file, |path, _| !is_lora_key(path), "")
    }

    /// Saves the parameters `keep` selects, in PyTorch layout with diffusers key names.
    fn save_matching(
        &self,
        file: &Path,
        keep: fn(&str, &str) -> bool,
        prefix: &str,
    ) -> Result<(), String> {
        load::save_weights(
            self,
            file,
            keep,
            &[(r"\.ff\.net\.1\.", ".ff.net.2."), (r"^", prefix)],
        )
    }
}
