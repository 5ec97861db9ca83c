//! The whole tiny SDXL pipeline against `StableDiffusionXLPipeline` (diffusers 0.42.1): prompt → both
//! tokenizers and text encoders → Euler, 4 steps, guidance 5 → final latents (≤ 1e-3) → decoded image.

use crate::common;

use common::*;
use popalign_core::diffusion::pipeline::{DiffusionPipeline, sdxl_time_ids};
use popalign_core::diffusion::schedulers::{EulerDiscreteScheduler, Sampler};

fn check(golden_name: &str, negative_prompt: Option<&str>) {
    let pipeline =
        DiffusionPipeline::<B>::from_dir(&fixtures().join("tiny-sdxl"), None, &device()).unwrap();
    let golden = io(golden_name);
    let (positive, negative) = pipeline
        .encode_guidance_pair("a photo of a doctor", negative_prompt, &device())
        .unwrap();
    assert_close(
        "prompt_embeds",
        positive.hidden.clone(),
        &golden["prompt_embeds"],
        1e-4,
    );
    assert_close(
        "pooled_prompt_embeds",
        positive.pooled.clone().unwrap(),
        &golden["pooled_prompt_embeds"],
        1e-4,
    );
    assert_close(
        "negative_prompt_embeds",
        negative.hidden.clone(),
        &golden["negative_prompt_embeds"],
        1e-4,
    );
    assert_close(
        "negative_pooled",
        negative.pooled.clone().unwrap(),
        &golden["negative_pooled_prompt_embeds"],
        1e-4,
    );

    let sampler = EulerDiscreteScheduler::new(&pipeline.scheduler, 4);
    let time_ids = sdxl_time_ids::<B>((64, 96), (0, 0), (64, 96), &device());
    let init = float::<4>(&golden["latents_init"]) * Sampler::<B>::init_noise_sigma(&sampler);
    let latents = pipeline.denoise(&positive, &negative, time_ids, init, &sampler, 5.0, |_| {});
    assert_close(
        "latents_final",
        latents.clone(),
        &golden["latents_final"],
        1e-3,
    );
    assert_close(
        "image",
        pipeline.decode_to_unit(latents),
        &golden["image"],
        1e-3,
    );
}

#[test]
fn sdxl_pipeline_with_empty_negative_prompt_matches_diffusers() {
    check("pipeline_sdxl", Some(""));
}

#[test]
fn sdxl_pipeline_without_negative_prompt_uses_zero_embeddings_like_diffusers() {
    check("pipeline_sdxl_neg_none", None);
}
