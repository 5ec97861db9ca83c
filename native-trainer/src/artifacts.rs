//! What every command writes with: atomic file writes, PNG encoding, progress bars.

use std::path::Path;

use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::Backend as B;
use crate::error::{CliError, CliResult, runtime};

/// `[1, 3, H, W]` in [0, 1] → 8-bit RGB PNG bytes.
pub fn png_bytes(image: Tensor<B, 4>) -> CliResult<Vec<u8>> {
    let [_, _, h, w] = image.dims();
    let values: Vec<f32> = (image.reshape([3, h, w]).permute([1, 2, 0]) * 255.0)
        .round()
        .into_data()
        .to_vec()
        .map_err(|e| CliError::Runtime(format!("{e:?}")))?;
    let bytes: Vec<u8> = values.iter().map(|v| *v as u8).collect();
    let buffer = image::RgbImage::from_raw(w as u32, h as u32, bytes).expect("buffer matches size");
    let mut encoded = Vec::new();
    buffer
        .write_to(
            &mut std::io::Cursor::new(&mut encoded),
            image::ImageFormat::Png,
        )
        .map_err(|e| CliError::Runtime(e.to_string()))?;
    Ok(encoded)
}

/// Writes `bytes` to `<path>.tmp` and renames it over `path`, so a reader (or a resumed run) never sees half a
/// file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> CliResult {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| runtime(path, e))
}

/// `write_atomic` for a file that the shards of a run all write with the same bytes (the prompt sets, the
/// lock), perhaps at the same moment on a shared folder: an identical file is left alone, and the temporary
/// name carries the host and the process, so no shard renames another's half-written file.
pub fn write_shared(path: &Path, bytes: &[u8]) -> CliResult {
    if std::fs::read(path).is_ok_and(|existing| existing == bytes) {
        return Ok(());
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let tmp = path.with_extension(format!("{}.{}.tmp", host.trim(), std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| runtime(path, e))
}

/// A progress bar over `len` items of `what`, with elapsed time and an estimate of the rest.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!("{{bar:30}} {{pos}}/{{len}} {what} {{elapsed}} eta {{eta}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("template"));
    bar
}
