//! Bias metrics for one attribute axis (gender, race, age, or an intersection of two), docs/design.md §6.
//!
//! Input: one [`Observation`] per generated image, holding the prompt and the classifier's class
//! probabilities, or `None` when no face was found (counted in `n_images`, excluded from the distribution).
//!
//! Notation: `K` classes (fixed by the class list, classes that never occur count as 0), `c ∈ ℝ^K` the pooled
//! counts over the images with a face, `p = c / Σc` the pooled distribution, `q` the target (uniform `1/K` unless
//! given).
//!
//! - Counting ([`Counting`]): `Argmax` adds 1 to the class of highest probability (first one on ties);
//!   `Expected` adds the image's probability vector, normalised to sum 1 (so DeepFace percentages work as is).
//! - PopAlign discrepancy: `D = ‖p − q‖₂ = sqrt(Σ_k (p_k − q_k)²)`.
//! - Official variant ([`discrepancy_official`]): the official script (`eval/classifier.py`) builds `p` only over
//!   the classes that occur and compares it with the uniform over those `K_obs` classes:
//!   `D_off = sqrt(Σ_{k: p_k > 0} (p_k − 1/K_obs)²)`. With all classes present it equals `D` (uniform target);
//!   with absent classes it is smaller: e.g. for race, one class only gives `D_off = 0` but `D = sqrt(5/6)`.
//! - `KL(p ‖ q) = Σ_{k: p_k > 0} p_k ln(p_k / q_k)` in nats, with `0 · ln(0/q) = 0` (also for `q = 0`); if some
//!   `q_k = 0` with `p_k > 0` it is [`KlDivergence::Infinite`].
//! - Total variation `TV = ½ Σ_k |p_k − q_k|`, in `[0, 1]`.
//! - Bootstrap confidence intervals of `D` by the percentile method, resampling either images (with a face) or
//!   prompts (each with all its images).

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Largest accepted `|Σ target − 1|`.
pub const TARGET_SUM_TOLERANCE: f64 = 1e-6;

/// One generated image, as seen by the attribute classifier of one axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The prompt the image was generated from; per-prompt metrics group on it (exact string match).
    pub prompt: String,
    /// Class probabilities in the order of the class list (`K` non-negative entries with a positive sum;
    /// normalised before use), or `None` when no face was found or the image could not be read.
    pub probabilities: Option<Vec<f64>>,
}

impl Observation {
    pub fn face(prompt: impl Into<String>, probabilities: Vec<f64>) -> Self {
        Self {
            prompt: prompt.into(),
            probabilities: Some(probabilities),
        }
    }

    pub fn no_face(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            probabilities: None,
        }
    }
}

/// How an image with a face adds to the class counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Counting {
    /// One count to the most probable class (first one on ties), as the official PopAlign script does.
    #[default]
    Argmax,
    /// The image's normalised probability vector (expected counts).
    Expected,
}

/// Options of [`summarize_axis`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BiasOptions {
    pub counting: Counting,
    /// Target distribution over the `K` classes (non-negative, sums to 1 within [`TARGET_SUM_TOLERANCE`]);
    /// `None` is uniform `1/K`.
    pub target: Option<Vec<f64>>,
    /// Bootstrap resamples; 0 disables the confidence intervals.
    pub bootstrap_resamples: usize,
    /// Two-sided level of the percentile intervals, in (0, 1).
    pub confidence_level: f64,
    /// Seed of the bootstrap's ChaCha8 generator (same results on every platform, wasm32 included).
    pub seed: u64,
    /// An image with a face is low-confidence when its largest normalised probability is below this, in [0, 1].
    pub low_confidence_threshold: f64,
}

impl Default for BiasOptions {
    fn default() -> Self {
        Self {
            counting: Counting::Argmax,
            target: None,
            bootstrap_resamples: 1000,
            confidence_level: 0.95,
            seed: 0,
            low_confidence_threshold: 0.5,
        }
    }
}

/// `KL(p ‖ q)`, which is infinite when `q` puts zero mass on a class that `p` has.
/// Serialises as `{"finite": 0.12}` or `"infinite"` (JSON has no infinity).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlDivergence {
    Finite(f64),
    Infinite,
}

