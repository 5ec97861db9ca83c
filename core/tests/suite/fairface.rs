//! FairFace (`core::face_attributes::fairface`) against torchvision running the same ResNet, with FairFace's
//! `predict.py` transform and softmaxes (`tools/fixtures/make_fairface.py`, `fixtures/fairface/`).
//!
//! The public checkpoint is not redistributable from a wheel, so parity runs on torchvision's ResNet code at
//! resnet34 depth with narrow stages and random weights (BatchNorm statistics included), and a second test
//! proves that a checkpoint with the real architecture's keys and shapes loads.

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use common::*;
use popalign_core::eval::classify::{AttributeClassifier, unit_rgb_planes};
use popalign_core::eval::face_attributes::AgeBands;
use popalign_core::eval::face_attributes::fairface::{FairFace, FairFaceReading};
use popalign_core::eval::face_attributes::torchvision_resnet::ResNetConfig;
use popalign_core::io::load::LoadError;
use popalign_core::io::tensor_io::{read_tensors, write_tensors};

/// The narrow ResNet of the fixture: resnet34 depth, stage widths / 16.
fn tiny_config() -> ResNetConfig {
    ResNetConfig {
        layers: [3, 4, 6, 3],
        widths: [4, 8, 16, 32],
        num_classes: 18,
    }
}

fn dir() -> PathBuf {
    fixtures().join("fairface")
}

pub(crate) fn tiny() -> FairFace<B> {
    FairFace::load_with(&dir().join("tiny.safetensors"), &tiny_config(), &device())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The two 224×224 chips as `[2, 3, 224, 224]` in [0, 1].
fn chips() -> Tensor<B, 4> {
    let chips: Vec<Tensor<B, 4>> = (0..2)
        .map(|i| {
            let image = image::open(dir().join(format!("chip_{i}.png")))
                .unwrap()
                .to_rgb8();
            let (w, h) = (image.width() as usize, image.height() as usize);
            let planes = unit_rgb_planes(image.as_raw(), w, h);
            Tensor::<B, 1>::from_floats(planes.as_slice(), &device()).reshape([1, 3, h, w])
        })
        .collect();
    Tensor::cat(chips, 0)
}

fn outputs() -> BTreeMap<String, TensorData> {
    read_tensors(&dir().join("outputs.safetensors")).unwrap_or_else(|e| panic!("{e}"))
}

/// Rows of `[N, K]` f64 values as an f32 tensor, to compare with a golden.
fn rows(values: Vec<Vec<f64>>) -> Tensor<B, 2> {
    let n = values.len();
    let k = values[0].len();
    let flat: Vec<f32> = values.into_iter().flatten().map(|v| v as f32).collect();
    Tensor::from_data(TensorData::new(flat, [n, k]), &device())
}

#[test]
fn tiny_resnet_matches_torchvision() {
    let model = tiny();
    let expected = outputs();
    // Measured: logits 9.5e-7 (max |logit| 5.9), probabilities ≤ 1.4e-7.
    let logits = model.net.forward(FairFace::<B>::normalize(chips()));
    assert_close("logits", logits, &expected["logits"], 1e-4);
    let readings = model.read(chips());
    let bands = AgeBands::default();
    let race7 = rows(readings.iter().map(|r| r.race7.clone()).collect());
    assert_close("race7", race7, &expected["race7"], 1e-4);
    let gender = rows(readings.iter().map(|r| r.gender.to_vec()).collect());
    assert_close("gender", gender, &expected["gender"], 1e-4);
    let age9 = rows(readings.iter().map(|r| r.age9.clone()).collect());
    assert_close("age9", age9, &expected["age9"], 1e-4);
    let race = rows(readings.iter().map(FairFaceReading::race).collect());
    assert_close("race (6 classes)", race, &expected["race"], 1e-4);
    let age = rows(readings.iter().map(|r| r.age(&bands).to_vec()).collect());
    assert_close("age (3 bands)", age, &expected["age"], 1e-4);
}

#[test]
fn classifier_reports_gender_race_and_age_axes() {
    let model = tiny();
    let axes = model.axes();
    let names: Vec<&str> = axes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["gender", "race", "age"]);
    assert_eq!(
        axes[1].classes,
        [
            "white",
            "asian",
            "black",
            "latino hispanic",
            "indian",
            "middle eastern"
        ]
    );
    let attributes = model.classify(chips());
    assert_eq!(attributes.len(), 2);
    let expected = outputs();
    let race = expected["race"].to_vec::<f32>().unwrap();
    for (i, a) in attributes.iter().enumerate() {
        assert!(a.face_found);
        for axis in &axes {
            let p = &a.probabilities[&axis.name];
            assert_eq!(p.len(), axis.classes.len());
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{p:?}");
        }
        for (k, p) in a.probabilities["race"].iter().enumerate() {
            assert!((*p as f32 - race[i * 6 + k]).abs() < 1e-4);
        }
    }
}

