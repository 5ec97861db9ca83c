//! Classifier weights a report folder carries (`popalign report --face-weights DIR`, `--clip-weights DIR`),
//! so its explorer can classify a photo the reader drops onto the page with the same networks `popalign
//! classify` runs.
//!
//! The files are copied under `classifiers/<kind>/`, and each also as `<file>.js`, a classic script that puts
//! its bytes, base64-encoded, in `window.POPALIGN_WEIGHTS[<file>]`: opened from disk (file://) the page may
//! run scripts from its folder but not fetch files.

use std::path::Path;

use base64::Engine;
use popalign_core::eval::classify::clip_zero_shot::{ClipZeroShot, default_axes};
use popalign_core::eval::classify::kind::ClassifierKind::{self, Clip, Faces};
use popalign_core::eval::classify::{AttributeClassifier, AxisSpec};
use popalign_core::eval::face_attributes::{AGE_BAND_CLASSES, GENDER_CLASSES};
use popalign_core::models::face::WEIGHTS_FILE;
use popalign_core::schema::report::CarriedClassifier;

use crate::artifacts::write_atomic;
use crate::backend::{Backend as B, device};
use crate::error::runtime;
use crate::error::{CliResult, input};

/// Copies MTCNN and the dlib gender network (and the age network where `dir` has `age.safetensors`) from
/// `dir` into `out/classifiers/faces/`, as `popalign classify --classifier faces --weights DIR` reads them.
pub fn carry_faces(dir: &Path, out: &Path) -> CliResult<CarriedClassifier> {
    let mut names = vec![WEIGHTS_FILE, "gender.safetensors"];
    let mut axes = vec![AxisSpec::new("gender", &GENDER_CLASSES)];
    if dir.join("age.safetensors").exists() {
        names.push("age.safetensors");
        axes.push(AxisSpec::new("age", &AGE_BAND_CLASSES));
    }
    let mut files = Vec::new();
    for name in names {
        let source = dir.join(name);
        let bytes = std::fs::read(&source).map_err(|e| {
            input(format!(
                "{}: {e} (--face-weights needs mtcnn.safetensors and gender.safetensors)",
                source.display()
            ))
        })?;
        let file = carry_file(out, Faces, name, &bytes)?;
        files.push(file);
    }
    Ok(CarriedClassifier {
        kind: Faces,
        files,
        axes,
    })
}

/// The CLIP zero-shot classifier of `popalign classify --classifier clip --weights DIR`, carried as its
/// image side and the prompt embeddings computed here (`popalign_core::eval::classify::clip_zero_shot`), into
/// `out/classifiers/clip/`.
pub fn carry_clip(dir: &Path, out: &Path) -> CliResult<CarriedClassifier> {
    let classifier = ClipZeroShot::<B>::from_dir(dir, default_axes(), &device())?;
    let config_path = dir.join("config.json");
    let config: serde_json::Value = popalign_core::io::load::read_config(&config_path)?;
    let scratch = out.join("classifiers").join(Clip.name());
    std::fs::create_dir_all(&scratch).map_err(|e| runtime(&scratch, e))?;
    let mut files = Vec::new();
    for (name, bytes) in classifier
        .carried_files(&config, &scratch)
        .map_err(|e| input(format!("{}: {e}", dir.display())))?
    {
        files.push(carry_file(out, Clip, name, &bytes)?);
    }
    Ok(CarriedClassifier {
        kind: Clip,
        files,
        axes: classifier.axes(),
    })
}

/// Writes `bytes` as `classifiers/<kind>/<name>` in `out`, and its `.js` script beside it; returns the
/// path relative to `out`.
fn carry_file(out: &Path, kind: ClassifierKind, name: &str, bytes: &[u8]) -> CliResult<String> {
    let file = format!("classifiers/{kind}/{name}");
    let target = out.join(&file);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| runtime(parent, e))?;
    }
    write_atomic(&target, bytes)?;
    write_atomic(
        &out.join(format!("{file}.js")),
        weights_script(&file, bytes).as_bytes(),
    )?;
    Ok(file)
}

/// `window.POPALIGN_WEIGHTS[<file>] = "<base64>"`, the form a page opened from disk can load.
pub fn weights_script(file: &str, bytes: &[u8]) -> String {
    let key = serde_json::to_string(file).expect("a string serialises");
    format!(
        "(window.POPALIGN_WEIGHTS = window.POPALIGN_WEIGHTS || {{}})[{key}] = \"{}\";\n",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_the_faces_weights_and_their_scripts() {
        let weights = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::write(weights.path().join("mtcnn.safetensors"), b"m").unwrap();
        let err = carry_faces(weights.path(), out.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("gender.safetensors"), "{err}");
        std::fs::write(weights.path().join("gender.safetensors"), b"\x00\xffg").unwrap();
        let carried = carry_faces(weights.path(), out.path()).unwrap();
        assert_eq!(carried.files.len(), 2, "no age network in the folder");
        assert_eq!(carried.axes.len(), 1);
        let script =
            std::fs::read_to_string(out.path().join("classifiers/faces/gender.safetensors.js"))
                .unwrap();
        assert_eq!(
            script,
            "(window.POPALIGN_WEIGHTS = window.POPALIGN_WEIGHTS || {})\
             [\"classifiers/faces/gender.safetensors\"] = \"AP9n\";\n"
        );
        std::fs::write(weights.path().join("age.safetensors"), b"a").unwrap();
        let carried = carry_faces(weights.path(), out.path()).unwrap();
        assert_eq!(carried.files[2], "classifiers/faces/age.safetensors");
        assert_eq!(carried.axes[1].name, "age");
    }

    #[test]
    fn carries_the_clip_zero_shot_classifier() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        let clip = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        for file in ["config.json", "model.safetensors"] {
            std::fs::copy(
                fixtures.join("clip-tiny").join(file),
                clip.path().join(file),
            )
            .unwrap();
        }
        let err = carry_clip(clip.path(), out.path()).unwrap_err().to_string();
        assert!(err.contains("vocab.json"), "no tokenizer: {err}");
        let tokenizer = clip.path().join("tokenizer");
        std::fs::create_dir(&tokenizer).unwrap();
        for entry in std::fs::read_dir(fixtures.join("tiny-sdxl/tokenizer")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), tokenizer.join(entry.file_name())).unwrap();
        }
        let carried = carry_clip(clip.path(), out.path()).unwrap();
        assert_eq!(carried.kind, Clip);
        assert_eq!(
            carried.files,
            [
                "classifiers/clip/config.json",
                "classifiers/clip/vision.safetensors",
                "classifiers/clip/zero_shot.safetensors"
            ]
        );
        let axes: Vec<&str> = carried.axes.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(axes, ["gender", "race"]);
        for file in &carried.files {
            assert!(out.path().join(format!("{file}.js")).is_file(), "{file}.js");
        }
        let leftovers: Vec<_> = std::fs::read_dir(out.path().join("classifiers/clip"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                !carried
                    .files
                    .iter()
                    .any(|f| f.ends_with(n.trim_end_matches(".js")))
            })
            .collect();
        assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");
    }
}
