//! `popalign evaluate --attributes CSV...`: the bias metrics of classified image sets (docs/design.md §6), from the
//! attribute CSVs `popalign classify` (or a run) writes, into `summary.json` and a readable table.
//!
//! Per set (one CSV, named by its file stem) and axis: PopAlign's discrepancy with `K` fixed and the official
//! variant, bootstrap intervals over images and over prompts, KL and total variation against the target,
//! per-prompt discrepancy, the face-found rate and the share of low-confidence predictions; intersections
//! (`--intersection race,gender`) as extra axes. Rows whose image could not be read (`error` set) are counted
//! as unreadable and left out of every metric, so they never pass for images without a face. Where prompts
//! name a class ("a photo of a Black female doctor"), the identity-specific accuracy per axis is reported too.
//!
//! `--official` puts the official script's discrepancy in the paper table (`evaluate/paper_table.rs`), printed
//! after the detailed one; its first line names the counting.
//!
//! Class lists come from the CSV's classifier: the toy world's palette for the toy classifier (`ClassifierKind`), otherwise the
//! vocabulary (`data/attributes.toml`, or `--vocabulary FILE`), whose labels are what the face classifiers
//! write.

use std::path::{Path, PathBuf};

use popalign_core::eval::metrics::bias::{BiasOptions, Counting};
use popalign_core::eval::metrics::quality::Bootstrap;

use crate::artifacts::write_atomic;
use crate::error::runtime;
use crate::error::{CliError, CliResult, input};
use crate::evaluate::paper_table::{DiscrepancyMode, paper_table};
use crate::evaluate::quality::{self, QualityArgs, SetScores};
use crate::evaluate::sets::{
    EvaluationSummary, SUMMARY_VERSION, evaluate_set, read_targets, read_vocabulary, table,
};

#[derive(clap::Args)]
pub struct Args {
    /// Attribute CSVs (from `popalign classify` or a run's `attributes/`); each is one image set.
    #[arg(long, required = true, num_args = 1..)]
    attributes: Vec<PathBuf>,
    /// The JSON to write; the table goes beside it as `.txt` [default: summary.json next to the first CSV].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Class lists per axis (`[[axis]]` name, values, as data/attributes.toml) [default: built in].
    #[arg(long, value_name = "FILE")]
    vocabulary: Option<PathBuf>,
    /// Target distributions, one table per axis with a share per class, e.g. `[gender]` `male = 0.5`,
    /// `female = 0.5`; axes it does not name get the uniform target.
    #[arg(long, value_name = "FILE")]
    target: Option<PathBuf>,
    /// How an image adds to the counts: its most probable class, or its probabilities.
    #[arg(long, value_enum, default_value_t = CountingArg::Argmax)]
    counting: CountingArg,
    /// Count as the official PopAlign evaluation does (`eval/classifier.py`): each face's most probable class,
    /// pooled over the set, race against the uniform over the races that occur. The paper table's D columns then
    /// hold that number; both discrepancies are in summary.json either way.
    #[arg(long, conflicts_with = "counting")]
    official: bool,
    /// Bootstrap resamples of the confidence intervals (0: none).
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Two-sided level of the confidence intervals.
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
    /// A face whose largest class probability is below this counts as low-confidence.
    #[arg(long, default_value_t = 0.5)]
    low_confidence: f64,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Two axes to evaluate jointly, e.g. `race,gender` (repeatable); the target is the product of theirs.
    #[arg(long, value_parser = parse_pair)]
    intersection: Vec<(String, String)>,
    #[command(flatten)]
    quality: QualityArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CountingArg {
    Argmax,
    Expected,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split(',').collect::<Vec<_>>()[..] {
        [a, b] if !a.is_empty() && !b.is_empty() && a != b => Ok((a.into(), b.into())),
        _ => Err(format!(
            "`{text}`: expected two different axis names, e.g. race,gender"
        )),
    }
}

pub fn run(args: Args) -> CliResult {
    let vocabulary = read_vocabulary(args.vocabulary.as_deref())?;
    let targets = read_targets(args.target.as_deref())?;
    let options = BiasOptions {
        counting: match args.counting {
            CountingArg::Argmax => Counting::Argmax,
            CountingArg::Expected => Counting::Expected,
        },
        target: None,
        bootstrap_resamples: args.bootstrap,
        confidence_level: args.confidence,
        seed: args.seed,
        low_confidence_threshold: args.low_confidence,
    };
    let scorers = quality::load_scorers(&args.quality.scorers, Path::new(""))?;
    let bootstrap = Bootstrap {
        resamples: args.bootstrap,
        level: args.confidence,
        seed: args.seed,
    };
    let mut sets = Vec::new();
    let mut scored: Vec<SetScores> = Vec::new();
    for csv in &args.attributes {
        let (mut set, rows) =
            evaluate_set(csv, &vocabulary, &targets, &options, &args.intersection)
                .map_err(|e| prefix(csv, e))?;
        if !scorers.is_empty() {
            let scores = quality::score_set(&set.name, csv, rows, &scorers, &args.quality)?;
            set.quality = quality::summarize(&scores, bootstrap);
            scored.push(scores);
        }
        sets.push(set);
    }
    let comparisons = match &args.quality.baseline {
        Some(baseline) if !scored.is_empty() => quality::compare(&scored, baseline, bootstrap)?,
        Some(_) => return Err(input("--baseline compares quality scores: add --metrics")),
        None => Vec::new(),
    };
    let summary = EvaluationSummary {
        version: SUMMARY_VERSION,
        options,
        discrepancy_mode: if args.official {
            DiscrepancyMode::Official
        } else {
            DiscrepancyMode::FixedK
        },
        sets,
        comparisons,
    };
    let out = args.out.clone().unwrap_or_else(|| {
        args.attributes[0]
            .parent()
            .unwrap_or(Path::new("."))
            .join("summary.json")
    });
    let table = format!("{}\n\n{}", table(&summary), paper_table(&summary));
    let json = serde_json::to_string_pretty(&summary).expect("summary serialises");
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| runtime(parent, e))?;
    }
    if !scored.is_empty() {
        let scores_path = out.with_file_name("scores.csv");
        write_atomic(&scores_path, &quality::scores_csv(&scored)?)?;
        println!("wrote {}", scores_path.display());
    }
    write_atomic(&out, json.as_bytes())?;
    write_atomic(&out.with_extension("txt"), table.as_bytes())?;
    println!("{table}");
    println!(
        "wrote {} and {}",
        out.display(),
        out.with_extension("txt").display()
    );
    Ok(())
}

fn prefix(csv: &Path, error: CliError) -> CliError {
    match error {
        CliError::Input(m) if !m.contains(&csv.display().to_string()) => {
            input(format!("{}: {m}", csv.display()))
        }
        other => other,
    }
}
