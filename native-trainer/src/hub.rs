//! Models named by Hugging Face repo id (`stabilityai/stable-diffusion-xl-base-1.0`, optionally
//! `@<branch or tag>`), found where `huggingface-cli download` and diffusers' `from_pretrained` put them:
//! `<cache>/models--<org>--<name>/refs/<revision>` holds a commit, whose files are in
//! `snapshots/<commit>/`. The cache layout is read by the `hf-hub` crate; this binary never downloads.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

use crate::error::{CliResult, input};

/// The cache root, chosen as huggingface_hub chooses it: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("HF_HUB_CACHE")
        .or_else(|| var("HF_HOME").map(|home| home.join("hub")))
        .unwrap_or_else(|| {
            let home = var("HOME").unwrap_or_default();
            home.join(".cache/huggingface/hub")
        })
}

/// A model given as a folder (absolute, or relative to `base`) or as a repo id. An existing folder wins;
/// a repo id that is not cached is a bad-input error naming the id, the cache folder looked in and how to
/// fill it. Anything else is returned as a path, for the loader to report.
pub fn resolve_model(spec: &Path, base: &Path) -> CliResult<PathBuf> {
    let folder = base.join(spec);
    let text = spec.to_string_lossy();
    if folder.exists() || !is_repo_id(&text) {
        return Ok(folder);
    }
    let (id, revision) = text.split_once('@').unwrap_or((&text, "main"));
    let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string());
    let cache = Cache::new(cache_dir());
    let entry = cache.path().join(repo.folder_name());
    let cached = cache.repo(repo);
    // A pipeline root has `model_index.json`, a single component (a U-Net repo) `config.json`.
    for marker in ["model_index.json", "config.json"] {
        if let Some(file) = cached.get(marker) {
            return Ok(file.parent().expect("a file in a snapshot").to_path_buf());
        }
    }
    Err(input(format!(
        "model {text:?}: no such folder, and revision {revision:?} of Hugging Face repo {id:?} is not in \
         the cache ({} has no refs/{revision} with a model_index.json or config.json); download it with \
         `huggingface-cli download {id}`, or point HF_HOME or HF_HUB_CACHE at the cache that has it",
        entry.display()
    )))
}

/// `org/name` (letters, digits, `-`, `_`, `.`, one slash, no leading dot), as the Hub spells repo ids.
fn is_repo_id(text: &str) -> bool {
    let id = text.split_once('@').map_or(text, |(id, _)| id);
    let Some((org, name)) = id.split_once('/') else {
        return false;
    };
    let part = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    part(org) && part(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_told_from_paths() {
        for id in ["stabilityai/stable-diffusion-xl-base-1.0", "org/name@v1.0"] {
            assert!(is_repo_id(id), "{id}");
        }
        for path in [
            "runs/a/model",
            "./unet",
            "/abs/model",
            "toy",
            "../x/y",
            "a/",
        ] {
            assert!(!is_repo_id(path), "{path}");
        }
    }
}
