//! Noise schedules and samplers, read from diffusers' `scheduler_config.json`.
//!
//! Schedule arithmetic is done on plain `f64` vectors (it is tiny); per-step updates act on tensors.

pub mod config;
pub mod ddim;
pub mod ddpm;
pub mod euler;

pub use config::{SchedulerConfig, Spacing};
pub use ddim::DdimScheduler;
pub use ddpm::NoiseSchedule;
pub use euler::EulerDiscreteScheduler;

use burn::prelude::*;

/// What a sampling loop needs from a scheduler.
pub trait Sampler<B: Backend> {
    /// Timesteps to visit, noisiest first (what the U-Net is given).
    fn timesteps(&self) -> &[f64];
    /// Multiplier for the initial Gaussian noise.
    fn init_noise_sigma(&self) -> f64;
    /// Input scaling before the U-Net call at step `i`.
    fn scale_model_input(&self, sample: Tensor<B, 4>, i: usize) -> Tensor<B, 4>;
    /// One update from step `i` to `i + 1`; `noise` is used only by stochastic samplers.
    fn step(
        &self,
        model_output: Tensor<B, 4>,
        i: usize,
        sample: Tensor<B, 4>,
        noise: Option<Tensor<B, 4>>,
    ) -> Tensor<B, 4>;
}

/// The scheduler kinds the CLI can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchedulerKind {
    Euler,
    Ddim,
}

impl SchedulerKind {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "euler" | "eulerdiscretescheduler" => Some(Self::Euler),
            "ddim" | "ddimscheduler" => Some(Self::Ddim),
            _ => None,
        }
    }
}

/// Builds the sampler of `kind` for `steps` steps, boxed so the pipeline can take either.
pub fn sampler<B: Backend>(
    kind: SchedulerKind,
    config: &SchedulerConfig,
    steps: usize,
    eta: f64,
) -> Box<dyn Sampler<B>> {
    match kind {
        SchedulerKind::Euler => Box::new(EulerDiscreteScheduler::new(config, steps)),
        SchedulerKind::Ddim => Box::new(DdimScheduler::new(config, steps, eta)),
    }
}
