//! CPU benchmark of the SDXL-shaped U-Net on burn's ndarray backend (or burn-flex when built with
//! `--features flex`); bench/run.sh compares it with PyTorch.
//!
//! usage: bench_unet MODEL_DIR [--what forward|train|both] [--iters N] [--train-iters N] [--precision bf16]
//! (`bf16` needs the flex build: mixed precision as `popalign train` runs it, f32 masters and a bf16 copy.)
//! MODEL_DIR holds `unet/` and `inputs.safetensors` from bench/make_unet.py. Prints one JSON object.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Autodiff;
#[cfg(not(feature = "flex"))]
use burn::backend::NdArray;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::TensorData;
use popalign_core::precision::Precision;
use popalign_core::tensor_io::read_tensors;
use popalign_core::unet::{UNet2DConditionModel, UNetConditioning};
use serde_json::{Value, json};

#[cfg(feature = "flex")]
type Inner = burn::backend::Flex;
#[cfg(not(feature = "flex"))]
type Inner = NdArray<f32>;

struct Args {
    precision: Precision,
    dir: PathBuf,
    what: String,
    iters: usize,
    train_iters: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        precision: Precision::F32,
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
    fn new(data: &BTreeMap<String, TensorData>, device: &B::Device) -> Self {
        let get = |name: &str| {
            data.get(name)
                .unwrap_or_else(|| panic!("inputs.safetensors lacks {name}"))
                .clone()
        };
        Self {
            sample: Tensor::from_data(get("sample"), device),
            timestep: Tensor::from_data(get("timestep"), device),
            cond: UNetConditioning {
                encoder_hidden_states: Tensor::from_data(get("encoder_hidden_states"), device),
                text_embeds: Some(Tensor::from_data(get("text_embeds"), device)),
                time_ids: Some(Tensor::from_data(get("time_ids"), device)),
            },
            target: Tensor::from_data(get("target"), device),
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

fn main() {
    let args = parse_args();
    let data = read_tensors(&args.dir.join("inputs.safetensors")).unwrap_or_else(|e| panic!("{e}"));
    let unet_dir = args.dir.join("unet");
    let mut report = serde_json::Map::new();
    let backend = if cfg!(feature = "flex") {
        "flex"
    } else {
        "ndarray"
    };
    report.insert(
        "impl".into(),
        json!(format!("burn 0.21.0 {backend}, {:?}", args.precision)),
    );
    let precision = args.precision;

    if matches!(args.what.as_str(), "forward" | "both") {
        type B = Inner;
        let device = Default::default();
        let unet = UNet2DConditionModel::<B>::from_dir(&unet_dir, None, &device)
            .unwrap_or_else(|e| panic!("{e}"));
        let x = Inputs::<B>::new(&data, &device);
        // ndarray and flex are eager: the forward call does all the work (into_data() only copies 64 KiB out).
        record(
            &mut report,
            "forward",
            timed(args.iters, || drop(x.forward(&unet, precision).into_data())),
        );
    }

    if matches!(args.what.as_str(), "train" | "both") {
        type B = Autodiff<Inner>;
        let device = Default::default();
        let mut unet = Some(
            UNet2DConditionModel::<B>::from_dir(&unet_dir, None, &device)
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let x = Inputs::<B>::new(&data, &device);
        // Same hyper-parameters as bench/torch_unet.py (PyTorch's AdamW defaults), not that they change the time.
        let mut optim = AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(1e-2)
            .init();
        let mut n_grads = 0;
        let step = timed(args.train_iters, || {
            let model = unet.take().expect("model");
            let loss = (x.forward(&model, precision) - x.target.clone())
                .powi_scalar(2)
                .mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            n_grads = grads.len();
            unet = Some(optim.step(1e-5, model, grads));
        });
        record(&mut report, "train_step", step);
        // Checks the step really trains every parameter: compare with torch_unet.py's param_tensors.
        report.insert("param_tensors_with_grad".into(), json!(n_grads));
        report.insert(
            "params".into(),
            json!(unet.as_ref().expect("model").num_params()),
        );
    }
    // Whole process: load + warm-up + timed runs.
    report.insert("peak_rss_mib".into(), json!(peak_rss_mib()));
    println!("{}", Value::Object(report));
}
