//! diffusers `DDIMScheduler`. With η = 0 the update is deterministic; with η > 0 it is a Gaussian step
//! `x_prev ~ N(μ, σₜ²)`, σₜ = η·√((1 − ᾱ_prev)/(1 − ᾱₜ) · (1 − ᾱₜ/ᾱ_prev)), whose log-density
//! dense-reward DPO needs ([`DdimScheduler::step_mean_std`]).

use burn::prelude::*;

use super::Sampler;
use super::config::SchedulerConfig;
use super::ddpm::NoiseSchedule;

#[derive(Debug, Clone)]
pub struct DdimScheduler {
    pub timesteps: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    pub final_alpha_cumprod: f64,
    pub step_ratio: usize,
    pub eta: f64,
    pub v_prediction: bool,
    pub clip_sample: Option<f64>,
}

impl DdimScheduler {
    pub fn new(config: &SchedulerConfig, steps: usize, eta: f64) -> Self {
        let schedule = NoiseSchedule::new(config);
        let mut timesteps = config.spaced_timesteps(steps);
        // DDIM keeps integer timesteps for every spacing.
        for t in &mut timesteps {
            *t = t.round();
        }
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            schedule.alphas_cumprod[0]
        };
        Self {
            timesteps,
            final_alpha_cumprod,
            alphas_cumprod: schedule.alphas_cumprod,
            step_ratio: config.num_train_timesteps / steps,
            eta,
            v_prediction: config.v_prediction(),
            clip_sample: config.clip_sample.then_some(config.clip_sample_range),
        }
    }

    /// Mean and standard deviation of `x_prev` given the model output at step `i`.
    pub fn step_mean_std<B: Backend>(
        &self,
        model_output: Tensor<B, 4>,
        i: usize,
        sample: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, f64) {
        let t = self.timesteps[i] as i64;
        let prev = t - self.step_ratio as i64;
        let alpha = self.alphas_cumprod[t as usize];
        let alpha_prev = if prev >= 0 {
            self.alphas_cumprod[prev as usize]
        } else {
            self.final_alpha_cumprod
        };
        let beta = 1.0 - alpha;
        let (mut x0, eps) = if self.v_prediction {
            (
                sample.clone() * alpha.sqrt() - model_output.clone() * beta.sqrt(),
                model_output * alpha.sqrt() + sample * beta.sqrt(),
            )
        } else {
            (
                (sample - model_output.clone() * beta.sqrt()) / alpha.sqrt(),
                model_output,
            )
        };
        if let Some(range) = self.clip_sample {
            x0 = x0.clamp(-range, range);
        }
        let variance = (1.0 - alpha_prev) / beta * (1.0 - alpha / alpha_prev);
        let std = self.eta * variance.sqrt();
        let direction = eps * (1.0 - alpha_prev - std * std).max(0.0).sqrt();
        (x0 * alpha_prev.sqrt() + direction, std)
    }
}

impl<B: Backend> Sampler<B> for DdimScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, sample: Tensor<B, 4>, _i: usize) -> Tensor<B, 4> {
        sample
    }

    fn step(
        &self,
        model_output: Tensor<B, 4>,
        i: usize,
        sample: Tensor<B, 4>,
        noise: Option<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        let (mean, std) = self.step_mean_std(model_output, i, sample);
        match noise {
            Some(noise) if std > 0.0 => mean + noise * std,
            _ => mean,
        }
    }
}

/// Per-element mean of `log N(x; mean, std²)`, `[B, …]` → `[B]`: the log-density of a DDIM η > 0 step as
/// dense-reward DPO averages it over latent elements.
pub fn gaussian_log_density<B: Backend>(
    x: Tensor<B, 4>,
    mean: Tensor<B, 4>,
    std: f64,
) -> Tensor<B, 1> {
    let [b, c, h, w] = x.dims();
    let z = (x - mean) / std;
    let log_density =
        z.powf_scalar(2.0) * -0.5 - (std.ln() + 0.5 * (2.0 * std::f64::consts::PI).ln());
    log_density.reshape([b, c * h * w]).mean_dim(1).reshape([b])
}
