//! `open_clip_config.json` as open_clip's Hugging Face hub folders carry it: `model_cfg` (open_clip's
//! `CLIPVisionCfg` / `CLIPTextCfg` fields) and `preprocess_cfg`.
//!
//! Widths, depths and sizes have no default where open_clip's defaults would silently build a different network
//! than the file describes; the options of exotic towers (timm or Hugging Face text towers, layer scale,
//! attentional pooling, custom attention blocks, …) are refused by name instead of being ignored.

use std::path::Path;

use serde::Deserialize;

use crate::io::load::{self, LoadError};
use crate::models::clip::OpenClipPreprocess;

#[derive(Debug, Clone, Deserialize)]
pub struct OpenClipConfig {
    pub model_cfg: OpenClipModelConfig,
    #[serde(default)]
    pub preprocess_cfg: OpenClipPreprocess,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OpenClipModelConfig {
    pub embed_dim: usize,
    pub vision_cfg: VisionCfg,
    pub text_cfg: TextCfg,
    /// OpenAI-trained weights use `x · σ(1.702 x)`; LAION-trained ones (HPSv2's ViT-H/14) exact GELU.
    #[serde(default)]
    pub quick_gelu: bool,
    /// Everything else in `model_cfg`, checked by [`OpenClipConfig::refuse_unsupported`].
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VisionCfg {
    pub image_size: usize,
    pub layers: usize,
    pub width: usize,
    #[serde(default = "default_head_width")]
    pub head_width: usize,
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    pub patch_size: usize,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TextCfg {
    #[serde(default = "default_context_length")]
    pub context_length: usize,
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    pub width: usize,
    pub heads: usize,
    pub layers: usize,
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

fn default_head_width() -> usize {
    64
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_context_length() -> usize {
    77
}
fn default_vocab_size() -> usize {
    49408
}

/// Options whose default open_clip value is the only one implemented: `(key, accepted values)`.
const TOWER_OPTIONS: &[(&str, &[&str])] = &[
    ("ls_init_value", &["null"]),
    ("patch_dropout", &["0", "0.0"]),
    ("attentional_pool", &["false"]),
    ("no_ln_pre", &["false"]),
    ("pos_embed_type", &["\"learnable\""]),
    ("final_ln_after_pool", &["false"]),
    ("block_type", &["null", "\"default\""]),
    ("qk_norm", &["false"]),
    ("scaled_cosine_attn", &["false"]),
    ("scale_heads", &["false"]),
    ("scale_attn_inner", &["false"]),
    ("scale_attn", &["false"]),
    ("scale_fc", &["false"]),
    ("timm_model_name", &["null"]),
    ("hf_model_name", &["null"]),
    ("embed_cls", &["false"]),
    ("no_causal_mask", &["false"]),
    ("proj_bias", &["false"]),
    ("proj_type", &["\"linear\""]),
    ("act_kwargs", &["null"]),
    ("norm_kwargs", &["null"]),
];

/// Options of the whole model: a custom text tower lives under `text.` with different keys.
const MODEL_OPTIONS: &[(&str, &[&str])] = &[
    ("custom_text", &["false"]),
    ("cast_dtype", &["null"]),
    ("init_logit_bias", &["null"]),
];

impl OpenClipConfig {
    /// Reads `open_clip_config.json` and refuses configurations the towers do not implement.
    pub fn read(path: &Path) -> Result<Self, LoadError> {
        let config: Self = load::read_config(path)?;
        config.refuse_unsupported(path)?;
        Ok(config)
    }

    fn refuse_unsupported(&self, path: &Path) -> Result<(), LoadError> {
        let m = &self.model_cfg;
        check(&m.other, MODEL_OPTIONS, "model_cfg", path)?;
        let vision_pool: &[(&str, &[&str])] = &[("pool_type", &["\"tok\""])];
        let text_pool: &[(&str, &[&str])] = &[("pool_type", &["\"argmax\""])];
        for (options, pool, section) in [
            (&m.vision_cfg.other, vision_pool, "model_cfg.vision_cfg"),
            (&m.text_cfg.other, text_pool, "model_cfg.text_cfg"),
        ] {
            check(options, TOWER_OPTIONS, section, path)?;
            check(options, pool, section, path)?;
        }
        let v = &m.vision_cfg;
        if !v.width.is_multiple_of(v.head_width) || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(LoadError::Unsupported {
                path: path.to_path_buf(),
                message: "vision_cfg: width must be a multiple of head_width and image_size of patch_size".into(),
            });
        }
        Ok(())
    }
}

fn check(
    options: &serde_json::Map<String, serde_json::Value>,
    supported: &[(&str, &[&str])],
    section: &str,
    path: &Path,
) -> Result<(), LoadError> {
    for (key, accepted) in supported {
        if let Some(value) = options.get(*key) {
            let text = value.to_string();
            if !accepted.contains(&text.as_str()) {
                return Err(LoadError::Unsupported {
                    path: path.to_path_buf(),
                    message: format!(
                        "{section}.{key} = {text} (supported: {})",
                        accepted.join(", ")
                    ),
                });
            }
        }
    }
    Ok(())
}

impl VisionCfg {
    pub fn heads(&self) -> usize {
        self.width / self.head_width
    }
    pub fn mlp_width(&self) -> usize {
        (self.width as f64 * self.mlp_ratio) as usize
    }
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

impl TextCfg {
    pub fn mlp_width(&self) -> usize {
        (self.width as f64 * self.mlp_ratio) as usize
    }
}
