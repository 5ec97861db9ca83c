//! `popalign run --config run.toml`: executes the stages `run.toml` lists over its run directory (the
//! folder holding `run.toml`), each skipping what is already complete, and reading its inputs from the
//! files earlier stages wrote, so any stage can be re-run, resumed or replaced by another tool.
//!
//! What the stages take from the world they run in (prompts, classifier, scorers) comes from `world.rs`:
//! the toy world's own, or a real model's from `run.toml`.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use popalign_core::align::preferences::{self, Member, Populations};
use popalign_core::diffusion::pipeline::{DiffusionPipeline, default_resolution};
use popalign_core::diffusion::schedulers::SchedulerKind;
use popalign_core::eval::classify::{AttributeClassifier, Scorer};
use popalign_core::eval::metrics::bias::BiasOptions;
use popalign_core::models::unet::UNet2DConditionModel;
use serde_json::json;

use super::classify::{AttributeRow, classify_set, read_rows};
use super::config::{RunConfig, Stage, check_lock, round_dir};
use super::evaluate::{summarize, write_summary};
use super::images::{SamplingOptions, generate_set, jobs_for};
use crate::artifacts::progress;
use crate::artifacts::write_atomic;
use crate::backend::{Backend as B, device};
use crate::commands::prompts::{read_prompt_csv, write_prompt_csv};
use crate::error::{CliError, CliResult, input};
use crate::train::config::SamplesConfig;
use crate::train::config::{LrSchedule, TrainConfig};

#[derive(clap::Args)]
pub struct Args {
    /// The run's `run.toml`; its folder is the run directory.
    #[arg(long)]
    config: PathBuf,
    /// Run only these stages (default: those `run.toml` lists).
    #[arg(long, value_enum, value_delimiter = ',')]
    stage: Vec<Stage>,
    /// Continue a run whose artifacts were made under a different `run.toml`.
    #[arg(long)]
    allow_config_change: bool,
}

pub fn run(args: Args) -> CliResult {
    let config = RunConfig::load(&args.config)?;
    let dir = args.config.parent().unwrap_or(Path::new(".")).to_path_buf();
    let stages = if args.stage.is_empty() {
        config.stages.clone()
    } else {
        args.stage
    };
    run_stages(&dir, &config, &stages, args.allow_config_change)
}

/// Runs `stages` of `config` in the run directory `dir`.
pub fn run_stages(
    dir: &Path,
    config: &RunConfig,
    stages: &[Stage],
    allow_change: bool,
) -> CliResult {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Runtime(format!("{}: {e}", dir.display())))?;
    let run = Run::new(dir, config)?;
    run.load_models_for(stages)?;
    check_lock(dir, config, allow_change)?;
    let started = std::time::Instant::now();
    for stage in stages {
        let stage_started = std::time::Instant::now();
        match stage {
            Stage::Prompts => run.prompts()?,
            Stage::Generate => run.generate()?,
            Stage::Classify => run.classify()?,
            Stage::Preferences => run.preferences()?,
            Stage::Train => run.train()?,
            Stage::Evaluate => run.evaluate()?,
            Stage::Report => run.report()?,
        }
        // Where the time goes (stderr, so the table on stdout stays clean).
        eprintln!(
            "stage {:<12} {:>6.1} s",
            format!("{stage:?}").to_lowercase(),
            stage_started.elapsed().as_secs_f64()
        );
    }
    eprintln!("stages done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

struct Run<'a> {
    dir: PathBuf,
    config: &'a RunConfig,
    model: PathBuf,
    /// The identity axes the prompts vary and the preferences balance.
    axes: Vec<String>,
    /// Image side in pixels: `[generate] resolution`, else the model's own.
    resolution: usize,
    /// Loaded before the first stage that needs it.
    classifier: OnceCell<Box<dyn AttributeClassifier<B>>>,
    scorers: OnceCell<Vec<(String, Box<dyn Scorer<B>>)>>,
}

