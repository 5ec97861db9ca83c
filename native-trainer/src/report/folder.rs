//! Writing the report folder: `report.json`, `index.html`, the explorer's files and the thumbnails.

use popalign_core::eval::classify::AxisSpec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::table::comparison_table;
use crate::artifacts::write_atomic;
use crate::classify::attributes::{AttributeRow, read_rows};
use crate::error::CliResult;
use crate::error::runtime;
use popalign_core::schema::report::{
    CarriedClassifier, ImageSlot, ModelSummary, Report, SCHEMA_VERSION, SampleGrid, SlotImage,
    TrainingCurve,
};

/// Longest side of a thumbnail; smaller images are copied as they are.
const THUMBNAIL_SIDE: u32 = 256;

/// JPEG quality of a thumbnail. At 75 a 256-px thumbnail of a 1024² photograph averages about 14 KiB
/// (bench/report_size.sh), so a 10,000-image report with its explorer stays under 200 MB; at 85 it
/// was 19 KiB and the same report about 230 MB.
const THUMBNAIL_QUALITY: u8 = 75;

/// One model column of a report: its label, the run it comes from, and its evaluation summary
/// (`summary.model` names the folder `eval/<model>/` of `run`).
pub(super) struct ReportModel {
    pub(super) label: String,
    pub(super) run: PathBuf,
    pub(super) summary: ModelSummary,
}

pub(super) struct RunInfo {
    pub(super) config: serde_json::Value,
    pub(super) config_hash: String,
    pub(super) objective: String,
    pub(super) training: Vec<TrainingCurve>,
    pub(super) carried: Vec<CarriedClassifier>,
    pub(super) samples: Vec<SampleGrid>,
}

/// The axes as the first model's summary lists them.
fn axes_of(summary: &ModelSummary) -> Vec<AxisSpec> {
    summary
        .axes
        .iter()
        .map(|(name, axis)| AxisSpec {
            name: name.clone(),
            classes: axis.classes.clone(),
        })
        .collect()
}

/// Writes `out/` from each model's evaluation (`<run>/eval/<model>/{attributes.csv,images}`), in that
/// order (the first model's images give the order of the slots; images match by file name).
pub(super) fn write_report_folder(
    out: &Path,
    models: &[ReportModel],
    info: RunInfo,
) -> CliResult<Report> {
    std::fs::create_dir_all(out).map_err(|e| runtime(out, e))?;
    let axes = axes_of(&models[0].summary);
    let rows: Vec<Vec<AttributeRow>> = models
        .iter()
        .map(|m| {
            read_rows(
                &m.run
                    .join(format!("eval/{}/attributes.csv", m.summary.model)),
                &axes,
            )
        })
        .collect::<CliResult<_>>()?;
    // Same run: the models' images share file names (same prompt, same noise). Runs with other seeds
    // name theirs differently; those pair up by prompt and position within the prompt instead.
    let keyed: Vec<(
        BTreeMap<String, &AttributeRow>,
        BTreeMap<(String, usize), &AttributeRow>,
    )> = rows
        .iter()
        .map(|rows| {
            let by_name = rows.iter().map(|r| (file_name(&r.file), r)).collect();
            (by_name, by_position(rows).into_iter().collect())
        })
        .collect();
    let mut images = Vec::new();
    for (position, row) in by_position(&rows[0]) {
        let name = file_name(&row.file);
        let mut slot_models = Vec::new();
        for (model, (by_name, by_pos)) in models.iter().zip(&keyed) {
            let Some(row) = by_name.get(&name).or_else(|| by_pos.get(&position)) else {
                slot_models.push(SlotImage {
                    thumbnail: None,
                    face_found: false,
                    predicted: BTreeMap::new(),
                    probabilities: BTreeMap::new(),
                });
                continue;
            };
            let folder = folder_name(&model.label);
            let thumbnail = thumbnail(
                &model.run.join(&row.file),
                out,
                &folder,
                &file_name(&row.file),
            )?;
            let found = || axes.iter().zip(&row.axes).filter(|_| row.face_found);
            slot_models.push(SlotImage {
                thumbnail,
                face_found: row.face_found,
                predicted: found()
                    .map(|(axis, (label, _, _))| (axis.name.clone(), label.clone()))
                    .collect(),
                probabilities: found()
                    .map(|(axis, (_, _, probs))| (axis.name.clone(), probs.clone()))
                    .collect(),
            });
        }
        images.push(ImageSlot {
            prompt: row.prompt.clone(),
            name,
            models: slot_models,
        });
    }
    let summaries: Vec<ModelSummary> = models
        .iter()
        .map(|m| ModelSummary {
            model: m.label.clone(),
            ..m.summary.clone()
        })
        .collect();
    let report = Report {
        schema_version: SCHEMA_VERSION,
        popalign_version: popalign_core::VERSION.to_string(),
        config_hash: info.config_hash,
        config: info.config,
        objective: info.objective,
        table: comparison_table(&summaries),
        models: summaries,
        images,
        training: info.training,
        carried_classifiers: info.carried,
        samples: info.samples,
    };
    let json = serde_json::to_string_pretty(&report).expect("report serialises");
    write_atomic(&out.join("report.json"), json.as_bytes())?;
    // The same text as a classic script, which the explorer reads when opened from disk (file://), where
    // browsers let a page run scripts from its folder but not fetch files. A JSON string is a JS literal.
    let script = format!(
        "window.POPALIGN_REPORT = {};\n",
        serde_json::to_string(&json).expect("a string serialises")
    );
    write_atomic(&out.join("report.js"), script.as_bytes())?;
    let explorer = super::explorer::FILES;
    if explorer.is_empty() {
        eprintln!(
            "note: {} has the static page (index.html) but no explorer.html: this popalign was built without \
             the browser bundle; run `bash tools/build-web.sh`, build again and re-run to add it",
            out.display()
        );
    }
    for (path, contents) in explorer {
        let path = out.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| runtime(parent, e))?;
        }
        write_atomic(&path, contents)?;
    }
    write_atomic(
        &out.join("index.html"),
        super::page::render(&report, !explorer.is_empty()).as_bytes(),
    )?;
    Ok(report)
}

