//! Counting, the discrepancy and the divergences, pooled and per prompt.

use std::collections::HashMap;

use super::*;

/// Index of the largest entry, the first one on ties.
pub(super) fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (k, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = k;
        }
    }
    best
}

pub(super) fn normalised(values: &[f64]) -> Vec<f64> {
    let sum: f64 = values.iter().sum();
    values.iter().map(|v| v / sum).collect()
}

/// What one image with a face adds to the counts: one-hot at the argmax, or its normalised probabilities.
pub(super) fn contribution(probabilities: &[f64], counting: Counting) -> Vec<f64> {
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
pub(super) fn contributions(
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

pub(super) fn add_into(acc: &mut [f64], v: &[f64]) {
    for (a, x) in acc.iter_mut().zip(v) {
        *a += x;
    }
}

pub(super) fn sum_of<'a>(
    n_classes: usize,
    vectors: impl IntoIterator<Item = &'a Vec<f64>>,
) -> Vec<f64> {
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

pub(super) fn check_same_length(p: &[f64], q: &[f64]) -> Result<(), String> {
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
pub(super) fn l2_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// The official script's discrepancy (`eval/classifier.py`), number for number. The script lists only the classes
/// that occur, `p_obs` (length `K_obs`), and subtracts a target with numpy:
///
/// - race (and here every axis of more than two classes): the uniform over the classes that occur,
///   `D_off = sqrt(Σ_{k: p_k > 0} (p_k − 1/K_obs)²)`, so absent classes shrink `K` (one race only: 0);
/// - gender (here every two-class axis): the fixed `[½, ½]`. With both classes present that is [`discrepancy_l2`]
///   against the uniform; with one, numpy broadcasts `[1] − [½, ½]`, which gives `√½`, also the fixed-`K` value.
///   So on two-class axes the official number equals `D`.
///
/// `None` when no class is present.
pub fn discrepancy_official(p: &[f64]) -> Option<f64> {
    let present: Vec<f64> = p.iter().copied().filter(|v| *v > 0.0).collect();
    if present.is_empty() {
        return None;
    }
    if p.len() == 2 {
        // Both genders: `p − [½, ½]`. One: numpy's `[1] − [½, ½]`, whose norm √½ is also `‖[1, 0] − [½, ½]‖`.
        return Some(l2_distance(p, &[0.5, 0.5]));
    }
    let uniform = 1.0 / present.len() as f64;
    Some(l2_distance(&present, &vec![uniform; present.len()]))
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
pub(super) fn discrepancy_of_counts(counts: &[f64], target: &[f64]) -> Option<f64> {
    distribution(counts).map(|p| l2_distance(&p, target))
}

/// Observation indices grouped by prompt, in order of first appearance.
pub(super) fn prompt_groups(observations: &[Observation]) -> Vec<(&str, Vec<usize>)> {
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

pub(super) fn prompt_discrepancies(
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

pub(super) fn mean_discrepancy(per_prompt: &[PromptDiscrepancy]) -> Option<f64> {
    let values: Vec<f64> = per_prompt.iter().filter_map(|p| p.discrepancy).collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}
