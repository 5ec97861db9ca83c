//! Losses and LoRA gradients on the tiny U-Net in f64 against an f64 PyTorch reference (1e-5 relative).
//! A test binary of its own: burn's per-device default dtype is process-wide, so f32 and f64 backends
//! must not share a process.

use crate::common;

use burn::backend::{Autodiff, NdArray};
use common::fixtures;
use common::lora_unet::run;

#[test]
fn losses_and_lora_gradients_match_pytorch_in_f64() {
    if !fixtures()
        .join("io/objectives_unet_f64.safetensors")
        .exists()
    {
        panic!(
            "fixtures/io/objectives_unet_f64.safetensors missing: run tools/fixtures/make_objectives.py"
        );
    }
    let m = run::<Autodiff<NdArray<f64>>>("objectives_unet_f64");
    println!(
        "f64: U-Net outputs max abs error {:.2e}, per-sample errors {:.2e}",
        m.output, m.e
    );
    for (name, loss_rel, grad_rel) in &m.objectives {
        println!(
            "f64 {name}: loss relative error {loss_rel:.2e}, gradient max error / max |grad| {grad_rel:.2e}"
        );
    }
    for (name, loss_rel, grad_rel) in &m.objectives {
        assert!(*loss_rel <= 1e-5 && *grad_rel <= 1e-5, "{name}");
    }
    assert!(
        m.output <= 1e-6 && m.e <= 1e-8,
        "f64 outputs {:.2e}, errors {:.2e}",
        m.output,
        m.e
    );
}
