//! The recorded DDIM transitions of `fixtures/io/dense_unet_f64` (tools/fixtures/make_dense.py) as the
//! dense objective takes them, on any backend (the data converts to its float type).
#![allow(dead_code)]

use std::collections::BTreeMap;

use burn::prelude::*;
use burn::tensor::TensorData;
use popalign_core::diffusion::pipeline::{PromptEmbeds, guidance_conditioning};
use popalign_core::models::unet::UNetConditioning;

/// Pairs in the fixture: rows `[w1, w2, l1, l2]`.
pub const PAIRS: usize = 2;

pub struct Transitions<B: Backend> {
    /// `[2B, M]`: rows and sampled steps per row.
    pub rows: usize,
    pub m: usize,
    /// The step index of each transition, row-major (`n = r·M + m`).
    pub steps: Vec<usize>,
    /// Guidance conditioning of the doubled batch (negatives first).
    pub cond: UNetConditioning<B>,
    pub x: Tensor<B, 4>,
    pub x_next: Tensor<B, 4>,
}

pub fn transitions<B: Backend>(golden: &BTreeMap<String, TensorData>) -> Transitions<B> {
    let device = Default::default();
    let tensor = |name: &str| golden[name].clone();
    let [rows, m]: [usize; 2] = tensor("steps").shape.as_slice().try_into().unwrap();
    assert_eq!(rows, 2 * PAIRS);
    let steps = tensor("steps")
        .convert::<i64>()
        .to_vec::<i64>()
        .unwrap()
        .into_iter()
        .map(|s| s as usize)
        .collect();
    // Transition n = r·M + m has the prompt of pair r % B; negatives are zeros (SDXL's
    // force_zeros_for_empty_prompt), time_ids the same on both halves.
    let pair_of: Vec<i64> = (0..rows * m).map(|n| ((n / m) % PAIRS) as i64).collect();
    let pair_of = Tensor::<B, 1, Int>::from_ints(pair_of.as_slice(), &device);
    let hidden = Tensor::<B, 3>::from_data(tensor("encoder_hidden_states"), &device)
        .select(0, pair_of.clone());
    let per_row =
        |name: &str| Tensor::<B, 2>::from_data(tensor(name), &device).select(0, pair_of.clone());
    let (pooled, time_ids) = (per_row("text_embeds"), per_row("time_ids"));
    let negative = PromptEmbeds {
        hidden: hidden.zeros_like(),
        pooled: Some(pooled.zeros_like()),
    };
    let positive = PromptEmbeds {
        hidden,
        pooled: Some(pooled),
    };
    Transitions {
        rows,
        m,
        steps,
        cond: guidance_conditioning(&positive, &negative, time_ids),
        x: Tensor::from_data(tensor("x"), &device),
        x_next: Tensor::from_data(tensor("x_next"), &device),
    }
}
