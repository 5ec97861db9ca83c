//! The prompt sets of a run: built from the occupation, attribute and template documents (the built-in
//! `data/` files unless the user names others), and read and written as CSV.

use crate::artifacts::write_shared;
use crate::error::{CliError, CliResult, input, runtime};
use popalign_core::align::prompts::{
    Axis, Occupation, PromptRow, PromptSets, TemplateSet, Vocabulary, parse_occupations,
};
use std::collections::BTreeMap;
use std::path::Path;

const DEFAULT_OCCUPATIONS: &str = include_str!("../../data/occupations.toml");

pub(crate) const DEFAULT_ATTRIBUTES: &str = include_str!("../../data/attributes.toml");

const DEFAULT_TEMPLATES: &str = include_str!("../../data/templates.toml");

/// The three documents prompts are built from; `None` is the built-in default of `data/`.
pub struct PromptDocuments<'a> {
    pub occupations: Option<&'a Path>,
    pub attributes: Option<&'a Path>,
    pub templates: Option<&'a Path>,
}

impl PromptDocuments<'_> {
    /// The sets over the occupations that `choose` keeps of the occupations file, for `axes`.
    pub fn build(
        &self,
        axes: &[String],
        choose: impl FnOnce(Vec<Occupation>) -> CliResult<Vec<Occupation>>,
    ) -> CliResult<PromptSets> {
        let (occupations_name, occupations_text) =
            document(self.occupations, "occupations", DEFAULT_OCCUPATIONS)?;
        let (attributes_name, attributes_text) =
            document(self.attributes, "attributes", DEFAULT_ATTRIBUTES)?;
        let (templates_name, templates_text) =
            document(self.templates, "templates", DEFAULT_TEMPLATES)?;
        let occupations =
            parse_occupations(&occupations_text).map_err(|e| located(&occupations_name, e))?;
        let occupations = choose(occupations)?;
        let vocabulary =
            Vocabulary::from_toml(&attributes_text).map_err(|e| located(&attributes_name, e))?;
        let templates = TemplateSet::from_toml(&templates_text, &vocabulary)
            .map_err(|e| located(&templates_name, e))?;
        let axes = select_axes(&vocabulary, axes)?;
        PromptSets::build(&occupations, &templates, &axes).map_err(input)
    }
}

/// `--axes` must name at least one axis: with none, "specific" prompts would just repeat the neutral ones.
fn select_axes<'v>(vocabulary: &'v Vocabulary, names: &[String]) -> CliResult<Vec<&'v Axis>> {
    let names = chosen_axes(names);
    if names.is_empty() {
        return Err(input(
            "--axes (or [prompts] axes) must name at least one axis (e.g. race,gender)",
        ));
    }
    vocabulary
        .select(&names)
        .map_err(|e| input(format!("--axes: {e}")))
}

pub fn chosen_axes(names: &[String]) -> Vec<&str> {
    names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The text of a document: the user's file if given, else the embedded default, with a name for messages.
fn document(
    path: Option<&Path>,
    what: &str,
    embedded: &'static str,
) -> CliResult<(String, String)> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                input(format!(
                    "{}: cannot read the {what} file: {e}",
                    path.display()
                ))
            })?;
            Ok((path.display().to_string(), text))
        }
        None => Ok((format!("built-in data/{what}.toml"), embedded.to_string())),
    }
}

fn located(name: &str, message: String) -> CliError {
    input(format!("{name}: {message}"))
}

/// Writes rows with header `prompt`, plus `base_prompt` and one column per axis when `axes` is not empty,
/// atomically, once for all shards of a run ([`write_shared`]).
pub fn write_prompt_csv(path: &Path, rows: &[PromptRow], axes: &[&str]) -> CliResult {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut write = || -> csv::Result<()> {
        writer.write_record(header(axes))?;
        rows.iter()
            .try_for_each(|row| writer.write_record(record(row, axes)))
    };
    write().map_err(|e| runtime(path, e))?;
    let bytes = writer.into_inner().map_err(|e| runtime(path, e))?;
    write_shared(path, &bytes)
}

