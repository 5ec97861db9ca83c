//! The objectives on the tiny SDXL U-Net with a peft LoRA, shared by the f32 and f64 test binaries.
#![allow(dead_code)]

use std::collections::BTreeMap;

use super::{fixtures, io};

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;
use popalign_core::align::objectives::dpo::dpo_loss;
use popalign_core::align::objectives::popalign::{PopAlignConfig, SingleWorker, popalign_loss};
use popalign_core::align::objectives::sft::sft_loss;
use popalign_core::align::objectives::{PairErrors, per_sample_mse};
use popalign_core::models::unet::{UNet2DConditionModel, UNetConditioning};
use popalign_core::nn::lora::{DisableLora, LoraConfig, TrainOnlyLora};
use popalign_core::nn::params::checkpoint_key;

pub fn values(data: TensorData) -> Vec<f64> {
    data.convert::<f64>().to_vec::<f64>().unwrap()
}

/// Max |a − b| divided by max |b|.
pub fn relative(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f64, f64::max)
        / scale
}

pub fn max_abs(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f64, f64::max)
}

/// Gradients of the LoRA parameters by diffusers key, in PyTorch's [out, in] layout.
pub fn lora_grads<A: AutodiffBackend>(
    unet: &UNet2DConditionModel<A>,
    grads: &A::Gradients,
) -> BTreeMap<String, Vec<f64>> {
    struct Visitor<'a, A: AutodiffBackend>(
        Vec<String>,
        BTreeMap<String, Vec<f64>>,
        &'a A::Gradients,
    );
    impl<A: AutodiffBackend> ModuleVisitor<A> for Visitor<'_, A> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            if let Some(grad) = param.val().grad(self.2) {
                let data = if D == 2 {
                    grad.transpose().into_data()
                } else {
                    grad.into_data()
                };
                self.1
                    .insert(format!("unet.{}", checkpoint_key(&self.0)), values(data));
            }
        }
    }
    let mut visitor = Visitor::<A>(Vec::new(), BTreeMap::new(), grads);
    unet.visit(&mut visitor);
    visitor.1
}

/// The tiny SDXL U-Net with the peft LoRA of `lora_tiny.safetensors` (rank 2, alpha 2), only the LoRA trainable.
pub fn lora_unet<A: AutodiffBackend>(device: &A::Device) -> UNet2DConditionModel<A> {
    let unet = UNet2DConditionModel::<A>::from_dir_with_lora(
        &fixtures().join("tiny-sdxl/unet"),
        None,
        Some(&LoraConfig::new(2, 2.0)),
        device,
    )
    .unwrap()
    .load_lora(&fixtures().join("io/lora_tiny.safetensors"))
    .unwrap();
    TrainOnlyLora::apply(unet)
}

/// Our LoRA gradients against the goldens `<prefix><key>`: (max error over all 272 tensors / max |golden|,
/// the worst tensor's max error / its own max |golden|).
pub fn grad_errors(
    grads: BTreeMap<String, Vec<f64>>,
    golden: &BTreeMap<String, TensorData>,
    prefix: &str,
) -> (f64, f64) {
    assert_eq!(grads.len(), 272, "one gradient per LoRA tensor");
    let (mut ours, mut theirs, mut worst) = (Vec::new(), Vec::new(), 0f64);
    for (key, grad) in grads {
        let want = values(
            golden
                .get(&format!("{prefix}{key}"))
                .unwrap_or_else(|| panic!("no golden for {key}"))
                .clone(),
        );
        worst = worst.max(relative(&grad, &want));
        ours.extend(grad);
        theirs.extend(want);
    }
    (relative(&ours, &theirs), worst)
}

