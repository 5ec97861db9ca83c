//! `popalign run` on a real-layout model: the tiny random SDXL fixture as a Hugging Face cache snapshot named
//! by repo id, classified by CLIP zero-shot and scored by the CLIP score (both the tiny random CLIP fixture,
//! a folder of the run). The images are noise, so the numbers mean nothing; what is tested is that every stage
//! runs on the real path, writes its artifacts, resumes after kills to the same bytes, and refuses bad input
//! before it writes anything.

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use crate::cli::fixtures;
use crate::demo::{artifacts, assert_same_artifacts};
use crate::hub::cache_repo;

const RUN: &str = r#"
model = "stabilityai/tiny-sdxl"
seed = 3

[prompts]
occupations = ["doctor", "nurse"]
axes = ["gender"]

[generate]
neutral_images = 2
specific_images = 1
eval_images = 2
steps = 2
guidance = 5.0
scheduler = "euler"

[classify]
classifier = "clip"
weights = "clip"

[preferences]
construction = "official"
iterations = 6
set_size = 2

[train]
steps = 2
batch_size = 2
learning_rate = 1e-4
beta = 5000.0
lora_rank = 4
checkpoint_every = 1
export = ["kohya"]
sample_every = 1

[evaluate]
metrics = ["clip", "hps"]
clip_model = "clip"
hps = "hps"
"#;

/// A Hugging Face home whose cache holds the tiny SDXL as `stabilityai/tiny-sdxl`.
fn hf_home(dir: &Path) -> PathBuf {
    let home = dir.join("hf");
    cache_repo(
        &home,
        "stabilityai/tiny-sdxl",
        &fixtures().join("tiny-sdxl"),
    );
    home
}

/// A run directory with `config` as its `run.toml`, and the tiny CLIP and open_clip models (each with a
/// tokenizer) in `clip/` and `hps/`.
fn run_dir(dir: &Path, name: &str, config: &str) -> PathBuf {
    let run = dir.join(name);
    for (fixture, folder) in [("clip-tiny", "clip"), ("open-clip-tiny", "hps")] {
        copy_files(&fixtures().join(fixture), &run.join(folder));
        let tokenizer = run.join(folder).join("tokenizer");
        copy_files(&fixtures().join("tiny-sdxl/tokenizer"), &tokenizer);
    }
    std::fs::write(run.join("run.toml"), config).unwrap();
    run
}

fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

fn popalign_run(run: &Path, home: &Path) -> Process {
    let mut command = Process::new(env!("CARGO_BIN_EXE_popalign"));
    command
        .env_remove("HF_HUB_CACHE")
        .env("HF_HOME", home)
        .args(["run", "--config"])
        .arg(run.join("run.toml"));
    command
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count()
}

