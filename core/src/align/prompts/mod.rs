//! Prompt sets and demographic augmentation (docs/design.md §1 `prompts/`, §6).
//!
//! PopAlign measures bias on neutral prompts ("a photo of a doctor"), checks identity-specific accuracy on
//! prompts that name every combination of the chosen attributes ("a photo of an Asian female doctor"), and
//! trains on neutral captions whose preferred images come from a balanced population of identity-specific
//! prompts. This module builds all of them from three small TOML documents (occupations, attribute
//! vocabularies, templates). It parses from `&str` and touches no files, so the browser build can use it too;
//! the CLI reads the files and writes the CSVs.

mod template;

use std::collections::{BTreeMap, HashSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use template::*;

/// The placeholder every template fills with the occupation's name.
pub const OCCUPATION: &str = "occupation";
/// The placeholder training templates fill with one of the occupation's scenes.
pub const SCENE: &str = "scene";
/// Names an axis may not take: the two non-axis placeholders and the two fixed CSV columns.
const RESERVED_NAMES: [&str; 4] = [OCCUPATION, SCENE, "prompt", "base_prompt"];

/// Attribute axes that identity-specific prompts combine (gender, race, age, or any a user adds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vocabulary {
    /// In file order; written as `[[axis]]` tables in TOML.
    #[serde(rename = "axis", default)]
    pub axes: Vec<Axis>,
}

/// One attribute, e.g. `race`: its name is both the template placeholder and the CSV column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    pub name: String,
    #[serde(default)]
    pub values: Vec<AxisValue>,
}

/// One value of an axis: `label` is what classifiers output and CSVs store (`latino hispanic`), `words` is
/// what the prompt says (`Latino`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisValue {
    pub label: String,
    pub words: String,
}

/// An occupation and the scenes its training prompts place it in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Occupation {
    pub name: String,
    #[serde(default)]
    pub scenes: Vec<String>,
}

/// One row of a prompt CSV: the prompt to generate from, the neutral prompt it augments (itself for neutral
/// rows), and the attribute labels it asks for, keyed by axis name (empty for neutral rows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptRow {
    pub prompt: String,
    pub base_prompt: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// What one neutral prompt is about: an occupation, and a scene for training prompts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subject<'a> {
    pub occupation: &'a str,
    pub scene: Option<&'a str>,
}

/// The three prompt sets `popalign prompts` writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptSets {
    /// One neutral evaluation prompt per occupation.
    pub neutral: Vec<PromptRow>,
    /// Every combination of the chosen axes per occupation, grouped by occupation.
    pub specific: Vec<PromptRow>,
    /// Every combination of the chosen axes per (occupation, scene); `base_prompt` is the neutral caption.
    pub training: Vec<PromptRow>,
}

impl Vocabulary {
    /// Parses and validates an `attributes.toml` document.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let vocabulary: Self = parse_toml(text)?;
        vocabulary.validate()?;
        Ok(vocabulary)
    }

    /// Rejects what would produce wrong or ambiguous prompts: no axes, an axis name that is not a usable
    /// placeholder or collides with another name, an axis without values, and repeated labels or words.
    pub fn validate(&self) -> Result<(), String> {
        if self.axes.is_empty() {
            return Err("the vocabulary defines no [[axis]]".into());
        }
        let mut names = HashSet::new();
        for axis in &self.axes {
            check_axis_name(&axis.name)?;
            if !names.insert(axis.name.as_str()) {
                return Err(format!("axis `{}` is defined twice", axis.name));
            }
            axis.validate()?;
        }
        Ok(())
    }

    /// The axis called `name`, if the vocabulary has one.
    pub fn axis(&self, name: &str) -> Option<&Axis> {
        self.axes.iter().find(|axis| axis.name == name)
    }

    /// The named axes in the order given (that order is the nesting of the combinations: first outermost).
    pub fn select(&self, names: &[&str]) -> Result<Vec<&Axis>, String> {
        let mut chosen: Vec<&Axis> = Vec::with_capacity(names.len());
        for &name in names {
            let axis = self.axis(name).ok_or_else(|| {
                format!(
                    "unknown axis `{name}` (the vocabulary has: {})",
                    self.axis_names().join(", ")
                )
            })?;
            if chosen.iter().any(|c| c.name == name) {
                return Err(format!("axis `{name}` is chosen twice"));
            }
            chosen.push(axis);
        }
        Ok(chosen)
    }

    fn axis_names(&self) -> Vec<&str> {
        self.axes.iter().map(|axis| axis.name.as_str()).collect()
    }
}

