//! `popalign run --config run.toml`: executes the stages `run.toml` lists over its run directory (the
//! folder holding `run.toml`); see `stages/run.rs`.

use std::path::{Path, PathBuf};

use crate::error::CliResult;
use crate::stages::config::{RunConfig, Stage};
use crate::stages::run::run_stages;

#[derive(clap::Args)]
pub struct Args {
    /// The run's `run.toml`; its folder is the run directory.
    #[arg(long)]
    config: PathBuf,
    /// Run only these stages (default: those `run.toml` lists).
    #[arg(long, value_enum, value_delimiter = ',')]
    stage: Vec<Stage>,
    /// Continue a run whose artifacts were made under a different `run.toml`.
    #[arg(long)]
    allow_config_change: bool,
    /// Only shard K of N of the stages prompts, generate and classify (`K/N`, or `slurm` for a job array's
    /// task): N processes, on any machines sharing the run directory, split the images; the next unsharded
    /// stage joins their ledgers into exactly what one unsharded run writes (docs/cluster.md).
    #[arg(long)]
    shard: Option<crate::stages::shard::Shard>,
}

pub fn run(args: Args) -> CliResult {
    let config = RunConfig::load(&args.config)?;
    let dir = args.config.parent().unwrap_or(Path::new(".")).to_path_buf();
    let stages = if args.stage.is_empty() {
        config.stages.clone()
    } else {
        args.stage
    };
    run_stages(&dir, &config, &stages, args.allow_config_change, args.shard)
}
