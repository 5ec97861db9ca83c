//! The objectives on the tiny SDXL U-Net with a peft LoRA, against PyTorch autograd through diffusers +
//! peft: the LoRA U-Net output, the per-sample errors, the losses and the gradient of every LoRA parameter.
//!
//! β = 5000 multiplies the float rounding of `g = e_ref − e_θ` (≈ 1e-7 in f32) into ≈ 1e-4 relative noise in
//! losses and gradients, in the reference as much as in ours. So the f32 run checks what f32 can show
//! (outputs ≤ 1e-4, errors ≤ 1e-6), and losses and gradients are checked in f64 against an f64 reference
//! at 1e-5 relative, as the issue asks.

use crate::common;

use burn::backend::{Autodiff, NdArray};
use common::lora_unet::run;

#[test]
fn lora_unet_outputs_and_errors_match_pytorch_in_f32() {
    let m = run::<Autodiff<NdArray<f32>>>("objectives_unet");
    println!(
        "f32: U-Net outputs max abs error {:.2e}, per-sample errors {:.2e}; losses/grads {:?}",
        m.output, m.e, m.objectives
    );
    assert!(m.output <= 1e-4 && m.e <= 1e-6);
}
