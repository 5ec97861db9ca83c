//! Face rate, low-confidence share, and the accuracy on identity-specific prompts.

use super::*;

pub(super) fn share(count: usize, total: usize) -> Option<f64> {
    (total > 0).then(|| count as f64 / total as f64)
}

pub(super) fn low_confidence_count(observations: &[Observation], threshold: f64) -> usize {
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
