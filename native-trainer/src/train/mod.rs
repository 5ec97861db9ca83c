//! `popalign train --config train.toml [--resume]`: preference fine-tuning of the U-Net (LoRA or full)
//! with PopAlign, Diffusion-DPO, the pairwise bound or SFT, on one device or data-parallel on several;
//! or reward fine-tuning with AlignProp (`alignprop.rs`, one device).

mod alignprop;
pub(crate) mod batch;
pub(crate) mod checkpoint;
pub mod config;
mod data;
mod dense;
mod latent_cache;
mod parallel;
pub(crate) mod params;
pub(crate) mod samples;
pub(crate) mod trajectory;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, NoCheckpointing};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use popalign_core::align::objectives::dpo::dpo_loss;
use popalign_core::align::objectives::pairwise::pairwise_loss;
use popalign_core::align::objectives::popalign::{
    ReferencePointReduce, SingleWorker, popalign_loss,
};
use popalign_core::align::objectives::sft::sft_loss;
use popalign_core::align::objectives::{
    Diagnostics, ObjectiveKind, ObjectiveOutput, PairErrors, per_sample_mse,
};
use popalign_core::diffusion::pipeline::ModelIndex;
use popalign_core::diffusion::pipeline::{PromptEmbeds, TextConditioner};
use popalign_core::diffusion::precision::Precision;
use popalign_core::diffusion::schedulers::{NoiseSchedule, SchedulerConfig};
use popalign_core::io::load::read_config;
use popalign_core::models::unet::{UNet2DConditionModel, UNetConditioning, UNetConfig};
use popalign_core::models::vae::ImageSpace;
use popalign_core::nn::lora::{DisableLora, TrainOnlyLora};
use popalign_core::nn::params::stable_param_ids;
use popalign_core::nn::recomputed_attention;
use serde_json::json;

use crate::backend::{Backend, Device};
use crate::commands::export_lora::LoraExport;
use crate::error::{CliError, CliResult, input};
use batch::{Batch, ImageInput, Selection, sample_batch};
use checkpoint::TrainState;
use config::TrainConfig;
use data::PreferenceData;
use latent_cache::{CachedLatent, LatentCache};
use parallel::Worker;

type AD = Autodiff<Backend>;

/// The autodiff backends the preference trainer runs on: plain or checkpointed autodiff over `Backend`.
pub(crate) trait TrainBackend:
    AutodiffBackend<InnerBackend = Backend> + burn::tensor::backend::BackendTypes<Device = Device>
{
}

impl<T> TrainBackend for T where
    T: AutodiffBackend<InnerBackend = Backend>
        + burn::tensor::backend::BackendTypes<Device = Device>
{
}

#[derive(clap::Args)]
pub struct Args {
    /// The run's `train.toml`.
    #[arg(long)]
    config: PathBuf,
    /// Continue from the newest checkpoint in the output folder.
    #[arg(long)]
    resume: bool,
    /// Train data-parallel, one worker per device (`cuda:0,cuda:1`; `cpu,cpu` on the CPU build);
    /// replaces `devices` in train.toml. `batch_size` is per device.
    #[arg(long, value_delimiter = ',')]
    devices: Vec<String>,
    /// Also write each checkpoint's LoRA in these layouts (`kohya`); adds to `export` in train.toml.
    #[arg(long, value_enum, value_delimiter = ',')]
    export: Vec<LoraExport>,
}

/// The frozen parts: text encoders, VAE (or pixel space), noise schedule, and (full fine-tuning) the reference U-Net.
struct Frozen {
    text: TextConditioner<Backend>,
    image_space: ImageSpace<Backend>,
    schedule: NoiseSchedule,
    /// The model's `scheduler_config.json`, for the DDIM steps of recorded chains (`dense`).
    scheduler: SchedulerConfig,
    /// The negative side of guidance is zeros, not the encoded empty prompt (diffusers'
    /// `force_zeros_for_empty_prompt`, as generation used it).
    zero_negative: bool,
    reference: Option<UNet2DConditionModel<Backend>>,
    captions: HashMap<String, PromptEmbeds<Backend>>,
    latent_cache: Option<LatentCache>,
}

