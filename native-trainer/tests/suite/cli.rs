//! The CLI contract of docs/design.md §4, run as a user runs it: outputs equal the reference goldens, bad input
//! exits with code 2 and one line on stderr.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use popalign_core::io::tensor_io::read_tensors;

pub(crate) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

pub(crate) fn popalign() -> Command {
    Command::cargo_bin("popalign").unwrap()
}

/// Max abs difference between same-named tensors of two files (every tensor of `expected` must exist).
fn max_error(actual: &Path, expected: &Path) -> f32 {
    let (a, e) = (
        read_tensors(actual).unwrap(),
        read_tensors(expected).unwrap(),
    );
    let mut worst = 0f32;
    for (name, want) in &e {
        let got = a
            .get(name)
            .unwrap_or_else(|| panic!("output `{name}` missing"));
        assert_eq!(got.shape, want.shape, "{name}");
        let (g, w) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
        worst = g
            .iter()
            .zip(&w)
            .map(|(x, y)| (x - y).abs())
            .fold(worst, f32::max);
    }
    worst
}

fn run_module(model: &Path, component: &str, io_name: &str) -> f32 {
    let out = tempfile::tempdir().unwrap();
    let out_file = out.path().join("out.safetensors");
    popalign()
        .args(["run-module", "--component", component, "--model"])
        .arg(model)
        .arg("--inputs")
        .arg(fixtures().join(format!("io/{io_name}_inputs.safetensors")))
        .arg("--out")
        .arg(&out_file)
        .assert()
        .success();
    let error = max_error(
        &out_file,
        &fixtures().join(format!("io/{io_name}_outputs.safetensors")),
    );
    println!("run-module {component} ({io_name}): max abs error {error:.3e}");
    error
}

#[test]
fn run_module_matches_reference_for_every_component() {
    let root = fixtures().join("tiny-sdxl");
    assert!(run_module(&root, "unet", "unet_sdxl") <= 1e-4);
    assert!(run_module(&root, "vae-encode", "vae_encode") <= 1e-4);
    assert!(run_module(&root, "vae-decode", "vae_decode") <= 1e-4);
    assert!(run_module(&root, "text-encoder", "text_encoder") <= 1e-4);
    assert!(run_module(&root, "text-encoder-2", "text_encoder_2") <= 1e-4);
    // A component folder works as well as a model root.
    assert!(run_module(&fixtures().join("tiny-sd15-unet"), "unet", "unet_sd15") <= 1e-4);
}

#[test]
fn tokenize_json_matches_transformers() {
    let dir = fixtures().join("clip-tokenizer");
    let prompts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("prompts.json")).unwrap()).unwrap();
    let ids: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ids.json")).unwrap()).unwrap();
    let output = popalign()
        .args(["tokenize", "--json", "--tokenizer"])
        .arg(dir.join("tokenizer_2"))
        .args(&prompts[..10])
        .output()
        .unwrap();
    assert!(output.status.success());
    let got: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        got.as_array().unwrap()[..],
        ids["tokenizer_2"].as_array().unwrap()[..10]
    );
}

#[test]
fn schedule_prints_diffusers_timesteps() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("io/schedulers.json")).unwrap(),
    )
    .unwrap();
    for scheduler in ["euler", "ddim"] {
        let output = popalign()
            .args([
                "schedule",
                "--scheduler",
                scheduler,
                "--steps",
                "30",
                "--config",
            ])
            .arg(fixtures().join("tiny-sdxl/scheduler/scheduler_config.json"))
            .output()
            .unwrap();
        assert!(output.status.success());
        let got: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let want = &reference[scheduler]["30"];
        let as_f64 = |v: &serde_json::Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            as_f64(&got["timesteps"]),
            as_f64(&want["timesteps"]),
            "{scheduler}"
        );
        if scheduler == "euler" {
            for (g, w) in as_f64(&got["sigmas"]).iter().zip(as_f64(&want["sigmas"])) {
                assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "sigma {g} vs {w}");
            }
        }
    }
}

