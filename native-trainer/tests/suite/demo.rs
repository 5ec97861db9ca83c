//! The demo's pipeline (`popalign run` on a toy-world `run.toml`) end to end, small: killed with SIGKILL at
//! several points and finished one stage per invocation, it ends with exactly the artifacts of an
//! uninterrupted run (no image missing or duplicated, same attributes, preferences, LoRA and summaries).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

/// The demo's pipeline at a small size: 3 images per neutral prompt, 1 per identity, two rounds of full
/// fine-tuning (4 and 3 steps, round 2 on balanced pairs; the demo's default is three rounds).
pub(crate) const SMALL_RUN: &str = r#"
model = "toy"
seed = 5

[generate]
neutral_images = 3
specific_images = 1
eval_images = 2
steps = 4
guidance = 4.0

[preferences]
construction = "official"
round_construction = "balanced"
iterations = 20
set_size = 5

[train]
steps = 4
batch_size = 4
learning_rate = 1e-5
beta = 150.0
lora_rank = 0
rounds = 2
round_steps = 3
devices = ["cpu", "cpu"]
"#;

/// SMALL_RUN in chunks of 8 images, so that the evaluation's 16 images split into two shards.
fn write_run_toml(out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let config = SMALL_RUN.replace("guidance = 4.0", "guidance = 4.0\nbatch_size = 8");
    std::fs::write(out.join("run.toml"), config).unwrap();
}

fn pipeline(out: &Path) -> Process {
    write_run_toml(out);
    let mut command = Process::new(env!("CARGO_BIN_EXE_popalign"));
    command
        .arg("run")
        .arg("--config")
        .arg(out.join("run.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}

/// Every file under `root` (relative path → bytes), minus what legitimately differs between two runs:
/// timings (`metrics.jsonl`), and the optimiser/state files whose config hash includes the output path.
pub(crate) fn artifacts(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if ["metrics.jsonl", "state.json", "optimizer.bin"].contains(&name.as_str()) {
                continue;
            }
            let text = std::fs::read(&path).unwrap();
            // Paths of the run itself appear in sidecars and train.toml.
            let root_text = root.display().to_string();
            let bytes = match String::from_utf8(text.clone()) {
                Ok(s) => s.replace(&root_text, "<run>").into_bytes(),
                Err(_) => text,
            };
            files.insert(path.strip_prefix(root).unwrap().to_path_buf(), bytes);
        }
    }
    files
}

#[test]
fn killed_resumed_and_staged_pipelines_equal_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    let started = std::time::Instant::now();
    assert!(pipeline(&whole).status().unwrap().success());
    let full = started.elapsed();

    // Kill after fixed fractions of the uninterrupted run's time, so the kills land in different stages,
    // then finish one stage per invocation: each stage resumes from the files the killed runs left, and reads
    // everything it needs from the files earlier stages wrote.
    // Each run resumes where the last stopped: after the three kills about 65% of the work is done.
    for fraction in [0.15, 0.25, 0.25] {
        let mut child = pipeline(&killed).spawn().unwrap();
        std::thread::sleep(full.mul_f64(fraction));
        let _ = child.kill();
        child.wait().unwrap();
    }
    for stage in [
        "prompts",
        "generate",
        "classify",
        "preferences",
        "train",
        "evaluate",
        "report",
    ] {
        // The evaluation's aligned images in two shards first; the unsharded evaluate joins them.
        let shards: &[&str] = if stage == "evaluate" {
            &["1/2", "2/2"]
        } else {
            &[]
        };
        for shard in shards.iter().map(Some).chain([None]) {
            let mut command = Process::new(env!("CARGO_BIN_EXE_popalign"));
            command
                .args(["run", "--stage", stage, "--config"])
                .arg(killed.join("run.toml"));
            if let Some(shard) = shard {
                command.args(["--shard", shard]);
            }
            let out = command.output().unwrap();
            assert!(
                out.status.success(),
                "{stage} {shard:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if let Some(shard) = shard {
                // The kills stop before the evaluation, so each shard samples a part of it.
                let ledger = format!(
                    "eval/aligned/images/manifest.shard-{}-of-2.jsonl",
                    &shard[..1]
                );
                assert!(killed.join(ledger).exists(), "shard {shard} of evaluate");
            }
        }
        if stage == "evaluate" {
            assert!(
                !killed
                    .join("eval/aligned/images/manifest.shard-1-of-2.jsonl")
                    .exists()
            );
        }
    }

    let a = artifacts(&whole);
    assert_same_artifacts(
        &a,
        &artifacts(&killed),
        "after kill-and-resume, stage by stage, evaluate in two shards",
    );
    let manifest = std::fs::read_to_string(killed.join("images/neutral/manifest.jsonl")).unwrap();
    assert_eq!(
        manifest.lines().count(),
        8 * 3,
        "one manifest line per neutral image"
    );
    // Round 2 sampled its own neutral population with round 1's U-Net, and trained from it.
    let round2 =
        std::fs::read_to_string(killed.join("rounds/2/images/neutral/manifest.jsonl")).unwrap();
    assert_eq!(round2.lines().count(), 8 * 3, "round 2's neutral images");
    assert!(a.contains_key(Path::new(
        "rounds/2/train/step-3/unet/diffusion_pytorch_model.safetensors"
    )));
    let round2_train = String::from_utf8(a[Path::new("rounds/2/train.toml")].clone()).unwrap();
    assert!(
        round2_train.contains("unet = \"<run>/train/step-4/unet\""),
        "{round2_train}"
    );
    // Two CPU workers share the global batch of 4.
    assert!(
        round2_train.contains("batch_size = 2\n")
            && round2_train.contains("devices = [\"cpu\", \"cpu\"]"),
        "{round2_train}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&a[Path::new("eval/aligned/summary.json")]).unwrap();
    assert!(summary["axes"]["gender"]["n_images"].as_u64() == Some(16));

    // One report over two runs of the same configuration: the base model's evaluation is shared.
    let report = dir.path().join("both");
    let out = Process::new(env!("CARGO_BIN_EXE_popalign"))
        .args(["report", "--out"])
        .arg(&report)
        .arg("--runs")
        .args([&whole, &killed])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    let models: Vec<&str> = json["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["base", "whole aligned", "killed aligned"]);
    assert_eq!(json["training"].as_array().unwrap().len(), 2);
    assert_eq!(json["images"].as_array().unwrap().len(), 16);
    // A folder that is not an evaluated run is a clear input error.
    let out = Process::new(env!("CARGO_BIN_EXE_popalign"))
        .args(["report", "--out"])
        .arg(dir.path().join("none"))
        .arg("--runs")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run.toml"));
}

/// Same file names, and every file byte-identical.
pub(crate) fn assert_same_artifacts(
    a: &BTreeMap<PathBuf, Vec<u8>>,
    b: &BTreeMap<PathBuf, Vec<u8>>,
    when: &str,
) {
    let names = |m: &BTreeMap<PathBuf, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(a), names(b), "same files {when}");
    for (path, bytes) in a {
        assert!(bytes == &b[path], "{} differs {when}", path.display());
    }
}

fn run_stage(dir: &Path, stage: &str) -> std::process::Output {
    Process::new(env!("CARGO_BIN_EXE_popalign"))
        .args(["run", "--stage", stage, "--config"])
        .arg(dir.join("run.toml"))
        .output()
        .unwrap()
}

/// Sampling several chunks at once on threads writes the bytes one thread writes. Small chunks
/// (`batch_size = 2`) give every thread count several of them; the neutral and evaluation sets (40
/// images, 20 chunks) are enough to show it, so the identity-specific set is left out.
#[test]
fn images_do_not_depend_on_the_sampling_threads() {
    let dir = tempfile::tempdir().unwrap();
    let images = |threads: &str| {
        let out = dir.path().join(format!("threads-{threads}"));
        std::fs::create_dir_all(&out).unwrap();
        let config = SMALL_RUN
            .replace("guidance = 4.0", "guidance = 4.0\nbatch_size = 2")
            .replace("specific_images = 1", "specific_images = 0");
        std::fs::write(out.join("run.toml"), config).unwrap();
        let status = Process::new(env!("CARGO_BIN_EXE_popalign"))
            .args(["run", "--stage", "prompts,generate", "--config"])
            .arg(out.join("run.toml"))
            .env("POPALIGN_SAMPLING_THREADS", threads)
            .status()
            .unwrap();
        assert!(status.success(), "generate with {threads} threads");
        let mut files = artifacts(&out);
        files.retain(|path, _| path.starts_with("images"));
        files
    };
    let one = images("1");
    assert!(one.len() > 8, "several chunks were sampled");
    assert_same_artifacts(&one, &images("3"), "with 3 sampling threads");
    let fresh = dir.path().join("threads-0");
    write_run_toml(&fresh);
    let refused = Process::new(env!("CARGO_BIN_EXE_popalign"))
        .args(["run", "--stage", "prompts,generate", "--config"])
        .arg(fresh.join("run.toml"))
        .env("POPALIGN_SAMPLING_THREADS", "0")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("POPALIGN_SAMPLING_THREADS"));
}

