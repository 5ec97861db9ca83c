//! `objective = "alignprop"`: reward fine-tuning by backpropagation through the sampler (docs/papers.md §4,
//! `popalign_core::align::objectives::alignprop`). Each micro-batch draws `batch_size` prompts, samples them with
//! DDIM and guidance through the LoRA U-Net, keeps the gradient of the last K steps, decodes, and
//! minimises the configured mixture of reward losses. The optimiser, LoRA, clipping, learning-rate
//! schedule, checkpoints, resume and `metrics.jsonl` are the preference trainer's.
//!
//! Gradient checkpointing: burn 0.21 offers it only per backend type (`Autodiff<B, BalancedCheckpointing>`
//! recomputes memory-bound operations in the backward pass), not per U-Net call as AlignProp's
//! `torch.utils.checkpoint` does. It gives the same gradients (`core/tests/suite/alignprop.rs`), but measured on
//! one AlignProp step (bench/NOTES.md) it raised peak memory (971 against 468 MiB at K = 1, with the same
//! ~90 MiB per gradient-carrying step), so the trainer uses plain autodiff. What bounds memory here is the
//! truncation: the steps before the last K run off the tape.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use popalign_core::align::objectives::alignprop::{
    DifferentiableReward, PixelMeanReward, RewardSpec, Trajectory, alignprop_loss, sample_truncated,
};
use popalign_core::diffusion::pipeline::{
    ModelIndex, PromptEmbeds, TextConditioner, sdxl_time_ids,
};
use popalign_core::diffusion::schedulers::{DdimScheduler, SchedulerConfig};
use popalign_core::eval::classify::aesthetic::AestheticScorer;
use popalign_core::eval::classify::clip_scores::{ClipScoreKind, ClipScorer};
use popalign_core::eval::classify::hps::HpsScorer;
use popalign_core::eval::classify::image_reward::ImageRewardScorer;
use popalign_core::io::load::read_config;
use popalign_core::models::unet::UNetConfig;
use popalign_core::models::vae::ImageSpace;
use rand::Rng;
use rand_distr::StandardNormal;
use serde_json::json;

use super::batch::rng_for;
use super::config::{AlignPropConfig, REWARDS, TrainConfig};
use super::log::Log;
use super::policy::{Policy, load_policy};
use super::{checkpoint, params};
use crate::backend::{Backend, Device};
use crate::error::{CliError, CliResult, input};

/// The autodiff backend of AlignProp: the preference trainer's (plain autodiff; see the module notes).
pub type AP = super::AD;

/// The registry of differentiable rewards. The scorers' weights are frozen (`no_grad`): the gradient flows
/// through them to the images, never into them.
pub fn build_reward(
    spec: &RewardSpec,
    device: &Device,
) -> CliResult<Box<dyn DifferentiableReward<AP>>> {
    let path = |value: &Option<std::path::PathBuf>, key: &str| {
        value.clone().ok_or_else(|| {
            input(format!(
                "reward {:?} in [[alignprop.rewards]] needs `{key}`",
                spec.name
            ))
        })
    };
    let clip = |kind| -> CliResult<Box<dyn DifferentiableReward<AP>>> {
        let mut scorer = ClipScorer::<AP>::from_dir(&path(&spec.model, "model")?, kind, device)?;
        scorer.model = scorer.model.no_grad();
        Ok(Box::new(scorer))
    };
    match spec.name.as_str() {
        "pixel-mean" => Ok(Box::new(PixelMeanReward::default())),
        "aesthetic" => {
            let mlp = path(&spec.model, "model")?;
            let mut scorer =
                AestheticScorer::<AP>::load(&mlp, &path(&spec.clip_model, "clip_model")?, device)?;
            scorer.clip = scorer.clip.no_grad();
            scorer.mlp = scorer.mlp.no_grad();
            Ok(Box::new(scorer))
        }
        "hps" => {
            let mut scorer = HpsScorer::<AP>::from_dir(&path(&spec.model, "model")?, device)?;
            scorer.model = scorer.model.no_grad();
            Ok(Box::new(scorer))
        }
        "imagereward" => {
            let mut scorer =
                ImageRewardScorer::<AP>::from_dir(&path(&spec.model, "model")?, device)?;
            scorer.model = scorer.model.no_grad();
            Ok(Box::new(scorer))
        }
        "pickscore" => clip(ClipScoreKind::PickScore),
        "clip" => clip(ClipScoreKind::ClipScore),
        other => Err(input(format!(
            "unknown reward {other:?} in [[alignprop.rewards]] (known: {})",
            REWARDS.join(", ")
        ))),
    }
}

