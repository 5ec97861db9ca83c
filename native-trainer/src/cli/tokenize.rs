//! `popalign tokenize --tokenizer DIR [--json] PROMPT...`

use std::path::PathBuf;

use popalign_core::models::tokenizer::ClipTokenizer;

use crate::error::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// A tokenizer folder (`vocab.json`, `merges.txt`), or a model root with a `tokenizer/` folder.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Print one JSON array of id lists instead of one line of ids per prompt.
    #[arg(long)]
    json: bool,
    #[arg(required = true)]
    prompts: Vec<String>,
}

pub fn run(args: Args) -> CliResult {
    let dir = if args.tokenizer.join("vocab.json").exists() {
        args.tokenizer
    } else {
        args.tokenizer.join("tokenizer")
    };
    let tokenizer = ClipTokenizer::from_dir(&dir)?;
    let ids = args
        .prompts
        .iter()
        .map(|p| tokenizer.encode(p).map_err(CliError::Runtime))
        .collect::<CliResult<Vec<_>>>()?;
    if args.json {
        println!("{}", serde_json::to_string(&ids).expect("ids serialise"));
    } else {
        for row in ids {
            println!(
                "{}",
                row.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
            );
        }
    }
    Ok(())
}
