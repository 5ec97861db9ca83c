//! `popalign run --shard K/N` (and `--devices`, a shard per device): the shards of generation and
//! classification, joined by the next unsharded stage, leave exactly the files of one unsharded run; an
//! unfinished shard is named, not papered over.

use std::path::Path;
use std::process::{Command, Output};

use crate::demo::{SMALL_RUN, artifacts, assert_same_artifacts};

const STAGES: &str = "prompts,generate,classify";

fn run(dir: &Path, stages: &str, shard: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_popalign"));
    command
        .args(["run", "--stage", stages, "--config"])
        .arg(dir.join("run.toml"))
        .envs(env.iter().copied());
    if let Some(shard) = shard {
        command.args(["--shard", shard]);
    }
    command.output().unwrap()
}

fn ok(output: Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn refused(output: Output, expected: &str) {
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
}

/// Two shards (the second as a Slurm array task) against one unsharded run, with one image per prompt and
/// chunks of two so each shard has several.
#[test]
fn two_shards_joined_by_the_next_stage_equal_one_unsharded_run_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let config = SMALL_RUN
        .replace("neutral_images = 3", "neutral_images = 1")
        .replace("eval_images = 2", "eval_images = 1")
        .replace(
            "steps = 4\nguidance = 4.0",
            "steps = 2\nguidance = 4.0\nbatch_size = 2",
        );
    let (whole, sharded) = (dir.path().join("whole"), dir.path().join("sharded"));
    for run_dir in [&whole, &sharded] {
        std::fs::create_dir_all(run_dir).unwrap();
        std::fs::write(run_dir.join("run.toml"), &config).unwrap();
    }
    ok(run(&whole, STAGES, None, &[]));

    refused(run(&sharded, "train", Some("1/2"), &[]), "--shard splits");
    ok(run(&sharded, STAGES, Some("1/2"), &[]));
    assert!(
        sharded
            .join("images/neutral/manifest.shard-1-of-2.jsonl")
            .exists()
    );
    assert!(sharded.join("attributes/neutral.shard-1-of-2.csv").exists());
    let lines = |path: &Path| std::fs::read_to_string(path).unwrap().lines().count();
    let all = lines(&whole.join("images/neutral/manifest.jsonl"));
    let first = lines(&sharded.join("images/neutral/manifest.shard-1-of-2.jsonl"));
    assert!(
        first >= 4 && first < all,
        "shard 1/2 made {first} of {all} neutral images"
    );
    refused(
        run(&sharded, "classify", None, &[]),
        "generated in 2 shards, of which 2/2 (not started) is not finished",
    );
    // Slurm numbers this array's tasks 4 and 5: task 5 is shard 2 of 2.
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "5"),
        ("SLURM_ARRAY_TASK_MIN", "4"),
        ("SLURM_ARRAY_TASK_COUNT", "2"),
    ];
    ok(run(&sharded, "prompts,generate", Some("slurm"), &slurm));
    refused(
        run(&sharded, "classify", None, &[]),
        "attributes/neutral.csv: classified in 2 shards",
    );
    ok(run(&sharded, "classify", Some("2/2"), &[]));
    ok(run(&sharded, "classify", None, &[]));

    let (a, b) = (artifacts(&whole), artifacts(&sharded));
    assert!(a.keys().any(|p| p.ends_with("attributes/specific.csv")));
    assert!(a.contains_key(Path::new("eval/base/images/manifest.jsonl")));
    assert_same_artifacts(&a, &b, "after two shards and the join");

    // `--devices`: one process per device, each a shard, in one command; the next stage joins them.
    let spread = dir.path().join("spread");
    std::fs::create_dir_all(&spread).unwrap();
    std::fs::write(spread.join("run.toml"), &config).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_popalign"));
    command
        .args(["run", "--stage", STAGES, "--devices", "cpu,cpu", "--config"])
        .arg(spread.join("run.toml"));
    ok(command.output().unwrap());
    assert!(spread.join("attributes/neutral.shard-2-of-2.csv").exists());
    ok(run(&spread, "classify", None, &[]));
    assert_same_artifacts(&a, &artifacts(&spread), "after --devices cpu,cpu");
}
