//! The CLIP vision tower, the full `CLIPModel` and the zero-shot attribute classifier against transformers
//! 5.23.0 on the tiny random `fixtures/clip-tiny/` (`tools/fixtures/make_clip.py`): vision hidden states,
//! pooled output and `image_embeds`, `text_embeds`, `logits_per_image`, and the zero-shot probabilities of
//! two axes over three images. Also: the config, the transformers-5 layouts of the vision-only models,
//! and errors naming a missing or mis-shaped tensor.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Tensor, TensorData};
use common::*;
use popalign_core::eval::classify::clip_zero_shot::{
    CARRIED_CONFIG, CARRIED_PROMPTS, CARRIED_VISION, ClipZeroShot, ZeroShotAxis, default_axes,
};
use popalign_core::eval::classify::{AttributeClassifier, Attributes};
use popalign_core::io::load::LoadError;
use popalign_core::io::tensor_io::{read_tensors, write_tensors};
use popalign_core::models::clip::{
    ClipModel, ClipVisionModel, images_to_pixel_values, read_clip_config, read_vision_config,
};
use popalign_core::models::tokenizer::ClipTokenizer;

/// Probabilities: max abs error against transformers.
const PROBABILITY_TOLERANCE: f32 = 1e-4;

fn model_dir() -> std::path::PathBuf {
    fixtures().join("clip-tiny")
}

fn model() -> ClipModel<B> {
    ClipModel::from_dir(&model_dir(), None, &device()).unwrap_or_else(|e| panic!("{e}"))
}

/// The tiny 1000-entry vocabulary the reference tokenized with.
fn tokenizer() -> ClipTokenizer {
    ClipTokenizer::from_dir(&fixtures().join("tiny-sdxl/tokenizer")).unwrap()
}

fn inputs() -> BTreeMap<String, TensorData> {
    io("clip_inputs")
}

fn outputs() -> BTreeMap<String, TensorData> {
    io("clip_outputs")
}

fn meta() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("io/clip_meta.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn clip_model_config_parses() {
    let config = read_clip_config(&model_dir().join("config.json")).unwrap();
    assert_eq!(config.projection_dim, 16);
    assert_eq!(config.logit_scale_init_value, 3.0);
    let text = &config.text_config;
    assert_eq!(
        (text.vocab_size, text.hidden_size, text.num_hidden_layers),
        (1000, 16, 2)
    );
    assert_eq!(
        (text.eos_token_id, text.hidden_act.as_str()),
        (999, "quick_gelu")
    );
    // The sub-config's own projection_dim (transformers' default 512) is not the model's: 16 is.
    assert_eq!(text.projection_dim, Some(512));
    let vision = &config.vision_config;
    assert_eq!(
        (vision.image_size, vision.patch_size, vision.num_channels),
        (32, 8, 3)
    );
    assert_eq!((vision.hidden_size, vision.intermediate_size), (16, 32));
    assert_eq!(
        (vision.num_hidden_layers, vision.num_attention_heads),
        (2, 2)
    );
    assert_eq!(vision.hidden_act, "gelu");
    assert_eq!(vision.num_positions(), 17);
    // The vision reader takes a CLIPConfig's `vision_config` as well as a standalone CLIPVisionConfig.
    let nested = read_vision_config(&model_dir().join("config.json")).unwrap();
    assert_eq!(
        (nested.image_size, nested.hidden_act.as_str()),
        (32, "gelu")
    );
}

#[test]
fn config_without_a_shape_field_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(model_dir().join("config.json"))
        .unwrap()
        .replace("\"patch_size\": 8,", "");
    std::fs::write(dir.path().join("config.json"), text).unwrap();
    let error = read_clip_config(&dir.path().join("config.json"))
        .unwrap_err()
        .to_string();
    println!("{error}");
    assert!(
        error.contains("invalid config") && error.contains("patch_size"),
        "{error}"
    );
}

#[test]
fn vision_tower_matches_transformers() {
    let out = model().vision(float(&inputs()["pixel_values"]));
    let expected = outputs();
    // Measured (ndarray, this machine): last_hidden_state 1.7e-6, pooled 3.6e-7, image_embeds 3.6e-7.
    assert_close(
        "vision last_hidden_state (measured 1.7e-6)",
        out.last_hidden_state,
        &expected["vision_last_hidden_state"],
        1e-5,
    );
    assert_close(
        "vision pooled (measured 3.6e-7)",
        out.pooled,
        &expected["vision_pooled"],
        1e-5,
    );
    assert_close(
        "image_embeds (measured 3.6e-7)",
        out.image_embeds.expect("CLIPModel projects"),
        &expected["image_embeds"],
        1e-5,
    );
}

