//! The main worker's `metrics.jsonl` and progress bar.

use std::io::Write;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use super::checkpoint::TrainState;
use super::config::TrainConfig;
use crate::error::{CliError, CliResult};

/// The main worker's outputs: `metrics.jsonl` and the progress bar.
pub(super) struct Log {
    pub(super) path: PathBuf,
    pub(super) file: std::fs::File,
    pub(super) bar: ProgressBar,
}

impl Log {
    pub(super) fn open(config: &TrainConfig, state: &TrainState) -> CliResult<Self> {
        std::fs::create_dir_all(&config.output)
            .map_err(|e| CliError::Runtime(format!("{}: {e}", config.output.display())))?;
        let path = config.output.join("metrics.jsonl");
        keep_metrics_before(&path, state.step)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| CliError::Runtime(format!("{}: {e}", path.display())))?;
        let bar = ProgressBar::new(config.steps as u64).with_position(state.step as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} eta {eta} {msg}")
                .expect("template"),
        );
        Ok(Self { path, file, bar })
    }

    pub(super) fn write(&mut self, line: &serde_json::Value) -> CliResult {
        writeln!(self.file, "{line}")
            .map_err(|e| CliError::Runtime(format!("{}: {e}", self.path.display())))
    }

    pub(super) fn flush(&mut self) -> CliResult {
        self.file
            .flush()
            .map_err(|e| CliError::Runtime(format!("{}: {e}", self.path.display())))
    }
}

/// Drops metric lines of steps after `step` (work a killed run did past its last checkpoint).
pub(super) fn keep_metrics_before(path: &std::path::Path, step: usize) -> CliResult {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s as usize <= step)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(path, kept).map_err(|e| CliError::Runtime(format!("{}: {e}", path.display())))
}