/// Prompts from a text file (one a line, blank lines skipped) or a CSV with a `prompt` column.
pub fn load_prompts(path: &Path) -> CliResult<Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| input(format!("{}: {e}", path.display())))?;
    let prompts: Vec<String> = if path.extension().is_some_and(|e| e == "csv") {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| input(format!("{}: {e}", path.display())))?;
        let column = headers
            .iter()
            .position(|h| h == "prompt")
            .ok_or_else(|| input(format!("{}: no \"prompt\" column", path.display())))?;
        reader
            .records()
            .map(|r| {
                r.map(|r| r.get(column).unwrap_or_default().to_string())
                    .map_err(|e| input(format!("{}: {e}", path.display())))
            })
            .collect::<CliResult<_>>()?
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    if prompts.is_empty() {
        return Err(input(format!("{}: no prompts", path.display())));
    }
    Ok(prompts)
}

/// A prompt's positive and negative embeddings.
type GuidancePair = (PromptEmbeds<Backend>, PromptEmbeds<Backend>);

/// What stays fixed during training: text encoders, the frozen VAE (on the autodiff backend, so the
/// gradient flows through it), the sampler, the rewards and the prompts.
struct Fixed {
    text: TextConditioner<Backend>,
    negative: Option<String>,
    /// An absent negative prompt means zero embeddings (SDXL's `force_zeros_for_empty_prompt`).
    force_zeros: bool,
    image_space: ImageSpace<AP>,
    scheduler: DdimScheduler,
    rewards: Vec<(RewardSpec, Box<dyn DifferentiableReward<AP>>)>,
    prompts: Vec<String>,
    latent_shape: [usize; 3],
    embeds: HashMap<String, GuidancePair>,
}

fn fixed(
    config: &TrainConfig,
    ap: &AlignPropConfig,
    sdxl: bool,
    device: &Device,
) -> CliResult<Fixed> {
    let rewards = ap
        .rewards
        .iter()
        .map(|spec| Ok((spec.clone(), build_reward(spec, device)?)))
        .collect::<CliResult<Vec<_>>>()?;
    let prompts = load_prompts(&ap.prompts)?;
    let variant = config.variant.as_deref();
    let unet_config: UNetConfig = read_config(&config.unet_dir().join("config.json"))?;
    let scheduler: SchedulerConfig =
        read_config(&config.model.join("scheduler").join("scheduler_config.json"))?;
    let index = ModelIndex::read(&config.model)?;
    let image_space =
        ImageSpace::<AP>::from_root(&config.model, index.pixel_space(), variant, device)?.no_grad();
    let factor = image_space.scale_factor();
    Ok(Fixed {
        force_zeros: index.force_zeros_for_empty_prompt.unwrap_or(sdxl),
        text: TextConditioner::from_dir(&config.model, variant, sdxl, device)?,
        negative: ap.negative_prompt.clone(),
        image_space,
        scheduler: DdimScheduler::new(&scheduler, ap.sampling_steps, ap.eta),
        rewards,
        prompts,
        latent_shape: [
            unet_config.in_channels,
            config.resolution / factor,
            config.resolution / factor,
        ],
        embeds: HashMap::new(),
    })
}

