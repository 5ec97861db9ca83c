//! The recomputing attention op (`nn::recomputed_attention`) against burn's own attention under autodiff
//! (`attention_fallback`: the L×L scores kept on the tape, every gradient derived from primitive ops), on the
//! same random inputs, with blocks small enough that every query block boundary is crossed; then inside the
//! tiny SDXL U-Net, against PyTorch autograd (the AlignProp fixture: the gradient of every LoRA tensor).
//!
//! Measured (f32, NdArray, values up to 2.5): outputs 0.0 max abs, dQ 6.6e-7, dK 6.0e-7, dV 2.4e-7, the same on
//! plain autodiff and balanced checkpointing. Through the U-Net: LoRA gradients 3.1e-6 (K = 1) and 1.4e-6
//! (K = 2) max |Δ| / max |golden| against PyTorch, the bounds of `alignprop.rs`.

use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::{Autodiff, NdArray};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use popalign_core::nn::recomputed_attention::{self, recomputed_attention};

type Inner = NdArray<f32>;

/// Output and gradients of Σ w ⊙ attention(q, k, v), by `op`.
fn output_and_grads<C: CheckpointStrategy>(
    op: impl Fn([Tensor<Autodiff<Inner, C>, 4>; 3]) -> Tensor<Autodiff<Inner, C>, 4>,
) -> [TensorData; 4] {
    let device = Default::default();
    // Inputs from a fixed formula: burn's seeded RNG is global, and tests run side by side.
    let inputs = |dims: [usize; 4], seed: f32| {
        let values = (0..dims.iter().product::<usize>())
            .map(|i| (i as f32 * 0.7 + seed).sin() * 1.5)
            .collect::<Vec<_>>();
        Tensor::<Autodiff<Inner, C>, 4>::from_data(TensorData::new(values, dims), &device)
    };
    // 10 queries against 7 keys (cross-attention shapes), value width 5 ≠ head width 4.
    let [q, k, v] = [
        ([2, 3, 10, 4], 0.1),
        ([2, 3, 7, 4], 0.2),
        ([2, 3, 7, 5], 0.3),
    ]
    .map(|(dims, seed)| inputs(dims, seed).require_grad());
    let weights = inputs([2, 3, 10, 5], 0.4);
    let out = op([q.clone(), k.clone(), v.clone()]);
    let grads = (out.clone() * weights).sum().backward();
    let grad = |t: &Tensor<Autodiff<Inner, C>, 4>| t.grad(&grads).expect("a gradient").into_data();
    [out.into_data(), grad(&q), grad(&k), grad(&v)]
}

fn check<C: CheckpointStrategy>() {
    let reference = output_and_grads::<C>(|[q, k, v]| {
        attention(q, k, v, None, None, AttentionModuleOptions::default())
    });
    // 2 × 3 × 7 = 42 scores per query row: 126 elements give blocks of 3 rows (3 + 3 + 3 + 1 queries).
    for scores_per_block in [126, 1 << 24] {
        let ours =
            output_and_grads::<C>(|[q, k, v]| recomputed_attention(q, k, v, scores_per_block));
        for (name, (a, b)) in ["output", "dQ", "dK", "dV"]
            .iter()
            .zip(ours.iter().zip(&reference))
        {
            let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
            let error = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            let largest = b.iter().map(|y| y.abs()).fold(0.0, f32::max);
            println!(
                "{scores_per_block} scores per block, {name}: max abs error {error:.1e} (largest {largest:.2})"
            );
            assert!(
                error <= 1e-6 && largest > 0.1,
                "{name}: {error} (largest {largest})"
            );
        }
    }
}

#[test]
fn gradients_match_burns_attention() {
    check::<NoCheckpointing>();
}

#[test]
fn gradients_match_burns_attention_with_balanced_checkpointing() {
    check::<BalancedCheckpointing>();
}

/// The registry switches `attention` to the op for the registered backend only. `NdArray<f32, i32>` is a
/// backend type no other test uses, so registering it process-wide changes nothing elsewhere in the suite.
#[test]
fn unet_lora_gradients_match_pytorch_through_the_op() {
    type Registered = Autodiff<NdArray<f32, i32>>;
    recomputed_attention::enable::<NdArray<f32, i32>, NoCheckpointing>();
    assert!(recomputed_attention::is_enabled::<Registered>());
    assert!(!recomputed_attention::is_enabled::<Autodiff<Inner>>());
    crate::alignprop::check::<Registered>("recomputed attention");
}
