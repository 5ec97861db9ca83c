//! `popalign prompts --out DIR`: writes the prompt sets of a run (docs/design.md §1 `prompts/`): `neutral.csv`
//! (evaluation, one prompt per occupation), `specific.csv` (every combination of the chosen axes per
//! occupation) and `training.csv` (every combination per occupation and scene; `base_prompt` is the neutral
//! training caption). `popalign prompts --check FILE` reads a prompt CSV the way later stages do.
//!
//! The default data files are compiled into the binary, so the command works from any directory.

use std::path::{Path, PathBuf};

use popalign_core::align::prompts::PromptSets;

use crate::error::{CliResult, input, runtime};
use crate::prompt_sets::{PromptDocuments, chosen_axes, read_prompt_csv, write_prompt_csv};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["out", "check"])))]
pub struct Args {
    /// Folder to write neutral.csv, specific.csv and training.csv into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Read a prompt CSV back and print what it holds, instead of writing the sets.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["occupations", "attributes", "templates", "axes", "limit_occupations"])]
    check: Option<PathBuf>,
    /// Occupations and training scenes (`[[occupation]]` name, scenes). Default: the built-in data/occupations.toml.
    #[arg(long, value_name = "FILE")]
    occupations: Option<PathBuf>,
    /// Attribute vocabularies (`[[axis]]` name, values). Default: the built-in data/attributes.toml.
    #[arg(long, value_name = "FILE")]
    attributes: Option<PathBuf>,
    /// Prompt templates ([evaluation] and [training]). Default: the built-in data/templates.toml.
    #[arg(long, value_name = "FILE")]
    templates: Option<PathBuf>,
    /// Axes to combine, first varying slowest.
    #[arg(long, value_delimiter = ',', default_value = "race,gender")]
    axes: Vec<String>,
    /// Use only the first N occupations (quick runs).
    #[arg(long, value_name = "N")]
    limit_occupations: Option<usize>,
}

pub fn run(args: Args) -> CliResult {
    if let Some(path) = &args.check {
        return check(path);
    }
    let out = args.out.as_deref().expect("clap requires --out or --check");
    let sets = build_sets(&args)?;
    let axes = chosen_axes(&args.axes);
    std::fs::create_dir_all(out).map_err(|e| runtime(out, e))?;
    for (name, rows, augmented) in [
        ("neutral.csv", &sets.neutral, false),
        ("specific.csv", &sets.specific, true),
        ("training.csv", &sets.training, true),
    ] {
        let path = out.join(name);
        write_prompt_csv(&path, rows, if augmented { &axes } else { &[] })?;
        println!("{}: {} prompts", path.display(), rows.len());
    }
    Ok(())
}

/// Reads the three documents (each error prefixed by its file) and builds the sets.
fn build_sets(args: &Args) -> CliResult<PromptSets> {
    if args.limit_occupations == Some(0) {
        return Err(input("--limit-occupations must be at least 1"));
    }
    let documents = PromptDocuments {
        occupations: args.occupations.as_deref(),
        attributes: args.attributes.as_deref(),
        templates: args.templates.as_deref(),
    };
    documents.build(&args.axes, |mut occupations| {
        occupations.truncate(args.limit_occupations.unwrap_or(usize::MAX));
        Ok(occupations)
    })
}

/// `--check`: reads the file as a later stage would and says what it holds.
fn check(path: &Path) -> CliResult {
    let rows = read_prompt_csv(path)?;
    let bases: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.base_prompt.as_str()).collect();
    let mut axes: Vec<&str> = rows
        .iter()
        .flat_map(|r| r.attributes.keys().map(String::as_str))
        .collect();
    axes.sort_unstable();
    axes.dedup();
    println!(
        "{}: {} prompts, {} base prompts, attributes: {}",
        path.display(),
        rows.len(),
        bases.len(),
        if axes.is_empty() {
            "none".to_string()
        } else {
            axes.join(", ")
        }
    );
    Ok(())
}
