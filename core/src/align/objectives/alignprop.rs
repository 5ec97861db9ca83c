//! AlignProp (Prabhudesai et al. 2023; docs/papers.md §4): backpropagate a differentiable reward of the decoded
//! image through the sampling chain into the LoRA U-Net.
//!
//! ```text
//! x_S ~ N(0, I);   for i = 0..S:  ε̂_i = ε_u + s·(ε_c − ε_u)   (one U-Net call on [negative, positive])
//!                                 x_{i+1} = DDIM(ε̂_i, i, x_i; η)
//! image = clamp(VAEdec(x_S)/2 + ½, 0, 1)
//! L     = Σ_j w_j · mean_n ℓ_j(r_j(image_n, c_n))
//! ℓ = |r − target|  ("abs-target", AlignProp's aesthetic loss, target 10)
//!   | −r            ("neg")
//!   | 1 − r         ("one-minus", AlignProp's HPS loss when r is a cosine similarity)
//! ```
//!
//! Truncated backprop: only steps `i ≥ t_b` carry gradient, so `K = S − t_b` U-Net calls sit on the tape.
//! The steps before `t_b` run on the inner (non-autodiff) backend: the starting noise has no gradient and
//! their noise predictions are detached in AlignProp, so nothing before `t_b` can carry gradient anyway, and
//! running them off the tape keeps their activations out of memory. Peak memory therefore grows with K, not S.
//! `t_b` is fixed (`S − k`), or drawn once per trajectory as the current AlignProp release does
//! ([`Truncation`]).
//!
//! Gradient checkpointing is a property of the autodiff backend in burn 0.21
//! (`Autodiff<B, BalancedCheckpointing>` recomputes memory-bound operations in the backward pass instead of
//! keeping their outputs); it applies to every operation, so to every U-Net call, and cannot be chosen per
//! call. Everything here is generic over the autodiff backend, so the caller chooses; both strategies give
//! the same gradients (`core/tests/suite/alignprop.rs`). The trainer measured balanced checkpointing as costlier
//! in peak memory than plain autodiff for AlignProp (bench/NOTES.md) and uses plain autodiff.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::diffusion::pipeline::{PromptEmbeds, guidance_conditioning, guided_step};
use crate::diffusion::precision::Precision;
use crate::diffusion::schedulers::DdimScheduler;
use crate::models::unet::UNet2DConditionModel;
use crate::models::vae::ImageSpace;

/// A reward the gradient can flow through: images `[N, 3, H, W]` in [0, 1] and their prompts → `[N]`.
pub trait DifferentiableReward<B: Backend> {
    fn name(&self) -> String;
    fn reward(&self, images: Tensor<B, 4>, prompts: &[String]) -> Tensor<B, 1>;
}

/// How a reward becomes a loss (see the module formula).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RewardLossMode {
    AbsTarget,
    Neg,
    OneMinus,
}

/// One `[[alignprop.rewards]]` entry: which reward, its weight in the mixture, and its loss form.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSpec {
    pub name: String,
    #[serde(default = "one")]
    pub weight: f64,
    pub loss: RewardLossMode,
    /// The target of `abs-target` (AlignProp: 10 for the aesthetic score); only there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// The scorer's weights: a `CLIPModel` folder (`pickscore`, `clip`), an open_clip folder (`hps`), the
    /// predictor's safetensors (`aesthetic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<std::path::PathBuf>,
    /// The CLIP ViT-L/14 `CLIPModel` folder the aesthetic predictor reads embeddings from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_model: Option<std::path::PathBuf>,
}

fn one() -> f64 {
    1.0
}

