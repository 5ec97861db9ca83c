//! The pipeline's stages over one run directory (docs/design.md §1): `popalign run` executes those a `run.toml`
//! lists, and `popalign demo` runs them all on the toy world.

pub mod config;
pub mod images;
mod rounds;
pub mod run;
pub mod shard;
pub mod train_section;
pub mod world;
