//! The DDPM training schedule: βₜ, ᾱₜ = ∏(1 − βₛ), and the forward process
//! `x_t = √ᾱₜ · x₀ + √(1 − ᾱₜ) · ε` with one timestep per sample.

use burn::prelude::*;

use super::config::SchedulerConfig;

#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    /// Computed like diffusers on the CPU: β in f32 (`torch.linspace` in f32, squared for
    /// `scaled_linear`), ᾱ as a cumulative product accumulated in f64 and stored as f32.
    pub fn new(config: &SchedulerConfig) -> Self {
        let n = config.num_train_timesteps;
        let betas: Vec<f32> = match config.beta_schedule.as_str() {
            "scaled_linear" => linspace_f32(
                config.beta_start.sqrt() as f32,
                config.beta_end.sqrt() as f32,
                n,
            )
            .into_iter()
            .map(|b| b * b)
            .collect(),
            "squaredcos_cap_v2" => {
                let alpha_bar = |t: f64| {
                    ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
                        .cos()
                        .powi(2)
                };
                (0..n)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                        (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
                    })
                    .collect()
            }
            _ => linspace_f32(config.beta_start as f32, config.beta_end as f32, n),
        };
        let mut product = 1f64;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                product *= (1.0 - b) as f64;
                product as f32 as f64
            })
            .collect();
        Self {
            betas: betas.into_iter().map(f64::from).collect(),
            alphas_cumprod,
        }
    }

    /// ᾱ at a (possibly fractional) timestep, linearly interpolated.
    pub fn alpha_cumprod_at(&self, t: f64) -> f64 {
        let lo = t.floor().clamp(0.0, (self.alphas_cumprod.len() - 1) as f64) as usize;
        let hi = (lo + 1).min(self.alphas_cumprod.len() - 1);
        let frac = t - lo as f64;
        self.alphas_cumprod[lo] * (1.0 - frac) + self.alphas_cumprod[hi] * frac
    }

    /// Forward-noises `original` `[B, …]` at integer `timesteps` `[B]` (one per sample).
    pub fn add_noise<B: Backend, const D: usize>(
        &self,
        original: Tensor<B, D>,
        noise: Tensor<B, D>,
        timesteps: &[usize],
    ) -> Tensor<B, D> {
        let device = original.device();
        let mut shape = [1usize; D];
        shape[0] = timesteps.len();
        let coefficient = |f: &dyn Fn(f64) -> f64| {
            let values: Vec<f32> = timesteps
                .iter()
                .map(|&t| f(self.alphas_cumprod[t]) as f32)
                .collect();
            Tensor::<B, 1>::from_floats(values.as_slice(), &device).reshape(shape)
        };
        let signal = coefficient(&|a| (a as f32).sqrt() as f64);
        let noise_scale = coefficient(&|a| (1.0 - a as f32).sqrt() as f64);
        original * signal + noise * noise_scale
    }
}

/// `torch.linspace(start, end, n, dtype=float32)`: f32 arithmetic, the second half counted from `end`.
fn linspace_f32(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    (0..n)
        .map(|i| {
            if i < n / 2 {
                start + step * i as f32
            } else {
                end - step * (n - 1 - i) as f32
            }
        })
        .collect()
}
