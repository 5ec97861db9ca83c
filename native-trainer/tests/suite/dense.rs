//! Dense-reward DPO through the tool: `[generate] trajectories = true` records each training image's DDIM
//! η = 1 chain beside it, and `popalign train` with `objective = "dense"` learns from those chains.

use std::path::Path;
use std::process::Command;

use popalign_core::io::tensor_io::read_tensors;

const RUN: &str = r#"model = "toy"
seed = 0
stages = ["prompts", "generate", "classify", "preferences"]

[generate]
neutral_images = 4
specific_images = 1
eval_images = 1
steps = 5
guidance = 8.0
batch_size = 32
trajectories = true

[preferences]
construction = "official"
iterations = 20
set_size = 2

[train]
objective = "dense"
steps = 1
batch_size = 2
learning_rate = 0.0001
beta = 500.0
lora_rank = 0
"#;

fn popalign() -> Command {
    Command::new(env!("CARGO_BIN_EXE_popalign"))
}

fn ok(output: std::process::Output) -> std::process::Output {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn pngs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    files
}

/// The chain ends where the image is: in the toy's pixel space the PNG is `round(255·clamp(x_S/2 + ½))`.
fn assert_chain_ends_in_its_image(png: &Path) {
    let tensors = read_tensors(&png.with_extension("trajectory.safetensors")).unwrap();
    let latents = &tensors["latents"];
    assert_eq!(
        latents.shape.to_vec(),
        vec![6, 3, 16, 16],
        "{}",
        png.display()
    );
    let values = latents.clone().to_vec::<f32>().unwrap();
    let last = &values[5 * 3 * 256..];
    let image = image::open(png).unwrap().to_rgb8();
    for (x, y, pixel) in image.enumerate_pixels() {
        for c in 0..3 {
            let v = last[c * 256 + y as usize * 16 + x as usize];
            // burn rounds half to even.
            let expected = ((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round_ties_even() as u8;
            assert_eq!(pixel[c], expected, "{} at ({x}, {y})", png.display());
        }
    }
    let timesteps = tensors["timesteps"].clone().to_vec::<f32>().unwrap();
    assert_eq!(timesteps.len(), 5);
    assert!(timesteps.windows(2).all(|w| w[0] > w[1]), "noisiest first");
}

/// Generates the toy populations with their chains in `run` and splits the pairs into `train.jsonl` and
/// `held-out.jsonl` (8 pairs); returns the training lines.
fn populations_with_chains(run: &Path) -> Vec<String> {
    std::fs::write(run.join("run.toml"), RUN).unwrap();
    ok(popalign()
        .args(["run", "--config"])
        .arg(run.join("run.toml"))
        .output()
        .unwrap());
    let pairs = std::fs::read_to_string(run.join("preferences.jsonl")).unwrap();
    let lines: Vec<String> = pairs.lines().map(String::from).collect();
    let (train, held_out) = lines.split_at(lines.len() - 8);
    std::fs::write(run.join("train.jsonl"), train.join("\n")).unwrap();
    std::fs::write(run.join("held-out.jsonl"), held_out.join("\n")).unwrap();
    train.to_vec()
}

/// The dense training config: full fine-tuning, one sampled step per chain, held-out validation.
fn dense_config(run: &Path, steps: usize, extra: &str) -> String {
    format!(
        "{extra}model = {:?}\npreferences = \"train.jsonl\"\noutput = \"out\"\nobjective = \"dense\"\nseed = 0\n\
         steps = {steps}\nbatch_size = 4\nlearning_rate = 5e-6\ncheckpoint_every = 15\nresolution = 16\n\
         [dense]\nlog_ratio_clip = 0.01\nsteps_per_update = 1\n\
         [validation]\npreferences = \"held-out.jsonl\"\ndraws = 2\n",
        run.join("model")
    )
}

#[test]
fn chains_are_recorded_with_the_training_images_and_dense_training_lowers_the_held_out_loss() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path();
    let train = populations_with_chains(run);

    for set in ["neutral", "specific"] {
        let images = pngs(&run.join("images").join(set));
        assert!(!images.is_empty());
        for png in &images {
            assert_chain_ends_in_its_image(png);
        }
    }
    let eval = run.join("eval/base/images");
    assert!(!pngs(&eval).is_empty());
    assert!(
        pngs(&eval)
            .iter()
            .all(|p| !p.with_extension("trajectory.safetensors").exists()),
        "evaluation images need no chains"
    );

    // The official clip (1e-4 on the per-element mean log-ratio) saturates within a few steps on the
    // toy's 16×16 pixels; a wider band lets the held-out logits keep moving over a short run. At a
    // learning rate of 1e-4 every logit reaches −C·clip on both sides within a few steps, and a loss of
    // exactly ln 2 says so.
    std::fs::write(run.join("dense.toml"), dense_config(run, 30, "")).unwrap();
    ok(popalign()
        .args(["train", "--config"])
        .arg(run.join("dense.toml"))
        .output()
        .unwrap());
    let held_out: Vec<(f64, f64)> = metric_lines(&run.join("out"))
        .iter()
        .filter_map(|l| Some((l.get("val_loss")?.as_f64()?, l["val_accuracy"].as_f64()?)))
        .collect();
    println!("dense held-out (loss, implicit accuracy) at steps 0, 15, 30: {held_out:?}");
    let held_out_loss: Vec<f64> = held_out.iter().map(|v| v.0).collect();
    assert_eq!(held_out_loss.len(), 3);
    // At step 0 policy = reference: every logit is 0 (ties, accuracy 0, loss ln 2).
    assert!(held_out[2].1 > 0.5, "{held_out:?}");
    assert!((held_out_loss[0] - std::f64::consts::LN_2).abs() < 1e-6);
    assert!(
        held_out_loss.windows(2).all(|w| w[1] < w[0]) && held_out_loss[2] < 0.69,
        "{held_out_loss:?}"
    );

    // A pair whose chain is missing is named, with what to do about it.
    let first = serde_json::from_str::<serde_json::Value>(&train[0]).unwrap();
    let missing = run
        .join(first["preferred"].as_str().unwrap())
        .with_extension("trajectory.safetensors");
    std::fs::remove_file(&missing).unwrap();
    std::fs::write(run.join("one.jsonl"), format!("{}\n", train[0])).unwrap();
    let config = std::fs::read_to_string(run.join("dense.toml"))
        .unwrap()
        .replace("train.jsonl", "one.jsonl")
        .replace("\"out\"", "\"out-missing\"");
    std::fs::write(run.join("missing.toml"), config).unwrap();
    let output = popalign()
        .args(["train", "--config"])
        .arg(run.join("missing.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&missing.file_name().unwrap().to_string_lossy().to_string())
            && stderr.contains("trajectories = true"),
        "{stderr}"
    );
}

/// The `metrics.jsonl` lines of a training output.
fn metric_lines(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Dense training in bf16 (burn-flex, the CPU backend with bf16 tensors), full fine-tuning with its frozen
/// copy in bf16. At step 0 the policy and its reference tie exactly in both precisions (training and
/// held-out loss ln 2): the reference runs the policy's own autodiff ops. After that bf16 departs from f32
/// (printed, not bounded): one update flips the bf16 rounding of some weights, and the density's 1/(2σ²)
/// carries that past the log-ratio clip. The saved U-Net is f32.
#[cfg(feature = "flex")]
#[test]
fn dense_trains_in_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path();
    populations_with_chains(run);
    let mut traces = Vec::new();
    for (name, extra) in [("f32", ""), ("bf16", "precision = \"bf16\"\n")] {
        let config = dense_config(run, 4, extra).replace("\"out\"", &format!("\"out-{name}\""));
        let file = run.join(format!("{name}.toml"));
        std::fs::write(&file, config).unwrap();
        ok(popalign()
            .args(["train", "--config"])
            .arg(&file)
            .output()
            .unwrap());
        let lines = metric_lines(&run.join(format!("out-{name}")));
        let losses = ["loss", "val_loss"].map(|key| {
            lines
                .iter()
                .filter_map(|l| l.get(key)?.as_f64())
                .collect::<Vec<_>>()
        });
        traces.push(losses.concat());
    }
    println!(
        "dense losses (4 steps, then held-out at steps 0 and 4), f32 {:?}\n bf16 {:?}",
        traces[0], traces[1]
    );
    for trace in &traces {
        assert_eq!(trace.len(), 6);
        assert!(trace.iter().all(|l| l.is_finite()), "{traces:?}");
        for step_0 in [trace[0], trace[4]] {
            assert!((step_0 - std::f64::consts::LN_2).abs() < 1e-6, "{traces:?}");
        }
    }
    let saved = read_tensors(&run.join("out-bf16/step-4/unet/diffusion_pytorch_model.safetensors"))
        .unwrap();
    assert!(!saved.is_empty());
    for (name, tensor) in &saved {
        assert_eq!(tensor.dtype, burn::tensor::DType::F32, "{name}");
    }
}
