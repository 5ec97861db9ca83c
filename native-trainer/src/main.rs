//! `popalign`: the command-line tool of popalign-rs.

mod artifacts;
mod backend;
mod classify;
mod cli;
mod error;
mod evaluate;
mod hub;
mod prompt_sets;
mod report;
mod stages;
mod toy;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "popalign",
    version,
    about = "Population-level alignment of text-to-image diffusion models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// CPU threads for the tensor kernels and for batches sampled side by side [default: every core].
    /// The kernels split their outputs between threads, not their sums: images came out byte-identical on 1
    /// thread and on 2 (native-trainer/tests/suite/cli.rs).
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// The device this process computes on (`cuda:1`, `wgpu:0`; `cpu`) [default: the backend's first].
    #[arg(long, global = true)]
    device: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one model component on tensors from a safetensors file (parity and debugging).
    RunModule(cli::run_module::Args),
    /// Print the CLIP token ids of prompts, padded and truncated as transformers does.
    Tokenize(cli::tokenize::Args),
    /// Print a sampler's timesteps (and sigmas) as JSON.
    Schedule(cli::schedule::Args),
    /// Generate images from a prompt with a diffusers model folder.
    Generate(cli::generate::Args),
    /// Write the neutral, identity-specific and training prompt sets (CSV) from occupations and attributes.
    Prompts(cli::prompts::Args),
    /// Classify every image of a folder (gender, race, …) into an attribute CSV.
    Classify(cli::classify::Args),
    /// Bias metrics (discrepancy with confidence intervals, KL, TV, face rate) of attribute CSVs.
    Evaluate(cli::evaluate::Args),
    /// Fine-tune the U-Net on preference pairs (PopAlign, Diffusion-DPO, pairwise bound, SFT).
    Train(cli::train::Args),
    /// Write a trained LoRA in another tool's layout (kohya's, which ComfyUI and Automatic1111 load).
    ExportLora(cli::export_lora::Args),
    /// Run the whole PopAlign pipeline on the toy world into runs/demo and print bias before and after.
    Demo(cli::demo::Args),
    /// Write a run.toml for a real model (a folder or a Hugging Face repo id) from a shipped recipe.
    Init(cli::init::Args),
    /// Run the stages a run.toml lists over its run directory, skipping what is complete.
    Run(cli::run::Args),
    /// Write a report folder (report.json, static page, browser explorer, thumbnails) for evaluated runs.
    Report(cli::report::Args),
    /// Pretrain the toy world's biased base model (what `popalign demo` starts from).
    ToyModel(toy::Args),
}

fn main() {
    let cli = Cli::parse();
    backend::use_threads(cli.threads.map(usize::from));
    if let Some(name) = &cli.device {
        match backend::parse_device(name) {
            Ok(device) => backend::use_device(device),
            Err(message) => {
                eprintln!("error: {message}");
                std::process::exit(2);
            }
        }
    }
    let result = match cli.command {
        Command::RunModule(args) => cli::run_module::run(args),
        Command::Tokenize(args) => cli::tokenize::run(args),
        Command::Schedule(args) => cli::schedule::run(args),
        Command::Generate(args) => cli::generate::run(args),
        Command::Prompts(args) => cli::prompts::run(args),
        Command::Classify(args) => cli::classify::run(args),
        Command::Evaluate(args) => cli::evaluate::run(args),
        Command::Train(args) => cli::train::run(args),
        Command::ExportLora(args) => cli::export_lora::run(args),
        Command::ToyModel(args) => toy::run(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::Init(args) => cli::init::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Report(args) => cli::report::run(args),
    };
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(error.exit_code());
    }
}
