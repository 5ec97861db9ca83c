//! MTCNN against facenet-pytorch 2.6.0 (`tools/fixtures/make_mtcnn.py`, fixtures in `fixtures/mtcnn/`):
//! the three networks on fixed inputs, detection on real photos (the exact pixels the reference saw,
//! stored as PNG), a canvas with three faces, a photo without a person, the 160×160 crop, load errors,
//! and inputs too small or too dark to hold a face.
//!
//! Measured on this machine (ndarray, f32; the tests print them), against tolerances of 1e-4 (networks,
//! probabilities) and 1 px (boxes, landmarks):
//! * network outputs, max abs error: PNet 2.5e-7 (reg) / 1.2e-7 (prob), RNet 3.4e-7 / 5.6e-9,
//!   ONet 1.0e-7 (reg) / 1.8e-7 (landmarks) / 1.5e-9 (prob);
//! * detections (astronaut, camera, grace_hopper, the three-face canvas): boxes and landmarks within
//!   4.6e-5 px, probabilities identical; the same number of candidates reach and pass RNet and ONet;
//! * the 160×160 crop: identical (max abs error 0), from facenet-pytorch's box and from ours.

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::prelude::*;
use common::{B, assert_close, device, fixtures};
use popalign_core::io::load::LoadError;
use popalign_core::io::tensor_io::{read_tensors, write_tensors};
use popalign_core::models::face::extract::{crop_box, extract_face, resize_bilinear};
use popalign_core::models::face::nms::{batched_nms, nms, nms_min};
use popalign_core::models::face::{Face, Mtcnn, MtcnnConfig, StageCounts, rgb8_planes};

fn dir() -> PathBuf {
    fixtures().join("mtcnn")
}

fn mtcnn() -> Mtcnn<B> {
    Mtcnn::load(dir(), &device()).unwrap_or_else(|e| panic!("{e}"))
}

