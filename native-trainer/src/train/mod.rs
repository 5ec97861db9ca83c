//! `popalign train --config train.toml [--resume]`: preference fine-tuning of the U-Net (LoRA or full)
//! with PopAlign, Diffusion-DPO, the pairwise bound or SFT, on one device or data-parallel on several;
//! or reward fine-tuning with AlignProp (`alignprop.rs`, one device).

mod alignprop;
pub(crate) mod batch;
pub(crate) mod checkpoint;
pub mod config;
mod data;
mod dense;
pub mod export;
mod latent_cache;
pub(crate) mod launch;
mod log;
mod loss;
mod parallel;
pub(crate) mod params;
mod policy;
mod rendezvous;
mod ring;
pub(crate) mod samples;
mod setup;
mod threads;
pub(crate) mod trajectory;

use std::time::Instant;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, NoCheckpointing};
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::DType;
use popalign_core::align::objectives::{Diagnostics, ObjectiveKind};
use popalign_core::diffusion::precision::Precision;
use popalign_core::models::unet::UNet2DConditionModel;
use popalign_core::nn::recomputed_attention;
use serde_json::json;

use crate::backend::Backend;
use crate::error::{CliError, CliResult, input};
use batch::{Selection, sample_batch};
use config::TrainConfig;
use launch::Launch;
use log::Log;
use loss::{evaluate, pair_loss};
use parallel::Worker;
use policy::{Frozen, TrainBackend};
use rendezvous::Liveness;
use ring::Ring;
use setup::{Setup, setup};
use threads::Group;

type AD = Autodiff<Backend>;

/// Trains as `config` says (its paths absolute, or relative to the working directory), in this process
/// alone or as one process of a multi-process run when a launcher's variables say so (`launch.rs`).
pub fn train_with(config: &TrainConfig, resume: bool) -> CliResult {
    config.validate().map_err(input)?;
    let launch = Launch::from_env()?;
    let mut config = config.clone();
    config.processes = launch.as_ref().map_or(1, |l| l.processes);
    let Some(launch) = launch else {
        return train_here(&config, resume, None);
    };
    if config.objective == ObjectiveKind::Alignprop {
        return Err(input(format!(
            "objective = \"alignprop\" trains on one device, and the launcher asks for {} processes",
            launch.processes
        )));
    }
    if config.devices.len() > 1 {
        return Err(input(format!(
            "under a launcher every process trains on one device, and this one lists {}: start one \
             process per device (torchrun --nproc-per-node)",
            config.devices.join(",")
        )));
    }
    if config.devices.is_empty() && crate::backend::NAME == "cuda" {
        config.devices = vec![format!("cuda:{}", launch.local_rank)];
    }
    let (listener, own) = ring::listen(&launch)?;
    let (liveness, addresses) = Liveness::start(&launch, own)?;
    let result = Ring::connect(listener, &launch, &addresses)
        .and_then(|ring| train_here(&config, resume, Some(ring)));
    liveness.finish(result.is_ok());
    result
}

/// This process's share of the run: one worker per device, each on a thread of its own.
fn train_here(config: &TrainConfig, resume: bool, ring: Option<Ring>) -> CliResult {
    enable_recomputed_attention();
    let devices = config.parsed_devices()?;
    let local_world = devices.len();
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
    if let Some(ring) = ring {
        return train_worker_with(config, resume, &Worker::across(ring, devices[0].clone()));
    }
    if local_world == 1 {
        return train_worker_with(config, resume, &Worker::alone(devices[0].clone()));
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = Group::members(local_world)
            .into_iter()
            .zip(devices)
            .map(|(member, device)| {
                scope.spawn(move || {
                    train_worker_with(config, resume, &Worker::thread(member, device))
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
    // Every worker must resume from the same checkpoint: processes on several machines only do when the
    // output folder is one shared folder.
    if !worker.all_ok(worker.mean(&[state.step as f64])?[0] == state.step as f64)? {
        return Err(input(format!(
            "worker {} starts at step {} and another at a different step: every process must see the same \
             output folder ({}), a shared filesystem across machines",
            worker.rank,
            state.step,
            config.output.display()
        )));
    }
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
        let grads = worker.mean_gradients(accumulator.grads(), &unet)?;
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
