//! Checkpoints `step-<n>/`: the trained weights (diffusers LoRA file, or a diffusers `unet/` folder),
//! the optimiser state and `state.json`. Written into `step-<n>.tmp/` and renamed, so a kill leaves either
//! a whole checkpoint or none.

use std::path::{Path, PathBuf};

use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use popalign_core::models::unet::{TrainedWeights, UNet2DConditionModel};
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use crate::error::{CliError, CliResult, input, runtime};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimiser steps completed.
    pub step: usize,
    pub config_hash: String,
    /// Pairs skipped so far for a missing or corrupt image (`on_bad_image = "skip"`).
    pub skipped_pairs: usize,
}

pub fn step_dir(output: &Path, step: usize) -> PathBuf {
    output.join(format!("step-{step}"))
}

/// The newest complete checkpoint in `output`.
pub fn latest(output: &Path) -> CliResult<Option<(TrainState, PathBuf)>> {
    let Ok(entries) = std::fs::read_dir(output) else {
        return Ok(None);
    };
    let mut best: Option<(usize, PathBuf)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(n) = name
            .strip_prefix("step-")
            .and_then(|n| n.parse::<usize>().ok())
            && entry.path().join("state.json").exists()
            && best.as_ref().is_none_or(|(b, _)| n > *b)
        {
            best = Some((n, entry.path()));
        }
    }
    let Some((_, dir)) = best else {
        return Ok(None);
    };
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| runtime(&path, e))?;
    let state: TrainState =
        serde_json::from_str(&text).map_err(|e| input(format!("{}: {e}", path.display())))?;
    Ok(Some((state, dir)))
}

pub fn save<B: AutodiffBackend, O: Optimizer<UNet2DConditionModel<B>, B>>(
    config: &TrainConfig,
    state: &TrainState,
    unet: &UNet2DConditionModel<B>,
    optimizer: &O,
    unet_config: &Path,
) -> CliResult<PathBuf> {
    let output = &config.output;
    let final_dir = step_dir(output, state.step);
    let tmp = output.join(format!("step-{}.tmp", state.step));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| runtime(&tmp, e))?;
    // Written where `TrainedWeights::in_checkpoint` reads it back.
    match TrainedWeights::in_checkpoint(&tmp, config.lora.is_some()) {
        TrainedWeights::Lora(peft) => {
            unet.save_lora(&peft).map_err(CliError::Runtime)?;
            for export in &config.export {
                export.write(&peft, unet_config, &tmp.join(export.file_name()))?;
            }
        }
        TrainedWeights::Unet(unet_dir) => {
            std::fs::create_dir_all(&unet_dir).map_err(|e| runtime(&unet_dir, e))?;
            std::fs::copy(unet_config, unet_dir.join("config.json"))
                .map_err(|e| runtime(unet_config, e))?;
            unet.save_weights(&unet_dir.join("diffusion_pytorch_model.safetensors"))
                .map_err(CliError::Runtime)?;
        }
    }
    let optimizer_path = tmp.join("optimizer");
    BinFileRecorder::<FullPrecisionSettings>::new()
        .record(optimizer.to_record(), optimizer_path.clone())
        .map_err(|e| runtime(&optimizer_path, e))?;
    let state_path = tmp.join("state.json");
    std::fs::write(
        &state_path,
        serde_json::to_string_pretty(state).expect("state json"),
    )
    .map_err(|e| runtime(&state_path, e))?;
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir).map_err(|e| runtime(&final_dir, e))?;
    Ok(final_dir)
}

pub fn load_optimizer<B: AutodiffBackend, O: Optimizer<UNet2DConditionModel<B>, B>>(
    optimizer: O,
    dir: &Path,
    device: &B::Device,
) -> CliResult<O> {
    let path = dir.join("optimizer");
    let record = BinFileRecorder::<FullPrecisionSettings>::new()
        .load(path.clone(), device)
        .map_err(|e| input(format!("{}: {e}", path.display())))?;
    Ok(optimizer.load_record(record))
}
