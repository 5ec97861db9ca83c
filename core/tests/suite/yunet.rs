//! YuNet (`core::models::yunet`) against OpenCV 4.14's `FaceDetectorYN` on an ONNX file of the official model's
//! layout with random weights (`tools/fixtures/yunet/make_yunet.py`), converted by `tools/convert_yunet.py`: the
//! network's twelve outputs, and the detections (boxes, landmarks, scores after OpenCV's integer-box NMS) on four
//! photos, one grayscale.

use crate::common;

use std::collections::BTreeMap;

use burn::tensor::{Tensor, TensorData};
use common::*;
use popalign_core::io::load::LoadError;
use popalign_core::io::tensor_io::{read_tensors, write_tensors};
use popalign_core::models::face::rgb8_planes;
use popalign_core::models::yunet::{YuNet, YuNetConfig, downscale_as_deepface};

fn dir() -> std::path::PathBuf {
    fixtures().join("yunet")
}

fn detector() -> YuNet<B> {
    YuNet::load(&dir().join("yunet.safetensors"), &device()).unwrap_or_else(|e| panic!("{e}"))
}

fn golden() -> BTreeMap<String, TensorData> {
    read_tensors(&dir().join("goldens.safetensors")).unwrap()
}

fn meta() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("meta.json")).unwrap()).unwrap()
}

/// An RGB image as the detector takes it, `[3, H, W]` in 0..255.
fn planes(rgb: &image::RgbImage) -> Tensor<B, 3> {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    Tensor::<B, 1>::from_floats(rgb8_planes(rgb.as_raw(), w, h).as_slice(), &device())
        .reshape([3, h, w])
}

#[test]
fn network_outputs_match_opencv_dnn() {
    let golden = golden();
    let image = image::open(dir().join("small.png")).unwrap().to_rgb8();
    let (levels, pad_h, pad_w) = detector().predictions(planes(&image));
    assert_eq!([pad_h, pad_w], [128, 160]);
    for (level, stride) in levels.into_iter().zip([8, 16, 32]) {
        for (name, out) in [
            ("cls", level.cls),
            ("obj", level.obj),
            ("bbox", level.bbox),
            ("kps", level.kps),
        ] {
            let expected = &golden[&format!("{name}_{stride}")];
            let [_, anchors, c] = expected.shape[..] else {
                panic!("{name}: [1, HW, C]")
            };
            let expected = TensorData::new(expected.to_vec::<f32>().unwrap(), [anchors, c]);
            // Measured: ≤ 8.4e-6 over the twelve outputs.
            assert_close::<B, 2>(&format!("{name}_{stride}"), out, &expected, 5e-5);
        }
    }
}

#[test]
fn detections_match_face_detector_yn_on_photos() {
    let (golden, meta) = (golden(), meta());
    let mut detector = detector();
    for (name, photo) in meta["photos"].as_object().unwrap() {
        detector.config = YuNetConfig {
            score_threshold: photo["score_threshold"].as_f64().unwrap() as f32,
            ..YuNetConfig::default()
        };
        let image = image::open(fixtures().join(format!("mtcnn/{name}.png")))
            .unwrap()
            .to_rgb8();
        let faces = detector.detect(planes(&image));
        let expected = golden[&format!("faces_{name}")].to_vec::<f32>().unwrap();
        assert_eq!(faces.len() * 15, expected.len(), "{name}: face count");
        let mut worst = 0f32;
        for (face, row) in faces.iter().zip(expected.chunks_exact(15)) {
            let ours: Vec<f32> = face
                .bbox
                .iter()
                .chain(face.landmarks.iter().flatten())
                .chain([&face.score])
                .copied()
                .collect();
            for (a, e) in ours.iter().zip(row) {
                worst = worst.max((a - e).abs());
            }
        }
        println!("{name}: {} faces, max abs error {worst:.3e}", faces.len());
        // Measured: ≤ 1.6e-4 px (coordinates up to a few hundred pixels), the same faces in the same order.
        assert!(worst <= 1e-3, "{name}: max abs error {worst}");
    }
}

/// DeepFace's `YuNetClient.detect_faces` on OpenCV's rows: corners and sizes truncated to integers, the corner
/// clamped at 0 (no resize: the photos are under 640 pixels).
fn deepface_box(row: &[f32]) -> [f32; 4] {
    let [x, y, w, h] = [0, 1, 2, 3].map(|i| row[i] as i64);
    let (x, y) = (x.max(0), y.max(0));
    [x, y, x + w, y + h].map(|v| v as f32)
}

