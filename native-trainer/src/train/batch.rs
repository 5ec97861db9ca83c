//! One micro-batch: sampled pairs, preprocessed images, captions (with empty-prompt dropout), and the
//! random draws of the step. Everything random comes from one ChaCha stream per (seed, micro-step), so a
//! resumed run draws exactly what an uninterrupted run would.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::config::{BadImagePolicy, TrainConfig};
use super::data::{PreferenceData, PreferencePair, prepare_image};
use super::latent_cache::{CachedLatent, LatentCache};
use super::trajectory::Trajectory;
use crate::error::{CliResult, input};
use popalign_core::align::objectives::ObjectiveKind;
use std::path::{Path, PathBuf};

pub struct Batch {
    /// `[preferred_1..B, dispreferred_1..B]`: each image's pixels, or its cached posterior.
    pub images: Vec<ImageInput>,
    /// The latent-cache entry of each image (`cache_latents`), in the same order.
    pub cache_entries: Vec<Option<PathBuf>>,
    /// Caption per pair (`""` where dropped).
    pub captions: Vec<String>,
    /// `time_ids` per pair (from the preferred image, shared by the pair as in the official trainer).
    pub time_ids: Vec<[f32; 6]>,
    /// Caption group per pair, for `popalign-pairwise`.
    pub groups: Vec<usize>,
    /// Timestep per pair.
    pub timesteps: Vec<usize>,
    /// `[B, C, h, w]` noise per pair.
    pub noise: Vec<f32>,
    /// `[2B, C, h, w]` standard normals for sampling the VAE posterior.
    pub posterior_noise: Vec<f32>,
    /// `dense` only: the recorded chains of each pair's (preferred, dispreferred) images, and the
    /// uniforms that choose the pair's M steps.
    pub trajectories: Vec<(Trajectory, Trajectory)>,
    pub step_uniforms: Vec<Vec<f64>>,
    pub skipped: usize,
}

/// One training image: `[3, R, R]` pixels in [-1, 1], or its posterior from the latent cache.
#[derive(Debug, Clone)]
pub enum ImageInput {
    Pixels {
        pixels: Vec<f32>,
        time_ids: [f32; 6],
    },
    Cached(CachedLatent),
}

impl ImageInput {
    /// The image's SDXL `time_ids` (original size and crop).
    pub fn time_ids(&self) -> [f32; 6] {
        match self {
            Self::Pixels { time_ids, .. } => *time_ids,
            Self::Cached(cached) => cached.time_ids,
        }
    }
}

struct LoadedImage {
    input: ImageInput,
    entry: Option<PathBuf>,
}

/// What one pair contributes: its images (every objective but `dense`) or their chains (`dense`).
enum PairData {
    Images(LoadedImage, LoadedImage),
    Chains(Trajectory, Trajectory),
}

fn load_pair(
    pair: &PreferencePair,
    dense: bool,
    resolution: usize,
    flip: bool,
    cache: Option<&LatentCache>,
) -> Result<PairData, String> {
    if dense {
        return Ok(PairData::Chains(
            Trajectory::read_for(&pair.preferred)?,
            Trajectory::read_for(&pair.dispreferred)?,
        ));
    }
    let load = |path: &Path| -> Result<LoadedImage, String> {
        let entry = cache.map(|c| c.entry(path, flip));
        if let Some(cached) = entry.as_deref().and_then(LatentCache::read) {
            return Ok(LoadedImage {
                input: ImageInput::Cached(cached),
                entry,
            });
        }
        let image = prepare_image(path, resolution, flip)?;
        Ok(LoadedImage {
            input: ImageInput::Pixels {
                pixels: image.pixels,
                time_ids: image.time_ids,
            },
            entry,
        })
    };
    Ok(PairData::Images(
        load(&pair.preferred)?,
        load(&pair.dispreferred)?,
    ))
}

pub fn rng_for(seed: u64, micro_step: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(micro_step);
    rng
}

/// Which pairs a batch holds: drawn at random (training), or given (validation, no flips or dropout).
pub enum Selection {
    Random(usize),
    Fixed(Vec<usize>),
}