impl RewardSpec {
    pub fn validate(&self) -> Result<(), String> {
        match (self.loss, self.target) {
            (RewardLossMode::AbsTarget, None) => Err(format!(
                "reward {:?}: loss \"abs-target\" needs a target",
                self.name
            )),
            (RewardLossMode::Neg | RewardLossMode::OneMinus, Some(_)) => Err(format!(
                "reward {:?}: a target applies only to loss \"abs-target\"",
                self.name
            )),
            _ if !self.weight.is_finite() => {
                Err(format!("reward {:?}: weight must be finite", self.name))
            }
            _ => Ok(()),
        }
    }

    /// `ℓ(r)` per sample.
    pub fn loss<B: Backend>(&self, reward: Tensor<B, 1>) -> Tensor<B, 1> {
        match self.loss {
            RewardLossMode::AbsTarget => (reward - self.target.unwrap_or(0.0)).abs(),
            RewardLossMode::Neg => reward.neg(),
            RewardLossMode::OneMinus => reward.neg() + 1.0,
        }
    }
}

/// Where the gradient starts, `t_b` (steps `i ≥ t_b` keep it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Truncation {
    /// `t_b = S − k`: the last `k` steps (AlignProp's `*_k1` configs: k = 1).
    #[default]
    Fixed,
    /// `t_b ~ U{0, …, S−1}` per trajectory (the current release's `'uniform'`).
    Uniform,
    /// `t_b = ⌊x⌋, x ~ N(0.84·S, (0.1·S)²)` per trajectory, redrawn until `1 ≤ t_b < S` (the current
    /// release's default `'gaussian'`, N(42, 5) for S = 50, scaled to other step counts). S = 1: t_b = 0.
    Gaussian,
}

impl Truncation {
    /// `t_b` for `steps` sampling steps; `uniform` yields independent draws from [0, 1).
    pub fn first_grad_step(
        self,
        steps: usize,
        k: usize,
        uniform: &mut dyn FnMut() -> f64,
    ) -> usize {
        match self {
            Self::Fixed => steps - k.min(steps),
            Self::Uniform => ((uniform() * steps as f64) as usize).min(steps.saturating_sub(1)),
            // No t_b satisfies 1 ≤ t_b < S: every step keeps its gradient.
            Self::Gaussian if steps < 2 => 0,
            Self::Gaussian => loop {
                // Box–Muller; 1 − u keeps the logarithm's argument in (0, 1].
                let (u1, u2) = (1.0 - uniform(), uniform());
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let x = 0.84 * steps as f64 + 0.1 * steps as f64 * z;
                if x >= 1.0 && x < steps as f64 {
                    break x as usize;
                }
            },
        }
    }
}

/// What one truncated trajectory needs besides the U-Net; tensors live on the inner backend.
pub struct Trajectory<'a, B: Backend> {
    pub positive: &'a PromptEmbeds<B>,
    pub negative: &'a PromptEmbeds<B>,
    /// `[N, 6]` SDXL micro-conditioning (ignored by U-Nets without it).
    pub time_ids: Tensor<B, 2>,
    /// `[N, C, h, w]` standard-normal starting latents.
    pub noise: Tensor<B, 4>,
    pub scheduler: &'a DdimScheduler,
    pub guidance_scale: f64,
    /// `t_b`: steps `i ≥ t_b` keep their gradient.
    pub first_grad_step: usize,
    /// The U-Net's compute precision ([`Precision`]); latents, decoding and rewards stay f32.
    pub precision: Precision,
}

