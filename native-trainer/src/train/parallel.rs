//! Data-parallel training: one worker thread per device, each with a replica of the U-Net, joined by
//! all-reduces (`threads.rs`). Every worker draws the same global batch of `workers × batch_size` pairs
//! and keeps its own slice, so `n` workers with batch B compute what one worker with batch `n·B` would:
//! the PopAlign reference point is the mean of the workers' means (as the official trainer's
//! `accelerator.gather`), and the gradients are averaged before clipping and the optimiser step, which
//! every worker applies to its own identical replica.
//!
//! Cost to know: each worker decodes the images of the whole global batch and keeps its slice (a bad image
//! may be skipped and redrawn, so the slice is only known after the draw): `workers` times the decoding of
//! a single-device step. The means go through host memory as float32 buffers, on every backend.
//!
//! Across processes (`launch.rs`: torchrun's or Slurm's variables) every process has one worker, whose rank
//! is the process's, and the means go round the processes' ring (`ring.rs`) instead.

use std::sync::Mutex;

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use popalign_core::align::objectives::popalign::ReferencePointReduce;

use super::ring::Ring;
use super::threads::Member;
use crate::backend::Device;
use crate::error::CliResult;

pub struct Worker {
    /// Rank over every worker of every process.
    pub rank: usize,
    pub world: usize,
    pub device: Device,
    link: Link,
}

/// How this worker reaches the others.
enum Link {
    Alone,
    /// The other worker threads of this process.
    Threads(Member),
    /// The other processes, one worker each.
    Processes(Mutex<Ring>),
}

impl Worker {
    /// The only worker of a single-device run.
    pub fn alone(device: Device) -> Self {
        Self {
            rank: 0,
            world: 1,
            device,
            link: Link::Alone,
        }
    }

    /// One of this process's worker threads.
    pub fn thread(member: Member, device: Device) -> Self {
        Self {
            rank: member.rank,
            world: member.world(),
            device,
            link: Link::Threads(member),
        }
    }

    /// The only worker of this process, one of the ring's processes.
    pub fn across(ring: Ring, device: Device) -> Self {
        Self {
            rank: ring.rank,
            world: ring.world,
            device,
            link: Link::Processes(Mutex::new(ring)),
        }
    }

    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// Replaces `values` by their element-wise mean over the workers.
    fn mean_f32(&self, values: &mut [f32]) -> CliResult {
        match &self.link {
            Link::Alone => Ok(()),
            Link::Threads(member) => member.mean(values),
            Link::Processes(ring) => ring.lock().expect("ring").mean(values),
        }
    }

    /// Element-wise mean of `values` over the workers (reduced in float32, as the gradients).
    pub fn mean(&self, values: &[f64]) -> CliResult<Vec<f64>> {
        if self.world == 1 {
            return Ok(values.to_vec());
        }
        let mut reduced: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        self.mean_f32(&mut reduced)?;
        Ok(reduced.into_iter().map(f64::from).collect())
    }

    /// The mean of every gradient of `module` over the workers.
    pub fn mean_gradients<A: AutodiffBackend, M: AutodiffModule<A>>(
        &self,
        grads: GradientsParams,
        module: &M,
    ) -> CliResult<GradientsParams> {
        if self.world == 1 {
            return Ok(grads);
        }
        flat_mean(grads, module, |values| self.mean_f32(values))
    }

    /// True on every worker if `ok` is true on all of them, so that one worker's failure (a checkpoint
    /// that could not be written) stops all of them instead of leaving the others waiting.
    pub fn all_ok(&self, ok: bool) -> CliResult<bool> {
        Ok(self.mean(&[if ok { 1.0 } else { 0.0 }])?[0] == 1.0)
    }
}

/// The gradients of `module`, in its parameter order, as one float32 buffer through `mean` and back.
fn flat_mean<A: AutodiffBackend, M: AutodiffModule<A>>(
    mut grads: GradientsParams,
    module: &M,
    mean: impl FnOnce(&mut [f32]) -> CliResult,
) -> CliResult<GradientsParams> {
    struct Flatten<'a>(&'a GradientsParams, Vec<f32>);
    impl<A: AutodiffBackend> ModuleVisitor<A> for Flatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            if let Some(g) = self.0.get::<A::InnerBackend, D>(param.id) {
                self.1.extend(g.into_data().convert::<f32>().iter::<f32>());
            }
        }
    }
    struct Unflatten<'a>(&'a mut GradientsParams, &'a [f32]);
    impl<A: AutodiffBackend> ModuleVisitor<A> for Unflatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            if let Some(g) = self.0.remove::<A::InnerBackend, D>(param.id) {
                let (shape, dtype, device) = (g.shape(), g.dtype(), g.device());
                let (mine, rest) = self.1.split_at(shape.num_elements());
                let data = TensorData::new(mine.to_vec(), shape);
                let mean = Tensor::<A::InnerBackend, D>::from_data(data, &device).cast(dtype);
                self.0.register::<A::InnerBackend, D>(param.id, mean);
                self.1 = rest;
            }
        }
    }
    let mut flat = Flatten(&grads, Vec::new());
    module.visit(&mut flat);
    let mut values = flat.1;
    mean(&mut values)?;
    module.visit(&mut Unflatten(&mut grads, &values));
    Ok(grads)
}

