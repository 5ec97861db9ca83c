//! AlignProp against PyTorch autograd (tools/fixtures/make_alignprop.py): S = 3 DDIM steps with guidance
//! through the tiny SDXL U-Net + LoRA, VAE decode, the pixel-mean reward and the reward mixture; gradient
//! through the last K = 1 or K = 2 steps. Checked: final latents, rewards, loss, and the gradient of every
//! LoRA tensor, on plain autodiff and on burn's balanced checkpointing (which must not change the numbers).
//!
//! Measured (f32, NdArray, both strategies identical): final latents 1.06e-6 relative (max |Δ| / max |golden|;
//! the latents reach ~11, and the absolute error was 7.9e-6 on one EPYC and 1.17e-5 on another, so the bound is
//! relative), rewards 1.5e-7 max abs, loss 0 relative, LoRA gradients 3.5e-6 (K = 1) and 1.3e-6 (K = 2) max |Δ| / max |golden|. The golden
//! gradients differ by ~100× between K = 1 and K = 2, so a wrong truncation point cannot pass.

use crate::common;

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::AutodiffBackend;
use common::alignprop_run::run_alignprop;
use common::io;
use common::lora_unet::{max_abs, relative, values};
use popalign_core::align::objectives::alignprop::Truncation;
use popalign_core::diffusion::precision::Precision;

/// Measured errors of one run: latents relative, rewards max abs, loss relative, gradients
/// max |Δ| / max |golden| over all 272 LoRA tensors.
#[derive(Debug)]
struct Errors {
    latents: f64,
    rewards: f64,
    loss: f64,
    grads: f64,
}

fn run<A: AutodiffBackend>(k: usize) -> Errors {
    let golden = io("alignprop");
    let expected = |name: &str| values(golden[&format!("k{k}_{name}")].clone());
    let ours = run_alignprop::<A>(k, Precision::F32);
    Errors {
        latents: relative(&ours.latents, &expected("latents")),
        rewards: max_abs(&ours.rewards, &expected("reward")),
        loss: relative(&[ours.loss], &expected("loss")),
        grads: relative(&ours.grads, &ours.golden_grads("alignprop", k)),
    }
}

pub(crate) fn check<A: AutodiffBackend>(label: &str) {
    for k in [1, 2] {
        let e = run::<A>(k);
        println!("{label}, K = {k}: {e:?}");
        assert!(
            e.latents <= 5e-6 && e.rewards <= 1e-5,
            "{label}, K = {k}: {e:?}"
        );
        assert!(e.loss <= 1e-4 && e.grads <= 1e-4, "{label}, K = {k}: {e:?}");
    }
}

#[test]
fn truncated_backprop_matches_pytorch() {
    check::<Autodiff<NdArray<f32>>>("plain autodiff");
}

#[test]
fn truncated_backprop_matches_pytorch_with_balanced_checkpointing() {
    check::<Autodiff<NdArray<f32>, BalancedCheckpointing>>("balanced checkpointing");
}

#[test]
fn truncation_points_follow_the_alignprop_release() {
    let mut state = 7u64;
    let mut uniform = move || {
        // xorshift64*: a fixed stream, enough for a distribution check.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    };
    assert_eq!(Truncation::Fixed.first_grad_step(50, 1, &mut uniform), 49);
    assert_eq!(Truncation::Fixed.first_grad_step(4, 9, &mut uniform), 0);
    assert_eq!(Truncation::Gaussian.first_grad_step(1, 1, &mut uniform), 0);
    assert_eq!(Truncation::Uniform.first_grad_step(1, 1, &mut uniform), 0);
    let draws = |t: Truncation, uniform: &mut dyn FnMut() -> f64| -> Vec<usize> {
        (0..20_000)
            .map(|_| t.first_grad_step(50, 1, uniform))
            .collect()
    };
    let gaussian = draws(Truncation::Gaussian, &mut uniform);
    let mean = gaussian.iter().sum::<usize>() as f64 / gaussian.len() as f64;
    // N(42, 5) cut at 50 has mean 42 − 5·φ(1.6)/Φ(1.6) = 41.41; the floor takes ½ more: 40.91.
    assert!(gaussian.iter().all(|&t| (1..50).contains(&t)));
    assert!((mean - 40.91).abs() < 0.2, "gaussian mean t_b {mean}");
    let uniform_draws = draws(Truncation::Uniform, &mut uniform);
    let mean = uniform_draws.iter().sum::<usize>() as f64 / uniform_draws.len() as f64;
    assert!(uniform_draws.iter().all(|&t| t < 50));
    assert!((mean - 24.5).abs() < 0.5, "uniform mean t_b {mean}");
}
