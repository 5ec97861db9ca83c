//! `popalign run-module --model DIR --component C --inputs IN.safetensors --out OUT.safetensors`
//!
//! Tensor names are the design's contract (§4): `unet` takes `sample`, `timestep`,
//! `encoder_hidden_states` (+ `text_embeds`, `time_ids`) and writes `out`; `vae-encode` `image` →
//! `mean`, `logvar`; `vae-decode` `latents` → `decoded`; `text-encoder[-2]` `input_ids` →
//! `last_hidden_state`, `penultimate`, `pooled` (+ `text_embeds`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use popalign_core::io::load::{component_dir, read_config};
use popalign_core::io::tensor_io::{read_tensors, write_tensors};
use popalign_core::models::clip::ClipTextModel;
use popalign_core::models::unet::{UNet2DConditionModel, UNetConditioning, UNetConfig};
use popalign_core::models::vae::AutoencoderKL;

use crate::backend::{Backend as B, device};
use crate::error::{CliError, CliResult, input};

const COMPONENTS: &str = "unet, vae-encode, vae-decode, text-encoder, text-encoder-2";

#[derive(clap::Args)]
pub struct Args {
    /// A diffusers model root, or the component's own folder, or a Hugging Face repo id in the local cache.
    #[arg(long)]
    model: PathBuf,
    /// One of: unet, vae-encode, vae-decode, text-encoder, text-encoder-2.
    #[arg(long)]
    component: String,
    #[arg(long)]
    inputs: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Weight variant, e.g. `fp16` for `*.fp16.safetensors`.
    #[arg(long)]
    variant: Option<String>,
    /// A diffusers LoRA file (`pytorch_lora_weights.safetensors`) applied to the U-Net.
    #[arg(long)]
    lora: Option<PathBuf>,
}

/// The named input tensors of one call, with the file they came from for error messages.
struct Inputs {
    file: PathBuf,
    tensors: BTreeMap<String, TensorData>,
}

impl Inputs {
    fn get(&self, name: &str) -> CliResult<&TensorData> {
        self.tensors.get(name).ok_or_else(|| {
            input(format!(
                "{}: missing input tensor `{name}`",
                self.file.display()
            ))
        })
    }

    /// A float tensor of rank `D` whose shape passes `check` (given as `expected` in the error).
    fn float<const D: usize>(
        &self,
        name: &str,
        expected: &str,
        check: impl Fn(&[usize]) -> bool,
    ) -> CliResult<Tensor<B, D>> {
        let data = self.get(name)?;
        let shape = data.shape.to_vec();
        if shape.len() != D || !check(&shape) {
            return Err(input(format!(
                "{}: tensor `{name}` has shape {shape:?}, expected {expected}",
                self.file.display()
            )));
        }
        Ok(Tensor::from_data(
            data.clone().convert_dtype(DType::F32),
            &device(),
        ))
    }
}

pub fn run(mut args: Args) -> CliResult {
    args.model = crate::hub::resolve_model(&args.model, Path::new(""))?;
    let known = [
        "unet",
        "vae-encode",
        "vae-decode",
        "text-encoder",
        "text-encoder-2",
    ];
    if !known.contains(&args.component.as_str()) {
        return Err(input(format!(
            "unknown component `{}` (expected one of: {COMPONENTS})",
            args.component
        )));
    }
    let inputs = Inputs {
        file: args.inputs.clone(),
        tensors: read_tensors(&args.inputs)?,
    };
    let variant = args.variant.as_deref();
    let outputs = match args.component.as_str() {
        "unet" => run_unet(
            &component_dir(&args.model, "unet"),
            variant,
            args.lora.as_deref(),
            &inputs,
        )?,
        "vae-encode" | "vae-decode" => run_vae(
            &component_dir(&args.model, "vae"),
            variant,
            &args.component,
            &inputs,
        )?,
        "text-encoder" => run_text(
            &component_dir(&args.model, "text_encoder"),
            variant,
            &inputs,
        )?,
        _ => run_text(
            &component_dir(&args.model, "text_encoder_2"),
            variant,
            &inputs,
        )?,
    };
    let data: BTreeMap<String, TensorData> = outputs.into_iter().collect();
    write_tensors(&args.out, &data).map_err(CliError::Runtime)
}

