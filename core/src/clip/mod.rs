//! CLIP text towers in the transformers layout (`CLIPTextModel`, `CLIPTextModelWithProjection`).

pub mod config;
pub mod encoder_layer;
pub mod text_model;

pub use config::ClipTextConfig;
pub use text_model::{ClipTextModel, ClipTextOutput};
