//! The burn backend this binary was built for: `cuda` if enabled, else `wgpu`, else `flex` (CPU, with bf16),
//! else `ndarray` (CPU).

#[cfg(feature = "cuda")]
pub type Backend = burn::backend::Cuda;

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Backend = burn::backend::Wgpu;

#[cfg(all(feature = "flex", not(any(feature = "wgpu", feature = "cuda"))))]
pub type Backend = burn::backend::Flex;

#[cfg(not(any(feature = "wgpu", feature = "cuda", feature = "flex")))]
pub type Backend = burn::backend::NdArray;

/// The backend's name, for messages.
pub const NAME: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "wgpu") {
    "wgpu"
} else if cfg!(feature = "flex") {
    "flex"
} else {
    "ndarray"
};

/// How many batches keep this build busy side by side: one ndarray batch keeps only about 1.2–1.3 cores
/// busy (rayon inside matmul and conv), so two on a machine with at least two cores (bench/NOTES.md
/// "toy demo"); one on the other backends (a GPU, or flex's own threads, are busy with one).
pub fn side_by_side_batches() -> usize {
    if NAME == "ndarray" { cores().min(2) } else { 1 }
}

/// `--threads`, when given.
static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// The CPU threads this process may use: `--threads`, else every core.
pub fn cores() -> usize {
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Sizes the CPU kernels' threads: rayon's global pool (our products and convolutions, burn-ndarray's
/// loops) gets `threads` where given (else rayon's default: `RAYON_NUM_THREADS`, else every core), and
/// matrixmultiply's gemm none of its own (`cpu_matmul::use_rayon_threads_only`). Call first thing in `main`.
pub fn use_threads(threads: Option<usize>) {
    #[cfg(feature = "ndarray")]
    // SAFETY: called at the start of `main`, before any other thread exists.
    unsafe {
        popalign_core::nn::cpu_matmul::use_rayon_threads_only()
    };
    if let Some(threads) = threads {
        let _ = THREADS.set(threads);
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global();
    }
}

pub type Device = <Backend as burn::tensor::backend::BackendTypes>::Device;

/// `--device`, when given.
static DEVICE: std::sync::OnceLock<Device> = std::sync::OnceLock::new();

/// Makes `device` the default of this process (`--device`). Call first thing in `main`.
pub fn use_device(device: Device) {
    let _ = DEVICE.set(device);
}

/// `--device`, else the backend's default device.
pub fn device() -> Device {
    DEVICE.get().cloned().unwrap_or_default()
}

/// A device named as users write it: `cuda:N` (cuda build), `wgpu:N` or `wgpu` (wgpu build), `cpu`
/// (ndarray and flex builds; several `cpu` entries make several workers sharing the CPU).
pub fn parse_device(name: &str) -> Result<Device, String> {
    let index = |prefix: &str| -> Option<usize> { name.strip_prefix(prefix)?.parse().ok() };
    #[cfg(feature = "cuda")]
    if let Some(i) = index("cuda:") {
        return Ok(burn::backend::cuda::CudaDevice { index: i });
    }
    #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
    {
        if name == "wgpu" {
            return Ok(Device::default());
        }
        if let Some(i) = index("wgpu:") {
            return Ok(burn::backend::wgpu::WgpuDevice::DiscreteGpu(i));
        }
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    if name == "cpu" {
        let _ = index;
        return Ok(Device::default());
    }
    Err(format!(
        "unknown device {name:?} for this build (expected {})",
        if cfg!(feature = "cuda") {
            "cuda:N"
        } else if cfg!(feature = "wgpu") {
            "wgpu or wgpu:N"
        } else {
            "cpu"
        }
    ))
}