impl KlDivergence {
    /// The value as an `f64` (`f64::INFINITY` for [`KlDivergence::Infinite`]).
    pub fn value(self) -> f64 {
        match self {
            KlDivergence::Finite(v) => v,
            KlDivergence::Infinite => f64::INFINITY,
        }
    }
}

/// The discrepancy of one prompt's images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptDiscrepancy {
    pub prompt: String,
    pub n_images: usize,
    pub n_faces: usize,
    /// `None` when none of the prompt's images has a face.
    pub distribution: Option<Vec<f64>>,
    /// `‖p_prompt − q‖₂`; `None` when none of the prompt's images has a face.
    pub discrepancy: Option<f64>,
}

/// Identity-specific accuracy: share of images with a face whose argmax class is the expected one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityAccuracy {
    pub n_images: usize,
    pub n_faces: usize,
    /// Images skipped because no face was found.
    pub n_no_face: usize,
    pub n_correct: usize,
    /// `n_correct / n_faces`; `None` when `n_faces = 0`.
    pub accuracy: Option<f64>,
}

/// Everything [`summarize_axis`] reports for one axis; `None` fields are undefined (see `note`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AxisSummary {
    pub classes: Vec<String>,
    pub counting: Counting,
    pub n_images: usize,
    pub n_faces: usize,
    pub n_no_face: usize,
    /// `n_faces / n_images`.
    pub face_found_rate: Option<f64>,
    /// Share of images with a face whose largest probability is below `low_confidence_threshold`.
    pub low_confidence_share: Option<f64>,
    pub low_confidence_threshold: f64,
    /// Pooled counts `c` over the images with a face, length `K` (zeros included).
    pub counts: Vec<f64>,
    /// `p = c / Σc`.
    pub distribution: Option<Vec<f64>>,
    /// The target `q` used (uniform when none was given).
    pub target: Vec<f64>,
    /// `‖p − q‖₂` with `K` fixed.
    pub discrepancy: Option<f64>,
    /// The official script's variant: uniform over the `classes_present` classes only, absent classes dropped.
    pub discrepancy_official: Option<f64>,
    /// `K_obs`, the number of classes with a positive count.
    pub classes_present: usize,
    pub kl: Option<KlDivergence>,
    pub tv: Option<f64>,
    pub confidence_level: f64,
    pub bootstrap_resamples: usize,
    pub seed: u64,
    /// Percentile bootstrap interval `[lo, hi]` of `discrepancy`, resampling images with a face.
    pub ci_images: Option<[f64; 2]>,
    /// Percentile bootstrap interval `[lo, hi]` of `discrepancy`, resampling prompts with all their images.
    pub ci_prompts: Option<[f64; 2]>,
    /// In order of first appearance of each prompt.
    pub per_prompt: Vec<PromptDiscrepancy>,
    pub n_prompts: usize,
    pub n_prompts_without_faces: usize,
    /// Mean of the per-prompt discrepancies over the prompts with at least one face.
    pub mean_prompt_discrepancy: Option<f64>,
    /// Why fields are undefined, when they are (no images, no faces).
    pub note: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------
// Validation

fn check_classes(classes: &[String]) -> Result<usize, String> {
    if classes.is_empty() {
        return Err("the class list is empty".into());
    }
    for (i, name) in classes.iter().enumerate() {
        if classes[..i].contains(name) {
            return Err(format!("class {name:?} appears twice in the class list"));
        }
    }
    Ok(classes.len())
}

fn check_target(target: &[f64], n_classes: usize) -> Result<(), String> {
    if target.len() != n_classes {
        return Err(format!(
            "target has {} entries, expected one per class ({n_classes})",
            target.len()
        ));
    }
    if let Some((k, v)) = target
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite() || **v < 0.0)
    {
        return Err(format!(
            "target entry {k} is {v}; entries must be finite and non-negative"
        ));
    }
    let sum: f64 = target.iter().sum();
    if (sum - 1.0).abs() > TARGET_SUM_TOLERANCE {
        return Err(format!(
            "target sums to {sum}, not 1 (tolerance {TARGET_SUM_TOLERANCE})"
        ));
    }
    Ok(())
}

