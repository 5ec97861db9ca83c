//! `popalign classify --images DIR` on the bad inputs a user's folder holds: a truncated JPEG, a PNG
//! with alpha, a 1×1 image, a 12000×12000 image, a grayscale image and a file that is not an image.
//! Each is either classified or counted as unreadable; the command never crashes, and a re-run after a
//! partial CSV ends with the same file as an uninterrupted run.

use std::path::Path;

use assert_cmd::Command;
use image::{GrayImage, ImageFormat, RgbImage, RgbaImage};
use popalign_core::eval::classify::kind::ClassifierKind;
use popalign_core::toy::TOY;
use popalign_core::toy::render::render;
use popalign_core::toy::world::{Figure, SIZE};

/// A toy render as an 8-bit RGB image (no background noise).
fn toy_image(occupation: usize, figure: Figure) -> RgbImage {
    let planes = render(&TOY, occupation, figure, || 0.0);
    RgbImage::from_fn(SIZE as u32, SIZE as u32, |x, y| {
        let at = |c: usize| planes[(c * SIZE + y as usize) * SIZE + x as usize];
        image::Rgb([0, 1, 2].map(|c| (((at(c) + 1.0) / 2.0) * 255.0).round() as u8))
    })
}

fn write_bad_folder(dir: &Path) {
    let blue_wide = toy_image(
        0,
        Figure {
            shape: 1,
            colour: 3,
        },
    );
    let red_tall = toy_image(
        1,
        Figure {
            shape: 0,
            colour: 0,
        },
    );
    blue_wide.save(dir.join("a-blue-wide.png")).unwrap();
    red_tall.save(dir.join("b-red-tall.png")).unwrap();
    let mut jpeg = Vec::new();
    red_tall
        .write_to(&mut std::io::Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .unwrap();
    std::fs::write(dir.join("c-truncated.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    let alpha = RgbaImage::from_fn(SIZE as u32, SIZE as u32, |x, y| {
        let [r, g, b] = blue_wide.get_pixel(x, y).0;
        image::Rgba([r, g, b, 128])
    });
    alpha.save(dir.join("d-alpha.png")).unwrap();
    RgbImage::from_pixel(1, 1, image::Rgb([200, 30, 30]))
        .save(dir.join("e-1x1.png"))
        .unwrap();
    // Each toy pixel repeated 750×750 times: 12000×12000, downscaled before classification.
    let huge = GrayImage::from_fn(12_000, 12_000, |x, y| {
        let [r, g, b] = red_tall.get_pixel(x / 750, y / 750).0;
        image::Luma([((u32::from(r) + u32::from(g) + u32::from(b)) / 3) as u8])
    });
    huge.save(dir.join("f-huge-grey.png")).unwrap();
    std::fs::write(dir.join("g-not-an-image.png"), "hello").unwrap();
    std::fs::write(dir.join("notes.txt"), "not listed").unwrap();
}

fn classify(images: &Path, out: &Path) -> String {
    let output = Command::cargo_bin("popalign")
        .unwrap()
        .args(["classify", "--batch-size", "2", "--images"])
        .arg(images)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

fn column(row: &csv::StringRecord, headers: &csv::StringRecord, name: &str) -> String {
    let k = headers.iter().position(|h| h == name).unwrap();
    row[k].to_string()
}

#[test]
fn bad_images_are_classified_or_counted_and_a_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    write_bad_folder(&images);
    let out = dir.path().join("attributes.csv");
    let stdout = classify(&images, &out);
    assert!(
        stdout.contains("7 images: 4 with a face, 1 without, 2 unreadable"),
        "{stdout}"
    );
    assert!(stdout.contains("skipped 1 file(s)"), "{stdout}");

    let mut reader = csv::Reader::from_path(&out).unwrap();
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let by_file = |name: &str| {
        rows.iter()
            .find(|r| column(r, &headers, "file") == name)
            .unwrap_or_else(|| panic!("no row for {name}"))
    };
    let expect = |file: &str, face: &str, gender: &str, race: &str| {
        let row = by_file(file);
        assert_eq!(column(row, &headers, "face_found"), face, "{file}");
        assert_eq!(column(row, &headers, "gender"), gender, "{file}");
        assert_eq!(column(row, &headers, "race"), race, "{file}");
    };
    expect("a-blue-wide.png", "true", "wide", "blue");
    expect("b-red-tall.png", "true", "tall", "red");
    expect("d-alpha.png", "true", "wide", "blue");
    expect("e-1x1.png", "false", "", "");
    // Grey loses the colour but keeps the shape.
    assert_eq!(
        column(by_file("f-huge-grey.png"), &headers, "gender"),
        "tall"
    );
    for unreadable in ["c-truncated.jpg", "g-not-an-image.png"] {
        let error = column(by_file(unreadable), &headers, "error");
        assert!(error.contains(unreadable), "{unreadable}: {error}");
    }
    assert!(
        rows.iter()
            .all(|r| column(r, &headers, "file") != "notes.txt")
    );

    // A run killed after two batches left a CSV of four rows; the re-run completes it identically.
    let full = std::fs::read_to_string(&out).unwrap();
    let partial: String = full.lines().take(5).map(|l| format!("{l}\n")).collect();
    std::fs::write(&out, partial).unwrap();
    classify(&images, &out);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), full);
}

