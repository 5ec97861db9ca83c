//! The stages of a run over its run directory (what `popalign run` and `popalign demo` execute), each
//! skipping what is already complete, and reading its inputs from the
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
use popalign_core::models::unet::TrainedWeights;
use serde_json::json;

use super::config::{RunConfig, Stage, check_lock, round_dir};
use super::images::{ImageJob, SamplingOptions, generate_set, jobs_for};
use super::shard::Shard;
use crate::artifacts::progress;
use crate::artifacts::write_atomic;
use crate::backend::{Backend as B, device};
use crate::classify::attributes::{AttributeRow, classify_entries, classify_set, read_rows};
use crate::error::{CliError, CliResult, input};
use crate::evaluate::run_summary::{summarize, write_summary};
use crate::prompt_sets::{read_prompt_csv, write_prompt_csv};

/// Runs `stages` of `config` in the run directory `dir`, or only `shard`'s part of them (`shard.rs`).
pub fn run_stages(
    dir: &Path,
    config: &RunConfig,
    stages: &[Stage],
    allow_change: bool,
    shard: Option<Shard>,
) -> CliResult {
    if shard.is_some() {
        super::shard::check_stages(stages)?;
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Runtime(format!("{}: {e}", dir.display())))?;
    let run = Run::new(dir, config, shard)?;
    run.load_models_for(stages)?;
    check_lock(dir, config, allow_change)?;
    if shard.is_none() && stages.iter().any(|s| *s != Stage::Prompts) {
        run.join_shards()?;
    }
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

pub(super) struct Run<'a> {
    pub(super) dir: PathBuf,
    pub(super) config: &'a RunConfig,
    pub(super) model: PathBuf,
    /// The identity axes the prompts vary and the preferences balance.
    axes: Vec<String>,
    /// Image side in pixels: `[generate] resolution`, else the model's own.
    pub(super) resolution: usize,
    /// Loaded before the first stage that needs it.
    classifier: OnceCell<Box<dyn AttributeClassifier<B>>>,
    scorers: OnceCell<Vec<(String, Box<dyn Scorer<B>>)>>,
    /// Generate and classify only this shard's images.
    shard: Option<Shard>,
}

