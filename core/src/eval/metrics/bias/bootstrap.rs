//! Bootstrap confidence intervals of the discrepancy (percentile method), over images or over prompts.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// Percentile interval `[Q(α/2), Q(1 − α/2)]` with `α = 1 − level`, quantiles by linear interpolation between
/// order statistics (`Q(u) = x_(⌊h⌋) + (h − ⌊h⌋)(x_(⌊h⌋+1) − x_(⌊h⌋))`, `h = u (n − 1)`, 0-based, R type 7).
/// `None` for an empty sample.
pub fn percentile_interval(values: &[f64], level: f64) -> Option<[f64; 2]> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let alpha = 1.0 - level;
    Some([
        quantile(&sorted, alpha / 2.0),
        quantile(&sorted, 1.0 - alpha / 2.0),
    ])
}

pub(super) fn quantile(sorted: &[f64], u: f64) -> f64 {
    let h = u * (sorted.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The statistic `‖Σ_units/Σ − q‖₂` over `resamples` draws of `units.len()` units with replacement;
/// draws whose pooled count is zero are skipped.
pub(super) fn bootstrap_discrepancies(
    units: &[Vec<f64>],
    target: &[f64],
    resamples: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<f64> {
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let mut counts = vec![0.0; target.len()];
        for _ in 0..units.len() {
            add_into(&mut counts, &units[rng.random_range(0..units.len())]);
        }
        stats.extend(discrepancy_of_counts(&counts, target));
    }
    stats
}

pub(crate) fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

pub(super) fn ci_images(
    contributions: &[Option<Vec<f64>>],
    target: &[f64],
    options: &BiasOptions,
) -> Option<[f64; 2]> {
    let faces: Vec<Vec<f64>> = contributions.iter().flatten().cloned().collect();
    if faces.is_empty() {
        return None;
    }
    let mut rng = rng_for(options.seed, 0);
    let stats = bootstrap_discrepancies(&faces, target, options.bootstrap_resamples, &mut rng);
    percentile_interval(&stats, options.confidence_level)
}

pub(super) fn ci_prompts(
    observations: &[Observation],
    contributions: &[Option<Vec<f64>>],
    target: &[f64],
    options: &BiasOptions,
) -> Option<[f64; 2]> {
    let prompts: Vec<Vec<f64>> = prompt_groups(observations)
        .into_iter()
        .map(|(_, members)| {
            sum_of(
                target.len(),
                members.iter().filter_map(|&i| contributions[i].as_ref()),
            )
        })
        .collect();
    if prompts.iter().all(|c| c.iter().sum::<f64>() <= 0.0) {
        return None;
    }
    let mut rng = rng_for(options.seed, 1);
    let stats = bootstrap_discrepancies(&prompts, target, options.bootstrap_resamples, &mut rng);
    percentile_interval(&stats, options.confidence_level)
}

/// Percentile bootstrap interval of the pooled `D = ‖p − q‖₂`, resampling the images **with a face** (`n_faces`
/// draws with replacement, `options.bootstrap_resamples` times; ChaCha8 seeded with `options.seed`, stream 0).
///
/// `None` when there is no face or `bootstrap_resamples = 0`. Note: `D` is a norm, so its bootstrap
/// distribution is biased upwards; when the true `D` is near 0 the interval can lie above the point estimate.
pub fn bootstrap_ci_images(
    n_classes: usize,
    observations: &[Observation],
    options: &BiasOptions,
) -> Result<Option<[f64; 2]>, String> {
    let target = resolved_target(options, n_classes)?;
    let contributions = contributions(n_classes, observations, options.counting)?;
    Ok(ci_images(&contributions, &target, options))
}

/// Percentile bootstrap interval of the pooled `D = ‖p − q‖₂`, resampling **prompts** (`n_prompts` draws with
/// replacement, each bringing all its images; stream 1 of the ChaCha8 seeded with `options.seed`). Captures the
/// between-prompt variation that [`bootstrap_ci_images`] ignores. Draws that contain no face are skipped.
/// `None` when there is no face or `bootstrap_resamples = 0`.
pub fn bootstrap_ci_prompts(
    n_classes: usize,
    observations: &[Observation],
    options: &BiasOptions,
) -> Result<Option<[f64; 2]>, String> {
    let target = resolved_target(options, n_classes)?;
    let contributions = contributions(n_classes, observations, options.counting)?;
    Ok(ci_prompts(observations, &contributions, &target, options))
}
