//! Models named by Hugging Face repo id, found in a cache laid out as `huggingface-cli download` leaves it:
//! `models--<org>--<name>/refs/main` → `snapshots/<commit>/`, whose files are symlinks into `blobs/`.

use std::path::{Path, PathBuf};

use crate::cli::{fails_with_code_2, fixtures, popalign};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// `HF_HOME/hub/models--<org>--<name>` holding `model` as one snapshot, every file a symlink to a blob.
pub(crate) fn cache_repo(hf_home: &Path, id: &str, model: &Path) -> PathBuf {
    let repo = hf_home
        .join("hub")
        .join(format!("models--{}", id.replace('/', "--")));
    let snapshot = repo.join("snapshots").join(COMMIT);
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        for entry in std::fs::read_dir(model.join(&relative)).unwrap() {
            let entry = entry.unwrap();
            let relative = relative.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                stack.push(relative);
                continue;
            }
            let blob = repo
                .join("blobs")
                .join(relative.to_string_lossy().replace('/', "_"));
            std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
            std::fs::copy(entry.path(), &blob).unwrap();
            let link = snapshot.join(&relative);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(&blob, &link).unwrap();
        }
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    snapshot
}

/// `popalign generate` of one image from `model`, with `hf_home` as the only cache.
fn generate(model: &str, hf_home: &Path, out: &Path) -> assert_cmd::Command {
    let mut command = popalign();
    command
        .env_remove("HF_HUB_CACHE")
        .env("HF_HOME", hf_home)
        .args([
            "generate",
            "--prompt",
            "a photo of a doctor",
            "--steps",
            "2",
            "--num-images",
            "1",
        ])
        .args(["--model", model, "--out"])
        .arg(out);
    command
}

fn pngs(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    names.sort();
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn a_cached_repo_id_generates_what_its_folder_generates() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("hf");
    cache_repo(
        &home,
        "stabilityai/tiny-sdxl",
        &fixtures().join("tiny-sdxl"),
    );
    let (by_id, by_path) = (dir.path().join("by-id"), dir.path().join("by-path"));
    generate("stabilityai/tiny-sdxl", &home, &by_id)
        .assert()
        .success();
    let fixture = fixtures().join("tiny-sdxl");
    generate(fixture.to_str().unwrap(), &home, &by_path)
        .assert()
        .success();
    let images = pngs(&by_id);
    assert_eq!(images.len(), 1);
    assert_eq!(
        images,
        pngs(&by_path),
        "same pixels from the cache as from the folder"
    );
}

#[test]
fn an_uncached_repo_id_or_a_snapshot_without_a_component_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("hf");
    let out = dir.path().join("out");
    let missing = || generate("nobody/no-such-model", &home, &out);
    let line = fails_with_code_2(&mut missing());
    for expected in [
        "nobody/no-such-model",
        "models--nobody--no-such-model",
        "huggingface-cli download nobody/no-such-model",
    ] {
        assert!(line.contains(expected), "{expected:?} in {line}");
    }
    assert!(
        line.contains(&home.join("hub").display().to_string()),
        "{line}"
    );
    // HF_HUB_CACHE wins over HF_HOME, as in huggingface_hub.
    let other = dir.path().join("other-cache");
    let line = fails_with_code_2(missing().env("HF_HUB_CACHE", &other));
    assert!(line.contains(&other.display().to_string()), "{line}");

    // A snapshot whose download stopped before the U-Net: the loader names the missing file.
    let snapshot = cache_repo(&home, "org/partial", &fixtures().join("tiny-sdxl"));
    std::fs::remove_dir_all(snapshot.join("unet")).unwrap();
    let line = fails_with_code_2(&mut generate("org/partial", &home, &out));
    assert!(line.contains("unet"), "{line}");
    assert!(
        !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
        "nothing written"
    );
}
