//! Diffusion-DPO (Wallace et al. 2023, as its code computes it):
//!
//! ```text
//! inside = −½β·((e_θ^w − e_θ^l) − (e_ref^w − e_ref^l)) = ½β·(g_w − g_l)
//! L      = mean over pairs of softplus(−inside)          (β = 5000)
//! ```

use burn::prelude::*;

use super::{ObjectiveOutput, PairErrors, softplus};

pub fn dpo_loss<B: Backend>(errors: &PairErrors<B>, beta: f64) -> ObjectiveOutput<B> {
    let (g_w, g_l) = errors.implicit_rewards();
    let inside = (g_w - g_l) * (0.5 * beta);
    ObjectiveOutput {
        loss: softplus(inside.neg()).mean(),
        diagnostics: errors.diagnostics(),
    }
}
