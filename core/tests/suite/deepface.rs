//! DeepFace's gender and race models (`core::face_attributes::deepface`) against `DeepFace.analyze` on tf-keras
//! (`tools/fixtures/deepface/make_deepface.py`, `fixtures/deepface/`): the VGG-Face trunk at widths / 16 with random
//! weights, written by tf-keras's `save_weights` and converted by `tools/convert_deepface.py`; three photos
//! (a crop to enlarge, a whole photo to shrink, a grey crop), each given to `analyze` as the face
//! (`detector_backend='skip'`).

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use common::*;
use popalign_core::eval::classify::{AttributeClassifier, unit_rgb_planes};
use popalign_core::eval::face_attributes::RACE_CLASSES;
use popalign_core::eval::face_attributes::deepface::{DeepFace, DeepFaceNet};
use popalign_core::eval::face_attributes::deepface_input::{deepface_input, resized_size};
use popalign_core::eval::face_attributes::vgg_face::VggFaceConfig;
use popalign_core::io::load::LoadError;
use popalign_core::io::tensor_io::read_tensors;

const PHOTOS: [&str; 3] = ["astronaut_box", "grace_hopper_whole", "camera_box_grey"];

/// The fixture's trunk: VGG-Face's widths / 16, fc6 and fc7 at 32.
fn narrow() -> VggFaceConfig {
    VggFaceConfig {
        widths: [4, 8, 16, 32, 32],
        fc: 32,
    }
}

fn dir() -> PathBuf {
    fixtures().join("deepface")
}

pub(crate) fn model() -> DeepFace<B> {
    let model = DeepFace::load(
        &dir().join("gender.safetensors"),
        &dir().join("race.safetensors"),
        &device(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The widths come from the file.
    let file = dir().join("gender.safetensors");
    assert_eq!(
        VggFaceConfig::of_file(&file, "backbone.").unwrap(),
        narrow()
    );
    model
}

fn outputs() -> BTreeMap<String, TensorData> {
    read_tensors(&dir().join("outputs.safetensors")).unwrap_or_else(|e| panic!("{e}"))
}

/// A photo as `[1, 3, h, w]` in [0, 1] (grey expanded to three equal channels, as cv2 reads it).
fn photo(name: &str) -> Tensor<B, 4> {
    let image = image::open(dir().join(format!("{name}.png")))
        .unwrap()
        .to_rgb8();
    let (w, h) = (image.width() as usize, image.height() as usize);
    let planes = unit_rgb_planes(image.as_raw(), w, h);
    Tensor::<B, 1>::from_floats(planes.as_slice(), &device()).reshape([1, 3, h, w])
}

#[test]
fn input_is_deepfaces_resize_and_black_padding() {
    let expected = outputs();
    for name in PHOTOS {
        // Measured: ≤ 6.0e-8 on all three (the crops are bytes / 255 in f32 here, in f64 in DeepFace).
        let input = DeepFace::<B>::input(photo(name)).unwrap();
        let hwc = input.squeeze_dim::<3>(0).permute([1, 2, 0]);
        assert_close(
            &format!("{name} input"),
            hwc,
            &expected[&format!("{name}.input")],
            1e-6,
        );
    }
    // The sizes Python's int() truncation gives: 114×89 → 224×174, 300×256 → 224×191, 76×55 → 224×162.
    assert_eq!(resized_size(114, 89), (224, 174));
    assert_eq!(resized_size(300, 256), (224, 191));
    assert_eq!(resized_size(76, 55), (224, 162));
}

#[test]
fn trunk_and_heads_match_deepface_analyze() {
    let model = model();
    let expected = outputs();
    for name in PHOTOS {
        let input = DeepFace::<B>::input(photo(name)).unwrap();
        // Measured: fc7 ≤ 1.1e-6 (max |fc7| ≈ 1.0), probabilities ≤ 1.7e-7.
        let fc7 = model.gender.backbone.forward(input.clone()).reshape([-1]);
        assert_close(
            &format!("{name} fc7"),
            fc7,
            &expected[&format!("{name}.gender_fc7")],
            1e-5,
        );
        let reading = &model.read(input)[0];
        let row = |v: &[f64]| {
            Tensor::<B, 1>::from_floats(
                v.iter().map(|p| *p as f32).collect::<Vec<_>>().as_slice(),
                &device(),
            )
        };
        assert_close(
            &format!("{name} gender"),
            row(&reading.gender),
            &expected[&format!("{name}.gender")],
            1e-5,
        );
        assert_close(
            &format!("{name} race"),
            row(&reading.race),
            &expected[&format!("{name}.race")],
            1e-5,
        );
    }
}

#[test]
fn classes_come_out_in_the_projects_order_with_analyzes_dominant_labels() {
    let model = model();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("meta.json")).unwrap()).unwrap();
    for (name, photo_meta) in PHOTOS.iter().zip(meta["photos"].as_array().unwrap()) {
        let attributes = model.classify(photo(name)).remove(0);
        let argmax = |axis: &str| {
            let p = &attributes.probabilities[axis];
            p.iter()
                .enumerate()
                .fold(0, |best, (k, v)| if *v > p[best] { k } else { best })
        };
        let gender = ["Man", "Woman"][argmax("gender")];
        let race = RACE_CLASSES[argmax("race")];
        assert_eq!(gender, photo_meta["dominant_gender"], "{name}");
        assert_eq!(race, photo_meta["dominant_race"], "{name}");
    }
}

#[test]
fn a_crop_too_thin_to_resize_or_the_wrong_weights_are_clear_errors() {
    // 1000×1 → 224×0: DeepFace's cv2.resize fails on it; we say why.
    let error = deepface_input(&vec![0.5; 3000], 1000, 1).unwrap_err();
    assert!(error.contains("too thin"), "{error}");
    // The race file where the gender model is expected: the head's shape is named.
    let error = DeepFaceNet::<B>::load(&dir().join("race.safetensors"), &narrow(), 2, &device())
        .unwrap_err();
    assert!(matches!(error, LoadError::Shape { .. }), "{error}");
    assert!(error.to_string().contains("predictions.weight"), "{error}");
}

/// Collects each float parameter's path and shape without materialising it (burn initialises lazily).
#[derive(Default)]
struct Shapes {
    path: Vec<String>,
    shapes: BTreeMap<String, Vec<usize>>,
}

impl burn::module::ModuleVisitor<B> for Shapes {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        self.shapes
            .insert(self.path.join("."), param.lazy_shape().to_vec());
    }
}

/// At VGG-Face's widths, the model has exactly the tensors `tools/convert_deepface.py` writes from deepface's own
/// full-size gender model (`fixtures/deepface/full_size_shapes.json`, 32 tensors, 134 million values).
#[test]
fn full_size_model_has_the_converters_keys_and_shapes() {
    use burn::module::Module;
    let want: BTreeMap<String, Vec<usize>> =
        serde_json::from_slice(&std::fs::read(dir().join("full_size_shapes.json")).unwrap())
            .unwrap();
    let mut shapes = Shapes::default();
    DeepFaceNet::<B>::new(&VggFaceConfig::vgg_face(), 2, &device()).visit(&mut shapes);
    assert_eq!(shapes.shapes, want);
    let values: usize = want.values().map(|s| s.iter().product::<usize>()).sum();
    assert_eq!((want.len(), values / 1_000_000), (32, 134));
}
