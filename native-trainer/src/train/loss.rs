//! One batch's loss: latents, noise, the policy and the reference, the objective; and held-out evaluation.

use burn::prelude::*;
use popalign_core::align::objectives::dpo::dpo_loss;
use popalign_core::align::objectives::pairwise::pairwise_loss;
use popalign_core::align::objectives::popalign::{
    ReferencePointReduce, SingleWorker, popalign_loss,
};
use popalign_core::align::objectives::sft::sft_loss;
use popalign_core::align::objectives::{
    ObjectiveKind, ObjectiveOutput, PairErrors, per_sample_mse,
};
use popalign_core::models::unet::{UNet2DConditionModel, UNetConditioning};

use super::batch::{Batch, ImageInput, Selection, sample_batch};
use super::config::TrainConfig;
use super::data::PreferenceData;
use super::dense;
use super::latent_cache::CachedLatent;
use super::policy::{Frozen, TrainBackend, reference_unet, to_autodiff};
use crate::backend::{Backend, Device};
use crate::error::{CliError, CliResult};

/// Encodes images to latents, noises them (shared `t` and `ε` per pair), runs the policy and the
/// reference, and evaluates the configured objective.
pub(super) fn pair_loss<A: TrainBackend>(
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
pub(super) fn batch_latents(
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

/// Mean loss and implicit accuracy over held-out pairs, `draws` fixed noise/timestep draws each.
pub(super) fn evaluate<A: TrainBackend>(
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
