//! The `popalign` command's integration tests, one module per subcommand area, built as one test binary
//! (one link and one instantiation of the model code instead of eight). Run one area with
//! `cargo test -p popalign-trainer --test suite <module>::`.

mod alignprop;
mod classify;
mod cli;
mod demo;
mod dense;
mod evaluate;
mod hub;
mod prompts;
mod real_run;
mod shard;
mod train;
