//! The burn backend this binary was built for: `cuda` if enabled, else `wgpu`, else `ndarray` (CPU).

#[cfg(feature = "cuda")]
pub type Backend = burn::backend::Cuda;

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Backend = burn::backend::Wgpu;

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
pub type Backend = burn::backend::NdArray;

pub type Device = <Backend as burn::tensor::backend::BackendTypes>::Device;

pub fn device() -> Device {
    Device::default()
}