fn tensors(name: &str) -> BTreeMap<String, burn::tensor::TensorData> {
    read_tensors(&dir().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// A fixture photo as the detector's input: `[3, H, W]` (or `[1, H, W]` for a grey PNG) in 0..255.
fn photo(file: &str) -> Tensor<B, 3> {
    let image = image::open(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let (w, h) = (image.width() as usize, image.height() as usize);
    match image {
        image::DynamicImage::ImageLuma8(grey) => {
            let values: Vec<f32> = grey.as_raw().iter().map(|&v| f32::from(v)).collect();
            Tensor::<B, 1>::from_floats(values.as_slice(), &device()).reshape([1, h, w])
        }
        other => {
            let rgb = other.to_rgb8();
            let planes = rgb8_planes(rgb.as_raw(), w, h);
            Tensor::<B, 1>::from_floats(planes.as_slice(), &device()).reshape([3, h, w])
        }
    }
}

#[derive(serde::Deserialize)]
struct Detections {
    images: BTreeMap<String, Reference>,
}

#[derive(serde::Deserialize)]
struct Reference {
    file: String,
    mode: String,
    height: usize,
    width: usize,
    boxes: Vec<[f32; 4]>,
    probs: Vec<f32>,
    landmarks: Vec<[[f32; 2]; 5]>,
    stages: BTreeMap<String, usize>,
}

fn reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(dir().join("detections.json")).unwrap();
    let mut all: Detections = serde_json::from_str(&text).unwrap();
    all.images.remove(name).unwrap()
}

/// Max errors of one photo's detection: (box px, probability, landmark px).
#[derive(Debug, Default)]
struct Errors {
    bbox: f32,
    probability: f32,
    landmarks: f32,
}

fn compare(name: &str, faces: &[Face], counts: StageCounts, expected: &Reference) -> Errors {
    println!("{name}: ours {faces:?}, {counts:?}");
    let stages = StageCounts {
        rnet_inputs: expected.stages["rnet_inputs"],
        rnet_passed: expected.stages["rnet_passed"],
        onet_inputs: expected.stages["onet_inputs"],
        onet_passed: expected.stages["onet_passed"],
    };
    assert_eq!(counts, stages, "{name}: candidates per stage");
    assert_eq!(faces.len(), expected.boxes.len(), "{name}: number of faces");
    let mut errors = Errors::default();
    for (i, face) in faces.iter().enumerate() {
        for k in 0..4 {
            errors.bbox = errors.bbox.max((face.bbox[k] - expected.boxes[i][k]).abs());
        }
        errors.probability = errors
            .probability
            .max((face.probability - expected.probs[i]).abs());
        for p in 0..5 {
            for k in 0..2 {
                errors.landmarks = errors
                    .landmarks
                    .max((face.landmarks[p][k] - expected.landmarks[i][p][k]).abs());
            }
        }
    }
    println!("{name}: max errors {errors:?}");
    errors
}

/// Detects on a fixture photo and checks it against facenet-pytorch: every box and landmark within
/// 1 px, every probability within 1e-4, and the same number of candidates at each stage.
fn check_photo(name: &str) -> Errors {
    let expected = reference(name);
    let image = photo(&expected.file);
    let [c, h, w] = image.dims();
    assert_eq!([h, w], [expected.height, expected.width]);
    assert_eq!(c, if expected.mode == "L" { 1 } else { 3 });
    let (faces, counts) = mtcnn().detect_counted(image);
    let errors = compare(name, &faces, counts, &expected);
    assert!(errors.bbox <= 1.0, "{name}: box error {} px", errors.bbox);
    assert!(
        errors.probability <= 1e-4,
        "{name}: probability error {:.2e}",
        errors.probability
    );
    assert!(
        errors.landmarks <= 1.0,
        "{name}: landmark error {} px",
        errors.landmarks
    );
    errors
}

#[test]
fn networks_match_facenet_pytorch() {
    let model = mtcnn();
    let inputs = tensors("nets_inputs.safetensors");
    let outputs = tensors("nets_outputs.safetensors");
    let x = |k: &str| Tensor::<B, 4>::from_data(inputs[k].clone(), &device());
    for (input, stem) in [("pnet_in", "pnet"), ("pnet_in_large", "pnet_large")] {
        let out = model.nets.pnet.forward(x(input));
        assert_close(
            &format!("{stem} reg"),
            out.reg,
            &outputs[&format!("{stem}_reg")],
            1e-4,
        );
        assert_close(
            &format!("{stem} prob"),
            out.prob,
            &outputs[&format!("{stem}_prob")],
            1e-4,
        );
    }
    let out = model.nets.rnet.forward(x("rnet_in"));
    assert_close("rnet reg", out.reg, &outputs["rnet_reg"], 1e-4);
    assert_close("rnet prob", out.prob, &outputs["rnet_prob"], 1e-4);
    let out = model.nets.onet.forward(x("onet_in"));
    assert_close("onet reg", out.reg, &outputs["onet_reg"], 1e-4);
    assert_close(
        "onet landmarks",
        out.landmarks,
        &outputs["onet_landmarks"],
        1e-4,
    );
    assert_close("onet prob", out.prob, &outputs["onet_prob"], 1e-4);
}

#[test]
fn astronaut_matches_facenet_pytorch() {
    check_photo("astronaut");
}

/// camera is grey: it goes in as `[1, H, W]` and must be treated as PIL's `convert("RGB")`.
#[test]
fn camera_matches_facenet_pytorch() {
    check_photo("camera");
}

#[test]
fn grace_hopper_matches_facenet_pytorch() {
    check_photo("grace_hopper");
}

/// Three faces of different sizes, in facenet-pytorch's order (largest first).
#[test]
fn canvas_with_three_faces_matches_facenet_pytorch() {
    let errors = check_photo("faces");
    assert_eq!(reference("faces").boxes.len(), 3);
    println!("faces: {errors:?}");
}

/// A cat (20 PNet candidates reach RNet, none passes) and a landscape (65 reach RNet, one reaches ONet and
/// fails there): no face, with the same candidate counts per stage as facenet-pytorch.
#[test]
fn photos_without_a_person_have_no_face() {
    for name in ["chelsea", "landscape"] {
        let expected = reference(name);
        assert!(expected.boxes.is_empty());
        let (faces, counts) = mtcnn().detect_counted(photo(&expected.file));
        compare(name, &faces, counts, &expected);
        assert!(faces.is_empty(), "{name}");
        assert!(counts.rnet_inputs > 0, "{name}: the stages should have run");
    }
}

/// facenet-pytorch's `MTCNN(keep_all=True)(astronaut)[0]`: crop of the first face, PIL bilinear to 160,
/// standardised. Pillow's fixed-point resampling is reproduced exactly, so the tolerance is 0.
#[test]
fn aligned_crop_matches_facenet_pytorch() {
    let golden = tensors("crop.safetensors");
    let expected = &golden["face"];
    let reference_box: Vec<f32> = golden["box"].to_vec().unwrap();
    let reference_box: [f32; 4] = reference_box.try_into().unwrap();
    let model = mtcnn();
    let image = photo("astronaut.png");
    let [_, h, w] = image.dims();

    // From the reference's own box: isolates the crop and the resize.
    let planes: Vec<f32> = image.clone().into_data().to_vec().unwrap();
    let crop = extract_face(&planes, h, w, reference_box, 160, 0).unwrap();
    let crop = Tensor::<B, 1>::from_floats(crop.as_slice(), &device()).reshape([3, 160, 160]);
    assert_close("crop from the reference box", crop, expected, 0.0);

    // End to end: our detection, then Mtcnn::extract.
    let faces = model.detect(image.clone());
    let ours = crop_box(faces[0].bbox, 160, 0, w, h);
    assert_eq!(
        ours,
        crop_box(reference_box, 160, 0, w, h),
        "integer crop box"
    );
    let crop = model.extract(image, &faces[0]).unwrap();
    assert_eq!(crop.dims(), [3, 160, 160]);
    assert_close("crop from our box", crop, expected, 0.0);
}

/// The resize alone, on a shape where both passes widen their filter and on one that enlarges.
#[test]
fn bilinear_resize_keeps_flat_images_flat_and_enlarges() {
    let flat = vec![77u8; 3 * 30 * 50];
    assert!(
        resize_bilinear(&flat, 3, 30, 50, 7, 11)
            .iter()
            .all(|&v| v == 77)
    );
    // 1×2 → 1×4 enlarges with the plain triangle: [10, 20] → [10, 13, 18, 20] (Pillow's values).
    assert_eq!(
        resize_bilinear(&[10, 20], 1, 1, 2, 1, 4),
        vec![10, 13, 18, 20]
    );
}

#[test]
fn missing_or_misshaped_weight_names_key_and_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = tensors("mtcnn.safetensors");

    let mut missing = weights.clone();
    missing.remove("onet.dense5.weight");
    let file = tmp.path().join("missing.safetensors");
    write_tensors(&file, &missing).unwrap();
    match Mtcnn::<B>::load(&file, &device()) {
        Err(e @ LoadError::MissingTensor { .. }) => {
            println!("{e}");
            assert!(e.to_string().contains("`onet.dense5.weight`"), "{e}");
        }
        other => panic!("expected MissingTensor, got {:?}", other.map(|_| ())),
    }

    for (key, shape) in [
        ("rnet.prelu2.weight", vec![47]),
        ("pnet.conv1.weight", vec![10, 3, 3, 2]),
        ("onet.dense6_3.weight", vec![8, 256]),
    ] {
        let mut bad = weights.clone();
        let n: usize = shape.iter().product();
        bad.insert(
            key.into(),
            burn::tensor::TensorData::new(vec![0.1f32; n], shape.clone()),
        );
        let file = tmp.path().join("bad.safetensors");
        write_tensors(&file, &bad).unwrap();
        match Mtcnn::<B>::load(&file, &device()) {
            Err(e @ LoadError::Shape { .. }) => {
                println!("{e}");
                let LoadError::Shape {
                    key: k,
                    found,
                    expected,
                    ..
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(k, key);
                assert_eq!(found, &shape, "found shape in the file's layout");
                assert_eq!(expected, &weights[key].shape.to_vec(), "expected shape");
                assert!(e.to_string().contains(key), "{e}");
            }
            other => panic!("{key}: expected Shape, got {:?}", other.map(|_| ())),
        }
    }

    match Mtcnn::<B>::load(tmp.path().join("nowhere"), &device()) {
        Err(LoadError::Missing { .. }) => {}
        other => panic!("expected Missing, got {:?}", other.map(|_| ())),
    }
}

/// Inputs that cannot hold a face give an empty result, never a panic (facenet-pytorch itself raises
/// `torch.cat(): expected a non-empty list` on the two tiny ones, and finds nothing on black).
#[test]
fn degenerate_inputs_give_no_face() {
    let model = mtcnn();
    let d = device();
    for [c, h, w] in [[3, 1, 1], [3, 12, 12], [1, 19, 300], [3, 0, 0], [1, 0, 7]] {
        let faces = model.detect(Tensor::<B, 3>::zeros([c, h, w], &d));
        assert!(faces.is_empty(), "{c}×{h}×{w}");
    }
    let (faces, counts) = model.detect_counted(Tensor::<B, 3>::zeros([3, 160, 160], &d));
    assert!(faces.is_empty(), "all-black: {faces:?} {counts:?}");
    let white = Tensor::<B, 3>::full([3, 64, 96], 255.0, &d);
    assert!(model.detect(white.clone()).is_empty());
    // A face box entirely outside the image crops to nothing.
    let outside = Face {
        bbox: [200.0, 10.0, 260.0, 70.0],
        probability: 1.0,
        landmarks: [[0.0; 2]; 5],
    };
    assert!(model.extract(white, &outside).is_none());
}

#[test]
fn config_is_serde_and_validated() {
    let config: MtcnnConfig =
        serde_json::from_str(r#"{"min_face_size": 40, "thresholds": [0.5, 0.6, 0.9]}"#).unwrap();
    assert_eq!(config.factor, 0.709);
    assert_eq!(config.thresholds, [0.5, 0.6, 0.9]);
    assert!(serde_json::from_str::<MtcnnConfig>(r#"{"min_face": 40}"#).is_err());
    assert!(
        mtcnn()
            .with_config(MtcnnConfig {
                factor: 1.0,
                ..MtcnnConfig::default()
            })
            .is_err()
    );
    // A larger minimum face size removes the astronaut's ~90 px face only when it exceeds it.
    let image = photo("astronaut.png");
    let model = mtcnn()
        .with_config(MtcnnConfig {
            min_face_size: 60.0,
            ..MtcnnConfig::default()
        })
        .unwrap();
    assert_eq!(model.detect(image.clone()).len(), 1);
    let model = model
        .with_config(MtcnnConfig {
            min_face_size: 400.0,
            ..MtcnnConfig::default()
        })
        .unwrap();
    assert!(model.detect(image).is_empty());
}

#[test]
fn nms_follows_torchvision_and_facenet_min() {
    // IoU of boxes 0 and 1: 50 / 150 = 1/3; of 0 and 2: 0.
    let boxes = [
        [0.0, 0.0, 10.0, 10.0],
        [5.0, 0.0, 15.0, 10.0],
        [20.0, 0.0, 30.0, 10.0],
    ];
    let scores = [0.9, 0.95, 0.5];
    assert_eq!(nms(&boxes, &scores, 0.5), vec![1, 0, 2]);
    assert_eq!(nms(&boxes, &scores, 0.3), vec![1, 2]);
    // Suppression needs IoU > threshold.
    assert_eq!(nms(&boxes, &scores, 1.0 / 3.0 + 1e-7), vec![1, 0, 2]);
    // Different groups never suppress each other.
    assert_eq!(batched_nms(&boxes, &scores, &[0, 1, 0], 0.3), vec![1, 0, 2]);
    // Equal scores keep their input order (torchvision sorts stably).
    assert_eq!(nms(&boxes, &[0.5, 0.5, 0.5], 0.3), vec![0, 2]);
    // A small box inside a big one: IoU is small, overlap over the smaller area is 1.
    let nested = [[0.0, 0.0, 99.0, 99.0], [10.0, 10.0, 19.0, 19.0]];
    assert_eq!(nms(&nested, &[0.9, 0.8], 0.7), vec![0, 1]);
    assert_eq!(nms_min(&nested, &[0.9, 0.8], 0.7), vec![0]);
    assert_eq!(nms_min(&nested, &[0.8, 0.9], 0.7), vec![1]);
    assert!(nms_min(&[], &[], 0.7).is_empty());
}

/// The browser loads the weights from bytes: the same detections as from the file, and the same errors,
/// naming the name it was given.
#[test]
fn weights_from_bytes_detect_alike_and_name_errors() {
    let bytes = std::fs::read(dir().join("mtcnn.safetensors")).unwrap();
    let from_bytes = Mtcnn::<B>::from_bytes("carried/mtcnn.safetensors", bytes.clone(), &device())
        .unwrap_or_else(|e| panic!("{e}"));
    let (faces, counts) = from_bytes.detect_counted(photo("astronaut.png"));
    assert_eq!(
        (faces, counts),
        mtcnn().detect_counted(photo("astronaut.png"))
    );

    // The header (about 4 KB) intact, the last tensor's data cut short.
    let cut = bytes[..bytes.len() - 1000].to_vec();
    let truncated = Mtcnn::<B>::from_bytes("carried/mtcnn.safetensors", cut, &device());
    let err = truncated.map(|_| ()).unwrap_err().to_string();
    assert!(
        err.starts_with("carried/mtcnn.safetensors: ") && err.contains("truncated"),
        "{err}"
    );

    let mut missing = tensors("mtcnn.safetensors");
    missing.remove("pnet.conv1.bias");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("missing.safetensors");
    write_tensors(&file, &missing).unwrap();
    let err = Mtcnn::<B>::from_bytes("m.safetensors", std::fs::read(&file).unwrap(), &device())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("m.safetensors") && err.contains("`pnet.conv1.bias`"),
        "{err}"
    );
}

/// The asynchronous detector (the browser's path) gives what the blocking one gives.
#[test]
fn asynchronous_detection_matches() {
    let detector = mtcnn();
    let faces =
        futures_lite::future::block_on(detector.detect_async(photo("grace_hopper.png"))).unwrap();
    assert_eq!(faces, detector.detect(photo("grace_hopper.png")));
    assert_eq!(faces.len(), 1);
}
