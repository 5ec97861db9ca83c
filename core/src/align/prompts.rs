//! Prompt sets and demographic augmentation (docs/design.md §1 `prompts/`, §6).
//!
//! PopAlign measures bias on neutral prompts ("a photo of a doctor"), checks identity-specific accuracy on
//! prompts that name every combination of the chosen attributes ("a photo of an Asian female doctor"), and
//! trains on neutral captions whose preferred images come from a balanced population of identity-specific
//! prompts. This module builds all of them from three small TOML documents (occupations, attribute
//! vocabularies, templates). It parses from `&str` and touches no files, so the browser build can use it too;
//! the CLI reads the files and writes the CSVs.

use std::collections::{BTreeMap, HashSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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

/// The four templates of `templates.toml`.
#[derive(Clone, Debug)]
pub struct TemplateSet {
    pub evaluation: TemplatePair,
    pub training: TemplatePair,
}

/// A neutral template and its identity-specific counterpart.
#[derive(Clone, Debug)]
pub struct TemplatePair {
    pub neutral: Template,
    pub specific: Template,
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

impl TemplateSet {
    /// Parses `templates.toml` (`[evaluation]` and `[training]`, each with `neutral` and `specific`) and checks
    /// that each template can produce distinct prompts: every one names {occupation}, training templates name
    /// {scene} and evaluation ones do not, and neutral templates name no axis.
    pub fn from_toml(text: &str, vocabulary: &Vocabulary) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Pair {
            neutral: String,
            specific: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            evaluation: Pair,
            training: Pair,
        }
        let file: File = parse_toml(text)?;
        let pair = |section: &str, pair: &Pair, scene: bool| -> Result<TemplatePair, String> {
            let neutral = Template::parse(&pair.neutral, vocabulary)
                .and_then(|t| t.check_role(vocabulary, scene, false).map(|()| t))
                .map_err(|e| format!("[{section}] neutral: {e}"))?;
            let specific = Template::parse(&pair.specific, vocabulary)
                .and_then(|t| t.check_role(vocabulary, scene, true).map(|()| t))
                .map_err(|e| format!("[{section}] specific: {e}"))?;
            Ok(TemplatePair { neutral, specific })
        };
        Ok(Self {
            evaluation: pair("evaluation", &file.evaluation, false)?,
            training: pair("training", &file.training, true)?,
        })
    }
}

/// A prompt template such as `"a photo of a {race} {gender} {occupation}"`.
///
/// Placeholders without a value render as nothing, together with their space, so one identity-specific
/// template serves any subset of the axes. A literal "a"/"an" directly before a placeholder is an article
/// slot: it becomes whichever article the first rendered word after it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    words: Vec<TemplateWord>,
}

/// One whitespace-separated word of a template, split into text and placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TemplateWord {
    pieces: Vec<Piece>,
    /// `Some(capitalised)` when this word is an article slot.
    article: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Slot(String),
}

impl Template {
    /// Parses `source`, accepting only {occupation}, {scene} and the vocabulary's axis names.
    pub fn parse(source: &str, vocabulary: &Vocabulary) -> Result<Self, String> {
        let mut words: Vec<TemplateWord> = Vec::new();
        for word in source.split_whitespace() {
            let pieces = split_placeholders(word)?;
            for piece in &pieces {
                if let Piece::Slot(name) = piece {
                    check_placeholder(name, vocabulary)?;
                }
            }
            words.push(TemplateWord {
                pieces,
                article: None,
            });
        }
        if words.is_empty() {
            return Err("the template is empty".into());
        }
        mark_article_slots(&mut words);
        Ok(Self {
            source: source.to_string(),
            words,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template has a `{name}` placeholder.
    pub fn uses(&self, name: &str) -> bool {
        self.words
            .iter()
            .flat_map(|w| &w.pieces)
            .any(|p| matches!(p, Piece::Slot(s) if s == name))
    }

    /// Fills the placeholders from `values` (a missing one renders as nothing) and fixes the article slots.
    pub fn render(&self, values: &BTreeMap<&str, &str>) -> String {
        let mut rendered: Vec<(String, Option<bool>)> = Vec::with_capacity(self.words.len());
        for word in &self.words {
            let text: String = word
                .pieces
                .iter()
                .map(|piece| match piece {
                    Piece::Text(text) => text.as_str(),
                    Piece::Slot(name) => values.get(name.as_str()).copied().unwrap_or(""),
                })
                .collect();
            let text = text.trim();
            if !text.is_empty() {
                rendered.push((text.to_string(), word.article));
            }
        }
        join_with_articles(&rendered)
    }

    /// Checks the placeholders a template needs for its role: {occupation} always, {scene} exactly in training
    /// templates, axes only in identity-specific ones.
    fn check_role(
        &self,
        vocabulary: &Vocabulary,
        scene: bool,
        specific: bool,
    ) -> Result<(), String> {
        if !self.uses(OCCUPATION) {
            return Err(format!("`{}` has no {{{OCCUPATION}}}", self.source));
        }
        if self.uses(SCENE) != scene {
            let verb = if scene { "needs" } else { "cannot use" };
            return Err(format!(
                "`{}`: this template {verb} {{{SCENE}}}",
                self.source
            ));
        }
        let axes: Vec<&str> = vocabulary
            .axes
            .iter()
            .map(|axis| axis.name.as_str())
            .filter(|name| self.uses(name))
            .collect();
        if !specific && !axes.is_empty() {
            return Err(format!(
                "`{}`: a neutral template names no attribute, found {{{}}}",
                self.source, axes[0]
            ));
        }
        Ok(())
    }
}

/// Splits one template word into literal text and `{name}` placeholders.
fn split_placeholders(word: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = word;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!("unmatched `}}` in `{word}`"));
        }
        let close = rest[open..]
            .find('}')
            .map(|i| open + i)
            .ok_or_else(|| format!("unmatched `{{` in `{word}`"))?;
        let name = &rest[open + 1..close];
        if name.contains('{') {
            return Err(format!("unmatched `{{` in `{word}`"));
        }
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_string()));
        }
        pieces.push(Piece::Slot(name.to_string()));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(pieces)
}

