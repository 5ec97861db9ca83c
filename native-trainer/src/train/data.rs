//! Preference data (`preferences.jsonl`, docs/design.md §1) and image preprocessing as the official trainer does
//! it: shorter side resized to the resolution (bilinear), centre crop, both images of a pair flipped
//! together, pixels to [-1, 1]; SDXL `time_ids` from the original size and the crop.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use serde::Deserialize;

use crate::error::{CliResult, input};

/// One line of `preferences.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct PreferencePair {
    pub caption: String,
    pub preferred: PathBuf,
    pub dispreferred: PathBuf,
}

pub struct PreferenceData {
    pub pairs: Vec<PreferencePair>,
    /// Caption group per pair (equal captions share an id): the populations of `popalign-pairwise`.
    pub groups: Vec<usize>,
}

impl PreferenceData {
    pub fn load(path: &Path) -> CliResult<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| input(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut pairs = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let mut pair: PreferencePair = serde_json::from_str(line)
                .map_err(|e| input(format!("{}:{}: {e}", path.display(), i + 1)))?;
            pair.preferred = base.join(&pair.preferred);
            pair.dispreferred = base.join(&pair.dispreferred);
            pairs.push(pair);
        }
        if pairs.is_empty() {
            return Err(input(format!("{}: no preference pairs", path.display())));
        }
        let mut captions: Vec<&str> = Vec::new();
        let groups = pairs
            .iter()
            .map(|p| match captions.iter().position(|c| *c == p.caption) {
                Some(g) => g,
                None => {
                    captions.push(&p.caption);
                    captions.len() - 1
                }
            })
            .collect();
        Ok(Self { pairs, groups })
    }
}

/// A preprocessed image: `[3, res, res]` values in [-1, 1] (channel-major) and its SDXL `time_ids`.
pub struct PreparedImage {
    pub pixels: Vec<f32>,
    pub time_ids: [f32; 6],
}

/// Loads and preprocesses one image; the error names the file.
pub fn prepare_image(path: &Path, resolution: usize, flip: bool) -> Result<PreparedImage, String> {
    let image = image::ImageReader::open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .with_guessed_format()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .decode()
        .map_err(|e| format!("{}: cannot decode image: {e}", path.display()))?
        .to_rgb8();
    let (w, h) = (image.width() as usize, image.height() as usize);
    let scale = resolution as f64 / w.min(h) as f64;
    let (rw, rh) = (
        ((w as f64 * scale).round() as usize).max(resolution),
        ((h as f64 * scale).round() as usize).max(resolution),
    );
    let resized = image::imageops::resize(&image, rw as u32, rh as u32, FilterType::Triangle);
    let (top, left) = (
        ((rh - resolution) as f64 / 2.0).round() as usize,
        ((rw - resolution) as f64 / 2.0).round() as usize,
    );
    let mut crop = image::imageops::crop_imm(
        &resized,
        left as u32,
        top as u32,
        resolution as u32,
        resolution as u32,
    )
    .to_image();
    if flip {
        crop = image::imageops::flip_horizontal(&crop);
    }
    let mut pixels = vec![0f32; 3 * resolution * resolution];
    for (x, y, p) in crop.enumerate_pixels() {
        for c in 0..3 {
            pixels[c * resolution * resolution + y as usize * resolution + x as usize] =
                p[c] as f32 / 127.5 - 1.0;
        }
    }
    let time_ids = [h, w, top, left, resolution, resolution].map(|v| v as f32);
    Ok(PreparedImage { pixels, time_ids })
}
