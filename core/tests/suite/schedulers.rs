//! Schedules and sampler steps against diffusers 0.42.1 (`EulerDiscreteScheduler`, `DDIMScheduler`,
//! `DDPMScheduler.add_noise`) with the SDXL scheduler config.

use crate::common;

use burn::prelude::*;
use common::*;
use popalign_core::diffusion::schedulers::{
    DdimScheduler, EulerDiscreteScheduler, NoiseSchedule, Sampler, SchedulerConfig, Spacing,
};
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("io/schedulers.json")).unwrap())
        .unwrap()
}

fn config() -> SchedulerConfig {
    let path = fixtures().join("tiny-sdxl/scheduler/scheduler_config.json");
    popalign_core::io::load::read_config(&path).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn assert_all_close(label: &str, got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{label}: length");
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1e-6))
        .fold(0.0, f64::max);
    println!("{label}: max rel error {worst:.2e}");
    assert!(worst <= rel, "{label}: {got:?} vs {want:?}");
}

#[test]
fn alphas_cumprod_match() {
    let schedule = NoiseSchedule::new(&config());
    assert_all_close(
        "alphas_cumprod",
        &schedule.alphas_cumprod,
        &floats(&reference()["alphas_cumprod"]),
        1e-6,
    );
}

#[test]
fn euler_timesteps_sigmas_and_init_sigma_match() {
    let reference = reference();
    for steps in ["1", "4", "30", "50"] {
        let euler = EulerDiscreteScheduler::new(&config(), steps.parse().unwrap());
        let want = &reference["euler"][steps];
        assert_eq!(
            euler.timesteps,
            floats(&want["timesteps"]),
            "euler {steps} timesteps"
        );
        assert_all_close(
            &format!("euler {steps} sigmas"),
            &euler.sigmas,
            &floats(&want["sigmas"]),
            1e-6,
        );
        assert_all_close(
            &format!("euler {steps} init sigma"),
            &[euler.init_noise_sigma],
            &[want["init_noise_sigma"].as_f64().unwrap()],
            1e-6,
        );
    }
    for (name, spacing) in [
        ("leading", Spacing::Leading),
        ("trailing", Spacing::Trailing),
        ("linspace", Spacing::Linspace),
    ] {
        let config = SchedulerConfig {
            timestep_spacing: spacing,
            ..config()
        };
        let euler = EulerDiscreteScheduler::new(&config, 30);
        let want = &reference["euler_spacing"][name]["30"];
        assert_all_close(
            &format!("euler {name} timesteps"),
            &euler.timesteps,
            &floats(&want["timesteps"]),
            1e-6,
        );
        assert_all_close(
            &format!("euler {name} sigmas"),
            &euler.sigmas,
            &floats(&want["sigmas"]),
            1e-6,
        );
        assert_all_close(
            &format!("euler {name} init sigma"),
            &[euler.init_noise_sigma],
            &[want["init_noise_sigma"].as_f64().unwrap()],
            1e-6,
        );
    }
}

#[test]
fn ddim_timesteps_match() {
    let reference = reference();
    for steps in ["1", "4", "30", "50"] {
        let ddim = DdimScheduler::new(&config(), steps.parse().unwrap(), 0.0);
        assert_eq!(
            ddim.timesteps,
            floats(&reference["ddim"][steps]["timesteps"]),
            "ddim {steps}"
        );
    }
}

#[test]
fn euler_steps_match() {
    let golden = io("euler_step");
    let euler = EulerDiscreteScheduler::new(&config(), 4);
    let model_output = float::<4>(&golden["model_output"]);
    let mut sample = float::<4>(&golden["sample"]);
    for i in 0..4 {
        let scaled = Sampler::scale_model_input(&euler, sample.clone(), i);
        assert_close(
            &format!("euler scaled {i}"),
            scaled,
            &golden[&format!("scaled_{i}")],
            1e-5,
        );
        sample = euler.step(model_output.clone(), i, sample, None);
        assert_close(
            &format!("euler prev {i}"),
            sample.clone(),
            &golden[&format!("prev_sample_{i}")],
            1e-5,
        );
    }
}

