//! Shared helpers of the parity tests: fixture paths, tensors from fixture files, error measurement.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::backend::NdArray;
use burn::prelude::*;
use burn::tensor::TensorData;

pub type B = NdArray<f32>;

pub fn device() -> burn::backend::ndarray::NdArrayDevice {
    Default::default()
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

pub fn io(name: &str) -> BTreeMap<String, TensorData> {
    popalign_core::io::tensor_io::read_tensors(
        &fixtures().join("io").join(format!("{name}.safetensors")),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

pub fn float<const D: usize>(data: &TensorData) -> Tensor<B, D> {
    float_on(data, &device())
}

/// A fixture tensor on any backend's device.
pub fn float_on<Bk: Backend, const D: usize>(
    data: &TensorData,
    device: &Bk::Device,
) -> Tensor<Bk, D> {
    Tensor::from_data(data.clone(), device)
}

pub fn int<const D: usize>(data: &TensorData) -> Tensor<B, D, Int> {
    Tensor::from_data(data.clone(), &device())
}

/// Max |actual − expected| after checking the shapes agree; printed so the test log states the error.
pub fn max_abs_error<Bk: Backend, const D: usize>(
    label: &str,
    actual: Tensor<Bk, D>,
    expected: &TensorData,
) -> f32 {
    assert_eq!(
        actual.dims().to_vec(),
        expected.shape.to_vec(),
        "{label}: shape"
    );
    let actual = actual.into_data().to_vec::<f32>().unwrap();
    let expected = expected.to_vec::<f32>().unwrap();
    let error = actual
        .iter()
        .zip(&expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0f32, f32::max);
    let scale = expected.iter().map(|e| e.abs()).fold(0f32, f32::max);
    println!("{label}: max abs error {error:.3e} (max |expected| {scale:.3})");
    assert!(error.is_finite(), "{label}: non-finite output");
    error
}

/// Asserts max abs error ≤ `tolerance`.
pub fn assert_close<Bk: Backend, const D: usize>(
    label: &str,
    actual: Tensor<Bk, D>,
    expected: &TensorData,
    tolerance: f32,
) {
    let error = max_abs_error(label, actual, expected);
    assert!(
        error <= tolerance,
        "{label}: max abs error {error:.3e} > {tolerance:.0e}"
    );
}
pub mod alignprop_run;
pub mod dense_transitions;
pub mod lora_unet;