impl Frozen {
    /// The caption's embeddings, encoded once per run.
    fn caption(&mut self, caption: &str, device: &Device) -> CliResult<PromptEmbeds<Backend>> {
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

pub fn run(args: Args) -> CliResult {
    let mut config = TrainConfig::load(&args.config)?;
    if !args.devices.is_empty() {
        config.devices = args.devices;
    }
    for export in args.export {
        if !config.export.contains(&export) {
            config.export.push(export);
        }
    }
    train_with(&config, args.resume)
}

/// Trains as `config` says (its paths absolute, or relative to the working directory).
pub fn train_with(config: &TrainConfig, resume: bool) -> CliResult {
    config.validate().map_err(input)?;
    enable_recomputed_attention();
    let devices = config.parsed_devices()?;
    let world = devices.len();
    if config.precision == Precision::Bf16
        && !<Backend as burn::tensor::backend::Backend>::supports_dtype(&devices[0], DType::BF16)
    {
        return Err(input(format!(
            "precision = \"bf16\" needs a backend with bf16 tensors, and this popalign runs on {} \
             (build it with --features cuda, or --features flex for the CPU)",
            crate::backend::NAME
        )));
    }
    if config.objective == ObjectiveKind::Alignprop {
        return alignprop::train(config, resume, &devices);
    }
    if world == 1 {
        return train_worker_with(config, resume, &Worker::join(0, 1, devices[0].clone())?);
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = devices
            .into_iter()
            .enumerate()
            .map(|(rank, device)| {
                scope.spawn(move || {
                    let worker = Worker::join(rank, world, device)?;
                    let result = train_worker_with(config, resume, &worker);
                    worker.leave();
                    result
                })
            })
            .collect();
        // Every worker reaches the same verdict (see `Worker::all_ok`); the first error in rank order
        // is reported, the main worker's when it failed.
        let results: Vec<CliResult> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(CliError::Runtime("a training worker panicked".into())))
            })
            .collect();
        results
            .into_iter()
            .collect::<CliResult<Vec<()>>>()
            .map(|_| ())
    })
}

/// Everything a worker sets up before its first step.
struct Setup<A: AutodiffBackend> {
    unet_dir: PathBuf,
    latent_shape: [usize; 3],
    frozen: Frozen,
    unet: UNet2DConditionModel<A>,
    optimizer: OptimizerAdaptor<AdamW, UNet2DConditionModel<A>, A>,
    state: TrainState,
    data: PreferenceData,
    validation: Option<(PreferenceData, usize)>,
}

/// The trained U-Net with its optimiser and progress: fresh, or the newest checkpoint's with `resume`.
struct Policy<A: AutodiffBackend> {
    unet_dir: PathBuf,
    unet: UNet2DConditionModel<A>,
    optimizer: OptimizerAdaptor<AdamW, UNet2DConditionModel<A>, A>,
    state: TrainState,
    /// Full fine-tuning: a frozen copy of the initial U-Net.
    reference: Option<UNet2DConditionModel<A::InnerBackend>>,
}

