//! open_clip's `CLIP` (`core::open_clip`), HPSv2's score and LAION's aesthetic predictor against their Python
//! references on tiny random models (`tools/fixtures/make_open_clip.py`, `make_aesthetic.py`).
//!
//! Measured max abs errors are printed by each test and stated next to its assertion.

use crate::common;

use std::collections::BTreeMap;

use burn::tensor::{Tensor, TensorData};
use common::*;
use popalign_core::eval::classify::Scorer;
use popalign_core::eval::classify::aesthetic::{AestheticMlp, AestheticScorer};
use popalign_core::eval::classify::hps::HpsScorer;
use popalign_core::io::load::LoadError;
use popalign_core::models::clip::{ImageProcessor, token_ids};
use popalign_core::models::open_clip::OpenClipModel;
use popalign_core::models::tokenizer::ClipTokenizer;

const TOLERANCE: f32 = 1e-4;

fn open_clip_dir() -> std::path::PathBuf {
    fixtures().join("open-clip-tiny")
}

fn open_clip() -> (OpenClipModel<B>, ImageProcessor) {
    OpenClipModel::from_dir(&open_clip_dir(), &device()).unwrap_or_else(|e| panic!("{e}"))
}

fn tokenizer() -> ClipTokenizer {
    ClipTokenizer::from_dir(&fixtures().join("tiny-sdxl/tokenizer")).unwrap()
}

fn inputs() -> BTreeMap<String, TensorData> {
    io("open_clip_inputs")
}

fn outputs() -> BTreeMap<String, TensorData> {
    io("open_clip_outputs")
}

fn prompts() -> Vec<String> {
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("io/open_clip_meta.json")).unwrap(),
    )
    .unwrap();
    meta["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn open_clip_image_tower_matches() {
    let (model, _) = open_clip();
    let features = model.encode_image(float(&inputs()["pixel_values"]));
    // Measured: 6.6e-7.
    assert_close(
        "image_features",
        features,
        &outputs()["image_features"],
        TOLERANCE,
    );
}

#[test]
fn open_clip_text_tower_matches_with_our_tokenizer() {
    let (model, _) = open_clip();
    let ids = token_ids::<B>(&tokenizer(), &prompts(), &device()).unwrap();
    assert_eq!(
        ids.to_data(),
        inputs()["input_ids"],
        "token ids differ from the fixture's"
    );
    // Measured: 6.0e-7.
    assert_close(
        "text_features",
        model.encode_text(ids),
        &outputs()["text_features"],
        TOLERANCE,
    );
}

#[test]
fn open_clip_logits_match() {
    let (model, _) = open_clip();
    let image = popalign_core::models::clip::unit_rows(
        model.encode_image(float(&inputs()["pixel_values"])),
    );
    let text =
        popalign_core::models::clip::unit_rows(model.encode_text(int(&inputs()["input_ids"])));
    let logits = image.matmul(text.transpose()) * model.logit_scale_exp();
    // Measured: 2.3e-6 (logits up to 9.7).
    assert_close(
        "logits_per_image",
        logits,
        &outputs()["logits_per_image"],
        TOLERANCE,
    );
}

#[test]
fn hps_score_is_the_cosine_with_its_prompt() {
    let (model, processor) = open_clip();
    let scorer = HpsScorer {
        model,
        tokenizer: tokenizer(),
        processor,
    };
    let cosines = scorer
        .cosines(float(&inputs()["pixel_values"]), &prompts())
        .unwrap();
    // Measured: 6.0e-8.
    assert_close("hps", cosines, &outputs()["hps"], TOLERANCE);
    assert!(
        scorer
            .cosines(float(&inputs()["pixel_values"]), &prompts()[..1])
            .unwrap_err()
            .contains("3 images but 1")
    );
}

