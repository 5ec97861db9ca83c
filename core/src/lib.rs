//! popalign-core: models, schedulers, objectives, metrics and the report schema of popalign-rs, generic over
//! burn backends (`B: Backend`), also built for wasm32. Modules by layer, each using only those above it:
//!
//! | module | holds |
//! |---|---|
//! | [`io`], [`nn`] | building blocks (attention, LoRA, ResNet blocks); safetensors and model-folder loading |
//! | [`models`] | CLIP, open_clip, the U-Net, the VAE, MTCNN, the face-attribute networks, the tokenizer |
//! | [`diffusion`] | schedulers, the text-to-image pipeline, mixed precision |
//! | [`align`] | training objectives, preference construction, prompt sets |
//! | [`eval`] | attribute classifiers and quality scorers, bias and quality metrics |
//! | [`schema`] | `report.json`, shared by the CLI and the browser |
//! | [`toy`] | the toy world |

pub mod align;
pub mod diffusion;
pub mod eval;
pub mod io;
pub mod models;
pub mod nn;
pub mod schema;
pub mod toy;

/// The crate version, shown by the CLI and the browser app.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
