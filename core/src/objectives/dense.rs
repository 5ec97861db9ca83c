//! Temporally discounted (dense-reward) DPO (Yang et al. 2024, as its code estimates it):
//!
//! ```text
//! w_t   = γ^t / Σ_t' γ^t'                       (t = 0 is the first, noisiest step; γ = 0.9)
//! t_m   ~ Categorical(w), m = 1..M              (shared by the compared trajectories)
//! logit = C · mean_m clip(log π_θ(x_{t_m+1} | x_{t_m}) − log π_ref(…), −ε_clip, +ε_clip)
//! L     = softplus(−(logit_w − logit_l))       (C = 12.5)
//! ```
//!
//! `log π` is the per-element mean Gaussian log-density of a DDIM η = 1 step
//! ([`crate::schedulers::ddim::gaussian_log_density`]).

use burn::prelude::*;

use super::softplus;

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
    let raw: Vec<f64> = (0..steps).map(|t| gamma.powi(t as i32)).collect();
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

/// Loss from `[2, M]` log-densities (row 0 the winner trajectory, row 1 the loser) under θ and the reference.
pub fn dense_loss<B: Backend>(
    log_p_theta: Tensor<B, 2>,
    log_p_ref: Tensor<B, 2>,
    config: &DenseConfig,
) -> Tensor<B, 1> {
    let ratio =
        (log_p_theta - log_p_ref.detach()).clamp(-config.log_ratio_clip, config.log_ratio_clip);
    let logits = ratio.mean_dim(1).reshape([2]) * config.coefficient;
    let margin = logits.clone().narrow(0, 0, 1) - logits.narrow(0, 1, 1);
    softplus(margin.neg())
}