pub fn sample_batch(
    config: &TrainConfig,
    data: &PreferenceData,
    stream: u64,
    selection: Selection,
    latent_shape: [usize; 3],
    train_timesteps: usize,
    cache: Option<&LatentCache>,
) -> CliResult<Batch> {
    let mut rng = rng_for(config.seed, stream);
    let dense = config.objective == ObjectiveKind::Dense;
    // A recorded chain cannot be flipped or re-captioned: dense trains on the chains as sampled.
    let (b, fixed, augment) = match selection {
        Selection::Random(b) => (b, Vec::new(), !dense),
        Selection::Fixed(pairs) => (pairs.len(), pairs, false),
    };
    let r = config.resolution;
    let mut preferred = Vec::new();
    let mut dispreferred = Vec::new();
    let (mut captions, mut time_ids, mut groups) = (Vec::new(), Vec::new(), Vec::new());
    let mut trajectories = Vec::new();
    let mut skipped = 0;
    while captions.len() < b {
        let index = fixed
            .get(captions.len() + skipped)
            .copied()
            .unwrap_or_else(|| rng.random_range(0..data.pairs.len()));
        let flip = augment && config.random_flip && rng.random_bool(0.5);
        let drop_caption = augment && rng.random::<f64>() < config.proportion_empty_prompts;
        let pair = &data.pairs[index];
        match load_pair(pair, dense, r, flip, cache) {
            Ok(loaded) => {
                match loaded {
                    PairData::Images(w, l) => {
                        time_ids.push(w.input.time_ids());
                        preferred.push(w);
                        dispreferred.push(l);
                    }
                    PairData::Chains(w, l) => trajectories.push((w, l)),
                }
                captions.push(if drop_caption {
                    String::new()
                } else {
                    pair.caption.clone()
                });
                groups.push(data.groups[index]);
            }
            Err(message) if config.on_bad_image == BadImagePolicy::Error => {
                return Err(input(format!(
                    "{message} (set on_bad_image = \"skip\" to skip such pairs)"
                )));
            }
            Err(_) if !fixed.is_empty() => {
                return Err(input(format!(
                    "validation pair {index}: unreadable image or trajectory"
                )));
            }
            Err(_) => {
                skipped += 1;
                if skipped > 100 * b {
                    return Err(input(
                        "too many unreadable images in the preference data".to_string(),
                    ));
                }
            }
        }
    }
    preferred.extend(dispreferred);
    let (images, cache_entries) = preferred.into_iter().map(|i| (i.input, i.entry)).unzip();
    let [lo, hi] = config.timestep_range.unwrap_or([0, train_timesteps]);
    let hi = hi.min(train_timesteps);
    if lo >= hi {
        return Err(input(format!(
            "timestep_range [{lo}, {hi}) is empty (the scheduler has {train_timesteps} timesteps)"
        )));
    }
    let timesteps = (0..b).map(|_| rng.random_range(lo..hi)).collect();
    let latent_len: usize = latent_shape.iter().product();
    let mut normals = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect()
    };
    let noise = normals(b * latent_len);
    let posterior_noise = normals(2 * b * latent_len);
    let step_uniforms = match dense {
        true => (0..b)
            .map(|_| {
                (0..config.dense.steps_per_update)
                    .map(|_| rng.random::<f64>())
                    .collect()
            })
            .collect(),
        false => Vec::new(),
    };
    Ok(Batch {
        images,
        cache_entries,
        captions,
        time_ids,
        groups,
        timesteps,
        noise,
        posterior_noise,
        trajectories,
        step_uniforms,
        skipped,
    })
}

impl Batch {
    /// Pairs `rank·b .. (rank+1)·b` of a batch of `world·b` pairs, laid out as a batch of their own
    /// (data-parallel workers each take one slice of the same global draw).
    pub fn shard(self, rank: usize, world: usize) -> Batch {
        if world == 1 {
            return self;
        }
        let pairs = self.captions.len();
        let b = pairs / world;
        let (start, end) = (rank * b, (rank + 1) * b);
        // `[pairs, n]` layouts: the slice's rows.
        let rows = |v: &[f32]| {
            let n = v.len() / pairs;
            v[start * n..end * n].to_vec()
        };
        // `[2·pairs, n]` layouts (preferred half, then dispreferred half): the slice of each half.
        fn halves<T: Clone>(v: &[T], pairs: usize, start: usize, end: usize) -> Vec<T> {
            let n = v.len() / (2 * pairs);
            let mut out = v[start * n..end * n].to_vec();
            out.extend_from_slice(&v[(pairs + start) * n..(pairs + end) * n]);
            out
        }
        Batch {
            images: halves(&self.images, pairs, start, end),
            cache_entries: halves(&self.cache_entries, pairs, start, end),
            captions: self.captions[start..end].to_vec(),
            time_ids: self.time_ids[start..end].to_vec(),
            groups: self.groups[start..end].to_vec(),
            timesteps: self.timesteps[start..end].to_vec(),
            noise: rows(&self.noise),
            posterior_noise: halves(&self.posterior_noise, pairs, start, end),
            trajectories: slice(&self.trajectories, start, end),
            step_uniforms: slice(&self.step_uniforms, start, end),
            skipped: self.skipped,
        }
    }
}

/// `v[start..end]`, or nothing when `v` is empty (the fields only one kind of objective fills).
fn slice<T: Clone>(v: &[T], start: usize, end: usize) -> Vec<T> {
    v.get(start..end).map(<[T]>::to_vec).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_and_data(dir: &std::path::Path, range: &str) -> (TrainConfig, PreferenceData) {
        for side in ["w", "l"] {
            image::RgbImage::from_pixel(16, 16, image::Rgb([200, 40, 40]))
                .save(dir.join(format!("{side}.png")))
                .unwrap();
        }
        std::fs::write(
            dir.join("pairs.jsonl"),
            "{\"caption\": \"a\", \"preferred\": \"w.png\", \"dispreferred\": \"l.png\"}\n",
        )
        .unwrap();
        let toml = format!(
            "model = \"m\"\npreferences = \"pairs.jsonl\"\noutput = \"out\"\nresolution = 16\n\
             batch_size = 1\nsteps = 1\nlearning_rate = 1e-3\n{range}"
        );
        std::fs::write(dir.join("train.toml"), toml).unwrap();
        let config = TrainConfig::load(&dir.join("train.toml")).unwrap();
        let data = PreferenceData::load(config.preferences.as_ref().unwrap()).unwrap();
        (config, data)
    }

    #[test]
    fn timesteps_come_from_the_configured_range_and_an_empty_range_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (config, data) = config_and_data(dir.path(), "timestep_range = [900, 2000]\n");
        let batch = sample_batch(
            &config,
            &data,
            0,
            Selection::Random(64),
            [3, 16, 16],
            1000,
            None,
        )
        .unwrap();
        assert!(batch.timesteps.iter().all(|&t| (900..1000).contains(&t)));
        assert!(batch.timesteps.iter().any(|&t| t != batch.timesteps[0]));
        let (config, data) = config_and_data(dir.path(), "timestep_range = [1000, 1000]\n");
        let err = sample_batch(
            &config,
            &data,
            0,
            Selection::Random(1),
            [3, 16, 16],
            1000,
            None,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("timestep_range"), "{err}");
    }
}
