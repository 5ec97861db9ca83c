//! `popalign train` with `objective = "alignprop"` on the tiny SDXL fixture and the pixel-mean reward:
//! the reward rises, and configuration mistakes are reported clearly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn write_config(dir: &Path, alignprop: &str) -> PathBuf {
    std::fs::write(
        dir.join("prompts.txt"),
        "a photo of a doctor\na photo of a nurse\n\na painting of a teacher\n",
    )
    .unwrap();
    let model = fixtures().join("tiny-sdxl");
    let text = format!(
        "model = {model:?}\noutput = \"out\"\nobjective = \"alignprop\"\nresolution = 64\nbatch_size = 2\n\
         seed = 1\n{alignprop}\n[lora]\nrank = 4\nalpha = 4.0\n"
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn train(config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_popalign"))
        .arg("train")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn alignprop_raises_the_mean_reward() {
    raises_the_mean_reward("");
}

/// The same run in bf16 on burn-flex (the CPU backend with bf16 tensors) learns too, and saves f32 adapters.
#[cfg(feature = "flex")]
#[test]
fn alignprop_raises_the_mean_reward_in_bf16() {
    let dir = raises_the_mean_reward("precision = \"bf16\"\n");
    let saved = popalign_core::io::tensor_io::read_tensors(
        &dir.path()
            .join("out/step-40/pytorch_lora_weights.safetensors"),
    )
    .unwrap();
    assert!(!saved.is_empty());
    for (name, tensor) in &saved {
        assert_eq!(tensor.dtype, burn::tensor::DType::F32, "{name}");
    }
}

/// 40 steps on the pixel-mean reward with `extra` config lines; the mean reward of the last 8 steps beats
/// the first 8's by 0.05.
fn raises_the_mean_reward(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{extra}steps = 40\nlearning_rate = 1e-2\nmax_grad_norm = 5.0\ncheckpoint_every = 20\n\
         [alignprop]\nprompts = \"prompts.txt\"\nsampling_steps = 4\nk = 2\nguidance_scale = 5.0\n\
         [[alignprop.rewards]]\nname = \"pixel-mean\"\nloss = \"neg\"\n"
        ),
    );
    let started = Instant::now();
    let output = train(&config);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("out/metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(lines.len(), 40);
    let rewards: Vec<f64> = lines
        .iter()
        .map(|l| l["reward_mean"].as_f64().unwrap())
        .collect();
    assert!(lines.iter().all(|l| l["grad_steps"] == 2.0));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (early, late) = (mean(&rewards[..8]), mean(&rewards[rewards.len() - 8..]));
    println!(
        "{extra}mean reward, first 8 steps {early:.4}, last 8 {late:.4}; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(late > early + 0.05, "reward {early} -> {late}: {rewards:?}");
    assert!(
        dir.path()
            .join("out/step-40/pytorch_lora_weights.safetensors")
            .exists()
    );
    dir
}

#[test]
fn alignprop_config_mistakes_are_reported() {
    let cases = [
        (
            "steps = 1\nlearning_rate = 1e-3\n[alignprop]\nprompts = \"prompts.txt\"\nsampling_step = 4\n\
             [[alignprop.rewards]]\nname = \"pixel-mean\"\nloss = \"neg\"\n",
            "unknown field `sampling_step`",
        ),
        (
            "steps = 1\nlearning_rate = 1e-3\n[alignprop]\nprompts = \"prompts.txt\"\n\
             [[alignprop.rewards]]\nname = \"sharpness\"\nloss = \"neg\"\n",
            "unknown reward \"sharpness\"",
        ),
        (
            "steps = 1\nlearning_rate = 1e-3\n[alignprop]\nprompts = \"prompts.txt\"\n\
             [[alignprop.rewards]]\nname = \"aesthetic\"\nloss = \"abs-target\"\ntarget = 10.0\n",
            "reward \"aesthetic\" in [[alignprop.rewards]] needs `model`",
        ),
        (
            "steps = 1\nlearning_rate = 1e-3\n[alignprop]\nprompts = \"prompts.txt\"\n\
             [[alignprop.rewards]]\nname = \"pixel-mean\"\nloss = \"abs-target\"\n",
            "needs a target",
        ),
        (
            "steps = 1\nlearning_rate = 1e-3\n[alignprop]\nprompts = \"prompts.txt\"\n\
             [[alignprop.rewards]]\nname = \"pixel-mean\"\nloss = \"neg\"\nscale = 2\n",
            "unknown field `scale`",
        ),
        (
            "steps = 1\nlearning_rate = 1e-3\n",
            "needs an [alignprop] table",
        ),
        (
            "steps = 1\nlearning_rate = 1e-3\n[alignprop]\nprompts = \"missing.txt\"\n\
             [[alignprop.rewards]]\nname = \"pixel-mean\"\nloss = \"neg\"\n",
            "missing.txt",
        ),
    ];
    for (toml, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let output = train(&write_config(dir.path(), toml));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{expected}: {stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in: {stderr}"
        );
    }
}

#[test]
fn a_resumed_alignprop_run_ends_with_identical_weights() {
    let toml = "steps = 4\nlearning_rate = 1e-2\ncheckpoint_every = 2\n[alignprop]\nprompts = \"prompts.txt\"\n\
                sampling_steps = 3\ntruncation = \"uniform\"\n\
                [[alignprop.rewards]]\nname = \"pixel-mean\"\nloss = \"neg\"\n";
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), toml);
    assert!(train(&config).status.success());
    let lora = dir
        .path()
        .join("out/step-4/pytorch_lora_weights.safetensors");
    let first = std::fs::read(&lora).unwrap();
    let metrics = std::fs::read_to_string(dir.path().join("out/metrics.jsonl")).unwrap();
    // Forget the last checkpoint, as a kill after step 2 would, and resume from step 2.
    std::fs::remove_dir_all(dir.path().join("out/step-4")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_popalign"))
        .args(["train", "--resume", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        std::fs::read(&lora).unwrap() == first,
        "resumed weights differ (bitwise) from the uninterrupted run"
    );
    let strip = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("images_per_s");
                v
            })
            .collect()
    };
    let resumed = std::fs::read_to_string(dir.path().join("out/metrics.jsonl")).unwrap();
    assert_eq!(strip(&metrics), strip(&resumed));
}

