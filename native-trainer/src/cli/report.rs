//! `popalign report --runs A B --out DIR`: a report folder for evaluated runs; see `report/`.

use std::path::PathBuf;

use crate::error::CliResult;
use crate::report::{Carry, report_for_runs};

#[derive(clap::Args)]
pub struct Args {
    /// Evaluated run directories (each with `run.toml` and `eval/{base,aligned}/`). Runs that share the
    /// base model's evaluation show it once; the first run's images give the rows.
    #[arg(long, num_args = 1.., required = true)]
    runs: Vec<PathBuf>,
    /// The report folder to write.
    #[arg(long)]
    out: PathBuf,
    /// Carry MTCNN and the dlib gender (and age) networks from this folder (the `--weights` of `popalign
    /// classify --classifier faces`), so the explorer classifies photos dropped onto it in the browser.
    #[arg(long, value_name = "DIR")]
    face_weights: Option<PathBuf>,
    /// Carry the CLIP zero-shot classifier of this `CLIPModel` folder (the `--weights` of `popalign
    /// classify --classifier clip`): its vision tower and the prompt embeddings, computed here.
    #[arg(long, value_name = "DIR")]
    clip_weights: Option<PathBuf>,
}

pub fn run(args: Args) -> CliResult {
    let carry = Carry {
        faces: args.face_weights,
        clip: args.clip_weights,
    };
    let report = report_for_runs(&args.runs, &args.out, &carry)?;
    println!("{}", report.table);
    eprintln!("report written to {}", args.out.display());
    Ok(())
}
