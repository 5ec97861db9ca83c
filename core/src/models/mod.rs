//! The networks, each laid out as its checkpoint: CLIP and open_clip towers, the U-Net, the VAE, MTCNN, the
//! face-attribute networks, and the CLIP tokenizer.

pub mod blip;
pub mod clip;
pub mod face;
pub mod open_clip;
pub mod tokenizer;
pub mod unet;
pub mod vae;
pub mod yunet;