#[test]
fn a_missing_folder_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::cargo_bin("popalign")
        .unwrap()
        .args(["classify", "--images"])
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("nope"), "{stderr}");
}

/// The photos of `fixtures/mtcnn/` that show no person: a cat and a landscape.
const NO_PERSON: [&str; 2] = ["chelsea.png", "landscape.png"];

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// `popalign classify --classifier C --images fixtures/mtcnn --weights W --out OUT EXTRA...`.
fn classify_photos(
    classifier: &str,
    weights: &Path,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    Command::cargo_bin("popalign")
        .unwrap()
        .args(["classify", "--classifier", classifier, "--images"])
        .arg(fixtures().join("mtcnn"))
        .arg("--weights")
        .arg(weights)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// Real photos through MTCNN and the real dlib gender network: faces found where people are, none on the
/// cat, and each face's gender probabilities a distribution. (Parity of each part is in core's tests.)
#[test]
fn faces_classifier_finds_people_and_reads_their_gender() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights");
    std::fs::create_dir(&weights).unwrap();
    for file in ["mtcnn/mtcnn.safetensors", "age-gender/gender.safetensors"] {
        let name = Path::new(file).file_name().unwrap();
        std::fs::copy(fixtures().join(file), weights.join(name)).unwrap();
    }
    let faces_with = |extra: &[&str], out: &str| {
        classify_photos("faces", &weights, &dir.path().join(out), extra)
    };
    let output = faces_with(&[], "faces.csv");
    assert!(output.status.success(), "{output:?}");
    let out = dir.path().join("faces.csv");
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let headers = reader.headers().unwrap().clone();
    for row in reader.records().map(Result::unwrap) {
        let file = column(&row, &headers, "file");
        let face = column(&row, &headers, "face_found");
        assert_eq!(
            face == "true",
            !NO_PERSON.contains(&file.as_str()),
            "{file}"
        );
        assert_eq!(column(&row, &headers, "classifier"), "mtcnn+dlib-gender-v1");
        assert_eq!(
            ClassifierKind::of_recorded_name(&column(&row, &headers, "classifier")),
            Some(ClassifierKind::Faces)
        );
        if face == "true" {
            let probs: Vec<f64> = column(&row, &headers, "gender_probs")
                .split(' ')
                .map(|v| v.parse().unwrap())
                .collect();
            assert_eq!(probs.len(), 2);
            assert!(
                (probs.iter().sum::<f64>() - 1.0).abs() < 1e-5,
                "{file}: {probs:?}"
            );
        }
    }

    // The detector's settings reach MTCNN: no face is 1000 px tall here, and two thresholds are refused.
    let large = faces_with(&["--min-face-size", "1000"], "large.csv");
    assert!(
        String::from_utf8_lossy(&large.stdout).contains("0 with a face"),
        "{large:?}"
    );
    let two = faces_with(&["--face-thresholds", "0.6,0.7"], "two.csv");
    assert_eq!(two.status.code(), Some(2), "{two:?}");

    // A truncated weight file is an input error that names the file.
    std::fs::write(weights.join("gender.safetensors"), b"not safetensors").unwrap();
    let output = faces_with(&[], "other.csv");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("gender.safetensors"));
}

