//! Sample grids during training (`[samples]` in `train.toml`): a fixed set of prompts × images, sampled
//! with the U-Net being trained at step 0, every `every` steps and at the last step, into
//! `<output>/samples/step-<n>/`, an image set as generation writes it (PNGs, JSON sidecars,
//! `manifest.jsonl`). An image's id fixes its starting noise, so the same cell of every grid starts from
//! the same noise and the grids show the model move. A grid's finished images are skipped when a run
//! resumes, and the rest come out with the bytes an uninterrupted run writes.

use burn::module::AutodiffModule;
use burn::tensor::FloatDType;
use indicatif::ProgressBar;
use popalign_core::diffusion::pipeline::{DiffusionPipeline, TextConditioner};
use popalign_core::diffusion::precision::Precision;
use popalign_core::models::unet::UNet2DConditionModel;
use popalign_core::models::vae::ImageSpace;
use popalign_core::nn::params::cast_params;
use serde_json::json;

use super::config::{SamplesConfig, TrainConfig};
use super::policy::{Frozen, TrainBackend};
use crate::backend::Backend;
use crate::error::CliResult;
use crate::stages::images::{SamplingOptions, generate_set, jobs_for};

/// Writes the grid of `step` with the trained `unet`, unless it is already complete.
pub(super) fn write_grid<A: TrainBackend>(
    config: &TrainConfig,
    samples: &SamplesConfig,
    step: usize,
    unet: &UNet2DConditionModel<A>,
    frozen: &mut Frozen,
) -> CliResult {
    let rows: Vec<_> = samples
        .prompts
        .iter()
        .map(|p| (p.clone(), p.clone(), Default::default()))
        .collect();
    let jobs = jobs_for(
        &rows,
        samples.images_per_prompt,
        samples.seed.unwrap_or(config.seed),
    );
    let options = SamplingOptions {
        steps: samples.steps,
        guidance: samples.guidance,
        scheduler: samples.scheduler,
        batch_size: samples.batch_size,
        resolution: samples.resolution.unwrap_or(config.resolution),
        trajectories: false,
    };
    // Sampling runs in f32; a bf16 run's frozen weights are cast for it (a transient copy).
    let unet = match config.precision {
        Precision::F32 => unet.valid(),
        Precision::Bf16 => cast_params(unet.valid(), FloatDType::F32),
    };
    let sidecar = json!({"model": config.model, "training_step": step});
    with_pipeline(frozen, unet, |pipeline| {
        generate_set(
            pipeline,
            &jobs,
            &config.output,
            &format!("samples/step-{step}"),
            &options,
            &sidecar,
            &ProgressBar::hidden(),
            None,
        )
        .map(|_| ())
    })
}

/// Runs `f` on a pipeline made of the frozen text encoders and VAE and the given U-Net. The frozen parts
/// are moved into the pipeline and back after `f`, so nothing is loaded or copied twice; what is left in
/// `frozen` meanwhile holds no weights.
fn with_pipeline<R>(
    frozen: &mut Frozen,
    unet: UNet2DConditionModel<Backend>,
    f: impl FnOnce(&DiffusionPipeline<Backend>) -> R,
) -> R {
    let no_text = TextConditioner {
        towers: Vec::new(),
        sdxl: frozen.text.sdxl,
    };
    let pipeline = DiffusionPipeline {
        text: std::mem::replace(&mut frozen.text, no_text),
        unet,
        image_space: std::mem::replace(&mut frozen.image_space, ImageSpace::Pixel),
        scheduler: frozen.scheduler.clone(),
        force_zeros_for_empty_prompt: frozen.zero_negative,
    };
    let result = f(&pipeline);
    frozen.text = pipeline.text;
    frozen.image_space = pipeline.image_space;
    result
}
