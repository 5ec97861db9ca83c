//! AlignProp against PyTorch autograd (tools/fixtures/make_alignprop.py): S = 3 DDIM steps with guidance
//! through the tiny SDXL U-Net + LoRA, VAE decode, the pixel-mean reward and the reward mixture; gradient
//! through the last K = 1 or K = 2 steps. Checked: final latents, rewards, loss, and the gradient of every
//! LoRA tensor, on plain autodiff and on burn's balanced checkpointing (which must not change the numbers).
//!
//! Measured (f32, NdArray, both strategies identical): final latents 7.9e-6 max abs, rewards 1.5e-7 max abs,
//! loss 0 relative, LoRA gradients 3.5e-6 (K = 1) and 1.3e-6 (K = 2) max |Δ| / max |golden|. The golden
//! gradients differ by ~100× between K = 1 and K = 2, so a wrong truncation point cannot pass.

mod common;

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::{Autodiff, NdArray};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use common::lora_unet::{lora_grads, max_abs, relative, values};
use common::{fixtures, io};
use popalign_core::nn::lora::{LoraConfig, TrainOnlyLora};
use popalign_core::objectives::alignprop::{
    DifferentiableReward, PixelMeanReward, RewardLossMode, RewardSpec, Trajectory, Truncation,
    alignprop_loss, sample_truncated,
};
use popalign_core::pipeline::PromptEmbeds;
use popalign_core::schedulers::{DdimScheduler, SchedulerConfig};
use popalign_core::unet::UNet2DConditionModel;
use popalign_core::vae::ImageSpace;

const STEPS: usize = 3;
const GUIDANCE: f64 = 5.0;

/// Measured errors of one run: latents max abs, rewards max abs, loss relative, gradients
/// max |Δ| / max |golden| over all 272 LoRA tensors.
#[derive(Debug)]
struct Errors {
    latents: f64,
    rewards: f64,
    loss: f64,
    grads: f64,
}

fn mixture() -> Vec<RewardSpec> {
    let spec = |weight, loss, target| RewardSpec {
        name: "pixel-mean".into(),
        weight,
        loss,
        target,
        model: None,
        clip_model: None,
    };
    vec![
        spec(0.7, RewardLossMode::AbsTarget, Some(10.0)),
        spec(0.3, RewardLossMode::OneMinus, None),
    ]
}

fn run<A: AutodiffBackend>(k: usize) -> Errors {
    let device = Default::default();
    let golden = io("alignprop");
    let inner = |name: &str| golden[name].clone();
    let unet = UNet2DConditionModel::<A>::from_dir_with_lora(
        &fixtures().join("tiny-sdxl/unet"),
        None,
        Some(&LoraConfig::new(2, 2.0)),
        &device,
    )
    .unwrap()
    .load_lora(&fixtures().join("io/lora_tiny.safetensors"))
    .unwrap();
    let unet = TrainOnlyLora::apply(unet);
    let image_space =
        ImageSpace::<A>::from_root(&fixtures().join("tiny-sdxl"), false, None, &device)
            .unwrap()
            .no_grad();
    let scheduler_config: SchedulerConfig = popalign_core::load::read_config(
        &fixtures().join("tiny-sdxl/scheduler/scheduler_config.json"),
    )
    .unwrap();
    let scheduler = DdimScheduler::new(&scheduler_config, STEPS, 0.0);
    let embeds = |side: &str| PromptEmbeds::<A::InnerBackend> {
        hidden: Tensor::from_data(inner(&format!("{side}_hidden")), &device),
        pooled: Some(Tensor::from_data(inner(&format!("{side}_pooled")), &device)),
    };
    let (positive, negative) = (embeds("positive"), embeds("negative"));
    let trajectory = Trajectory {
        positive: &positive,
        negative: &negative,
        time_ids: Tensor::from_data(inner("time_ids"), &device),
        noise: Tensor::from_data(inner("noise"), &device),
        scheduler: &scheduler,
        guidance_scale: GUIDANCE,
        first_grad_step: Truncation::Fixed.first_grad_step(STEPS, k, &mut || unreachable!()),
    };
    let latents = sample_truncated(&unet, &trajectory, &mut |_| None);
    let latents_err = max_abs(
        &values(latents.to_data()),
        &values(inner(&format!("k{k}_latents"))),
    );
    let rewards: Vec<(RewardSpec, Box<dyn DifferentiableReward<A>>)> = mixture()
        .into_iter()
        .map(|s| (s, Box::new(PixelMeanReward::default()) as _))
        .collect();
    let prompts = vec![String::new(); 2];
    let images = image_space.decode_to_unit(latents.clone());
    let r = PixelMeanReward::default().reward(images, &prompts);
    let rewards_err = max_abs(
        &values(r.to_data()),
        &values(inner(&format!("k{k}_reward"))),
    );
    let out = alignprop_loss(&image_space, latents, &prompts, &rewards);
    let loss = relative(
        &values(out.loss.to_data()),
        &values(inner(&format!("k{k}_loss"))),
    );
    let grads = lora_grads(&unet, &out.loss.backward());
    assert_eq!(grads.len(), 272, "one gradient per LoRA tensor");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for (key, grad) in grads {
        ours.extend(grad);
        theirs.extend(values(inner(&format!("k{k}_grad.{key}"))));
    }
    Errors {
        latents: latents_err,
        rewards: rewards_err,
        loss,
        grads: relative(&ours, &theirs),
    }
}

fn check<A: AutodiffBackend>(label: &str) {
    for k in [1, 2] {
        let e = run::<A>(k);
        println!("{label}, K = {k}: {e:?}");
        assert!(
            e.latents <= 1e-5 && e.rewards <= 1e-5,
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
