//! `popalign run --config run.toml`: executes the stages `run.toml` lists over its run directory (the
//! folder holding `run.toml`); see `stages/run.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{CliError, CliResult, input};
use crate::stages::config::{RunConfig, Stage};
use crate::stages::run::run_stages;

#[derive(clap::Args)]
pub struct Args {
    /// The run's `run.toml`; its folder is the run directory.
    #[arg(long)]
    config: PathBuf,
    /// Run only these stages (default: those `run.toml` lists).
    #[arg(long, value_enum, value_delimiter = ',')]
    stage: Vec<Stage>,
    /// Continue a run whose artifacts were made under a different `run.toml`.
    #[arg(long)]
    allow_config_change: bool,
    /// Only shard K of N of the stages prompts, generate, classify and evaluate (`K/N`, or `slurm` for a
    /// job array's task): N processes, on any machines sharing the run directory, split the images (of
    /// evaluate: its aligned images); the next unsharded stage joins their ledgers into exactly what one
    /// unsharded run writes (docs/cluster.md).
    #[arg(long)]
    shard: Option<crate::stages::shard::Shard>,
    /// Spread the stages generate, classify and evaluate over these devices (`cuda:0,cuda:1`; `cpu,cpu` on
    /// the CPU build): one `popalign` process per device, each shard K of N; the other stages run here.
    #[arg(long, value_delimiter = ',', conflicts_with = "shard")]
    devices: Vec<String>,
}

pub fn run(args: Args) -> CliResult {
    let config = RunConfig::load(&args.config)?;
    let dir = args.config.parent().unwrap_or(Path::new(".")).to_path_buf();
    let stages = if args.stage.is_empty() {
        config.stages.clone()
    } else {
        args.stage.clone()
    };
    if args.devices.len() > 1 {
        return spread(&args, &dir, &config, &stages);
    }
    run_stages(&dir, &config, &stages, args.allow_config_change, args.shard)
}

/// `stages` in order, each run of the stages generate, classify and evaluate as one shard per device, each
/// in a `popalign` process of its own on that device (with an equal part of the CPU threads). The other
/// stages run here, and so does an unsharded evaluate after its shards (classification, scores and
/// summaries); the first unsharded stage after shards joins them. A failed shard stops the run; the same
/// command resumes every shard from its ledger.
fn spread(args: &Args, dir: &Path, config: &RunConfig, stages: &[Stage]) -> CliResult {
    for device in &args.devices {
        crate::backend::parse_device(device).map_err(input)?;
    }
    let shardable = |s: &Stage| matches!(s, Stage::Generate | Stage::Classify | Stage::Evaluate);
    let mut rest = stages;
    while let Some(first) = rest.first() {
        let n = match shardable(first) {
            true => rest.iter().take_while(|s| shardable(s)).count(),
            false => 1,
        };
        let (group, after) = rest.split_at(n);
        if shardable(first) {
            run_shards(args, group)?;
            // The evaluation's shards sample images; classification, scores and summaries run here.
            if group.contains(&Stage::Evaluate) {
                run_stages(
                    dir,
                    config,
                    &[Stage::Evaluate],
                    args.allow_config_change,
                    None,
                )?;
            }
        } else {
            run_stages(dir, config, group, args.allow_config_change, None)?;
        }
        rest = after;
    }
    Ok(())
}

/// `stages` as shard K of N on device K, one `popalign` process each, waiting for all of them.
fn run_shards(args: &Args, stages: &[Stage]) -> CliResult {
    let n = args.devices.len();
    let names: Vec<String> = stages
        .iter()
        .map(|s| format!("{s:?}").to_lowercase())
        .collect();
    let threads = (crate::backend::cores() / n).max(1).to_string();
    let exe =
        std::env::current_exe().map_err(|e| CliError::Runtime(format!("popalign's path: {e}")))?;
    let mut children = Vec::new();
    for (k, device) in args.devices.iter().enumerate() {
        let mut command = Command::new(&exe);
        command
            .args(["--device", device, "--threads", &threads, "run", "--config"])
            .arg(&args.config)
            .args([
                "--stage",
                &names.join(","),
                "--shard",
                &format!("{}/{n}", k + 1),
            ]);
        if args.allow_config_change {
            command.arg("--allow-config-change");
        }
        let child = command
            .spawn()
            .map_err(|e| CliError::Runtime(format!("starting the shard on {device}: {e}")))?;
        children.push((device, child));
    }
    let failed: Vec<&str> = children
        .into_iter()
        .filter_map(|(device, mut child)| {
            (!child.wait().is_ok_and(|s| s.success())).then_some(device.as_str())
        })
        .collect();
    match failed.is_empty() {
        true => Ok(()),
        false => Err(CliError::Runtime(format!(
            "the shards on {} failed (their messages are above); the same command resumes them",
            failed.join(", ")
        ))),
    }
}