fn load_policy<A: AutodiffBackend>(
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
            unet = trainable(
                match config.lora {
                    Some(_) => unet.load_lora(&dir.join("pytorch_lora_weights.safetensors"))?,
                    None => UNet2DConditionModel::from_dir(&dir.join("unet"), None, device)?,
                },
                lora,
            );
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

fn setup<A: TrainBackend>(
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

/// Attention on both training backends recomputes its scores in the backward pass instead of keeping the
/// L×L matrix on the tape (core's `nn::recomputed_attention`): the same gradients, memory linear in L.
fn enable_recomputed_attention() {
    recomputed_attention::enable::<Backend, NoCheckpointing>();
    recomputed_attention::enable::<Backend, BalancedCheckpointing>();
}

/// [`train_worker`] on plain autodiff, or, with `gradient_checkpointing`, on burn's balanced
/// checkpointing (memory-bound operations recomputed in the backward pass; the gradients are the same).
fn train_worker_with(config: &TrainConfig, resume: bool, worker: &Worker) -> CliResult {
    match config.gradient_checkpointing {
        true => train_worker::<Autodiff<Backend, BalancedCheckpointing>>(config, resume, worker),
        false => train_worker::<AD>(config, resume, worker),
    }
}

/// One worker's training loop; the main worker (rank 0) also logs, validates and writes checkpoints.
fn train_worker<A: TrainBackend>(config: &TrainConfig, resume: bool, worker: &Worker) -> CliResult {
    let device = &worker.device;
    let setup = setup(config, resume, device);
    if !worker.all_ok(setup.is_ok())? {
        return setup.map(|_| ()).and(Err(CliError::Runtime(
            "another training worker failed to start".into(),
        )));
    }
    let Setup {
        unet_dir,
        latent_shape,
        mut frozen,
        mut unet,
        mut optimizer,
        mut state,
        data,
        validation,
    } = setup?;
    let validate = |unet: &UNet2DConditionModel<A>,
                    frozen: &mut Frozen|
     -> CliResult<serde_json::Value> {
        let Some((data, draws)) = &validation else {
            return Ok(json!({}));
        };
        let (loss, accuracy) = evaluate(config, unet, frozen, data, *draws, latent_shape, device)?;
        Ok(json!({"val_loss": loss, "val_accuracy": accuracy}))
    };
    // The main worker's log, with the step-0 validation; the others wait for its verdict.
    let opened = match worker.is_main() {
        false => Ok(None),
        true => Log::open(config, &state).and_then(|mut log| {
            if state.step == 0 && validation.is_some() {
                let mut line = validate(&unet, &mut frozen)?;
                line["step"] = json!(0);
                log.write(&line)?;
            }
            Ok(Some(log))
        }),
    };
    if !worker.all_ok(opened.is_ok())? {
        return opened.and(Err(CliError::Runtime(
            "the main training worker failed to start".into(),
        )));
    }
    let mut log = opened?;
    let mut last_checkpoint = checkpoint::latest(&config.output)?.map(|(_, d)| d);
    sample_if_due(config, state.step, &unet, &mut frozen, worker)?;
    while state.step < config.steps {
        let started = Instant::now();
        let mut accumulator = GradientsAccumulator::new();
        let mut logged = (0.0, Diagnostics::default());
        for micro in 0..config.gradient_accumulation {
            let micro_step = (state.step * config.gradient_accumulation + micro) as u64;
            let selection = Selection::Random(config.batch_size * worker.world);
            let batch = sample_batch(
                config,
                &data,
                micro_step,
                selection,
                latent_shape,
                frozen.schedule.alphas_cumprod.len(),
                frozen.latent_cache.as_ref(),
            )?
            .shard(worker.rank, worker.world);
            state.skipped_pairs += batch.skipped;
            let output = pair_loss(
                config,
                &unet,
                &mut frozen,
                &batch,
                latent_shape,
                device,
                worker,
            )?;
            let d = &output.diagnostics;
            // Means over the workers, so every worker takes the same decision on a non-finite loss.
            let [loss, accuracy, g_w, g_l] = worker.mean(&[
                output.loss.clone().into_scalar().elem::<f64>(),
                d.implicit_accuracy,
                d.g_preferred,
                d.g_dispreferred,
            ])?[..] else {
                unreachable!("four values in, four out")
            };
            if !loss.is_finite() {
                let kept = last_checkpoint
                    .as_ref()
                    .map_or("none".to_string(), |d| d.display().to_string());
                return Err(CliError::Runtime(format!(
                    "step {}: the loss is {loss}; training stopped (last good checkpoint: {kept})",
                    state.step + 1
                )));
            }
            logged = (
                logged.0 + loss / config.gradient_accumulation as f64,
                Diagnostics {
                    implicit_accuracy: accuracy,
                    g_preferred: g_w,
                    g_dispreferred: g_l,
                    z: d.z,
                },
            );
            accumulator.accumulate(
                &unet,
                GradientsParams::from_grads(output.loss.backward(), &unet),
            );
        }
        let scale = 1.0 / config.gradient_accumulation as f64;
        let grads = worker.mean_gradients(accumulator.grads())?;
        let (grads, grad_norm) = params::scale_and_clip(grads, &unet, scale, config.max_grad_norm);
        let lr = config.learning_rate_at(state.step);
        unet = optimizer.step(lr, unet, grads);
        state.step += 1;
        sample_if_due(config, state.step, &unet, &mut frozen, worker)?;

        let checkpoint_now =
            state.step % config.checkpoint_every == 0 || state.step == config.steps;
        let Some(log) = &mut log else {
            if checkpoint_now && !worker.all_ok(true)? {
                return Err(CliError::Runtime("the main training worker failed".into()));
            }
            continue;
        };
        let images_per_s = (2 * config.batch_size * config.gradient_accumulation * worker.world)
            as f64
            / started.elapsed().as_secs_f64();
        let (loss, d) = logged;
        let mut line = json!({
            "step": state.step, "loss": loss, "implicit_accuracy": d.implicit_accuracy,
            "g_preferred": d.g_preferred, "g_dispreferred": d.g_dispreferred, "z": d.z,
            "lr": lr, "grad_norm": grad_norm, "images_per_s": images_per_s, "skipped_pairs": state.skipped_pairs,
        });
        log.bar.set_message(format!(
            "loss {loss:.4} acc {:.2} {images_per_s:.1} img/s",
            d.implicit_accuracy
        ));
        log.bar.inc(1);
        if !checkpoint_now {
            log.write(&line)?;
            continue;
        }
        let saved = (|| {
            if let serde_json::Value::Object(extra) = validate(&unet, &mut frozen)? {
                line.as_object_mut().expect("object").extend(extra);
            }
            log.write(&line)?;
            log.flush()?;
            checkpoint::save(
                config,
                &state,
                &unet,
                &optimizer,
                &unet_dir.join("config.json"),
            )
        })();
        worker.all_ok(saved.is_ok())?;
        last_checkpoint = Some(saved?);
    }
    if let Some(log) = log {
        log.bar.finish();
    }
    Ok(())
}

/// The `[samples]` grid of `step` when one is due, written by the main worker; every worker learns whether
/// it succeeded, so none waits for a failed one.
fn sample_if_due<A: TrainBackend>(
    config: &TrainConfig,
    step: usize,
    unet: &UNet2DConditionModel<A>,
    frozen: &mut Frozen,
    worker: &Worker,
) -> CliResult {
    let Some(samples) = config.samples.as_ref().filter(|s| s.due(step, config)) else {
        return Ok(());
    };
    let written = match worker.is_main() {
        true => samples::write_grid(config, samples, step, unet, frozen),
        false => Ok(()),
    };
    if !worker.all_ok(written.is_ok())? {
        return written.and(Err(CliError::Runtime(
            "the main training worker failed to write samples".into(),
        )));
    }
    Ok(())
}

/// The main worker's outputs: `metrics.jsonl` and the progress bar.
struct Log {
    path: PathBuf,
    file: std::fs::File,
    bar: ProgressBar,
}

impl Log {
    fn open(config: &TrainConfig, state: &TrainState) -> CliResult<Self> {
        std::fs::create_dir_all(&config.output)
            .map_err(|e| CliError::Runtime(format!("{}: {e}", config.output.display())))?;
        let path = config.output.join("metrics.jsonl");
        keep_metrics_before(&path, state.step)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| CliError::Runtime(format!("{}: {e}", path.display())))?;
        let bar = ProgressBar::new(config.steps as u64).with_position(state.step as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} eta {eta} {msg}")
                .expect("template"),
        );
        Ok(Self { path, file, bar })
    }

    fn write(&mut self, line: &serde_json::Value) -> CliResult {
        writeln!(self.file, "{line}")
            .map_err(|e| CliError::Runtime(format!("{}: {e}", self.path.display())))
    }

    fn flush(&mut self) -> CliResult {
        self.file
            .flush()
            .map_err(|e| CliError::Runtime(format!("{}: {e}", self.path.display())))
    }
}