#[test]
fn text_embeds_match_transformers() {
    let inputs = inputs();
    let prompts: Vec<String> = serde_json::from_value(meta()["text_prompts"].clone()).unwrap();
    let tokenizer = tokenizer();
    let ids: Vec<i64> = prompts
        .iter()
        .flat_map(|p| tokenizer.encode(p).unwrap())
        .map(i64::from)
        .collect();
    assert_eq!(
        ids,
        inputs["input_ids"].to_vec::<i64>().unwrap(),
        "token ids of {prompts:?}"
    );
    let text_embeds = model().text_embeds(int(&inputs["input_ids"]));
    // Measured: 6.6e-7.
    assert_close(
        "text_embeds (measured 6.6e-7)",
        text_embeds,
        &outputs()["text_embeds"],
        1e-5,
    );
}

#[test]
fn logits_per_image_match_transformers() {
    let inputs = inputs();
    let logits =
        model().logits_per_image(float(&inputs["pixel_values"]), int(&inputs["input_ids"]));
    // Measured: 2.4e-6 on logits of magnitude up to 7.9 (exp(logit_scale) = 20.1 times a cosine).
    assert_close(
        "logits_per_image (measured 2.4e-6)",
        logits,
        &outputs()["logits_per_image"],
        1e-5,
    );
}

fn zero_shot() -> ClipZeroShot<B> {
    ClipZeroShot::new(model(), &tokenizer(), default_axes()).unwrap()
}

/// Per axis, `[N, classes]` from the classifier's results, for comparison with the goldens.
fn axis_probabilities(results: &[Attributes], axis: &str) -> Tensor<B, 2> {
    let rows: Vec<f32> = results
        .iter()
        .flat_map(|r| r.probabilities[axis].iter().map(|&p| p as f32))
        .collect();
    let k = results[0].probabilities[axis].len();
    Tensor::from_data(TensorData::new(rows, [results.len(), k]), &device())
}

#[test]
fn default_axes_are_the_fixture_axes() {
    let meta = meta();
    let tokenizer = tokenizer();
    let inputs = inputs();
    for axis in default_axes() {
        let reference = &meta["axes"][axis.name.as_str()];
        let classes: Vec<String> = serde_json::from_value(reference["classes"].clone()).unwrap();
        let prompts: Vec<String> = serde_json::from_value(reference["prompts"].clone()).unwrap();
        assert_eq!(axis.classes, classes, "{}", axis.name);
        assert_eq!(axis.prompts, prompts, "{}", axis.name);
        // The prompts tokenize as the reference tokenized them.
        let ids: Vec<i64> = prompts
            .iter()
            .flat_map(|p| tokenizer.encode(p).unwrap())
            .map(i64::from)
            .collect();
        let key = format!("zero_shot_{}_input_ids", axis.name);
        assert_eq!(ids, inputs[&key].to_vec::<i64>().unwrap(), "{key}");
    }
}

#[test]
fn zero_shot_probabilities_match_transformers() {
    let classifier = zero_shot();
    let axes = classifier.axes();
    assert_eq!(axes[0].name, "gender");
    assert_eq!(axes[0].classes, ["male", "female"]);
    assert_eq!(axes[1].name, "race");
    assert_eq!(axes[1].classes.len(), 6);

    let inputs = inputs();
    let expected = outputs();
    // From the reference's own normalised tensor, and from the [0, 1] images through `classify`
    // (CLIP mean/std in Rust; the images already have the tower's 32×32 size, so no resize).
    let from_pixel_values =
        classifier.classify_pixel_values(float(&inputs["zero_shot_pixel_values"]));
    let from_images = classifier.classify(float(&inputs["zero_shot_images"]));
    assert_close(
        "CLIP mean/std normalisation",
        images_to_pixel_values(float(&inputs["zero_shot_images"]), 32),
        &inputs["zero_shot_pixel_values"],
        1e-6,
    );
    for results in [&from_pixel_values, &from_images] {
        assert_eq!(results.len(), 3);
        assert!(results.iter().all(|r| r.face_found));
    }
    // Measured: gender 3.9e-7 and race 8.3e-7, from the pixel values and from the images alike (the Rust
    // normalisation gives the reference's pixel values to the last bit here).
    for (axis, measured) in [("gender", "3.9e-7"), ("race", "8.3e-7")] {
        let golden = &expected[&format!("zero_shot_{axis}")];
        assert_close(
            &format!("zero-shot {axis} from pixel values (measured {measured})"),
            axis_probabilities(&from_pixel_values, axis),
            golden,
            PROBABILITY_TOLERANCE,
        );
        assert_close(
            &format!("zero-shot {axis} from [0, 1] images (measured {measured})"),
            axis_probabilities(&from_images, axis),
            golden,
            PROBABILITY_TOLERANCE,
        );
    }
}

