//! The toy world: its classifier reads every rendered (occupation, shape, colour) correctly, finds no
//! figure on a bare background, and the biased sampler has the shares the world declares.

use burn::backend::NdArray;
use burn::prelude::*;
use popalign_core::eval::classify::{AttributeClassifier, Scorer, argmax};
use popalign_core::toy::classifier::OccupationAccuracy;
use popalign_core::toy::render::render;
use popalign_core::toy::world::SIZE;
use popalign_core::toy::{TOY, ToyClassifier};

type B = NdArray<f32>;

fn to_unit(
    images: Vec<Vec<f32>>,
    device: &<B as burn::tensor::backend::BackendTypes>::Device,
) -> Tensor<B, 4> {
    let n = images.len();
    let flat: Vec<f32> = images.concat().iter().map(|v| (v + 1.0) / 2.0).collect();
    Tensor::<B, 1>::from_floats(flat.as_slice(), device).reshape([n, 3, SIZE, SIZE])
}

#[test]
fn classifier_reads_every_rendered_combination() {
    let device = Default::default();
    let classifier = ToyClassifier::<B>::new(&TOY, &device);
    let mut seed = 1u64;
    // A small LCG-driven Box–Muller source of normal draws, so the background noise is exercised.
    let mut normal = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u1 = ((seed >> 11) as f64 / (1u64 << 53) as f64).max(1e-12);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u2 = (seed >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    };
    let mut images = Vec::new();
    let mut truth = Vec::new();
    let mut prompts = Vec::new();
    for occupation in 0..TOY.occupations.len() {
        for figure in TOY.all_figures() {
            images.push(render(&TOY, occupation, figure, &mut normal));
            truth.push((occupation, figure));
            prompts.push(TOY.specific_prompt(occupation, figure));
        }
    }
    let batch = to_unit(images, &device);
    let results = classifier.classify(batch.clone());
    let mut least_confident: f64 = 1.0;
    for (result, (_, figure)) in results.iter().zip(&truth) {
        assert!(result.face_found);
        let gender = &result.probabilities["gender"];
        let race = &result.probabilities["race"];
        assert_eq!(argmax(gender), figure.shape, "{result:?}");
        assert_eq!(argmax(race), figure.colour, "{result:?}");
        least_confident = least_confident
            .min(gender[figure.shape])
            .min(race[figure.colour]);
    }
    println!("least confident correct probability: {least_confident:.4}");
    assert!(least_confident > 0.9);
    let accuracy = OccupationAccuracy(classifier).score(batch, &prompts);
    assert!(accuracy.iter().all(|&a| a == 100.0), "{accuracy:?}");
}

/// A photo-sized copy of a render (each pixel repeated 4×4) reads exactly as the 16×16 original: the
/// classifier averages any other size down to the world's grid, so `popalign classify --images` and
/// the browser's drop zone can hand it images of any size.
#[test]
fn classifier_reads_an_upscaled_render_like_the_original() {
    let device = Default::default();
    let classifier = ToyClassifier::<B>::new(&TOY, &device);
    let images: Vec<Vec<f32>> = TOY
        .all_figures()
        .into_iter()
        .map(|figure| render(&TOY, 3, figure, || 0.5))
        .collect();
    let small = to_unit(images, &device);
    let n = small.dims()[0];
    let large = small
        .clone()
        .reshape([n, 3, SIZE, 1, SIZE, 1])
        .repeat_dim(3, 4)
        .repeat_dim(5, 4)
        .reshape([n, 3, 4 * SIZE, 4 * SIZE]);
    let (a, b) = (classifier.classify(small), classifier.classify(large));
    let mut max_error: f64 = 0.0;
    for (a, b) in a.iter().zip(&b) {
        assert_eq!(a.face_found, b.face_found);
        for (axis, p) in &a.probabilities {
            for (x, y) in p.iter().zip(&b.probabilities[axis]) {
                max_error = max_error.max((x - y).abs());
            }
        }
    }
    // Measured: ≤ 1e-6 (f32 averaging of identical values).
    assert!(max_error < 1e-5, "max |Δp| = {max_error}");
}

#[test]
fn bare_background_has_no_figure() {
    let device = Default::default();
    let classifier = ToyClassifier::<B>::new(&TOY, &device);
    let background = TOY.occupations[3].background;
    let image: Vec<f32> = (0..3)
        .flat_map(|c| std::iter::repeat_n(background[c] * 2.0 - 1.0, SIZE * SIZE))
        .collect();
    let result = &classifier.classify(to_unit(vec![image], &device))[0];
    assert!(!result.face_found);
    assert!(result.probabilities.is_empty());
}

#[test]
fn biased_sampler_has_the_declared_shares() {
    let n = 10_000;
    let nurse = TOY.occupation_index("nurse").unwrap();
    let (mut tall, mut dominant) = (0, 0);
    let mut colours = [0usize; 6];
    for i in 0..n {
        // A low-discrepancy grid over both draws: exact shares up to 1/n.
        let u = (i as f64 + 0.5) / n as f64;
        let v = ((i * 7919) % n) as f64 / n as f64;
        let figure = TOY.biased_figure(nurse, u, v);
        tall += usize::from(figure.shape == 0);
        dominant += usize::from(figure.colour == 0);
        colours[figure.colour] += 1;
    }
    assert!((tall as f64 / n as f64 - TOY.occupations[nurse].tall_share).abs() < 1e-3);
    assert!((dominant as f64 / n as f64 - TOY.dominant_colour_share).abs() < 1e-3);
    assert!(colours.iter().all(|&c| c > 0), "{colours:?}");
}

#[test]
fn prompts_use_real_words_and_articles() {
    let nurse = TOY.occupation_index("nurse").unwrap();
    assert_eq!(TOY.neutral_prompt(nurse), "a photo of a nurse");
    let figure = popalign_core::toy::Figure {
        shape: 0,
        colour: 5,
    };
    assert_eq!(
        TOY.specific_prompt(nurse, figure),
        "a photo of an orange tall nurse"
    );
    assert_eq!(
        TOY.neutral_prompt(TOY.occupation_index("engineer").unwrap()),
        "a photo of an engineer"
    );
}