/// Runs the sampler: steps before `t_b` off the tape, the rest on it. `step_noise(i)` gives the DDIM η > 0
/// noise of step `i` (`None` for η = 0). Returns the final latents, with gradient when `t_b < S`.
pub fn sample_truncated<A: AutodiffBackend>(
    unet: &UNet2DConditionModel<A>,
    trajectory: &Trajectory<A::InnerBackend>,
    step_noise: &mut dyn FnMut(usize) -> Option<Tensor<A::InnerBackend, 4>>,
) -> Tensor<A, 4> {
    let steps = trajectory.scheduler.timesteps.len();
    let t_b = trajectory.first_grad_step.min(steps);
    let cond = guidance_conditioning(
        trajectory.positive,
        trajectory.negative,
        trajectory.time_ids.clone(),
    );
    let scheduler = trajectory.scheduler;
    let precision = trajectory.precision;
    // One cast for the whole trajectory: in bf16 each step's graph then shares one bf16 copy of the weights.
    let unet = &precision.module(unet.clone());
    let cond = precision.conditioning(cond);
    let mut latents = trajectory.noise.clone();
    if t_b > 0 {
        let frozen = unet.valid();
        for i in 0..t_b {
            let noise = step_noise(i);
            latents = guided_step(
                precision,
                &frozen,
                &cond,
                latents,
                scheduler,
                i,
                trajectory.guidance_scale,
                noise,
            );
        }
    }
    let cond = crate::models::unet::UNetConditioning {
        encoder_hidden_states: Tensor::from_inner(cond.encoder_hidden_states),
        text_embeds: cond.text_embeds.map(Tensor::from_inner),
        time_ids: cond.time_ids.map(Tensor::from_inner),
    };
    let mut latents = Tensor::<A, 4>::from_inner(latents);
    for i in t_b..steps {
        let noise = step_noise(i).map(Tensor::from_inner);
        latents = guided_step(
            precision,
            unet,
            &cond,
            latents,
            scheduler,
            i,
            trajectory.guidance_scale,
            noise,
        );
    }
    latents
}

/// The loss of one batch and each reward's mean (for the log).
pub struct AlignPropOutput<B: Backend> {
    /// Scalar `[1]`.
    pub loss: Tensor<B, 1>,
    /// `(name, per-sample rewards [N], detached)` per configured reward. Left on the device: reading back
    /// is the caller's choice (the browser cannot read back synchronously).
    pub rewards: Vec<(String, Tensor<B, 1>)>,
}

/// Decodes the final latents differentiably (the VAE's own parameters frozen by the caller) and mixes the
/// rewards' losses: `L = Σ_j w_j · mean_n ℓ_j(r_j)`.
pub fn alignprop_loss<B: Backend>(
    image_space: &ImageSpace<B>,
    latents: Tensor<B, 4>,
    prompts: &[String],
    rewards: &[(RewardSpec, Box<dyn DifferentiableReward<B>>)],
) -> AlignPropOutput<B> {
    let images = image_space.decode_to_unit(latents);
    let mut loss = Tensor::<B, 1>::zeros([1], &images.device());
    let mut values = Vec::new();
    for (spec, reward) in rewards {
        let r = reward.reward(images.clone(), prompts);
        values.push((reward.name(), r.clone().detach()));
        loss = loss + spec.loss(r).mean() * spec.weight;
    }
    AlignPropOutput {
        loss,
        rewards: values,
    }
}

/// A tiny reward for tests and benchmarks: `r = Σ_c w_c · mean_{h,w} image_c + bias` (a colour-balance
/// score; with the default weights, warm images score high).
#[derive(Debug, Clone)]
pub struct PixelMeanReward {
    pub weights: [f64; 3],
    pub bias: f64,
}

impl Default for PixelMeanReward {
    fn default() -> Self {
        Self {
            weights: [1.0, -0.5, 0.25],
            bias: 0.1,
        }
    }
}

impl<B: Backend> DifferentiableReward<B> for PixelMeanReward {
    fn name(&self) -> String {
        "pixel-mean".into()
    }

    fn reward(&self, images: Tensor<B, 4>, _prompts: &[String]) -> Tensor<B, 1> {
        let [n, c, h, w] = images.dims();
        let means = images.reshape([n, c, h * w]).mean_dim(2).reshape([n, c]);
        let weights = Tensor::<B, 1>::from_floats(self.weights.map(|v| v as f32), &means.device())
            .reshape([c, 1]);
        means.matmul(weights).reshape([n]) + self.bias
    }
}