pub struct Measured {
    pub output: f64,
    pub e: f64,
    /// (objective, loss relative error, gradient max error / max |gradient|)
    pub objectives: Vec<(&'static str, f64, f64)>,
}

/// The golden batch of `objectives_unet*.safetensors`, its one example twice over.
pub struct Batch<A: Backend> {
    pub x_t: Tensor<A, 4>,
    pub timesteps: Tensor<A, 1>,
    pub cond: UNetConditioning<A>,
    pub noise: Tensor<A, 4>,
}

pub fn batch<A: Backend>(golden: &BTreeMap<String, TensorData>, device: &A::Device) -> Batch<A> {
    let tensor = |name: &str| golden[name].clone();
    let twice2 = |t: Tensor<A, 2>| Tensor::cat(vec![t.clone(), t], 0);
    let t = Tensor::<A, 1>::from_data(tensor("timesteps").convert::<f64>(), device);
    let noise = Tensor::<A, 4>::from_data(tensor("noise"), device);
    let hidden = Tensor::<A, 3>::from_data(tensor("encoder_hidden_states"), device);
    Batch {
        x_t: Tensor::from_data(tensor("x_t"), device),
        timesteps: Tensor::cat(vec![t.clone(), t], 0),
        cond: UNetConditioning {
            encoder_hidden_states: Tensor::cat(vec![hidden.clone(), hidden], 0),
            text_embeds: Some(twice2(Tensor::from_data(tensor("text_embeds"), device))),
            time_ids: Some(twice2(Tensor::from_data(tensor("time_ids"), device))),
        },
        noise: Tensor::cat(vec![noise.clone(), noise], 0),
    }
}

/// The per-sample errors of the LoRA U-Net and of its base (the reference, detached) on `batch`.
pub fn pair_errors<A: AutodiffBackend>(
    unet: &UNet2DConditionModel<A>,
    batch: &Batch<A>,
) -> PairErrors<A> {
    let (out, reference) = forward(unet, batch);
    errors(out, reference, batch)
}

fn errors<A: AutodiffBackend>(
    out: Tensor<A, 4>,
    reference: Tensor<A, 4>,
    batch: &Batch<A>,
) -> PairErrors<A> {
    PairErrors {
        e_theta: per_sample_mse(out, batch.noise.clone()),
        e_ref: per_sample_mse(reference, batch.noise.clone()),
    }
}

/// The LoRA U-Net's output and its base's (detached) on `batch`.
fn forward<A: AutodiffBackend>(
    unet: &UNet2DConditionModel<A>,
    batch: &Batch<A>,
) -> (Tensor<A, 4>, Tensor<A, 4>) {
    let out = unet.forward(batch.x_t.clone(), batch.timesteps.clone(), &batch.cond);
    let reference = DisableLora::apply(unet.clone())
        .forward(batch.x_t.clone(), batch.timesteps.clone(), &batch.cond)
        .detach();
    (out, reference)
}

pub fn run<A: AutodiffBackend>(fixture: &str) -> Measured {
    let device = Default::default();
    let golden = io(fixture);
    let tensor = |name: &str| golden[name].clone();
    let unet = lora_unet::<A>(&device);
    let batch = batch::<A>(&golden, &device);

    // One forward per objective: a backward pass consumes its graph.
    let (out, reference) = forward(&unet, &batch);
    let output = max_abs(&values(out.to_data()), &values(tensor("unet_lora_out"))).max(max_abs(
        &values(reference.to_data()),
        &values(tensor("unet_base_out")),
    ));
    let first = errors(out, reference, &batch);
    let e = max_abs(&values(first.e_theta.to_data()), &values(tensor("e_theta"))).max(max_abs(
        &values(first.e_ref.to_data()),
        &values(tensor("e_ref")),
    ));

    let mut objectives = Vec::new();
    for name in ["popalign", "dpo", "sft"] {
        let errors = pair_errors(&unet, &batch);
        let loss = match name {
            "popalign" => popalign_loss(&errors, &PopAlignConfig::default(), &SingleWorker).loss,
            "dpo" => dpo_loss(&errors, 5000.0).loss,
            _ => sft_loss(&errors).loss,
        };
        let loss_rel = relative(
            &values(loss.to_data()),
            &values(tensor(&format!("{name}_loss"))),
        );
        let grads = lora_grads(&unet, &loss.backward());
        let (grad_rel, _) = grad_errors(grads, &golden, &format!("{name}_grad."));
        objectives.push((name, loss_rel, grad_rel));
    }
    Measured {
        output,
        e,
        objectives,
    }
}
