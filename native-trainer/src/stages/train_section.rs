//! run.toml's `[train]` table: what a round's `TrainConfig` needs beyond the paths the run fixes.

use popalign_core::align::objectives::ObjectiveKind;
use popalign_core::diffusion::precision::Precision;
use popalign_core::nn::lora::LoraConfig;
use serde::{Deserialize, Serialize};

use crate::train::config::{LrSchedule, is_f32};
use crate::train::export::LoraExport;

/// What `train.toml` needs beyond the paths the run fixes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// `popalign` (default), `popalign-pairwise`, `dpo`, `sft`, or `dense` (needs `[generate] trajectories`).
    /// Left out of the serialised config when `popalign`, so older runs keep their hash.
    #[serde(default = "popalign_objective", skip_serializing_if = "is_popalign")]
    pub objective: ObjectiveKind,
    pub steps: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub beta: f64,
    /// `lora_rank` in run.toml: LoRA adapters of that rank (α = rank), or 0 for full fine-tuning against
    /// a frozen copy of the U-Net. Decoded here once; everything after reads `Option<LoraConfig>`.
    #[serde(rename = "lora_rank", with = "lora_rank")]
    pub lora: Option<LoraConfig>,
    /// PopAlign's λ_U, the weight of the dispreferred samples (`[popalign] lambda_dispreferred`).
    #[serde(default = "one")]
    pub lambda_dispreferred: f64,
    /// PopAlign's optional SFT anchor (`[popalign] sft_weight` in `train.toml`; 0 = the official loss).
    #[serde(default)]
    pub sft_weight: f64,
    /// Training timesteps `[lo, hi)` (`timestep_range` in `train.toml`; absent = all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestep_range: Option<[usize; 2]>,
    /// Share of training captions replaced by `""`, so the unconditional branch that classifier-free
    /// guidance divides by learns the preferences too (`proportion_empty_prompts` in `train.toml`).
    /// Left out of the serialised config when 0, so runs made before it existed keep their hash.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub proportion_empty_prompts: f64,
    /// PopAlign rounds. Each round after the first samples both populations again with the previous
    /// round's U-Net, classifies and pairs them, and fine-tunes that U-Net (its own reference) for
    /// `round_steps`, in `rounds/<r>/`; the pairs then correct what the previous round over- or
    /// under-shot, as the model now samples it. 1 (the official single round) is left out
    /// of the serialised config, so older runs keep their hash. Full fine-tuning only.
    #[serde(default = "one_round", skip_serializing_if = "is_one_round")]
    pub rounds: usize,
    /// Steps of each round after the first (absent: `steps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_steps: Option<usize>,
    /// Data-parallel training workers, one per device as `train.toml` names them (`cuda:0`, `cuda:1`;
    /// `cpu` repeated on the CPU build, where two workers keep both cores of a 2-core box busy).
    /// `batch_size` stays the global batch and is split evenly over them. Empty (left out of the
    /// serialised config): the default device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// `bf16`: mixed precision (a cuda build, or flex on the CPU); absent: f32.
    #[serde(default, skip_serializing_if = "is_f32")]
    pub precision: Precision,
    /// Gradient checkpointing (memory for compute; see `train.toml`'s key of the same name).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gradient_checkpointing: bool,
    /// The learning-rate schedule (absent: cosine, the toy world's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_schedule: Option<LrSchedule>,
    /// Warm-up steps of the schedule (absent: 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<usize>,
    /// Flip both images of a pair horizontally with probability ½, as the official runs do (absent: no).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_flip: Option<bool>,
    /// Steps between checkpoints (absent: 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<usize>,
    /// Sample a grid during training every this many steps (absent: none): the first four evaluation
    /// prompts × `sample_images`, with the evaluation's seeds and `[generate]` settings, into
    /// `train/samples/step-<n>/`. Step 0's grid is the base model's evaluation images, the last the aligned
    /// model's; the report shows the grids in between.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_every: Option<usize>,
    /// Images per prompt in each sample grid (absent: 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_images: Option<usize>,
    /// Also write the LoRA in these layouts (`["kohya"]`: `lora_kohya.safetensors` beside each
    /// checkpoint's diffusers file, for ComfyUI and Automatic1111). LoRA runs only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export: Vec<LoraExport>,
}

impl TrainSection {
    /// Steps of round `round` (counted from 1).
    pub fn steps_of(&self, round: usize) -> usize {
        match round {
            1 => self.steps,
            _ => self.round_steps.unwrap_or(self.steps),
        }
    }
}

/// run.toml's `lora_rank`: one number for "LoRA of this rank (α = rank)" or "full fine-tuning" (0).
mod lora_rank {
    use popalign_core::nn::lora::LoraConfig;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(lora: &Option<LoraConfig>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(lora.as_ref().map_or(0, |l| l.rank as u64))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LoraConfig>, D::Error> {
        let rank = usize::deserialize(d)?;
        Ok((rank > 0).then(|| LoraConfig::new(rank, rank as f64)))
    }
}

fn one_round() -> usize {
    1
}

fn is_one_round(rounds: &usize) -> bool {
    *rounds == 1
}

fn one() -> f64 {
    1.0
}

fn popalign_objective() -> ObjectiveKind {
    ObjectiveKind::Popalign
}

fn is_popalign(kind: &ObjectiveKind) -> bool {
    *kind == ObjectiveKind::Popalign
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}
