//! Everything a worker loads before its first step.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::optim::AdamW;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::tensor::backend::AutodiffBackend;
use popalign_core::diffusion::pipeline::ModelIndex;
use popalign_core::diffusion::pipeline::TextConditioner;
use popalign_core::diffusion::schedulers::{NoiseSchedule, SchedulerConfig};
use popalign_core::io::load::read_config;
use popalign_core::models::unet::{UNet2DConditionModel, UNetConfig};
use popalign_core::models::vae::ImageSpace;

use super::checkpoint::TrainState;
use super::config::TrainConfig;
use super::data::PreferenceData;
use super::latent_cache::LatentCache;
use super::policy::{Frozen, Policy, TrainBackend, load_policy};
use crate::backend::Device;
use crate::error::{CliResult, input};

/// Everything a worker sets up before its first step.
pub(super) struct Setup<A: AutodiffBackend> {
    pub(super) unet_dir: PathBuf,
    pub(super) latent_shape: [usize; 3],
    pub(super) frozen: Frozen,
    pub(super) unet: UNet2DConditionModel<A>,
    pub(super) optimizer: OptimizerAdaptor<AdamW, UNet2DConditionModel<A>, A>,
    pub(super) state: TrainState,
    pub(super) data: PreferenceData,
    pub(super) validation: Option<(PreferenceData, usize)>,
}

pub(super) fn setup<A: TrainBackend>(
    config: &TrainConfig,
    resume: bool,
    device: &Device,
) -> CliResult<Setup<A>> {
    let preferences = config
        .preferences
        .as_ref()
        .ok_or_else(|| input("preferences is required".to_string()))?;
    let data = PreferenceData::load(preferences)?;
    let Policy {
        unet_dir,
        unet,
        optimizer,
        state,
        reference,
    } = load_policy::<A>(config, resume, device)?;
    let unet_config: UNetConfig = read_config(&unet_dir.join("config.json"))?;
    let variant = config.variant.as_deref();
    let scheduler: SchedulerConfig =
        read_config(&config.model.join("scheduler").join("scheduler_config.json"))?;
    let sdxl = unet.needs_added_conditioning();
    let index = ModelIndex::read(&config.model)?;
    let frozen = Frozen {
        text: TextConditioner::from_dir(&config.model, variant, sdxl, device)?,
        image_space: ImageSpace::from_root(&config.model, index.pixel_space(), variant, device)?,
        schedule: NoiseSchedule::new(&scheduler),
        scheduler,
        zero_negative: index.force_zeros_for_empty_prompt.unwrap_or(sdxl),
        reference,
        captions: HashMap::new(),
        latent_cache: LatentCache::for_config(config),
    };
    let validation = match &config.validation {
        Some(v) => Some((PreferenceData::load(&v.preferences)?, v.draws)),
        None => None,
    };
    let factor = frozen.image_space.scale_factor();
    let latent_shape = [
        unet_config.in_channels,
        config.resolution / factor,
        config.resolution / factor,
    ];
    Ok(Setup {
        unet_dir,
        latent_shape,
        frozen,
        unet,
        optimizer,
        state,
        data,
        validation,
    })
}