fn check_placeholder(name: &str, vocabulary: &Vocabulary) -> Result<(), String> {
    if name == OCCUPATION || name == SCENE || vocabulary.axis(name).is_some() {
        return Ok(());
    }
    let mut known = vec![OCCUPATION, SCENE];
    known.extend(vocabulary.axis_names());
    Err(format!(
        "unknown placeholder {{{name}}} (known: {})",
        known.join(", ")
    ))
}

/// Marks each literal "a"/"an" that directly precedes a placeholder as an article slot.
fn mark_article_slots(words: &mut [TemplateWord]) {
    for i in 0..words.len().saturating_sub(1) {
        let next_is_slot = matches!(words[i + 1].pieces.first(), Some(Piece::Slot(_)));
        if let [Piece::Text(text)] = words[i].pieces.as_slice()
            && next_is_slot
            && matches!(text.to_lowercase().as_str(), "a" | "an")
        {
            words[i].article = Some(text.starts_with('A'));
        }
    }
}

/// Joins rendered words, choosing each article slot's form from the word that follows it.
fn join_with_articles(rendered: &[(String, Option<bool>)]) -> String {
    let mut out: Vec<String> = Vec::with_capacity(rendered.len());
    for (i, (text, article)) in rendered.iter().enumerate() {
        let next = rendered
            .get(i + 1)
            .and_then(|(t, _)| t.split_whitespace().next());
        match (article, next) {
            (Some(capitalised), Some(next)) => {
                let article = indefinite_article(next);
                out.push(if *capitalised {
                    capitalise(article)
                } else {
                    article.to_string()
                });
            }
            _ => out.push(text.clone()),
        }
    }
    out.join(" ")
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// "a" or "an" for the word that follows, by its first sound: vowels take "an" except where they sound like
/// a consonant ("a university", "a European", "a one-off"); a silent h takes "an" ("an hour"); an acronym is
/// read letter by letter ("an HR manager", "a UX designer"). A heuristic for prompt text, not a dictionary.
pub fn indefinite_article(word: &str) -> &'static str {
    let word = word.trim_start_matches(|c: char| !c.is_alphanumeric());
    let Some(first) = word.chars().next() else {
        return "a";
    };
    if is_acronym(word) {
        return if "AEFHILMNORSX".contains(first) {
            "an"
        } else {
            "a"
        };
    }
    if first == '8' {
        return "an";
    }
    let lower = word.to_lowercase();
    const SILENT_H: [&str; 5] = ["hour", "honest", "honor", "honour", "heir"];
    const VOWEL_BUT_CONSONANT_SOUND: [&str; 12] = [
        "uni", "use", "usu", "uti", "ura", "ure", "uri", "uro", "eu", "ewe", "one", "once",
    ];
    const UN_PREFIXED: [&str; 3] = ["unin", "unim", "unid"];
    if SILENT_H.iter().any(|p| lower.starts_with(p)) {
        return "an";
    }
    if UN_PREFIXED.iter().any(|p| lower.starts_with(p)) {
        return "an";
    }
    if VOWEL_BUT_CONSONANT_SOUND
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return "a";
    }
    if lower.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Two or more leading capitals ("HR", "UX", "CEO"): the word is spelled out.
fn is_acronym(word: &str) -> bool {
    let letters: Vec<char> = word.chars().take_while(|c| c.is_alphanumeric()).collect();
    letters.len() >= 2
        && letters
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
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