/// Trains on one device as `config` says.
pub fn train(config: &TrainConfig, resume: bool, devices: &[Device]) -> CliResult {
    let ap = config
        .alignprop
        .as_ref()
        .ok_or_else(|| input("objective \"alignprop\" needs an [alignprop] table".to_string()))?;
    let [device] = devices else {
        return Err(input(format!(
            "alignprop trains on one device ({} given)",
            devices.len()
        )));
    };
    let Policy {
        unet_dir,
        mut unet,
        mut optimizer,
        mut state,
        ..
    } = load_policy::<AP>(config, resume, device)?;
    let mut fixed = fixed(config, ap, unet.needs_added_conditioning(), device)?;
    let mut log = Log::open(config, &state)?;
    while state.step < config.steps {
        let started = Instant::now();
        let mut accumulator = GradientsAccumulator::new();
        let mut logged = StepLog::default();
        for micro in 0..config.gradient_accumulation {
            let micro_step = (state.step * config.gradient_accumulation + micro) as u64;
            let (loss, micro_log) =
                micro_batch_loss(config, ap, &unet, &mut fixed, micro_step, device)?;
            if !micro_log.loss.is_finite() {
                return Err(CliError::Runtime(format!(
                    "step {}: the loss is {}; training stopped",
                    state.step + 1,
                    micro_log.loss
                )));
            }
            logged.add(&micro_log, config.gradient_accumulation);
            accumulator.accumulate(&unet, GradientsParams::from_grads(loss.backward(), &unet));
        }
        let scale = 1.0 / config.gradient_accumulation as f64;
        let (grads, grad_norm) =
            params::scale_and_clip(accumulator.grads(), &unet, scale, config.max_grad_norm);
        let lr = config.learning_rate_at(state.step);
        unet = optimizer.step(lr, unet, grads);
        state.step += 1;
        let images_per_s = (config.batch_size * config.gradient_accumulation) as f64
            / started.elapsed().as_secs_f64();
        log.write(&json!({
            "step": state.step, "loss": logged.loss, "reward_mean": logged.rewards.first().map(|r| r.1),
            "rewards": logged.rewards.iter().map(|(n, m)| json!({"name": n, "mean": m})).collect::<Vec<_>>(),
            "grad_steps": logged.grad_steps, "lr": lr, "grad_norm": grad_norm, "images_per_s": images_per_s,
        }))?;
        log.bar.set_message(format!(
            "loss {:.4} reward {:.4}",
            logged.loss,
            logged.rewards.first().map_or(f64::NAN, |r| r.1)
        ));
        log.bar.inc(1);
        if state.step % config.checkpoint_every == 0 || state.step == config.steps {
            log.flush()?;
            checkpoint::save(
                config,
                &state,
                &unet,
                &optimizer,
                &unet_dir.join("config.json"),
            )?;
        }
    }
    log.bar.finish();
    Ok(())
}

/// Means over a step's micro-batches.
#[derive(Default)]
struct StepLog {
    loss: f64,
    rewards: Vec<(String, f64)>,
    /// K: U-Net calls with gradient, averaged over micro-batches.
    grad_steps: f64,
}

impl StepLog {
    fn add(&mut self, micro: &StepLog, micro_batches: usize) {
        let w = 1.0 / micro_batches as f64;
        self.loss += micro.loss * w;
        self.grad_steps += micro.grad_steps * w;
        if self.rewards.is_empty() {
            self.rewards = micro
                .rewards
                .iter()
                .map(|(n, _)| (n.clone(), 0.0))
                .collect();
        }
        for (total, (_, mean)) in self.rewards.iter_mut().zip(&micro.rewards) {
            total.1 += mean * w;
        }
    }
}

