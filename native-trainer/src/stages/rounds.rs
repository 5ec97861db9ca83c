//! Training over rounds: round 1 trains on the populations the base model drew; each later round
//! samples both populations again with the previous round's U-Net, classifies and pairs them, and trains
//! on (docs/runs.md, "Rounds"). Each round's weights are a checkpoint of `rounds/<r>/train/`.

use std::path::Path;

use popalign_core::models::unet::TrainedWeights;
use serde_json::json;

use super::config::round_dir;
use super::images::{generate_set, jobs_for};
use super::run::Run;
use crate::artifacts::{progress, write_atomic};
use crate::error::{CliResult, input};
use crate::train::config::{LrSchedule, SamplesConfig, TrainConfig};
use crate::train::launch::Launch;

impl Run<'_> {
    /// `[train] sample_every`: grids of the first four evaluation prompts, sampled as the evaluation
    /// samples them, so their images are the evaluation's at step 0 and at the last step.
    pub(super) fn samples_config(&self) -> CliResult<Option<SamplesConfig>> {
        let t = &self.config.train;
        let Some(every) = t.sample_every else {
            return Ok(None);
        };
        let sampling = self.sampling(false);
        Ok(Some(SamplesConfig {
            prompts: self.eval_rows()?.into_iter().take(4).map(|r| r.0).collect(),
            images_per_prompt: t.sample_images.unwrap_or(2),
            every: Some(every),
            steps: sampling.steps,
            guidance: sampling.guidance,
            scheduler: sampling.scheduler,
            resolution: Some(sampling.resolution),
            batch_size: sampling.batch_size,
            seed: Some(self.eval_seed()),
        }))
    }

    /// Round `round`'s trained weights: the LoRA file, or the U-Net folder of full fine-tuning.
    pub(super) fn weights_of(&self, round: usize) -> TrainedWeights {
        let step = self.path(&format!(
            "{}train/step-{}",
            round_dir(round),
            self.config.train.steps_of(round)
        ));
        TrainedWeights::in_checkpoint(&step, self.config.train.lora.is_some())
    }

    /// The last round's weights: the aligned model.
    pub(super) fn final_weights(&self) -> TrainedWeights {
        self.weights_of(self.config.train.rounds)
    }

    /// Every round in turn; a round whose weights exist is skipped, a started one resumes.
    pub(super) fn train(&self) -> CliResult {
        let processes = Launch::processes_from_env()?;
        if processes > 1 && self.config.train.rounds > 1 {
            // Every process would sample the next round's populations into the same folders.
            return Err(input(format!(
                "[train] rounds = {} under a launcher of {processes} processes: on-policy rounds train in \
                 one process (several devices with [train] devices); launch rounds = 1 runs",
                self.config.train.rounds
            )));
        }
        for round in 1..=self.config.train.rounds {
            if self.weights_of(round).exists() {
                continue;
            }
            let started = std::time::Instant::now();
            if round > 1 {
                self.sample_round(round)?;
            }
            self.train_round(round)?;
            if self.config.train.rounds > 1 {
                eprintln!(
                    "  round {round} {:>13.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Ok(())
    }

    /// Round `round`'s two populations, sampled with the previous round's U-Net on seeds of their own,
    /// classified and paired. Both come from the same model, as in round 1, so that a pair differs in
    /// identity and not in which model drew it (base-model images preferred to the previous round's
    /// would pull the model back to the base).
    fn sample_round(&self, round: usize) -> CliResult {
        let g = &self.config.generate;
        let folder = round_dir(round);
        let seed = self.config.seed + 1_000_000 * round as u64;
        let sets = [
            (
                "neutral",
                jobs_for(&self.prompt_rows("neutral")?, g.neutral_images, seed),
            ),
            (
                "specific",
                jobs_for(&self.prompt_rows("specific")?, g.specific_images, seed),
            ),
        ];
        let previous = self.weights_of(round - 1);
        let pipeline = self.pipeline(Some(&previous))?;
        let total = sets.iter().map(|(_, jobs)| jobs.len() as u64).sum();
        let bar = progress(total, &format!("images (round {round})"));
        let sidecar = json!({"model": self.model, "trained_weights": previous.path()});
        for (name, jobs) in &sets {
            let set = format!("{folder}images/{name}");
            let options = self.sampling(g.trajectories);
            generate_set(
                &pipeline, jobs, &self.dir, &set, &options, &sidecar, &bar, None,
            )?;
        }
        bar.finish_and_clear();
        for (name, _) in &sets {
            self.classify_set(
                &format!("{folder}images/{name}"),
                &format!("{folder}attributes/{name}.csv"),
            )?;
        }
        self.preferences_of(round)
    }

    /// Trains round `round` with the run's objective (PopAlign by default), LoRA or full fine-tuning; a
    /// later round starts from the previous round's U-Net. Resumes from a checkpoint if one exists. The
    /// configuration is written to the round's `train.toml`, so `popalign train` can repeat it.
    fn train_round(&self, round: usize) -> CliResult {
        let folder = self.path(&round_dir(round));
        let config = self.train_config(round, &folder)?;
        let text = format!(
            "# Written by `popalign run` from run.toml.\n{}",
            toml::to_string(&config).expect("a train config serialises")
        );
        write_atomic(&folder.join("train.toml"), text.as_bytes())?;
        let resume = crate::train::checkpoint::latest(&config.output)?.is_some();
        crate::train::train_with(&config, resume)?;
        if !self.weights_of(round).exists() {
            return Err(input(format!(
                "{}: training ended without it",
                self.weights_of(round).path().display()
            )));
        }
        Ok(())
    }

    /// Round `round`'s training configuration, its paths absolute.
    fn train_config(&self, round: usize, folder: &Path) -> CliResult<TrainConfig> {
        let t = &self.config.train;
        let absolute =
            |p: &Path| std::path::absolute(p).map_err(|e| input(format!("{}: {e}", p.display())));
        let mut config = TrainConfig::with_defaults(
            absolute(&self.model)?,
            absolute(&folder.join("train"))?,
            t.steps_of(round),
            t.learning_rate,
            self.resolution,
        );
        if round > 1 {
            config.unet = Some(absolute(self.weights_of(round - 1).path())?);
        }
        config.preferences = Some(absolute(&folder.join("preferences.jsonl"))?);
        config.objective = t.objective;
        config.seed = self.config.seed + round as u64 - 1;
        // run.toml's `batch_size` is the global batch; train.toml's is per worker, over every process a
        // launcher started too.
        let processes = Launch::processes_from_env()?;
        let workers = t.devices.len().max(1) * processes;
        if t.batch_size % workers != 0 {
            return Err(input(format!(
                "[train] batch_size {} does not split evenly over {workers} workers ({processes} processes)",
                t.batch_size
            )));
        }
        config.batch_size = t.batch_size / workers;
        config.devices = t.devices.clone();
        config.lr_schedule = t.lr_schedule.unwrap_or(LrSchedule::Cosine);
        config.warmup_steps = t.warmup_steps.unwrap_or(10);
        config.checkpoint_every = t.checkpoint_every.unwrap_or(50);
        config.proportion_empty_prompts = t.proportion_empty_prompts;
        config.random_flip = t.random_flip.unwrap_or(false);
        config.timestep_range = t.timestep_range;
        config.precision = t.precision;
        config.gradient_checkpointing = t.gradient_checkpointing;
        config.export = t.export.clone();
        config.samples = self.samples_config()?;
        config.variant = self.config.variant.clone();
        config.beta = t.beta;
        config.popalign.beta = t.beta;
        config.popalign.lambda_dispreferred = t.lambda_dispreferred;
        config.popalign.sft_weight = t.sft_weight;
        config.lora = t.lora.clone();
        Ok(config)
    }
}
