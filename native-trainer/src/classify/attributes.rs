//! Classifying an image set: `attributes/<set>.csv`, one row per manifest entry, in manifest order.
//!
//! Columns: `file, prompt, base_prompt, face_found, <axis>, <axis>_p, <axis>_probs, …, classifier, error,
//! faces, face, face_box, face_score` (`<axis>_probs` is every class probability, space-separated, in the
//! classifier's class order; the last four, for face classifiers, are how many faces the image had, which one
//! the row reads (0: the largest), its box `x1 y1 x2 y2` in pixels of the decoded image, and the detector's
//! score), a superset of the official `race_gender.csv`. CSVs written before the face columns existed are
//! read as well. With `each_face` an image gets one row per face, in the detector's order. An unreadable image is a row with `face_found = false`
//! and `error` set, never a crash. The CSV is rewritten atomically after every batch, and rows already
//! present are kept, so a killed run resumes where it stopped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use popalign_core::eval::classify::{
    AttributeClassifier, AxisSpec, FaceDetection, argmax, decode_unit_rgb,
};
use serde::{Deserialize, Serialize};

use crate::artifacts::write_atomic;
use crate::backend::{Backend as B, device};
use crate::error::runtime;
use crate::error::{CliError, CliResult};
use crate::stages::images::{ManifestEntry, read_manifest};

/// One row of `attributes/<set>.csv`, axis columns flattened in by name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttributeRow {
    pub file: String,
    pub prompt: String,
    pub base_prompt: String,
    pub face_found: bool,
    /// Per axis: (predicted label, its probability, all probabilities).
    pub axes: Vec<(String, f64, Vec<f64>)>,
    pub classifier: String,
    pub error: String,
    /// The face this row reads, for classifiers with a detector.
    pub detection: Option<FaceDetection>,
}

pub fn classify_set(
    classifier: &dyn AttributeClassifier<B>,
    run: &Path,
    set_dir: &str,
    csv_path: &Path,
    batch_size: usize,
) -> CliResult<Vec<AttributeRow>> {
    let entries: Vec<Entry> = read_manifest(&run.join(set_dir))?
        .into_iter()
        .map(|m| Entry::recorded(run, m))
        .collect();
    classify_entries(classifier, &entries, csv_path, batch_size, false, &|_| ())
}

/// One image to classify: where it is, the name its row carries, and its prompts (empty when unknown).
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub file: String,
    pub prompt: String,
    pub base_prompt: String,
}

impl Entry {
    /// The image a manifest line of the run `run` records.
    pub fn recorded(run: &Path, m: ManifestEntry) -> Self {
        Entry {
            path: run.join(&m.file),
            file: m.file,
            prompt: m.job.prompt,
            base_prompt: m.job.base_prompt,
        }
    }
}

/// Classifies `entries` into `csv_path`, one row per entry in entry order. Rows already in the CSV
/// (same file) are kept and not redone; rows of files no longer listed are dropped. `each_face`: a row per
/// face instead of per image. `done(k)` is called after each batch with the number of images done in this call.
pub fn classify_entries(
    classifier: &dyn AttributeClassifier<B>,
    entries: &[Entry],
    csv_path: &Path,
    batch_size: usize,
    each_face: bool,
    done: &dyn Fn(usize),
) -> CliResult<Vec<AttributeRow>> {
    let axes = classifier.axes();
    let mut rows = if csv_path.exists() {
        read_rows(csv_path, &axes)?
    } else {
        Vec::new()
    };
    let listed: HashSet<&str> = entries.iter().map(|e| e.file.as_str()).collect();
    rows.retain(|r| listed.contains(r.file.as_str()));
    let finished: HashSet<&str> = rows.iter().map(|r| r.file.as_str()).collect();
    let todo: Vec<&Entry> = entries
        .iter()
        .filter(|e| !finished.contains(e.file.as_str()))
        .collect();
    let device = device();
    let empty_axes = || {
        axes.iter()
            .map(|_| (String::new(), 0.0, Vec::new()))
            .collect()
    };
    for chunk in todo.chunks(batch_size.max(1)) {
        for entry in chunk {
            let row = |face_found, axes, error, detection| AttributeRow {
                file: entry.file.clone(),
                prompt: entry.prompt.clone(),
                base_prompt: entry.base_prompt.clone(),
                face_found,
                axes,
                classifier: classifier.name(),
                error,
                detection,
            };
            // One image per call: the images of a folder need not share a size.
            match load_unit_rgb(&entry.path) {
                Ok((data, w, h)) => {
                    let image =
                        Tensor::<B, 1>::from_floats(data.as_slice(), &device).reshape([1, 3, h, w]);
                    let results = if each_face {
                        classifier.classify_each_face(image)
                    } else {
                        classifier.classify(image)
                    };
                    for attributes in results {
                        let predicted = axes
                            .iter()
                            .map(|axis| match attributes.probabilities.get(&axis.name) {
                                Some(p) => {
                                    (axis.classes[argmax(p)].clone(), p[argmax(p)], p.clone())
                                }
                                None => (String::new(), 0.0, Vec::new()),
                            })
                            .collect();
                        let face = attributes.face_found;
                        rows.push(row(face, predicted, String::new(), attributes.detection));
                    }
                }
                Err(error) => rows.push(row(false, empty_axes(), error, None)),
            }
        }
        write_rows(csv_path, &axes, &rows)?;
        done(chunk.len());
    }
    if todo.is_empty() && !csv_path.exists() {
        write_rows(csv_path, &axes, &rows)?;
    }
    Ok(rows)
}