#[test]
fn hps_scores_decoded_images_through_open_clips_transform() {
    // A 48×40 image: the transform resizes it to 38×32 and crops 32×32, so the byte path really runs.
    let (model, processor) = open_clip();
    let scorer = HpsScorer {
        model,
        tokenizer: tokenizer(),
        processor,
    };
    let rgb: Vec<u8> = (0..48 * 40 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let prompts = vec!["a nurse".to_string()];
    let from_bytes = scorer
        .score_rgb8(&[(&rgb, 48, 40)], &prompts, &device())
        .unwrap();
    let pixel_values = scorer
        .processor
        .batch_rgb8::<B>(&[(&rgb, 48, 40)], &device())
        .unwrap();
    assert_eq!(pixel_values.dims(), [1, 3, 32, 32]);
    let direct = scorer
        .cosines(pixel_values, &prompts)
        .unwrap()
        .into_scalar();
    assert_eq!(from_bytes, vec![f64::from(direct)]);
    // The float path differs from the byte path only by the byte rounding of the resize.
    let unit = Tensor::<B, 1>::from_floats(
        popalign_core::eval::classify::unit_rgb_planes(&rgb, 48, 40).as_slice(),
        &device(),
    )
    .reshape([1, 3, 40, 48]);
    let from_floats = scorer.score(unit, &prompts);
    assert!(
        (from_floats[0] - from_bytes[0]).abs() < 1e-2,
        "{from_floats:?} vs {from_bytes:?}"
    );
}

#[test]
fn unsupported_open_clip_options_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(open_clip_dir().join("open_clip_config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["model_cfg"]["vision_cfg"]["ls_init_value"] = serde_json::json!(1e-5);
    std::fs::write(tmp.path().join("open_clip_config.json"), config.to_string()).unwrap();
    std::fs::copy(
        open_clip_dir().join("open_clip_model.safetensors"),
        tmp.path().join("open_clip_model.safetensors"),
    )
    .unwrap();
    let err = OpenClipModel::<B>::from_dir(tmp.path(), &device()).unwrap_err();
    assert!(matches!(err, LoadError::Unsupported { .. }), "{err}");
    assert!(
        err.to_string().contains("vision_cfg.ls_init_value"),
        "{err}"
    );
    // A wider text tower than the file: the error names the tensor and both shapes.
    config["model_cfg"]["vision_cfg"]
        .as_object_mut()
        .unwrap()
        .remove("ls_init_value");
    config["model_cfg"]["text_cfg"]["width"] = serde_json::json!(24);
    config["model_cfg"]["text_cfg"]["heads"] = serde_json::json!(3);
    std::fs::write(tmp.path().join("open_clip_config.json"), config.to_string()).unwrap();
    let err = OpenClipModel::<B>::from_dir(tmp.path(), &device())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("token_embedding")
            || err.contains("positional_embedding")
            || err.contains("resblocks"),
        "{err}"
    );
    assert!(err.contains("24"), "{err}");
}

fn aesthetic_mlp() -> AestheticMlp<B> {
    AestheticMlp::load(
        &fixtures().join("aesthetic-tiny/model.safetensors"),
        &device(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn aesthetic_mlp_matches_on_normalised_embeddings() {
    let out = io("aesthetic_outputs");
    let scores = aesthetic_mlp().forward(float(&out["normalised_embeds"]));
    // Measured: 1.9e-6 (scores from −8.7 to −5.2).
    assert_close("aesthetic mlp", scores, &out["scores"], TOLERANCE);
}

#[test]
fn aesthetic_scorer_matches_through_clip() {
    let scorer = AestheticScorer::<B>::load(
        &fixtures().join("aesthetic-tiny/model.safetensors"),
        &fixtures().join("clip-tiny"),
        &device(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let scores = scorer.scores(float(&io("aesthetic_inputs")["pixel_values"]));
    // Measured: 6.7e-6.
    assert_close(
        "aesthetic",
        scores,
        &io("aesthetic_outputs")["scores"],
        TOLERANCE,
    );
}

#[test]
fn aesthetic_file_without_a_layer_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors = popalign_core::io::tensor_io::read_tensors(
        &fixtures().join("aesthetic-tiny/model.safetensors"),
    )
    .unwrap();
    tensors.remove("layers.6.weight");
    let file = tmp.path().join("mlp.safetensors");
    popalign_core::io::tensor_io::write_tensors(&file, &tensors).unwrap();
    let err = AestheticMlp::<B>::load(&file, &device())
        .unwrap_err()
        .to_string();
    assert!(err.contains("layers.6.weight"), "{err}");
}
