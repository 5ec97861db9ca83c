//! `objective = "dense"`: temporally discounted DPO (`popalign_core::align::objectives::dense`, formula there) on
//! the recorded DDIM η = 1 chains of each pair's images (`trajectory.rs`). Each pair draws its M steps
//! from the discounted weights; the preferred and the dispreferred chain are evaluated at the same steps,
//! under the pair's caption and the guidance the chains were sampled with, by the policy and the reference.

use burn::prelude::*;
use popalign_core::align::objectives::ObjectiveOutput;
use popalign_core::align::objectives::dense::{
    dense_objective, sample_steps, scheduler_step_weights, transition_log_density,
};
use popalign_core::diffusion::pipeline::{PromptEmbeds, guidance_conditioning, sdxl_time_ids};
use popalign_core::diffusion::schedulers::DdimScheduler;
use popalign_core::models::unet::UNet2DConditionModel;

use super::batch::Batch;
use super::policy::{Frozen, TrainBackend, reference_unet, to_autodiff};
use super::trajectory::Trajectory;
use crate::backend::{Backend, Device};
use crate::error::{CliResult, input};

pub(super) fn chain_loss<A: TrainBackend>(
    config: &super::config::TrainConfig,
    unet: &UNet2DConditionModel<A>,
    frozen: &mut Frozen,
    batch: &Batch,
    device: &Device,
) -> CliResult<ObjectiveOutput<A>> {
    let b = batch.trajectories.len();
    // Rows of the objective: [preferred_1..B, dispreferred_1..B].
    let chains: Vec<&Trajectory> = batch
        .trajectories
        .iter()
        .map(|(w, _)| w)
        .chain(batch.trajectories.iter().map(|(_, l)| l))
        .collect();
    let scheduler = chain_scheduler(&chains, frozen)?;
    let weights = scheduler_step_weights(config.dense.gamma, &scheduler);
    let pair_steps: Vec<Vec<usize>> = batch
        .step_uniforms
        .iter()
        .map(|u| sample_steps(&weights, u))
        .collect();
    let m = config.dense.steps_per_update;
    let (mut x, mut x_next, mut steps) = (Vec::new(), Vec::new(), Vec::new());
    for (row, chain) in chains.iter().enumerate() {
        for &i in &pair_steps[row % b] {
            x.extend_from_slice(chain.latent(i));
            x_next.extend_from_slice(chain.latent(i + 1));
            steps.push(i);
        }
    }
    let [_, c, h, w] = chains[0].shape;
    let n = 2 * b * m;
    let latents =
        |v: Vec<f32>| Tensor::<Backend, 1>::from_floats(v.as_slice(), device).reshape([n, c, h, w]);
    let (x, x_next) = (latents(x), latents(x_next));

    let mut positive = Vec::new();
    for row in 0..2 * b {
        let embeds = frozen.caption(&batch.captions[row % b], device)?;
        positive.extend(std::iter::repeat_n(embeds, m));
    }
    let positive = PromptEmbeds::concat(&positive.iter().collect::<Vec<_>>());
    let negative = match frozen.zero_negative {
        true => PromptEmbeds {
            hidden: positive.hidden.zeros_like(),
            pooled: positive.pooled.as_ref().map(|p| p.zeros_like()),
        },
        false => {
            let empty = frozen.caption("", device)?;
            PromptEmbeds::concat(&vec![&empty; n])
        }
    };
    let factor = frozen.image_space.scale_factor();
    let size = (h * factor, w * factor);
    let time_ids = sdxl_time_ids::<Backend>(size, (0, 0), size, device).repeat_dim(0, n);
    let cond = guidance_conditioning(&positive, &negative, time_ids);
    let guidance = chains[0].guidance_scale;

    let cond = to_autodiff(cond);
    let (x, x_next) = (Tensor::<A, 4>::from_inner(x), Tensor::from_inner(x_next));
    let log_p_ref = transition_log_density(
        &reference_unet(frozen, unet),
        config.precision,
        &scheduler,
        &cond,
        x.clone(),
        x_next.clone(),
        &steps,
        guidance,
    )
    .detach();
    let log_p_theta = transition_log_density(
        unet,
        config.precision,
        &scheduler,
        &cond,
        x,
        x_next,
        &steps,
        guidance,
    );
    Ok(dense_objective(
        log_p_theta.reshape([2 * b, m]),
        log_p_ref.reshape([2 * b, m]),
        &config.dense,
    ))
}

/// The DDIM scheduler the chains were sampled with. Every chain of the batch must share its steps, η and
/// guidance, and the model's scheduler must give the same timesteps for that many steps.
fn chain_scheduler(chains: &[&Trajectory], frozen: &Frozen) -> CliResult<DdimScheduler> {
    let first = chains[0];
    for other in &chains[1..] {
        if other.shape != first.shape
            || other.timesteps != first.timesteps
            || other.eta != first.eta
            || other.guidance_scale != first.guidance_scale
        {
            return Err(input(format!(
                "{} and {}: chains sampled differently (shape, timesteps, eta or guidance) cannot be \
                 compared",
                first.path.display(),
                other.path.display()
            )));
        }
    }
    if first.eta <= 0.0 {
        return Err(input(format!(
            "{}: sampled with eta = {}; a deterministic step has no density (dense needs eta > 0)",
            first.path.display(),
            first.eta
        )));
    }
    let scheduler = DdimScheduler::new(&frozen.scheduler, first.steps(), first.eta);
    if scheduler.timesteps != first.timesteps {
        return Err(input(format!(
            "{}: sampled at timesteps {:?}, but this model's DDIM schedule for {} steps is {:?}",
            first.path.display(),
            first.timesteps,
            first.steps(),
            scheduler.timesteps
        )));
    }
    Ok(scheduler)
}
