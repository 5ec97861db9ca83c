//! The toy base model, carried inside the binary so `popalign demo` works on a fresh machine from any
//! directory. `data/toy/model/` is what `popalign toy-model` wrote; see `data/toy/README.md`.

use std::path::{Path, PathBuf};

use crate::error::{CliError, CliResult};

macro_rules! files {
    ($($path:literal),* $(,)?) => {
        [$(($path, include_bytes!(concat!("../../../data/toy/model/", $path)).as_slice())),*]
    };
}

const FILES: [(&str, &[u8]); 16] = files![
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder_2/config.json",
    "text_encoder_2/model.safetensors",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "tokenizer_2/merges.txt",
    "tokenizer_2/special_tokens_map.json",
    "tokenizer_2/tokenizer_config.json",
    "tokenizer_2/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
];

/// Writes the embedded model folder to `dir` unless it is already there (complete); returns `dir`.
pub fn install(dir: &Path) -> CliResult<PathBuf> {
    if dir.join("model_index.json").exists() {
        return Ok(dir.to_path_buf());
    }
    let staging = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&staging);
    for (name, bytes) in FILES {
        let path = staging.join(name);
        std::fs::create_dir_all(path.parent().expect("has a parent"))
            .and_then(|_| std::fs::write(&path, bytes))
            .map_err(|e| CliError::Runtime(format!("{}: {e}", path.display())))?;
    }
    std::fs::rename(&staging, dir)
        .map_err(|e| CliError::Runtime(format!("{}: {e}", dir.display())))?;
    Ok(dir.to_path_buf())
}