#[test]
fn class_mapping_on_a_hand_made_reading() {
    let reading = FairFaceReading {
        // White, Black, Latino_Hispanic, East Asian, Southeast Asian, Indian, Middle Eastern
        race7: vec![0.05, 0.1, 0.15, 0.2, 0.25, 0.13, 0.12],
        gender: [0.3, 0.7],
        // 0-2, 3-9, 10-19, 20-29, 30-39, 40-49, 50-59, 60-69, 70+
        age9: vec![0.01, 0.02, 0.03, 0.04, 0.1, 0.2, 0.3, 0.15, 0.15],
    };
    let race = reading.race();
    let want = [0.05, 0.45, 0.1, 0.15, 0.13, 0.12];
    for (got, want) in race.iter().zip(want) {
        assert!((got - want).abs() < 1e-12, "{race:?}");
    }
    let age = reading.age(&AgeBands::default());
    for (got, want) in age.iter().zip([0.2, 0.5, 0.3]) {
        assert!((got - want).abs() < 1e-12, "{age:?}");
    }
    // Bands that do not fall on bucket bounds: a bucket goes where its lower bound does.
    let bands = AgeBands {
        mid_aged_from: 35.0,
        very_old_from: 65.0,
    };
    // 30-39 starts below 35 (young); 60-69 starts below 65 (mid-aged).
    let age = reading.age(&bands);
    for (got, want) in age.iter().zip([0.2, 0.65, 0.15]) {
        assert!((got - want).abs() < 1e-12, "{age:?}");
    }
    let bands = AgeBands {
        mid_aged_from: 30.0,
        very_old_from: 70.0,
    };
    for (got, want) in reading.age(&bands).iter().zip([0.1, 0.75, 0.15]) {
        assert!((got - want).abs() < 1e-12);
    }
}

/// A checkpoint with exactly the keys and shapes of torchvision's `resnet34(num_classes=18)` (as the public
/// FairFace checkpoint has them, `num_batches_tracked` as int64 included) loads into [`FairFace::load`].
#[test]
fn real_architecture_keys_and_shapes_load() {
    let manifest: BTreeMap<String, Vec<usize>> =
        serde_json::from_slice(&std::fs::read(dir().join("resnet34_shapes.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest.len(),
        218,
        "torchvision resnet34 state_dict entries"
    );
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = manifest
        .iter()
        .map(|(key, shape)| {
            let n: usize = shape.iter().product();
            let bytes = if key.ends_with("num_batches_tracked") {
                vec![0u8; 8 * n.max(1)]
            } else {
                // Variances of 1 keep the BatchNorm finite; every other tensor is zero.
                let value: f32 = if key.ends_with("running_var") {
                    1.0
                } else {
                    0.0
                };
                value.to_le_bytes().repeat(n)
            };
            (key.clone(), shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = buffers
        .iter()
        .map(|(key, shape, bytes)| {
            let dtype = if key.ends_with("num_batches_tracked") {
                safetensors::Dtype::I64
            } else {
                safetensors::Dtype::F32
            };
            let view = safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes).unwrap();
            (key.clone(), view)
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("fairface.safetensors");
    safetensors::serialize_to_file(views, None, &file).unwrap();
    let model = FairFace::<B>::load(&file, &device()).unwrap_or_else(|e| panic!("{e}"));
    // All-zero weights: every head is uniform.
    let reading = model
        .read(Tensor::zeros([1, 3, 224, 224], &device()))
        .remove(0);
    assert!(reading.race7.iter().all(|p| (p - 1.0 / 7.0).abs() < 1e-6));
    assert!(reading.age9.iter().all(|p| (p - 1.0 / 9.0).abs() < 1e-6));
}

fn load_edited(
    edit: impl FnOnce(&mut BTreeMap<String, TensorData>),
) -> Result<FairFace<B>, LoadError> {
    let mut tensors = read_tensors(&dir().join("tiny.safetensors")).unwrap();
    edit(&mut tensors);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("fairface.safetensors");
    write_tensors(&file, &tensors).unwrap();
    FairFace::load_with(&file, &tiny_config(), &device())
}

#[test]
fn missing_and_mis_shaped_weights_are_named() {
    let error = load_edited(|t| {
        t.remove("layer2.0.downsample.1.running_var").unwrap();
    })
    .expect_err("a file without a BatchNorm statistic must not load");
    let message = error.to_string();
    assert!(message.contains("layer2.0.downsample"), "{message}");
    assert!(message.contains("running_var"), "{message}");

    // A head of another size (a network trained for other classes) must be refused.
    let error = load_edited(|t| {
        t.insert(
            "fc.weight".into(),
            TensorData::new(vec![0f32; 16 * 32], [16, 32]),
        );
    })
    .expect_err("a 16-output head must not load as FairFace");
    let message = error.to_string();
    println!("{message}");
    assert!(
        message.contains("fc.weight")
            && message.contains("[18, 32]")
            && message.contains("[16, 32]"),
        "{message}"
    );
}
