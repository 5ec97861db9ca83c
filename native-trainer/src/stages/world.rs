//! What a run takes from the world it runs in: its prompt sets, its attribute classifier and its quality
//! scorers. The toy world (`model = "toy"`) carries all three; a real model takes them from `run.toml`'s
//! `[prompts]`, `[classify]` and `[evaluate]`. The stages see only what this file hands them.

use std::collections::BTreeMap;
use std::path::Path;

use popalign_core::align::prompts::{Occupation, PromptRow};
use popalign_core::eval::classify::{AttributeClassifier, Scorer};
use popalign_core::toy::classifier::OccupationAccuracy;
use popalign_core::toy::{TOY, ToyClassifier};

use super::config::{Occupations, RunConfig};
use crate::backend::{Backend as B, device};
use crate::classify::load_classifier;
use crate::error::{CliResult, input};
use crate::evaluate::quality::load_scorers;
use crate::prompt_sets::PromptDocuments;

/// A run's three prompt sets (`prompts/{neutral,specific,evaluation}.csv`).
pub struct RunPrompts {
    /// The biased population's prompts, one row per neutral caption.
    pub neutral: Vec<PromptRow>,
    /// The diverse population's prompts; each row's `base_prompt` is the neutral caption it trains.
    pub specific: Vec<PromptRow>,
    /// What base and aligned models are evaluated on.
    pub evaluation: Vec<PromptRow>,
}

/// The identity axes the specific prompts vary and the preferences balance, first varying slowest (the
/// toy world's are race and gender, the default of `[prompts] axes` too).
pub fn axes(config: &RunConfig) -> Vec<String> {
    config.prompts.clone().unwrap_or_default().axes
}

/// The prompt sets of the run in `run`.
pub fn prompts(config: &RunConfig, run: &Path) -> CliResult<RunPrompts> {
    if config.is_toy() {
        return Ok(toy_prompts());
    }
    let section = config.prompts.clone().unwrap_or_default();
    let in_run = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| run.join(p));
    let (file, names) = match &section.occupations {
        Some(Occupations::File(file)) => (Some(run.join(file)), None),
        Some(Occupations::Names(names)) => (None, Some(names.clone())),
        None => (None, None),
    };
    let (attributes, templates) = (in_run(&section.attributes), in_run(&section.templates));
    let documents = PromptDocuments {
        occupations: file.as_deref(),
        attributes: attributes.as_deref(),
        templates: templates.as_deref(),
    };
    let sets = documents.build(&section.axes, |all| match &names {
        Some(names) => choose_occupations(all, names),
        None => Ok(all),
    })?;
    // The populations are prompted with the training captions (occupation and scene), as the official
    // runs are; the evaluation with one neutral prompt per occupation.
    let mut neutral: Vec<PromptRow> = Vec::new();
    for row in &sets.training {
        if neutral
            .last()
            .is_none_or(|last| last.prompt != row.base_prompt)
        {
            neutral.push(PromptRow {
                prompt: row.base_prompt.clone(),
                base_prompt: row.base_prompt.clone(),
                attributes: BTreeMap::new(),
            });
        }
    }
    Ok(RunPrompts {
        neutral,
        specific: sets.training,
        evaluation: sets.neutral,
    })
}

/// The named occupations of the occupations file, in the order named.
fn choose_occupations(all: Vec<Occupation>, names: &[String]) -> CliResult<Vec<Occupation>> {
    names
        .iter()
        .map(|name| {
            all.iter()
                .find(|o| &o.name == name)
                .cloned()
                .ok_or_else(|| {
                    input(format!(
                        "[prompts] occupations: {name:?} is not in data/occupations.toml; write an \
                     occupations file with its scenes and set occupations = \"that-file.toml\""
                    ))
                })
        })
        .collect()
}

/// Neutral prompts (one per occupation) and identity-specific prompts (every shape × colour).
fn toy_prompts() -> RunPrompts {
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
    RunPrompts {
        evaluation: neutral.clone(),
        neutral,
        specific,
    }
}

/// The attribute classifier, checked to read every axis the run balances.
pub fn classifier(config: &RunConfig, run: &Path) -> CliResult<Box<dyn AttributeClassifier<B>>> {
    let classifier = match &config.classify {
        Some(args) => load_classifier(args, run)?,
        None => Box::new(ToyClassifier::<B>::new(&TOY, &device())),
    };
    let reads: Vec<String> = classifier.axes().into_iter().map(|a| a.name).collect();
    if let Some(missing) = axes(config).into_iter().find(|a| !reads.contains(a)) {
        return Err(input(format!(
            "[prompts] axes asks for {missing:?}, but classifier {} reads only {}: choose a classifier \
             that reads it (fairface and clip read gender and race) or leave the axis out",
            classifier.name(),
            reads.join(", ")
        )));
    }
    Ok(classifier)
}

/// The quality scorers of the evaluation, named, in the order `[evaluate] metrics` lists them.
pub fn scorers(config: &RunConfig, run: &Path) -> CliResult<Vec<(String, Box<dyn Scorer<B>>)>> {
    match &config.evaluate {
        Some(args) => load_scorers(args, run),
        None => {
            let accuracy = OccupationAccuracy(ToyClassifier::<B>::new(&TOY, &device()));
            Ok(vec![("occupation accuracy".into(), Box::new(accuracy))])
        }
    }
}