impl ReferencePointReduce for Worker {
    fn mean_across_workers(&self, local: [f64; 2]) -> [f64; 2] {
        // The objective cannot return an error; a collective that fails mid-step is a broken runtime.
        let mean = self
            .mean(&local)
            .unwrap_or_else(|e| panic!("reference point all-reduce failed: {e}"));
        [mean[0], mean[1]]
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::backend::AutodiffBackend;

    use super::*;
    use crate::train::batch::{Selection, sample_batch};
    use crate::train::config::TrainConfig;
    use crate::train::loss::pair_loss;
    use crate::train::policy::trainable;
    use crate::train::setup::setup;
    use crate::train::threads::Group;
    use crate::train::{AD, UNet2DConditionModel};

    /// Four pairs of noisy 64×64 images and a PopAlign LoRA config with `batch_size` pairs per worker.
    fn write_run(dir: &Path, batch_size: usize) -> TrainConfig {
        let mut lines = String::new();
        let mut state = 12345u32;
        let mut noise = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 256) as u8
        };
        std::fs::create_dir_all(dir.join("images")).unwrap();
        for i in 0..4 {
            for side in ["w", "l"] {
                image::RgbImage::from_fn(64, 64, |_, _| image::Rgb([noise(), noise(), noise()]))
                    .save(dir.join(format!("images/{i}{side}.png")))
                    .unwrap();
            }
            lines += &format!(
                "{{\"caption\": \"a photo of a doctor\", \"preferred\": \"images/{i}w.png\", \"dispreferred\": \"images/{i}l.png\"}}\n"
            );
        }
        std::fs::write(dir.join("pairs.jsonl"), lines).unwrap();
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-sdxl");
        let toml = format!(
            "model = {model:?}\npreferences = \"pairs.jsonl\"\noutput = \"out\"\nresolution = 64\n\
             batch_size = {batch_size}\nsteps = 1\nlearning_rate = 1e-3\n[lora]\nrank = 2\nalpha = 2.0\n"
        );
        std::fs::write(dir.join("train.toml"), toml).unwrap();
        TrainConfig::load(&dir.join("train.toml")).unwrap()
    }

    /// This worker's gradient after the all-reduce, flattened in parameter order, starting from a trained
    /// adapter (fresh adapters give every sample g = 0, where the reference point is 0 whatever the reduce).
    fn gradient(config: &TrainConfig, worker: &Worker) -> Vec<f64> {
        let mut s = setup::<AD>(config, false, &worker.device).unwrap();
        let trained = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/io/lora_trained_by_popalign.safetensors");
        s.unet = trainable(s.unet.load_lora(&trained).unwrap(), true);
        let batch = sample_batch(
            config,
            &s.data,
            0,
            Selection::Random(config.batch_size * worker.world),
            s.latent_shape,
            s.frozen.schedule.alphas_cumprod.len(),
            s.frozen.latent_cache.as_ref(),
        )
        .unwrap()
        .shard(worker.rank, worker.world);
        let out = pair_loss(
            config,
            &s.unet,
            &mut s.frozen,
            &batch,
            s.latent_shape,
            &worker.device,
            worker,
        )
        .unwrap();
        let grads = GradientsParams::from_grads(out.loss.backward(), &s.unet);
        flatten(&worker.mean_gradients(grads, &s.unet).unwrap(), &s.unet)
    }

    fn flatten(grads: &GradientsParams, unet: &UNet2DConditionModel<AD>) -> Vec<f64> {
        struct Collect<'a>(&'a GradientsParams, Vec<f64>);
        impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if let Some(g) = self.0.get::<B::InnerBackend, D>(param.id) {
                    self.1
                        .extend(g.into_data().convert::<f64>().to_vec::<f64>().unwrap());
                }
            }
        }
        let mut collect = Collect(grads, Vec::new());
        unet.visit(&mut collect);
        collect.1
    }

    /// Two workers × batch 2 against one worker × batch 4 on the same draws, PopAlign with β = 5000.
    /// They differ by float32 rounding only (batch-2 and batch-4 kernels sum in different orders).
    /// Measured: max |Δ| = 5.6e-7 · max |g| on an AVX-512 host, 3.2e-7 on an AVX2 one with the threads'
    /// own all-reduce (1.7e-4 on AVX2 while burn-ndarray's `simd` feature was on: its approximate
    /// reciprocal, bench/NOTES.md); with each worker's own reference point instead of the all-reduced one,
    /// 0.55 · max |g|.
    #[test]
    fn two_workers_with_batch_b_have_the_gradient_of_one_worker_with_batch_2b() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let single = gradient(
            &write_run(one.path(), 4),
            &Worker::alone(crate::backend::device()),
        );
        let config = write_run(two.path(), 2);
        let parallel: Vec<Vec<f64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = Group::members(2)
                .into_iter()
                .map(|member| {
                    let config = &config;
                    scope.spawn(move || {
                        gradient(config, &Worker::thread(member, crate::backend::device()))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            parallel[0], parallel[1],
            "workers hold the same reduced gradient"
        );
        assert_eq!(single.len(), parallel[0].len());
        let scale = single.iter().fold(0f64, |m, g| m.max(g.abs()));
        let error = single
            .iter()
            .zip(&parallel[0])
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        println!(
            "max |Δ gradient| = {error:.3e} = {:.2e} · max |g|",
            error / scale
        );
        assert!(scale > 0.0);
        assert!(error <= 1e-4 * scale, "{error} vs max |g| {scale}");
    }
}
