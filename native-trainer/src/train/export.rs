//! Layouts a trained LoRA is exported in besides diffusers/peft's (`[train] export`, `popalign export-lora`).

use crate::error::{CliResult, input};
use popalign_core::io::load::read_config;
use popalign_core::models::unet::config::UNetConfig;
use popalign_core::models::unet::kohya;
use std::path::Path;

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