#[test]
fn ddim_steps_match_for_eta_zero_and_one() {
    let golden = io("ddim_step");
    let model_output = float::<4>(&golden["model_output"]);
    for (eta, prefix) in [(0.0, "prev_sample"), (1.0, "prev_sample_eta1")] {
        let ddim = DdimScheduler::new(&config(), 4, eta);
        let mut sample = float::<4>(&golden["sample"]);
        for i in 0..4 {
            let noise = (eta > 0.0).then(|| float::<4>(&golden[&format!("variance_noise_{i}")]));
            sample = ddim.step(model_output.clone(), i, sample, noise);
            assert_close(
                &format!("ddim η={eta} step {i}"),
                sample.clone(),
                &golden[&format!("{prefix}_{i}")],
                1e-5,
            );
        }
    }
}

#[test]
fn ddpm_add_noise_matches() {
    let golden = io("ddpm_add_noise");
    let timesteps: Vec<usize> = golden["timesteps"]
        .to_vec::<i64>()
        .unwrap()
        .iter()
        .map(|&t| t as usize)
        .collect();
    let noisy = NoiseSchedule::new(&config()).add_noise(
        float::<4>(&golden["original"]),
        float::<4>(&golden["noise"]),
        &timesteps,
    );
    assert_close("add_noise", noisy, &golden["noisy"], 1e-5);
}

/// `step_mean_std_rows` is `step_mean_std` row by row: each row at its own step, and every row at one step.
#[test]
fn ddim_per_row_steps_match_the_single_step() {
    let golden = io("ddim_step");
    let ddim = DdimScheduler::new(&config(), 4, 1.0);
    let one = |name: &str| float::<4>(&golden[name]).narrow(0, 0, 1);
    let (output, sample) = (one("model_output"), one("sample"));
    // Row i: its own output and sample (scaled so rows differ), at step i.
    let rows = |t: Tensor<B, 4>| {
        Tensor::cat(
            (0..4)
                .map(|i| t.clone() * (1.0 + 0.25 * i as f64))
                .collect(),
            0,
        )
    };
    let (outputs, samples) = (rows(output), rows(sample));
    // f32 rounding only: the per-row path multiplies by 1/√ᾱ where `step_mean_std` divides by √ᾱ.
    let close = |label: &str, got: Tensor<B, 4>, want: Tensor<B, 4>| {
        let scale = want.clone().abs().max().into_scalar();
        let error = (got - want).abs().max().into_scalar() / scale;
        println!("{label}: max abs error / max |mean| {error:.2e}");
        assert!(error <= 1e-6, "{label}: {error:.2e}");
    };
    let (means, stds) = ddim.step_mean_std_rows(outputs.clone(), &[0, 1, 2, 3], samples.clone());
    for i in 0..4 {
        let (mean, std) = ddim.step_mean_std(
            outputs.clone().narrow(0, i, 1),
            i,
            samples.clone().narrow(0, i, 1),
        );
        close(
            &format!("row {i} at step {i}"),
            means.clone().narrow(0, i, 1),
            mean,
        );
        assert_eq!(stds[i], std, "row {i} std");
        let (means, stds) = ddim.step_mean_std_rows(outputs.clone(), &[i; 4], samples.clone());
        let (mean, std) = ddim.step_mean_std(outputs.clone(), i, samples.clone());
        close(&format!("all rows at step {i}"), means, mean);
        assert!(stds.iter().all(|&s| s == std), "step {i} stds");
    }
}

/// A step of zero variance (the last one when `set_alpha_to_one`) gets no weight in dense DPO's step draw.
#[test]
fn dense_step_weights_skip_a_zero_variance_step() {
    use popalign_core::align::objectives::dense::{scheduler_step_weights, step_weights};
    let plain = DdimScheduler::new(&config(), 4, 1.0);
    assert_eq!(scheduler_step_weights(0.9, &plain), step_weights(0.9, 4));

    let mut to_one = config();
    to_one.set_alpha_to_one = true;
    let ddim = DdimScheduler::new(&to_one, 4, 1.0);
    assert_eq!((ddim.alphas(3).1, ddim.std(3)), (1.0, 0.0));
    let weights = scheduler_step_weights(0.9, &ddim);
    let raw = step_weights(0.9, 4);
    let kept: f64 = raw[..3].iter().sum();
    assert_eq!(weights[3], 0.0);
    for i in 0..3 {
        assert!((weights[i] - raw[i] / kept).abs() <= 1e-15, "step {i}");
    }
    assert!((weights.iter().sum::<f64>() - 1.0).abs() <= 1e-15);
}
