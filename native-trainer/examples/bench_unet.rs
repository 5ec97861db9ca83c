//! Benchmark of the U-Net's forward pass and training step on the backend of the build: burn's ndarray
//! (default), burn-flex (`--features flex`) or CUDA (`--features cuda`). bench/run.sh (CPU) and
//! bench/gpu/run.sh compare it with PyTorch + diffusers (bench/torch_unet.py) in the same run.
//!
//! usage: bench_unet MODEL_DIR [--what load|forward|train|both] [--iters N] [--train-iters N] [--precision bf16]
//!        [--batch N] [--lora RANK] [--checkpointing] [--burn-attention] [--inputs FILE] [--variant fp16]
//! (`bf16` needs flex or cuda: mixed precision as `popalign train` runs it, f32 masters and a bf16 copy.
//! `--lora` trains rank-RANK adapters on to_q/k/v/out.0 only, the base frozen (in bf16 with `--precision
//! bf16`), as `popalign train` with `[lora]`; `--checkpointing` runs on burn's balanced checkpointing. Training
//! runs attention through the recomputing op, as `popalign train` does; `--burn-attention` runs burn's own.)
//! MODEL_DIR holds `unet/` and `inputs.safetensors` (batch 1, repeated `--batch` times; `--inputs` names another
//! file) from bench/make_unet.py or tools/fixtures/make_full_sdxl.py. `load` times loading the U-Net alone
//! (`--variant fp16`: its fp16 files). Prints one JSON object.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Autodiff;
#[cfg(not(any(feature = "flex", feature = "cuda")))]
use burn::backend::NdArray;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, NoCheckpointing};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;
use popalign_core::diffusion::precision::Precision;
use popalign_core::io::tensor_io::read_tensors;
use popalign_core::models::unet::{UNet2DConditionModel, UNetConditioning};
use popalign_core::nn::lora::{LoraConfig, TrainOnlyLora};
use popalign_core::nn::params::stable_param_ids;
use popalign_core::nn::recomputed_attention;
use serde_json::{Value, json};

#[cfg(feature = "cuda")]
type Inner = burn::backend::Cuda;
#[cfg(all(feature = "flex", not(feature = "cuda")))]
type Inner = burn::backend::Flex;
#[cfg(not(any(feature = "flex", feature = "cuda")))]
type Inner = NdArray<f32>;

struct Args {
    precision: Precision,
    inputs: Option<PathBuf>,
    variant: Option<String>,
    batch: usize,
    lora: Option<usize>,
    checkpointing: bool,
    burn_attention: bool,
    dir: PathBuf,
    what: String,
    iters: usize,
    train_iters: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        precision: Precision::F32,
        inputs: None,
        variant: None,
        batch: 1,
        lora: None,
        checkpointing: false,
        burn_attention: false,
        dir: PathBuf::new(),
        what: "both".into(),
        iters: 5,
        train_iters: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--what" => args.what = value(),
            "--iters" => args.iters = value().parse().expect("--iters"),
            "--train-iters" => args.train_iters = value().parse().expect("--train-iters"),
            "--batch" => args.batch = value().parse().expect("--batch"),
            "--inputs" => args.inputs = Some(PathBuf::from(value())),
            "--variant" => args.variant = Some(value()),
            "--lora" => args.lora = Some(value().parse().expect("--lora")),
            "--checkpointing" => args.checkpointing = true,
            "--burn-attention" => args.burn_attention = true,
            "--precision" => {
                args.precision = match value().as_str() {
                    "bf16" => Precision::Bf16,
                    _ => Precision::F32,
                }
            }
            _ => args.dir = PathBuf::from(arg),
        }
    }
    assert!(
        !args.dir.as_os_str().is_empty(),
        "usage: bench_unet MODEL_DIR [--what forward|train|both]"
    );
    args
}

/// Process CPU time (all threads, user + system) in ms from /proc/self/stat, in 10 ms clock ticks. Reported
/// beside wall time because the benchmark box is shared: CPU time is less disturbed by other load.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) * 10.0 // utime, stime: fields 14 and 15 of proc(5), counted after the comm field
}