/// `--classifier fairface` wires MTCNN's 224 crop into FairFace and writes the gender, race and age
/// columns. The public checkpoint is not available here, so the weights are a random resnet34 with
/// FairFace's 18-output head, saved in the checkpoint's key layout (parity is in core's `fairface` test).
#[test]
fn fairface_classifier_writes_gender_race_and_age() {
    use burn::backend::NdArray;
    use popalign_core::eval::face_attributes::torchvision_resnet::{ResNet, ResNetConfig};

    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights");
    std::fs::create_dir(&weights).unwrap();
    std::fs::copy(
        fixtures().join("mtcnn/mtcnn.safetensors"),
        weights.join("mtcnn.safetensors"),
    )
    .unwrap();
    let fairface = || classify_photos("fairface", &weights, &dir.path().join("fairface.csv"), &[]);
    // Without fairface.safetensors: an input error naming the file.
    let output = fairface();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("fairface.safetensors"));

    let net = ResNet::<NdArray<f32>>::new(&ResNetConfig::resnet34(18), &Default::default());
    let to_checkpoint_keys = [
        (r"\.downsample\.conv\.", ".downsample.0."),
        (r"\.downsample\.bn\.", ".downsample.1."),
    ];
    popalign_core::io::load::save_weights(
        &net,
        &weights.join("fairface.safetensors"),
        |_, _| true,
        &to_checkpoint_keys,
    )
    .unwrap();
    let output = fairface();
    assert!(output.status.success(), "{output:?}");
    let mut reader = csv::Reader::from_path(dir.path().join("fairface.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    for row in reader.records().map(Result::unwrap) {
        let file = column(&row, &headers, "file");
        let face = column(&row, &headers, "face_found") == "true";
        assert_eq!(face, !NO_PERSON.contains(&file.as_str()), "{file}");
        assert_eq!(
            column(&row, &headers, "classifier"),
            "mtcnn+fairface-res34-7race"
        );
        for (axis, k) in [("gender", 2), ("race", 6), ("age", 3)] {
            let probs = column(&row, &headers, &format!("{axis}_probs"));
            if !face {
                continue;
            }
            let probs: Vec<f64> = probs.split(' ').map(|v| v.parse().unwrap()).collect();
            assert_eq!(probs.len(), k, "{file} {axis}");
            assert!(
                (probs.iter().sum::<f64>() - 1.0).abs() < 1e-5,
                "{file} {axis}: {probs:?}"
            );
        }
    }
}

/// `DIR/weights` with MTCNN and the narrow DeepFace gender model of `fixtures/`, and the race model too if `race`.
fn deepface_weights(dir: &Path, race: bool) -> std::path::PathBuf {
    let weights = dir.join("weights");
    std::fs::create_dir(&weights).unwrap();
    let mut files = vec![
        ("mtcnn/mtcnn.safetensors", "mtcnn.safetensors"),
        ("deepface/gender.safetensors", "deepface_gender.safetensors"),
    ];
    if race {
        files.push(("deepface/race.safetensors", "deepface_race.safetensors"));
    }
    for (from, to) in files {
        std::fs::copy(fixtures().join(from), weights.join(to)).unwrap();
    }
    weights
}

/// `--classifier deepface` hands MTCNN's box, at the photo's resolution, to DeepFace's gender and race models.
/// The astronaut's box is the crop `fixtures/deepface/astronaut_box.png` was cut to, so its row must hold what
/// `DeepFace.analyze` answered on that crop (narrow random models; parity itself is in core's `deepface` test).
#[test]
fn deepface_classifier_reads_the_detected_box_as_deepface_does() {
    use popalign_core::io::tensor_io::read_tensors;

    let dir = tempfile::tempdir().unwrap();
    let weights = deepface_weights(dir.path(), false);
    let out = dir.path().join("deepface.csv");
    // Without the race file: an input error naming it.
    let output = classify_photos("deepface", &weights, &out, &[]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("deepface_race.safetensors"));

    let race = fixtures().join("deepface/race.safetensors");
    std::fs::copy(race, weights.join("deepface_race.safetensors")).unwrap();
    let output = classify_photos("deepface", &weights, &out, &[]);
    assert!(output.status.success(), "{output:?}");
    let golden = read_tensors(&fixtures().join("deepface/outputs.safetensors")).unwrap();
    let golden = |key: &str| golden[key].to_vec::<f32>().unwrap();
    // DeepFace's orders: [Woman, Man] and [asian, indian, black, white, middle eastern, latino hispanic].
    let gender = golden("astronaut_box.gender");
    let race = golden("astronaut_box.race");
    let want_gender = [gender[1], gender[0]];
    let want_race = [race[3], race[0], race[2], race[5], race[1], race[4]];
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let headers = reader.headers().unwrap().clone();
    let mut seen = 0;
    for row in reader.records().map(Result::unwrap) {
        let file = column(&row, &headers, "file");
        assert_eq!(
            column(&row, &headers, "classifier"),
            "mtcnn+deepface-vgg-face"
        );
        assert_eq!(
            column(&row, &headers, "face_found") == "true",
            !NO_PERSON.contains(&file.as_str()),
            "{file}"
        );
        if file != "astronaut.png" {
            continue;
        }
        seen += 1;
        for (axis, want) in [("gender", &want_gender[..]), ("race", &want_race[..])] {
            let probs: Vec<f32> = column(&row, &headers, &format!("{axis}_probs"))
                .split(' ')
                .map(|v| v.parse().unwrap())
                .collect();
            // The CSV prints 6 decimals.
            for (got, want) in probs.iter().zip(want) {
                assert!(
                    (got - want).abs() < 2e-6,
                    "{axis}: {probs:?} against {want:?}"
                );
            }
        }
    }
    assert_eq!(seen, 1);
}

