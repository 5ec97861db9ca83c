//! The towers' `config.json` as transformers writes it: `CLIPTextConfig`, `CLIPVisionConfig`, and the
//! `CLIPConfig` of a full `CLIPModel`, which nests the two as `text_config` and `vision_config`.
//!
//! Fields that decide tensor shapes have no default, so a config that lacks one is refused with the field's
//! name instead of silently building a different network; the rest default as in transformers.

use std::path::Path;

use serde::Deserialize;

use super::encoder_layer::ClipEncoderShape;
use crate::io::load::LoadError;

#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_eos")]
    pub eos_token_id: i64,
    /// Present for `CLIPTextModelWithProjection`.
    #[serde(default)]
    pub projection_dim: Option<usize>,
    #[serde(default)]
    pub architectures: Vec<String>,
}

/// `CLIPVisionConfig`: a ViT over `image_size`² images cut into `patch_size`² patches.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// The width of `visual_projection` in `CLIPVisionModelWithProjection`.
    #[serde(default)]
    pub projection_dim: Option<usize>,
    #[serde(default)]
    pub architectures: Vec<String>,
}

/// `CLIPConfig`, the `config.json` of a `CLIPModel` (`openai/clip-vit-*`, `yuvalkirstain/PickScore_v1`).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    pub text_config: ClipTextConfig,
    pub vision_config: ClipVisionConfig,
    /// The shared width of `text_projection` and `visual_projection` (transformers' default 512).
    #[serde(default = "default_projection_dim")]
    pub projection_dim: usize,
    /// The initial `logit_scale`; the checkpoint's own value is what the model uses.
    #[serde(default = "default_logit_scale")]
    pub logit_scale_init_value: f64,
}

fn default_act() -> String {
    "quick_gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_eos() -> i64 {
    2
}
fn default_channels() -> usize {
    3
}
fn default_projection_dim() -> usize {
    512
}
fn default_logit_scale() -> f64 {
    2.6592
}

impl ClipTextConfig {
    /// transformers decides projection from the class; the config names it in `architectures`.
    pub fn with_projection(&self) -> bool {
        self.architectures
            .iter()
            .any(|a| a == "CLIPTextModelWithProjection")
    }

    /// The text encoder: causal self-attention.
    pub fn encoder_shape(&self) -> ClipEncoderShape {
        ClipEncoderShape {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_attention_heads: self.num_attention_heads,
            num_hidden_layers: self.num_hidden_layers,
            quick_gelu: is_quick_gelu(&self.hidden_act),
            layer_norm_eps: self.layer_norm_eps,
            causal: true,
        }
    }
}

impl ClipVisionConfig {
    /// transformers decides projection from the class; the config names it in `architectures`.
    pub fn with_projection(&self) -> bool {
        self.architectures
            .iter()
            .any(|a| a == "CLIPVisionModelWithProjection")
    }

    /// Patches per side: the patch embedding is a stride-`patch_size` convolution without padding.
    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// The class token plus one position per patch.
    pub fn num_positions(&self) -> usize {
        self.patches_per_side().pow(2) + 1
    }

    /// The vision encoder: full self-attention over the class token and all patches.
    pub fn encoder_shape(&self) -> ClipEncoderShape {
        ClipEncoderShape {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_attention_heads: self.num_attention_heads,
            num_hidden_layers: self.num_hidden_layers,
            quick_gelu: is_quick_gelu(&self.hidden_act),
            layer_norm_eps: self.layer_norm_eps,
            causal: false,
        }
    }
}

fn is_quick_gelu(hidden_act: &str) -> bool {
    hidden_act == "quick_gelu"
}

/// Refuses activations the towers do not implement: `quick_gelu` (OpenAI CLIP) and exact `gelu` (OpenCLIP)
/// are the two that CLIP checkpoints use; anything else would otherwise run silently as `gelu`.
pub fn check_hidden_act(hidden_act: &str, config_path: &Path) -> Result<(), LoadError> {
    if matches!(hidden_act, "quick_gelu" | "gelu") {
        return Ok(());
    }
    Err(LoadError::Unsupported {
        path: config_path.to_path_buf(),
        message: format!("hidden_act `{hidden_act}` (supported: quick_gelu, gelu)"),
    })
}