impl<'a> Run<'a> {
    fn new(dir: &Path, config: &'a RunConfig, shard: Option<Shard>) -> CliResult<Self> {
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
            shard,
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
    pub(super) fn classify_set(&self, images: &str, csv: &str) -> CliResult<Vec<AttributeRow>> {
        classify_set(self.classifier()?, &self.dir, images, &self.path(csv), 64)
    }

    pub(super) fn path(&self, relative: &str) -> PathBuf {
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
    pub(super) fn sampling(&self, trajectories: bool) -> SamplingOptions {
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

    /// The base pipeline, or with `trained` weights in place of the base U-Net.
    pub(super) fn pipeline(
        &self,
        trained: Option<&TrainedWeights>,
    ) -> CliResult<DiffusionPipeline<B>> {
        let device = device();
        let variant = self.config.variant.as_deref();
        let mut pipeline = DiffusionPipeline::<B>::from_dir(&self.model, variant, &device)?;
        if let Some(weights) = trained {
            pipeline.unet = weights.load(&self.model.join("unet"), variant, &device)?;
        }
        Ok(pipeline)
    }

    pub(super) fn prompt_rows(
        &self,
        set: &str,
    ) -> CliResult<Vec<(String, String, BTreeMap<String, String>)>> {
        let rows = read_prompt_csv(&self.path(&format!("prompts/{set}.csv")))?;
        Ok(rows
            .into_iter()
            .map(|r| (r.prompt, r.base_prompt, r.attributes))
            .collect())
    }

    /// The base model's image sets and their jobs: the neutral and the diverse population, and the
    /// evaluation set.
    fn base_sets(&self) -> CliResult<[(&'static str, Vec<ImageJob>); 3]> {
        let g = &self.config.generate;
        let seed = self.config.seed;
        Ok([
            (
                "images/neutral",
                jobs_for(&self.prompt_rows("neutral")?, g.neutral_images, seed),
            ),
            (
                "images/specific",
                jobs_for(&self.prompt_rows("specific")?, g.specific_images, seed),
            ),
            ("eval/base/images", self.eval_jobs()?),
        ])
    }

    /// Base-model images: the neutral and the diverse population, and the evaluation set.
    fn generate(&self) -> CliResult {
        let g = &self.config.generate;
        let sets = self.base_sets()?;
        let pipeline = self.pipeline(None)?;
        let count = |jobs: &[ImageJob]| match self.shard {
            Some(shard) => shard.jobs(jobs, g.batch_size).len() as u64,
            None => jobs.len() as u64,
        };
        let bar = progress(sets.iter().map(|(_, j)| count(j)).sum(), "images");
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
                self.shard,
            )?;
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// Evaluation seeds are far from the training populations' so no evaluation image was trained on.
    /// (Runs made before `evaluation.csv` existed evaluate on their neutral prompts.)
    fn eval_jobs(&self) -> CliResult<Vec<ImageJob>> {
        Ok(jobs_for(
            &self.eval_rows()?,
            self.config.generate.eval_images,
            self.eval_seed(),
        ))
    }

    pub(super) fn eval_rows(&self) -> CliResult<Vec<(String, String, BTreeMap<String, String>)>> {
        match self.path("prompts/evaluation.csv").exists() {
            true => self.prompt_rows("evaluation"),
            false => self.prompt_rows("neutral"),
        }
    }

    pub(super) fn eval_seed(&self) -> u64 {
        self.config.seed + 1_000_000
    }

    fn classify(&self) -> CliResult {
        let Some(shard) = self.shard else {
            for set in ["neutral", "specific"] {
                self.classify_set(&format!("images/{set}"), &format!("attributes/{set}.csv"))?;
            }
            return Ok(());
        };
        for (set, jobs) in self.base_sets()?.iter().take(2) {
            let entries = super::shard::recorded_images(
                &self.dir,
                set,
                &shard.jobs(jobs, self.config.generate.batch_size),
            )?;
            let name = set.trim_start_matches("images/");
            let csv = self.path(&format!("attributes/{}", shard.file(name, "csv")));
            classify_entries(self.classifier()?, &entries, &csv, 64, false, &|_| ())?;
        }
        Ok(())
    }

    /// Joins what shards left (`shard.rs`): the base sets' manifests, then the populations' attributes.
    fn join_shards(&self) -> CliResult {
        let has_ledgers = |dir: &str| {
            std::fs::read_dir(self.path(dir)).is_ok_and(|listing| {
                listing
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().contains(".shard-"))
            })
        };
        let folders = [
            "images/neutral",
            "images/specific",
            "eval/base/images",
            "eval/aligned/images",
            "attributes",
        ];
        if !folders.iter().any(|folder| has_ledgers(folder)) {
            return Ok(());
        }
        let batch_size = self.config.generate.batch_size;
        for (set, jobs) in self.base_sets()? {
            let dir = self.path(set);
            super::shard::join_manifests(&dir, &jobs, batch_size, "generate")?;
            if let Some(name) = set.strip_prefix("images/")
                && has_ledgers("attributes")
            {
                let manifest = super::images::read_manifest(&dir)?;
                let axes = self.classifier()?.axes();
                let csv = self.path(&format!("attributes/{name}.csv"));
                super::shard::join_attributes(&csv, &manifest, &jobs, batch_size, &axes)?;
            }
        }
        let aligned = self.path("eval/aligned/images");
        super::shard::join_manifests(&aligned, &self.eval_jobs()?, batch_size, "evaluate")
    }

    /// Pairs the classified populations of each neutral prompt (official construction by default).
    fn preferences(&self) -> CliResult {
        self.preferences_of(1)
    }

    /// Round `round`'s pairs, from its own two populations. Image paths are written relative to the
    /// round's folder, as `train.toml` reads them.
    pub(super) fn preferences_of(&self, round: usize) -> CliResult {
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

    /// Aligned images on the evaluation seeds, classification of both models, `summary.json` each; in a
    /// shard, only the shard's aligned images.
    fn evaluate(&self) -> CliResult {
        let jobs = self.eval_jobs()?;
        let pipeline = self.pipeline(Some(&self.final_weights()))?;
        let bar = progress(jobs.len() as u64, "images (aligned)");
        let sidecar = json!({"model": self.model, "trained_weights": self.final_weights().path()});
        generate_set(
            &pipeline,
            &jobs,
            &self.dir,
            "eval/aligned/images",
            &self.sampling(false),
            &sidecar,
            &bar,
            self.shard,
        )?;
        bar.finish_and_clear();
        if self.shard.is_some() {
            // A shard samples its part of the aligned images; the next unsharded stage joins them, and
            // an unsharded evaluate classifies, scores and summarises every image.
            return Ok(());
        }
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
        let report = crate::report::report_for_runs(
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
