//! The models on burn-cubecl's kernels, the ones burn-cuda runs too, through burn-wgpu on the machine's
//! Vulkan adapter (Mesa's lavapipe, Vulkan on the CPU, in CI: `apt-get install mesa-vulkan-drivers`).
//! burn-cuda itself needs a GPU; `bench/gpu/run.sh` runs these models there.
//!
//! What is checked here, on cubecl, and nowhere else in CI:
//! - every component against the diffusers/transformers goldens (max abs error ≤ 1e-4, as on ndarray);
//! - the tiny SDXL U-Net with a peft LoRA: outputs and per-sample errors against diffusers + peft, and the
//!   SFT loss's LoRA gradients against PyTorch autograd;
//! - LoRA training with AdamW, stopped after one step and resumed from saved module and optimiser records,
//!   ends with the same bits as two uninterrupted steps (what `popalign train --resume` relies on: the
//!   second step reads the optimiser's moments, and the kernels must repeat themselves exactly).

use crate::common;
use crate::models::{check_text_encoder, check_unet, check_vae};

use burn::backend::wgpu::WgpuDevice;
use burn::backend::{Autodiff, Wgpu};
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use common::io;
use common::lora_unet::{Batch, batch, lora_unet, pair_errors, run};
use popalign_core::align::objectives::popalign::{PopAlignConfig, SingleWorker, popalign_loss};
use popalign_core::models::unet::UNet2DConditionModel;

type A = Autodiff<Wgpu>;

/// burn-wgpu's default device: a discrete GPU where there is one, else any adapter (lavapipe here).
fn device() -> WgpuDevice {
    WgpuDevice::default()
}

#[test]
fn every_component_matches_the_reference_on_cubecl() {
    check_text_encoder::<Wgpu>("text_encoder", "text_encoder", &device());
    check_text_encoder::<Wgpu>("text_encoder_2", "text_encoder_2", &device());
    check_unet::<Wgpu>("tiny-sdxl/unet", "unet_sdxl", &device());
    check_unet::<Wgpu>("tiny-sd15-unet", "unet_sd15", &device());
    check_vae::<Wgpu>(&device());
}

/// The same bounds as the f32 ndarray run (`objectives_unet.rs`) for outputs and errors. Of the losses and
/// gradients only SFT's are bounded: β = 5000 amplifies f32 rounding in the DPO-style ones (that file says
/// why; they are checked in f64 there).
#[test]
fn lora_unet_outputs_errors_and_sft_gradients_match_pytorch_on_cubecl() {
    let m = run::<A>("objectives_unet");
    println!(
        "cubecl f32: U-Net outputs max abs error {:.2e}, per-sample errors {:.2e}; (objective, loss rel, grad rel) {:?}",
        m.output, m.e, m.objectives
    );
    assert!(m.output <= 1e-4 && m.e <= 1e-6);
    let (_, sft_loss, sft_grads) = m.objectives[2];
    assert!(sft_loss <= 1e-5 && sft_grads <= 1e-4, "{:?}", m.objectives);
}

/// One AdamW step of the PopAlign objective on the golden batch.
fn step(
    unet: UNet2DConditionModel<A>,
    optimizer: &mut impl Optimizer<UNet2DConditionModel<A>, A>,
    batch: &Batch<A>,
) -> UNet2DConditionModel<A> {
    let errors = pair_errors(&unet, batch);
    let loss = popalign_loss(&errors, &PopAlignConfig::default(), &SingleWorker).loss;
    let grads = GradientsParams::from_grads(loss.backward(), &unet);
    optimizer.step(1e-3, unet, grads)
}

fn weights(unet: &UNet2DConditionModel<A>) -> Vec<u8> {
    BinBytesRecorder::<FullPrecisionSettings>::default()
        .record(unet.clone().into_record(), ())
        .unwrap()
}

#[test]
fn lora_training_on_cubecl_resumed_from_saved_records_ends_with_identical_weights() {
    let device = device();
    let batch = batch::<A>(&io("objectives_unet"), &device);
    let optimizer = || AdamWConfig::new().init::<A, UNet2DConditionModel<A>>();
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();

    let start = lora_unet::<A>(&device);
    let mut straight = (start.clone(), optimizer());
    for _ in 0..2 {
        straight.0 = step(straight.0, &mut straight.1, &batch);
    }

    let mut first = (start.clone(), optimizer());
    first.0 = step(first.0, &mut first.1, &batch);
    let saved_module = weights(&first.0);
    let saved_optimizer = recorder.record(first.1.to_record(), ()).unwrap();
    drop(first);

    // A fresh process would build the model and the optimiser anew, then load both records.
    let module_record = recorder.load(saved_module, &device).unwrap();
    let mut resumed = (
        lora_unet::<A>(&device).load_record(module_record),
        optimizer().load_record(recorder.load(saved_optimizer, &device).unwrap()),
    );
    resumed.0 = step(resumed.0, &mut resumed.1, &batch);

    assert_ne!(
        weights(&straight.0),
        weights(&start),
        "two steps changed nothing"
    );
    assert!(
        weights(&resumed.0) == weights(&straight.0),
        "the resumed run's weights differ from the uninterrupted run's"
    );
}
