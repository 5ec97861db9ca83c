//! `scheduler_config.json`: the fields shared by DDPM, DDIM and Euler discrete.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Spacing {
    Leading,
    Trailing,
    Linspace,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name", default)]
    pub class_name: Option<String>,
    #[serde(default = "thousand")]
    pub num_train_timesteps: usize,
    #[serde(default = "beta_start")]
    pub beta_start: f64,
    #[serde(default = "beta_end")]
    pub beta_end: f64,
    #[serde(default = "linear")]
    pub beta_schedule: String,
    #[serde(default = "epsilon")]
    pub prediction_type: String,
    #[serde(default = "leading")]
    pub timestep_spacing: Spacing,
    #[serde(default)]
    pub steps_offset: usize,
    /// DDIM: whether the step after the last uses ᾱ = 1 (else ᾱ₀).
    #[serde(default = "yes")]
    pub set_alpha_to_one: bool,
    #[serde(default)]
    pub clip_sample: bool,
    #[serde(default = "one")]
    pub clip_sample_range: f64,
    #[serde(default)]
    pub rescale_betas_zero_snr: bool,
    #[serde(default)]
    pub use_karras_sigmas: bool,
}

fn thousand() -> usize {
    1000
}
fn beta_start() -> f64 {
    0.0001
}
fn beta_end() -> f64 {
    0.02
}
fn linear() -> String {
    "linear".into()
}
fn epsilon() -> String {
    "epsilon".into()
}
fn leading() -> Spacing {
    Spacing::Leading
}
fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}

impl Default for SchedulerConfig {
    /// The SDXL base schedule (`scaled_linear` 0.00085 → 0.012, `leading`, offset 1, ε-prediction).
    fn default() -> Self {
        Self {
            class_name: Some("EulerDiscreteScheduler".into()),
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: "scaled_linear".into(),
            prediction_type: "epsilon".into(),
            timestep_spacing: Spacing::Leading,
            steps_offset: 1,
            set_alpha_to_one: false,
            clip_sample: false,
            clip_sample_range: 1.0,
            rescale_betas_zero_snr: false,
            use_karras_sigmas: false,
        }
    }
}

impl SchedulerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(
            self.beta_schedule.as_str(),
            "linear" | "scaled_linear" | "squaredcos_cap_v2"
        ) {
            return Err(format!("beta_schedule `{}`", self.beta_schedule));
        }
        if !matches!(self.prediction_type.as_str(), "epsilon" | "v_prediction") {
            return Err(format!("prediction_type `{}`", self.prediction_type));
        }
        if self.rescale_betas_zero_snr || self.use_karras_sigmas {
            return Err("rescale_betas_zero_snr / use_karras_sigmas are not supported".into());
        }
        Ok(())
    }

    pub fn v_prediction(&self) -> bool {
        self.prediction_type == "v_prediction"
    }

    /// The inference timesteps shared by DDIM and Euler (descending, as integers for `leading` and
    /// `trailing`, fractional for Euler's `linspace`).
    pub fn spaced_timesteps(&self, steps: usize) -> Vec<f64> {
        let n = self.num_train_timesteps;
        match self.timestep_spacing {
            Spacing::Leading => {
                let ratio = n / steps;
                (0..steps)
                    .rev()
                    .map(|i| (i * ratio + self.steps_offset) as f64)
                    .collect()
            }
            Spacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                (0..steps)
                    .map(|i| (n as f64 - i as f64 * ratio).round() - 1.0)
                    .collect()
            }
            Spacing::Linspace => {
                let last = (n - 1) as f64;
                (0..steps)
                    .rev()
                    .map(|i| {
                        if steps == 1 {
                            0.0
                        } else {
                            last * i as f64 / (steps - 1) as f64
                        }
                    })
                    .collect()
            }
        }
    }
}
