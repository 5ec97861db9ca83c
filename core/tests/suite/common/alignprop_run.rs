//! One AlignProp run of `tools/fixtures/make_alignprop.py` in Rust: S = 3 DDIM steps with CFG 5 through the
//! tiny SDXL U-Net + LoRA, gradient through the last K, VAE decode, the pixel-mean reward and the reward
//! mixture. Shared by the f32 parity test and the bf16 one.
#![allow(dead_code)]

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use popalign_core::align::objectives::alignprop::{
    DifferentiableReward, PixelMeanReward, RewardLossMode, RewardSpec, Trajectory, Truncation,
    alignprop_loss, sample_truncated,
};
use popalign_core::diffusion::pipeline::PromptEmbeds;
use popalign_core::diffusion::precision::Precision;
use popalign_core::diffusion::schedulers::{DdimScheduler, SchedulerConfig};
use popalign_core::models::unet::UNet2DConditionModel;
use popalign_core::models::vae::ImageSpace;
use popalign_core::nn::lora::{LoraConfig, TrainOnlyLora};

use super::lora_unet::{lora_grads, values};
use super::{fixtures, io};

pub const STEPS: usize = 3;
const GUIDANCE: f64 = 5.0;

/// What one run gives: final latents, rewards, the loss, and every LoRA gradient (PyTorch layout, the
/// tensors in key order, concatenated) with the same tensors of a golden file under `k<K>_grad.<key>`.
pub struct AlignPropRun {
    pub latents: Vec<f64>,
    pub rewards: Vec<f64>,
    pub loss: f64,
    pub grads: Vec<f64>,
    pub keys: Vec<String>,
}

impl AlignPropRun {
    /// The gradients of `file` (`k<K>_grad.<key>`) in this run's order.
    pub fn golden_grads(&self, file: &str, k: usize) -> Vec<f64> {
        let golden = io(file);
        self.keys
            .iter()
            .flat_map(|key| values(golden[&format!("k{k}_grad.{key}")].clone()))
            .collect()
    }
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

pub fn run_alignprop<A: AutodiffBackend>(k: usize, precision: Precision) -> AlignPropRun {
    let device = Default::default();
    let golden = io("alignprop");
    let inner = |name: &str| golden[name].clone().convert::<f32>();
    let unet = UNet2DConditionModel::<A>::from_dir_with_lora(
        &fixtures().join("tiny-sdxl/unet"),
        None,
        Some(&LoraConfig::new(2, 2.0)),
        &device,
    )
    .unwrap()
    .load_lora(&fixtures().join("io/lora_tiny.safetensors"))
    .unwrap();
    let unet = precision.store_frozen(TrainOnlyLora::apply(unet));
    let image_space =
        ImageSpace::<A>::from_root(&fixtures().join("tiny-sdxl"), false, None, &device)
            .unwrap()
            .no_grad();
    let scheduler_config: SchedulerConfig = popalign_core::io::load::read_config(
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
        precision,
    };
    let latents = sample_truncated(&unet, &trajectory, &mut |_| None);
    let rewards: Vec<(RewardSpec, Box<dyn DifferentiableReward<A>>)> = mixture()
        .into_iter()
        .map(|s| (s, Box::new(PixelMeanReward::default()) as _))
        .collect();
    let prompts = vec![String::new(); 2];
    let images = image_space.decode_to_unit(latents.clone());
    let r = PixelMeanReward::default().reward(images, &prompts);
    let latents_values = values(latents.to_data());
    let out = alignprop_loss(&image_space, latents, &prompts, &rewards);
    let loss = values(out.loss.to_data())[0];
    let grads = lora_grads(&unet, &out.loss.backward());
    assert_eq!(grads.len(), 272, "one gradient per LoRA tensor");
    AlignPropRun {
        latents: latents_values,
        rewards: values(r.to_data()),
        loss,
        keys: grads.keys().cloned().collect(),
        grads: grads.into_values().flatten().collect(),
    }
}