#[test]
fn a_cached_sdxl_runs_every_stage_and_resumes_after_kills_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let home = hf_home(dir.path());
    let whole = run_dir(dir.path(), "whole", RUN);
    let started = std::time::Instant::now();
    let out = popalign_run(&whole, &home).output().unwrap();
    let full = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("the tiny SDXL run took {:.1} s", full.as_secs_f64());

    // Two occupations with 3 and 2 scenes: 5 neutral captions, 2 genders each, 2 evaluation prompts.
    assert_eq!(lines(&whole.join("prompts/neutral.csv")), 1 + 5);
    assert_eq!(lines(&whole.join("prompts/specific.csv")), 1 + 10);
    assert_eq!(lines(&whole.join("prompts/evaluation.csv")), 1 + 2);
    assert_eq!(lines(&whole.join("images/neutral/manifest.jsonl")), 10);
    assert_eq!(lines(&whole.join("images/specific/manifest.jsonl")), 10);
    assert_eq!(lines(&whole.join("eval/aligned/images/manifest.jsonl")), 4);
    let attributes = std::fs::read_to_string(whole.join("attributes/specific.csv")).unwrap();
    assert!(
        attributes.lines().nth(1).unwrap().contains("clip"),
        "{attributes}"
    );
    let pairs = std::fs::read_to_string(whole.join("preferences.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(pairs.lines().next().unwrap()).unwrap();
    assert!(
        first["caption"]
            .as_str()
            .unwrap()
            .starts_with("a photo of a"),
        "{first}"
    );
    assert_eq!(pairs.lines().count(), 6 * 2);
    // The sample grids (2 evaluation prompts × 2 images at steps 0, 1, 2) start as the base model's
    // evaluation images and end as the aligned model's, byte for byte.
    for (step, eval_set) in [(0, "base"), (1, ""), (2, "aligned")] {
        let grid = whole.join(format!("train/samples/step-{step}"));
        assert_eq!(lines(&grid.join("manifest.jsonl")), 4, "step {step}");
        for entry in std::fs::read_dir(&grid).unwrap() {
            let name = entry.unwrap().file_name();
            if eval_set.is_empty() || !name.to_string_lossy().ends_with(".png") {
                continue;
            }
            let same = whole.join(format!("eval/{eval_set}/images")).join(&name);
            assert!(
                std::fs::read(grid.join(&name)).unwrap() == std::fs::read(&same).unwrap(),
                "step {step}: {name:?} differs from the {eval_set} evaluation image"
            );
        }
    }
    let eval_images = |set: &str| artifacts(&whole.join(format!("eval/{set}/images")));
    let moved = eval_images("base")
        .iter()
        .zip(eval_images("aligned").values())
        .filter(|((name, base), aligned)| {
            name.extension().is_some_and(|e| e == "png") && base != aligned
        })
        .count();
    assert!(
        moved > 0,
        "training changed no evaluation image, so the grids prove nothing"
    );
    for file in ["pytorch_lora_weights.safetensors", "lora_kohya.safetensors"] {
        assert!(whole.join("train/step-2").join(file).exists(), "{file}");
    }
    let train = std::fs::read_to_string(whole.join("train.toml")).unwrap();
    assert!(
        train.contains("[lora]") && train.contains("rank = 4"),
        "{train}"
    );
    for model in ["base", "aligned"] {
        let summary: serde_json::Value = serde_json::from_slice(
            &std::fs::read(whole.join(format!("eval/{model}/summary.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(summary["quality"]["scorer"], "clip-score", "{summary}");
        assert_eq!(summary["quality"]["n_images"], 4, "{summary}");
        assert_eq!(summary["more_quality"][0]["scorer"], "hps", "{summary}");
        assert_eq!(summary["axes"]["gender"]["n_images"], 4, "{summary}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(whole.join("report/report.json")).unwrap()).unwrap();
    let grids = report["samples"].as_array().unwrap();
    let steps: Vec<u64> = grids.iter().map(|g| g["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 1, 2]);
    for cell in grids.iter().flat_map(|g| g["cells"].as_array().unwrap()) {
        let thumbnail = cell["thumbnail"].as_str().unwrap();
        assert!(whole.join("report").join(thumbnail).exists(), "{thumbnail}");
    }
    let page = std::fs::read_to_string(whole.join("report/index.html")).unwrap();
    assert!(page.contains("Samples during training") && page.contains("step 2"));
    for row in [
        "gender discrepancy",
        "clip-score (mean)",
        "hps (mean)",
        "face found (%)",
    ] {
        assert!(stdout.contains(row), "{row}: {stdout}");
    }

    // Killed at three points and run again, it ends with the uninterrupted run's bytes.
    let killed = run_dir(dir.path(), "killed", RUN);
    for fraction in [0.2, 0.5, 0.8] {
        let mut child = popalign_run(&killed, &home)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(fraction));
        let _ = child.kill();
        child.wait().unwrap();
    }
    assert!(popalign_run(&killed, &home).status().unwrap().success());
    assert_same_artifacts(
        &artifacts(&whole),
        &artifacts(&killed),
        "after kill-and-resume",
    );
}

/// Each bad input is one line on stderr, exit code 2, and leaves the run directory as it was.
#[test]
fn bad_run_configs_are_one_line_errors_that_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = hf_home(dir.path());
    let partial = cache_repo(&home, "org/partial", &fixtures().join("tiny-sdxl"));
    std::fs::remove_dir_all(partial.join("unet")).unwrap();
    let cases: [(&str, &str, &[&str]); 8] = [
        (
            "unknown-repo",
            &RUN.replace("stabilityai/tiny-sdxl", "nobody/no-such-model"),
            &["nobody/no-such-model", "huggingface-cli download"],
        ),
        (
            "missing-component",
            &RUN.replace("stabilityai/tiny-sdxl", "org/partial"),
            &["unet"],
        ),
        (
            "unknown-classifier",
            &RUN.replace("classifier = \"clip\"", "classifier = \"deepfake\""),
            &["deepfake", "fairface"],
        ),
        (
            "wrong-weights",
            &RUN.replace("classifier = \"clip\"", "classifier = \"fairface\""),
            &["fairface.safetensors", "file not found"],
        ),
        (
            "misspelt-key",
            &RUN.replace("occupations = [", "occupatons = ["),
            &["occupatons", "occupations"],
        ),
        (
            "no-occupations",
            &RUN.replace("occupations = [\"doctor\", \"nurse\"]", "occupations = []"),
            &["occupations is empty"],
        ),
        (
            "unknown-occupation",
            &RUN.replace("\"nurse\"", "\"astronaut-king\""),
            &["astronaut-king", "data/occupations.toml"],
        ),
        (
            "export-without-lora",
            &RUN.replace("lora_rank = 4", "lora_rank = 0"),
            &["export", "lora_rank > 0"],
        ),
    ];
    for (name, config, expected) in cases {
        let run = run_dir(dir.path(), name, config);
        let out = popalign_run(&run, &home).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
        for word in expected {
            assert!(stderr.contains(word), "{name}: {word:?} not in {stderr}");
        }
        let mut left: Vec<String> = std::fs::read_dir(&run)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["clip", "hps", "run.toml"], "{name}: nothing written");
    }
}

/// `popalign init` writes the official recipe for a model; the written file runs as it is.
#[test]
fn init_writes_a_recipe_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let home = hf_home(dir.path());
    let run = dir.path().join("run");
    let init = || {
        Process::new(env!("CARGO_BIN_EXE_popalign"))
            .args(["init", "--model", "stabilityai/tiny-sdxl", "--out"])
            .arg(&run)
            .output()
            .unwrap()
    };
    assert!(init().status.success());
    let text = std::fs::read_to_string(run.join("run.toml")).unwrap();
    assert!(
        text.contains("model = \"stabilityai/tiny-sdxl\"\n"),
        "{text}"
    );
    assert!(text.contains("learning_rate = 5e-7"), "{text}");
    let again = init();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let out = popalign_run(&run, &home)
        .args(["--stage", "prompts"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every occupation of data/ with race × gender: 257 captions and 12 identities each.
    assert_eq!(lines(&run.join("prompts/neutral.csv")), 1 + 257);
    assert_eq!(lines(&run.join("prompts/specific.csv")), 1 + 257 * 12);
    assert_eq!(lines(&run.join("prompts/evaluation.csv")), 1 + 128);
}
