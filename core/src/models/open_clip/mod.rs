//! CLIP in open_clip's layout (`open_clip_config.json` + `open_clip_model.safetensors`): HPSv2's ViT-H/14 and
//! LAION's releases. The towers mirror open_clip's modules so its keys load without renaming; the
//! transformers layout lives in [`crate::models::clip`].

pub mod config;
pub mod model;
pub mod transformer;
pub mod visual;

pub use config::OpenClipConfig;
pub use model::OpenClipModel;
