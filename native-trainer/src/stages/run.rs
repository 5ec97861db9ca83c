//! `popalign run --config run.toml`: executes the stages `run.toml` lists over its run directory (the
//! folder holding `run.toml`), each skipping what is already complete, and reading its inputs from the
//! files earlier stages wrote, so any stage can be re-run, resumed or replaced by another tool.
//!
//! The classifier and quality proxy are the toy world's (the face-attribute classifiers and reward
//! models of the real pipeline plug into the same traits).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use popalign_core::classify::AttributeClassifier;
use popalign_core::metrics::bias::BiasOptions;
use popalign_core::objectives::ObjectiveKind;
use popalign_core::pipeline::DiffusionPipeline;
use popalign_core::preferences::{self, Member, Populations};
use popalign_core::prompts::PromptRow;
use popalign_core::schedulers::SchedulerKind;
use popalign_core::toy::classifier::OccupationAccuracy;
use popalign_core::toy::{TOY, ToyClassifier};
use popalign_core::unet::UNet2DConditionModel;
use serde_json::json;

use super::classify::{AttributeRow, classify_set, read_rows};
use super::config::{RunConfig, Stage, check_lock, round_dir};
use super::evaluate::{summarize, write_summary};
use super::images::{SamplingOptions, generate_set, jobs_for, write_atomic};
use crate::backend::{Backend as B, device};
use crate::commands::prompts::{read_prompt_csv, write_prompt_csv};
use crate::error::{CliError, CliResult, input};

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
    check_lock(dir, config, allow_change)?;
    let run = Run::new(dir, config)?;
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
    classifier: ToyClassifier<B>,
}

const AXES: [&str; 2] = ["race", "gender"];