impl<'a> Run<'a> {
    fn new(dir: &Path, config: &'a RunConfig) -> CliResult<Self> {
        let model = config.model_dir(dir)?;
        if config.is_toy() {
            crate::toy::embedded::install(&model)?;
        } else {
            check_components(&model)?;
        }
        let resolution = match config.generate.resolution {
            Some(side) => side,
            None => default_resolution(&model)?,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            model,
            axes: super::world::axes(config),
            resolution,
            classifier: OnceCell::new(),
            scorers: OnceCell::new(),
        })
    }

    /// Builds the prompt sets and loads the classifier and the scorers that `stages` will use, so that an
    /// unknown occupation or wrong weights are reported before anything is written, not after hours of
    /// generation.
    fn load_models_for(&self, stages: &[Stage]) -> CliResult {
        use Stage::*;
        if stages.contains(&Prompts) {
            super::world::prompts(self.config, &self.dir)?;
        }
        if stages
            .iter()
            .any(|s| matches!(s, Classify | Preferences | Train | Evaluate))
        {
            self.classifier()?;
        }
        if stages.contains(&Evaluate) {
            self.scorers()?;
        }
        Ok(())
    }

    fn scorers(&self) -> CliResult<&[(String, Box<dyn Scorer<B>>)]> {
        if self.scorers.get().is_none() {
            let loaded = super::world::scorers(self.config, &self.dir)?;
            let _ = self.scorers.set(loaded);
        }
        Ok(self.scorers.get().expect("set above"))
    }

    fn classifier(&self) -> CliResult<&dyn AttributeClassifier<B>> {
        if self.classifier.get().is_none() {
            let loaded = super::world::classifier(self.config, &self.dir)?;
            let _ = self.classifier.set(loaded);
        }
        Ok(self.classifier.get().expect("set above").as_ref())
    }

    fn axis_names(&self) -> Vec<&str> {
        self.axes.iter().map(String::as_str).collect()
    }

    /// `classify_set` with the run's classifier.
    fn classify_set(&self, images: &str, csv: &str) -> CliResult<Vec<AttributeRow>> {
        classify_set(self.classifier()?, &self.dir, images, &self.path(csv), 64)
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// The populations' prompts (`neutral.csv`, `specific.csv`) and the evaluation's (`evaluation.csv`).
    fn prompts(&self) -> CliResult {
        let sets = super::world::prompts(self.config, &self.dir)?;
        let dir = self.path("prompts");
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::Runtime(format!("{}: {e}", dir.display())))?;
        let axes = self.axis_names();
        write_prompt_csv(&dir.join("neutral.csv"), &sets.neutral, &axes)?;
        write_prompt_csv(&dir.join("specific.csv"), &sets.specific, &axes)?;
        write_prompt_csv(&dir.join("evaluation.csv"), &sets.evaluation, &axes)
    }

    /// How images are sampled; `trajectories` keeps their chains (the training populations only).
    fn sampling(&self, trajectories: bool) -> SamplingOptions {
        let g = &self.config.generate;
        SamplingOptions {
            steps: g.steps,
            guidance: g.guidance,
            scheduler: g.scheduler.unwrap_or(SchedulerKind::Ddim),
            batch_size: g.batch_size,
            resolution: self.resolution,
            trajectories,
        }
    }

    /// The base pipeline, or with `trained` weights: a fine-tuned U-Net folder (full fine-tuning) or
    /// a LoRA file on the base U-Net.
    fn pipeline(&self, trained: Option<&Path>) -> CliResult<DiffusionPipeline<B>> {
        let device = device();
        let variant = self.config.variant.as_deref();
        let mut pipeline = DiffusionPipeline::<B>::from_dir(&self.model, variant, &device)?;
        if let Some(weights) = trained {
            pipeline.unet = if self.config.train.lora_rank == 0 {
                UNet2DConditionModel::from_dir(weights, None, &device)?
            } else {
                UNet2DConditionModel::from_dir_and_lora_file(
                    &self.model.join("unet"),
                    variant,
                    Some(weights),
                    &device,
                )?
            };
        }
        Ok(pipeline)
    }

    fn prompt_rows(&self, set: &str) -> CliResult<Vec<(String, String, BTreeMap<String, String>)>> {
        let rows = read_prompt_csv(&self.path(&format!("prompts/{set}.csv")))?;
        Ok(rows
            .into_iter()
            .map(|r| (r.prompt, r.base_prompt, r.attributes))
            .collect())
    }

    /// Base-model images: the neutral and the diverse population, and the evaluation set.
    fn generate(&self) -> CliResult {
        let g = &self.config.generate;
        let seed = self.config.seed;
        let sets = [
            (
                "images/neutral",
                jobs_for(&self.prompt_rows("neutral")?, g.neutral_images, seed),
            ),
            (
                "images/specific",
                jobs_for(&self.prompt_rows("specific")?, g.specific_images, seed),
            ),
            ("eval/base/images", self.eval_jobs()?),
        ];
        let pipeline = self.pipeline(None)?;
        let bar = progress(sets.iter().map(|(_, j)| j.len() as u64).sum(), "images");
        let sidecar = json!({"model": self.model, "lora": null});
        for (set, jobs) in &sets {
            generate_set(
                &pipeline,
                jobs,
                &self.dir,
                set,
                &self.sampling(g.trajectories && set.starts_with("images/")),
                &sidecar,
                &bar,
            )?;
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// Evaluation seeds are far from the training populations' so no evaluation image was trained on.
    /// (Runs made before `evaluation.csv` existed evaluate on their neutral prompts.)
    fn eval_jobs(&self) -> CliResult<Vec<super::images::ImageJob>> {
        Ok(jobs_for(
            &self.eval_rows()?,
            self.config.generate.eval_images,
            self.eval_seed(),
        ))
    }

    fn eval_rows(&self) -> CliResult<Vec<(String, String, BTreeMap<String, String>)>> {
        match self.path("prompts/evaluation.csv").exists() {
            true => self.prompt_rows("evaluation"),
            false => self.prompt_rows("neutral"),
        }
    }

    fn eval_seed(&self) -> u64 {
        self.config.seed + 1_000_000
    }

    /// `[train] sample_every`: grids of the first four evaluation prompts, sampled as the evaluation
    /// samples them, so their images are the evaluation's at step 0 and at the last step.
    fn samples_config(&self) -> CliResult<Option<SamplesConfig>> {
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

    fn classify(&self) -> CliResult {
        for set in ["neutral", "specific"] {
            self.classify_set(&format!("images/{set}"), &format!("attributes/{set}.csv"))?;
        }
        Ok(())
    }

    /// Pairs the classified populations of each neutral prompt (official construction by default).
    fn preferences(&self) -> CliResult {
        self.preferences_of(1)
    }

    /// Round `round`'s pairs, from its own two populations. Image paths are written relative to the
    /// round's folder, as `train.toml` reads them.
    fn preferences_of(&self, round: usize) -> CliResult {
        let axes = self.classifier()?.axes();
        let folder = round_dir(round);
        let neutral = read_rows(
            &self.path(&format!("{folder}attributes/neutral.csv")),
            &axes,
        )?;
        let specific = read_rows(
            &self.path(&format!("{folder}attributes/specific.csv")),
            &axes,
        )?;
        let up = if round == 1 { "" } else { "../../" };
        let member = |row: &AttributeRow| Member {
            file: format!("{up}{}", row.file),
            identity: axes
                .iter()
                .zip(&row.axes)
                .map(|(axis, (label, _, _))| (axis.name.clone(), label.clone()))
                .collect(),
        };
        let captions: Vec<String> = self
            .prompt_rows("neutral")?
            .into_iter()
            .map(|r| r.0)
            .collect();
        let populations: Vec<Populations> = captions
            .into_iter()
            .map(|caption| {
                let of = |rows: &[AttributeRow]| {
                    rows.iter()
                        .filter(|r| r.face_found && r.base_prompt == caption)
                        .map(member)
                        .collect()
                };
                Populations {
                    diverse: of(&specific),
                    neutral: of(&neutral),
                    caption,
                }
            })
            .collect();
        let p = &self.config.preferences;
        let construction = match round {
            1 => p.construction,
            _ => p.round_construction.unwrap_or(p.construction),
        };
        let records = preferences::build(
            &populations,
            construction,
            p.iterations,
            p.set_size,
            &self.axis_names(),
            self.config.seed + round as u64 - 1,
        )
        .map_err(CliError::Runtime)?;
        let text: String = records
            .iter()
            .map(|r| serde_json::to_string(r).expect("json") + "\n")
            .collect();
        write_atomic(
            &self.path(&format!("{folder}preferences.jsonl")),
            text.as_bytes(),
        )
    }

    /// Round `round`'s trained weights: the LoRA file, or the U-Net folder when `lora_rank = 0`.
    fn weights_of(&self, round: usize) -> PathBuf {
        let step = self.path(&format!(
            "{}train/step-{}",
            round_dir(round),
            self.config.train.steps_of(round)
        ));
        if self.config.train.lora_rank == 0 {
            step.join("unet")
        } else {
            step.join("pytorch_lora_weights.safetensors")
        }
    }

    /// The last round's weights: the aligned model.
    fn final_weights(&self) -> PathBuf {
        self.weights_of(self.config.train.rounds)
    }

    /// Every round in turn; a round whose weights exist is skipped, a started one resumes.
    fn train(&self) -> CliResult {
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
        let sidecar = json!({"model": self.model, "trained_weights": previous});
        for (name, jobs) in &sets {
            let set = format!("{folder}images/{name}");
            let options = self.sampling(g.trajectories);
            generate_set(&pipeline, jobs, &self.dir, &set, &options, &sidecar, &bar)?;
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
                self.weights_of(round).display()
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
            config.unet = Some(absolute(&self.weights_of(round - 1))?);
        }
        config.preferences = Some(absolute(&folder.join("preferences.jsonl"))?);
        config.objective = t.objective;
        config.seed = self.config.seed + round as u64 - 1;
        // `batch_size` of train.toml is per device.
        config.batch_size = t.batch_size / t.devices.len().max(1);
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
        if t.lora_rank > 0 {
            config.lora = Some(
                serde_json::from_value(json!({"rank": t.lora_rank, "alpha": t.lora_rank}))
                    .expect("rank and alpha make a LoRA config"),
            );
        }
        Ok(config)
    }

    /// Aligned images on the evaluation seeds, classification of both models, `summary.json` each.
    fn evaluate(&self) -> CliResult {
        let jobs = self.eval_jobs()?;
        let pipeline = self.pipeline(Some(&self.final_weights()))?;
        let bar = progress(jobs.len() as u64, "images (aligned)");
        let sidecar = json!({"model": self.model, "trained_weights": self.final_weights()});
        generate_set(
            &pipeline,
            &jobs,
            &self.dir,
            "eval/aligned/images",
            &self.sampling(false),
            &sidecar,
            &bar,
        )?;
        bar.finish_and_clear();
        drop(pipeline);
        let axes = self.classifier()?.axes();
        let scorers = self.scorers()?;
        let options = BiasOptions {
            seed: self.config.seed,
            ..BiasOptions::default()
        };
        for name in ["base", "aligned"] {
            let rows = self.classify_set(
                &format!("eval/{name}/images"),
                &format!("eval/{name}/attributes.csv"),
            )?;
            let summary = summarize(name, &self.dir, &axes, &rows, scorers, &options)?;
            write_summary(&self.path(&format!("eval/{name}/summary.json")), &summary)?;
        }
        Ok(())
    }

    /// `report/` from the evaluation summaries, and the comparison table on stdout.
    fn report(&self) -> CliResult {
        let report = super::report::report_for_runs(
            &[self.dir.clone()],
            &self.path("report"),
            &Default::default(),
        )?;
        println!("{}", report.table);
        Ok(())
    }
}

/// Every component folder `model_index.json` lists is there: a download that stopped part-way is
/// reported before any stage runs, not hours later when training loads the U-Net.
fn check_components(root: &Path) -> CliResult {
    let index: serde_json::Map<String, serde_json::Value> =
        popalign_core::io::load::read_config(&root.join("model_index.json"))?;
    for (name, entry) in &index {
        // A component entry is `[library, class]`; `[null, null]` declares it absent.
        let listed = entry
            .as_array()
            .is_some_and(|pair| pair.len() == 2 && pair.iter().all(|v| v.is_string()));
        if listed && !root.join(name).is_dir() {
            return Err(input(format!(
                "{}: model_index.json lists {name}/ but the folder is missing (did a download stop \
                 part-way?)",
                root.display()
            )));
        }
    }
    Ok(())
}
