//! diffusers `AutoencoderKL`.

pub mod autoencoder;
pub mod config;
pub mod decoder;
pub mod encoder;

pub use autoencoder::AutoencoderKL;
pub use config::VaeConfig;
pub mod space;

pub use space::ImageSpace;
