//! ImageReward (`core::eval::classify::image_reward`) against the `image-reward` 1.5 package on a tiny random model
//! built with the package's own classes (`tools/fixtures/imagereward/make_imagereward.py`), converted by
//! `tools/convert_imagereward.py`: BLIP's tokenizer, the ViT, the cross-attending BERT, the rewards of `score` on
//! four photos (one grayscale), and the rewards' gradient with respect to the pixels.
//!
//! Measured max abs errors are printed by each test and stated next to its assertion.

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::backend::Autodiff;
use burn::tensor::{Tensor, TensorData};
use common::*;
use popalign_core::eval::classify::image_reward::ImageRewardScorer;
use popalign_core::eval::classify::{PixelScorer, Scorer};
use popalign_core::io::load::LoadError;
use popalign_core::io::tensor_io::{read_tensors, write_tensors};
use popalign_core::models::blip::tokenizer::BlipTokenizer;

const TOLERANCE: f32 = 1e-4;

fn dir() -> PathBuf {
    fixtures().join("imagereward-tiny")
}

fn scorer() -> ImageRewardScorer<B> {
    ImageRewardScorer::from_dir(&dir(), &device()).unwrap_or_else(|e| panic!("{e}"))
}

fn golden() -> BTreeMap<String, TensorData> {
    io("imagereward_io")
}

fn meta() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("io/imagereward_meta.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn rows(value: &serde_json::Value) -> Vec<Vec<u32>> {
    serde_json::from_value(value.clone()).unwrap()
}

#[test]
fn tokenizer_matches_blips_bert_tokenizer() {
    let meta = meta();
    let tokenizer = BlipTokenizer::from_vocab(&dir().join("vocab.txt")).unwrap();
    let source = meta["tokenizer"]["source"].as_str().unwrap();
    let prompts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("..").join(source)).unwrap())
            .unwrap();
    let (ids, masks) = (
        rows(&meta["tokenizer"]["input_ids"]),
        rows(&meta["tokenizer"]["attention_mask"]),
    );
    assert_eq!(prompts.len(), ids.len());
    let wrong: Vec<_> = prompts
        .iter()
        .zip(ids.iter().zip(&masks))
        .filter(|(prompt, expected)| {
            let (i, m) = tokenizer.encode(prompt).unwrap();
            (&i, &m) != (expected.0, expected.1)
        })
        .map(|(prompt, _)| prompt.clone())
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} prompts differ: {wrong:?}",
        wrong.len(),
        prompts.len()
    );
}

#[test]
fn image_tower_and_text_encoder_match() {
    let (scorer, golden) = (scorer(), golden());
    let image_embeds = scorer
        .model
        .blip
        .visual_encoder
        .forward(float(&golden["pixel_values"]));
    // Measured: 2.1e-6.
    assert_close(
        "image_embeds",
        image_embeds,
        &golden["image_embeds"],
        TOLERANCE,
    );
    let states = scorer.model.blip.text_encoder.forward(
        int(&golden["input_ids"]),
        int(&golden["attention_mask"]),
        float(&golden["image_embeds"]),
    );
    let [n, _, d] = states.dims();
    let cls = states.slice([0..n, 0..1, 0..d]).reshape([n, d]);
    // Measured: 9.5e-7.
    assert_close::<B, 2>("cls_features", cls, &golden["cls_features"], TOLERANCE);
}

#[test]
fn rewards_match_from_pixels_and_from_photos() {
    let (scorer, golden, meta) = (scorer(), golden(), meta());
    let prompts = strings(&meta["prompts"]);
    let rewards = scorer
        .pixel_scores(float(&golden["pixel_values"]), &prompts)
        .unwrap();
    // Measured: 3.8e-6.
    assert_close("rewards", rewards, &golden["rewards"], TOLERANCE);

    // The package's `score(prompt, PIL image)` on the photos, through our decoding and its transform.
    let photos: Vec<image::RgbImage> = strings(&meta["photos"])
        .iter()
        .map(|name| {
            image::open(fixtures().join(format!("mtcnn/{name}.png")))
                .unwrap()
                .to_rgb8()
        })
        .collect();
    let images: Vec<_> = photos
        .iter()
        .map(|p| {
            (
                p.as_raw().as_slice(),
                p.width() as usize,
                p.height() as usize,
            )
        })
        .collect();
    let scores = scorer.score_rgb8(&images, &prompts, &device()).unwrap();
    let expected: Vec<f64> = serde_json::from_value(meta["scores"].clone()).unwrap();
    let error = scores
        .iter()
        .zip(&expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0, f64::max);
    println!("score(prompt, photo): max abs error {error:.3e} over {scores:?}");
    // Measured: 2.9e-6 (one photo is grayscale: expanded to RGB before the resize here, after it in PIL).
    assert!(
        error <= f64::from(TOLERANCE),
        "scores {scores:?}, expected {expected:?}"
    );
}

