//! PopAlign as the official code trains it (`main.py --loss popalign`, `--bce_offset sigmoid`):
//!
//! ```text
//! z_w = mean_workers( Σ g_w / (n_w + 1e-6) ),  z_l = mean_workers( Σ g_l / (n_l + 1e-6) )
//! z   = α·z_w + (1 − α)·z_l                          (stop-gradient; α = 0.5)
//! u   = s·β·(g − z),  s = +1 preferred, −1 dispreferred
//! L   = mean over the worker's 2B samples of λ_s · softplus(−u)      (β = 5000, λ_D = λ_U = 1)
//!     + w_sft · β · mean over the preferred of e_θ                      (optional anchor; w_sft = 0 officially)
//! ```
//!
//! Each sample is compared with a population-level reference point rather than with its own partner; with
//! one worker and one pair, `z` is the pair's midpoint and the loss equals Diffusion-DPO with the same β.
//!
//! The anchor is ours, off by default: the official loss only sees `g − z`, so it is blind to a drift that
//! raises both populations' errors alike, and with small batches that drift can wreck the U-Net. The anchor
//! is the SFT loss on the preferred images (as RPO adds an NLL term to DPO), scaled by β so `w_sft` is
//! comparable to the preference term's weight.

use burn::prelude::*;

use super::{ObjectiveOutput, PairErrors, softplus, to_vec};

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PopAlignConfig {
    #[serde(default = "beta")]
    pub beta: f64,
    /// Weight of the preferred mean in the reference point (`--bce_alpha`).
    #[serde(default = "half")]
    pub alpha: f64,
    /// λ_D (preferred) and λ_U (dispreferred).
    #[serde(default = "one")]
    pub lambda_preferred: f64,
    #[serde(default = "one")]
    pub lambda_dispreferred: f64,
    /// `w_sft`: weight of the SFT anchor on the preferred images (0 = the official objective).
    #[serde(default)]
    pub sft_weight: f64,
}

fn beta() -> f64 {
    5000.0
}
fn half() -> f64 {
    0.5
}
fn one() -> f64 {
    1.0
}

impl Default for PopAlignConfig {
    fn default() -> Self {
        Self {
            beta: beta(),
            alpha: half(),
            lambda_preferred: 1.0,
            lambda_dispreferred: 1.0,
            sft_weight: 0.0,
        }
    }
}

/// Averages the per-worker `[z_w, z_l]` across data-parallel workers (identity for one worker).
pub trait ReferencePointReduce {
    fn mean_across_workers(&self, local: [f64; 2]) -> [f64; 2];
}

/// One worker: nothing to average.
pub struct SingleWorker;

impl ReferencePointReduce for SingleWorker {
    fn mean_across_workers(&self, local: [f64; 2]) -> [f64; 2] {
        local
    }
}

pub fn popalign_loss<B: Backend>(
    errors: &PairErrors<B>,
    config: &PopAlignConfig,
    reduce: &dyn ReferencePointReduce,
) -> ObjectiveOutput<B> {
    let (g_w, g_l) = errors.implicit_rewards();
    // The official code divides by (n + 1e-6), not n; kept so the numbers match it exactly.
    let local_mean =
        |g: &Tensor<B, 1>| to_vec(g.clone()).iter().sum::<f64>() / (g.dims()[0] as f64 + 1e-6);
    let [z_w, z_l] = reduce.mean_across_workers([local_mean(&g_w), local_mean(&g_l)]);
    let z = config.alpha * z_w + (1.0 - config.alpha) * z_l;
    let preferred = softplus((g_w - z).neg() * config.beta) * config.lambda_preferred;
    let dispreferred = softplus((g_l - z) * config.beta) * config.lambda_dispreferred;
    let mut loss = Tensor::cat(vec![preferred, dispreferred], 0).mean();
    if config.sft_weight != 0.0 {
        let e_preferred = errors.e_theta.clone().narrow(0, 0, errors.pairs());
        loss = loss + e_preferred.mean() * (config.sft_weight * config.beta);
    }
    let mut diagnostics = errors.diagnostics();
    diagnostics.z = Some(z);
    ObjectiveOutput { loss, diagnostics }
}
