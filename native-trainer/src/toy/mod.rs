//! The toy world on the command line: `popalign toy-model` pretrains the biased base model that
//! `popalign demo` starts from (its weights are committed under `data/toy/model/`).

pub mod embedded;
pub mod model_root;
pub mod pretrain;

pub use pretrain::{Args, run};
