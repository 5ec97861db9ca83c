//! Summaries of quality scores (PickScore, HPSv2, CLIP score, aesthetics): mean, median and a percentile bootstrap
//! interval of the mean per image set, and the paired difference between two sets generated from the same seeds.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::bias::{percentile_interval, rng_for};

/// One score over one image set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QualitySummary {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    /// Percentile bootstrap interval of the mean (images resampled with replacement); `None` without resamples.
    pub ci: Option<[f64; 2]>,
}

/// `other − baseline` over the images both sets have (same prompt and seed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PairedDifference {
    pub n_pairs: usize,
    pub mean_difference: f64,
    /// Percentile bootstrap interval of the mean difference (pairs resampled with replacement).
    pub ci: Option<[f64; 2]>,
}

/// Bootstrap settings shared by the quality summaries (the bias summaries' `bootstrap`, `confidence`, `seed`).
#[derive(Debug, Clone, Copy)]
pub struct Bootstrap {
    pub resamples: usize,
    pub level: f64,
    pub seed: u64,
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

/// The percentile interval of the mean over `resamples` draws of `values.len()` values with replacement
/// (ChaCha8 seeded with `seed`, stream 2, so it never shares draws with the bias intervals).
fn bootstrap_mean(values: &[f64], bootstrap: Bootstrap) -> Option<[f64; 2]> {
    if bootstrap.resamples == 0 || values.is_empty() {
        return None;
    }
    let mut rng = rng_for(bootstrap.seed, 2);
    let means: Vec<f64> = (0..bootstrap.resamples)
        .map(|_| {
            let total: f64 = (0..values.len())
                .map(|_| values[rng.random_range(0..values.len())])
                .sum();
            total / values.len() as f64
        })
        .collect();
    percentile_interval(&means, bootstrap.level)
}

/// Mean, median and interval of the finite scores; `None` when there are none.
pub fn summarize_scores(scores: &[f64], bootstrap: Bootstrap) -> Option<QualitySummary> {
    let finite: Vec<f64> = scores.iter().copied().filter(|s| s.is_finite()).collect();
    if finite.is_empty() {
        return None;
    }
    Some(QualitySummary {
        n: finite.len(),
        mean: mean(&finite),
        median: median(&finite),
        ci: bootstrap_mean(&finite, bootstrap),
    })
}

/// The mean of `other − baseline` over matched pairs, with its interval; `None` without pairs.
pub fn paired_difference(pairs: &[(f64, f64)], bootstrap: Bootstrap) -> Option<PairedDifference> {
    let differences: Vec<f64> = pairs
        .iter()
        .map(|(baseline, other)| other - baseline)
        .filter(|d| d.is_finite())
        .collect();
    if differences.is_empty() {
        return None;
    }
    Some(PairedDifference {
        n_pairs: differences.len(),
        mean_difference: mean(&differences),
        ci: bootstrap_mean(&differences, bootstrap),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Bootstrap = Bootstrap {
        resamples: 0,
        level: 0.95,
        seed: 0,
    };

    #[test]
    fn mean_and_median() {
        let s = summarize_scores(&[3.0, 1.0, 2.0, 10.0, f64::NAN], NONE).unwrap();
        assert_eq!((s.n, s.mean, s.median, s.ci), (4, 4.0, 2.5, None));
        assert!(summarize_scores(&[], NONE).is_none());
    }

    #[test]
    fn bootstrap_interval_contains_the_mean_and_is_reproducible() {
        let scores: Vec<f64> = (0..50).map(|i| (i * 37 % 11) as f64).collect();
        let b = Bootstrap {
            resamples: 500,
            level: 0.9,
            seed: 7,
        };
        let s = summarize_scores(&scores, b).unwrap();
        let [lo, hi] = s.ci.unwrap();
        assert!(lo < s.mean && s.mean < hi && hi - lo < 3.0, "{s:?}");
        assert_eq!(summarize_scores(&scores, b).unwrap(), s);
    }

    #[test]
    fn paired_difference_is_other_minus_baseline() {
        let pairs = [(1.0, 2.0), (2.0, 2.5), (0.0, 1.5)];
        let d = paired_difference(&pairs, NONE).unwrap();
        assert_eq!((d.n_pairs, d.mean_difference), (3, 1.0));
        // A constant shift has a zero-width interval.
        let shifted: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, i as f64 + 0.5)).collect();
        let b = Bootstrap {
            resamples: 100,
            level: 0.95,
            seed: 1,
        };
        let ci = paired_difference(&shifted, b).unwrap().ci.unwrap();
        assert!(
            (ci[0] - 0.5).abs() < 1e-12 && (ci[1] - 0.5).abs() < 1e-12,
            "{ci:?}"
        );
    }
}
