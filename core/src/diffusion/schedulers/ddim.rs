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
        let (alpha, alpha_prev) = self.alphas(i);
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
        let std = self.std(i);
        let direction = eps * (1.0 - alpha_prev - std * std).max(0.0).sqrt();
        (x0 * alpha_prev.sqrt() + direction, std)
    }

    /// [`Self::step_mean_std`] with its own step index per row (recorded transitions of different steps
    /// evaluated in one U-Net call). Returns the mean `[N, C, h, w]` and one standard deviation per row.
    /// The per-row coefficients enter in the backend's own precision (f64 on an f64 backend).
    pub fn step_mean_std_rows<B: Backend>(
        &self,
        model_output: Tensor<B, 4>,
        steps: &[usize],
        sample: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Vec<f64>) {
        let n = steps.len();
        let device = sample.device();
        let rows: Vec<(f64, f64, f64)> = steps
            .iter()
            .map(|&i| {
                let (alpha, alpha_prev) = self.alphas(i);
                (alpha, alpha_prev, self.std(i))
            })
            .collect();
        let column = |f: &dyn Fn(f64, f64, f64) -> f64| {
            let values: Vec<f64> = rows.iter().map(|&(a, p, s)| f(a, p, s)).collect();
            Tensor::<B, 1>::from_data(TensorData::new(values, [n]), &device).reshape([n, 1, 1, 1])
        };
        let (mut x0, eps) = if self.v_prediction {
            (
                sample.clone() * column(&|a, _, _| a.sqrt())
                    - model_output.clone() * column(&|a, _, _| (1.0 - a).sqrt()),
                model_output * column(&|a, _, _| a.sqrt())
                    + sample * column(&|a, _, _| (1.0 - a).sqrt()),
            )
        } else {
            (
                (sample - model_output.clone() * column(&|a, _, _| (1.0 - a).sqrt()))
                    * column(&|a, _, _| 1.0 / a.sqrt()),
                model_output,
            )
        };
        if let Some(range) = self.clip_sample {
            x0 = x0.clamp(-range, range);
        }
        let mean = x0 * column(&|_, p, _| p.sqrt())
            + eps * column(&|_, p, s| (1.0 - p - s * s).max(0.0).sqrt());
        (mean, rows.iter().map(|&(_, _, s)| s).collect())
    }

    /// `(ᾱ_t, ᾱ_prev)` of step `i`.
    pub fn alphas(&self, i: usize) -> (f64, f64) {
        let t = self.timesteps[i] as i64;
        let prev = t - self.step_ratio as i64;
        let alpha_prev = if prev >= 0 {
            self.alphas_cumprod[prev as usize]
        } else {
            self.final_alpha_cumprod
        };
        (self.alphas_cumprod[t as usize], alpha_prev)
    }

    /// σ of step `i`: η·√((1 − ᾱ_prev)/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_prev)).
    pub fn std(&self, i: usize) -> f64 {
        let (alpha, alpha_prev) = self.alphas(i);
        self.eta * ((1.0 - alpha_prev) / (1.0 - alpha) * (1.0 - alpha / alpha_prev)).sqrt()
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

/// Per-element mean of `log N(x; mean, std²)`, `[B, …]` → `[B]`, with one `std` per row: the log-density of
/// a DDIM η > 0 step as dense-reward DPO averages it over latent elements.
pub fn gaussian_log_density<B: Backend>(
    x: Tensor<B, 4>,
    mean: Tensor<B, 4>,
    std: &[f64],
) -> Tensor<B, 1> {
    let [b, c, h, w] = x.dims();
    assert_eq!(std.len(), b, "one standard deviation per row");
    let device = x.device();
    // `from_data`, not `from_floats`: burn's `from_floats` rounds through f32 whatever the backend's float type.
    let per_row =
        |values: Vec<f64>| Tensor::<B, 1>::from_data(TensorData::new(values, [b]), &device);
    let inverse = per_row(std.iter().map(|s| 1.0 / s).collect()).reshape([b, 1, 1, 1]);
    let normaliser = per_row(
        std.iter()
            .map(|s| s.ln() + 0.5 * (2.0 * std::f64::consts::PI).ln())
            .collect(),
    );
    let z = (x - mean) * inverse;
    let half_square_mean = z
        .powf_scalar(2.0)
        .reshape([b, c * h * w])
        .mean_dim(1)
        .reshape([b])
        * 0.5;
    half_square_mean.neg() - normaliser
}