fn run_unet(
    dir: &Path,
    variant: Option<&str>,
    lora: Option<&Path>,
    inputs: &Inputs,
) -> CliResult<Vec<(String, TensorData)>> {
    let config: UNetConfig = read_config(&dir.join("config.json"))?;
    let unet = UNet2DConditionModel::<B>::from_dir_and_lora_file(dir, variant, lora, &device())?;
    let sample: Tensor<B, 4> = inputs.float(
        "sample",
        &format!("[B, {}, h, w]", config.in_channels),
        |s| s[1] == config.in_channels,
    )?;
    let batch = sample.dims()[0];
    let timestep: Tensor<B, 1> =
        inputs.float("timestep", &format!("[{batch}] (one per sample)"), |s| {
            s[0] == batch
        })?;
    let cross = config.cross_attention_dim;
    let encoder_hidden_states = inputs.float(
        "encoder_hidden_states",
        &format!("[{batch}, L, {cross}]"),
        |s| s[0] == batch && s[2] == cross,
    )?;
    let (text_embeds, time_ids) = if unet.needs_added_conditioning() {
        let time_dim = config.addition_time_embed_dim.unwrap_or(0);
        let pooled = config
            .projection_class_embeddings_input_dim
            .unwrap_or(0)
            .saturating_sub(6 * time_dim);
        (
            Some(
                inputs.float("text_embeds", &format!("[{batch}, {pooled}]"), |s| {
                    s == [batch, pooled]
                })?,
            ),
            Some(inputs.float("time_ids", &format!("[{batch}, 6]"), |s| s == [batch, 6])?),
        )
    } else {
        (None, None)
    };
    let cond = UNetConditioning {
        encoder_hidden_states,
        text_embeds,
        time_ids,
    };
    let out = unet.forward(sample, timestep, &cond);
    Ok(vec![("out".into(), out.into_data())])
}

fn run_vae(
    dir: &Path,
    variant: Option<&str>,
    component: &str,
    inputs: &Inputs,
) -> CliResult<Vec<(String, TensorData)>> {
    let vae = AutoencoderKL::<B>::from_dir(dir, variant, &device())?;
    if component == "vae-encode" {
        let image: Tensor<B, 4> = inputs.float("image", "[B, 3, H, W]", |s| s[1] == 3)?;
        let (mean, logvar) = vae.encode(image);
        Ok(vec![
            ("mean".into(), mean.into_data()),
            ("logvar".into(), logvar.into_data()),
        ])
    } else {
        let latent = vae.decoder.conv_in.weight.dims()[1];
        let latents: Tensor<B, 4> =
            inputs.float("latents", &format!("[B, {latent}, h, w]"), |s| {
                s[1] == latent
            })?;
        Ok(vec![("decoded".into(), vae.decode(latents).into_data())])
    }
}

fn run_text(
    dir: &Path,
    variant: Option<&str>,
    inputs: &Inputs,
) -> CliResult<Vec<(String, TensorData)>> {
    let model = ClipTextModel::<B>::from_dir(dir, variant, &device())?;
    let data = inputs.get("input_ids")?;
    let positions = model.text_model.embeddings.position_embedding.weight.dims()[0];
    let vocab = model.text_model.embeddings.token_embedding.weight.dims()[0];
    let shape = data.shape.to_vec();
    if shape.len() != 2 || shape[1] > positions {
        return Err(input(format!(
            "{}: tensor `input_ids` has shape {shape:?}, expected [B, ≤{positions}]",
            inputs.file.display()
        )));
    }
    let ids = data.clone().convert_dtype(DType::I64);
    let values = ids
        .to_vec::<i64>()
        .map_err(|e| input(format!("input_ids: {e:?}")))?;
    if let Some(bad) = values.iter().find(|&&v| v < 0 || v >= vocab as i64) {
        return Err(input(format!(
            "{}: `input_ids` holds id {bad}, outside the vocabulary of {vocab}",
            inputs.file.display()
        )));
    }
    let out = model.forward(Tensor::from_data(ids, &device()));
    let mut result = vec![
        (
            "last_hidden_state".into(),
            out.last_hidden_state.into_data(),
        ),
        ("penultimate".into(), out.penultimate.into_data()),
        ("pooled".into(), out.pooled.into_data()),
    ];
    if let Some(embeds) = out.text_embeds {
        result.push(("text_embeds".into(), embeds.into_data()));
    }
    Ok(result)
}