impl Axis {
    /// An empty axis would drop every prompt from the product; repeated labels or words would make two
    /// "different" populations identical.
    fn validate(&self) -> Result<(), String> {
        if self.values.is_empty() {
            return Err(format!("axis `{}` has no values", self.name));
        }
        let mut labels = HashSet::new();
        let mut words = HashSet::new();
        for value in &self.values {
            if value.label.trim().is_empty() || value.words.trim().is_empty() {
                return Err(format!(
                    "axis `{}`: every value needs a non-empty label and words",
                    self.name
                ));
            }
            if !labels.insert(value.label.as_str()) {
                return Err(format!(
                    "axis `{}`: duplicate label `{}`",
                    self.name, value.label
                ));
            }
            if !words.insert(value.words.as_str()) {
                return Err(format!(
                    "axis `{}`: duplicate words `{}` (two values would give the same prompts)",
                    self.name, value.words
                ));
            }
        }
        Ok(())
    }
}

/// Axis names become `{placeholders}` and CSV columns, so they must be plain identifiers and not collide.
fn check_axis_name(name: &str) -> Result<(), String> {
    if !is_identifier(name) {
        return Err(format!(
            "axis name `{name}` must be lowercase letters, digits or `_` (it is a template placeholder and a CSV column)"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!("axis name `{name}` is reserved"));
    }
    Ok(())
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Parses and validates an `occupations.toml` document (`[[occupation]]` tables with `name` and `scenes`).
/// Names and scenes are trimmed; repeated occupations (case-insensitive) and repeated scenes are errors,
/// since they would duplicate prompts and over-weight one occupation in the bias metrics.
pub fn parse_occupations(text: &str) -> Result<Vec<Occupation>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        occupation: Vec<Occupation>,
    }
    let file: File = parse_toml(text)?;
    if file.occupation.is_empty() {
        return Err("the file defines no [[occupation]]".into());
    }
    let mut seen = HashSet::new();
    let mut occupations = Vec::with_capacity(file.occupation.len());
    for occupation in file.occupation {
        let occupation = tidy_occupation(occupation)?;
        if !seen.insert(occupation.name.to_lowercase()) {
            return Err(format!("occupation `{}` is listed twice", occupation.name));
        }
        occupations.push(occupation);
    }
    Ok(occupations)
}

fn tidy_occupation(occupation: Occupation) -> Result<Occupation, String> {
    let name = occupation.name.trim().to_string();
    if name.is_empty() {
        return Err("an occupation has an empty name".into());
    }
    let mut scenes: Vec<String> = Vec::with_capacity(occupation.scenes.len());
    for scene in occupation.scenes {
        let scene = scene.trim().to_string();
        if scene.is_empty() {
            return Err(format!("occupation `{name}` has an empty scene"));
        }
        if scenes.contains(&scene) {
            return Err(format!(
                "occupation `{name}` lists the scene `{scene}` twice"
            ));
        }
        scenes.push(scene);
    }
    Ok(Occupation { name, scenes })
}

/// One subject per occupation: what evaluation prompts are about.
pub fn evaluation_subjects(occupations: &[Occupation]) -> Vec<Subject<'_>> {
    occupations
        .iter()
        .map(|o| Subject {
            occupation: &o.name,
            scene: None,
        })
        .collect()
}

/// One subject per (occupation, scene), in file order: what training prompts are about. An occupation
/// without scenes is an error rather than silently missing from training.
pub fn training_subjects(occupations: &[Occupation]) -> Result<Vec<Subject<'_>>, String> {
    let mut subjects = Vec::new();
    for occupation in occupations {
        if occupation.scenes.is_empty() {
            return Err(format!(
                "occupation `{}` has no scenes (training prompts need at least one)",
                occupation.name
            ));
        }
        subjects.extend(occupation.scenes.iter().map(|scene| Subject {
            occupation: &occupation.name,
            scene: Some(scene),
        }));
    }
    Ok(subjects)
}

