//! `popalign toy-model --out DIR`: pretrains the toy world's base model on a biased synthetic dataset.
//!
//! Each training image is rendered on the fly: half carry the neutral prompt (`"a photo of a nurse"`)
//! and a figure drawn with the world's bias, half an identity-specific prompt (`"a photo of a red tall
//! nurse"`) and a uniformly drawn figure; 10% of captions are dropped to `""` for classifier-free
//! guidance. The U-Net learns ε-prediction (MSE) with AdamW; the text towers stay frozen. Every draw
//! comes from one ChaCha stream per (seed, step), so the same command gives the same weights.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::backend::Autodiff;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use popalign_core::diffusion::pipeline::{PromptEmbeds, TextConditioner};
use popalign_core::diffusion::schedulers::{NoiseSchedule, SchedulerConfig};
use popalign_core::models::unet::{UNet2DConditionModel, UNetConditioning, UNetConfig};
use popalign_core::toy::render::render;
use popalign_core::toy::world::SIZE;
use popalign_core::toy::{Figure, TOY};
use rand::Rng;
use rand_distr::StandardNormal;

use super::model_root::{unet_config, write_frozen_parts};
use crate::backend::{Backend, device};
use crate::error::{CliError, CliResult, input};
use crate::train::batch::rng_for;
use crate::train::params::scale_and_clip;

type AD = Autodiff<Backend>;

#[derive(clap::Args)]
pub struct Args {
    /// Where the model folder goes (replaced atomically when training ends).
    #[arg(long, default_value = "data/toy/model")]
    out: PathBuf,
    #[arg(long, default_value_t = 3000)]
    steps: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Instead of training: write the model folder without U-Net weights, plus `dataset.safetensors`
    /// with this many rendered training images, their caption indices and every caption's embeddings,
    /// for `tools/toy/pretrain_unet.py` (PyTorch trains the toy U-Net in minutes where our CPU backend
    /// needs hours; the result loads here like any diffusers U-Net).
    #[arg(long)]
    dump_dataset: Option<usize>,
}

/// Share of captions replaced by `""` (classifier-free guidance).
const CAPTION_DROPOUT: f64 = 0.1;
const WARMUP_STEPS: usize = 100;

