//! Parity of every model component with the reference Python implementation (diffusers 0.42.1,
//! transformers 5.23.0) on tiny random models; the tolerance is max abs error ≤ 1e-4 in f32.

use crate::common;

use common::*;
use popalign_core::models::clip::ClipTextModel;
use popalign_core::models::unet::{UNet2DConditionModel, UNetConditioning};
use popalign_core::models::vae::AutoencoderKL;

const TOLERANCE: f32 = 1e-4;

fn check_text_encoder(folder: &str, io_name: &str) {
    let model =
        ClipTextModel::<B>::from_dir(&fixtures().join("tiny-sdxl").join(folder), None, &device())
            .unwrap();
    let inputs = io(&format!("{io_name}_inputs"));
    let expected = io(&format!("{io_name}_outputs"));
    let out = model.forward(int(&inputs["input_ids"]));
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
    check_text_encoder("text_encoder", "text_encoder");
}

#[test]
fn text_encoder_2_with_projection_matches_transformers() {
    check_text_encoder("text_encoder_2", "text_encoder_2");
}

fn check_unet(folder: &str, io_name: &str) {
    let unet =
        UNet2DConditionModel::<B>::from_dir(&fixtures().join(folder), None, &device()).unwrap();
    let inputs = io(&format!("{io_name}_inputs"));
    let cond = UNetConditioning {
        encoder_hidden_states: float(&inputs["encoder_hidden_states"]),
        text_embeds: inputs.get("text_embeds").map(float),
        time_ids: inputs.get("time_ids").map(float),
    };
    let out = unet.forward(float(&inputs["sample"]), float(&inputs["timestep"]), &cond);
    assert_close(
        io_name,
        out,
        &io(&format!("{io_name}_outputs"))["out"],
        TOLERANCE,
    );
}

#[test]
fn sdxl_unet_matches_diffusers_with_per_sample_timesteps() {
    check_unet("tiny-sdxl/unet", "unet_sdxl");
}

#[test]
fn sd15_unet_matches_diffusers() {
    check_unet("tiny-sd15-unet", "unet_sd15");
}

#[test]
fn sd15_unet_matches_diffusers_on_odd_latent_sizes() {
    check_unet("tiny-sd15-unet", "unet_sd15_odd");
}

#[test]
fn vae_encode_and_decode_match_diffusers() {
    let vae =
        AutoencoderKL::<B>::from_dir(&fixtures().join("tiny-sdxl/vae"), None, &device()).unwrap();
    let (mean, logvar) = vae.encode(float(&io("vae_encode_inputs")["image"]));
    let expected = io("vae_encode_outputs");
    assert_close("vae mean", mean, &expected["mean"], TOLERANCE);
    assert_close("vae logvar", logvar, &expected["logvar"], TOLERANCE);
    let decoded = vae.decode(float(&io("vae_decode_inputs")["latents"]));
    assert_close(
        "vae decoded",
        decoded,
        &io("vae_decode_outputs")["decoded"],
        TOLERANCE,
    );
}
