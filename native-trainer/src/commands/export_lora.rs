//! `popalign export-lora --lora FILE --model M --out FILE`: a LoRA file of ours in the layout another tool
//! loads. Training writes the same file beside each checkpoint when asked (`[train] export = ["kohya"]`).

use std::path::{Path, PathBuf};

use popalign_core::io::load::read_config;
use popalign_core::models::unet::config::UNetConfig;
use popalign_core::models::unet::kohya;

use crate::error::{CliResult, input};

#[derive(clap::Args)]
pub struct Args {
    /// A diffusers/peft U-Net LoRA file written by `popalign train` (`pytorch_lora_weights.safetensors`).
    #[arg(long)]
    lora: PathBuf,
    /// The model the LoRA was trained on (a diffusers folder or a Hugging Face repo id); its
    /// `unet/config.json` decides the layout's module names.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_enum, default_value = "kohya")]
    format: LoraExport,
    /// Where to write the converted file.
    #[arg(long)]
    out: PathBuf,
}

/// Layouts a trained LoRA can be exported in, besides the diffusers/peft file every checkpoint has.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoraExport {
    /// `lora_unet_*` keys with `alpha` tensors: ComfyUI, Automatic1111, kohya's scripts.
    Kohya,
}

impl LoraExport {
    /// The exported file's name inside a checkpoint folder.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Kohya => "lora_kohya.safetensors",
        }
    }

    /// Writes `peft_file` in this layout to `out`, for the U-Net whose `config.json` is `unet_config`.
    pub fn write(self, peft_file: &Path, unet_config: &Path, out: &Path) -> CliResult {
        let config: UNetConfig = read_config(unet_config)?;
        match self {
            Self::Kohya => kohya::write_kohya(peft_file, &config, out).map_err(input),
        }
    }
}

pub fn run(args: Args) -> CliResult {
    let model = crate::hub::resolve_model(&args.model, Path::new("."))?;
    args.format
        .write(&args.lora, &model.join("unet/config.json"), &args.out)?;
    println!("{}", args.out.display());
    Ok(())
}