#[test]
fn non_square_images_are_center_cropped() {
    let classifier = zero_shot();
    let images = float::<4>(&inputs()["zero_shot_images"]);
    // The 32×32 images inside a 32×48 frame whose side bands are noise: the shorter side already has the
    // tower's size, so the processor only crops, and the crop must drop the bands.
    let band = || {
        Tensor::<B, 4>::random(
            [3, 3, 32, 8],
            burn::tensor::Distribution::Default,
            &device(),
        )
    };
    let framed = Tensor::cat(vec![band(), images.clone(), band()], 3);
    let reference = classifier.classify(images);
    let framed_results = classifier.classify(framed);
    for axis in ["gender", "race"] {
        let reference = axis_probabilities(&reference, axis).into_data();
        assert_close(
            &format!("{axis}: 32×48 framed vs 32×32"),
            axis_probabilities(&framed_results, axis),
            &reference,
            1e-6,
        );
    }
}

#[test]
fn zero_shot_loads_from_a_folder_with_its_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("my-clip");
    copy_dir(&model_dir(), &root);
    copy_dir(
        &fixtures().join("tiny-sdxl/tokenizer"),
        &root.join("tokenizer"),
    );
    let classifier = ClipZeroShot::<B>::from_dir(&root, default_axes(), &device()).unwrap();
    assert_eq!(classifier.name(), "clip-zero-shot:my-clip");
    assert_eq!(
        popalign_core::eval::classify::kind::ClassifierKind::of_recorded_name(&classifier.name()),
        Some(classifier.kind())
    );
    let results = classifier.classify_pixel_values(float(&inputs()["zero_shot_pixel_values"]));
    assert_close(
        "zero-shot gender (from_dir)",
        axis_probabilities(&results, "gender"),
        &outputs()["zero_shot_gender"],
        PROBABILITY_TOLERANCE,
    );
}

#[test]
fn zero_shot_refuses_prompts_that_do_not_pair_with_classes() {
    let axis = ZeroShotAxis::with_prompts("gender", &["male", "female"], &["a photo of a man"]);
    let error = ClipZeroShot::new(model(), &tokenizer(), vec![axis])
        .err()
        .expect("must fail");
    assert!(error.contains("2 classes but 1 prompts"), "{error}");
    let template =
        ZeroShotAxis::from_template("age", &["young", "old"], "a photo of a {class} person");
    assert_eq!(
        template.prompts,
        ["a photo of a young person", "a photo of a old person"]
    );
}

