//! The recomputing attention op (`nn::recomputed_attention`) against a float64 transcription of attention's
//! forward and backward (plain loops, below), with blocks small enough that every query block boundary is
//! crossed; burn's own attention under autodiff (`attention_fallback`, every gradient derived from primitive
//! ops) is measured against the same transcription beside it. Then inside the tiny SDXL U-Net, against
//! PyTorch autograd (the AlignProp fixture: the gradient of every LoRA tensor).
//!
//! Measured (f32, NdArray, values up to 2.5, plain autodiff and balanced checkpointing alike), max abs from
//! float64, output / dQ / dK / dV: ours 2.3e-7 / 4.8e-7 / 4.2e-7 / 3.3e-7 in every build; burn's attention
//! 2.3e-7 / 3.6e-7 / 4.4e-7 / 3.0e-7 as the workspace builds burn-ndarray (2.3e-7 / 4.2e-5 / 9.8e-5 / 3.0e-7
//! with its `simd` feature, whose reciprocal is approximate; bench/NOTES.md). Through the U-Net: LoRA gradients 3.1e-6 (K = 1) and
//! 1.4e-6 (K = 2) max |Δ| / max |golden| against PyTorch, the bounds of `alignprop.rs`.

use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::{Autodiff, NdArray};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use popalign_core::nn::recomputed_attention::{self, recomputed_attention};

type Inner = NdArray<f32>;

const Q: [usize; 4] = [2, 3, 10, 4];
const K: [usize; 4] = [2, 3, 7, 4];
const V: [usize; 4] = [2, 3, 7, 5];
const O: [usize; 4] = [2, 3, 10, 5];

/// Inputs from a fixed formula: burn's seeded RNG is global, and tests run side by side. 10 queries against
/// 7 keys (cross-attention shapes), value width 5 ≠ head width 4.
fn values(dims: [usize; 4], seed: f64) -> Vec<f64> {
    (0..dims.iter().product::<usize>())
        .map(|i| (i as f64 * 0.7 + seed).sin() * 1.5)
        .collect()
}

/// Output and gradients of Σ w ⊙ attention(q, k, v) in float64, straight from the module formula.
fn transcription() -> [Vec<f64>; 4] {
    let (q, k, v, w) = (
        values(Q, 0.1),
        values(K, 0.2),
        values(V, 0.3),
        values(O, 0.4),
    );
    let ([_, _, lq, d], [_, _, lk, _], dv) = (Q, K, V[3]);
    let scale = 1.0 / (d as f64).sqrt();
    let (mut out, mut gq, mut gk, mut gv) = (
        vec![0.0; w.len()],
        vec![0.0; q.len()],
        vec![0.0; k.len()],
        vec![0.0; v.len()],
    );
    for head in 0..Q[0] * Q[1] {
        let (qh, kh, vh, oh) = (head * lq * d, head * lk * d, head * lk * dv, head * lq * dv);
        for i in 0..lq {
            let scores: Vec<f64> = (0..lk)
                .map(|j| {
                    scale
                        * (0..d)
                            .map(|e| q[qh + i * d + e] * k[kh + j * d + e])
                            .sum::<f64>()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::MIN, f64::max);
            let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
            let p: Vec<f64> = scores.iter().map(|s| (s - max).exp() / total).collect();
            let grad_o = &w[oh + i * dv..oh + (i + 1) * dv];
            let grad_p: Vec<f64> = (0..lk)
                .map(|j| (0..dv).map(|e| grad_o[e] * v[vh + j * dv + e]).sum())
                .collect();
            let row_dot: f64 = (0..lk).map(|j| p[j] * grad_p[j]).sum();
            for j in 0..lk {
                let grad_score = p[j] * (grad_p[j] - row_dot) * scale;
                for e in 0..dv {
                    out[oh + i * dv + e] += p[j] * v[vh + j * dv + e];
                    gv[vh + j * dv + e] += p[j] * grad_o[e];
                }
                for e in 0..d {
                    gq[qh + i * d + e] += grad_score * k[kh + j * d + e];
                    gk[kh + j * d + e] += grad_score * q[qh + i * d + e];
                }
            }
        }
    }
    [out, gq, gk, gv]
}

/// Output and gradients of Σ w ⊙ attention(q, k, v), by `op`, in f32.
fn output_and_grads<C: CheckpointStrategy>(
    op: impl Fn([Tensor<Autodiff<Inner, C>, 4>; 3]) -> Tensor<Autodiff<Inner, C>, 4>,
) -> [Vec<f64>; 4] {
    let device = Default::default();
    let tensor = |dims: [usize; 4], seed| {
        let data = values(dims, seed)
            .into_iter()
            .map(|x| x as f32)
            .collect::<Vec<_>>();
        Tensor::<Autodiff<Inner, C>, 4>::from_data(TensorData::new(data, dims), &device)
    };
    let [q, k, v] =
        [(Q, 0.1), (K, 0.2), (V, 0.3)].map(|(dims, seed)| tensor(dims, seed).require_grad());
    let out = op([q.clone(), k.clone(), v.clone()]);
    let grads = (out.clone() * tensor(O, 0.4)).sum().backward();
    let grad = |t: &Tensor<Autodiff<Inner, C>, 4>| t.grad(&grads).expect("a gradient");
    [
        out.into_data(),
        grad(&q).into_data(),
        grad(&k).into_data(),
        grad(&v).into_data(),
    ]
    .map(|data| data.iter::<f64>().collect())
}

/// Max abs error of each of output, dQ, dK, dV against the transcription.
fn errors(ours: &[Vec<f64>; 4], exact: &[Vec<f64>; 4]) -> Vec<f64> {
    ours.iter()
        .zip(exact)
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max)
        })
        .collect()
}