/// The real scorers as rewards, on their tiny random fixtures: a mixture of the aesthetic predictor (over the
/// tiny CLIP) and HPSv2 (the tiny open_clip model) trains through the differentiable preprocessing, and both
/// rewards are logged. Their values against Python are proven in core/tests/suite/quality_scorers.rs.
#[test]
fn alignprop_trains_on_a_mixture_of_real_scorers() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
            }
        }
    };
    let hps = dir.path().join("hps");
    copy(&fixtures().join("open-clip-tiny"), &hps);
    copy(
        &fixtures().join("tiny-sdxl/tokenizer"),
        &hps.join("tokenizer"),
    );
    let rewards = format!(
        "[[alignprop.rewards]]\nname = \"aesthetic\"\nloss = \"abs-target\"\ntarget = 10.0\nmodel = {:?}\n\
         clip_model = {:?}\n[[alignprop.rewards]]\nname = \"hps\"\nloss = \"one-minus\"\nweight = 2.0\nmodel = {:?}\n",
        fixtures().join("aesthetic-tiny/model.safetensors"),
        fixtures().join("clip-tiny"),
        hps,
    );
    let config = write_config(
        dir.path(),
        &format!(
            "steps = 3\nlearning_rate = 1e-3\n[alignprop]\nprompts = \"prompts.txt\"\nsampling_steps = 2\nk = 1\n{rewards}"
        ),
    );
    let output = train(&config);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("out/metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for line in &lines {
        let names: Vec<&str> = line["rewards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["aesthetic", "hps"], "{line}");
        let hps_mean = line["rewards"][1]["mean"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&hps_mean), "a cosine: {line}");
        assert!(line["loss"].as_f64().unwrap().is_finite(), "{line}");
    }
}