/// `--detector yunet` puts YuNet, read as DeepFace's `yunet` backend reads it, in front of DeepFace's models: the
/// weights folder must hold `yunet.safetensors`, only DeepFace takes it, and every row's face count, box and score
/// are those of core's `YuNet::detect_deepface` on the same pixels (random YuNet weights of `fixtures/yunet`; the
/// detector's parity with OpenCV is in core's `yunet` test).
#[test]
fn yunet_detector_feeds_deepface_its_boxes() {
    use burn::backend::NdArray;
    use popalign_core::eval::classify::decode_unit_rgb;
    use popalign_core::models::yunet::YuNet;

    let dir = tempfile::tempdir().unwrap();
    let weights = deepface_weights(dir.path(), true);
    let out = dir.path().join("yunet.csv");
    let yunet = ["--detector", "yunet"];
    let output = classify_photos("deepface", &weights, &out, &yunet);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("yunet.safetensors"));
    let file = fixtures().join("yunet/yunet.safetensors");
    std::fs::copy(&file, weights.join("yunet.safetensors")).unwrap();
    let output = classify_photos("fairface", &weights, &out, &yunet);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("--detector yunet is for --classifier deepface")
    );

    let output = classify_photos("deepface", &weights, &out, &yunet);
    assert!(output.status.success(), "{output:?}");
    let detector = YuNet::<NdArray>::load(&file, &Default::default()).unwrap();
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let headers = reader.headers().unwrap().clone();
    let mut found = 0;
    for row in reader.records().map(Result::unwrap) {
        assert_eq!(
            column(&row, &headers, "classifier"),
            "yunet+deepface-vgg-face"
        );
        let file = column(&row, &headers, "file");
        let bytes = std::fs::read(fixtures().join("mtcnn").join(&file)).unwrap();
        let (planes, w, h) = decode_unit_rgb(&bytes).unwrap();
        let image =
            burn::tensor::Tensor::<NdArray, 1>::from_floats(planes.as_slice(), &Default::default())
                .reshape([3, h, w]);
        let faces = detector.detect_deepface((image * 255.0).round());
        assert_eq!(
            column(&row, &headers, "face_found") == "true",
            !faces.is_empty(),
            "{file}"
        );
        let Some((bbox, score)) = faces.first() else {
            continue;
        };
        found += 1;
        assert_eq!(
            column(&row, &headers, "faces"),
            faces.len().to_string(),
            "{file}"
        );
        let corners: Vec<f32> = column(&row, &headers, "face_box")
            .split(' ')
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(corners, bbox, "{file}");
        let recorded: f32 = column(&row, &headers, "face_score").parse().unwrap();
        assert!(
            (recorded - score).abs() < 1e-5,
            "{file}: {recorded} vs {score}"
        );
    }
    assert!(
        found > 0,
        "YuNet found no face at DeepFace's threshold 0.9 in any photo"
    );
}

