//! Data-parallel training: one worker thread per device, each with a replica of the U-Net, joined by
//! burn-collective all-reduces. Every worker draws the same global batch of `workers × batch_size` pairs
//! and keeps its own slice, so `n` workers with batch B compute what one worker with batch `n·B` would:
//! the PopAlign reference point is the mean of the workers' means (as the official trainer's
//! `accelerator.gather`), and the gradients are averaged before clipping and the optimiser step, which
//! every worker applies to its own identical replica.
//!
//! Cost to know: each worker decodes the images of the whole global batch and keeps its slice (a bad image
//! may be skipped and redrawn, so the slice is only known after the draw): `workers` times the decoding of
//! a single-device step.
//!
//! Across processes (`launch.rs`: torchrun's or Slurm's variables) every process has one worker, whose rank
//! is the process's, and the means go round the processes' ring (`ring.rs`) instead.

use std::sync::Mutex;

use burn::collective::{
    CollectiveConfig, PeerId, ReduceOperation, all_reduce, finish_collective, register,
};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::backend::AutodiffBackend;
use popalign_core::align::objectives::popalign::ReferencePointReduce;

use super::ring::Ring;
use crate::backend::{Backend, Device};
use crate::error::{CliError, CliResult};

pub struct Worker {
    /// Rank over every worker of every process.
    pub rank: usize,
    pub world: usize,
    pub device: Device,
    /// The ring to the other processes, when this worker is one of several processes.
    ring: Option<Mutex<Ring>>,
}

impl Worker {
    /// Registers local worker `rank` of `world` with the collective (nothing to do when it is alone).
    pub fn join(rank: usize, world: usize, device: Device) -> CliResult<Self> {
        if world > 1 {
            let config = CollectiveConfig::default().with_num_devices(world);
            register::<Backend>(peer(rank), device.clone(), config)
                .map_err(|e| collective_error("register", e))?;
        }
        Ok(Self {
            rank,
            world,
            device,
            ring: None,
        })
    }

    /// The only worker of this process, one of the ring's processes.
    pub fn across(ring: Ring, device: Device) -> Self {
        Self {
            rank: ring.rank,
            world: ring.world,
            device,
            ring: Some(Mutex::new(ring)),
        }
    }

    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// Element-wise mean of `values` over the workers (reduced in float32, as the gradients).
    pub fn mean(&self, values: &[f64]) -> CliResult<Vec<f64>> {
        if self.world == 1 {
            return Ok(values.to_vec());
        }
        if let Some(ring) = &self.ring {
            let mut reduced: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            ring.lock().expect("ring").mean(&mut reduced)?;
            return Ok(reduced.into_iter().map(f64::from).collect());
        }
        let local = Tensor::<Backend, 1>::from_data(
            TensorData::new(values.to_vec(), [values.len()]),
            &self.device,
        );
        let reduced = all_reduce::<Backend>(
            peer(self.rank),
            local.into_primitive().tensor(),
            ReduceOperation::Mean,
        )
        .map_err(|e| collective_error("all-reduce", e))?;
        let reduced = Tensor::<Backend, 1>::from_primitive(TensorPrimitive::Float(reduced));
        Ok(reduced
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .expect("f64 data"))
    }

    /// The mean of every gradient of `module` over the workers.
    pub fn mean_gradients<A: AutodiffBackend<InnerBackend = Backend>, M: AutodiffModule<A>>(
        &self,
        grads: GradientsParams,
        module: &M,
    ) -> CliResult<GradientsParams> {
        if self.world == 1 {
            return Ok(grads);
        }
        match &self.ring {
            Some(ring) => ring_mean(grads, module, &mut ring.lock().expect("ring")),
            None => grads
                .all_reduce::<Backend>(peer(self.rank), ReduceOperation::Mean)
                .map_err(|e| collective_error("gradient all-reduce", e)),
        }
    }

    /// True on every worker if `ok` is true on all of them, so that one worker's failure (a checkpoint
    /// that could not be written) stops all of them instead of leaving the others waiting.
    pub fn all_ok(&self, ok: bool) -> CliResult<bool> {
        Ok(self.mean(&[if ok { 1.0 } else { 0.0 }])?[0] == 1.0)
    }

    pub fn leave(&self) {
        if self.world > 1 && self.ring.is_none() {
            let _ = finish_collective::<Backend>(peer(self.rank));
        }
    }
}

/// The gradients of `module`, in its parameter order, as one float32 buffer through the ring and back.
fn ring_mean<A: AutodiffBackend, M: AutodiffModule<A>>(
    mut grads: GradientsParams,
    module: &M,
    ring: &mut Ring,
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
    ring.mean(&mut values)?;
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

fn peer(rank: usize) -> PeerId {
    PeerId::from(rank as u32)
}

fn collective_error(what: &str, e: impl std::fmt::Debug) -> CliError {
    CliError::Runtime(format!("data-parallel {what} failed: {e:?}"))
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
    /// Measured: max |Δ| = 5.6e-7 · max |g| (1.7e-4 on an AVX2 host while burn-ndarray's `simd` feature was
    /// on: its approximate reciprocal, bench/NOTES.md); with each worker's own reference point instead of
    /// the all-reduced one, 0.55 · max |g|.
    #[test]
    fn two_workers_with_batch_b_have_the_gradient_of_one_worker_with_batch_2b() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let single = gradient(
            &write_run(one.path(), 4),
            &Worker::join(0, 1, crate::backend::device()).unwrap(),
        );
        let config = write_run(two.path(), 2);
        let parallel: Vec<Vec<f64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|rank| {
                    let config = &config;
                    scope.spawn(move || {
                        let worker = Worker::join(rank, 2, crate::backend::device()).unwrap();
                        let g = gradient(config, &worker);
                        worker.leave();
                        g
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
