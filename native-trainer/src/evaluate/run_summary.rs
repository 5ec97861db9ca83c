//! Evaluating one model's image set: bias per axis (PopAlign's discrepancy with confidence intervals,
//! from `popalign_core::eval::metrics`) and a quality score, written to `summary.json`.

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use popalign_core::eval::classify::{AxisSpec, Scorer};
use popalign_core::eval::metrics::bias::{BiasOptions, Observation, summarize_axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::artifacts::write_atomic;
use crate::backend::{Backend as B, device};
use crate::classify::attributes::{AttributeRow, load_unit_rgb};
use crate::error::{CliError, CliResult};

use popalign_core::schema::report::{ModelSummary, QualitySummary};

/// Summarises classified rows (one per image) and scores the images with every scorer (at least one).
pub fn summarize(
    model: &str,
    run: &Path,
    axes: &[AxisSpec],
    rows: &[AttributeRow],
    scorers: &[(String, Box<dyn Scorer<B>>)],
    options: &BiasOptions,
) -> CliResult<ModelSummary> {
    let mut summaries = BTreeMap::new();
    for (a, axis) in axes.iter().enumerate() {
        let observations: Vec<Observation> = rows
            .iter()
            .map(|row| Observation {
                prompt: row.prompt.clone(),
                probabilities: row.face_found.then(|| row.axes[a].2.clone()),
            })
            .collect();
        let summary = summarize_axis(&axis.classes, &observations, options)
            .map_err(|e| CliError::Runtime(format!("axis {}: {e}", axis.name)))?;
        summaries.insert(axis.name.clone(), summary);
    }
    let mut quality = scorers
        .iter()
        .map(|(_, scorer)| score_images(run, rows, scorer.as_ref(), options.seed))
        .collect::<CliResult<Vec<_>>>()?
        .into_iter();
    Ok(ModelSummary {
        model: model.to_string(),
        classifier: rows
            .first()
            .map(|r| r.classifier.clone())
            .unwrap_or_default(),
        axes: summaries,
        quality: quality
            .next()
            .ok_or_else(|| CliError::Runtime("no quality scorer".into()))?,
        more_quality: quality.collect(),
    })
}

fn score_images(
    run: &Path,
    rows: &[AttributeRow],
    scorer: &dyn Scorer<B>,
    seed: u64,
) -> CliResult<QualitySummary> {
    let device = device();
    let mut scores = Vec::new();
    for row in rows {
        // Unreadable images were already counted by `classify`; they get no quality score.
        let Ok((data, w, h)) = load_unit_rgb(&run.join(&row.file)) else {
            continue;
        };
        let image = Tensor::<B, 1>::from_floats(data.as_slice(), &device).reshape([1, 3, h, w]);
        scores.extend(scorer.score(image, std::slice::from_ref(&row.prompt)));
    }
    if scores.is_empty() {
        return Err(CliError::Runtime("no readable image to score".into()));
    }
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    let mut sorted = scores.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..1000)
        .map(|_| {
            (0..scores.len())
                .map(|_| scores[rng.random_range(0..scores.len())])
                .sum::<f64>()
                / scores.len() as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    Ok(QualitySummary {
        scorer: scorer.name(),
        n_images: scores.len(),
        mean,
        median,
        ci: [means[25], means[974]],
    })
}

pub fn write_summary(path: &Path, summary: &ModelSummary) -> CliResult {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| CliError::Runtime(format!("{}: {e}", parent.display())))?;
    }
    let json = serde_json::to_string_pretty(summary).expect("json");
    write_atomic(path, json.as_bytes())
}
