//! `popalign generate --model DIR --prompt "..." --out DIR`: PNGs with JSON sidecars.
//!
//! Each image's id is `uuid5(prompt)-s<seed>-<index>`, so re-running skips what exists and a killed run
//! resumes without duplicates; files are written under a temporary name and renamed.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use popalign_core::diffusion::pipeline::{DiffusionPipeline, GenerateOptions};
use popalign_core::diffusion::schedulers::sampler;
use popalign_core::models::unet::TrainedWeights;
use serde_json::json;

use crate::artifacts::{png_bytes, write_atomic};
use crate::backend::{Backend as B, device};
use crate::error::{CliError, CliResult, input};

#[derive(clap::Args)]
pub struct Args {
    /// A diffusers model root (`model_index.json`, `unet/`, `vae/`, text encoders, tokenizers, `scheduler/`),
    /// or a Hugging Face repo id found in the local cache (`HF_HUB_CACHE`, `HF_HOME`).
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    /// Omit for diffusers' default (zero embeddings on SDXL); `""` encodes the empty prompt.
    #[arg(long)]
    negative_prompt: Option<String>,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 30)]
    steps: usize,
    #[arg(long, default_value_t = 5.0)]
    guidance: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Defaults to the U-Net's `sample_size` × the VAE factor (1024 for SDXL).
    #[arg(long)]
    width: Option<usize>,
    #[arg(long)]
    height: Option<usize>,
    #[arg(long, default_value_t = 1)]
    num_images: usize,
    /// `euler` (SDXL default) or `ddim`.
    #[arg(long, default_value = "euler")]
    scheduler: String,
    /// Weight variant, e.g. `fp16`.
    #[arg(long)]
    variant: Option<String>,
    /// Trained weights in place of the base U-Net: a diffusers LoRA file, or a fine-tuned U-Net folder
    /// (a training checkpoint's `step-N/unet`).
    #[arg(long, alias = "lora")]
    weights: Option<PathBuf>,
}

pub fn run(mut args: Args) -> CliResult {
    args.model = crate::hub::resolve_model(&args.model, Path::new(""))?;
    let kind = super::sampler_kind(&args.scheduler, args.steps)?;
    let device = device();
    let mut pipeline =
        DiffusionPipeline::<B>::from_dir(&args.model, args.variant.as_deref(), &device)?;
    if let Some(weights) = &args.weights {
        let base_unet = popalign_core::io::load::component_dir(&args.model, "unet");
        pipeline.unet =
            TrainedWeights::at(weights).load(&base_unet, args.variant.as_deref(), &device)?;
    }
    let factor = pipeline.vae_scale_factor();
    let default_size = pipeline.unet.sample_size.unwrap_or(128) * factor;
    let options = GenerateOptions {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        width: args.width.unwrap_or(default_size),
        height: args.height.unwrap_or(default_size),
        guidance_scale: args.guidance,
    };
    if options.width % factor != 0
        || options.height % factor != 0
        || options.width == 0
        || options.height == 0
    {
        return Err(input(format!(
            "--width and --height must be positive multiples of {factor}"
        )));
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| CliError::Runtime(format!("{}: {e}", args.out.display())))?;
    let prompt_id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, args.prompt.as_bytes());
    let sampler = sampler::<B>(kind, &pipeline.scheduler, args.steps, 0.0);

    let bar = ProgressBar::new((args.num_images * args.steps) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} steps {elapsed} eta {eta} {msg}")
            .expect("template"),
    );
    for index in 0..args.num_images {
        let id = format!("{prompt_id}-s{}-{index}", args.seed);
        let png = args.out.join(format!("{id}.png"));
        if png.exists() && args.out.join(format!("{id}.json")).exists() {
            bar.inc(args.steps as u64);
            continue;
        }
        B::seed(&device, args.seed.wrapping_add(index as u64));
        let image = pipeline
            .generate(&options, sampler.as_ref(), &device, |_| bar.inc(1))
            .map_err(CliError::Runtime)?;
        write_atomic(&png, &png_bytes(image)?)?;
        let sidecar = json!({
            "id": id, "prompt": args.prompt, "negative_prompt": args.negative_prompt, "seed": args.seed,
            "index": index, "steps": args.steps, "guidance": args.guidance, "scheduler": args.scheduler,
            "width": options.width, "height": options.height, "model": args.model, "variant": args.variant,
            "trained_weights": args.weights, "popalign_version": popalign_core::VERSION,
        });
        write_atomic(
            &args.out.join(format!("{id}.json")),
            serde_json::to_string_pretty(&sidecar)
                .expect("json")
                .as_bytes(),
        )?;
        bar.set_message(id);
    }
    bar.finish();
    Ok(())
}
