//! One file per subcommand: its clap arguments, and a `run` that hands them to the modules that do the work.

pub mod classify;
pub mod demo;
pub mod evaluate;
pub mod export_lora;
pub mod generate;
pub mod init;
pub mod prompts;
pub mod report;
pub mod run;
pub mod run_module;
pub mod schedule;
pub mod tokenize;
pub mod train;

use popalign_core::diffusion::schedulers::SchedulerKind;

use crate::error::{CliResult, input};

/// Parses `--scheduler` and checks `--steps`, as `generate` and `schedule` take them.
fn sampler_kind(name: &str, steps: usize) -> CliResult<SchedulerKind> {
    let kind = SchedulerKind::parse(name).ok_or_else(|| {
        input(format!(
            "unknown scheduler `{name}` (expected euler or ddim)"
        ))
    })?;
    if steps == 0 {
        return Err(input("--steps must be at least 1"));
    }
    Ok(kind)
}