/// Stable parameter ids (the optimiser state is keyed by them), then the trainable flags.
fn trainable<A: AutodiffBackend>(
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

/// Drops metric lines of steps after `step` (work a killed run did past its last checkpoint).
fn keep_metrics_before(path: &std::path::Path, step: usize) -> CliResult {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s as usize <= step)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(path, kept).map_err(|e| CliError::Runtime(format!("{}: {e}", path.display())))
}

/// Encodes images to latents, noises them (shared `t` and `ε` per pair), runs the policy and the
/// reference, and evaluates the configured objective.
fn pair_loss<A: TrainBackend>(
    config: &TrainConfig,
    unet: &UNet2DConditionModel<A>,
    frozen: &mut Frozen,
    batch: &Batch,
    [c, h, w]: [usize; 3],
    device: &Device,
    reduce: &dyn ReferencePointReduce,
) -> CliResult<ObjectiveOutput<A>> {
    if config.objective == ObjectiveKind::Dense {
        return dense::chain_loss(config, unet, frozen, batch, device);
    }
    let b = batch.captions.len();
    let posterior = Tensor::<Backend, 1>::from_floats(batch.posterior_noise.as_slice(), device)
        .reshape([2 * b, c, h, w]);
    let latents = batch_latents(config, frozen, batch, posterior, [c, h, w], device)?;
    let noise =
        Tensor::<Backend, 1>::from_floats(batch.noise.as_slice(), device).reshape([b, c, h, w]);
    let noise = Tensor::cat(vec![noise.clone(), noise], 0);
    let timesteps: Vec<usize> = batch
        .timesteps
        .iter()
        .chain(&batch.timesteps)
        .copied()
        .collect();
    let x_t = frozen
        .schedule
        .add_noise(latents, noise.clone(), &timesteps);

    let mut hidden = Vec::new();
    let mut pooled = Vec::new();
    for caption in &batch.captions {
        let embeds = frozen.caption(caption, device)?;
        hidden.push(embeds.hidden);
        pooled.extend(embeds.pooled);
    }
    let twice = |v: Vec<Tensor<Backend, 3>>| Tensor::cat([v.clone(), v].concat(), 0);
    let time_ids: Vec<f32> = batch
        .time_ids
        .iter()
        .chain(&batch.time_ids)
        .flatten()
        .copied()
        .collect();
    let cond = UNetConditioning {
        encoder_hidden_states: twice(hidden),
        text_embeds: (!pooled.is_empty())
            .then(|| Tensor::cat([pooled.clone(), pooled].concat(), 0)),
        time_ids: Some(
            Tensor::<Backend, 1>::from_floats(time_ids.as_slice(), device).reshape([2 * b, 6]),
        ),
    };
    let t = Tensor::<Backend, 1>::from_floats(
        timesteps
            .iter()
            .map(|&t| t as f32)
            .collect::<Vec<_>>()
            .as_slice(),
        device,
    );

    // Mixed precision: the U-Nets see the sample and the text in bf16 (timesteps and time_ids stay f32),
    // the policy through a bf16 copy of its f32 weights; the errors are taken in f32.
    let precision = config.precision;
    let x_t = Tensor::<A, 4>::from_inner(precision.input(x_t));
    let cond = to_autodiff(precision.conditioning(cond));
    let (t, noise) = (Tensor::from_inner(t), Tensor::from_inner(noise));
    let reference_out =
        precision
            .module(reference_unet(frozen, unet))
            .forward(x_t.clone(), t.clone(), &cond);
    let e_ref = per_sample_mse(precision.output(reference_out), noise.clone()).detach();
    let out = precision.module(unet.clone()).forward(x_t, t, &cond);
    let errors = PairErrors {
        e_theta: per_sample_mse(precision.output(out), noise),
        e_ref,
    };
    Ok(match config.objective {
        ObjectiveKind::Popalign => popalign_loss(&errors, &config.popalign, reduce),
        ObjectiveKind::PopalignPairwise => pairwise_loss(&errors, &batch.groups, config.beta),
        ObjectiveKind::Dpo => dpo_loss(&errors, config.beta),
        ObjectiveKind::Sft => sft_loss(&errors),
        ObjectiveKind::Dense | ObjectiveKind::Alignprop => {
            return Err(CliError::Runtime(
                "alignprop trains from prompts, not preference pairs".into(),
            ));
        }
    })
}