/// Every face, not only the largest: the face columns say how many faces an image had and which one a row
/// reads; `--all-faces` writes a row per face, and `evaluate` says that it counted per face. An image of ten
/// faces (the astronaut tiled 5 × 2) gives ten rows; a CSV from before the face columns still evaluates (the
/// `evaluate` tests' hand-made CSVs have none).
#[test]
fn all_faces_writes_a_row_per_face_and_evaluate_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let weights = deepface_weights(dir.path(), true);
    let rows = |csv: &Path| -> Vec<std::collections::HashMap<String, String>> {
        let mut reader = csv::Reader::from_path(csv).unwrap();
        let headers = reader.headers().unwrap().clone();
        reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                headers
                    .iter()
                    .map(String::from)
                    .zip(r.iter().map(String::from))
                    .collect()
            })
            .collect()
    };

    let largest = dir.path().join("largest.csv");
    assert!(
        classify_photos("deepface", &weights, &largest, &[])
            .status
            .success()
    );
    let all = dir.path().join("all.csv");
    let output = classify_photos("deepface", &weights, &all, &["--all-faces"]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("faces read"),
        "{output:?}"
    );
    let (largest, all) = (rows(&largest), rows(&all));
    let of =
        |rows: &[std::collections::HashMap<String, String>], file: &str| -> Vec<(String, String)> {
            rows.iter()
                .filter(|r| r["file"] == file)
                .map(|r| (r["faces"].clone(), r["face"].clone()))
                .collect()
        };
    // facenet-pytorch finds three faces in faces.png (fixtures/mtcnn/detections.json).
    assert_eq!(of(&largest, "faces.png"), [("3".into(), "0".into())]);
    let three: Vec<(String, String)> = (0..3).map(|k| ("3".into(), k.to_string())).collect();
    assert_eq!(of(&all, "faces.png"), three);
    assert_eq!(of(&all, "chelsea.png"), [(String::new(), String::new())]);
    let astronaut = largest
        .iter()
        .find(|r| r["file"] == "astronaut.png")
        .unwrap();
    let corners: Vec<f32> = astronaut["face_box"]
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(corners.len(), 4);
    assert!(astronaut["face_score"].parse::<f32>().unwrap() > 0.9);

    // Ten faces in one image.
    let photo = image::open(fixtures().join("mtcnn/astronaut.png"))
        .unwrap()
        .to_rgb8();
    let (w, h) = photo.dimensions();
    let mut tiled = image::RgbImage::new(5 * w, 2 * h);
    for k in 0..10 {
        image::imageops::replace(
            &mut tiled,
            &photo,
            i64::from(k % 5 * w),
            i64::from(k / 5 * h),
        );
    }
    let crowd = dir.path().join("crowd");
    std::fs::create_dir(&crowd).unwrap();
    tiled.save(crowd.join("ten.png")).unwrap();
    let ten = dir.path().join("ten.csv");
    let output = Command::cargo_bin("popalign")
        .unwrap()
        .args([
            "classify",
            "--classifier",
            "deepface",
            "--all-faces",
            "--images",
        ])
        .arg(&crowd)
        .arg("--weights")
        .arg(&weights)
        .arg("--out")
        .arg(&ten)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let ten_rows = rows(&ten);
    assert_eq!(ten_rows.len(), 10);
    let indices: Vec<String> = ten_rows.iter().map(|r| r["face"].clone()).collect();
    assert_eq!(indices, (0..10).map(|k| k.to_string()).collect::<Vec<_>>());
    assert!(ten_rows.iter().all(|r| r["faces"] == "10"));

    let summary = dir.path().join("summary.json");
    let output = Command::cargo_bin("popalign")
        .unwrap()
        .args(["evaluate", "--bootstrap", "0", "--attributes"])
        .arg(&ten)
        .arg("--out")
        .arg(&summary)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("counted per face: 10 rows from 1 images (1 with several faces)"),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let set = &summary["sets"][0];
    assert_eq!(set["faces"]["per"], "face");
    assert_eq!(set["axes"]["gender"]["n_faces"], 10);
}

/// `--classifier clip` reads a transformers `CLIPModel` folder with its tokenizer and writes the gender and
/// race columns of the zero-shot classifier (parity with transformers is in core's `clip_model` test).
#[test]
fn clip_classifier_reads_a_clip_model_folder() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-clip");
    std::fs::create_dir_all(model.join("tokenizer")).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join("clip-tiny").join(file), model.join(file)).unwrap();
    }
    let clip = |out: &str| classify_photos("clip", &model, &dir.path().join(out), &[]);
    // No tokenizer yet: an input error naming what is missing.
    let output = clip("none.csv");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("tokenizer"),
        "{output:?}"
    );

    for entry in std::fs::read_dir(fixtures().join("tiny-sdxl/tokenizer")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            model.join("tokenizer").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    let output = clip("clip.csv");
    assert!(output.status.success(), "{output:?}");
    let mut reader = csv::Reader::from_path(dir.path().join("clip.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 6, "every image of the folder");
    for row in &rows {
        assert_eq!(column(row, &headers, "face_found"), "true");
        assert_eq!(
            column(row, &headers, "classifier"),
            "clip-zero-shot:tiny-clip"
        );
        for (axis, k) in [("gender", 2), ("race", 6)] {
            let probs: Vec<f64> = column(row, &headers, &format!("{axis}_probs"))
                .split(' ')
                .map(|v| v.parse().unwrap())
                .collect();
            assert_eq!(probs.len(), k);
            assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5);
        }
    }
}
