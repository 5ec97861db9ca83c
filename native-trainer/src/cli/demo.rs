//! `popalign demo`: the whole PopAlign pipeline on the toy world, into `runs/demo/`.
//!
//! It writes the toy world's default `run.toml` (unless the run directory has one) and runs every stage:
//! prompts → generate (the neutral and the identity-specific population with the biased base model) →
//! classify → population preferences → PopAlign (full fine-tuning, three rounds) → evaluate base and aligned on the same seeds →
//! report. `popalign run --config runs/demo/run.toml` does exactly the same; both resume after a kill.

use std::path::PathBuf;

use crate::error::CliResult;
use crate::stages::config::RunConfig;
use crate::stages::run::run_stages;

#[derive(clap::Args)]
pub struct Args {
    /// The run directory.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Seeds generation, pairing and training (used when the run directory has no run.toml yet).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args) -> CliResult {
    let path = args.out.join("run.toml");
    let config = if path.exists() {
        RunConfig::load(&path)?
    } else {
        let config = RunConfig::demo(args.seed);
        std::fs::create_dir_all(&args.out)
            .map_err(|e| crate::error::CliError::Runtime(format!("{}: {e}", args.out.display())))?;
        let text = format!(
            "# The toy world's defaults, written by `popalign demo`.\n{}",
            config.to_toml()
        );
        crate::artifacts::write_atomic(&path, text.as_bytes())?;
        config
    };
    run_stages(&args.out, &config, &config.stages.clone(), false, None)
}