/// The batch's images → what the U-Net denoises: encoded in one VAE call (as without a cache), or,
/// with `cache_latents`, sampled from each image's cached posterior, encoding and caching the new ones.
fn batch_latents(
    config: &TrainConfig,
    frozen: &Frozen,
    batch: &Batch,
    posterior: Tensor<Backend, 4>,
    latent_shape: [usize; 3],
    device: &Device,
) -> CliResult<Tensor<Backend, 4>> {
    let r = config.resolution;
    let pixels = |rows: Vec<&[f32]>| {
        let n = rows.len();
        Tensor::<Backend, 1>::from_floats(rows.concat().as_slice(), device).reshape([n, 3, r, r])
    };
    let fresh: Vec<usize> = (0..batch.images.len())
        .filter(|&i| matches!(batch.images[i], ImageInput::Pixels { .. }))
        .collect();
    let Some(cache) = &frozen.latent_cache else {
        let all = batch.images.iter().filter_map(|i| match i {
            ImageInput::Pixels { pixels, .. } => Some(pixels.as_slice()),
            ImageInput::Cached(_) => None,
        });
        return Ok(frozen.image_space.encode(pixels(all.collect()), posterior));
    };
    let mut cached: Vec<Option<CachedLatent>> = batch
        .images
        .iter()
        .map(|i| match i {
            ImageInput::Cached(c) => Some(c.clone()),
            ImageInput::Pixels { .. } => None,
        })
        .collect();
    if !fresh.is_empty() {
        let rows = fresh
            .iter()
            .map(|&i| match &batch.images[i] {
                ImageInput::Pixels { pixels, .. } => pixels.as_slice(),
                ImageInput::Cached(_) => unreachable!("fresh images have pixels"),
            })
            .collect();
        let (mean, logvar) = frozen.image_space.moments(pixels(rows));
        let values = |t: Tensor<Backend, 4>| t.into_data().convert::<f32>().to_vec::<f32>();
        let (mean, logvar) = (values(mean), values(logvar));
        let n: usize = latent_shape.iter().product();
        for (k, &i) in fresh.iter().enumerate() {
            let (Ok(mean), Ok(logvar)) = (&mean, &logvar) else {
                return Err(CliError::Runtime(
                    "cannot read back the VAE posterior".into(),
                ));
            };
            let latent = CachedLatent {
                mean: mean[k * n..(k + 1) * n].to_vec(),
                logvar: logvar[k * n..(k + 1) * n].to_vec(),
                time_ids: batch.images[i].time_ids(),
            };
            if let Some(entry) = &batch.cache_entries[i] {
                cache
                    .write(entry, &latent, latent_shape)
                    .map_err(CliError::Runtime)?;
            }
            cached[i] = Some(latent);
        }
    }
    let cached: Vec<CachedLatent> = cached.into_iter().flatten().collect();
    let [c, h, w] = latent_shape;
    let stack = |pick: fn(&CachedLatent) -> &Vec<f32>| {
        let values: Vec<f32> = cached
            .iter()
            .flat_map(|l| pick(l).iter().copied())
            .collect();
        Tensor::<Backend, 1>::from_floats(values.as_slice(), device).reshape([
            cached.len(),
            c,
            h,
            w,
        ])
    };
    Ok(frozen
        .image_space
        .sample_posterior(stack(|l| &l.mean), stack(|l| &l.logvar), posterior))
}

