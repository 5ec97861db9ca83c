//! `popalign init --model M --out DIR`: writes `DIR/run.toml` for a real model, from one of the shipped
//! recipes (`data/recipes/`, every key spelt out and commented), with `model` set to `M`. Then
//! `popalign run --config DIR/run.toml` runs it.

use std::path::PathBuf;

use crate::artifacts::write_atomic;
use crate::error::{CliResult, input};
use crate::stages::config::RunConfig;

#[derive(clap::Args)]
pub struct Args {
    /// The model: a diffusers folder, or a Hugging Face repo id (`org/name`) in the local cache.
    #[arg(long)]
    model: String,
    /// The run directory to create; `run.toml` is written there.
    #[arg(long)]
    out: PathBuf,
    /// Which recipe to start from.
    #[arg(long, value_enum, default_value_t = Recipe::Sdxl)]
    recipe: Recipe,
    /// Replace an existing `run.toml`.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Recipe {
    /// The official experiment: SDXL, 1024 px, full U-Net fine-tune (`data/recipes/popalign-sdxl.toml`).
    Sdxl,
    /// SDXL with a rank-8 LoRA (`data/recipes/popalign-sdxl-lora.toml`).
    SdxlLora,
    /// Stable Diffusion 1.5 at 512 px (`data/recipes/popalign-sd15.toml`).
    Sd15,
}

impl Recipe {
    pub fn text(self) -> &'static str {
        match self {
            Self::Sdxl => include_str!("../../../data/recipes/popalign-sdxl.toml"),
            Self::SdxlLora => include_str!("../../../data/recipes/popalign-sdxl-lora.toml"),
            Self::Sd15 => include_str!("../../../data/recipes/popalign-sd15.toml"),
        }
    }
}

pub fn run(args: Args) -> CliResult {
    let path = args.out.join("run.toml");
    if path.exists() && !args.force {
        return Err(input(format!(
            "{}: already exists (pass --force to replace it)",
            path.display()
        )));
    }
    let text = with_model(args.recipe.text(), &args.model);
    // What is written must load: the recipe and the model line together make a valid run.toml.
    RunConfig::parse(&text)
        .map_err(|e| input(format!("recipe with model {:?}: {e}", args.model)))?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| input(format!("{}: {e}", args.out.display())))?;
    write_atomic(&path, text.as_bytes())?;
    println!(
        "wrote {}; edit it, then: popalign run --config {}",
        path.display(),
        path.display()
    );
    Ok(())
}

/// The recipe with its `model = …` line replaced by `model`.
fn with_model(recipe: &str, model: &str) -> String {
    let line = format!("model = {}", toml::Value::String(model.to_string()));
    recipe
        .lines()
        .map(|l| match l.starts_with("model = ") {
            true => line.as_str(),
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_recipe_loads_and_takes_any_model() {
        for recipe in Recipe::value_variants() {
            let config = RunConfig::parse(recipe.text()).unwrap();
            assert!(!config.is_toy());
            let mine = RunConfig::parse(&with_model(recipe.text(), "/models/my \"sdxl\"")).unwrap();
            assert_eq!(mine.model, "/models/my \"sdxl\"");
        }
        let official = RunConfig::parse(Recipe::Sdxl.text()).unwrap();
        let t = &official.train;
        assert_eq!(
            (t.steps, t.batch_size, t.learning_rate, t.beta),
            (750, 8, 5e-7, 5000.0)
        );
        assert_eq!(official.generate.resolution, Some(1024));
    }
}
