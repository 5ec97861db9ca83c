//! The bias metrics of classified image sets (docs/design.md §6): one `SetSummary` per attribute CSV.

use crate::backend::{Backend as B, device};
use crate::classify::attributes::{AttributeRow, read_rows};
use crate::error::{CliResult, input};
use crate::evaluate::paper_table::DiscrepancyMode;
use crate::evaluate::quality::Comparison;
use crate::prompt_sets::DEFAULT_ATTRIBUTES;
use popalign_core::align::prompts::Vocabulary;
use popalign_core::eval::classify::kind::ClassifierKind;
use popalign_core::eval::classify::{AttributeClassifier, AxisSpec};
use popalign_core::eval::metrics::bias::{
    AxisSummary, BiasOptions, IdentityAccuracy, Observation, identity_accuracy,
    intersectional_classes, intersectional_observations, intersectional_target, summarize_axis,
};
use popalign_core::eval::metrics::quality::QualitySummary;
use popalign_core::toy::{TOY, ToyClassifier};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version of `summary.json`'s layout written by this command.
pub const SUMMARY_VERSION: u32 = 1;

/// `summary.json`.
#[derive(Serialize)]
pub struct EvaluationSummary {
    pub version: u32,
    pub options: BiasOptions,
    /// Which discrepancy the paper table shows (both are in every axis).
    pub discrepancy_mode: DiscrepancyMode,
    pub sets: Vec<SetSummary>,
    /// With `--baseline`: every other set against it, image by image (quality metrics).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub comparisons: Vec<Comparison>,
}

/// One image set (one CSV).
#[derive(Serialize)]
pub struct SetSummary {
    pub name: String,
    pub attributes: PathBuf,
    pub classifier: String,
    /// Rows in the CSV, readable or not.
    pub n_rows: usize,
    /// Rows whose image could not be read; left out of every axis.
    pub n_unreadable: usize,
    /// How images with several faces were counted.
    pub faces: FaceCounting,
    /// Per axis (and `a|b` per intersection).
    pub axes: BTreeMap<String, AxisSummary>,
    /// Per axis, over the images whose prompt names exactly one of its classes (see [`named_class`]).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub identity_accuracy: BTreeMap<String, IdentityAccuracy>,
    /// Per quality metric (`--metrics`): mean, median and interval of the mean over the readable images.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub quality: BTreeMap<String, QualitySummary>,
}

/// How a set's images with several faces entered the counts.
#[derive(Serialize)]
pub struct FaceCounting {
    /// `image`: one row per image, reading its largest face (the official convention); `face`: a row per
    /// detected face (`classify --all-faces`), so an image with k faces counts k times.
    pub per: &'static str,
    /// Distinct image files.
    pub n_images: usize,
    /// Images in which the detector found more than one face (known where the CSV has the face columns).
    pub n_images_with_several_faces: usize,
}

impl FaceCounting {
    fn of(rows: &[AttributeRow]) -> Self {
        let n_images = rows
            .iter()
            .map(|r| r.file.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len();
        let several = rows
            .iter()
            .filter_map(|r| r.detection)
            .filter(|d| d.index == 0 && d.count > 1)
            .count();
        Self {
            per: if rows.len() > n_images {
                "face"
            } else {
                "image"
            },
            n_images,
            n_images_with_several_faces: several,
        }
    }

    /// The table's line, when there is something to say.
    fn describe(&self, set: &str, n_rows: usize) -> Option<String> {
        match (self.per, self.n_images_with_several_faces) {
            ("face", k) => Some(format!(
                "{set:<16} counted per face: {n_rows} rows from {} images ({k} with several faces)",
                self.n_images
            )),
            (_, 0) => None,
            (_, k) => Some(format!(
                "{set:<16} {k} image(s) showed several faces; each counted once, by its largest"
            )),
        }
    }
}

pub fn read_vocabulary(path: Option<&Path>) -> CliResult<Vocabulary> {
    let text = match path {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| input(format!("{}: {e}", path.display())))?
        }
        None => DEFAULT_ATTRIBUTES.to_string(),
    };
    Vocabulary::from_toml(&text).map_err(|e| match path {
        Some(path) => input(format!("{}: {e}", path.display())),
        None => input(e),
    })
}

