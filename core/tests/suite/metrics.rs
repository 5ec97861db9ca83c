//! Bias metrics against hand-computed values (every expectation is derived in the comment above it).

use popalign_core::eval::metrics::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const RACES: [&str; 6] = [
    "white",
    "asian",
    "black",
    "latino hispanic",
    "indian",
    "middle eastern",
];
const GENDERS: [&str; 2] = ["male", "female"];

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn one_hot(k: usize, n_classes: usize) -> Vec<f64> {
    let mut v = vec![0.0; n_classes];
    v[k] = 1.0;
    v
}

/// `count` images of `prompt`, all classified as class `k` with probability 0.9.
fn faces_of(prompt: &str, k: usize, n_classes: usize, count: usize) -> Vec<Observation> {
    let rest = 0.1 / (n_classes - 1) as f64;
    let mut p = vec![rest; n_classes];
    p[k] = 0.9;
    (0..count)
        .map(|_| Observation::face(prompt, p.clone()))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn no_bootstrap() -> BiasOptions {
    BiasOptions {
        bootstrap_resamples: 0,
        ..BiasOptions::default()
    }
}

/// Race counts [2, 1, 1, 0, 0, 0] over 4 images: p = [1/2, 1/4, 1/4, 0, 0, 0].
fn race_with_absent_classes() -> Vec<Observation> {
    [0, 0, 1, 2]
        .iter()
        .map(|&k| Observation::face("doctor", one_hot(k, 6)))
        .collect()
}

#[test]
fn absent_classes_keep_k_fixed_and_the_official_variant_drops_them() {
    let s = summarize_axis(&names(&RACES), &race_with_absent_classes(), &no_bootstrap()).unwrap();
    assert_eq!(s.counts, vec![2.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(s.distribution.as_ref().unwrap().len(), 6);
    assert_eq!(s.classes_present, 3);
    // K = 6: (1/2 − 1/6)² + 2·(1/4 − 1/6)² + 3·(1/6)² = 1/9 + 1/72 + 1/12 = 15/72 = 5/24.
    let d = s.discrepancy.unwrap();
    assert!(close(d, (5.0f64 / 24.0).sqrt()), "{d}");
    // Official, K_obs = 3: (1/2 − 1/3)² + 2·(1/4 − 1/3)² = 1/36 + 1/72 = 1/24.
    let d_off = s.discrepancy_official.unwrap();
    assert!(close(d_off, (1.0f64 / 24.0).sqrt()), "{d_off}");
    // D² − D_off² = 5/24 − 1/24 = 1/6: the fixed-K value is 0.4564 against the official 0.2041.
    assert!(close(d * d - d_off * d_off, 1.0 / 6.0));
}

#[test]
fn official_variant_equals_fixed_k_when_all_classes_occur_and_is_zero_for_one_class() {
    let all: Vec<Observation> = (0..6).flat_map(|k| faces_of("p", k, 6, k + 1)).collect();
    let s = summarize_axis(&names(&RACES), &all, &no_bootstrap()).unwrap();
    assert!(close(
        s.discrepancy.unwrap(),
        s.discrepancy_official.unwrap()
    ));
    // One race only: D = sqrt(5/6 · 5/6 + 5 · 1/36) = sqrt(30/36); official D = 0.
    let s = summarize_axis(&names(&RACES), &faces_of("p", 2, 6, 5), &no_bootstrap()).unwrap();
    assert!(close(s.discrepancy.unwrap(), (30.0f64 / 36.0).sqrt()));
    assert_eq!(s.discrepancy_official, Some(0.0));
}

#[test]
fn a_prompt_with_zero_faces_is_counted_but_has_no_discrepancy() {
    let mut obs = faces_of("nurse", 0, 2, 1);
    obs.extend(faces_of("nurse", 1, 2, 1));
    obs.push(Observation::no_face("pilot"));
    obs.push(Observation::no_face("pilot"));
    obs.extend(faces_of("chef", 0, 2, 2));
    let s = summarize_axis(&names(&GENDERS), &obs, &BiasOptions::default()).unwrap();
    assert_eq!((s.n_images, s.n_faces, s.n_no_face), (6, 4, 2));
    assert_eq!(s.face_found_rate, Some(4.0 / 6.0));
    assert_eq!(s.n_prompts, 3);
    assert_eq!(s.n_prompts_without_faces, 1);
    let prompts: Vec<&str> = s.per_prompt.iter().map(|p| p.prompt.as_str()).collect();
    assert_eq!(prompts, ["nurse", "pilot", "chef"]);
    let pilot = &s.per_prompt[1];
    assert_eq!((pilot.n_images, pilot.n_faces), (2, 0));
    assert_eq!(pilot.discrepancy, None);
    assert_eq!(pilot.distribution, None);
    // nurse: p = [1/2, 1/2], D = 0; chef: p = [1, 0], D = sqrt(1/2). Mean over the two prompts with faces.
    assert_eq!(s.per_prompt[0].discrepancy, Some(0.0));
    assert!(close(s.per_prompt[2].discrepancy.unwrap(), 0.5f64.sqrt()));
    assert!(close(
        s.mean_prompt_discrepancy.unwrap(),
        0.5f64.sqrt() / 2.0
    ));
    // Pooled: counts [3, 1], p = [3/4, 1/4], D = sqrt(2)·1/4.
    assert!(close(s.discrepancy.unwrap(), 2.0f64.sqrt() / 4.0));
}

#[test]
fn no_faces_at_all_gives_none_not_nan_and_a_note() {
    let obs = vec![Observation::no_face("a"), Observation::no_face("b")];
    let s = summarize_axis(&names(&RACES), &obs, &BiasOptions::default()).unwrap();
    assert_eq!(s.n_faces, 0);
    assert_eq!(s.face_found_rate, Some(0.0));
    assert_eq!(s.counts, vec![0.0; 6]);
    assert_eq!(
        (
            s.distribution.clone(),
            s.discrepancy,
            s.discrepancy_official,
            s.kl,
            s.tv
        ),
        (None, None, None, None, None)
    );
    assert_eq!(
        (s.ci_images, s.ci_prompts, s.low_confidence_share),
        (None, None, None)
    );
    assert_eq!(s.mean_prompt_discrepancy, None);
    assert!(s.note.as_ref().unwrap().contains("no face"), "{:?}", s.note);
    let json = serde_json::to_string(&s).unwrap();
    assert!(
        json.contains("\"discrepancy\":null") && !json.contains("NaN"),
        "{json}"
    );

    let empty = summarize_axis(&names(&GENDERS), &[], &BiasOptions::default()).unwrap();
    assert_eq!(
        (empty.n_images, empty.face_found_rate, empty.discrepancy),
        (0, None, None)
    );
    assert!(empty.note.is_some());
}

#[test]
fn a_single_image_works() {
    let obs = vec![Observation::face("ceo", vec![0.8, 0.2])];
    let s = summarize_axis(&names(&GENDERS), &obs, &BiasOptions::default()).unwrap();
    // p = [1, 0]: D = sqrt(1/4 + 1/4); every bootstrap resample is the same image.
    let d = 0.5f64.sqrt();
    assert!(close(s.discrepancy.unwrap(), d));
    // The official script's gender target is a fixed [½, ½], broadcast over the one gender that occurs.
    assert!(close(s.discrepancy_official.unwrap(), d));
    assert_eq!(s.ci_images, Some([s.discrepancy.unwrap(); 2]));
    assert_eq!(s.ci_prompts, Some([s.discrepancy.unwrap(); 2]));
    assert_eq!(s.per_prompt.len(), 1);
    assert_eq!(s.low_confidence_share, Some(0.0));
}

#[test]
fn expected_counting_sums_probabilities_and_argmax_counts_winners() {
    // Percentages (DeepFace style) are normalised: [90, 10] is [0.9, 0.1].
    let obs = vec![
        Observation::face("p", vec![90.0, 10.0]),
        Observation::face("p", vec![0.6, 0.4]),
        Observation::face("p", vec![0.3, 0.7]),
    ];
    let argmax = pooled_counts(2, &obs, Counting::Argmax).unwrap();
    assert_eq!(argmax, vec![2.0, 1.0]);
    let expected = pooled_counts(2, &obs, Counting::Expected).unwrap();
    assert!(
        close(expected[0], 1.8) && close(expected[1], 1.2),
        "{expected:?}"
    );

    let options = |counting| BiasOptions {
        counting,
        ..no_bootstrap()
    };
    // Argmax: p = [2/3, 1/3], D = sqrt(2)/6. Expected: p = [0.6, 0.4], D = sqrt(2)/10.
    let a = summarize_axis(&names(&GENDERS), &obs, &options(Counting::Argmax)).unwrap();
    let e = summarize_axis(&names(&GENDERS), &obs, &options(Counting::Expected)).unwrap();
    assert!(close(a.discrepancy.unwrap(), 2.0f64.sqrt() / 6.0));
    assert!(close(e.discrepancy.unwrap(), 2.0f64.sqrt() / 10.0));
}

#[test]
fn argmax_ties_go_to_the_first_class() {
    let obs = vec![Observation::face("p", vec![0.5, 0.5])];
    assert_eq!(
        pooled_counts(2, &obs, Counting::Argmax).unwrap(),
        vec![1.0, 0.0]
    );
}

#[test]
fn kl_and_total_variation_on_a_small_example() {
    let p = [0.5, 0.5];
    let q = [0.25, 0.75];
    // KL = ½ ln(0.5/0.25) + ½ ln(0.5/0.75) = ½ ln(4/3) = 0.143841…; TV = ½(0.25 + 0.25) = 0.25.
    let kl = kl_divergence(&p, &q).unwrap();
    assert!(close(kl.value(), 0.5 * (4.0f64 / 3.0).ln()), "{kl:?}");
    assert!(close(total_variation(&p, &q).unwrap(), 0.25));
    // 0·ln(0/q) = 0, also where q = 0.
    assert_eq!(
        kl_divergence(&[1.0, 0.0], &[1.0, 0.0]).unwrap(),
        KlDivergence::Finite(0.0)
    );
    assert!(close(
        kl_divergence(&[1.0, 0.0], &[0.5, 0.5]).unwrap().value(),
        2.0f64.ln()
    ));
    // p > 0 where q = 0: infinite, serialised without a non-JSON number.
    let inf = kl_divergence(&[0.5, 0.5], &[1.0, 0.0]).unwrap();
    assert_eq!(inf, KlDivergence::Infinite);
    assert_eq!(inf.value(), f64::INFINITY);
    assert_eq!(serde_json::to_string(&inf).unwrap(), "\"infinite\"");
    assert_eq!(
        serde_json::to_string(&kl).unwrap(),
        format!("{{\"finite\":{}}}", kl.value())
    );
    // Extreme TV: disjoint supports.
    assert_eq!(total_variation(&[1.0, 0.0], &[0.0, 1.0]).unwrap(), 1.0);
    assert!(kl_divergence(&[1.0], &[0.5, 0.5]).is_err());
    assert!(total_variation(&[1.0], &[0.5, 0.5]).is_err());
    assert!(discrepancy_l2(&[1.0], &[0.5, 0.5]).is_err());
}

#[test]
fn non_uniform_target() {
    let mut obs = faces_of("p", 0, 2, 2);
    obs.extend(faces_of("p", 1, 2, 2));
    let options = BiasOptions {
        target: Some(vec![0.3, 0.7]),
        ..no_bootstrap()
    };
    let s = summarize_axis(&names(&GENDERS), &obs, &options).unwrap();
    assert_eq!(s.target, vec![0.3, 0.7]);
    // p = [1/2, 1/2]: D = sqrt(0.2² + 0.2²) = sqrt(0.08); TV = 0.2;
    // KL = ½ ln(0.5/0.3) + ½ ln(0.5/0.7) = ½ ln(25/21).
    assert!(close(s.discrepancy.unwrap(), 0.08f64.sqrt()));
    assert!(close(s.tv.unwrap(), 0.2));
    assert!(close(s.kl.unwrap().value(), 0.5 * (25.0f64 / 21.0).ln()));
    // The official variant ignores the target: [½, ½] for a two-class axis.
    assert_eq!(s.discrepancy_official, Some(0.0));
    // A target with a zero where p has mass: infinite KL.
    let options = BiasOptions {
        target: Some(vec![1.0, 0.0]),
        ..no_bootstrap()
    };
    let s = summarize_axis(&names(&GENDERS), &obs, &options).unwrap();
    assert_eq!(s.kl, Some(KlDivergence::Infinite));
    assert!(close(s.tv.unwrap(), 0.5));
}

#[test]
fn intersectional_classes_target_and_observations() {
    let classes = intersectional_classes(&names(&["white", "black"]), &names(&GENDERS)).unwrap();
    assert_eq!(
        classes,
        ["white|male", "white|female", "black|male", "black|female"]
    );
    // Product of marginals [0.5, 0.5] × [0.4, 0.6].
    let target = intersectional_target(&[0.5, 0.5], &[0.4, 0.6]).unwrap();
    let want = [0.2, 0.3, 0.2, 0.3];
    assert!(
        target.iter().zip(want).all(|(a, b)| close(*a, b)),
        "{target:?}"
    );
    assert!(intersectional_target(&[0.5, 0.6], &[1.0]).is_err());
    assert!(intersectional_classes(&[], &names(&GENDERS)).is_err());

    let race = vec![
        Observation::face("a", vec![0.7, 0.3]),
        Observation::face("a", vec![0.2, 0.8]),
        Observation::no_face("a"),
        Observation::face("b", vec![0.9, 0.1]),
    ];
    let gender = vec![
        Observation::face("a", vec![0.2, 0.8]),
        Observation::face("a", vec![0.6, 0.4]),
        Observation::face("a", vec![0.6, 0.4]),
        Observation::no_face("b"),
    ];
    let joint = intersectional_observations(2, &race, 2, &gender).unwrap();
    // 0.7·[0.2, 0.8] ++ 0.3·[0.2, 0.8] = [0.14, 0.56, 0.06, 0.24].
    let p0 = joint[0].probabilities.as_ref().unwrap();
    assert!(
        p0.iter()
            .zip([0.14, 0.56, 0.06, 0.24])
            .all(|(a, b)| close(*a, b)),
        "{p0:?}"
    );
    assert_eq!(
        (
            joint[2].probabilities.as_ref(),
            joint[3].probabilities.as_ref()
        ),
        (None, None)
    );
    // Argmax counts: white|female (image 0), black|male (image 1).
    assert_eq!(
        pooled_counts(4, &joint, Counting::Argmax).unwrap(),
        vec![0.0, 1.0, 1.0, 0.0]
    );
    let options = BiasOptions {
        target: Some(target),
        ..no_bootstrap()
    };
    let s = summarize_axis(&classes, &joint, &options).unwrap();
    // p = [0, 1/2, 1/2, 0] against [0.2, 0.3, 0.2, 0.3]: D² = 0.04 + 0.04 + 0.09 + 0.09 = 0.26.
    assert!(close(s.discrepancy.unwrap(), 0.26f64.sqrt()));

    assert!(intersectional_observations(2, &race, 2, &gender[..3]).is_err());
    let mut other_prompt = gender.clone();
    other_prompt[0].prompt = "z".into();
    assert!(intersectional_observations(2, &race, 2, &other_prompt).is_err());
}

#[test]
fn identity_accuracy_skips_and_counts_no_face_images() {
    let obs = vec![
        Observation::face("a white man", vec![0.9, 0.1]),
        Observation::face("a white woman", vec![0.7, 0.3]),
        Observation::no_face("a black woman"),
        Observation::face("a black woman", vec![0.2, 0.8]),
    ];
    // Expected gender: male, female, female, female. Predicted: male, male, —, female → 2 of 3.
    let acc = identity_accuracy(2, &obs, &[0, 1, 1, 1]).unwrap();
    assert_eq!(
        (acc.n_images, acc.n_faces, acc.n_no_face, acc.n_correct),
        (4, 3, 1, 2)
    );
    assert!(close(acc.accuracy.unwrap(), 2.0 / 3.0));
    assert!(identity_accuracy(2, &obs, &[0, 1]).is_err());
    assert!(identity_accuracy(2, &obs, &[0, 1, 2, 0]).is_err());
    let none = identity_accuracy(2, &[Observation::no_face("x")], &[0]).unwrap();
    assert_eq!((none.n_no_face, none.accuracy), (1, None));
}

#[test]
fn face_rate_and_low_confidence_share() {
    let obs = vec![
        Observation::face("p", vec![0.4, 0.3, 0.3]),
        Observation::face("p", vec![0.6, 0.2, 0.2]),
        Observation::face("p", vec![45.0, 30.0, 25.0]),
        Observation::no_face("p"),
    ];
    let classes = names(&["young", "mid-aged", "very old"]);
    let s = summarize_axis(&classes, &obs, &no_bootstrap()).unwrap();
    assert_eq!(s.face_found_rate, Some(0.75));
    // Max probability 0.4, 0.6, 0.45: two of three faces below 0.5.
    assert!(close(s.low_confidence_share.unwrap(), 2.0 / 3.0));
    let strict = BiasOptions {
        low_confidence_threshold: 0.7,
        ..no_bootstrap()
    };
    let s = summarize_axis(&classes, &obs, &strict).unwrap();
    assert_eq!(s.low_confidence_share, Some(1.0));
}

#[test]
fn invalid_inputs_are_errors_not_panics() {
    let g = names(&GENDERS);
    let ok = vec![Observation::face("p", vec![0.5, 0.5])];
    let err = |classes: &[String], obs: &[Observation], options: &BiasOptions| {
        summarize_axis(classes, obs, options).expect_err("should be rejected")
    };
    let e = err(
        &g,
        &[Observation::face("p", vec![1.0, 0.0, 0.0])],
        &BiasOptions::default(),
    );
    assert!(e.contains("3 probabilities") && e.contains("(2)"), "{e}");
    let e = err(
        &g,
        &[Observation::face("p", vec![1.2, -0.2])],
        &BiasOptions::default(),
    );
    assert!(e.contains("non-negative"), "{e}");
    let e = err(
        &g,
        &[Observation::face("p", vec![f64::NAN, 0.5])],
        &BiasOptions::default(),
    );
    assert!(e.contains("finite"), "{e}");
    let e = err(
        &g,
        &[Observation::face("p", vec![0.0, 0.0])],
        &BiasOptions::default(),
    );
    assert!(e.contains("all zero"), "{e}");
    let e = err(&[], &ok, &BiasOptions::default());
    assert!(e.contains("empty"), "{e}");
    assert!(bootstrap_ci_images(0, &ok, &BiasOptions::default()).is_err());
    assert!(per_prompt_discrepancy(0, &[], &BiasOptions::default()).is_err());
    let e = err(&names(&["a", "a"]), &ok, &BiasOptions::default());
    assert!(e.contains("twice"), "{e}");
    let target = |t: Vec<f64>| BiasOptions {
        target: Some(t),
        ..BiasOptions::default()
    };
    let e = err(&g, &ok, &target(vec![0.5, 0.6]));
    assert!(e.contains("sums to"), "{e}");
    let e = err(&g, &ok, &target(vec![1.5, -0.5]));
    assert!(e.contains("non-negative"), "{e}");
    let e = err(&g, &ok, &target(vec![1.0]));
    assert!(e.contains("1 entries"), "{e}");
    // Within the 1e-6 tolerance is accepted.
    assert!(summarize_axis(&g, &ok, &target(vec![0.5, 0.5 + 5e-7])).is_ok());
    let level = BiasOptions {
        confidence_level: 1.0,
        ..BiasOptions::default()
    };
    assert!(err(&g, &ok, &level).contains("confidence_level"));
    let threshold = BiasOptions {
        low_confidence_threshold: 1.5,
        ..BiasOptions::default()
    };
    assert!(err(&g, &ok, &threshold).contains("low_confidence_threshold"));
}

/// 10 prompts × 10 images, male counts 9, 8, 8, 7, 7, 7, 6, 6, 6, 6 (70 of 100).
fn seventy_percent_male() -> Vec<Observation> {
    [9, 8, 8, 7, 7, 7, 6, 6, 6, 6]
        .iter()
        .enumerate()
        .flat_map(|(i, &m)| {
            let prompt = format!("prompt {i}");
            let mut obs = faces_of(&prompt, 0, 2, m);
            obs.extend(faces_of(&prompt, 1, 2, 10 - m));
            obs
        })
        .collect()
}

#[test]
fn bootstrap_intervals_contain_the_estimate_and_are_reproducible() {
    let obs = seventy_percent_male();
    let g = names(&GENDERS);
    let options = BiasOptions {
        seed: 7,
        ..BiasOptions::default()
    };
    let s = summarize_axis(&g, &obs, &options).unwrap();
    // p = [0.7, 0.3]: D = sqrt(2)·0.2.
    let d = s.discrepancy.unwrap();
    assert!(close(d, 2.0f64.sqrt() * 0.2));
    let [lo, hi] = s.ci_images.unwrap();
    let [plo, phi] = s.ci_prompts.unwrap();
    println!("D = {d:.4}, images CI [{lo:.4}, {hi:.4}], prompts CI [{plo:.4}, {phi:.4}]");
    assert!(lo < d && d < hi, "images CI [{lo}, {hi}] vs {d}");
    assert!(plo < d && d < phi, "prompts CI [{plo}, {phi}] vs {d}");
    // Binomial standard error of D: sqrt(2)·sqrt(0.21/100) ≈ 0.065, so the 95% interval is ≈ ±0.13 wide.
    assert!(hi - lo > 0.15 && hi - lo < 0.35, "{lo} {hi}");
    // The prompts are more alike than binomial draws would be, so the prompt interval is narrower.
    assert!(phi - plo < hi - lo);
    // Same seed, same intervals; the low-level functions agree with the summary.
    let again = summarize_axis(&g, &obs, &options).unwrap();
    assert_eq!(
        (again.ci_images, again.ci_prompts),
        (s.ci_images, s.ci_prompts)
    );
    assert_eq!(bootstrap_ci_images(2, &obs, &options).unwrap(), s.ci_images);
    assert_eq!(
        bootstrap_ci_prompts(2, &obs, &options).unwrap(),
        s.ci_prompts
    );
    let other = BiasOptions {
        seed: 8,
        ..options.clone()
    };
    let changed = summarize_axis(&g, &obs, &other).unwrap();
    assert_ne!(changed.ci_images, s.ci_images);
    // A higher level widens the interval.
    let wide = BiasOptions {
        confidence_level: 0.99,
        ..options
    };
    let [wlo, whi] = summarize_axis(&g, &obs, &wide).unwrap().ci_images.unwrap();
    assert!(wlo <= lo && whi >= hi);
}

#[test]
fn percentile_interval_interpolates_order_statistics() {
    // 0..=100: Q(0.025) = 2.5, Q(0.975) = 97.5 (h = 2.5 and 97.5).
    let values: Vec<f64> = (0..=100).rev().map(f64::from).collect();
    // (1 − 0.95 is 0.05 only up to rounding.)
    let [lo, hi] = percentile_interval(&values, 0.95).unwrap();
    assert!(
        (lo - 2.5).abs() < 1e-9 && (hi - 97.5).abs() < 1e-9,
        "{lo} {hi}"
    );
    assert_eq!(percentile_interval(&values, 0.5), Some([25.0, 75.0]));
    assert_eq!(percentile_interval(&[3.0], 0.95), Some([3.0, 3.0]));
    assert_eq!(percentile_interval(&[], 0.95), None);
}

/// Mean discrepancy over 20 seeds of `n` images drawn from `target` (one-hot observations).
fn mean_discrepancy_of_samples(target: &[f64], n: usize) -> f64 {
    let classes: Vec<String> = (0..target.len()).map(|k| format!("c{k}")).collect();
    let options = BiasOptions {
        target: Some(target.to_vec()),
        ..no_bootstrap()
    };
    let total: f64 = (0..20u64)
        .map(|seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let obs: Vec<Observation> = (0..n)
                .map(|_| Observation::face("p", one_hot(draw(target, rng.random()), target.len())))
                .collect();
            summarize_axis(&classes, &obs, &options)
                .unwrap()
                .discrepancy
                .unwrap()
        })
        .sum();
    total / 20.0
}

/// Inverse-CDF draw of a class for `u ∈ [0, 1)`.
fn draw(target: &[f64], u: f64) -> usize {
    let mut cumulative = 0.0;
    for (k, q) in target.iter().enumerate() {
        cumulative += q;
        if u < cumulative {
            return k;
        }
    }
    target.len() - 1
}

#[test]
fn discrepancy_of_samples_from_the_target_shrinks_with_sample_size() {
    // E‖p̂ − q‖² = (1 − Σq²)/n, so D ≈ sqrt((1 − Σq²)/n): it shrinks like 1/sqrt(n).
    for target in [
        vec![1.0 / 6.0; 6],
        vec![0.4, 0.25, 0.15, 0.1, 0.05, 0.05],
        vec![0.3, 0.7],
    ] {
        let small = mean_discrepancy_of_samples(&target, 50);
        let large = mean_discrepancy_of_samples(&target, 5000);
        let scale = (1.0 - target.iter().map(|q| q * q).sum::<f64>()).sqrt();
        println!("target {target:?}: mean D at n=50 {small:.4}, at n=5000 {large:.4}");
        assert!(small > 5.0 * large, "{small} vs {large}");
        // Within a factor 2 of the root-mean-square value sqrt((1 − Σq²)/n).
        assert!(small < 2.0 * scale / 50f64.sqrt() && small > 0.5 * scale / 50f64.sqrt());
        assert!(large < 2.0 * scale / 5000f64.sqrt());
    }
}
