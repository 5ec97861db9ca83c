//! The two configs of a converted ImageReward folder: the BERT text encoder's `med_config.json` (BLIP's "mixture
//! of encoder-decoder" config, transformers' `BertConfig` fields) and the ViT's `vision_config.json`, which
//! `tools/convert_imagereward.py` reads off the checkpoint's tensors (BLIP hard-codes the ViT in Python).
//!
//! Fields that would change the network without a weight to show it (the activation, the position embedding type)
//! are checked and refused by name rather than ignored.

use std::path::Path;

use serde::Deserialize;

use crate::io::load::{self, LoadError};

/// `med_config.json`. The cross-attention's key/value width is not read from its `encoder_width`: BLIP overwrites
/// that with the ViT's width when it builds the model, so [`super::bert::BertModel::new`] takes it from the ViT.
#[derive(Debug, Clone, Deserialize)]
pub struct MedConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: String,
    #[serde(default)]
    pub add_cross_attention: bool,
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn absolute() -> String {
    "absolute".into()
}

/// `vision_config.json` (written by the converter): BLIP's `VisionTransformer`.
#[derive(Debug, Clone, Deserialize)]
pub struct BlipVisionConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub layer_norm_eps: f64,
}

impl MedConfig {
    pub fn read(path: &Path) -> Result<Self, LoadError> {
        let config: Self = load::read_config(path)?;
        let unsupported = |message: String| LoadError::Unsupported {
            path: path.to_path_buf(),
            message,
        };
        if config.hidden_act != "gelu" {
            return Err(unsupported(format!(
                "hidden_act {:?} (ImageReward's text encoder uses \"gelu\")",
                config.hidden_act
            )));
        }
        if config.position_embedding_type != "absolute" {
            return Err(unsupported(format!(
                "position_embedding_type {:?} (only \"absolute\")",
                config.position_embedding_type
            )));
        }
        if !config.add_cross_attention {
            return Err(unsupported(
                "add_cross_attention is false: ImageReward's text encoder attends to the image"
                    .into(),
            ));
        }
        if config.num_attention_heads == 0 || config.hidden_size % config.num_attention_heads != 0 {
            return Err(LoadError::Config {
                path: path.to_path_buf(),
                message: format!(
                    "hidden_size {} does not split into {} heads",
                    config.hidden_size, config.num_attention_heads
                ),
            });
        }
        Ok(config)
    }
}

impl BlipVisionConfig {
    pub fn read(path: &Path) -> Result<Self, LoadError> {
        let config: Self = load::read_config(path)?;
        let invalid = |message: String| LoadError::Config {
            path: path.to_path_buf(),
            message,
        };
        if config.patch_size == 0 || config.image_size % config.patch_size != 0 {
            return Err(invalid(format!(
                "image_size {} is not a multiple of patch_size {}",
                config.image_size, config.patch_size
            )));
        }
        if config.num_attention_heads == 0 || config.hidden_size % config.num_attention_heads != 0 {
            return Err(invalid(format!(
                "hidden_size {} does not split into {} heads",
                config.hidden_size, config.num_attention_heads
            )));
        }
        Ok(config)
    }

    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}