/// The files a report carries, read back: the same probabilities to the bit, through the blocking and the
/// asynchronous read-back alike, and the carried tower loads as a `CLIPVisionModelWithProjection` folder.
#[test]
fn carried_zero_shot_classifies_as_the_full_model() {
    let classifier = zero_shot();
    let clip_config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model_dir().join("config.json")).unwrap())
            .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let files: BTreeMap<&str, Vec<u8>> = classifier
        .carried_files(&clip_config, scratch.path())
        .unwrap()
        .into_iter()
        .collect();
    let carried = |files: &BTreeMap<&str, Vec<u8>>| {
        ClipZeroShot::<B>::from_carried(
            "classifiers/clip",
            &files[CARRIED_CONFIG],
            files[CARRIED_VISION].clone(),
            &files[CARRIED_PROMPTS],
            &device(),
        )
    };
    let loaded = carried(&files).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.axes(), classifier.axes());
    let images = float::<4>(&inputs()["zero_shot_images"]);
    let expected = classifier.classify(images.clone());
    assert_eq!(
        loaded.classify(images.clone()),
        expected,
        "blocking read-back"
    );
    let read_async = futures_lite::future::block_on(loaded.classify_async(images)).unwrap();
    assert_eq!(read_async, expected, "asynchronous read-back");

    // transformers' layout: the config and the weights as a `CLIPVisionModelWithProjection` folder.
    let folder = scratch.path().join("vision");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("config.json"), &files[CARRIED_CONFIG]).unwrap();
    std::fs::write(folder.join("model.safetensors"), &files[CARRIED_VISION]).unwrap();
    let tower = ClipVisionModel::<B>::from_dir(&folder, None, &device()).unwrap();
    assert!(tower.visual_projection.is_some());

    // Damaged files name what is wrong.
    let mut no_race = files.clone();
    let mut tensors = popalign_core::io::tensor_io::tensors_from_bytes(
        Path::new(CARRIED_PROMPTS),
        &files[CARRIED_PROMPTS],
    )
    .unwrap();
    tensors.remove("text_embeds.race");
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&files[CARRIED_PROMPTS]).unwrap();
    no_race.insert(
        CARRIED_PROMPTS,
        popalign_core::io::tensor_io::tensors_to_bytes(&tensors, metadata.metadata().clone())
            .unwrap(),
    );
    let error = carried(&no_race).err().expect("must fail").to_string();
    assert!(
        error.contains("classifiers/clip/zero_shot.safetensors")
            && error.contains("text_embeds.race"),
        "{error}"
    );
    let mut no_projection = files.clone();
    no_projection.insert(CARRIED_CONFIG, br#"{"hidden_size": 16}"#.to_vec());
    let error = carried(&no_projection)
        .err()
        .expect("must fail")
        .to_string();
    assert!(error.contains("classifiers/clip/config.json"), "{error}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// `clip-tiny` copied into a temp dir with its weights rewritten by `edit`.
fn edited_copy(edit: impl FnOnce(&mut BTreeMap<String, TensorData>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        model_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let mut tensors = read_tensors(&model_dir().join("model.safetensors")).unwrap();
    edit(&mut tensors);
    write_tensors(&dir.path().join("model.safetensors"), &tensors).unwrap();
    dir
}

fn load_error(edit: impl FnOnce(&mut BTreeMap<String, TensorData>)) -> String {
    let dir = edited_copy(edit);
    let error: LoadError = ClipModel::<B>::from_dir(dir.path(), None, &device())
        .err()
        .expect("loading must fail");
    let error = error.to_string();
    println!("{error}");
    assert!(error.contains("model.safetensors"), "{error}");
    error
}

#[test]
fn rewritten_weights_still_load_and_match() {
    // The round trip through `write_tensors` keeps the 0-dim `logit_scale`; the error tests below rely on it.
    let dir = edited_copy(|_| {});
    let model = ClipModel::<B>::from_dir(dir.path(), None, &device()).unwrap();
    let logit_scale = model.logit_scale.val().into_data().to_vec::<f32>().unwrap();
    assert_eq!(logit_scale, [3.0]);
}

#[test]
fn missing_tensor_is_named() {
    let error = load_error(|t| {
        t.remove("vision_model.embeddings.class_embedding");
    });
    assert!(
        error.contains("missing tensor `vision_model.embeddings.class_embedding`"),
        "{error}"
    );
    let error = load_error(|t| {
        t.remove("logit_scale");
    });
    assert!(error.contains("missing tensor `logit_scale`"), "{error}");
}

#[test]
fn misshaped_tensor_names_key_and_shapes() {
    let error = load_error(|t| {
        t.insert(
            "vision_model.embeddings.patch_embedding.weight".into(),
            TensorData::new(vec![0f32; 16 * 3 * 4 * 4], [16, 3, 4, 4]),
        );
    });
    assert!(
        error.contains("vision_model.embeddings.patch_embedding.weight")
            && error.contains("[16, 3, 8, 8]")
            && error.contains("[16, 3, 4, 4]"),
        "{error}"
    );
    // Linear weights are reported in the file's [out, in] layout.
    let error = load_error(|t| {
        t.insert(
            "visual_projection.weight".into(),
            TensorData::new(vec![0f32; 12 * 16], [12, 16]),
        );
    });
    assert!(
        error.contains("visual_projection.weight")
            && error.contains("expected [16, 16]")
            && error.contains("shape [12, 16]"),
        "{error}"
    );
    let error = load_error(|t| {
        t.insert("logit_scale".into(), TensorData::new(vec![0f32; 2], [2]));
    });
    assert!(
        error.contains("`logit_scale` has shape [2], expected [1]"),
        "{error}"
    );
}

#[test]
fn vision_model_with_projection_loads_the_transformers_5_layout() {
    // A CLIPVisionModelWithProjection folder as transformers 5 writes it: the CLIPVisionConfig at the top,
    // `vision_model.` kept (its base_model_prefix), `visual_projection.weight` beside it.
    let dir = tempfile::tempdir().unwrap();
    let clip: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model_dir().join("config.json")).unwrap())
            .unwrap();
    let mut vision = clip["vision_config"].clone();
    vision["architectures"] = serde_json::json!(["CLIPVisionModelWithProjection"]);
    vision["projection_dim"] = serde_json::json!(16);
    std::fs::write(dir.path().join("config.json"), vision.to_string()).unwrap();
    let tensors: BTreeMap<String, TensorData> =
        read_tensors(&model_dir().join("model.safetensors"))
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.starts_with("vision_model.") || k == "visual_projection.weight")
            .collect();
    write_tensors(&dir.path().join("model.safetensors"), &tensors).unwrap();
    let model = ClipVisionModel::<B>::from_dir(dir.path(), None, &device()).unwrap();
    let out = model.forward(float(&inputs()["pixel_values"]));
    let expected = outputs();
    assert_close(
        "standalone vision pooled",
        out.pooled,
        &expected["vision_pooled"],
        1e-5,
    );
    assert_close(
        "standalone image_embeds",
        out.image_embeds.expect("with projection"),
        &expected["image_embeds"],
        1e-5,
    );

    // CLIPVisionModel (no projection) written by transformers 5 has no `vision_model.` prefix.
    vision["architectures"] = serde_json::json!(["CLIPVisionModel"]);
    std::fs::write(dir.path().join("config.json"), vision.to_string()).unwrap();
    let bare: BTreeMap<String, TensorData> = tensors
        .into_iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("vision_model.")
                .map(|rest| (rest.to_string(), v))
        })
        .collect();
    write_tensors(&dir.path().join("model.safetensors"), &bare).unwrap();
    let model = ClipVisionModel::<B>::from_dir(dir.path(), None, &device()).unwrap();
    assert!(model.visual_projection.is_none());
    assert_close(
        "vision pooled (no prefix)",
        model.forward(float(&inputs()["pixel_values"])).pooled,
        &expected["vision_pooled"],
        1e-5,
    );
}