impl<'a> Run<'a> {
    fn new(dir: &Path, config: &'a RunConfig) -> CliResult<Self> {
        let model = config.model_dir(dir)?;
        if config.model == "toy" {
            crate::toy::embedded::install(&model)?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            model,
            classifier: ToyClassifier::new(&TOY, &device()),
        })
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// Neutral prompts (one per occupation) and identity-specific prompts (every shape × colour).
    fn prompts(&self) -> CliResult {
        let mut neutral = Vec::new();
        let mut specific = Vec::new();
        for occupation in 0..TOY.occupations.len() {
            let base = TOY.neutral_prompt(occupation);
            neutral.push(PromptRow {
                prompt: base.clone(),
                base_prompt: base.clone(),
                attributes: BTreeMap::new(),
            });
            for figure in TOY.all_figures() {
                specific.push(PromptRow {
                    prompt: TOY.specific_prompt(occupation, figure),
                    base_prompt: base.clone(),
                    attributes: BTreeMap::from([
                        ("gender".into(), TOY.shapes[figure.shape].label.into()),
                        ("race".into(), TOY.colours[figure.colour].value.label.into()),
                    ]),
                });
            }
        }
        let dir = self.path("prompts");
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::Runtime(format!("{}: {e}", dir.display())))?;
        write_prompt_csv(&dir.join("neutral.csv"), &neutral, &AXES)?;
        write_prompt_csv(&dir.join("specific.csv"), &specific, &AXES)
    }

    /// How images are sampled; `trajectories` keeps their chains (the training populations only).
    fn sampling(&self, trajectories: bool) -> SamplingOptions {
        let g = &self.config.generate;
        SamplingOptions {
            steps: g.steps,
            guidance: g.guidance,
            scheduler: SchedulerKind::Ddim,
            batch_size: g.batch_size,
            trajectories,
        }
    }

    /// The base pipeline, or with `trained` weights: a fine-tuned U-Net folder (full fine-tuning) or
    /// a LoRA file on the base U-Net.
    fn pipeline(&self, trained: Option<&Path>) -> CliResult<DiffusionPipeline<B>> {
        let device = device();
        let mut pipeline = DiffusionPipeline::<B>::from_dir(&self.model, None, &device)?;
        if let Some(weights) = trained {
            pipeline.unet = if self.config.train.lora_rank == 0 {
                UNet2DConditionModel::from_dir(weights, None, &device)?
            } else {
                UNet2DConditionModel::from_dir_and_lora_file(
                    &self.model.join("unet"),
                    None,
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
    fn eval_jobs(&self) -> CliResult<Vec<super::images::ImageJob>> {
        let rows = self.prompt_rows("neutral")?;
        Ok(jobs_for(
            &rows,
            self.config.generate.eval_images,
            self.config.seed + 1_000_000,
        ))
    }

    fn classify(&self) -> CliResult {
        for set in ["neutral", "specific"] {
            let csv = self.path(&format!("attributes/{set}.csv"));
            classify_set(
                &self.classifier,
                &self.dir,
                &format!("images/{set}"),
                &csv,
                64,
            )?;
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
        let axes = self.classifier.axes();
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
            &AXES,
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
            let csv = self.path(&format!("{folder}attributes/{name}.csv"));
            classify_set(
                &self.classifier,
                &self.dir,
                &format!("{folder}images/{name}"),
                &csv,
                64,
            )?;
        }
        self.preferences_of(round)
    }

    /// Writes the round's `train.toml` (the run's objective, PopAlign by default, with LoRA or full
    /// fine-tuning; a later round starts from the previous round's U-Net) and trains, resuming from a
    /// checkpoint if one exists.
    fn train_round(&self, round: usize) -> CliResult {
        let t = &self.config.train;
        let folder = self.path(&round_dir(round));
        // train.toml resolves relative paths against its own folder (the round's).
        let absolute =
            |p: &Path| std::fs::canonicalize(p).map_err(|e| input(format!("{}: {e}", p.display())));
        let quote = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
        let model = absolute(&self.model)?;
        let start = match round {
            1 => String::new(),
            _ => format!(
                "unet = {}\n",
                quote(&absolute(&self.weights_of(round - 1))?)
            ),
        };
        let text = format!(
            "# Written by `popalign run` from run.toml.\nmodel = {}\n{start}preferences = {}\noutput = {}\n\
             objective = {}\nseed = {}\nsteps = {}\nbatch_size = {}\nlearning_rate = {:e}\n{}\
             lr_schedule = \"cosine\"\nwarmup_steps = 10\ncheckpoint_every = 50\nresolution = 16\n\
             proportion_empty_prompts = {:?}\nrandom_flip = false\n{}{}\n{}\
             [popalign]\nbeta = {:?}\nlambda_dispreferred = {:?}\nsft_weight = {:?}\n",
            quote(&model),
            quote(Path::new("preferences.jsonl")),
            quote(Path::new("train")),
            serde_json::to_string(&t.objective).expect("json"),
            self.config.seed + round as u64 - 1,
            self.config.train.steps_of(round),
            // train.toml's batch is per device.
            t.batch_size / t.devices.len().max(1),
            t.learning_rate,
            // β of `dpo` and `popalign-pairwise`; PopAlign's is in its table (and a popalign run's
            // train.toml keeps the hash it had before other objectives could be chosen).
            match t.objective {
                ObjectiveKind::Dpo | ObjectiveKind::PopalignPairwise =>
                    format!("beta = {:?}\n", t.beta),
                _ => String::new(),
            },
            t.proportion_empty_prompts,
            t.timestep_range.map_or(String::new(), |[lo, hi]| format!(
                "timestep_range = [{lo}, {hi}]\n"
            )),
            match t.devices.is_empty() {
                true => String::new(),
                false => format!("devices = {}\n", toml::Value::from(t.devices.clone())),
            },
            match t.lora_rank {
                0 => String::new(),
                rank => format!("[lora]\nrank = {rank}\nalpha = {rank}.0\n\n"),
            },
            t.beta,
            t.lambda_dispreferred,
            t.sft_weight,
        );
        let path = folder.join("train.toml");
        write_atomic(&path, text.as_bytes())?;
        let resume = crate::train::checkpoint::latest(&folder.join("train"))?.is_some();
        crate::train::train(&path, resume, &[])?;
        if !self.weights_of(round).exists() {
            return Err(input(format!(
                "{}: training ended without it",
                self.weights_of(round).display()
            )));
        }
        Ok(())
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
        let axes = self.classifier.axes();
        let options = BiasOptions {
            seed: self.config.seed,
            ..BiasOptions::default()
        };
        for name in ["base", "aligned"] {
            let csv = self.path(&format!("eval/{name}/attributes.csv"));
            let rows = classify_set(
                &self.classifier,
                &self.dir,
                &format!("eval/{name}/images"),
                &csv,
                64,
            )?;
            let scorer = OccupationAccuracy(ToyClassifier::<B>::new(&TOY, &device()));
            let summary = summarize(name, &self.dir, &axes, &rows, &scorer, &options)?;
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

pub(crate) fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!("{{bar:30}} {{pos}}/{{len}} {what} {{elapsed}} eta {{eta}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("template"));
    bar
}