/// One neutral prompt per subject; `base_prompt` is the prompt itself and no attributes are set.
pub fn neutral_prompts(
    subjects: &[Subject],
    template: &Template,
) -> Result<Vec<PromptRow>, String> {
    let rows = subjects
        .iter()
        .map(|subject| {
            let prompt = render_subject(template, subject, &[])?;
            Ok(PromptRow {
                base_prompt: prompt.clone(),
                prompt,
                attributes: BTreeMap::new(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    check_distinct(&rows)?;
    Ok(rows)
}

/// Identity-specific prompts: for each subject, one prompt per combination of the values of `axes` (the
/// intersectional product, so every population is equally represented), each pointing back to the subject's
/// neutral prompt. Rows of one subject are contiguous; the first axis varies slowest.
pub fn specific_prompts(
    subjects: &[Subject],
    neutral: &Template,
    specific: &Template,
    axes: &[&Axis],
) -> Result<Vec<PromptRow>, String> {
    if let Some(axis) = axes.iter().find(|axis| !specific.uses(&axis.name)) {
        return Err(format!(
            "axis `{}` is chosen but the template `{}` has no {{{}}}",
            axis.name,
            specific.source(),
            axis.name
        ));
    }
    let combinations = combinations(axes);
    let mut rows = Vec::with_capacity(subjects.len() * combinations.len());
    for subject in subjects {
        let base_prompt = render_subject(neutral, subject, &[])?;
        for combination in &combinations {
            rows.push(PromptRow {
                prompt: render_subject(specific, subject, combination)?,
                base_prompt: base_prompt.clone(),
                attributes: combination
                    .iter()
                    .map(|(axis, value)| (axis.name.clone(), value.label.clone()))
                    .collect(),
            });
        }
    }
    check_distinct(&rows)?;
    Ok(rows)
}

/// The cartesian product of the axes' values, first axis outermost (`[]` gives one empty combination).
pub fn combinations<'v>(axes: &[&'v Axis]) -> Vec<Vec<(&'v Axis, &'v AxisValue)>> {
    let mut product: Vec<Vec<(&Axis, &AxisValue)>> = vec![Vec::new()];
    for &axis in axes {
        product = product
            .into_iter()
            .flat_map(|prefix| {
                axis.values.iter().map(move |value| {
                    let mut combination = prefix.clone();
                    combination.push((axis, value));
                    combination
                })
            })
            .collect();
    }
    product
}

impl PromptSets {
    /// The evaluation (neutral and identity-specific) and training prompt sets for `occupations`,
    /// augmented over `axes`.
    pub fn build(
        occupations: &[Occupation],
        templates: &TemplateSet,
        axes: &[&Axis],
    ) -> Result<Self, String> {
        let evaluation = evaluation_subjects(occupations);
        let training = training_subjects(occupations)?;
        Ok(Self {
            neutral: neutral_prompts(&evaluation, &templates.evaluation.neutral)?,
            specific: specific_prompts(
                &evaluation,
                &templates.evaluation.neutral,
                &templates.evaluation.specific,
                axes,
            )?,
            training: specific_prompts(
                &training,
                &templates.training.neutral,
                &templates.training.specific,
                axes,
            )?,
        })
    }
}

/// Renders a template for one subject and one combination of attribute values.
fn render_subject(
    template: &Template,
    subject: &Subject,
    combination: &[(&Axis, &AxisValue)],
) -> Result<String, String> {
    if template.uses(SCENE) && subject.scene.is_none() {
        return Err(format!(
            "the template `{}` needs a {{{SCENE}}} but `{}` has none",
            template.source(),
            subject.occupation
        ));
    }
    let mut values: BTreeMap<&str, &str> = BTreeMap::new();
    values.insert(OCCUPATION, subject.occupation);
    if let Some(scene) = subject.scene {
        values.insert(SCENE, scene);
    }
    for (axis, value) in combination {
        values.insert(&axis.name, &value.words);
    }
    Ok(template.render(&values))
}

/// Two identical prompts would give one prompt twice the weight; it means a template drops information.
fn check_distinct(rows: &[PromptRow]) -> Result<(), String> {
    let mut seen = HashSet::with_capacity(rows.len());
    match rows.iter().find(|row| !seen.insert(row.prompt.as_str())) {
        Some(row) => Err(format!(
            "the prompt `{}` is produced twice (does the template name every placeholder it should?)",
            row.prompt
        )),
        None => Ok(()),
    }
}

/// Deserialises TOML, reducing the parser's multi-line report to `line N: message`.
fn parse_toml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|error| {
        let message = error.message().trim().replace('\n', " ");
        match error.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}: {message}")
            }
            None => message,
        }
    })
}
