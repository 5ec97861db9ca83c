//! PopAlign as the paper derives it: a population Bradley–Terry model whose log-likelihood is bounded
//! below (Jensen) by an average over member pairs drawn from the two populations of one caption:
//!
//! ```text
//! L = mean over (i, j) with caption(i) = caption(j) of softplus(−β·(g_w(i) − g_l(j)))
//! ```
//!
//! Within a batch every preferred member is paired with every dispreferred member of the same caption
//! (`groups[i]` names pair i's caption), an unbiased, lower-variance estimate of the expectation over pairs.

use burn::prelude::*;

use super::{ObjectiveOutput, PairErrors, softplus};

pub fn pairwise_loss<B: Backend>(
    errors: &PairErrors<B>,
    groups: &[usize],
    beta: f64,
) -> ObjectiveOutput<B> {
    let (g_w, g_l) = errors.implicit_rewards();
    let b = errors.pairs();
    assert_eq!(groups.len(), b, "one caption group per pair");
    let device = g_w.device();
    // [B, B] differences g_w(i) − g_l(j), masked to same-caption pairs.
    let diff = g_w.reshape([b, 1]) - g_l.reshape([1, b]);
    let mask: Vec<f32> = (0..b * b)
        .map(|k| (groups[k / b] == groups[k % b]) as u8 as f32)
        .collect();
    let mask = Tensor::<B, 1>::from_floats(mask.as_slice(), &device).reshape([b, b]);
    let count = mask.clone().sum();
    let loss = (softplus(diff.neg() * beta) * mask).sum() / count;
    ObjectiveOutput {
        loss,
        diagnostics: errors.diagnostics(),
    }
}
