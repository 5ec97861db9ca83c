//! Loading the layouts users have (fp16 variants, transformers-5 keys without `text_model.`, legacy VAE
//! attention names) and refusing broken inputs with an error that names the file, the key and the shapes.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::TensorData;
use common::*;
use popalign_core::io::load::LoadError;
use popalign_core::io::tensor_io::{read_tensors, write_tensors};
use popalign_core::models::clip::ClipTextModel;
use popalign_core::models::unet::{UNet2DConditionModel, UNetConditioning};
use popalign_core::models::vae::AutoencoderKL;

/// Copies a component folder into a temp dir, rewriting its weights with `edit`.
fn edited_copy(
    component: &str,
    weights: &str,
    edit: impl FnOnce(&mut BTreeMap<String, TensorData>),
) -> tempfile::TempDir {
    let src = fixtures().join("tiny-sdxl").join(component);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let mut tensors = read_tensors(&src.join(weights)).unwrap();
    edit(&mut tensors);
    write_tensors(&dir.path().join(weights), &tensors).unwrap();
    dir
}

fn rename_keys(tensors: &mut BTreeMap<String, TensorData>, f: impl Fn(&str) -> String) {
    let old = std::mem::take(tensors);
    tensors.extend(old.into_iter().map(|(k, v)| (f(&k), v)));
}

fn run_unet(dir: &Path, variant: Option<&str>) -> Result<burn::tensor::Tensor<B, 4>, LoadError> {
    let unet = UNet2DConditionModel::<B>::from_dir(dir, variant, &device())?;
    let inputs = io("unet_sdxl_inputs");
    let cond = UNetConditioning {
        encoder_hidden_states: float(&inputs["encoder_hidden_states"]),
        text_embeds: Some(float(&inputs["text_embeds"])),
        time_ids: Some(float(&inputs["time_ids"])),
    };
    Ok(unet.forward(float(&inputs["sample"]), float(&inputs["timestep"]), &cond))
}

#[test]
fn fp16_variant_loads_into_f32_model() {
    let out = run_unet(&fixtures().join("tiny-sdxl/unet"), Some("fp16")).unwrap();
    // diffusers itself, upcasting the same fp16 file, is 1.0e-3 away from the fp32 golden.
    assert_close(
        "unet from fp16 weights",
        out,
        &io("unet_sdxl_outputs")["out"],
        2e-3,
    );
}

#[test]
fn text_encoder_without_text_model_prefix_loads() {
    let dir = edited_copy("text_encoder", "model.safetensors", |t| {
        rename_keys(t, |k| k.trim_start_matches("text_model.").to_string())
    });
    let model = ClipTextModel::<B>::from_dir(dir.path(), None, &device()).unwrap();
    let out = model.forward(int(&io("text_encoder_inputs")["input_ids"]));
    assert_close(
        "te1 (no prefix)",
        out.last_hidden_state,
        &io("text_encoder_outputs")["last_hidden_state"],
        1e-4,
    );
}

#[test]
fn legacy_vae_attention_names_load() {
    let dir = edited_copy("vae", "diffusion_pytorch_model.safetensors", |t| {
        rename_keys(t, |k| {
            k.replace(".to_q.", ".query.")
                .replace(".to_k.", ".key.")
                .replace(".to_v.", ".value.")
                .replace(".to_out.0.", ".proj_attn.")
        })
    });
    let vae = AutoencoderKL::<B>::from_dir(dir.path(), None, &device()).unwrap();
    let decoded = vae.decode(float(&io("vae_decode_inputs")["latents"]));
    assert_close(
        "vae (legacy names)",
        decoded,
        &io("vae_decode_outputs")["decoded"],
        1e-4,
    );
}

fn unet_error(edit: impl FnOnce(&mut BTreeMap<String, TensorData>)) -> String {
    let dir = edited_copy("unet", "diffusion_pytorch_model.safetensors", edit);
    let error = run_unet(dir.path(), None)
        .err()
        .expect("loading must fail")
        .to_string();
    println!("{error}");
    error
}

#[test]
fn wrong_shape_names_key_and_shapes() {
    let error = unet_error(|t| {
        t.insert(
            "conv_in.weight".into(),
            TensorData::new(vec![0f32; 8 * 4 * 3 * 5], [8, 4, 3, 5]),
        );
    });
    assert!(
        error.contains("diffusion_pytorch_model.safetensors"),
        "{error}"
    );
    assert!(
        error.contains("conv_in.weight")
            && error.contains("[8, 4, 3, 3]")
            && error.contains("[8, 4, 3, 5]"),
        "{error}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let error = unet_error(|t| {
        t.remove("mid_block.resnets.1.conv2.bias");
    });
    assert!(
        error.contains("missing tensor `mid_block.resnets.1.conv2.bias`"),
        "{error}"
    );
}

#[test]
fn unexpected_tensor_is_named() {
    let error = unet_error(|t| {
        t.insert("extra.weight".into(), TensorData::new(vec![0f32; 2], [2]));
    });
    assert!(
        error.contains("unexpected tensor `extra.weight`"),
        "{error}"
    );
}

#[test]
fn truncated_safetensors_is_refused() {
    let dir = edited_copy("unet", "diffusion_pytorch_model.safetensors", |_| {});
    let file = dir.path().join("diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let error = run_unet(dir.path(), None)
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        error.contains("diffusion_pytorch_model.safetensors")
            && error.contains("cannot read safetensors"),
        "{error}"
    );
}

#[test]
fn config_with_wrong_field_type_is_refused() {
    let dir = edited_copy("unet", "diffusion_pytorch_model.safetensors", |_| {});
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "\"cross_attention_dim\": 48",
        "\"cross_attention_dim\": \"wide\"",
    );
    std::fs::write(&config, text).unwrap();
    let error = run_unet(dir.path(), None)
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        error.contains("config.json") && error.contains("invalid config"),
        "{error}"
    );
}
