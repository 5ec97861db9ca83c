//! `popalign train --config train.toml [--resume]`: preference fine-tuning of the U-Net; see `train/`.

use std::path::PathBuf;

use crate::error::CliResult;
use crate::train::config::TrainConfig;
use crate::train::export::LoraExport;
use crate::train::train_with;

#[derive(clap::Args)]
pub struct Args {
    /// The run's `train.toml`.
    #[arg(long)]
    config: PathBuf,
    /// Continue from the newest checkpoint in the output folder.
    #[arg(long)]
    resume: bool,
    /// Train data-parallel, one worker per device (`cuda:0,cuda:1`; `cpu,cpu` on the CPU build);
    /// replaces `devices` in train.toml. `batch_size` is per device.
    #[arg(long, value_delimiter = ',')]
    devices: Vec<String>,
    /// Also write each checkpoint's LoRA in these layouts (`kohya`); adds to `export` in train.toml.
    #[arg(long, value_enum, value_delimiter = ',')]
    export: Vec<LoraExport>,
}

pub fn run(args: Args) -> CliResult {
    let mut config = TrainConfig::load(&args.config)?;
    if !args.devices.is_empty() {
        config.devices = args.devices;
    }
    for export in args.export {
        if !config.export.contains(&export) {
            config.export.push(export);
        }
    }
    train_with(&config, args.resume)
}