#[test]
fn reward_gradient_matches_torch() {
    type A = Autodiff<B>;
    let golden = golden();
    let scorer = ImageRewardScorer::<A>::from_dir(&dir(), &device()).unwrap();
    let pixel_values = float_on::<A, 4>(&golden["pixel_values"], &device()).require_grad();
    let rewards = scorer
        .pixel_scores(pixel_values.clone(), &strings(&meta()["prompts"]))
        .unwrap();
    let grads = rewards.sum().backward();
    let grad = pixel_values.grad(&grads).unwrap();
    // Measured: 2.1e-9 (max |expected| 4e-3).
    assert_close::<B, 4>("d rewards / d pixels", grad, &golden["pixel_grad"], 1e-7);
}

/// A copy of the fixture folder with the weights edited, or a file of it replaced.
fn edited(
    edit: impl FnOnce(&mut BTreeMap<String, TensorData>),
    vocab: Option<&str>,
) -> Result<ImageRewardScorer<B>, LoadError> {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["med_config.json", "vision_config.json", "vocab.txt"] {
        std::fs::copy(dir().join(name), tmp.path().join(name)).unwrap();
    }
    if let Some(text) = vocab {
        std::fs::write(tmp.path().join("vocab.txt"), text).unwrap();
    }
    let mut tensors = read_tensors(&dir().join("model.safetensors")).unwrap();
    edit(&mut tensors);
    write_tensors(&tmp.path().join("model.safetensors"), &tensors).unwrap();
    ImageRewardScorer::from_dir(tmp.path(), &device())
}

#[test]
fn bad_checkpoints_and_vocabularies_are_named() {
    let key = "blip.text_encoder.encoder.layer.1.crossattention.self.value.weight";
    let message = edited(|t| drop(t.remove(key)), None)
        .err()
        .expect("a checkpoint without a cross-attention value must not load")
        .to_string();
    println!("{message}");
    // Errors name our path, where the checkpoint's `self` is `self_attention` (see `bert::KEY_REMAPS`).
    let ours = "layer.1.crossattention.self_attention.value.weight";
    assert!(
        message.contains("missing tensor") && message.contains(ours),
        "{message}"
    );

    let message = edited(
        |t| {
            t.insert(key.into(), TensorData::new(vec![0f32; 32 * 32], [32, 32]));
        },
        None,
    )
    .err()
    .expect("a cross-attention value reading 32-wide tokens must not load")
    .to_string();
    println!("{message}");
    assert!(
        message.contains(ours) && message.contains("[32, 32], expected [32, 48]"),
        "{message}"
    );

    let vocab = std::fs::read_to_string(dir().join("vocab.txt")).unwrap();
    let lines: Vec<&str> = vocab.lines().collect();
    let keep = |range: std::ops::Range<usize>| {
        lines[range]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let message = edited(|_| {}, Some(&keep(0..lines.len() - 1)))
        .err()
        .expect("a vocabulary one token short must not load")
        .to_string();
    println!("{message}");
    assert!(message.contains("vocab_size"), "{message}");
    let message = edited(|_| {}, Some(&keep(1..lines.len())))
        .err()
        .expect("a vocabulary without [PAD] must not load")
        .to_string();
    println!("{message}");
    assert!(
        message.contains("`[PAD]` is not in the vocabulary"),
        "{message}"
    );
}

#[test]
fn a_prompt_per_image_is_required() {
    let scorer = scorer();
    let images = Tensor::<B, 4>::zeros([2, 3, 32, 32], &device());
    let error = scorer
        .pixel_scores(images, &["one prompt".to_string()])
        .err()
        .expect("two images and one prompt must be refused");
    assert!(error.contains('2') && error.contains('1'), "{error}");
}
