//! Parity of every model component with the reference Python implementation (diffusers 0.42.1,
//! transformers 5.23.0) on tiny random models; the tolerance is max abs error ≤ 1e-4 in f32. The checks are
//! generic over the backend: `cubecl.rs` runs them on burn-cubecl's kernels too.

use crate::common;

use burn::prelude::Backend;
use burn::tensor::{Int, Tensor};
use common::*;
use popalign_core::models::clip::ClipTextModel;
use popalign_core::models::unet::{UNet2DConditionModel, UNetConditioning};
use popalign_core::models::vae::AutoencoderKL;

const TOLERANCE: f32 = 1e-4;

pub(crate) fn check_text_encoder<Bk: Backend>(folder: &str, io_name: &str, device: &Bk::Device) {
    let model =
        ClipTextModel::<Bk>::from_dir(&fixtures().join("tiny-sdxl").join(folder), None, device)
            .unwrap();
    let inputs = io(&format!("{io_name}_inputs"));
    let expected = io(&format!("{io_name}_outputs"));
    let out = model.forward(Tensor::<Bk, 2, Int>::from_data(
        inputs["input_ids"].clone(),
        device,
    ));
    assert_close(
        &format!("{folder} last_hidden_state"),
        out.last_hidden_state,
        &expected["last_hidden_state"],
        TOLERANCE,
    );
    assert_close(
        &format!("{folder} penultimate"),
        out.penultimate,
        &expected["penultimate"],
        TOLERANCE,
    );
    assert_close(
        &format!("{folder} pooled"),
        out.pooled,
        &expected["pooled"],
        TOLERANCE,
    );
    if let Some(text_embeds) = expected.get("text_embeds") {
        assert_close(
            &format!("{folder} text_embeds"),
            out.text_embeds.expect("projection"),
            text_embeds,
            TOLERANCE,
        );
    }
}

#[test]
fn text_encoder_matches_transformers() {
    check_text_encoder::<B>("text_encoder", "text_encoder", &device());
}

#[test]
fn text_encoder_2_with_projection_matches_transformers() {
    check_text_encoder::<B>("text_encoder_2", "text_encoder_2", &device());
}

pub(crate) fn check_unet<Bk: Backend>(folder: &str, io_name: &str, device: &Bk::Device) {
    let unet =
        UNet2DConditionModel::<Bk>::from_dir(&fixtures().join(folder), None, device).unwrap();
    let inputs = io(&format!("{io_name}_inputs"));
    let cond = UNetConditioning {
        encoder_hidden_states: float_on(&inputs["encoder_hidden_states"], device),
        text_embeds: inputs.get("text_embeds").map(|t| float_on(t, device)),
        time_ids: inputs.get("time_ids").map(|t| float_on(t, device)),
    };
    let out = unet.forward(
        float_on(&inputs["sample"], device),
        float_on(&inputs["timestep"], device),
        &cond,
    );
    assert_close(
        io_name,
        out,
        &io(&format!("{io_name}_outputs"))["out"],
        TOLERANCE,
    );
}

#[test]
fn sdxl_unet_matches_diffusers_with_per_sample_timesteps() {
    check_unet::<B>("tiny-sdxl/unet", "unet_sdxl", &device());
}

#[test]
fn sd15_unet_matches_diffusers() {
    check_unet::<B>("tiny-sd15-unet", "unet_sd15", &device());
}

#[test]
fn sd15_unet_matches_diffusers_on_odd_latent_sizes() {
    check_unet::<B>("tiny-sd15-unet", "unet_sd15_odd", &device());
}

#[test]
fn vae_encode_and_decode_match_diffusers() {
    check_vae::<B>(&device());
}

pub(crate) fn check_vae<Bk: Backend>(device: &Bk::Device) {
    let vae =
        AutoencoderKL::<Bk>::from_dir(&fixtures().join("tiny-sdxl/vae"), None, device).unwrap();
    let (mean, logvar) = vae.encode(float_on(&io("vae_encode_inputs")["image"], device));
    let expected = io("vae_encode_outputs");
    assert_close("vae mean", mean, &expected["mean"], TOLERANCE);
    assert_close("vae logvar", logvar, &expected["logvar"], TOLERANCE);
    let decoded = vae.decode(float_on(&io("vae_decode_inputs")["latents"], device));
    assert_close(
        "vae decoded",
        decoded,
        &io("vae_decode_outputs")["decoded"],
        TOLERANCE,
    );
}