#[test]
fn a_run_directory_from_another_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_run_toml(dir.path());
    assert!(run_stage(dir.path(), "prompts").status.success());
    std::fs::write(
        dir.path().join("run.toml"),
        SMALL_RUN.replace("seed = 5", "seed = 6"),
    )
    .unwrap();
    let out = run_stage(dir.path(), "prompts");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("made under configuration"), "{stderr}");
}

#[test]
fn rounds_with_lora_zero_rounds_or_an_uneven_batch_split_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (from, to, expected) in [
        ("lora_rank = 0", "lora_rank = 4", "full fine-tuning"),
        ("rounds = 2", "rounds = 0", "at least 1"),
        (
            "batch_size = 4",
            "batch_size = 3",
            "does not split evenly over 2 devices",
        ),
    ] {
        std::fs::write(dir.path().join("run.toml"), SMALL_RUN.replace(from, to)).unwrap();
        let out = run_stage(dir.path(), "prompts");
        assert_eq!(out.status.code(), Some(2), "{to}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[test]
fn a_config_with_an_unknown_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("run.toml"),
        SMALL_RUN.replace("seed = 5", "sed = 5"),
    )
    .unwrap();
    let out = run_stage(dir.path(), "prompts");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sed"));
}

/// A path that cannot be written (here a file where the stage needs a folder; the tests run as root,
/// which ignores read-only permissions) is a clear error, and nothing half-written is left behind.
#[test]
fn an_unwritable_output_is_a_clear_error_without_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    write_run_toml(dir.path());
    assert!(run_stage(dir.path(), "prompts").status.success());
    std::fs::write(dir.path().join("images"), "not a folder").unwrap();
    let out = run_stage(dir.path(), "generate");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("images"), "{stderr}");
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn empty_and_malformed_prompt_csvs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_run_toml(dir.path());
    assert!(run_stage(dir.path(), "prompts").status.success());
    let neutral = dir.path().join("prompts/neutral.csv");
    for (contents, expected) in [
        ("", "neutral.csv"),
        ("prompt,base_prompt\n\"unclosed,x\n", "neutral.csv"),
    ] {
        std::fs::write(&neutral, contents).unwrap();
        let out = run_stage(dir.path(), "generate");
        assert_eq!(out.status.code(), Some(2), "{contents:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}