/// PickScore and CLIP score of every (image, prompt) pair of the fixture against transformers'
/// `logits_per_image`: PickScore is that logit, CLIP score `max(100 · logit / exp(logit_scale), 0)`.
#[test]
fn clip_scorers_match_transformers_logits() {
    use popalign_core::eval::classify::clip_scores::{
        ClipScoreKind, ClipScorer, pickscore_probabilities,
    };

    let meta = meta();
    let prompts: Vec<String> = meta["text_prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let scale = meta["logit_scale_exp"].as_f64().unwrap();
    let logits = outputs()["logits_per_image"].to_vec::<f32>().unwrap();
    let pixels: Tensor<B, 4> = float(&inputs()["pixel_values"]);
    let pairs: Vec<(usize, usize)> = (0..3).flat_map(|i| (0..3).map(move |j| (i, j))).collect();
    let images = Tensor::cat(
        pairs
            .iter()
            .map(|&(i, _)| pixels.clone().slice([i..i + 1]))
            .collect(),
        0,
    );
    let pair_prompts: Vec<String> = pairs.iter().map(|&(_, j)| prompts[j].clone()).collect();
    for kind in [ClipScoreKind::PickScore, ClipScoreKind::ClipScore] {
        let scorer = ClipScorer {
            model: model(),
            tokenizer: tokenizer(),
            kind,
            processor: popalign_core::models::clip::ImageProcessor::openai_clip(32),
        };
        let scores = scorer
            .score_pixel_values(images.clone(), &pair_prompts)
            .unwrap();
        let worst = pairs
            .iter()
            .zip(&scores)
            .map(|(&(i, j), score)| {
                let logit = f64::from(logits[i * 3 + j]);
                let want = match kind {
                    ClipScoreKind::PickScore => logit,
                    ClipScoreKind::ClipScore => (100.0 * logit / scale).max(0.0),
                };
                (score - want).abs()
            })
            .fold(0.0, f64::max);
        // Measured: PickScore 2.4e-6 (scores up to 7.9), CLIP score 1.3e-5 (scores up to 39).
        println!("{kind:?}: max abs error {worst:.2e}");
        assert!(worst < 1e-4, "{kind:?}: {worst:.2e}");
        let short = scorer.score_pixel_values(images.clone(), &pair_prompts[..2]);
        assert!(short.unwrap_err().contains("9 images but 2 prompts"));
    }
    // Preference among the three images of the first prompt: the softmax of their PickScores.
    let column: Vec<f64> = (0..3).map(|i| f64::from(logits[i * 3])).collect();
    let probabilities = pickscore_probabilities(&column);
    let sum: f64 = column.iter().map(|s| s.exp()).sum();
    for (p, s) in probabilities.iter().zip(&column) {
        assert!((p - s.exp() / sum).abs() < 1e-12);
    }
}
