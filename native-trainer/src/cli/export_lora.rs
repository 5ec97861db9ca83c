//! `popalign export-lora --lora FILE --model M --out FILE`: a LoRA file of ours in the layout another tool
//! loads. Training writes the same file beside each checkpoint when asked (`[train] export = ["kohya"]`).

use std::path::{Path, PathBuf};

use crate::error::CliResult;
use crate::train::export::LoraExport;

#[derive(clap::Args)]
pub struct Args {
    /// A diffusers/peft U-Net LoRA file written by `popalign train` (`pytorch_lora_weights.safetensors`).
    #[arg(long)]
    lora: PathBuf,
    /// The model the LoRA was trained on (a diffusers folder or a Hugging Face repo id); its
    /// `unet/config.json` decides the layout's module names.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_enum, default_value = "kohya")]
    format: LoraExport,
    /// Where to write the converted file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> CliResult {
    let model = crate::hub::resolve_model(&args.model, Path::new("."))?;
    args.format
        .write(&args.lora, &model.join("unet/config.json"), &args.out)?;
    println!("{}", args.out.display());
    Ok(())
}
