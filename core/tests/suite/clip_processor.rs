//! CLIP preprocessing (`core::clip::image_processor`) against the reference processors on real photos
//! (`tools/fixtures/make_processor.py`, `fixtures/processor/`): transformers 5's torchvision `CLIPImageProcessor`,
//! its PIL twin, open_clip's evaluation transform, and the float path against torch's float resize.
//!
//! Measured (max abs error after normalisation): every byte path ≤ 2.4e-7 (the resized bytes are identical; what
//! is left is float rounding in the normalisation), the float path 9.5e-7 against torch in float64.

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use common::*;
use popalign_core::eval::classify::unit_rgb_planes;
use popalign_core::io::load::LoadError;
use popalign_core::io::tensor_io::read_tensors;
use popalign_core::models::clip::image_processor::CropRounding;
use popalign_core::models::clip::resample::BytePrecision;
use popalign_core::models::clip::{ImageProcessor, OpenClipPreprocess};

const TOLERANCE: f32 = 1e-5;

fn dir() -> PathBuf {
    fixtures().join("processor")
}

fn expected() -> BTreeMap<String, TensorData> {
    read_tensors(&dir().join("pixel_values.safetensors")).unwrap()
}

/// A fixture photo as interleaved RGB bytes and its size.
fn photo(name: &str) -> (Vec<u8>, usize, usize) {
    let image = image::open(fixtures().join("mtcnn").join(format!("{name}.png")))
        .unwrap()
        .to_rgb8();
    let (w, h) = image.dimensions();
    (image.into_raw(), w as usize, h as usize)
}

fn hf(precision: BytePrecision) -> ImageProcessor {
    ImageProcessor::from_preprocessor_config(&dir().join("hf/preprocessor_config.json"), precision)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn open_clip() -> ImageProcessor {
    let path = dir().join("open_clip_config.json");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let preprocess: OpenClipPreprocess =
        serde_json::from_value(config["preprocess_cfg"].clone()).unwrap();
    ImageProcessor::open_clip(224, &preprocess, &path).unwrap()
}

fn byte_path(processor: &ImageProcessor, name: &str) -> Tensor<B, 3> {
    let (rgb, w, h) = photo(name);
    let values = processor.pixel_values_rgb8(&rgb, w, h).unwrap();
    Tensor::from_data(TensorData::new(values, [3, 224, 224]), &device())
}

#[test]
fn transformers_default_processor_matches_on_real_photos() {
    let expected = expected();
    for name in ["faces", "grace_hopper"] {
        let actual = byte_path(&hf(BytePrecision::TorchInt16), name);
        assert_close(
            &format!("hf/{name}"),
            actual,
            &expected[&format!("hf/{name}")],
            TOLERANCE,
        );
    }
}

#[test]
fn transformers_pil_processor_matches() {
    let actual = byte_path(&hf(BytePrecision::Pillow), "faces");
    assert_close(
        "hf-pil/faces",
        actual,
        &expected()["hf-pil/faces"],
        TOLERANCE,
    );
}

#[test]
fn the_two_byte_precisions_really_differ_on_this_photo() {
    // Otherwise the two tests above could not tell the backends apart.
    let torch = byte_path(&hf(BytePrecision::TorchInt16), "faces");
    let pil = byte_path(&hf(BytePrecision::Pillow), "faces");
    let gap = (torch - pil).abs().max().into_scalar();
    assert!(
        gap > 0.003,
        "torch and Pillow bytes agree everywhere (gap {gap})"
    );
}

#[test]
fn open_clip_transform_matches_on_real_photos() {
    let expected = expected();
    for name in ["faces", "grace_hopper"] {
        let actual = byte_path(&open_clip(), name);
        assert_close(
            &format!("open_clip/{name}"),
            actual,
            &expected[&format!("open_clip/{name}")],
            TOLERANCE,
        );
    }
}

#[test]
fn float_path_matches_torch_float_resize() {
    let (rgb, w, h) = photo("grace_hopper");
    let images = Tensor::<B, 1>::from_floats(unit_rgb_planes(&rgb, w, h).as_slice(), &device())
        .reshape([1, 3, h, w]);
    let actual = hf(BytePrecision::TorchInt16)
        .pixel_values(images)
        .unwrap()
        .reshape([3, 224, 224]);
    assert_close(
        "hf-float/grace_hopper",
        actual,
        &expected()["hf-float/grace_hopper"],
        TOLERANCE,
    );
}

#[test]
fn float_path_is_differentiable() {
    use burn::backend::Autodiff;
    type AD = Autodiff<B>;
    let images = Tensor::<AD, 4>::ones([1, 3, 40, 30], &device()).require_grad();
    let out = ImageProcessor::openai_clip(16)
        .pixel_values(images.clone())
        .unwrap();
    assert_eq!(out.dims(), [1, 3, 16, 16]);
    let grads = out.sum().backward();
    let grad = images.grad(&grads).unwrap();
    // Each output is a convex combination of inputs divided by std, so the total gradient is 256 / std per channel.
    let total: f32 = grad.sum().into_scalar();
    let expected: f32 = popalign_core::models::clip::CLIP_STD
        .iter()
        .map(|s| 256.0 / s)
        .sum();
    assert!(
        (total - expected).abs() / expected < 1e-5,
        "{total} vs {expected}"
    );
}

#[test]
fn crop_offsets_follow_each_reference() {
    let mut p = ImageProcessor::openai_clip(224);
    // faces.png: 360×200 → 403×224, a margin of 179 columns.
    assert_eq!(p.resized_size(360, 200), (403, 224));
    assert_eq!(p.crop_window(403, 224).unwrap(), (0, 89, 224, 224));
    p.crop_rounding = CropRounding::HalfEven;
    assert_eq!(p.crop_window(403, 224).unwrap(), (0, 90, 224, 224));
    // 89.5 → 90 but 90.5 → 90: half to even.
    assert_eq!(p.crop_window(405, 224).unwrap(), (0, 90, 224, 224));
    assert!(p.crop_window(200, 224).unwrap_err().contains("larger than"));
}

#[test]
fn unsupported_settings_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("preprocessor_config.json");
    let write = |json: &str| std::fs::write(&path, json).unwrap();
    write(r#"{"size": {"shortest_edge": 224}, "crop_size": 224, "resample": 0}"#);
    let err = ImageProcessor::from_preprocessor_config(&path, BytePrecision::Pillow).unwrap_err();
    assert!(
        matches!(err, LoadError::Unsupported { .. }) && err.to_string().contains("resample 0"),
        "{err}"
    );
    write(r#"{"size": {"longest_edge": 224}}"#);
    let err = ImageProcessor::from_preprocessor_config(&path, BytePrecision::Pillow).unwrap_err();
    assert!(err.to_string().contains("size"), "{err}");
    write(r#"{"size": "big"}"#);
    let err = ImageProcessor::from_preprocessor_config(&path, BytePrecision::Pillow).unwrap_err();
    assert!(err.to_string().contains("size"), "{err}");
    // An old-style config (bare numbers) is read as transformers reads it.
    write(r#"{"size": 224, "crop_size": 224}"#);
    let p = ImageProcessor::from_preprocessor_config(&path, BytePrecision::Pillow).unwrap();
    assert_eq!(p.resized_size(300, 600), (224, 448));
}