pub fn run(args: Args) -> CliResult {
    if args.steps == 0 || args.batch_size == 0 {
        return Err(input("--steps and --batch-size must be positive"));
    }
    let device = device();
    <AD as burn::tensor::backend::Backend>::seed(&device, args.seed);
    let staging = args.out.with_extension("partial");
    let _ = std::fs::remove_dir_all(&staging);
    write_frozen_parts::<Backend>(&staging, &device)?;
    let text = TextConditioner::<Backend>::from_dir(&staging, None, true, &device)?;
    let config: UNetConfig = serde_json::from_value(unet_config()).expect("valid config");
    let mut unet = UNet2DConditionModel::<AD>::new(&config, &device);
    let scheduler: SchedulerConfig = popalign_core::io::load::read_config(
        &staging.join("scheduler").join("scheduler_config.json"),
    )?;
    let schedule = NoiseSchedule::new(&scheduler);
    let captions = encode_all_captions(&text, &device)?;
    if let Some(n) = args.dump_dataset {
        return dump_dataset(&args, &staging, &captions, n);
    }
    let mut optimizer = AdamWConfig::new()
        .with_weight_decay(0.01)
        .init::<AD, UNet2DConditionModel<AD>>();

    let bar = ProgressBar::new(args.steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} eta {eta} {msg}")
            .expect("template"),
    );
    let mut smoothed = None;
    for step in 0..args.steps {
        let (pixels, prompts) = training_batch(args.seed, step, args.batch_size);
        let mut rng = rng_for(args.seed ^ 0x5eed, step as u64);
        let b = args.batch_size;
        let noise: Vec<f32> = (0..pixels.len())
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect();
        let timesteps: Vec<usize> = (0..b).map(|_| rng.random_range(0..1000)).collect();
        let shape = [b, 3, SIZE, SIZE];
        let clean = Tensor::<Backend, 1>::from_floats(pixels.as_slice(), &device).reshape(shape);
        let noise = Tensor::<Backend, 1>::from_floats(noise.as_slice(), &device).reshape(shape);
        let x_t = schedule.add_noise(clean, noise.clone(), &timesteps);
        let cond = conditioning(&captions, &prompts, &device);
        let t: Vec<f32> = timesteps.iter().map(|&t| t as f32).collect();
        let out = unet.forward(
            Tensor::from_inner(x_t),
            Tensor::from_inner(Tensor::<Backend, 1>::from_floats(t.as_slice(), &device)),
            &cond,
        );
        let loss = (out - Tensor::from_inner(noise)).powi_scalar(2).mean();
        let value = loss.clone().into_scalar().elem::<f64>();
        if !value.is_finite() {
            return Err(CliError::Runtime(format!(
                "step {step}: the loss is {value}"
            )));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &unet);
        let (grads, _) = scale_and_clip(grads, &unet, 1.0, 1.0);
        unet = optimizer.step(learning_rate(&args, step), unet, grads);
        let s = smoothed.map_or(value, |s: f64| 0.98 * s + 0.02 * value);
        smoothed = Some(s);
        bar.set_message(format!("loss {s:.4}"));
        bar.inc(1);
    }
    bar.finish();
    unet.save_weights(
        &staging
            .join("unet")
            .join("diffusion_pytorch_model.safetensors"),
    )
    .map_err(CliError::Runtime)?;
    let _ = std::fs::remove_dir_all(&args.out);
    std::fs::rename(&staging, &args.out)
        .map_err(|e| CliError::Runtime(format!("{}: {e}", args.out.display())))?;
    eprintln!(
        "wrote {} (final smoothed loss {:.4})",
        args.out.display(),
        smoothed.unwrap_or(0.0)
    );
    Ok(())
}