fn show(errors: &[f64]) -> String {
    let shown: Vec<String> = errors.iter().map(|e| format!("{e:.1e}")).collect();
    shown.join(" / ")
}

fn check<C: CheckpointStrategy>() {
    let exact = transcription();
    assert!(
        exact.iter().all(|t| t.iter().any(|x| x.abs() > 0.1)),
        "a gradient is all zeros"
    );
    let burn = output_and_grads::<C>(|[q, k, v]| {
        attention(q, k, v, None, None, AttentionModuleOptions::default())
    });
    println!(
        "burn's attention, output/dQ/dK/dV: {}",
        show(&errors(&burn, &exact))
    );
    // 2 × 3 × 7 = 42 scores per query row: 126 elements give blocks of 3 rows (3 + 3 + 3 + 1 queries).
    for scores_per_block in [126, 1 << 24] {
        let ours =
            output_and_grads::<C>(|[q, k, v]| recomputed_attention(q, k, v, scores_per_block));
        let errors = errors(&ours, &exact);
        println!(
            "ours, {scores_per_block} scores per block, output/dQ/dK/dV: {}",
            show(&errors)
        );
        assert!(errors.iter().all(|&e| e <= 2e-6), "{errors:?}");
    }
}

#[test]
fn gradients_match_a_float64_transcription() {
    check::<NoCheckpointing>();
}

#[test]
fn gradients_match_a_float64_transcription_with_balanced_checkpointing() {
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

/// Inference on plain ndarray runs the blocked forward pass with strided products and a fused softmax, and
/// gives burn's attention bit for bit on head-split views (what `nn::attention::Attention` passes): 21 keys,
/// so each score row has full eight-value lanes and a remainder in its sum.
#[test]
fn inference_on_ndarray_is_burns_attention_bit_for_bit() {
    let heads = |dims: [usize; 4], seed: f64| {
        let [b, h, l, d] = dims;
        let data = TensorData::new(values(dims, seed), [b, l, h, d]).convert::<f32>();
        Tensor::<Inner, 4>::from_data(data, &Default::default()).swap_dims(1, 2)
    };
    let (q, k, v) = (
        heads(Q, 0.1),
        heads([2, 3, 21, 4], 0.2),
        heads([2, 3, 21, 5], 0.3),
    );
    let ours = recomputed_attention::attention(q.clone(), k.clone(), v.clone());
    let burns = attention(q, k, v, None, None, AttentionModuleOptions::default());
    let ours = ours.into_data().into_vec::<f32>().unwrap();
    let burns = burns.into_data().into_vec::<f32>().unwrap();
    assert!(
        ours.iter()
            .zip(&burns)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}
