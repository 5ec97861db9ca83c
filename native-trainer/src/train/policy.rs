//! What training holds: the trained U-Net with its optimiser and progress, the frozen parts, and the
//! autodiff backends it runs on.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use popalign_core::diffusion::pipeline::{PromptEmbeds, TextConditioner};
use popalign_core::diffusion::schedulers::{NoiseSchedule, SchedulerConfig};
use popalign_core::models::unet::{TrainedWeights, UNet2DConditionModel, UNetConditioning};
use popalign_core::models::vae::ImageSpace;
use popalign_core::nn::lora::{DisableLora, TrainOnlyLora};
use popalign_core::nn::params::stable_param_ids;

use super::checkpoint::{self, TrainState};
use super::config::TrainConfig;
use super::latent_cache::LatentCache;
use super::params;
use crate::backend::{Backend, Device};
use crate::error::{CliError, CliResult, input};

/// The autodiff backends the preference trainer runs on: plain or checkpointed autodiff over `Backend`.
pub(super) trait TrainBackend:
    AutodiffBackend<InnerBackend = Backend> + burn::tensor::backend::BackendTypes<Device = Device>
{
}

impl<T> TrainBackend for T where
    T: AutodiffBackend<InnerBackend = Backend>
        + burn::tensor::backend::BackendTypes<Device = Device>
{
}

/// The frozen parts: text encoders, VAE (or pixel space), noise schedule, and (full fine-tuning) the reference U-Net.
pub(super) struct Frozen {
    pub(super) text: TextConditioner<Backend>,
    pub(super) image_space: ImageSpace<Backend>,
    pub(super) schedule: NoiseSchedule,
    /// The model's `scheduler_config.json`, for the DDIM steps of recorded chains (`dense`).
    pub(super) scheduler: SchedulerConfig,
    /// The negative side of guidance is zeros, not the encoded empty prompt (diffusers'
    /// `force_zeros_for_empty_prompt`, as generation used it).
    pub(super) zero_negative: bool,
    pub(super) reference: Option<UNet2DConditionModel<Backend>>,
    pub(super) captions: HashMap<String, PromptEmbeds<Backend>>,
    pub(super) latent_cache: Option<LatentCache>,
}

impl Frozen {
    /// The caption's embeddings, encoded once per run.
    pub(super) fn caption(
        &mut self,
        caption: &str,
        device: &Device,
    ) -> CliResult<PromptEmbeds<Backend>> {
        if !self.captions.contains_key(caption) {
            let embeds = self
                .text
                .encode(caption, device)
                .map_err(CliError::Runtime)?;
            self.captions.insert(caption.to_string(), embeds);
        }
        Ok(self.captions[caption].clone())
    }
}

/// The trained U-Net with its optimiser and progress: fresh, or the newest checkpoint's with `resume`.
pub(super) struct Policy<A: AutodiffBackend> {
    pub(super) unet_dir: PathBuf,
    pub(super) unet: UNet2DConditionModel<A>,
    pub(super) optimizer: OptimizerAdaptor<AdamW, UNet2DConditionModel<A>, A>,
    pub(super) state: TrainState,
    /// Full fine-tuning: a frozen copy of the initial U-Net.
    pub(super) reference: Option<UNet2DConditionModel<A::InnerBackend>>,
}

pub(super) fn load_policy<A: AutodiffBackend>(
    config: &TrainConfig,
    resume: bool,
    device: &A::Device,
) -> CliResult<Policy<A>> {
    let unet_dir = config.unet_dir();
    let variant = config.unet_variant();
    // Seeds the backend RNG that initialises fresh LoRA adapters; every later draw comes from
    // `batch::rng_for`. The RNG is global, so data-parallel workers take turns: each replica then gets
    // the same adapters as a single-device run.
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let unet = {
        let _turn = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        <A as burn::tensor::backend::Backend>::seed(device, config.seed);
        let unet = UNet2DConditionModel::<A>::from_dir_with_lora(
            &unet_dir,
            variant,
            config.lora.as_ref(),
            device,
        )?;
        // burn initialises parameters lazily, at first use; draw them now, while this worker holds the RNG.
        params::materialize(&unet);
        unet
    };
    let reference = config
        .lora
        .is_none()
        .then(|| config.precision.module(unet.valid()));
    let lora = config.lora.is_some();
    let mut unet = trainable(unet, lora);
    let mut optimizer = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .init::<A, UNet2DConditionModel<A>>();

    let hash = config.hash();
    let mut state = TrainState {
        step: 0,
        config_hash: hash.clone(),
        skipped_pairs: 0,
    };
    match (checkpoint::latest(&config.output)?, resume) {
        (Some((saved, dir)), true) => {
            if saved.config_hash != hash {
                return Err(input(format!(
                    "{}: written under config {} but train.toml is now {hash}",
                    dir.display(),
                    saved.config_hash
                )));
            }
            // Ids again after loading, so the optimiser state (keyed by id) finds its parameters.
            let saved_weights = TrainedWeights::in_checkpoint(&dir, lora);
            unet = trainable(saved_weights.apply(unet, device)?, lora);
            optimizer = checkpoint::load_optimizer(optimizer, &dir, device)?;
            state = saved;
        }
        (Some((_, dir)), false) => {
            return Err(input(format!(
                "{} exists: pass --resume to continue, or choose another output",
                dir.display()
            )));
        }
        (None, _) => {}
    }
    Ok(Policy {
        unet_dir,
        // With LoRA in bf16 the frozen base lives in bf16 (full fine-tuning has nothing frozen here).
        unet: config.precision.store_frozen(unet),
        optimizer,
        state,
        reference,
    })
}

/// Stable parameter ids (the optimiser state is keyed by them), then the trainable flags.
pub(super) fn trainable<A: AutodiffBackend>(
    unet: UNet2DConditionModel<A>,
    lora: bool,
) -> UNet2DConditionModel<A> {
    let unet = stable_param_ids(unet);
    if lora {
        TrainOnlyLora::apply(unet)
    } else {
        TrainOnlyLora::all_trainable(unet)
    }
}

/// The reference U-Net on the policy's autodiff backend, taking no gradient: full fine-tuning's frozen copy,
/// or the policy with its adapters off. It runs the policy's own autodiff ops rather than the inner
/// backend's: a backend may fuse an op on its inner side only (burn-flex's attention), and that alone kept
/// the two from tying at step 0 (in bf16 by more than the dense objective's log-ratio clip).
pub(super) fn reference_unet<A: TrainBackend>(
    frozen: &Frozen,
    unet: &UNet2DConditionModel<A>,
) -> UNet2DConditionModel<A> {
    match &frozen.reference {
        Some(copy) => UNet2DConditionModel::from_inner(copy.clone()),
        None => DisableLora::apply(unet.clone()),
    }
    .no_grad()
}

/// Frozen conditioning, lifted onto the autodiff backend for the policy.
pub(super) fn to_autodiff<A: TrainBackend>(cond: UNetConditioning<Backend>) -> UNetConditioning<A> {
    UNetConditioning {
        encoder_hidden_states: Tensor::from_inner(cond.encoder_hidden_states),
        text_embeds: cond.text_embeds.map(Tensor::from_inner),
        time_ids: cond.time_ids.map(Tensor::from_inner),
    }
}
