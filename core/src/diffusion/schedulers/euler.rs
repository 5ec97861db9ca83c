//! diffusers `EulerDiscreteScheduler` (SDXL's default): σ = √((1 − ᾱ)/ᾱ) interpolated at the spaced
//! timesteps, a final σ = 0, inputs scaled by 1/√(σ² + 1), and the deterministic Euler update
//! `x ← x + (x − x̂₀)/σ · (σ_next − σ)`.

use burn::prelude::*;

use super::Sampler;
use super::config::{SchedulerConfig, Spacing};
use super::ddpm::NoiseSchedule;

#[derive(Debug, Clone)]
pub struct EulerDiscreteScheduler {
    pub timesteps: Vec<f64>,
    /// One more than `timesteps`: the last is 0.
    pub sigmas: Vec<f64>,
    pub init_noise_sigma: f64,
    pub v_prediction: bool,
}

impl EulerDiscreteScheduler {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Self {
        let schedule = NoiseSchedule::new(config);
        let train_sigmas: Vec<f64> = schedule
            .alphas_cumprod
            .iter()
            .map(|&a| (((1.0 - a as f32) / a as f32).sqrt()) as f64)
            .collect();
        let timesteps = config.spaced_timesteps(steps);
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|&t| interpolate(&train_sigmas, t))
            .collect();
        sigmas.push(0.0);
        // diffusers takes the largest *inference* σ (in f32).
        let max_sigma = sigmas.iter().cloned().fold(0.0, f64::max) as f32 as f64;
        let init_noise_sigma = match config.timestep_spacing {
            Spacing::Linspace | Spacing::Trailing => max_sigma,
            Spacing::Leading => (max_sigma * max_sigma + 1.0).sqrt(),
        };
        Self {
            timesteps,
            sigmas,
            init_noise_sigma,
            v_prediction: config.v_prediction(),
        }
    }
}

/// `np.interp(t, arange(len), values)`.
fn interpolate(values: &[f64], t: f64) -> f64 {
    let last = values.len() - 1;
    let lo = t.floor().clamp(0.0, last as f64) as usize;
    let hi = (lo + 1).min(last);
    values[lo] + (values[hi] - values[lo]) * (t - lo as f64)
}

impl<B: Backend> Sampler<B> for EulerDiscreteScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    fn scale_model_input(&self, sample: Tensor<B, 4>, i: usize) -> Tensor<B, 4> {
        let sigma = self.sigmas[i] as f32 as f64;
        sample / (sigma * sigma + 1.0).sqrt()
    }

    fn step(
        &self,
        model_output: Tensor<B, 4>,
        i: usize,
        sample: Tensor<B, 4>,
        _noise: Option<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        let (sigma, next) = (
            self.sigmas[i] as f32 as f64,
            self.sigmas[i + 1] as f32 as f64,
        );
        let denoised = if self.v_prediction {
            model_output * (-sigma / (sigma * sigma + 1.0).sqrt())
                + sample.clone() / (sigma * sigma + 1.0)
        } else {
            sample.clone() - model_output * sigma
        };
        let derivative = (sample.clone() - denoised) / sigma;
        sample + derivative * (next - sigma)
    }
}