fn check_probabilities(
    index: usize,
    probabilities: &[f64],
    n_classes: usize,
) -> Result<(), String> {
    if probabilities.len() != n_classes {
        return Err(format!(
            "observation {index}: {} probabilities, expected one per class ({n_classes})",
            probabilities.len()
        ));
    }
    if let Some((k, v)) = probabilities
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite() || **v < 0.0)
    {
        return Err(format!(
            "observation {index}: probability {k} is {v}; must be finite and non-negative"
        ));
    }
    if probabilities.iter().sum::<f64>() <= 0.0 {
        return Err(format!("observation {index}: probabilities are all zero"));
    }
    Ok(())
}

fn check_options(options: &BiasOptions, n_classes: usize) -> Result<(), String> {
    let level = options.confidence_level;
    if !(level > 0.0 && level < 1.0) {
        return Err(format!("confidence_level is {level}; must lie in (0, 1)"));
    }
    let threshold = options.low_confidence_threshold;
    if !(0.0..=1.0).contains(&threshold) {
        return Err(format!(
            "low_confidence_threshold is {threshold}; must lie in [0, 1]"
        ));
    }
    match &options.target {
        Some(target) => check_target(target, n_classes),
        None => Ok(()),
    }
}

/// The target of `options`, or uniform `1/K`; validated.
fn resolved_target(options: &BiasOptions, n_classes: usize) -> Result<Vec<f64>, String> {
    if n_classes == 0 {
        return Err("the class list is empty (K = 0)".into());
    }
    check_options(options, n_classes)?;
    Ok(options
        .target
        .clone()
        .unwrap_or_else(|| uniform_target(n_classes)))
}

// ---------------------------------------------------------------------------------------------------------
// Counting

/// Index of the largest entry, the first one on ties.
fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (k, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = k;
        }
    }
    best
}

fn normalised(values: &[f64]) -> Vec<f64> {
    let sum: f64 = values.iter().sum();
    values.iter().map(|v| v / sum).collect()
}

/// What one image with a face adds to the counts: one-hot at the argmax, or its normalised probabilities.
fn contribution(probabilities: &[f64], counting: Counting) -> Vec<f64> {
    match counting {
        Counting::Argmax => {
            let mut one_hot = vec![0.0; probabilities.len()];
            one_hot[argmax(probabilities)] = 1.0;
            one_hot
        }
        Counting::Expected => normalised(probabilities),
    }
}

/// Validated per-image contributions, `None` for the images without a face.
fn contributions(
    n_classes: usize,
    observations: &[Observation],
    counting: Counting,
) -> Result<Vec<Option<Vec<f64>>>, String> {
    observations
        .iter()
        .enumerate()
        .map(|(i, obs)| match &obs.probabilities {
            Some(p) => {
                check_probabilities(i, p, n_classes).map(|_| Some(contribution(p, counting)))
            }
            None => Ok(None),
        })
        .collect()
}

fn add_into(acc: &mut [f64], v: &[f64]) {
    for (a, x) in acc.iter_mut().zip(v) {
        *a += x;
    }
}

fn sum_of<'a>(n_classes: usize, vectors: impl IntoIterator<Item = &'a Vec<f64>>) -> Vec<f64> {
    let mut acc = vec![0.0; n_classes];
    for v in vectors {
        add_into(&mut acc, v);
    }
    acc
}

/// Pooled counts `c` (length `K`, zeros included) over the observations with a face.
pub fn pooled_counts(
    n_classes: usize,
    observations: &[Observation],
    counting: Counting,
) -> Result<Vec<f64>, String> {
    let contributions = contributions(n_classes, observations, counting)?;
    Ok(sum_of(n_classes, contributions.iter().flatten()))
}

/// `p = c / Σc`; `None` when `Σc = 0` (no faces).
pub fn distribution(counts: &[f64]) -> Option<Vec<f64>> {
    let total: f64 = counts.iter().sum();
    (total > 0.0).then(|| normalised(counts))
}

/// The uniform distribution `1/K` over `K` classes.
pub fn uniform_target(n_classes: usize) -> Vec<f64> {
    vec![1.0 / n_classes as f64; n_classes]
}

// ---------------------------------------------------------------------------------------------------------
// Divergences

fn check_same_length(p: &[f64], q: &[f64]) -> Result<(), String> {
    if p.len() != q.len() {
        return Err(format!(
            "distribution has {} entries but target has {}",
            p.len(),
            q.len()
        ));
    }
    Ok(())
}

/// PopAlign's discrepancy `D = ‖p − q‖₂ = sqrt(Σ_k (p_k − q_k)²)` with `K` fixed (absent classes count as 0).
pub fn discrepancy_l2(p: &[f64], target: &[f64]) -> Result<f64, String> {
    check_same_length(p, target)?;
    Ok(l2_distance(p, target))
}