/// The reference U-Net on the policy's autodiff backend, taking no gradient: full fine-tuning's frozen copy,
/// or the policy with its adapters off. It runs the policy's own autodiff ops rather than the inner
/// backend's: a backend may fuse an op on its inner side only (burn-flex's attention), and that alone kept
/// the two from tying at step 0 (in bf16 by more than the dense objective's log-ratio clip).
fn reference_unet<A: TrainBackend>(
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
fn to_autodiff<A: TrainBackend>(cond: UNetConditioning<Backend>) -> UNetConditioning<A> {
    UNetConditioning {
        encoder_hidden_states: Tensor::from_inner(cond.encoder_hidden_states),
        text_embeds: cond.text_embeds.map(Tensor::from_inner),
        time_ids: cond.time_ids.map(Tensor::from_inner),
    }
}

/// Mean loss and implicit accuracy over held-out pairs, `draws` fixed noise/timestep draws each.
fn evaluate<A: TrainBackend>(
    config: &TrainConfig,
    unet: &UNet2DConditionModel<A>,
    frozen: &mut Frozen,
    data: &PreferenceData,
    draws: usize,
    latent_shape: [usize; 3],
    device: &Device,
) -> CliResult<(f64, f64)> {
    let (mut loss, mut accuracy, mut n) = (0.0, 0.0, 0.0);
    for draw in 0..draws {
        for start in (0..data.pairs.len()).step_by(config.batch_size) {
            let pairs: Vec<usize> =
                (start..(start + config.batch_size).min(data.pairs.len())).collect();
            let weight = pairs.len() as f64;
            // Streams far above the training ones, fixed per (draw, pair), so every evaluation sees the same draws.
            let stream = (1u64 << 48) + (draw * data.pairs.len() + start) as u64;
            let batch = sample_batch(
                config,
                data,
                stream,
                Selection::Fixed(pairs),
                latent_shape,
                frozen.schedule.alphas_cumprod.len(),
                frozen.latent_cache.as_ref(),
            )?;
            // Validation runs on the main worker alone: its reference point is its own batch's.
            let out = pair_loss(
                config,
                unet,
                frozen,
                &batch,
                latent_shape,
                device,
                &SingleWorker,
            )?;
            loss += out.loss.into_scalar().elem::<f64>() * weight;
            accuracy += out.diagnostics.implicit_accuracy * weight;
            n += weight;
        }
    }
    Ok((loss / n, accuracy / n))
}
