//! Generating an image set into `images/<set>/`: `<id>.png`, `<id>.json`, and `manifest.jsonl`, the
//! ledger of finished images.
//!
//! Jobs are cut into fixed chunks of `batch_size` in job order, and a chunk is generated as one batch,
//! so a resumed run batches exactly as an uninterrupted one and writes the same bytes. A chunk whose
//! images are all in the manifest is skipped; any other chunk is generated again as a whole. Every file,
//! the manifest included, is written under a temporary name and renamed.

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use burn::tensor::Distribution;
use indicatif::ProgressBar;
use popalign_core::diffusion::pipeline::DiffusionPipeline;
use popalign_core::diffusion::schedulers::{SchedulerKind, sampler};
use serde::{Deserialize, Serialize};

use super::shard::Shard;
use crate::artifacts::{png_bytes, write_atomic};
use crate::backend::{Backend as B, device};
use crate::error::{CliError, CliResult, runtime};

/// One image to make.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageJob {
    /// `uuid5(prompt)-s<seed>-<index>`: stable across re-runs.
    pub id: String,
    pub prompt: String,
    pub base_prompt: String,
    /// Attributes the prompt names (`race`, `gender`), empty for neutral prompts.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub seed: u64,
    pub index: usize,
}

/// One manifest line: the job and where its image is, relative to the run directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestEntry {
    #[serde(flatten)]
    pub job: ImageJob,
    pub file: String,
}

#[derive(Debug, Clone)]
pub struct SamplingOptions {
    pub steps: usize,
    pub guidance: f64,
    pub scheduler: SchedulerKind,
    pub batch_size: usize,
    /// Image side in pixels (a multiple of the VAE's factor).
    pub resolution: usize,
    /// Sample with DDIM η = 1 and keep each image's chain (`<id>.trajectory.safetensors`) for dense-reward
    /// DPO.
    pub trajectories: bool,
}

impl SamplingOptions {
    /// DDIM's η: 1 when the chains are kept (the dense-reward papers' stochastic sampler), else 0.
    fn eta(&self) -> f64 {
        if self.trajectories { 1.0 } else { 0.0 }
    }
}

/// `per_prompt` jobs per prompt row. Every job starts from its own noise (`ImageJob::noise_seed`), so two
/// models compared on the same jobs see the same starting noise, while different prompts never share it.
pub fn jobs_for(
    rows: &[(String, String, BTreeMap<String, String>)],
    per_prompt: usize,
    seed: u64,
) -> Vec<ImageJob> {
    rows.iter()
        .flat_map(|(prompt, base_prompt, attributes)| {
            let prompt_id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, prompt.as_bytes());
            (0..per_prompt).map(move |index| ImageJob {
                id: format!("{prompt_id}-s{seed}-{index}"),
                prompt: prompt.clone(),
                base_prompt: base_prompt.clone(),
                attributes: attributes.clone(),
                seed,
                index,
            })
        })
        .collect()
}

/// The finished images of the set `dir` (`manifest.jsonl`).
pub fn read_manifest(dir: &Path) -> CliResult<Vec<ManifestEntry>> {
    read_ledger(&dir.join("manifest.jsonl"))
}

/// The entries of a manifest file (`manifest.jsonl` or a shard's); none when it does not exist.
pub fn read_ledger(path: &Path) -> CliResult<Vec<ManifestEntry>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| CliError::Input(format!("{}:{}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// A sampled chunk: its images `[N, 3, H, W]`, and with trajectories its chain and the sampler's timesteps.
type Sample = (Tensor<B, 4>, Vec<Tensor<B, 4>>, Vec<f64>);

/// Chunks sampled at once: `POPALIGN_SAMPLING_THREADS` if set, else `side_by_side_batches()`. The
/// images do not depend on it.
fn sampling_threads() -> CliResult<usize> {
    let Ok(value) = std::env::var("POPALIGN_SAMPLING_THREADS") else {
        return Ok(crate::backend::side_by_side_batches());
    };
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(CliError::Input(format!(
            "POPALIGN_SAMPLING_THREADS={value:?}: expected a positive whole number"
        ))),
    }
}

/// Denoises one chunk from its starting noise. Each call builds its own sampler, so chunks can be
/// sampled on separate threads.
fn sample_chunk(
    pipeline: &DiffusionPipeline<B>,
    chunk: &[ImageJob],
    noise: Tensor<B, 4>,
    options: &SamplingOptions,
) -> CliResult<Sample> {
    let sampler = sampler::<B>(
        options.scheduler,
        &pipeline.scheduler,
        options.steps,
        options.eta(),
    );
    let prompts: Vec<String> = chunk.iter().map(|j| j.prompt.clone()).collect();
    let timesteps = sampler.timesteps().to_vec();
    let device = noise.device();
    let sampled = if options.trajectories {
        // Step noise continues the backend stream the chunk's starting noise was drawn from, so a
        // chunk generated again draws it again.
        let shape = noise.dims();
        pipeline.generate_trajectories(
            &prompts,
            None,
            noise,
            sampler.as_ref(),
            options.guidance,
            |_| Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device),
        )
    } else {
        pipeline
            .generate_batch(
                &prompts,
                None,
                noise,
                sampler.as_ref(),
                options.guidance,
                |_| {},
            )
            .map(|images| (images, Vec::new()))
    };
    let (images, chain) = sampled.map_err(CliError::Runtime)?;
    Ok((images, chain, timesteps))
}

