//! `popalign classify --images DIR`: classifies every image of a folder into one attribute CSV.
//!
//! The CSV has the columns of a run's `attributes/<set>.csv` (a superset of the official
//! `race_gender.csv`), one row per image file in name order. A file with an image extension that
//! cannot be decoded (truncated, not an image at all) is a row with `face_found = false` and `error`
//! set; files without an image extension are skipped and counted. The CSV is rewritten atomically
//! after every batch and a re-run skips the files it already has, so a killed run resumes.

use std::path::{Path, PathBuf};

use crate::artifacts::progress;
use crate::classify::attributes::{AttributeRow, Entry, classify_entries};
use crate::classify::{ClassifierArgs, load_classifier};
use crate::error::runtime;
use crate::error::{CliResult, input};

/// File extensions read as images (compared case-insensitively).
const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"];

#[derive(clap::Args)]
pub struct Args {
    /// Folder of images (not searched recursively).
    #[arg(long)]
    images: PathBuf,
    /// The CSV to write [default: attributes/<folder name>.csv].
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    classifier: ClassifierArgs,
    /// Images per checkpoint of the CSV.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// A row per detected face (the `face` column numbers them, largest first) instead of one per image
    /// reading its largest face. For the face classifiers; others read each image once.
    #[arg(long)]
    all_faces: bool,
}

pub fn run(args: Args) -> CliResult {
    let (entries, skipped) = list_images(&args.images)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&args.images));
    let classifier = load_classifier(&args.classifier, Path::new(""))?;
    let bar = progress(entries.len() as u64, "images");
    let rows = classify_entries(
        classifier.as_ref(),
        &entries,
        &out,
        args.batch_size,
        args.all_faces,
        &|k| bar.inc(k as u64),
    )?;
    bar.finish_and_clear();
    println!("{}", summary(&rows, skipped, &out));
    Ok(())
}

/// The image files of `dir` in name order, and how many other files were skipped.
fn list_images(dir: &Path) -> CliResult<(Vec<Entry>, usize)> {
    let listing = std::fs::read_dir(dir).map_err(|e| input(format!("{}: {e}", dir.display())))?;
    let mut files = Vec::new();
    let mut skipped = 0;
    for item in listing {
        let path = item.map_err(|e| runtime(dir, e))?.path();
        if !path.is_file() {
            continue;
        }
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if is_image {
            files.push(path);
        } else {
            skipped += 1;
        }
    }
    files.sort();
    let entries = files
        .into_iter()
        .map(|path| Entry {
            file: path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            path,
            prompt: String::new(),
            base_prompt: String::new(),
        })
        .collect();
    Ok((entries, skipped))
}

fn default_out(images: &Path) -> PathBuf {
    let name = images
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "images".into());
    PathBuf::from("attributes").join(format!("{name}.csv"))
}

/// `12 images: 10 with a face, 1 without, 1 unreadable` (and `, 14 faces read` when several faces of an
/// image have rows), then one line per unreadable file, the skipped count and the CSV written.
fn summary(rows: &[AttributeRow], skipped: usize, out: &Path) -> String {
    let unreadable: Vec<&AttributeRow> = rows.iter().filter(|r| !r.error.is_empty()).collect();
    let first_rows: Vec<&AttributeRow> = rows
        .iter()
        .filter(|r| r.detection.is_none_or(|d| d.index == 0))
        .collect();
    let images = first_rows.len();
    let faces = first_rows.iter().filter(|r| r.face_found).count();
    let mut text = format!(
        "{images} images: {faces} with a face, {} without, {} unreadable",
        images - faces - unreadable.len(),
        unreadable.len()
    );
    if rows.len() > images {
        let read = rows.iter().filter(|r| r.face_found).count();
        text.push_str(&format!(", {read} faces read"));
    }
    for row in &unreadable {
        text.push_str(&format!("\n  unreadable {}: {}", row.file, row.error));
    }
    if skipped > 0 {
        text.push_str(&format!(
            "\nskipped {skipped} file(s) without an image extension"
        ));
    }
    text.push_str(&format!("\nwrote {}", out.display()));
    text
}
