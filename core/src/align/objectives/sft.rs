//! Supervised fine-tuning on the preferred images, as the official code averages it:
//! `L = mean over the 2B samples of e_θ · label` with label 1 for preferred, 0 for dispreferred.

use burn::prelude::*;

use super::{ObjectiveOutput, PairErrors};

pub fn sft_loss<B: Backend>(errors: &PairErrors<B>) -> ObjectiveOutput<B> {
    let b = errors.pairs();
    let loss = errors.e_theta.clone().narrow(0, 0, b).sum() / (2 * b) as f64;
    ObjectiveOutput {
        loss,
        diagnostics: errors.diagnostics(),
    }
}