/// Generates the missing images of `jobs` (of `shard`'s chunks only, with a shard) into `run/<set_dir>`;
/// returns how many were generated. `sidecar` is merged into each image's JSON (model, LoRA, run hash).
#[allow(clippy::too_many_arguments)]
pub fn generate_set(
    pipeline: &DiffusionPipeline<B>,
    jobs: &[ImageJob],
    run: &Path,
    set_dir: &str,
    options: &SamplingOptions,
    sidecar: &serde_json::Value,
    bar: &ProgressBar,
    shard: Option<Shard>,
) -> CliResult<usize> {
    let dir = run.join(set_dir);
    std::fs::create_dir_all(&dir).map_err(|e| runtime(&dir, e))?;
    // A shard records its images in its own ledger; those already in the shared one count as done.
    let (jobs, ledger) = match shard {
        Some(shard) => (
            shard.jobs(jobs, options.batch_size),
            shard.file("manifest", "jsonl"),
        ),
        None => (jobs.to_vec(), "manifest.jsonl".to_string()),
    };
    let mut manifest = read_ledger(&dir.join(&ledger))?;
    let shared = match shard {
        Some(_) => read_manifest(&dir)?,
        None => Vec::new(),
    };
    let done: std::collections::HashSet<String> = manifest
        .iter()
        .chain(&shared)
        .map(|e| e.job.id.clone())
        .collect();
    let device = device();
    if options.trajectories && options.scheduler != SchedulerKind::Ddim {
        return Err(CliError::Input(
            "trajectories are recorded with the DDIM sampler only".into(),
        ));
    }
    let channels = pipeline.unet.conv_in.weight.dims()[1];
    let factor = pipeline.vae_scale_factor();
    if options.resolution == 0 || options.resolution % factor != 0 {
        return Err(CliError::Input(format!(
            "resolution {} is not a positive multiple of the VAE's factor {factor}",
            options.resolution
        )));
    }
    let side = options.resolution / factor;
    let initial_noise = |chunk: &[ImageJob]| -> Tensor<B, 4> {
        let noise = chunk.iter().map(|job| {
            B::seed(&device, job.noise_seed());
            Tensor::random(
                [1, channels, side, side],
                Distribution::Normal(0.0, 1.0),
                &device,
            )
        });
        Tensor::cat(noise.collect(), 0)
    };
    let (pending, finished): (Vec<&[ImageJob]>, Vec<&[ImageJob]>) = jobs
        .chunks(options.batch_size.max(1))
        .partition(|chunk| chunk.iter().any(|job| !done.contains(&job.id)));
    bar.inc(finished.iter().map(|chunk| chunk.len() as u64).sum());
    let mut generated = 0;
    // Trajectories draw their step noise from the backend's one seeded stream, so they are sampled one
    // chunk at a time; deterministic sampling takes `sampling_threads()` chunks at once.
    let threads = if options.trajectories {
        1
    } else {
        sampling_threads()?
    };
    for group in pending.chunks(threads) {
        // The starting noise is drawn here, in job order, so a chunk's noise does not depend on threads.
        let noises: Vec<Tensor<B, 4>> = group.iter().map(|chunk| initial_noise(chunk)).collect();
        let samples: Vec<CliResult<Sample>> = if group.len() == 1 {
            noises
                .into_iter()
                .map(|noise| sample_chunk(pipeline, group[0], noise, options))
                .collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = group
                    .iter()
                    .zip(noises)
                    .map(|(chunk, noise)| {
                        scope.spawn(move || sample_chunk(pipeline, chunk, noise, options))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(CliError::Runtime("a sampling thread panicked".into()))
                        })
                    })
                    .collect()
            })
        };
        for (chunk, sample) in group.iter().zip(samples) {
            let sample = sample?;
            for (i, job) in chunk.iter().enumerate() {
                let file = write_image(run, set_dir, job, i, &sample, options, sidecar)?;
                if !done.contains(&job.id) {
                    manifest.push(ManifestEntry {
                        job: job.clone(),
                        file,
                    });
                    generated += 1;
                }
            }
            write_ledger(&dir.join(&ledger), &manifest)?;
            bar.inc(chunk.len() as u64);
        }
    }
    Ok(generated)
}

