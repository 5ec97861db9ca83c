//! The pipeline's stages over one run directory (docs/design.md §1): `popalign run` executes those a `run.toml`
//! lists, and `popalign demo` runs them all on the toy world.

pub mod carried;
pub mod classify;
pub mod config;
pub mod demo;
pub mod evaluate;
pub mod explorer;
pub mod images;
pub mod init;
pub mod page;
pub mod report;
pub mod run;
pub mod world;
