//! popalign-core: models, schedulers and objectives of popalign-rs, generic over burn backends.

pub mod classify;
pub mod clip;
pub mod face;
pub mod face_attributes;
pub mod load;
pub mod metrics;
pub mod nn;
pub mod objectives;
pub mod open_clip;
pub mod pipeline;
pub mod precision;
pub mod preferences;
pub mod prompts;
pub mod report;
pub mod schedulers;
pub mod tensor_io;
pub mod tokenizer;
pub mod toy;
pub mod unet;
pub mod vae;

/// The crate version, shown by the CLI and the browser app.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