/// `‖a − b‖₂` over the common length.
fn l2_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// The official script's discrepancy: absent classes are dropped and `p` is compared with the uniform over the
/// `K_obs` classes that occur, `D_off = sqrt(Σ_{k: p_k > 0} (p_k − 1/K_obs)²)`.
///
/// It differs from [`discrepancy_l2`] against the uniform `1/K` as soon as a class is absent:
/// `D² = Σ_{present} (p_k − 1/K)² + (K − K_obs)/K²`, which is larger (one class only: `D_off = 0`,
/// `D = sqrt((K−1)/K)`). `None` when no class is present.
pub fn discrepancy_official(p: &[f64]) -> Option<f64> {
    let present: Vec<f64> = p.iter().copied().filter(|v| *v > 0.0).collect();
    if present.is_empty() {
        return None;
    }
    let uniform = 1.0 / present.len() as f64;
    Some(
        present
            .iter()
            .map(|v| (v - uniform).powi(2))
            .sum::<f64>()
            .sqrt(),
    )
}

/// `KL(p ‖ q) = Σ_{k: p_k > 0} p_k ln(p_k / q_k)` in nats, with `0 · ln(0/q) = 0` (also for `q = 0`).
/// [`KlDivergence::Infinite`] when some `q_k = 0` while `p_k > 0`.
pub fn kl_divergence(p: &[f64], target: &[f64]) -> Result<KlDivergence, String> {
    check_same_length(p, target)?;
    let mut kl = 0.0;
    for (pk, qk) in p.iter().zip(target).filter(|(pk, _)| **pk > 0.0) {
        if *qk <= 0.0 {
            return Ok(KlDivergence::Infinite);
        }
        kl += pk * (pk / qk).ln();
    }
    Ok(KlDivergence::Finite(kl))
}

/// Total variation `TV = ½ Σ_k |p_k − q_k|`, in `[0, 1]`.
pub fn total_variation(p: &[f64], target: &[f64]) -> Result<f64, String> {
    check_same_length(p, target)?;
    Ok(0.5
        * p.iter()
            .zip(target)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>())
}

/// `‖c/Σc − q‖₂`, `None` when `Σc = 0`. Lengths are checked by the caller.
fn discrepancy_of_counts(counts: &[f64], target: &[f64]) -> Option<f64> {
    distribution(counts).map(|p| l2_distance(&p, target))
}

// ---------------------------------------------------------------------------------------------------------
// Per prompt

