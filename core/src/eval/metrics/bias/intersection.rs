//! Intersectional axes (e.g. `race|gender`): joint classes, targets and observations.

use super::*;

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

pub(super) fn joint_observation(
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
