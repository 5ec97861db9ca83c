//! The report folder of a run (`report/`): `report.json` (schema in `popalign_core::report`), `index.html`
//! (a static page, see `page.rs`), the browser explorer (`explorer.html`, `style.css`, `pkg/`; see
//! `explorer.rs`) when the binary embeds it, and a thumbnail of every evaluation image, base and aligned from the same
//! noise side by side. The folder is self-contained: open `index.html` from disk or copy the folder to any
//! static host.

use std::collections::BTreeMap;
use std::path::Path;

use popalign_core::classify::AxisSpec;
use popalign_core::report::{ImageSlot, ModelSummary, Report, SCHEMA_VERSION, SlotImage};

use super::classify::{AttributeRow, read_rows};
use super::images::{runtime, write_atomic};
use crate::error::CliResult;

/// Longest side of a thumbnail; smaller images are copied as they are.
const THUMBNAIL_SIDE: u32 = 256;

pub struct RunInfo {
    pub config: serde_json::Value,
    pub config_hash: String,
    pub objective: String,
    /// The comparison table printed on stdout.
    pub table: String,
}

/// Writes `out/` from the run directory's evaluation (`eval/<model>/{attributes.csv,images}`) of each of
/// `models`, in that order (the first model's images give the order of the slots).
pub fn write_report_folder(
    run: &Path,
    out: &Path,
    axes: &[AxisSpec],
    models: &[ModelSummary],
    info: RunInfo,
) -> CliResult<Report> {
    std::fs::create_dir_all(out).map_err(|e| runtime(out, e))?;
    let rows: Vec<Vec<AttributeRow>> = models
        .iter()
        .map(|m| read_rows(&run.join(format!("eval/{}/attributes.csv", m.model)), axes))
        .collect::<CliResult<_>>()?;
    let by_name: Vec<BTreeMap<String, &AttributeRow>> = rows
        .iter()
        .map(|rows| rows.iter().map(|r| (file_name(&r.file), r)).collect())
        .collect();
    let mut images = Vec::new();
    for row in &rows[0] {
        let name = file_name(&row.file);
        let mut slot_models = Vec::new();
        for (m, model) in models.iter().map(|m| m.model.as_str()).enumerate() {
            let Some(row) = by_name[m].get(&name) else {
                slot_models.push(SlotImage {
                    thumbnail: None,
                    face_found: false,
                    predicted: BTreeMap::new(),
                    probabilities: BTreeMap::new(),
                });
                continue;
            };
            let thumbnail = thumbnail(&run.join(&row.file), out, model, &name)?;
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
    let report = Report {
        schema_version: SCHEMA_VERSION,
        popalign_version: popalign_core::VERSION.to_string(),
        config_hash: info.config_hash,
        config: info.config,
        objective: info.objective,
        models: models.to_vec(),
        table: info.table,
        images,
    };
    let json = serde_json::to_string_pretty(&report).expect("report serialises");
    write_atomic(&out.join("report.json"), json.as_bytes())?;
    let explorer = super::explorer::FILES;
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

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// Copies (or shrinks to a JPEG of `THUMBNAIL_SIDE`) one image into `out/images/<model>/`; returns its
/// path relative to `out`, or `None` when the image cannot be read (the page then shows its name).
fn thumbnail(source: &Path, out: &Path, model: &str, name: &str) -> CliResult<Option<String>> {
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
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
            .encode_image(&small)
            .map_err(|e| runtime(source, e))?;
        let stem = Path::new(name).with_extension("jpg");
        (format!("images/{model}/{}", stem.display()), bytes)
    };
    write_atomic(&out.join(&relative), &bytes)?;
    Ok(Some(relative))
}
