//! What fine-tuning produced: LoRA adapters for the base U-Net, or a whole fine-tuned U-Net.
//!
//! Every place that loads trained weights (sampling a later round, evaluating the aligned model,
//! `generate --weights`, resuming a checkpoint) goes through this type, so "LoRA or full fine-tune" is
//! decided once, from what is on disk.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use super::UNet2DConditionModel;
use crate::io::load::LoadError;

/// The file diffusers' `save_lora_weights` writes and `load_lora_weights` reads.
const LORA_FILE: &str = "pytorch_lora_weights.safetensors";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrainedWeights {
    /// A diffusers LoRA file (`pytorch_lora_weights.safetensors`), applied to the base U-Net.
    Lora(PathBuf),
    /// A U-Net folder in the diffusers layout (`config.json`, `diffusion_pytorch_model.safetensors`).
    Unet(PathBuf),
}

impl TrainedWeights {
    /// A folder is a fine-tuned U-Net; anything else is a LoRA file.
    pub fn at(path: &Path) -> Self {
        if path.is_dir() {
            Self::Unet(path.to_path_buf())
        } else {
            Self::Lora(path.to_path_buf())
        }
    }

    /// What a training checkpoint folder (`step-N/`) holds: the LoRA file, or the `unet/` folder.
    pub fn in_checkpoint(step_dir: &Path, lora: bool) -> Self {
        if lora {
            Self::Lora(step_dir.join(LORA_FILE))
        } else {
            Self::Unet(step_dir.join("unet"))
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Self::Lora(path) | Self::Unet(path) => path,
        }
    }

    pub fn exists(&self) -> bool {
        self.path().exists()
    }

    /// The U-Net these weights make: the base U-Net folder (`base_unet`, read with `variant`) with the LoRA
    /// applied, or the fine-tuned folder on its own.
    pub fn load<B: Backend>(
        &self,
        base_unet: &Path,
        variant: Option<&str>,
        device: &B::Device,
    ) -> Result<UNet2DConditionModel<B>, LoadError> {
        match self {
            Self::Lora(file) => {
                UNet2DConditionModel::from_dir_and_lora_file(base_unet, variant, Some(file), device)
            }
            Self::Unet(dir) => UNet2DConditionModel::from_dir(dir, None, device),
        }
    }

    /// These weights in place of `unet`'s: its adapters' values for a LoRA (the adapters must already be
    /// there, with the same targets and rank), or the fine-tuned folder.
    pub fn apply<B: Backend>(
        &self,
        unet: UNet2DConditionModel<B>,
        device: &B::Device,
    ) -> Result<UNet2DConditionModel<B>, LoadError> {
        match self {
            Self::Lora(file) => unet.load_lora(file),
            Self::Unet(dir) => UNet2DConditionModel::from_dir(dir, None, device),
        }
    }
}
