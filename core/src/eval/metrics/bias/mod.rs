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
//!   the classes that occur and compares race with the uniform over those `K_obs` classes:
//!   `D_off = sqrt(Σ_{k: p_k > 0} (p_k − 1/K_obs)²)`, and gender with a fixed `[½, ½]` (which numpy broadcasts over
//!   a single gender, so on two-class axes `D_off = D`). With all classes present it equals `D` (uniform target);
//!   with absent races it is smaller: one race only gives `D_off = 0` but `D = sqrt(5/6)`.
//! - `KL(p ‖ q) = Σ_{k: p_k > 0} p_k ln(p_k / q_k)` in nats, with `0 · ln(0/q) = 0` (also for `q = 0`); if some
//!   `q_k = 0` with `p_k > 0` it is [`KlDivergence::Infinite`].
//! - Total variation `TV = ½ Σ_k |p_k − q_k|`, in `[0, 1]`.
//! - Bootstrap confidence intervals of `D` by the percentile method, resampling either images (with a face) or
//!   prompts (each with all its images).

mod bootstrap;
mod discrepancy;
mod identity;
mod intersection;

use serde::{Deserialize, Serialize};

pub use bootstrap::*;
pub use discrepancy::*;
pub use identity::*;
pub use intersection::*;

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
    /// The official script's variant ([`discrepancy_official`]): on axes of more than two classes, uniform over
    /// the `classes_present` classes only (absent classes dropped); on two-class axes equal to `discrepancy`.
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