#[test]
fn generate_writes_images_deterministically_and_resumes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // `b` on one thread, `a` on every core: the same bytes.
    let generate = |out: &Path, threads: &[&str]| {
        popalign()
            .args(threads)
            .args([
                "generate",
                "--prompt",
                "a photo of a doctor",
                "--steps",
                "3",
                "--num-images",
                "2",
                "--seed",
                "7",
                "--model",
            ])
            .arg(fixtures().join("tiny-sdxl"))
            .arg("--out")
            .arg(out)
            .assert()
            .success();
    };
    generate(a.path(), &[]);
    generate(b.path(), &["--threads", "1"]);
    let mut names: Vec<String> = std::fs::read_dir(a.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    let pngs: Vec<&String> = names.iter().filter(|n| n.ends_with(".png")).collect();
    for name in &pngs {
        assert_eq!(
            std::fs::read(a.path().join(name)).unwrap(),
            std::fs::read(b.path().join(name)).unwrap(),
            "{name} differs between runs"
        );
        let image = image::open(a.path().join(name)).unwrap();
        assert_eq!((image.width(), image.height()), (64, 64));
    }
    assert_ne!(
        std::fs::read(a.path().join(pngs[0])).unwrap(),
        std::fs::read(a.path().join(pngs[1])).unwrap()
    );
    // A second run over the same folder finds the images done and rewrites nothing.
    let before = std::fs::metadata(a.path().join(pngs[0]))
        .unwrap()
        .modified()
        .unwrap();
    generate(a.path(), &[]);
    assert_eq!(
        std::fs::metadata(a.path().join(pngs[0]))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
}

/// Runs a failing command and returns its single stderr line.
pub(crate) fn fails_with_code_2(command: &mut Command) -> String {
    let output = command.output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line expected: {stderr}"
    );
    stderr
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let target = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn unet_command(model: &Path, inputs: &str) -> Command {
    module_command("unet", model, inputs)
}

fn module_command(component: &str, model: &Path, inputs: &str) -> Command {
    let mut command = popalign();
    command
        .args([
            "run-module",
            "--component",
            component,
            "--out",
            "/tmp/popalign-never-written.safetensors",
            "--model",
        ])
        .arg(model)
        .arg("--inputs")
        .arg(fixtures().join(format!("io/{inputs}.safetensors")));
    command
}

#[test]
fn bad_inputs_exit_2_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let unet = dir.path().join("unet");
    copy_dir(&fixtures().join("tiny-sdxl/unet"), &unet);

    let weights = unet.join("diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() - 1000]).unwrap();
    let line = fails_with_code_2(&mut unet_command(&unet, "unet_sdxl_inputs"));
    assert!(
        line.contains("diffusion_pytorch_model.safetensors"),
        "{line}"
    );
    std::fs::write(&weights, &bytes).unwrap();

    let config = unet.join("config.json");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        original.replace("\"layers_per_block\": 2", "\"layers_per_block\": \"two\""),
    )
    .unwrap();
    let line = fails_with_code_2(&mut unet_command(&unet, "unet_sdxl_inputs"));
    assert!(
        line.contains("config.json") && line.contains("layers_per_block"),
        "{line}"
    );
    std::fs::write(&config, original).unwrap();

    // SD 1.5 inputs (cross-attention 16) given to the SDXL U-Net (48).
    let line = fails_with_code_2(&mut unet_command(&unet, "unet_sd15_inputs"));
    assert!(
        line.contains("encoder_hidden_states") && line.contains("[2, 77, 16]"),
        "{line}"
    );

    let tokenizer = dir.path().join("tokenizer");
    copy_dir(&fixtures().join("tiny-sdxl/tokenizer"), &tokenizer);
    std::fs::remove_file(tokenizer.join("merges.txt")).unwrap();
    let line = fails_with_code_2(
        popalign()
            .args(["tokenize", "--tokenizer"])
            .arg(&tokenizer)
            .arg("a photo"),
    );
    assert!(
        line.contains("merges.txt") && line.contains("not found"),
        "{line}"
    );

    let line = fails_with_code_2(&mut module_command("unet-xl", &unet, "unet_sdxl_inputs"));
    assert!(line.contains("unknown component `unet-xl`"), "{line}");
}

#[test]
fn run_module_applies_a_diffusers_lora_like_peft() {
    use burn::tensor::TensorData;
    let golden = read_tensors(&fixtures().join("io/objectives_unet.safetensors")).unwrap();
    let twice = |name: &str| {
        let data = golden[name].clone().convert::<f32>();
        let mut shape = data.shape.to_vec();
        let values = data.to_vec::<f32>().unwrap();
        shape[0] *= 2;
        TensorData::new([values.clone(), values].concat(), shape)
    };
    let inputs: std::collections::BTreeMap<String, TensorData> = [
        ("sample".to_string(), golden["x_t"].clone()),
        ("timestep".to_string(), twice("timesteps")),
        (
            "encoder_hidden_states".to_string(),
            twice("encoder_hidden_states"),
        ),
        ("text_embeds".to_string(), twice("text_embeds")),
        ("time_ids".to_string(), twice("time_ids")),
    ]
    .into();
    let dir = tempfile::tempdir().unwrap();
    let (input_file, output_file) = (
        dir.path().join("in.safetensors"),
        dir.path().join("out.safetensors"),
    );
    popalign_core::io::tensor_io::write_tensors(&input_file, &inputs).unwrap();
    popalign()
        .args(["run-module", "--component", "unet", "--model"])
        .arg(fixtures().join("tiny-sdxl"))
        .arg("--lora")
        .arg(fixtures().join("io/lora_tiny.safetensors"))
        .arg("--inputs")
        .arg(&input_file)
        .arg("--out")
        .arg(&output_file)
        .assert()
        .success();
    let out = read_tensors(&output_file).unwrap()["out"]
        .to_vec::<f32>()
        .unwrap();
    let want = golden["unet_lora_out"].to_vec::<f32>().unwrap();
    let error = out
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("run-module --lora vs diffusers+peft: max abs error {error:.3e}");
    assert!(error <= 1e-4);
}

/// The kohya export of the LoRA `popalign train` wrote for the tiny SDXL equals, tensor for tensor, the file
/// `tools/fixtures/check_kohya_export.py` loaded into diffusers (U-Net output identical to the peft file's,
/// max abs error 0, `fixtures/io/lora_kohya_check.json`). A file that is not a LoRA is refused.
#[test]
fn export_lora_writes_the_kohya_file_diffusers_loaded() {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("kohya.safetensors");
    let export = |lora: &Path| {
        popalign()
            .args(["export-lora", "--format", "kohya", "--model"])
            .arg(fixtures().join("tiny-sdxl"))
            .arg("--lora")
            .arg(lora)
            .arg("--out")
            .arg(&file)
            .output()
            .unwrap()
    };
    let output = export(&fixtures().join("io/lora_trained_by_popalign.safetensors"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let checked =
        read_tensors(&fixtures().join("io/lora_trained_by_popalign_kohya.safetensors")).unwrap();
    let written = read_tensors(&file).unwrap();
    assert_eq!(written.len(), checked.len());
    for (name, want) in &checked {
        assert!(
            written.get(name) == Some(want),
            "`{name}` differs from the file diffusers loaded"
        );
    }
    let output = export(&fixtures().join("io/lora_check_inputs.safetensors"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("lora_check_inputs.safetensors") && stderr.contains("not a diffusers LoRA"),
        "{stderr}"
    );
}