/// Peak resident set size of this process in MiB (VmHWM of /proc/self/status).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kib.map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Runs `f` once to warm up, then `iters` times; returns (wall ms, CPU ms) per timed run.
fn timed(iters: usize, mut f: impl FnMut()) -> (Vec<f64>, Vec<f64>) {
    f();
    (0..iters)
        .map(|_| {
            let (wall, cpu) = (Instant::now(), cpu_ms());
            f();
            (wall.elapsed().as_secs_f64() * 1e3, cpu_ms() - cpu)
        })
        .unzip()
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Inputs of one backend, built from the same file for both measurements.
struct Inputs<B: Backend> {
    sample: Tensor<B, 4>,
    timestep: Tensor<B, 1>,
    cond: UNetConditioning<B>,
    target: Tensor<B, 4>,
}

impl<B: Backend> Inputs<B> {
    /// The file's batch-1 inputs, repeated `batch` times.
    fn new(data: &BTreeMap<String, TensorData>, batch: usize, device: &B::Device) -> Self {
        fn get<B: Backend, const D: usize>(
            data: &BTreeMap<String, TensorData>,
            name: &str,
            batch: usize,
            device: &B::Device,
        ) -> Tensor<B, D> {
            let one = data
                .get(name)
                .unwrap_or_else(|| panic!("inputs.safetensors lacks {name}"))
                .clone();
            let tensor = Tensor::<B, D>::from_data(one, device);
            Tensor::cat(vec![tensor; batch], 0)
        }
        Self {
            sample: get(data, "sample", batch, device),
            timestep: get(data, "timestep", batch, device),
            cond: UNetConditioning {
                encoder_hidden_states: get(data, "encoder_hidden_states", batch, device),
                text_embeds: Some(get(data, "text_embeds", batch, device)),
                time_ids: Some(get(data, "time_ids", batch, device)),
            },
            target: get(data, "target", batch, device),
        }
    }

    fn forward(&self, unet: &UNet2DConditionModel<B>, precision: Precision) -> Tensor<B, 4> {
        let out = precision.module(unet.clone()).forward(
            precision.input(self.sample.clone()),
            self.timestep.clone(),
            &precision.conditioning(self.cond.clone()),
        );
        precision.output(out)
    }
}

/// Times training steps (MSE against a fixed target, AdamW) on the autodiff backend `A`.
fn train<A: AutodiffBackend<InnerBackend = Inner>>(
    args: &Args,
    data: &BTreeMap<String, TensorData>,
    report: &mut serde_json::Map<String, Value>,
) {
    let device: A::Device = Default::default();
    let lora = args.lora.map(|rank| LoraConfig::new(rank, rank as f64));
    let unet = UNet2DConditionModel::<A>::from_dir_with_lora(
        &args.dir.join("unet"),
        args.variant.as_deref(),
        lora.as_ref(),
        &device,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let unet = stable_param_ids(unet);
    let unet = match lora {
        Some(_) => args.precision.store_frozen(TrainOnlyLora::apply(unet)),
        None => TrainOnlyLora::all_trainable(unet),
    };
    let mut unet = Some(unet);
    let x = Inputs::<A>::new(data, args.batch, &device);
    // Same hyper-parameters as bench/torch_unet.py (PyTorch's AdamW defaults), not that they change the time.
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(1e-2)
        .init();
    let mut n_grads = 0;
    let step = timed(args.train_iters, || {
        let model = unet.take().expect("model");
        let loss = (x.forward(&model, args.precision) - x.target.clone())
            .powi_scalar(2)
            .mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        n_grads = grads.len();
        unet = Some(optim.step(1e-5, model, grads));
        // A GPU backend queues work; the step is done when the device is.
        A::sync(&device).expect("device sync");
    });
    record(report, "train_step", step);
    // Checks the step trains what it should: compare with torch_unet.py's param_tensors_with_grad.
    report.insert("param_tensors_with_grad".into(), json!(n_grads));
    report.insert(
        "params".into(),
        json!(unet.as_ref().expect("model").num_params()),
    );
}

fn record(
    report: &mut serde_json::Map<String, Value>,
    name: &str,
    (wall, cpu): (Vec<f64>, Vec<f64>),
) {
    let min = wall.iter().copied().fold(f64::INFINITY, f64::min);
    report.insert(format!("{name}_ms"), json!(median(&wall)));
    report.insert(format!("{name}_min_ms"), json!(min));
    report.insert(format!("{name}_cpu_ms"), json!(median(&cpu)));
    report.insert(format!("{name}_all_ms"), json!(wall));
}

fn backend() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda"
    } else if cfg!(feature = "flex") {
        "flex"
    } else {
        "ndarray"
    }
}

fn main() {
    // SAFETY: first thing in `main`, before any other thread exists.
    unsafe { popalign_core::nn::cpu_matmul::use_rayon_threads_only() };
    let args = parse_args();
    let unet_dir = args.dir.join("unet");
    let variant = args.variant.as_deref();
    if args.what == "load" {
        let device = Default::default();
        let started = Instant::now();
        let unet = UNet2DConditionModel::<Inner>::from_dir(&unet_dir, variant, &device)
            .unwrap_or_else(|e| panic!("{e}"));
        Inner::sync(&device).expect("device sync");
        let report = json!({
            "impl": format!("burn 0.21.0 {}", backend()), "variant": variant,
            "load_ms": started.elapsed().as_secs_f64() * 1e3,
            "params": unet.num_params(), "peak_rss_mib": peak_rss_mib(),
        });
        println!("{report}");
        return;
    }
    let inputs = args
        .inputs
        .clone()
        .unwrap_or_else(|| args.dir.join("inputs.safetensors"));
    let data = read_tensors(&inputs).unwrap_or_else(|e| panic!("{e}"));
    let mut report = serde_json::Map::new();
    report.insert(
        "impl".into(),
        json!(format!("burn 0.21.0 {}, {:?}", backend(), args.precision)),
    );
    report.insert("batch".into(), json!(args.batch));
    report.insert("lora".into(), json!(args.lora));
    report.insert("checkpointing".into(), json!(args.checkpointing));
    report.insert("recomputed_attention".into(), json!(!args.burn_attention));
    if !args.burn_attention {
        recomputed_attention::enable::<Inner, NoCheckpointing>();
        recomputed_attention::enable::<Inner, BalancedCheckpointing>();
    }
    let precision = args.precision;

    if matches!(args.what.as_str(), "forward" | "both") {
        let device = Default::default();
        let unet = UNet2DConditionModel::<Inner>::from_dir(&unet_dir, variant, &device)
            .unwrap_or_else(|e| panic!("{e}"));
        let x = Inputs::<Inner>::new(&data, args.batch, &device);
        // into_data() waits for the device and copies the output out (64 KiB per sample at 64×64 latents).
        record(
            &mut report,
            "forward",
            timed(args.iters, || drop(x.forward(&unet, precision).into_data())),
        );
    }

    if matches!(args.what.as_str(), "train" | "both") {
        match args.checkpointing {
            true => train::<Autodiff<Inner, BalancedCheckpointing>>(&args, &data, &mut report),
            false => train::<Autodiff<Inner>>(&args, &data, &mut report),
        }
    }
    // Whole process: load + warm-up + timed runs.
    report.insert("peak_rss_mib".into(), json!(peak_rss_mib()));
    println!("{}", Value::Object(report));
}
