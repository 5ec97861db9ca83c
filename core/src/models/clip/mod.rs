//! CLIP in the transformers layout: the text towers (`CLIPTextModel`, `CLIPTextModelWithProjection`), the
//! vision towers (`CLIPVisionModel`, `CLIPVisionModelWithProjection`) and the full `CLIPModel`.

pub mod clip_model;
pub mod config;
pub mod encoder_layer;
pub mod image_processor;
pub mod resample;
pub mod text_model;
pub mod vision_model;

pub use clip_model::{ClipModel, paired_cosines, read_clip_config, token_ids, unit_rows};
pub use config::{ClipConfig, ClipTextConfig, ClipVisionConfig};
pub use encoder_layer::{ClipEncoder, ClipEncoderShape};
pub use image_processor::{
    CLIP_MEAN, CLIP_STD, ImageProcessor, OpenClipPreprocess, images_to_pixel_values,
};
pub use text_model::{ClipTextModel, ClipTextOutput};
pub use vision_model::{ClipVisionModel, ClipVisionOutput, read_vision_config};
