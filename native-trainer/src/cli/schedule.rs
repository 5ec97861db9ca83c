//! `popalign schedule --scheduler euler|ddim --steps N [--config scheduler_config.json]`

use std::path::PathBuf;

use popalign_core::diffusion::schedulers::{
    DdimScheduler, EulerDiscreteScheduler, SchedulerConfig, SchedulerKind,
};
use popalign_core::io::load::read_config;
use serde_json::json;

use crate::error::{CliResult, input};

#[derive(clap::Args)]
pub struct Args {
    /// `euler` or `ddim`; wins over the class the config file names.
    #[arg(long)]
    scheduler: String,
    #[arg(long)]
    steps: usize,
    /// A diffusers `scheduler_config.json` (betas, spacing, offsets). Default: the SDXL base schedule.
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> CliResult {
    let kind = super::sampler_kind(&args.scheduler, args.steps)?;
    let config: SchedulerConfig = match &args.config {
        Some(path) => read_config(path)?,
        None => SchedulerConfig::default(),
    };
    config
        .validate()
        .map_err(|m| input(format!("unsupported scheduler config: {m}")))?;
    if args.steps > config.num_train_timesteps {
        return Err(input(format!(
            "--steps {} exceeds num_train_timesteps {}",
            args.steps, config.num_train_timesteps
        )));
    }
    let out = match kind {
        SchedulerKind::Euler => {
            let s = EulerDiscreteScheduler::new(&config, args.steps);
            json!({"scheduler": "euler", "timesteps": s.timesteps, "sigmas": s.sigmas, "init_noise_sigma": s.init_noise_sigma})
        }
        SchedulerKind::Ddim => {
            let s = DdimScheduler::new(&config, args.steps, 0.0);
            let timesteps: Vec<i64> = s.timesteps.iter().map(|&t| t as i64).collect();
            json!({"scheduler": "ddim", "timesteps": timesteps, "init_noise_sigma": 1.0})
        }
    };
    println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    Ok(())
}
