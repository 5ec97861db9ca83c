//! diffusers `UNet2DConditionModel` (SD 1.5 and SDXL layouts) with per-sample timesteps.

pub mod blocks;
pub mod config;
pub mod embeddings;
pub mod kohya;
pub mod trained;
pub mod transformer;
pub mod unet;

pub use config::UNetConfig;
pub use trained::TrainedWeights;
pub use unet::{UNet2DConditionModel, UNetConditioning};
