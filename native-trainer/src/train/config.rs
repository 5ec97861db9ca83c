//! `train.toml`: everything a training run depends on. Unknown keys are errors, so a typo never
//! silently falls back to a default.

use std::path::{Path, PathBuf};

use popalign_core::align::objectives::ObjectiveKind;
use popalign_core::align::objectives::alignprop::{RewardSpec, Truncation};
use popalign_core::align::objectives::dense::DenseConfig;
use popalign_core::align::objectives::popalign::PopAlignConfig;
use popalign_core::diffusion::precision::Precision;
use popalign_core::diffusion::schedulers::SchedulerKind;
use popalign_core::nn::lora::LoraConfig;
use serde::{Deserialize, Serialize};

/// The rewards `[[alignprop.rewards]]` may name ([`build_reward`] builds them).
pub const REWARDS: &[&str] = &[
    "aesthetic",
    "hps",
    "pickscore",
    "clip",
    "imagereward",
    "pixel-mean",
];
use super::export::LoraExport;
use crate::error::{CliResult, input};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// diffusers model root (text encoders, VAE, U-Net, scheduler).
    pub model: PathBuf,
    /// A diffusers U-Net folder to start from instead of the model's own `unet/`, such as an earlier
    /// round's fine-tuned U-Net; full fine-tuning also takes it as the reference. Read without `variant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unet: Option<PathBuf>,
    /// `preferences.jsonl`; image paths in it are relative to its folder. Every objective but `alignprop`
    /// needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferences: Option<PathBuf>,
    /// Output folder: `metrics.jsonl` and `step-<n>/` checkpoints.
    pub output: PathBuf,
    #[serde(default = "popalign")]
    pub objective: ObjectiveKind,
    #[serde(default)]
    pub seed: u64,
    pub steps: usize,
    /// Preference pairs (prompts for `alignprop`) per micro-batch (per device).
    #[serde(default = "one")]
    pub batch_size: usize,
    #[serde(default = "one")]
    pub gradient_accumulation: usize,
    pub learning_rate: f64,
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    #[serde(default)]
    pub warmup_steps: usize,
    #[serde(default = "weight_decay")]
    pub weight_decay: f64,
    /// Global gradient-norm clipping (as accelerate's `clip_grad_norm_`).
    #[serde(default = "one_f")]
    pub max_grad_norm: f64,
    #[serde(default = "fifty")]
    pub checkpoint_every: usize,
    /// Square training resolution in pixels (shorter side resized, then centre-cropped).
    pub resolution: usize,
    #[serde(default = "empty_prompts")]
    pub proportion_empty_prompts: f64,
    /// Trade compute for memory: burn's balanced checkpointing recomputes memory-bound operations in the
    /// backward pass instead of keeping their outputs (burn 0.21 offers it for the whole autodiff graph,
    /// not per block; bench/NOTES.md has what it saves). Not used by `alignprop` (its own note says why).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gradient_checkpointing: bool,
    /// Keep each training image's VAE posterior in `<output>/latent-cache/` and sample latents from it,
    /// instead of decoding and encoding the image at every draw (`latent_cache.rs`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cache_latents: bool,
    /// `"bf16"`: mixed precision as diffusers' `--mixed_precision bf16`: the U-Nets run forward and
    /// backward in bf16 while the trained weights and the optimizer state stay f32 (`popalign_core::diffusion::precision`);
    /// frozen weights (full fine-tuning's reference copy, a LoRA run's base U-Net) are stored in bf16.
    /// Needs a backend with bf16 tensors (the `cuda` build, or `flex` on the CPU). Every objective.
    #[serde(default, skip_serializing_if = "is_f32")]
    pub precision: Precision,
    #[serde(default = "yes")]
    pub random_flip: bool,
    /// Draw training timesteps from `[lo, hi)` only (default: all of the scheduler's). High timesteps
    /// decide the layout of an image, low ones its detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestep_range: Option<[usize; 2]>,
    /// What to do with a missing or corrupt image: stop with an error, or skip the pair (counted).
    #[serde(default)]
    pub on_bad_image: BadImagePolicy,
    /// Absent: full fine-tuning against a frozen copy of the U-Net.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    #[serde(default)]
    pub popalign: PopAlignConfig,
    /// β of `dpo` and `popalign-pairwise`.
    #[serde(default = "beta")]
    pub beta: f64,
    /// `[dense]`: γ, C, the log-ratio clip and M of `objective = "dense"`, which trains on the recorded
    /// sampling chains beside the images (`[generate] trajectories = true`); `random_flip` and
    /// `proportion_empty_prompts` do not apply to it (a chain is evaluated as it was sampled).
    #[serde(default)]
    pub dense: DenseConfig,
    /// The `[alignprop]` table, required by (and only by) `objective = "alignprop"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignprop: Option<AlignPropConfig>,
    #[serde(default)]
    pub variant: Option<String>,
    /// Devices to train on, one data-parallel worker each (`cuda:0`, `cuda:1`; `cpu` repeated on the CPU
    /// build). Empty: the default device.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Processes of a multi-process run, each with `devices` (set from the launcher's environment,
    /// `launch.rs`, never from train.toml); 0 or 1: this process alone.
    #[serde(skip)]
    pub processes: usize,
    /// Layouts each checkpoint's LoRA is also written in (`["kohya"]`: `lora_kohya.safetensors`, for
    /// ComfyUI and Automatic1111). LoRA runs only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export: Vec<LoraExport>,
    /// `[samples]`: a grid of prompts sampled at step 0 and every few steps into `<output>/samples/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<SamplesConfig>,
    /// Held-out pairs evaluated at step 0 and at every checkpoint (`val_loss`, `val_accuracy` in the metrics).
    #[serde(default)]
    pub validation: Option<ValidationConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    pub preferences: PathBuf,
    /// Noise/timestep draws per pair (the implicit reward is a noisy estimate).
    #[serde(default = "four")]
    pub draws: usize,
}

