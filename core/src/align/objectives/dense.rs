//! Temporally discounted (dense-reward) DPO (Yang et al. 2024, as its code estimates it):
//!
//! ```text
//! w_t   = γ^t / Σ_t' γ^t'                       (t = 0 is the first, noisiest step; γ = 0.9)
//! t_m   ~ Categorical(w), m = 1..M              (shared by the compared trajectories)
//! logit = C · mean_m clip(log π_θ(x_{t_m+1} | x_{t_m}) − log π_ref(…), −ε_clip, +ε_clip)
//! L     = mean_pairs softplus(−(logit_w − logit_l))       (C = 12.5)
//! ```
//!
//! `log π(x_{t+1} | x_t, c)` is the per-element mean Gaussian log-density of a recorded DDIM η > 0 step,
//! with the mean from the guided noise prediction `ε̂ = ε_u + s·(ε_c − ε_u)` of the model under evaluation
//! ([`transition_log_density`], [`crate::diffusion::schedulers::ddim::gaussian_log_density`]). A step of zero
//! variance (the last one when the scheduler sets `set_alpha_to_one`) has no density and is never drawn.

use burn::prelude::*;

use super::{Diagnostics, ObjectiveOutput, softplus, to_vec};
use crate::diffusion::precision::Precision;
use crate::diffusion::schedulers::DdimScheduler;
use crate::diffusion::schedulers::ddim::gaussian_log_density;
use crate::models::unet::{UNet2DConditionModel, UNetConditioning};

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DenseConfig {
    #[serde(default = "gamma")]
    pub gamma: f64,
    #[serde(default = "coefficient")]
    pub coefficient: f64,
    #[serde(default = "clip")]
    pub log_ratio_clip: f64,
    /// M: steps sampled per update.
    #[serde(default = "three")]
    pub steps_per_update: usize,
}

fn gamma() -> f64 {
    0.9
}
fn coefficient() -> f64 {
    12.5
}
fn clip() -> f64 {
    1e-4
}
fn three() -> usize {
    3
}

impl Default for DenseConfig {
    fn default() -> Self {
        Self {
            gamma: gamma(),
            coefficient: coefficient(),
            log_ratio_clip: clip(),
            steps_per_update: three(),
        }
    }
}

/// `w_t = γ^t / Σ γ^t'` for `t = 0..steps`.
pub fn step_weights(gamma: f64, steps: usize) -> Vec<f64> {
    normalised((0..steps).map(|t| gamma.powi(t as i32)).collect())
}

/// [`step_weights`] over the scheduler's steps, with the steps of zero variance left out.
pub fn scheduler_step_weights(gamma: f64, scheduler: &DdimScheduler) -> Vec<f64> {
    let weights = step_weights(gamma, scheduler.timesteps.len());
    normalised(
        weights
            .into_iter()
            .enumerate()
            .map(|(i, w)| if scheduler.std(i) > 0.0 { w } else { 0.0 })
            .collect(),
    )
}

fn normalised(raw: Vec<f64>) -> Vec<f64> {
    let total: f64 = raw.iter().sum();
    raw.into_iter().map(|w| w / total).collect()
}

/// Draws `m` step indices from the discounted weights, given `m` uniforms in [0, 1).
pub fn sample_steps(weights: &[f64], uniforms: &[f64]) -> Vec<usize> {
    uniforms
        .iter()
        .map(|&u| {
            let mut acc = 0.0;
            weights
                .iter()
                .position(|w| {
                    acc += w;
                    u < acc
                })
                .unwrap_or(weights.len() - 1)
        })
        .collect()
}

/// Loss from `[2B, M]` log-densities under θ and the reference, laid out `[preferred_1..B,
/// dispreferred_1..B]` (the winner and loser trajectory of each pair), averaged over the B pairs.
pub fn dense_loss<B: Backend>(
    log_p_theta: Tensor<B, 2>,
    log_p_ref: Tensor<B, 2>,
    config: &DenseConfig,
) -> Tensor<B, 1> {
    let (w, l) = trajectory_logits(log_p_theta, log_p_ref, config);
    softplus((w - l).neg()).mean()
}

/// [`dense_loss`] with its diagnostics: the implicit accuracy is the share of pairs with
/// `logit_w > logit_l`, and the mean logits stand where the other objectives report the mean `g`.
pub fn dense_objective<B: Backend>(
    log_p_theta: Tensor<B, 2>,
    log_p_ref: Tensor<B, 2>,
    config: &DenseConfig,
) -> ObjectiveOutput<B> {
    let (w, l) = trajectory_logits(log_p_theta, log_p_ref, config);
    let (w_values, l_values) = (to_vec(w.clone().detach()), to_vec(l.clone().detach()));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let wins = w_values
        .iter()
        .zip(&l_values)
        .filter(|(a, b)| a > b)
        .count();
    ObjectiveOutput {
        loss: softplus((w - l).neg()).mean(),
        diagnostics: Diagnostics {
            implicit_accuracy: wins as f64 / w_values.len() as f64,
            g_preferred: mean(&w_values),
            g_dispreferred: mean(&l_values),
            z: None,
        },
    }
}

/// `(logit_w, logit_l)`, each `[B]`.
fn trajectory_logits<B: Backend>(
    log_p_theta: Tensor<B, 2>,
    log_p_ref: Tensor<B, 2>,
    config: &DenseConfig,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let [rows, _] = log_p_theta.dims();
    let b = rows / 2;
    let ratio =
        (log_p_theta - log_p_ref.detach()).clamp(-config.log_ratio_clip, config.log_ratio_clip);
    let logits = ratio.mean_dim(1).reshape([rows]) * config.coefficient;
    (logits.clone().narrow(0, 0, b), logits.narrow(0, b, b))
}

/// `log π(x_next | x, c)` per row `[N]` of recorded DDIM transitions from step `steps[n]`, under guidance
/// `s`: one U-Net call on `[x; x]` with `cond` from [`crate::diffusion::pipeline::guidance_conditioning`] (negatives
/// first), `ε̂ = ε_u + s·(ε_c − ε_u)`, the DDIM mean, and the Gaussian log-density of `x_next`. The U-Net runs
/// in `precision` ([`Precision::module`]); the guidance and the density are taken in f32.
#[allow(clippy::too_many_arguments)]
pub fn transition_log_density<B: Backend>(
    unet: &UNet2DConditionModel<B>,
    precision: Precision,
    scheduler: &DdimScheduler,
    cond: &UNetConditioning<B>,
    x: Tensor<B, 4>,
    x_next: Tensor<B, 4>,
    steps: &[usize],
    guidance_scale: f64,
) -> Tensor<B, 1> {
    let device = x.device();
    let t: Vec<f32> = steps
        .iter()
        .chain(steps)
        .map(|&i| scheduler.timesteps[i] as f32)
        .collect();
    let out = precision.module(unet.clone()).forward(
        precision.input(Tensor::cat(vec![x.clone(), x.clone()], 0)),
        Tensor::from_floats(t.as_slice(), &device),
        &precision.conditioning(cond.clone()),
    );
    let out = precision.output(out);
    let [uncond, text] = out
        .chunk(2, 0)
        .try_into()
        .expect("guidance batch splits in two");
    let guided = uncond.clone() + (text - uncond) * guidance_scale;
    let (mean, std) = scheduler.step_mean_std_rows(guided, steps, x);
    gaussian_log_density(x_next, mean, &std)
}
