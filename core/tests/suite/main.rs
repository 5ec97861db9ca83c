//! popalign-core's integration tests, one module per component, built as one test binary: every binary
//! re-instantiates the generic model code for its backend, so one binary instead of 23 saves most of the
//! suite's compile time. Run one component with `cargo test -p popalign-core --test suite <module>::`.

mod age_gender;
mod alignprop;
mod bf16;
mod classifier_kind;
mod clip_model;
mod clip_processor;
mod common;
mod conv;
mod cubecl;
mod deepface;
mod dense_unet_f64;
mod fairface;
mod image_reward;
mod loading;
mod lora;
mod matmul;
mod metrics;
mod models;
mod mtcnn;
mod objectives;
mod objectives_unet;
mod objectives_unet_f64;
mod pipeline;
mod pointwise;
mod pool;
mod preferences;
mod prompts;
mod quality_scorers;
mod recomputed_attention;
mod schedulers;
mod tokenizer;
mod toy;
mod yunet;
