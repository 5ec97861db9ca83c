//! The toy base model's diffusers folder: an SDXL-shaped pipeline at toy size, in pixel space.
//!
//! Both text towers are real CLIP towers (the real BPE vocabulary, 49,408 tokens) at width 32, randomly
//! initialised and frozen, as SDXL's pretrained encoders are frozen; the U-Net learns to read them.
//! There is no VAE (`"vae": [null, null]`): the U-Net denoises 16×16 RGB pixels directly. The noise
//! schedule is DDPM's linear one (β 1e-4 → 0.02), whose last step leaves almost no signal at this size.

use std::path::Path;

use burn::prelude::*;
use popalign_core::io::load;
use popalign_core::models::clip::{ClipTextConfig, ClipTextModel};
use serde_json::{Value, json};

use crate::error::{CliError, CliResult};

/// The real CLIP BPE files (from open_clip's vocabulary), shipped with the fixtures.
const VOCAB: &str = include_str!("../../../fixtures/clip-tokenizer/tokenizer/vocab.json");
const MERGES: &str = include_str!("../../../fixtures/clip-tokenizer/tokenizer/merges.txt");
const TOKENIZER_FILES: [(&str, &str); 2] = [
    (
        "tokenizer",
        include_str!("../../../fixtures/clip-tokenizer/tokenizer/special_tokens_map.json"),
    ),
    (
        "tokenizer_2",
        include_str!("../../../fixtures/clip-tokenizer/tokenizer_2/special_tokens_map.json"),
    ),
];
const TOKENIZER_CONFIG: [&str; 2] = [
    include_str!("../../../fixtures/clip-tokenizer/tokenizer/tokenizer_config.json"),
    include_str!("../../../fixtures/clip-tokenizer/tokenizer_2/tokenizer_config.json"),
];

const TEXT_WIDTH: usize = 32;

pub fn unet_config() -> Value {
    json!({
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": "0.42.1",
        "sample_size": 16,
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": [16, 32, 64],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "transformer_layers_per_block": [1, 1, 1],
        "attention_head_dim": [1, 2, 4],
        "cross_attention_dim": 2 * TEXT_WIDTH,
        "norm_num_groups": 8,
        "norm_eps": 1e-5,
        "use_linear_projection": true,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": TEXT_WIDTH + 6 * 8,
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "act_fn": "silu",
        "center_input_sample": false,
        "downsample_padding": 1,
        "mid_block_scale_factor": 1,
        "time_embedding_type": "positional",
    })
}

fn text_config(second: bool) -> Value {
    json!({
        "architectures": [if second { "CLIPTextModelWithProjection" } else { "CLIPTextModel" }],
        "model_type": "clip_text_model",
        "vocab_size": 49408,
        "hidden_size": TEXT_WIDTH,
        "intermediate_size": 2 * TEXT_WIDTH,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
        "hidden_act": if second { "gelu" } else { "quick_gelu" },
        "layer_norm_eps": 1e-5,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 1,
        "projection_dim": TEXT_WIDTH,
    })
}

fn scheduler_config() -> Value {
    json!({
        "_class_name": "DDIMScheduler",
        "beta_schedule": "linear",
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "num_train_timesteps": 1000,
        "prediction_type": "epsilon",
        "clip_sample": false,
        "set_alpha_to_one": false,
        "steps_offset": 1,
        "timestep_spacing": "leading",
    })
}

fn model_index() -> Value {
    let pair = |library: &str, class: &str| json!([library, class]);
    json!({
        "_class_name": "StableDiffusionXLPipeline",
        "_diffusers_version": "0.42.1",
        "force_zeros_for_empty_prompt": false,
        "vae": [null, null],
        "unet": pair("diffusers", "UNet2DConditionModel"),
        "scheduler": pair("diffusers", "DDIMScheduler"),
        "text_encoder": pair("transformers", "CLIPTextModel"),
        "text_encoder_2": pair("transformers", "CLIPTextModelWithProjection"),
        "tokenizer": pair("transformers", "CLIPTokenizer"),
        "tokenizer_2": pair("transformers", "CLIPTokenizer"),
    })
}

fn write(path: &Path, contents: &[u8]) -> CliResult {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| CliError::Runtime(format!("{}: {e}", parent.display())))?;
    }
    std::fs::write(path, contents)
        .map_err(|e| CliError::Runtime(format!("{}: {e}", path.display())))
}

fn write_json(path: &Path, value: &Value) -> CliResult {
    write(
        path,
        serde_json::to_string_pretty(value)
            .expect("json")
            .as_bytes(),
    )
}

/// Writes everything but the U-Net weights: configs, tokenizers, and freshly initialised text towers
/// (drawn from the backend's RNG, which the caller seeds).
pub fn write_frozen_parts<B: Backend>(root: &Path, device: &B::Device) -> CliResult {
    write_json(&root.join("model_index.json"), &model_index())?;
    write_json(
        &root.join("scheduler/scheduler_config.json"),
        &scheduler_config(),
    )?;
    write_json(&root.join("unet/config.json"), &unet_config())?;
    for (i, (folder, special)) in TOKENIZER_FILES.iter().enumerate() {
        let dir = root.join(folder);
        write(&dir.join("vocab.json"), VOCAB.as_bytes())?;
        write(&dir.join("merges.txt"), MERGES.as_bytes())?;
        write(&dir.join("special_tokens_map.json"), special.as_bytes())?;
        write(
            &dir.join("tokenizer_config.json"),
            TOKENIZER_CONFIG[i].as_bytes(),
        )?;
    }
    for (folder, second) in [("text_encoder", false), ("text_encoder_2", true)] {
        let config = text_config(second);
        write_json(&root.join(folder).join("config.json"), &config)?;
        let parsed: ClipTextConfig = serde_json::from_value(config).expect("valid config");
        let file = root.join(folder).join("model.safetensors");
        load::save_weights(
            &ClipTextModel::<B>::new(&parsed, device),
            &file,
            |_, _| true,
            &[],
        )
        .map_err(CliError::Runtime)?;
        to_half_precision(&file)?;
    }
    Ok(())
}

/// Rewrites a safetensors file with every f32 tensor stored as f16, halving what the repository
/// carries; the loader casts back to the model's float type.
fn to_half_precision(file: &Path) -> CliResult {
    use safetensors::{Dtype, SafeTensors, tensor::TensorView};
    let bytes =
        std::fs::read(file).map_err(|e| CliError::Runtime(format!("{}: {e}", file.display())))?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| CliError::Runtime(e.to_string()))?;
    let mut converted = Vec::new();
    for (name, view) in tensors.tensors() {
        let data: Vec<u8> = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .flat_map(|b| {
                    half::f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes()
                })
                .collect(),
            _ => view.data().to_vec(),
        };
        let dtype = if view.dtype() == Dtype::F32 {
            Dtype::F16
        } else {
            view.dtype()
        };
        converted.push((name, dtype, view.shape().to_vec(), data));
    }
    let views: Vec<(String, TensorView)> = converted
        .iter()
        .map(|(name, dtype, shape, data)| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), data).expect("consistent view"),
            )
        })
        .collect();
    let out = safetensors::serialize(views, None).map_err(|e| CliError::Runtime(e.to_string()))?;
    write(file, &out)
}