pub(crate) fn is_f32(precision: &Precision) -> bool {
    *precision == Precision::F32
}

fn four() -> usize {
    4
}

/// `[alignprop]`: the sampler the reward is backpropagated through, and the rewards (docs/papers.md §4).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlignPropConfig {
    /// Training prompts: a text file (one prompt a line) or a CSV with a `prompt` column.
    pub prompts: PathBuf,
    /// Which steps keep their gradient: the last `k` (`fixed`), or a cut drawn per trajectory.
    #[serde(default)]
    pub truncation: Truncation,
    #[serde(default = "one")]
    pub k: usize,
    /// DDIM steps per trajectory (AlignProp: 50).
    #[serde(default = "fifty")]
    pub sampling_steps: usize,
    /// Classifier-free guidance (AlignProp's original release: 7.5).
    #[serde(default = "guidance")]
    pub guidance_scale: f64,
    /// DDIM η (AlignProp's original release: 0, deterministic).
    #[serde(default)]
    pub eta: f64,
    /// `None`: the model's default negative (zeros for SDXL, the empty prompt otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    pub rewards: Vec<RewardSpec>,
}

fn guidance() -> f64 {
    7.5
}

impl AlignPropConfig {
    fn validate(&self) -> Result<(), String> {
        if self.sampling_steps == 0 || self.k == 0 {
            return Err("alignprop.sampling_steps and alignprop.k must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return Err("alignprop.eta must lie in [0, 1]".into());
        }
        if self.rewards.is_empty() {
            return Err("alignprop needs at least one [[alignprop.rewards]] entry".into());
        }
        for spec in &self.rewards {
            spec.validate()?;
            if !REWARDS.contains(&spec.name.as_str()) {
                return Err(format!(
                    "unknown reward {:?} in [[alignprop.rewards]] (known: {})",
                    spec.name,
                    REWARDS.join(", ")
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    #[default]
    ConstantWithWarmup,
    Cosine,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BadImagePolicy {
    #[default]
    Error,
    Skip,
}

fn popalign() -> ObjectiveKind {
    ObjectiveKind::Popalign
}
fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn fifty() -> usize {
    50
}
fn weight_decay() -> f64 {
    1e-2
}
fn empty_prompts() -> f64 {
    0.2
}
fn yes() -> bool {
    true
}
fn beta() -> f64 {
    5000.0
}

impl TrainConfig {
    /// Reads the TOML file; relative paths in it are taken relative to the file's folder.
    pub fn load(path: &Path) -> CliResult<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| input(format!("{}: {e}", path.display())))?;
        let mut config: Self = toml::from_str(&text).map_err(|e| {
            input(format!(
                "{}: {}",
                path.display(),
                e.to_string().replace('\n', " ")
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.model = crate::hub::resolve_model(&config.model, base)?;
        let validation = config.validation.as_mut().map(|v| &mut v.preferences);
        let alignprop = config.alignprop.as_mut().map(|a| &mut a.prompts);
        for p in [&mut config.output]
            .into_iter()
            .chain(config.unet.as_mut())
            .chain(config.preferences.as_mut())
            .chain(validation)
            .chain(alignprop)
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        config
            .validate()
            .map_err(|m| input(format!("{}: {m}", path.display())))?;
        Ok(config)
    }

    /// The U-Net to start from: `unet`, or the model's own.
    pub fn unet_dir(&self) -> PathBuf {
        self.unet
            .clone()
            .unwrap_or_else(|| popalign_core::io::load::component_dir(&self.model, "unet"))
    }

    /// The weight variant of `unet_dir` (a separate U-Net folder is read without one).
    pub fn unet_variant(&self) -> Option<&str> {
        match self.unet {
            Some(_) => None,
            None => self.variant.as_deref(),
        }
    }

    /// A configuration of the required keys with every other key at its `train.toml` default.
    pub fn with_defaults(
        model: PathBuf,
        output: PathBuf,
        steps: usize,
        learning_rate: f64,
        resolution: usize,
    ) -> Self {
        let required = serde_json::json!({
            "model": model, "output": output, "steps": steps,
            "learning_rate": learning_rate, "resolution": resolution,
        });
        serde_json::from_value(required).expect("the required keys make a configuration")
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.steps == 0
            || self.batch_size == 0
            || self.gradient_accumulation == 0
            || self.checkpoint_every == 0
        {
            return Err(
                "steps, batch_size, gradient_accumulation and checkpoint_every must be at least 1"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&self.proportion_empty_prompts) {
            return Err("proportion_empty_prompts must lie in [0, 1]".into());
        }
        if let Some(lora) = &self.lora
            && (lora.alpha - lora.rank as f64).abs() > 0.0
        {
            // Saved adapters carry no alpha; diffusers then reads them with alpha = rank.
            return Err(
                "lora.alpha must equal lora.rank (diffusers loads adapter files with alpha = rank)"
                    .into(),
            );
        }
        if self.lora.is_none() && !self.export.is_empty() {
            return Err("export writes a LoRA in other layouts; it needs a [lora] table".into());
        }
        if let Some(samples) = &self.samples {
            samples.validate()?;
        }
        let dense = &self.dense;
        if dense.steps_per_update == 0
            || !(dense.gamma > 0.0 && dense.gamma <= 1.0)
            || !(dense.log_ratio_clip > 0.0)
            || !dense.coefficient.is_finite()
        {
            return Err("[dense] needs steps_per_update ≥ 1, 0 < gamma ≤ 1, log_ratio_clip > 0 and a finite coefficient".into());
        }
        if self.resolution == 0 || self.resolution % 8 != 0 {
            return Err("resolution must be a positive multiple of 8".into());
        }
        match (self.objective, &self.alignprop) {
            (ObjectiveKind::Alignprop, None) => {
                Err("objective \"alignprop\" needs an [alignprop] table".into())
            }
            (ObjectiveKind::Alignprop, Some(alignprop)) => alignprop.validate(),
            (_, Some(_)) => Err("an [alignprop] table needs objective = \"alignprop\"".into()),
            (_, None) if self.preferences.is_none() => {
                Err("preferences is required (the preference pairs to train on)".into())
            }
            _ => Ok(()),
        }
    }

    /// Learning rate at optimiser step `step` (0-based), as diffusers' `get_scheduler` computes it.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        let warmup = self.warmup_steps;
        if step < warmup {
            return self.learning_rate * step as f64 / warmup.max(1) as f64;
        }
        match self.lr_schedule {
            LrSchedule::ConstantWithWarmup => self.learning_rate,
            LrSchedule::Cosine => {
                let progress = (step - warmup) as f64 / (self.steps - warmup).max(1) as f64;
                self.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }

    /// The devices, parsed; at least one.
    pub fn parsed_devices(&self) -> CliResult<Vec<crate::backend::Device>> {
        if self.devices.is_empty() {
            return Ok(vec![crate::backend::device()]);
        }
        self.devices
            .iter()
            .map(|d| crate::backend::parse_device(d).map_err(input))
            .collect()
    }

    /// A short hash of the resolved configuration, stored with every checkpoint. Only the number of
    /// workers over all processes counts (it sets the global batch), so a run may resume on other devices,
    /// or on another split of the same count into processes.
    pub fn hash(&self) -> String {
        use sha2::Digest;
        let mut counted = self.clone();
        counted.devices = vec!["device".into(); self.devices.len().max(1) * self.processes.max(1)];
        let text = serde_json::to_string(&counted).expect("config serialises");
        let digest = sha2::Sha256::digest(text.as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// `[samples]`: what is sampled, and how often.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SamplesConfig {
    pub prompts: Vec<String>,
    #[serde(default = "two")]
    pub images_per_prompt: usize,
    /// Training steps between grids (absent: `checkpoint_every`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<usize>,
    /// Sampler steps (kohya's sample default, 30).
    #[serde(default = "thirty")]
    pub steps: usize,
    #[serde(default = "guidance")]
    pub guidance: f64,
    #[serde(default = "euler")]
    pub scheduler: SchedulerKind,
    /// Image side in pixels (absent: the training resolution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<usize>,
    /// Images denoised together. Batching can change the last bits of an image, so a grid that should
    /// match another image set (as `popalign run`'s match its evaluation images) batches as that set did.
    #[serde(default = "one")]
    pub batch_size: usize,
    /// The seed in the images' ids, which fix their noise (absent: the training seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn two() -> usize {
    2
}
fn thirty() -> usize {
    30
}
fn euler() -> SchedulerKind {
    SchedulerKind::Euler
}

impl SamplesConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.prompts.is_empty() {
            return Err("[samples] prompts is empty".into());
        }
        if self.images_per_prompt == 0
            || self.steps == 0
            || self.batch_size == 0
            || self.every == Some(0)
        {
            return Err(
                "[samples] images_per_prompt, steps, batch_size and every must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }

    /// Whether `step` gets a grid: step 0, every `every` steps, and the last step.
    pub fn due(&self, step: usize, config: &TrainConfig) -> bool {
        step % self.every.unwrap_or(config.checkpoint_every) == 0 || step == config.steps
    }
}