/// Writes image `i` of a sampled chunk as `<set_dir>/<id>.png` with its JSON sidecar (and its chain with
/// trajectories); returns the PNG's path relative to the run directory.
fn write_image(
    run: &Path,
    set_dir: &str,
    job: &ImageJob,
    i: usize,
    (images, chain, timesteps): &Sample,
    options: &SamplingOptions,
    sidecar: &serde_json::Value,
) -> CliResult<String> {
    let file = format!("{set_dir}/{}.png", job.id);
    if !chain.is_empty() {
        let latents: Vec<Tensor<B, 4>> = chain.iter().map(|x| x.clone().slice(i..i + 1)).collect();
        crate::train::trajectory::write_for(
            &run.join(&file),
            Tensor::cat(latents, 0).into_data(),
            timesteps,
            options.eta(),
            options.guidance,
        )
        .map_err(CliError::Runtime)?;
    }
    write_atomic(
        &run.join(&file),
        &png_bytes(images.clone().slice(i..i + 1))?,
    )?;
    let mut meta = serde_json::to_value(job).expect("json");
    let extra = serde_json::json!({"noise_seed": job.noise_seed(), "steps": options.steps, "guidance": options.guidance,
        "scheduler": format!("{:?}", options.scheduler).to_lowercase(), "eta": options.eta(), "popalign_version": popalign_core::VERSION});
    merge(&mut meta, &extra);
    merge(&mut meta, sidecar);
    let json = serde_json::to_string_pretty(&meta).expect("json");
    write_atomic(
        &run.join(set_dir).join(format!("{}.json", job.id)),
        json.as_bytes(),
    )?;
    Ok(file)
}

impl ImageJob {
    /// The seed of this image's starting noise, derived from its id (prompt, run seed and index). Sharing
    /// one noise per index across prompts, as a first version did, made whole populations inherit the
    /// look of a few noise draws: on the toy model one unlucky draw spoiled half the diverse set.
    pub fn noise_seed(&self) -> u64 {
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, self.id.as_bytes())
            .as_u64_pair()
            .0
    }
}

fn merge(target: &mut serde_json::Value, extra: &serde_json::Value) {
    if let (Some(t), Some(e)) = (target.as_object_mut(), extra.as_object()) {
        t.extend(e.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

/// Writes `manifest.jsonl` of the set `dir`.
pub(super) fn write_manifest(dir: &Path, manifest: &[ManifestEntry]) -> CliResult {
    write_ledger(&dir.join("manifest.jsonl"), manifest)
}

fn write_ledger(path: &Path, manifest: &[ManifestEntry]) -> CliResult {
    let mut text = String::new();
    for entry in manifest {
        text.push_str(&serde_json::to_string(entry).expect("json"));
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prompt_and_index_has_its_own_noise_and_reruns_keep_it() {
        let rows = |prompts: &[&str]| -> Vec<(String, String, BTreeMap<String, String>)> {
            prompts
                .iter()
                .map(|p| (p.to_string(), p.to_string(), BTreeMap::new()))
                .collect()
        };
        let jobs = jobs_for(&rows(&["a photo of a doctor", "a photo of a nurse"]), 3, 7);
        let seeds: std::collections::HashSet<u64> = jobs.iter().map(|j| j.noise_seed()).collect();
        assert_eq!(seeds.len(), 6, "no two images share their starting noise");
        let again = jobs_for(&rows(&["a photo of a nurse"]), 3, 7);
        assert_eq!(again[2].noise_seed(), jobs[5].noise_seed());
        let other_run = jobs_for(&rows(&["a photo of a nurse"]), 3, 8);
        assert_ne!(other_run[2].noise_seed(), jobs[5].noise_seed());
    }
}