/// Rows keyed by prompt and their position among that prompt's rows, in file order.
fn by_position(rows: &[AttributeRow]) -> Vec<((String, usize), &AttributeRow)> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    rows.iter()
        .map(|r| {
            let k = seen.entry(&r.prompt).or_default();
            *k += 1;
            ((r.prompt.clone(), *k - 1), r)
        })
        .collect()
}

/// A model's label as a folder name under `images/`: letters, digits, `.`, `_` and `-` kept, the rest `-`
/// (and never `.` or `..`).
pub(super) fn folder_name(label: &str) -> String {
    let name: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.chars().all(|c| c == '.') {
        name.replace('.', "-")
    } else {
        name
    }
}

pub(super) fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// Copies (or shrinks to a JPEG of `THUMBNAIL_SIDE`) one image into `out/images/<model>/`; returns its
/// path relative to `out`, or `None` when the image cannot be read (the page then shows its name).
pub(super) fn thumbnail(
    source: &Path,
    out: &Path,
    model: &str,
    name: &str,
) -> CliResult<Option<String>> {
    // Read once: the bytes are decoded to check the image and, when it is small, copied as they are.
    let Ok(bytes) = std::fs::read(source) else {
        return Ok(None);
    };
    let Ok(image) = image::load_from_memory(&bytes) else {
        return Ok(None);
    };
    let dir = out.join("images").join(model);
    std::fs::create_dir_all(&dir).map_err(|e| runtime(&dir, e))?;
    let (relative, bytes) = if image.width().max(image.height()) <= THUMBNAIL_SIDE {
        (format!("images/{model}/{name}"), bytes)
    } else {
        let small = image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).to_rgb8();
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, THUMBNAIL_QUALITY)
            .encode_image(&small)
            .map_err(|e| runtime(source, e))?;
        let stem = Path::new(name).with_extension("jpg");
        (format!("images/{model}/{}", stem.display()), bytes)
    };
    write_atomic(&out.join(&relative), &bytes)?;
    Ok(Some(relative))
}