fn header<'a>(axes: &[&'a str]) -> Vec<&'a str> {
    if axes.is_empty() {
        return vec!["prompt"];
    }
    let mut columns = vec!["prompt", "base_prompt"];
    columns.extend_from_slice(axes);
    columns
}

fn record<'r>(row: &'r PromptRow, axes: &[&str]) -> Vec<&'r str> {
    if axes.is_empty() {
        return vec![row.prompt.as_str()];
    }
    let mut fields = vec![row.prompt.as_str(), row.base_prompt.as_str()];
    fields.extend(
        axes.iter()
            .map(|axis| row.attributes.get(*axis).map_or("", String::as_str)),
    );
    fields
}

/// Reads a prompt CSV (ours, or one with a `Prompt` column such as the official PopAlign files).
///
/// The `prompt` column (any case) is required and no prompt may be blank; `base_prompt` defaults to the
/// prompt; every other column is an attribute (blank cells skipped). Quoted fields may hold commas, quotes
/// and newlines. Long prompts are kept whole: the tokenizer truncates at CLIP's 77 tokens. Errors name the
/// file and the line.
pub fn read_prompt_csv(path: &Path) -> Result<Vec<PromptRow>, CliError> {
    let bytes = std::fs::read(path).map_err(|e| input(format!("{}: {e}", path.display())))?;
    let at = |line: u64, message: String| input(format!("{}:{line}: {message}", path.display()));
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(input(format!(
            "{}: the file is empty (expected a header with a `prompt` column)",
            path.display()
        )));
    }
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes.as_slice());
    let headers = reader
        .headers()
        .map_err(|e| at(1, csv_message(&e)))?
        .clone();
    let columns = Columns::find(&headers).ok_or_else(|| {
        at(
            1,
            format!(
                "no `prompt` column (found: {})",
                headers.iter().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| at(line_of(&e), csv_message(&e)))?;
        let line = record.position().map_or(0, |p| p.line());
        rows.push(columns.row(&record).map_err(|m| at(line, m))?);
    }
    if rows.is_empty() {
        return Err(at(1, "a header but no prompts".into()));
    }
    Ok(rows)
}

/// Where the prompt, the base prompt and the attributes sit in a record.
struct Columns {
    prompt: usize,
    base_prompt: Option<usize>,
    attributes: Vec<(usize, String)>,
}

impl Columns {
    fn find(headers: &csv::StringRecord) -> Option<Self> {
        let named = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
        };
        let prompt = named("prompt")?;
        let base_prompt = named("base_prompt");
        let attributes = headers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != prompt && Some(*i) != base_prompt)
            .map(|(i, h)| (i, h.trim().to_string()))
            .collect();
        Some(Self {
            prompt,
            base_prompt,
            attributes,
        })
    }

    fn row(&self, record: &csv::StringRecord) -> Result<PromptRow, String> {
        let prompt = record.get(self.prompt).unwrap_or_default();
        if prompt.trim().is_empty() {
            return Err("empty prompt".into());
        }
        let base_prompt = self
            .base_prompt
            .and_then(|i| record.get(i))
            .filter(|b| !b.trim().is_empty())
            .unwrap_or(prompt);
        let attributes: BTreeMap<String, String> = self
            .attributes
            .iter()
            .filter_map(|(i, name)| {
                let value = record.get(*i)?.trim();
                (!value.is_empty()).then(|| (name.clone(), value.to_string()))
            })
            .collect();
        Ok(PromptRow {
            prompt: prompt.to_string(),
            base_prompt: base_prompt.to_string(),
            attributes,
        })
    }
}

/// The line a csv error points at (the header's line when it has no position).
fn line_of(error: &csv::Error) -> u64 {
    error.position().map_or(1, |p| p.line())
}

/// The csv crate's message without its own position prefix (we print `file:line:`).
fn csv_message(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("malformed row: {len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "the row is not valid UTF-8".to_string(),
        _ => error.to_string().replace('\n', " "),
    }
}
