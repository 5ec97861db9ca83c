//! `cache_latents = true`: the VAE posterior `(mean, logvar)` of every preprocessed training image, kept in
//! `<output>/latent-cache/<key>.safetensors` (with the image's `time_ids`), so each image is decoded and
//! encoded once per run instead of at every draw. The latent itself is still sampled from the posterior
//! at every draw, with the step's own noise, as without the cache.
//!
//! The key hashes what the entry depends on: the image file (path, size, modification time), the
//! resolution, the flip, and the model folder. An unreadable entry is a miss: it is computed and written
//! again. Entries are written under a temporary name and renamed, so a killed run leaves none half-written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::TensorData;
use popalign_core::io::tensor_io::{read_tensors, write_tensors};

use super::config::TrainConfig;

/// One image's cached posterior: `[C, h, w]` each, and its SDXL `time_ids`.
#[derive(Debug, Clone)]
pub struct CachedLatent {
    pub mean: Vec<f32>,
    pub logvar: Vec<f32>,
    pub time_ids: [f32; 6],
}

pub struct LatentCache {
    dir: PathBuf,
    resolution: usize,
    model: PathBuf,
}

impl LatentCache {
    /// The run's cache, if `cache_latents` is on.
    pub fn for_config(config: &TrainConfig) -> Option<Self> {
        config.cache_latents.then(|| Self {
            dir: config.output.join("latent-cache"),
            resolution: config.resolution,
            model: config.model.clone(),
        })
    }

    /// Where the entry of `image` (flipped or not) lives.
    pub fn entry(&self, image: &Path, flip: bool) -> PathBuf {
        use sha2::Digest;
        let stamp = std::fs::metadata(image)
            .ok()
            .map(|m| {
                let modified = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                format!("{}:{modified}", m.len())
            })
            .unwrap_or_default();
        let text = format!(
            "{}|{stamp}|{}|{flip}|{}",
            image.display(),
            self.resolution,
            self.model.display()
        );
        let digest = sha2::Sha256::digest(text.as_bytes());
        let key: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{key}.safetensors"))
    }

    /// The entry, or `None` when it is absent or unreadable.
    pub fn read(entry: &Path) -> Option<CachedLatent> {
        let tensors = read_tensors(entry).ok()?;
        let values = |key: &str| tensors.get(key)?.clone().to_vec::<f32>().ok();
        Some(CachedLatent {
            mean: values("mean")?,
            logvar: values("logvar")?,
            time_ids: values("time_ids")?.try_into().ok()?,
        })
    }

    /// Writes an entry. Data-parallel workers may write the same entry at once: each stages its own file.
    pub fn write(
        &self,
        entry: &Path,
        latent: &CachedLatent,
        shape: [usize; 3],
    ) -> Result<(), String> {
        static WRITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let writer = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let tensors = BTreeMap::from([
            (
                "mean".to_string(),
                TensorData::new(latent.mean.clone(), shape),
            ),
            (
                "logvar".to_string(),
                TensorData::new(latent.logvar.clone(), shape),
            ),
            (
                "time_ids".to_string(),
                TensorData::new(latent.time_ids.to_vec(), [6]),
            ),
        ]);
        let staged = entry.with_extension(format!("{writer}.{}.safetensors", std::process::id()));
        write_tensors(&staged, &tensors)?;
        std::fs::rename(&staged, entry).map_err(|e| format!("{}: {e}", entry.display()))
    }
}
