//! `popalign`: the command-line tool of popalign-rs.

mod artifacts;
mod backend;
mod commands;
mod error;
mod hub;
mod stages;
mod toy;
mod train;

use clap::{Parser, Subcommand};

use commands::{
    classify, evaluate, export_lora, generate, prompts, run_module, schedule, tokenize,
};

#[derive(Parser)]
#[command(
    name = "popalign",
    version,
    about = "Population-level alignment of text-to-image diffusion models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one model component on tensors from a safetensors file (parity and debugging).
    RunModule(run_module::Args),
    /// Print the CLIP token ids of prompts, padded and truncated as transformers does.
    Tokenize(tokenize::Args),
    /// Print a sampler's timesteps (and sigmas) as JSON.
    Schedule(schedule::Args),
    /// Generate images from a prompt with a diffusers model folder.
    Generate(generate::Args),
    /// Write the neutral, identity-specific and training prompt sets (CSV) from occupations and attributes.
    Prompts(prompts::Args),
    /// Classify every image of a folder (gender, race, …) into an attribute CSV.
    Classify(classify::Args),
    /// Bias metrics (discrepancy with confidence intervals, KL, TV, face rate) of attribute CSVs.
    Evaluate(evaluate::Args),
    /// Fine-tune the U-Net on preference pairs (PopAlign, Diffusion-DPO, pairwise bound, SFT).
    Train(train::Args),
    /// Write a trained LoRA in another tool's layout (kohya's, which ComfyUI and Automatic1111 load).
    ExportLora(export_lora::Args),
    /// Run the whole PopAlign pipeline on the toy world into runs/demo and print bias before and after.
    Demo(stages::demo::Args),
    /// Write a run.toml for a real model (a folder or a Hugging Face repo id) from a shipped recipe.
    Init(stages::init::Args),
    /// Run the stages a run.toml lists over its run directory, skipping what is complete.
    Run(stages::run::Args),
    /// Write a report folder (report.json, static page, browser explorer, thumbnails) for evaluated runs.
    Report(stages::report::Args),
    /// Pretrain the toy world's biased base model (what `popalign demo` starts from).
    ToyModel(toy::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::RunModule(args) => run_module::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Schedule(args) => schedule::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Prompts(args) => prompts::run(args),
        Command::Classify(args) => classify::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Train(args) => train::run(args),
        Command::ExportLora(args) => export_lora::run(args),
        Command::ToyModel(args) => toy::run(args),
        Command::Demo(args) => stages::demo::run(args),
        Command::Init(args) => stages::init::run(args),
        Command::Run(args) => stages::run::run(args),
        Command::Report(args) => stages::report::run(args),
    };
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(error.exit_code());
    }
}
