//! `run.toml`: the resolved configuration of every stage of a run (docs/design.md §1). Unknown keys are errors.
//! Its hash is written into `run.lock.json` by the first stage that runs; a later invocation with a
//! different configuration is refused (its artifacts would mix two configurations) unless the user
//! passes `--allow-config-change`.

use std::path::{Path, PathBuf};

use popalign_core::align::objectives::ObjectiveKind;
use popalign_core::diffusion::precision::Precision;
use popalign_core::diffusion::schedulers::SchedulerKind;
use serde::{Deserialize, Serialize};

use super::train_section::TrainSection;

use crate::classify::ClassifierArgs;
use crate::error::{CliError, CliResult, input};
use crate::evaluate::quality::ScorerArgs;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// A diffusers model root, a Hugging Face repo id in the local cache (`org/name`, `org/name@branch`), or
    /// `"toy"` for the toy base model this binary carries (installed into `<run>/model/`).
    pub model: String,
    /// The model's weight variant to read (`fp16` for `*.fp16.safetensors`; absent: the full-precision files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Seeds generation, pairing and training.
    #[serde(default)]
    pub seed: u64,
    /// Stages `popalign run` executes, in order.
    #[serde(default = "all_stages")]
    pub stages: Vec<Stage>,
    /// What the populations and the evaluation are prompted with. Absent: the toy world's prompts for
    /// `model = "toy"`, else every occupation of `data/` with race and gender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<PromptsSection>,
    pub generate: GenerateConfig,
    /// The attribute classifier (absent: the toy world's, which only the toy model's images suit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classify: Option<ClassifierArgs>,
    pub preferences: PreferencesConfig,
    pub train: TrainSection,
    /// Quality scorers of the evaluation (absent: the toy world's occupation accuracy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluate: Option<ScorerArgs>,
}

/// `[prompts]`: occupations, identity axes and the documents the prompt sets are built from
/// (`popalign prompts` builds the same sets). Paths are relative to the run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptsSection {
    /// Names from the occupations file, or an occupations file of the user's (`[[occupation]]` name,
    /// scenes). Absent: every occupation of the built-in `data/occupations.toml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occupations: Option<Occupations>,
    /// The identity axes of the specific prompts and of the preferences, first varying slowest.
    #[serde(default = "default_axes")]
    pub axes: Vec<String>,
    /// Attribute vocabularies (default: the built-in `data/attributes.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<PathBuf>,
    /// Prompt templates (default: the built-in `data/templates.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Occupations {
    Names(Vec<String>),
    File(PathBuf),
}

fn default_axes() -> Vec<String> {
    vec!["race".into(), "gender".into()]
}