/// One micro-batch: prompts, starting noise and the truncation point from the micro-step's own random
/// stream (so a resumed run draws what an uninterrupted one would), then the sampler and the loss.
fn micro_batch_loss(
    config: &TrainConfig,
    ap: &AlignPropConfig,
    unet: &popalign_core::models::unet::UNet2DConditionModel<AP>,
    fixed: &mut Fixed,
    micro_step: u64,
    device: &Device,
) -> CliResult<(Tensor<AP, 1>, StepLog)> {
    let mut rng = rng_for(config.seed, micro_step);
    let b = config.batch_size;
    let prompts: Vec<String> = (0..b)
        .map(|_| fixed.prompts[rng.random_range(0..fixed.prompts.len())].clone())
        .collect();
    let (positive, negative) = stacked_embeds(fixed, &prompts, device)?;
    let [c, h, w] = fixed.latent_shape;
    let normals = |rng: &mut rand_chacha::ChaCha8Rng| -> Tensor<Backend, 4> {
        let values: Vec<f32> = (0..b * c * h * w)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect();
        Tensor::<Backend, 1>::from_floats(values.as_slice(), device).reshape([b, c, h, w])
    };
    let noise = normals(&mut rng);
    let steps = fixed.scheduler.timesteps.len();
    let first_grad_step = ap
        .truncation
        .first_grad_step(steps, ap.k, &mut || rng.random::<f64>());
    let size = (config.resolution, config.resolution);
    let trajectory = Trajectory {
        positive: &positive,
        negative: &negative,
        time_ids: sdxl_time_ids::<Backend>(size, (0, 0), size, device).repeat_dim(0, b),
        noise,
        scheduler: &fixed.scheduler,
        guidance_scale: ap.guidance_scale,
        first_grad_step,
        precision: config.precision,
    };
    let eta = ap.eta;
    let latents = sample_truncated(unet, &trajectory, &mut |_| {
        (eta > 0.0).then(|| normals(&mut rng))
    });
    let out = alignprop_loss(&fixed.image_space, latents, &prompts, &fixed.rewards);
    let loss = out.loss.clone().into_scalar().elem::<f64>();
    Ok((
        out.loss,
        StepLog {
            loss,
            rewards: out
                .rewards
                .into_iter()
                .map(|(name, r)| (name, r.mean().into_scalar().elem::<f64>()))
                .collect(),
            grad_steps: (steps - first_grad_step) as f64,
        },
    ))
}

/// Positive and negative embeddings of the batch's prompts, `[N, …]` each (encoded once per prompt).
fn stacked_embeds(
    fixed: &mut Fixed,
    prompts: &[String],
    device: &Device,
) -> CliResult<GuidancePair> {
    for prompt in prompts {
        if !fixed.embeds.contains_key(prompt) {
            let negative = fixed.negative.as_deref();
            let pair = guidance_pair(&fixed.text, prompt, negative, fixed.force_zeros, device)?;
            fixed.embeds.insert(prompt.clone(), pair);
        }
    }
    let stack = |pick: fn(&GuidancePair) -> &PromptEmbeds<Backend>| {
        let sides: Vec<&PromptEmbeds<Backend>> =
            prompts.iter().map(|p| pick(&fixed.embeds[p])).collect();
        PromptEmbeds::concat(&sides)
    };
    Ok((stack(|pair| &pair.0), stack(|pair| &pair.1)))
}

/// The prompt's embeddings and the negative side: the encoded negative prompt, or the model's default
/// (zeros where `force_zeros_for_empty_prompt`, as SDXL; the empty prompt otherwise).
fn guidance_pair(
    text: &TextConditioner<Backend>,
    prompt: &str,
    negative: Option<&str>,
    force_zeros: bool,
    device: &Device,
) -> CliResult<GuidancePair> {
    let positive = text.encode(prompt, device).map_err(CliError::Runtime)?;
    let negative = match negative {
        None if force_zeros => PromptEmbeds {
            hidden: positive.hidden.zeros_like(),
            pooled: positive.pooled.as_ref().map(|p| p.zeros_like()),
        },
        other => text
            .encode(other.unwrap_or(""), device)
            .map_err(CliError::Runtime)?,
    };
    Ok((positive, negative))
}