/// Linear warm-up, then cosine decay to a tenth of the peak.
fn learning_rate(args: &Args, step: usize) -> f64 {
    if step < WARMUP_STEPS {
        return args.learning_rate * (step + 1) as f64 / WARMUP_STEPS as f64;
    }
    let progress = (step - WARMUP_STEPS) as f64 / (args.steps - WARMUP_STEPS).max(1) as f64;
    args.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

/// Every caption the dataset uses: `""`, the neutral prompts and all identity-specific prompts.
fn encode_all_captions(
    text: &TextConditioner<Backend>,
    device: &<Backend as burn::tensor::backend::BackendTypes>::Device,
) -> CliResult<HashMap<String, PromptEmbeds<Backend>>> {
    let mut prompts = vec![String::new()];
    for occupation in 0..TOY.occupations.len() {
        prompts.push(TOY.neutral_prompt(occupation));
        prompts.extend(
            TOY.all_figures()
                .into_iter()
                .map(|f| TOY.specific_prompt(occupation, f)),
        );
    }
    prompts
        .into_iter()
        .map(|p| {
            Ok((
                p.clone(),
                text.encode(&p, device).map_err(CliError::Runtime)?,
            ))
        })
        .collect()
}

/// Rendered images (`[B, 3, 16, 16]` flattened, in [-1, 1]) and their captions for one step.
pub fn training_batch(seed: u64, step: usize, batch_size: usize) -> (Vec<f32>, Vec<String>) {
    let mut rng = rng_for(seed, step as u64);
    let mut pixels = Vec::with_capacity(batch_size * 3 * SIZE * SIZE);
    let mut prompts = Vec::with_capacity(batch_size);
    for _ in 0..batch_size {
        let occupation = rng.random_range(0..TOY.occupations.len());
        let neutral = rng.random_bool(0.5);
        let (figure, prompt) = if neutral {
            let figure = TOY.biased_figure(occupation, rng.random(), rng.random());
            (figure, TOY.neutral_prompt(occupation))
        } else {
            let figure = Figure {
                shape: rng.random_range(0..TOY.shapes.len()),
                colour: rng.random_range(0..TOY.colours.len()),
            };
            (figure, TOY.specific_prompt(occupation, figure))
        };
        let dropped = rng.random_bool(CAPTION_DROPOUT);
        prompts.push(if dropped { String::new() } else { prompt });
        pixels.extend(render(&TOY, occupation, figure, || {
            rng.sample(StandardNormal)
        }));
    }
    (pixels, prompts)
}

/// Stacks cached prompt embeddings into the U-Net's conditioning (SDXL `time_ids` of a 16×16 image).
fn conditioning(
    captions: &HashMap<String, PromptEmbeds<Backend>>,
    prompts: &[String],
    device: &<Backend as burn::tensor::backend::BackendTypes>::Device,
) -> UNetConditioning<AD> {
    let picked: Vec<&PromptEmbeds<Backend>> = prompts.iter().map(|p| &captions[p]).collect();
    let hidden = Tensor::cat(picked.iter().map(|e| e.hidden.clone()).collect(), 0);
    let pooled = Tensor::cat(picked.iter().filter_map(|e| e.pooled.clone()).collect(), 0);
    let size = SIZE as f32;
    let time_ids = Tensor::<Backend, 1>::from_floats([size, size, 0.0, 0.0, size, size], device)
        .reshape([1, 6])
        .repeat_dim(0, prompts.len());
    UNetConditioning {
        encoder_hidden_states: Tensor::from_inner(hidden),
        text_embeds: Some(Tensor::from_inner(pooled)),
        time_ids: Some(Tensor::from_inner(time_ids)),
    }
}

/// See [`Args::dump_dataset`]. The model folder is left at `<out>` (no U-Net weights yet).
fn dump_dataset(
    args: &Args,
    staging: &std::path::Path,
    captions: &HashMap<String, PromptEmbeds<Backend>>,
    n: usize,
) -> CliResult {
    use burn::tensor::TensorData;
    let mut names: Vec<&String> = captions.keys().collect();
    names.sort();
    let index: HashMap<&String, i64> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i as i64))
        .collect();
    let mut pixels = Vec::with_capacity(n * 3 * SIZE * SIZE);
    let mut caption_index = Vec::with_capacity(n);
    for step in 0..n.div_ceil(args.batch_size) {
        let (batch, prompts) = training_batch(args.seed, step, args.batch_size);
        pixels.extend(batch);
        caption_index.extend(prompts.iter().map(|p| index[p]));
    }
    pixels.truncate(n * 3 * SIZE * SIZE);
    caption_index.truncate(n);
    let stack = |f: &dyn Fn(&PromptEmbeds<Backend>) -> Tensor<Backend, 3>| {
        Tensor::cat(names.iter().map(|n| f(&captions[*n])).collect(), 0).into_data()
    };
    let tensors = std::collections::BTreeMap::from([
        (
            "pixels".to_string(),
            TensorData::new(pixels, [n, 3, SIZE, SIZE]),
        ),
        (
            "caption_index".to_string(),
            TensorData::new(caption_index, [n]),
        ),
        ("hidden".to_string(), stack(&|e| e.hidden.clone())),
        (
            "pooled".to_string(),
            stack(&|e| e.pooled.clone().expect("SDXL-shaped").unsqueeze::<3>()),
        ),
    ]);
    let file = args.out.with_extension("dataset.safetensors");
    popalign_core::io::tensor_io::write_tensors(&file, &tensors).map_err(CliError::Runtime)?;
    let captions_file = args.out.with_extension("captions.json");
    std::fs::write(
        &captions_file,
        serde_json::to_string_pretty(&names).expect("json"),
    )
    .map_err(|e| CliError::Runtime(format!("{}: {e}", captions_file.display())))?;
    let _ = std::fs::remove_dir_all(&args.out);
    std::fs::rename(staging, &args.out)
        .map_err(|e| CliError::Runtime(format!("{}: {e}", args.out.display())))?;
    eprintln!("wrote {} and {}", args.out.display(), file.display());
    Ok(())
}