impl Default for PromptsSection {
    fn default() -> Self {
        Self {
            occupations: None,
            axes: default_axes(),
            attributes: None,
            templates: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Prompts,
    Generate,
    Classify,
    Preferences,
    Train,
    Evaluate,
    Report,
}

fn all_stages() -> Vec<Stage> {
    use Stage::*;
    vec![
        Prompts,
        Generate,
        Classify,
        Preferences,
        Train,
        Evaluate,
        Report,
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateConfig {
    /// Images per neutral prompt (the biased population).
    pub neutral_images: usize,
    /// Images per identity-specific prompt (the diverse population).
    pub specific_images: usize,
    /// Evaluation images per neutral prompt, base and aligned alike, on the same seeds.
    pub eval_images: usize,
    /// DDIM steps.
    pub steps: usize,
    pub guidance: f64,
    #[serde(default = "batch")]
    pub batch_size: usize,
    /// Sample the training populations with DDIM η = 1 and keep every image's chain for dense-reward DPO
    /// (`objective = "dense"`). Left out of the serialised config when false, so older runs keep their hash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trajectories: bool,
    /// Image side in pixels (absent: the U-Net's `sample_size` × the VAE's factor, 1024 for SDXL).
    /// Training reads the images at this size too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<usize>,
    /// `ddim` or `euler` (absent: DDIM; the official PopAlign runs sample with SDXL's Euler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerKind>,
}

/// The demo's training workers: `side_by_side_batches()` CPU workers when that is more than one (two
/// are 30% faster than one at the same global batch, with the same loss), otherwise the default device.
fn cpu_workers() -> Vec<String> {
    match crate::backend::side_by_side_batches() {
        1 => Vec::new(),
        n => vec!["cpu".into(); n],
    }
}

fn batch() -> usize {
    32
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferencesConfig {
    pub construction: popalign_core::align::preferences::Construction,
    /// The construction of rounds 2 and later (default: `construction`). The demo balances them: after
    /// round 1 the model draws the colour it learnt to avoid less often even when a prompt names it
    /// (red prompts 59–61% red, seeds 0 and 1), so the official draw's preferred sets under-represent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_construction: Option<popalign_core::align::preferences::Construction>,
    /// Population draws; each gives `set_size` pairs.
    pub iterations: usize,
    pub set_size: usize,
}

/// Round `round`'s folder relative to the run directory, with a trailing `/`: the run directory itself
/// for round 1.
pub fn round_dir(round: usize) -> String {
    match round {
        1 => String::new(),
        _ => format!("rounds/{round}/"),
    }
}

impl RunConfig {
    /// The toy world's defaults, as `popalign demo` runs them.
    pub fn demo(seed: u64) -> Self {
        Self {
            model: "toy".into(),
            variant: None,
            seed,
            stages: all_stages(),
            generate: GenerateConfig {
                neutral_images: 32,
                specific_images: 2,
                eval_images: 32,
                steps: 10,
                // PopAlign generates and evaluates with SDXL's default guidance, 5.
                guidance: 5.0,
                batch_size: batch(),
                trajectories: false,
                resolution: None,
                scheduler: None,
            },
            preferences: PreferencesConfig {
                construction: popalign_core::align::preferences::Construction::Official,
                round_construction: Some(popalign_core::align::preferences::Construction::Balanced),
                iterations: 400,
                set_size: 5,
            },
            train: TrainSection {
                objective: ObjectiveKind::Popalign,
                steps: 300,
                batch_size: 8,
                // Full fine-tuning of the 1M-parameter toy U-Net: LoRA on the attention projections
                // only reaches the 8×8 and 4×4 levels. The official β = 5000 is for SDXL latents; the
                // toy's pixel-space errors differ by about 1e-3 between members of a pair. With β = 150
                // the race distribution overshot from red to green within a small change of learning
                // rate; β = 500 saturates the solved pairs sooner and was the most stable we measured
                // (docs/results.md, "Rounds": what we tried).
                learning_rate: 8e-6,
                beta: 500.0,
                lora: None,
                lambda_dispreferred: 1.0,
                sft_weight: 0.0,
                // The figure's shape is decided at high noise levels; skipping the lowest fifth of the
                // timesteps moves it further in the same steps (with [100, 1000) seed 0's gender fell
                // by 49%, with [200, 1000) by 100%; docs/results.md, "Rounds").
                timestep_range: Some([200, 1000]),
                proportion_empty_prompts: 0.0,
                // Round 1 overshoots (most neutral figures turn green, "not red" being the pairs'
                // strongest signal); rounds 2 and 3, on populations the previous U-Net samples, pull
                // the colours back towards uniform and move the shapes further (docs/results.md,
                // "Rounds").
                rounds: 3,
                round_steps: Some(150),
                devices: cpu_workers(),
                precision: Precision::F32,
                gradient_checkpointing: false,
                lr_schedule: None,
                warmup_steps: None,
                random_flip: None,
                checkpoint_every: None,
                sample_every: None,
                sample_images: None,
                export: Vec::new(),
            },
            prompts: None,
            classify: None,
            evaluate: None,
        }
    }

    pub fn load(path: &Path) -> CliResult<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| input(format!("{}: {e}", path.display())))?;
        Self::parse(&text).map_err(|m| input(format!("{}: {m}", path.display())))
    }

    /// A `run.toml` text, checked: every key known, each value in range, and what its world needs.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string().replace('\n', " "))?;
        let t = &config.train;
        if t.rounds == 0
            || t.round_steps == Some(0)
            || t.sample_every == Some(0)
            || t.sample_images == Some(0)
        {
            return Err(
                "[train] rounds, round_steps, sample_every and sample_images must be at least 1"
                    .into(),
            );
        }
        if !t.devices.is_empty() && t.batch_size % t.devices.len() != 0 {
            return Err(format!(
                "[train] batch_size {} does not split evenly over {} devices",
                t.batch_size,
                t.devices.len()
            ));
        }
        if t.rounds > 1 && t.lora.is_some() {
            return Err(
                "[train] rounds > 1 needs full fine-tuning (lora_rank = 0): a later round \
                        starts from the previous round's whole U-Net"
                    .into(),
            );
        }
        if !t.export.is_empty() && t.lora.is_none() {
            return Err(
                "[train] export writes a LoRA in other layouts; it needs lora_rank > 0".into(),
            );
        }
        config.check_world()?;
        Ok(config)
    }

    /// What the toy world and a real model each need: the toy world brings its own prompts, classifier and
    /// scorer, which read only its images; a real model names a classifier and at least one quality metric.
    fn check_world(&self) -> Result<(), String> {
        use popalign_core::eval::classify::kind::ClassifierKind;
        let classifier = self.classify.as_ref().map(|c| c.classifier);
        if self.is_toy() {
            return match (&self.prompts, &self.evaluate, classifier) {
                (None, None, None | Some(ClassifierKind::Toy)) => Ok(()),
                _ => Err(
                    "the toy model brings its own prompts, classifier and scorer: leave out \
                          [prompts], [evaluate] and [classify] (or set classifier = \"toy\")"
                        .into(),
                ),
            };
        }
        match classifier {
            None => {
                return Err(
                    "a real model needs an attribute classifier: [classify] classifier = \
                            \"fairface\", \"faces\" or \"clip\", with its weights"
                        .into(),
                );
            }
            Some(ClassifierKind::Toy) => {
                return Err(
                    "[classify] classifier = \"toy\" reads only the toy model's images; \
                            choose fairface, faces or clip"
                        .into(),
                );
            }
            Some(_) => {}
        }
        if self.evaluate.as_ref().is_none_or(|e| e.metrics.is_empty()) {
            return Err(
                "a real model needs at least one quality metric: [evaluate] metrics = \
                        [\"clip\"] (or pickscore, hps, aesthetic, imagereward) with its model folder"
                    .into(),
            );
        }
        if let Some(Occupations::Names(names)) =
            self.prompts.as_ref().and_then(|p| p.occupations.as_ref())
            && names.is_empty()
        {
            return Err(
                "[prompts] occupations is empty: name at least one occupation, or leave it \
                        out for every occupation of data/occupations.toml"
                    .into(),
            );
        }
        if self.generate.trajectories && self.generate.scheduler == Some(SchedulerKind::Euler) {
            return Err(
                "[generate] trajectories = true records DDIM chains: use scheduler = \"ddim\""
                    .into(),
            );
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    pub fn hash(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(serde_json::to_string(self).expect("json").as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// The model folder: `<run>/model` for the toy model, else the given folder (relative to the run
    /// directory) or Hugging Face repo id.
    pub fn model_dir(&self, run: &Path) -> CliResult<PathBuf> {
        if self.is_toy() {
            Ok(run.join("model"))
        } else {
            crate::hub::resolve_model(Path::new(&self.model), run)
        }
    }

    /// The toy world: the toy model this binary carries.
    pub fn is_toy(&self) -> bool {
        self.model == "toy"
    }
}

/// Refuses to continue a run whose artifacts were made under another configuration.
pub fn check_lock(run: &Path, config: &RunConfig, allow_change: bool) -> CliResult {
    let lock = run.join("run.lock.json");
    let hash = config.hash();
    if let Ok(text) = std::fs::read_to_string(&lock) {
        let recorded: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| input(format!("{}: {e}", lock.display())))?;
        if recorded["config_hash"] != hash.as_str() && !allow_change {
            return Err(input(format!(
                "{}: this run was made under configuration {} but run.toml is now {hash}; use a new run \
                 directory, or pass --allow-config-change",
                run.display(),
                recorded["config_hash"]
            )));
        }
    }
    let text = serde_json::json!({"config_hash": hash}).to_string();
    crate::artifacts::write_shared(&lock, text.as_bytes())
        .map_err(|e| CliError::Runtime(e.to_string()))
}