/// `--target`: axis → (class label → share).
pub fn read_targets(path: Option<&Path>) -> CliResult<BTreeMap<String, BTreeMap<String, f64>>> {
    let Some(path) = path else {
        return Ok(BTreeMap::new());
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| input(format!("{}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| input(format!("{}: {e}", path.display())))
}

/// The target vector of `axis` in class order: `--target`'s shares, or `None` (uniform).
fn target_of(
    axis: &AxisSpec,
    targets: &BTreeMap<String, BTreeMap<String, f64>>,
) -> CliResult<Option<Vec<f64>>> {
    let Some(shares) = targets.get(&axis.name) else {
        return Ok(None);
    };
    if let Some(unknown) = shares.keys().find(|k| !axis.classes.contains(k)) {
        return Err(input(format!(
            "--target: `{unknown}` is not a class of axis {} ({})",
            axis.name,
            axis.classes.join(", ")
        )));
    }
    Ok(Some(
        axis.classes
            .iter()
            .map(|c| shares.get(c).copied().unwrap_or(0.0))
            .collect(),
    ))
}

/// Axis names from the CSV header: the column before each `<axis>_p`.
fn axis_names(csv: &Path) -> CliResult<Vec<String>> {
    let mut reader = csv::Reader::from_path(csv).map_err(|e| input(e.to_string()))?;
    let headers = reader.headers().map_err(|e| input(e.to_string()))?;
    Ok(headers
        .iter()
        .filter_map(|h| h.strip_suffix("_probs"))
        .map(String::from)
        .collect())
}

/// The class lists of `names`: the toy world's for its classifier, the vocabulary's otherwise.
fn axis_specs(
    names: &[String],
    classifier: &str,
    vocabulary: &Vocabulary,
) -> CliResult<Vec<AxisSpec>> {
    let known: Vec<AxisSpec> =
        if ClassifierKind::of_recorded_name(classifier) == Some(ClassifierKind::Toy) {
            ToyClassifier::<B>::new(&TOY, &device()).axes()
        } else {
            vocabulary
                .axes
                .iter()
                .map(|a| AxisSpec {
                    name: a.name.clone(),
                    classes: a.values.iter().map(|v| v.label.clone()).collect(),
                })
                .collect()
        };
    names
        .iter()
        .map(|name| {
            known.iter().find(|a| &a.name == name).cloned().ok_or_else(|| {
                input(format!(
                    "axis `{name}` has no class list (classifier {classifier}); give one with --vocabulary"
                ))
            })
        })
        .collect()
}

/// The one classifier that wrote the readable rows; mixing classifiers in one set is an error.
fn single_classifier(rows: &[AttributeRow]) -> CliResult<String> {
    let mut names: Vec<&str> = rows
        .iter()
        .filter(|r| r.error.is_empty())
        .map(|r| r.classifier.as_str())
        .collect();
    names.sort();
    names.dedup();
    match names[..] {
        [] => Ok(String::new()),
        [one] => Ok(one.to_string()),
        _ => Err(input(format!(
            "rows from several classifiers ({}); evaluate each on its own",
            names.join(", ")
        ))),
    }
}

pub fn evaluate_set(
    csv: &Path,
    vocabulary: &Vocabulary,
    targets: &BTreeMap<String, BTreeMap<String, f64>>,
    options: &BiasOptions,
    intersections: &[(String, String)],
) -> CliResult<(SetSummary, Vec<AttributeRow>)> {
    let names = axis_names(csv)?;
    if names.is_empty() {
        return Err(input("no `<axis>_probs` column: not an attribute CSV"));
    }
    // `read_rows` checks the header by axis names only; the classes follow from the classifier.
    let unnamed: Vec<AxisSpec> = names
        .iter()
        .map(|n| AxisSpec {
            name: n.clone(),
            classes: Vec::new(),
        })
        .collect();
    let rows = read_rows(csv, &unnamed)?;
    let classifier = single_classifier(&rows)?;
    let axes = axis_specs(&names, &classifier, vocabulary)?;
    let readable: Vec<&AttributeRow> = rows.iter().filter(|r| r.error.is_empty()).collect();
    let mut summaries = BTreeMap::new();
    let mut observations = BTreeMap::new();
    let mut accuracies = BTreeMap::new();
    for (a, axis) in axes.iter().enumerate() {
        let obs = axis_observations(&readable, a, axis)?;
        if let Some(accuracy) = named_class_accuracy(axis, &obs, vocabulary)? {
            accuracies.insert(axis.name.clone(), accuracy);
        }
        let axis_options = BiasOptions {
            target: target_of(axis, targets)?,
            ..options.clone()
        };
        let summary = summarize_axis(&axis.classes, &obs, &axis_options)
            .map_err(|e| input(format!("axis {}: {e}", axis.name)))?;
        summaries.insert(axis.name.clone(), summary);
        observations.insert(axis.name.clone(), (axis.clone(), obs, axis_options.target));
    }
    for (a, b) in intersections {
        let pick = |name: &String| {
            observations.get(name).ok_or_else(|| {
                input(format!(
                    "--intersection: no axis `{name}` (the CSV has {})",
                    names.join(", ")
                ))
            })
        };
        let ((axis_a, obs_a, target_a), (axis_b, obs_b, target_b)) = (pick(a)?, pick(b)?);
        let uniform = |k: usize| vec![1.0 / k as f64; k];
        let target = intersectional_target(
            &target_a
                .clone()
                .unwrap_or_else(|| uniform(axis_a.classes.len())),
            &target_b
                .clone()
                .unwrap_or_else(|| uniform(axis_b.classes.len())),
        )
        .map_err(input)?;
        let joint =
            intersectional_observations(axis_a.classes.len(), obs_a, axis_b.classes.len(), obs_b)
                .map_err(input)?;
        let classes = intersectional_classes(&axis_a.classes, &axis_b.classes).map_err(input)?;
        let joint_options = BiasOptions {
            target: Some(target),
            ..options.clone()
        };
        let summary = summarize_axis(&classes, &joint, &joint_options).map_err(input)?;
        summaries.insert(format!("{a}|{b}"), summary);
    }
    let summary = SetSummary {
        name: csv
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        attributes: csv.to_path_buf(),
        classifier,
        n_rows: rows.len(),
        n_unreadable: rows.len() - readable.len(),
        faces: FaceCounting::of(&rows),
        axes: summaries,
        identity_accuracy: accuracies,
        quality: BTreeMap::new(),
    };
    Ok((summary, rows))
}

/// Identity-specific accuracy of `axis` over the observations whose prompt names one of its classes;
/// `None` when no prompt does (neutral prompts).
fn named_class_accuracy(
    axis: &AxisSpec,
    observations: &[Observation],
    vocabulary: &Vocabulary,
) -> CliResult<Option<IdentityAccuracy>> {
    let phrases: Vec<Vec<String>> = axis
        .classes
        .iter()
        .map(|label| {
            let words = vocabulary
                .axis(&axis.name)
                .and_then(|a| a.values.iter().find(|v| &v.label == label))
                .map(|v| v.words.clone());
            std::iter::once(label.clone()).chain(words).collect()
        })
        .collect();
    let (named, expected): (Vec<Observation>, Vec<usize>) = observations
        .iter()
        .filter_map(|o| named_class(&o.prompt, &phrases).map(|k| (o.clone(), k)))
        .unzip();
    if named.is_empty() {
        return Ok(None);
    }
    identity_accuracy(axis.classes.len(), &named, &expected)
        .map(Some)
        .map_err(|e| input(format!("axis {}: {e}", axis.name)))
}

/// The class whose label or prompt words occur in `prompt` as whole words (case-insensitive), when exactly
/// one class does: "a photo of a female doctor" names `female`, not `male`.
pub fn named_class(prompt: &str, phrases: &[Vec<String>]) -> Option<usize> {
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let prompt = words(prompt);
    let occurs = |phrase: &String| {
        let phrase = words(phrase);
        !phrase.is_empty() && prompt.windows(phrase.len()).any(|w| w == phrase.as_slice())
    };
    let mut named = phrases
        .iter()
        .enumerate()
        .filter(|(_, p)| p.iter().any(occurs))
        .map(|(k, _)| k);
    match (named.next(), named.next()) {
        (Some(k), None) => Some(k),
        _ => None,
    }
}

/// One observation per readable row on axis `a`, checking that its probabilities fit the class list.
fn axis_observations(
    rows: &[&AttributeRow],
    a: usize,
    axis: &AxisSpec,
) -> CliResult<Vec<Observation>> {
    rows.iter()
        .map(|row| {
            let probabilities = &row.axes[a].2;
            if row.face_found && probabilities.len() != axis.classes.len() {
                return Err(input(format!(
                    "{}: {} probabilities on axis {}, whose classes are {} ({})",
                    row.file,
                    probabilities.len(),
                    axis.name,
                    axis.classes.len(),
                    axis.classes.join(", ")
                )));
            }
            Ok(Observation {
                prompt: row.prompt.clone(),
                probabilities: row.face_found.then(|| probabilities.clone()),
            })
        })
        .collect()
}

/// The readable table: one line per set and axis.
pub fn table(summary: &EvaluationSummary) -> String {
    let mut lines = vec![format!(
        "{:<16} {:<14} {:>6} {:>6} {:>6} {:>8} {:>19} {:>8} {:>7} {:>6} {:>8}",
        "set",
        "axis",
        "images",
        "faces",
        "rate",
        "D",
        "D 95% CI (images)",
        "D (off.)",
        "KL",
        "TV",
        "low conf"
    )];
    let number = |v: Option<f64>, digits: usize| match v {
        Some(v) => format!("{v:.digits$}"),
        None => "-".into(),
    };
    for set in &summary.sets {
        for (name, axis) in &set.axes {
            let ci = axis
                .ci_images
                .map(|[lo, hi]| format!("[{lo:.3}, {hi:.3}]"))
                .unwrap_or_else(|| "-".into());
            lines.push(format!(
                "{:<16} {:<14} {:>6} {:>6} {:>6} {:>8} {:>19} {:>8} {:>7} {:>6} {:>8}",
                set.name,
                name,
                axis.n_images,
                axis.n_faces,
                number(axis.face_found_rate, 2),
                number(axis.discrepancy, 3),
                ci,
                number(axis.discrepancy_official, 3),
                number(axis.kl.map(|k| k.value()), 3),
                number(axis.tv, 3),
                number(axis.low_confidence_share, 2),
            ));
        }
        for (name, accuracy) in &set.identity_accuracy {
            lines.push(format!(
                "{:<16} {:<14} identity accuracy {} ({} of {} faces whose prompt names a class)",
                set.name,
                name,
                number(accuracy.accuracy, 3),
                accuracy.n_correct,
                accuracy.n_faces
            ));
        }
        for (metric, q) in &set.quality {
            let ci =
                q.ci.map(|[lo, hi]| format!(" [{lo:.4}, {hi:.4}]"))
                    .unwrap_or_default();
            lines.push(format!(
                "{:<16} {:<14} mean {:.4}{ci}, median {:.4} ({} images)",
                set.name, metric, q.mean, q.median, q.n
            ));
        }
        lines.extend(set.faces.describe(&set.name, set.n_rows));
        if set.n_unreadable > 0 {
            lines.push(format!(
                "{:<16} {} unreadable image(s) left out",
                set.name, set.n_unreadable
            ));
        }
    }
    for c in &summary.comparisons {
        for (metric, d) in &c.metrics {
            let ci =
                d.ci.map(|[lo, hi]| format!(" [{lo:+.4}, {hi:+.4}]"))
                    .unwrap_or_default();
            lines.push(format!(
                "{} − {}: {metric} {:+.4}{ci} over {} paired images",
                c.set, c.baseline, d.mean_difference, d.n_pairs
            ));
        }
    }
    lines.join("\n")
}