#[test]
fn deepface_boxes_follow_its_yunet_wrapper() {
    let (golden, meta) = (golden(), meta());
    let mut detector = detector();
    for (name, photo) in meta["photos"].as_object().unwrap() {
        detector.config.score_threshold = photo["score_threshold"].as_f64().unwrap() as f32;
        let image = image::open(fixtures().join(format!("mtcnn/{name}.png")))
            .unwrap()
            .to_rgb8();
        let ours = detector.detect_deepface(planes(&image));
        let expected: Vec<([f32; 4], f32)> = golden[&format!("faces_{name}")]
            .to_vec::<f32>()
            .unwrap()
            .chunks_exact(15)
            .map(|row| (deepface_box(row), row[14]))
            .collect();
        assert_eq!(ours.len(), expected.len(), "{name}");
        for ((bbox, score), (want_box, want_score)) in ours.iter().zip(&expected) {
            assert_eq!(bbox, want_box, "{name}: integer boxes");
            assert!(
                (score - want_score).abs() < 1e-5,
                "{name}: {score} vs {want_score}"
            );
        }
    }
}

/// Over 640 pixels a side DeepFace downscales first (cv2's bilinear samples at half-pixel centres) and scales the
/// boxes back. A ramp `0.19·x` 1280 wide comes down to `round(0.19·(2i + ½))` in column `i` (corner-aligned
/// sampling would round some columns the other way). A photo upscaled 4× (nearest) to 1280 pixels comes down to
/// exactly its 2× upscale, so its boxes must be exactly twice those of the 2× image, which is not resized.
#[test]
fn deepface_downscales_large_images_and_scales_the_boxes_back() {
    let ramp = Tensor::<B, 1, burn::tensor::Int>::arange(0..1280, &device()).float() * 0.19;
    let ramp = ramp.reshape([1, 1, 1280]).expand([3, 4, 1280]);
    let (down, r) = downscale_as_deepface(ramp);
    assert_eq!((r, down.dims()), (Some(0.5), [3, 2, 640]));
    let expected: Vec<f32> = (0..3 * 2)
        .flat_map(|_| (0..640).map(|i| (0.19 * (2.0 * i as f64 + 0.5)).round() as f32))
        .collect();
    let got = down.into_data().to_vec::<f32>().unwrap();
    let wrong = got.iter().zip(&expected).filter(|(g, e)| g != e).count();
    assert_eq!(
        wrong,
        0,
        "{wrong} of {} values differ from half-pixel bilinear",
        got.len()
    );

    let mut detector = detector();
    detector.config.score_threshold = 0.8;
    let photo = image::open(fixtures().join("mtcnn/landscape.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(photo.width(), 320, "the 4× copy must be 1280 wide");
    let upscaled = |k: u32| {
        image::imageops::resize(
            &photo,
            k * photo.width(),
            k * photo.height(),
            image::imageops::FilterType::Nearest,
        )
    };
    let (down, r) = downscale_as_deepface(planes(&upscaled(4)));
    assert_eq!(r, Some(0.5));
    let pixels = |t: Tensor<B, 3>| t.into_data().to_vec::<f32>().unwrap();
    assert!(
        pixels(down) == pixels(planes(&upscaled(2))),
        "the half of the 4× copy is not the 2× copy"
    );
    let twice = detector.detect_deepface(planes(&upscaled(2)));
    let four_times = detector.detect_deepface(planes(&upscaled(4)));
    assert!(
        !twice.is_empty(),
        "no detection to compare at threshold 0.8"
    );
    let expected: Vec<([f32; 4], f32)> = twice
        .iter()
        .map(|(b, s)| (b.map(|v| 2.0 * v), *s))
        .collect();
    assert_eq!(four_times, expected);
}

#[test]
fn a_missing_or_misshaped_tensor_is_named() {
    let load_edited =
        |edit: &dyn Fn(&mut BTreeMap<String, TensorData>)| -> Result<YuNet<B>, LoadError> {
            let mut tensors = read_tensors(&dir().join("yunet.safetensors")).unwrap();
            edit(&mut tensors);
            let tmp = tempfile::tempdir().unwrap();
            let file = tmp.path().join("yunet.safetensors");
            write_tensors(&file, &tensors).unwrap();
            YuNet::load(&file, &device())
        };
    let key = "bbox_head.multi_level_kps.2.conv1.weight";
    let message = load_edited(&|t| drop(t.remove(key)))
        .err()
        .expect("must not load")
        .to_string();
    assert!(
        message.contains("missing tensor") && message.contains(key),
        "{message}"
    );
    let message = load_edited(&|t| {
        t.insert(
            key.into(),
            TensorData::new(vec![0f32; 8 * 64], [8, 64, 1, 1]),
        );
    })
    .err()
    .expect("must not load")
    .to_string();
    assert!(
        message.contains(key) && message.contains("[8, 64, 1, 1]"),
        "{message}"
    );
}