/// An image file → `[3, H, W]` values in [0, 1] as [`decode_unit_rgb`] gives them, or why not (naming the file).
pub fn load_unit_rgb(path: &Path) -> Result<(Vec<f32>, usize, usize), String> {
    std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| decode_unit_rgb(&bytes))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn header(axes: &[AxisSpec]) -> Vec<String> {
    let mut columns: Vec<String> = ["file", "prompt", "base_prompt", "face_found"]
        .map(String::from)
        .to_vec();
    for axis in axes {
        let name = &axis.name;
        columns.extend([name.clone(), format!("{name}_p"), format!("{name}_probs")]);
    }
    columns.extend(["classifier".into(), "error".into()]);
    columns.extend(FACE_COLUMNS.map(String::from));
    columns
}

/// The face columns, after `error`; CSVs written before them end at `error`.
const FACE_COLUMNS: [&str; 4] = ["faces", "face", "face_box", "face_score"];

/// The face columns of one row (empty without a detection).
fn face_fields(detection: Option<&FaceDetection>) -> [String; 4] {
    match detection {
        Some(d) => [
            d.count.to_string(),
            d.index.to_string(),
            d.bbox.map(|v| format!("{v:.1}")).join(" "),
            format!("{:.6}", d.score),
        ],
        None => Default::default(),
    }
}

pub fn write_rows(path: &Path, axes: &[AxisSpec], rows: &[AttributeRow]) -> CliResult {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| runtime(parent, e))?;
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| CliError::Runtime(format!("{}: {e}", path.display()));
    writer.write_record(header(axes)).map_err(csv_error)?;
    for row in rows {
        let mut record = vec![
            row.file.clone(),
            row.prompt.clone(),
            row.base_prompt.clone(),
            row.face_found.to_string(),
        ];
        for (label, p, probs) in &row.axes {
            let probs: Vec<String> = probs.iter().map(|v| format!("{v:.6}")).collect();
            record.extend([label.clone(), format!("{p:.6}"), probs.join(" ")]);
        }
        record.extend([row.classifier.clone(), row.error.clone()]);
        record.extend(face_fields(row.detection.as_ref()));
        writer.write_record(record).map_err(csv_error)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| CliError::Runtime(format!("{}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// Reads `attributes/<set>.csv` back; a file that does not match `axes` is an input error.
pub fn read_rows(path: &Path, axes: &[AxisSpec]) -> CliResult<Vec<AttributeRow>> {
    let bad =
        |line: usize, what: String| CliError::Input(format!("{}:{line}: {what}", path.display()));
    let mut reader = csv::Reader::from_path(path).map_err(|e| bad(0, e.to_string()))?;
    let expected = header(axes);
    let found: Vec<String> = reader
        .headers()
        .map_err(|e| bad(1, e.to_string()))?
        .iter()
        .map(String::from)
        .collect();
    let before_face_columns = &expected[..expected.len() - FACE_COLUMNS.len()];
    if found != expected && found != before_face_columns {
        return Err(bad(1, format!("columns {found:?}, expected {expected:?}")));
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(i + 2, e.to_string()))?;
        let field = |k: usize| record.get(k).unwrap_or("").to_string();
        let number = |k: usize| -> CliResult<f64> {
            field(k)
                .parse()
                .map_err(|_| bad(i + 2, format!("`{}` is not a number", field(k))))
        };
        let mut parsed_axes = Vec::new();
        for a in 0..axes.len() {
            let k = 4 + 3 * a;
            let probs = field(k + 2)
                .split_whitespace()
                .map(|v| {
                    v.parse::<f64>()
                        .map_err(|_| bad(i + 2, format!("`{v}` is not a number")))
                })
                .collect::<CliResult<Vec<f64>>>()?;
            let p = if field(k).is_empty() {
                0.0
            } else {
                number(k + 1)?
            };
            parsed_axes.push((field(k), p, probs));
        }
        let k = 4 + 3 * axes.len();
        rows.push(AttributeRow {
            file: field(0),
            prompt: field(1),
            base_prompt: field(2),
            face_found: field(3) == "true",
            axes: parsed_axes,
            classifier: field(k),
            error: field(k + 1),
            detection: read_detection(&|j| field(k + 2 + j)).map_err(|what| bad(i + 2, what))?,
        });
    }
    Ok(rows)
}

/// The face columns of a row (`field(j)` is the j-th of them; empty in older CSVs and without a face).
fn read_detection(field: &dyn Fn(usize) -> String) -> Result<Option<FaceDetection>, String> {
    if field(0).is_empty() {
        return Ok(None);
    }
    let number = |j: usize| -> Result<f64, String> {
        let text = field(j);
        text.parse()
            .map_err(|_| format!("{}: `{text}` is not a number", FACE_COLUMNS[j]))
    };
    let corners: Vec<f32> = field(2)
        .split_whitespace()
        .map(|v| {
            v.parse()
                .map_err(|_| format!("face_box: `{v}` is not a number"))
        })
        .collect::<Result<_, String>>()?;
    let bbox: [f32; 4] = corners
        .try_into()
        .map_err(|c: Vec<f32>| format!("face_box has {} numbers, expected x1 y1 x2 y2", c.len()))?;
    Ok(Some(FaceDetection {
        count: number(0)? as usize,
        index: number(1)? as usize,
        bbox,
        score: number(3)? as f32,
    }))
}