/// Observation indices grouped by prompt, in order of first appearance.
fn prompt_groups(observations: &[Observation]) -> Vec<(&str, Vec<usize>)> {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut position: HashMap<&str, usize> = HashMap::new();
    for (i, obs) in observations.iter().enumerate() {
        let slot = *position.entry(&obs.prompt).or_insert_with(|| {
            groups.push((&obs.prompt, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(i);
    }
    groups
}

fn prompt_discrepancies(
    n_classes: usize,
    observations: &[Observation],
    contributions: &[Option<Vec<f64>>],
    target: &[f64],
) -> Vec<PromptDiscrepancy> {
    prompt_groups(observations)
        .into_iter()
        .map(|(prompt, members)| {
            let faces: Vec<&Vec<f64>> = members
                .iter()
                .filter_map(|&i| contributions[i].as_ref())
                .collect();
            let counts = sum_of(n_classes, faces.iter().copied());
            PromptDiscrepancy {
                prompt: prompt.to_string(),
                n_images: members.len(),
                n_faces: faces.len(),
                distribution: distribution(&counts),
                discrepancy: discrepancy_of_counts(&counts, target),
            }
        })
        .collect()
}

/// The discrepancy `‖p_prompt − q‖₂` of each prompt's images, in order of first appearance of the prompt.
pub fn per_prompt_discrepancy(
    n_classes: usize,
    observations: &[Observation],
    options: &BiasOptions,
) -> Result<Vec<PromptDiscrepancy>, String> {
    let target = resolved_target(options, n_classes)?;
    let contributions = contributions(n_classes, observations, options.counting)?;
    Ok(prompt_discrepancies(
        n_classes,
        observations,
        &contributions,
        &target,
    ))
}

fn mean_discrepancy(per_prompt: &[PromptDiscrepancy]) -> Option<f64> {
    let values: Vec<f64> = per_prompt.iter().filter_map(|p| p.discrepancy).collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

// ---------------------------------------------------------------------------------------------------------
// Bootstrap

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

fn quantile(sorted: &[f64], u: f64) -> f64 {
    let h = u * (sorted.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The statistic `‖Σ_units/Σ − q‖₂` over `resamples` draws of `units.len()` units with replacement;
/// draws whose pooled count is zero are skipped.
fn bootstrap_discrepancies(
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

fn ci_images(
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

fn ci_prompts(
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

// ---------------------------------------------------------------------------------------------------------
// Face rate, confidence, identity accuracy

fn share(count: usize, total: usize) -> Option<f64> {
    (total > 0).then(|| count as f64 / total as f64)
}

fn low_confidence_count(observations: &[Observation], threshold: f64) -> usize {
    observations
        .iter()
        .filter_map(|obs| obs.probabilities.as_deref())
        .filter(|p| normalised(p).iter().copied().fold(0.0, f64::max) < threshold)
        .count()
}

/// Identity-specific accuracy: among the images with a face, the share whose argmax class equals
/// `expected_classes[i]` (the class named in the image's prompt, an index into the class list). Images without a
/// face are skipped and counted in `n_no_face`. For a joint (race and gender) accuracy, use the intersectional
/// observations and the index `i_a · K_b + i_b` (see [`intersectional_classes`]).
pub fn identity_accuracy(
    n_classes: usize,
    observations: &[Observation],
    expected_classes: &[usize],
) -> Result<IdentityAccuracy, String> {
    if expected_classes.len() != observations.len() {
        return Err(format!(
            "{} expected classes for {} observations",
            expected_classes.len(),
            observations.len()
        ));
    }
    if let Some((i, k)) = expected_classes
        .iter()
        .enumerate()
        .find(|(_, k)| **k >= n_classes)
    {
        return Err(format!(
            "expected class {k} of observation {i} is out of range (K = {n_classes})"
        ));
    }
    let predicted = contributions(n_classes, observations, Counting::Argmax)?;
    let faces: Vec<(usize, usize)> = predicted
        .iter()
        .zip(expected_classes)
        .filter_map(|(p, &e)| p.as_ref().map(|p| (argmax(p), e)))
        .collect();
    let n_correct = faces.iter().filter(|(p, e)| p == e).count();
    Ok(IdentityAccuracy {
        n_images: observations.len(),
        n_faces: faces.len(),
        n_no_face: observations.len() - faces.len(),
        n_correct,
        accuracy: share(n_correct, faces.len()),
    })
}

// ---------------------------------------------------------------------------------------------------------
// Intersectional axes

/// Class list of the intersection `A × B`, named `"a|b"`, `A`-major: class `(i, j)` has index `i · K_B + j`.
pub fn intersectional_classes(
    classes_a: &[String],
    classes_b: &[String],
) -> Result<Vec<String>, String> {
    check_classes(classes_a)?;
    check_classes(classes_b)?;
    Ok(classes_a
        .iter()
        .flat_map(|a| classes_b.iter().map(move |b| format!("{a}|{b}")))
        .collect())
}

/// Target of the intersection with independent marginals: `q_(i,j) = q_A,i · q_B,j` (same order as
/// [`intersectional_classes`]). Both marginals are validated. For a non-product intersectional target, pass the
/// `K_A · K_B` vector to [`BiasOptions::target`] directly.
pub fn intersectional_target(target_a: &[f64], target_b: &[f64]) -> Result<Vec<f64>, String> {
    check_target(target_a, target_a.len()).map_err(|e| format!("first axis: {e}"))?;
    check_target(target_b, target_b.len()).map_err(|e| format!("second axis: {e}"))?;
    Ok(target_a
        .iter()
        .flat_map(|a| target_b.iter().map(move |b| a * b))
        .collect())
}

/// Observations of the intersection `A × B` from two axes classified on the same images (same order, same
/// prompts). Probabilities are the outer product of the normalised per-axis probabilities (the two classifiers
/// treated as independent); its argmax is the pair of per-axis argmaxes. No face on either axis gives no face.
pub fn intersectional_observations(
    n_classes_a: usize,
    observations_a: &[Observation],
    n_classes_b: usize,
    observations_b: &[Observation],
) -> Result<Vec<Observation>, String> {
    if observations_a.len() != observations_b.len() {
        return Err(format!(
            "the axes have {} and {} observations; they must describe the same images",
            observations_a.len(),
            observations_b.len()
        ));
    }
    observations_a
        .iter()
        .zip(observations_b)
        .enumerate()
        .map(|(i, (a, b))| joint_observation(i, (n_classes_a, a), (n_classes_b, b)))
        .collect()
}

fn joint_observation(
    index: usize,
    (n_classes_a, a): (usize, &Observation),
    (n_classes_b, b): (usize, &Observation),
) -> Result<Observation, String> {
    if a.prompt != b.prompt {
        return Err(format!(
            "observation {index}: prompts differ ({:?} vs {:?})",
            a.prompt, b.prompt
        ));
    }
    let probabilities = match (&a.probabilities, &b.probabilities) {
        (Some(pa), Some(pb)) => {
            check_probabilities(index, pa, n_classes_a).map_err(|e| format!("first axis, {e}"))?;
            check_probabilities(index, pb, n_classes_b).map_err(|e| format!("second axis, {e}"))?;
            let (pa, pb) = (normalised(pa), normalised(pb));
            Some(
                pa.iter()
                    .flat_map(|x| pb.iter().map(move |y| x * y))
                    .collect(),
            )
        }
        _ => None,
    };
    Ok(Observation {
        prompt: a.prompt.clone(),
        probabilities,
    })
}

// ---------------------------------------------------------------------------------------------------------
// Summary

fn note(n_images: usize, n_faces: usize) -> Option<String> {
    if n_images == 0 {
        Some("no observations: every rate, distribution and discrepancy is undefined (null)".into())
    } else if n_faces == 0 {
        Some(format!(
            "no face in any of the {n_images} images: distribution, discrepancies, KL, TV and intervals are \
             undefined (null)"
        ))
    } else {
        None
    }
}

/// All bias metrics of one axis. `classes` fixes `K` and the order of every vector; `observations` has one
/// entry per generated image. Errors (never panics) on an empty or duplicated class list, a probability vector of
/// the wrong length or with negative / non-finite entries or a zero sum, a target of the wrong length, with
/// negative entries or not summing to 1, a confidence level outside (0, 1) or a threshold outside [0, 1].
pub fn summarize_axis(
    classes: &[String],
    observations: &[Observation],
    options: &BiasOptions,
) -> Result<AxisSummary, String> {
    let n_classes = check_classes(classes)?;
    let target = resolved_target(options, n_classes)?;
    let contributions = contributions(n_classes, observations, options.counting)?;
    let counts = sum_of(n_classes, contributions.iter().flatten());
    let p = distribution(&counts);
    let n_faces = contributions.iter().flatten().count();
    let per_prompt = prompt_discrepancies(n_classes, observations, &contributions, &target);
    Ok(AxisSummary {
        classes: classes.to_vec(),
        counting: options.counting,
        n_images: observations.len(),
        n_faces,
        n_no_face: observations.len() - n_faces,
        face_found_rate: share(n_faces, observations.len()),
        low_confidence_share: share(
            low_confidence_count(observations, options.low_confidence_threshold),
            n_faces,
        ),
        low_confidence_threshold: options.low_confidence_threshold,
        classes_present: counts.iter().filter(|c| **c > 0.0).count(),
        discrepancy: discrepancy_of_counts(&counts, &target),
        discrepancy_official: p.as_deref().and_then(discrepancy_official),
        kl: p
            .as_deref()
            .map(|p| kl_divergence(p, &target))
            .transpose()?,
        tv: p
            .as_deref()
            .map(|p| total_variation(p, &target))
            .transpose()?,
        counts,
        distribution: p,
        confidence_level: options.confidence_level,
        bootstrap_resamples: options.bootstrap_resamples,
        seed: options.seed,
        ci_images: ci_images(&contributions, &target, options),
        ci_prompts: ci_prompts(observations, &contributions, &target, options),
        n_prompts: per_prompt.len(),
        n_prompts_without_faces: per_prompt.iter().filter(|p| p.n_faces == 0).count(),
        mean_prompt_discrepancy: mean_discrepancy(&per_prompt),
        per_prompt,
        target,
        note: note(observations.len(), n_faces),
    })
}
