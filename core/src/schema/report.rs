//! The report schema (`report/report.json`): what `popalign report` writes and the browser explorer reads.
//!
//! Versioned by `schema_version`; a reader refuses a version it does not know instead of guessing. Every
//! string in it (prompts above all) is data to show as text, never markup.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::eval::classify::kind::ClassifierKind;
use crate::eval::metrics::bias::AxisSummary;

pub const SCHEMA_VERSION: u32 = 1;

/// One model's evaluation (`eval/<model>/summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSummary {
    pub model: String,
    pub classifier: String,
    pub axes: BTreeMap<String, AxisSummary>,
    /// The evaluation's first quality metric (the toy world's occupation accuracy, or the first of
    /// `run.toml`'s `[evaluate] metrics`).
    pub quality: QualitySummary,
    /// Every further metric of `[evaluate] metrics`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_quality: Vec<QualitySummary>,
}

impl ModelSummary {
    /// Every quality metric, the first one first.
    pub fn qualities(&self) -> impl Iterator<Item = &QualitySummary> {
        std::iter::once(&self.quality).chain(&self.more_quality)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QualitySummary {
    pub scorer: String,
    pub n_images: usize,
    pub mean: f64,
    pub median: f64,
    /// Percentile bootstrap over images (1000 resamples, 95%).
    pub ci: [f64; 2],
}

/// One evaluation slot: a prompt and a starting noise, drawn by every model of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSlot {
    pub prompt: String,
    /// The image's file name, the same in every model's folder (same prompt, same noise).
    pub name: String,
    /// Per model, in the order of `Report::models`: the thumbnail's path inside the report folder and
    /// the predicted class per axis (absent when no face was found or the model has no such image).
    pub models: Vec<SlotImage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotImage {
    pub thumbnail: Option<String>,
    pub face_found: bool,
    pub predicted: BTreeMap<String, String>,
    /// Per axis, the classifier's probabilities in the order of the axis's classes (what the browser's
    /// re-classification is compared with).
    #[serde(default)]
    pub probabilities: BTreeMap<String, Vec<f64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub popalign_version: String,
    pub config_hash: String,
    /// The run's configuration as the run wrote it (`run.toml`, as JSON).
    pub config: serde_json::Value,
    pub objective: String,
    pub models: Vec<ModelSummary>,
    /// The comparison table `popalign report` printed.
    pub table: String,
    pub images: Vec<ImageSlot>,
    /// Per trained model, its loss and implicit accuracy per step (`train/metrics.jsonl` of its run).
    #[serde(default)]
    pub training: Vec<TrainingCurve>,
    /// Classifiers whose weights the folder carries, so the explorer can run them on a dropped image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried_classifiers: Vec<CarriedClassifier>,
    /// Grids sampled during training (`[train] sample_every`), per trained model and step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<SampleGrid>,
}

/// The images of one training-time sample grid: the same prompts and starting noises at every step, so
/// one cell across the grids of a model shows that image change as training goes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleGrid {
    /// The trained model's label in `models`.
    pub model: String,
    /// Training steps done when sampled (counted across rounds).
    pub step: usize,
    pub cells: Vec<SampleCell>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleCell {
    pub prompt: String,
    /// The image's number among its prompt's.
    pub index: usize,
    /// Relative to the report folder; `None` when the image could not be read.
    pub thumbnail: Option<String>,
}

/// A classifier shipped inside the report folder (`popalign report --face-weights DIR`, `--clip-weights
/// DIR`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarriedClassifier {
    /// [`ClassifierKind::Faces`]: MTCNN, then the dlib gender network (and the age network where `files`
    /// has it) on the largest face, as `popalign classify --classifier faces` runs them.
    /// [`ClassifierKind::Clip`]: the zero-shot classifier of `popalign classify --classifier clip`, as
    /// `classify::clip_zero_shot` carries it. The others are not carried.
    pub kind: ClassifierKind,
    /// The weight files, relative to the report folder (`classifiers/faces/mtcnn.safetensors`, …). Each
    /// also exists as `<file>.js`, a classic script that stores its bytes as base64 in
    /// `window.POPALIGN_WEIGHTS[<file>]`, for pages opened from disk, which may not fetch.
    pub files: Vec<String>,
    /// The axes it reads, classes in output order.
    pub axes: Vec<crate::eval::classify::AxisSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingCurve {
    /// The trained model's label in `models`.
    pub model: String,
    pub step: Vec<usize>,
    pub loss: Vec<f64>,
    pub implicit_accuracy: Vec<f64>,
}

impl Report {
    /// Parses `report.json`, refusing other schema versions with a message that names both.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not a report: {e}"))?;
        let version = value.get("schema_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(SCHEMA_VERSION)) {
            return Err(format!(
                "report schema_version {} is not the supported {SCHEMA_VERSION}",
                version.map_or("missing".into(), |v| v.to_string())
            ));
        }
        serde_json::from_value(value).map_err(|e| format!("malformed report: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_refuses_other_versions_and_names_them() {
        let err = Report::parse(r#"{"schema_version": 7}"#).unwrap_err();
        assert!(
            err.contains("7") && err.contains(&SCHEMA_VERSION.to_string()),
            "{err}"
        );
        let err = Report::parse(r#"{"objective": "x"}"#).unwrap_err();
        assert!(err.contains("missing"), "{err}");
        let err = Report::parse("{not json").unwrap_err();
        assert!(err.starts_with("not a report"), "{err}");
        let err = Report::parse(r#"{"schema_version": 1}"#).unwrap_err();
        assert!(err.starts_with("malformed report"), "{err}");
    }
}
